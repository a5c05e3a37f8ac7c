//! Where the tests find the static build.
/// The static musl build of jvm-guard (what the image and the tools init container carry),
/// built by scripts/test.sh; a missing one fails naming the step.
pub fn musl_binary() -> std::path::PathBuf {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/x86_64-unknown-linux-musl/release/jvm-guard");
    assert!(
        path.exists(),
        "{} is missing: run scripts/test.sh, or `rustup target add x86_64-unknown-linux-musl && \
         cargo build --release --target x86_64-unknown-linux-musl`",
        path.display()
    );
    path
}
