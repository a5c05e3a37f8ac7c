//! (a) AdmissionReview decoding and mutation: any bytes a client can POST to /mutate.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|body: &[u8]| checks::admission_review(body));
