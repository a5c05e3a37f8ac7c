//! Where the tests find the static build.
/// The static musl build of jvm-guard as shipped (what the image and the tools init container
/// carry): profile-guided, built by scripts/pgo.sh, which scripts/test.sh runs; a missing one
/// fails naming the step.
pub fn musl_binary() -> std::path::PathBuf {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/pgo/x86_64-unknown-linux-musl/jvm-guard");
    assert!(
        path.exists(),
        "{} is missing: run scripts/test.sh, or scripts/pgo.sh (the profile-guided static build)",
        path.display()
    );
    path
}
