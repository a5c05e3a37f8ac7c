//! (e) Any bytes as a HotSpot performance-data file, through `jvm-guard inspect`'s parser.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| checks::perfdata(bytes));
