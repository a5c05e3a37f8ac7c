//! (b) Annotation and quantity parsing, through the mutation of a realistic pod.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|input: checks::Annotations| checks::annotations(&input));
