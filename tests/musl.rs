//! The static musl build of the tools binary, which the init container copies into any image
//! (distroless included). `scripts/test.sh` builds it before the tests run.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;

fn musl_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/x86_64-unknown-linux-musl/release/jvm-guard");
    assert!(
        path.exists(),
        "{} is missing: run scripts/test.sh, or `rustup target add x86_64-unknown-linux-musl && \
         cargo build --release --target x86_64-unknown-linux-musl`",
        path.display()
    );
    path
}

/// Program header types of a little-endian ELF64 file.
fn program_header_types(elf: &[u8]) -> Vec<u32> {
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(elf[4], 2, "not ELF64");
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum)
        .map(|i| {
            let o = phoff + i * phentsize;
            u32::from_le_bytes(elf[o..o + 4].try_into().unwrap())
        })
        .collect()
}

#[test]
fn the_musl_binary_is_static() {
    let elf = std::fs::read(musl_binary()).unwrap();
    let types = program_header_types(&elf);
    assert!(!types.is_empty());
    assert!(!types.contains(&PT_INTERP), "has an interpreter: {types:?}");
    assert!(
        !types.contains(&PT_DYNAMIC),
        "has a dynamic section: {types:?}"
    );
    // The check can fail: the test binary itself is dynamically linked.
    let this = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    assert!(program_header_types(&this).contains(&PT_INTERP));
}

#[test]
fn runs_alone_in_an_empty_root() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(musl_binary(), dir.path().join("jvm-guard")).unwrap();
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = if root {
        let root_dir = std::ffi::CString::new(dir.path().as_os_str().as_encoded_bytes()).unwrap();
        let mut c = Command::new("/jvm-guard");
        // Nothing else exists in this root: no libc, no loader, no shell.
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            c.pre_exec(move || {
                if libc::chroot(root_dir.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        c
    } else {
        Command::new(dir.path().join("jvm-guard"))
    };
    let out = cmd
        .env_clear()
        .args([
            "exec",
            "--rlimit",
            "nofile=256",
            "--",
            "/jvm-guard",
            "--version",
        ])
        .output()
        .expect("the musl binary starts");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("jvm-guard "));
    assert!(root, "ran without chroot (not root): only half the proof");
}
