//! (c) `jvm-guard exec` argument parsing.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|args: Vec<String>| checks::exec_args(&args));
