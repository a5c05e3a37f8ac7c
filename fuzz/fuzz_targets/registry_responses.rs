//! (d) What a registry sends back (challenges, tokens, manifests, configs, error envelopes)
//! and the error text cut for warnings, through the lookup's parsers.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::registry_responses(data));
