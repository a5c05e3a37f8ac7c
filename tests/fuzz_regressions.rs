//! Every input the fuzzers once failed on, and a few that pin a check
//! (fuzz/regressions/TARGET/*), replayed through the same checks the fuzz targets run
//! (fuzz/checks.rs), so a fixed crash stays fixed without nightly or cargo-fuzz. A new crash:
//! copy fuzz/artifacts/TARGET/crash-* here under a name that says what it is.

use std::path::{Path, PathBuf};

use arbitrary::{Arbitrary, Unstructured};

#[path = "../fuzz/checks.rs"]
mod checks;

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("readable").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).expect("readable");
            (p, bytes)
        })
        .collect()
}

/// Decodes a typed input the way libfuzzer-sys does.
fn decode<T: for<'a> Arbitrary<'a>>(bytes: &[u8]) -> Option<T> {
    T::arbitrary_take_rest(Unstructured::new(bytes)).ok()
}

#[test]
fn admission_review_regressions_pass_the_checks() {
    let inputs = inputs("admission_review");
    assert!(!inputs.is_empty(), "no regression inputs found");
    for (path, bytes) in inputs {
        eprintln!("{}", path.display());
        checks::admission_review(&bytes);
    }
}

#[test]
fn annotations_regressions_pass_the_checks() {
    for (path, bytes) in inputs("annotations") {
        eprintln!("{}", path.display());
        if let Some(input) = decode::<checks::Annotations>(&bytes) {
            checks::annotations(&input);
        }
    }
}

#[test]
fn exec_args_regressions_pass_the_checks() {
    for (path, bytes) in inputs("exec_args") {
        eprintln!("{}", path.display());
        if let Some(args) = decode::<Vec<String>>(&bytes) {
            checks::exec_args(&args);
        }
    }
}

#[test]
fn registry_responses_regressions_pass_the_checks() {
    let inputs = inputs("registry_responses");
    assert!(!inputs.is_empty(), "no regression inputs found");
    for (path, bytes) in inputs {
        eprintln!("{}", path.display());
        checks::registry_responses(&bytes);
    }
}

#[test]
fn perfdata_regressions_pass_the_checks() {
    let inputs = inputs("perfdata");
    assert!(!inputs.is_empty(), "no regression inputs found");
    for (path, bytes) in inputs {
        eprintln!("{}", path.display());
        checks::perfdata(&bytes);
    }
}

/// The seeds are real files (two JVMs' own, and one rewritten big-endian): they must parse,
/// or the fuzzer starts from rejected input.
#[test]
fn perfdata_seeds_from_real_jvms_parse() {
    use jvm_guard::agent::inspect::{jvm, perfdata};
    for (name, want_gc, want_heap) in [
        ("jdk11-serial.bin", jvm::Gc::Serial, 6_320_816_128),
        (
            "jdk11-serial-big-endian.bin",
            jvm::Gc::Serial,
            6_320_816_128,
        ),
        ("jdk25-g1.bin", jvm::Gc::G1, 6_320_816_128),
    ] {
        let (_, bytes) = inputs("perfdata")
            .into_iter()
            .find(|(p, _)| p.ends_with(name))
            .unwrap_or_else(|| panic!("fuzz/regressions/perfdata/{name} is missing"));
        let data = perfdata::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let gc = jvm::gc(&data);
        assert_eq!(gc, want_gc, "{name}");
        assert_eq!(jvm::max_heap(&data, &gc), Some(want_heap), "{name}");
    }
}
