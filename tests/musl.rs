//! The static musl builds of the tools binary, which the init container copies into any image
//! (distroless included), for both platforms of the image (SPEC §10): x86_64, run here, and
//! aarch64, run with qemu-user. `scripts/test.sh` builds both before the tests run.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "support/musl.rs"]
mod support;

use support::musl_binary;

const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;

fn aarch64_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/aarch64-unknown-linux-musl/release/jvm-guard");
    assert!(
        path.exists(),
        "{} is missing: run scripts/test.sh, or `scripts/install-cross-tools.sh cargo zigbuild \
         --release --target aarch64-unknown-linux-musl`",
        path.display()
    );
    path
}

/// Runs the aarch64 binary with qemu-user directly (no binfmt_misc registration needed), in an
/// empty environment but `env`. A program it execs is run by the kernel: a host one natively.
fn qemu_aarch64(args: &[&str], env: &[(&str, &str)], cwd: &Path) -> Output {
    let qemu =
        std::env::var_os("JVM_GUARD_QEMU_AARCH64").unwrap_or_else(|| "qemu-aarch64-static".into());
    Command::new(&qemu)
        .arg(aarch64_binary())
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e}; run scripts/test.sh (apt-get install qemu-user-static), or \
                 set JVM_GUARD_QEMU_AARCH64",
                qemu.to_string_lossy()
            )
        })
}

/// Little-endian fields of an ELF file, at byte offset `o`.
fn u16_at(elf: &[u8], o: usize) -> usize {
    u16::from_le_bytes([elf[o], elf[o + 1]]) as usize
}

fn u32_at(elf: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(elf[o..o + 4].try_into().unwrap())
}

fn u64_at(elf: &[u8], o: usize) -> usize {
    u64::from_le_bytes(elf[o..o + 8].try_into().unwrap()) as usize
}

fn elf_machine(elf: &[u8]) -> u16 {
    u16_at(elf, 0x12) as u16
}

/// Program header types of a little-endian ELF64 file.
fn program_header_types(elf: &[u8]) -> Vec<u32> {
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(elf[4], 2, "not ELF64");
    let phoff = u64_at(elf, 0x20);
    let (phentsize, phnum) = (u16_at(elf, 0x36), u16_at(elf, 0x38));
    (0..phnum)
        .map(|i| u32_at(elf, phoff + i * phentsize))
        .collect()
}

fn assert_static(elf: &[u8]) {
    let types = program_header_types(elf);
    assert!(!types.is_empty());
    assert!(!types.contains(&PT_INTERP), "has an interpreter: {types:?}");
    assert!(
        !types.contains(&PT_DYNAMIC),
        "has a dynamic section: {types:?}"
    );
}

#[test]
fn the_musl_binary_is_static() {
    let elf = std::fs::read(musl_binary()).unwrap();
    assert_eq!(elf_machine(&elf), EM_X86_64);
    assert_static(&elf);
    // The check can fail: the test binary itself is dynamically linked.
    let this = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    assert!(program_header_types(&this).contains(&PT_INTERP));
}

/// Section names of a little-endian ELF64 file (kept by `strip`).
fn section_names(elf: &[u8]) -> Vec<String> {
    let (shoff, shentsize, shnum, shstrndx) = (
        u64_at(elf, 0x28),
        u16_at(elf, 0x3a),
        u16_at(elf, 0x3c),
        u16_at(elf, 0x3e),
    );
    let names = u64_at(elf, shoff + shstrndx * shentsize + 0x18);
    (0..shnum)
        .map(|i| {
            let start = names + u32_at(elf, shoff + i * shentsize) as usize;
            let len = elf[start..].iter().position(|&b| b == 0).unwrap();
            String::from_utf8_lossy(&elf[start..start + len]).into_owned()
        })
        .collect()
}

/// The shipped binary is the one built with the profile, not the instrumented one of the
/// training run (which counts every branch and writes a `.profraw` file wherever it exits).
#[test]
fn the_shipped_binary_is_not_the_instrumented_one() {
    let shipped = section_names(&std::fs::read(musl_binary()).unwrap());
    assert!(shipped.iter().any(|s| s == ".text"), "{shipped:?}");
    let counters: Vec<_> = shipped
        .iter()
        .filter(|s| s.starts_with("__llvm_prf"))
        .collect();
    assert!(
        counters.is_empty(),
        "profile counters in the shipped binary: {counters:?}"
    );
    // The check can fail: the training's binary, which scripts/pgo.sh builds first, has them.
    let instrumented = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/pgo/generate/x86_64-unknown-linux-musl/release/jvm-guard");
    let instrumented = section_names(
        &std::fs::read(&instrumented)
            .unwrap_or_else(|e| panic!("{}: {e}: run scripts/pgo.sh", instrumented.display())),
    );
    assert!(
        instrumented.iter().any(|s| s == "__llvm_prf_cnts"),
        "{instrumented:?}"
    );
}

#[test]
fn the_aarch64_binary_is_static() {
    let elf = std::fs::read(aarch64_binary()).unwrap();
    assert_eq!(elf_machine(&elf), EM_AARCH64, "not an AArch64 ELF");
    assert_static(&elf);
}

/// Runs `argv` in a root holding only `files` (source, name in the root): chrooted when root,
/// else from the directory (only half the proof, which the callers then refuse).
fn run_in_empty_root(files: &[(PathBuf, &str)], argv: &[&str]) -> (Output, bool) {
    let dir = tempfile::tempdir().unwrap();
    for (source, name) in files {
        std::fs::copy(source, dir.path().join(name)).unwrap();
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = if root {
        let root_dir = std::ffi::CString::new(dir.path().as_os_str().as_encoded_bytes()).unwrap();
        let mut c = Command::new(argv[0]);
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
        Command::new(dir.path().join(argv[0].trim_start_matches('/')))
    };
    let out = cmd
        .env_clear()
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("{} does not start: {e}", argv[0]));
    (out, root)
}

#[test]
fn runs_alone_in_an_empty_root() {
    let (out, root) = run_in_empty_root(
        &[(musl_binary(), "jvm-guard")],
        &[
            "/jvm-guard",
            "exec",
            "--rlimit",
            "nofile=256",
            "--",
            "/jvm-guard",
            "--version",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("jvm-guard "));
    assert!(root, "ran without chroot (not root): only half the proof");
}

/// qemu-aarch64-static is itself static: in a root with only it and the binary, the binary
/// finds nothing else either, and its wrapper execs the next program through it.
#[test]
fn the_aarch64_binary_runs_alone_in_an_empty_root() {
    let qemu = std::env::var_os("JVM_GUARD_QEMU_AARCH64")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::split_paths(&std::env::var_os("PATH")?)
                .map(|dir| dir.join("qemu-aarch64-static"))
                .find(|path| path.exists())
        })
        .expect(
            "qemu-aarch64-static not found: run scripts/test.sh (apt-get install \
             qemu-user-static), or set JVM_GUARD_QEMU_AARCH64",
        );
    assert!(
        qemu.exists(),
        "{} not found: run scripts/test.sh (apt-get install qemu-user-static)",
        qemu.display()
    );
    let (out, root) = run_in_empty_root(
        &[(qemu, "qemu-aarch64"), (aarch64_binary(), "jvm-guard")],
        &[
            "/qemu-aarch64",
            "/jvm-guard",
            "exec",
            "--rlimit",
            "nofile=256",
            "--",
            "/qemu-aarch64",
            "/jvm-guard",
            "--version",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("jvm-guard "));
    assert!(root, "ran without chroot (not root): only half the proof");
}

#[test]
fn the_aarch64_binary_runs_under_qemu() {
    let dir = tempfile::tempdir().unwrap();
    let out = qemu_aarch64(&["--version"], &[], dir.path());
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        concat!("jvm-guard ", env!("CARGO_PKG_VERSION"), "\n")
    );
    // The rlimit wrapper: aarch64 code sets the limit, then execs the host's shell.
    let out = qemu_aarch64(
        &[
            "exec",
            "--rlimit",
            "nofile=256",
            "--",
            "/bin/sh",
            "-c",
            "ulimit -n",
        ],
        &[],
        dir.path(),
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "256\n");
}

/// ring's aarch64 assembly, cross-compiled by zig: the certificates it makes are checked here,
/// by the host's ring.
#[test]
fn the_aarch64_binary_signs_what_the_host_verifies() {
    use pki_types::pem::PemObject;
    use pki_types::CertificateDer;
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};

    let dir = tempfile::tempdir().unwrap();
    let out = qemu_aarch64(&["certs", "--out", "certs"], &[], dir.path());
    assert!(out.status.success(), "{out:?}");
    let read = |name: &str| std::fs::read(dir.path().join("certs").join(name)).unwrap();
    let (ca_pem, leaf_pem) = (read("ca.crt"), read("tls.crt"));
    let ca_der = CertificateDer::from_pem_slice(&ca_pem).unwrap();
    let leaf_der = CertificateDer::from_pem_slice(&leaf_pem).unwrap();
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
    let (_, leaf) = x509_parser::parse_x509_certificate(&leaf_der).unwrap();
    assert_eq!(leaf.issuer(), ca.subject());
    let ca_key = UnparsedPublicKey::new(
        &ECDSA_P256_SHA256_ASN1,
        ca.public_key().subject_public_key.data.as_ref(),
    );
    for cert in [&ca, &leaf] {
        ca_key
            .verify(cert.tbs_certificate.as_ref(), &cert.signature_value.data)
            .expect("the CA's signature verifies");
    }
    // The serving key belongs to its certificate, as `serve` would load them.
    jvm_guard::webhook::tls::load_pem(&leaf_pem, &read("tls.key")).unwrap();
}

/// arm64 kernels run with 4, 16 or 64 KiB pages, and jemalloc refuses to start on pages larger
/// than it was built for: the aarch64 build assumes 64 KiB (.cargo/config.toml), which works
/// on all three.
#[test]
fn the_aarch64_allocator_starts_on_64k_page_kernels() {
    let dir = tempfile::tempdir().unwrap();
    // jemalloc prints its statistics at exit (the `_rjem_` prefix of tikv-jemalloc-sys).
    let out = qemu_aarch64(
        &["--version"],
        &[("_RJEM_MALLOC_CONF", "stats_print:true")],
        dir.path(),
    );
    assert!(out.status.success(), "{out:?}");
    let stats = String::from_utf8_lossy(&out.stderr);
    assert!(stats.contains("\nPage size: 65536\n"), "{stats}");
}

/// The published image is one index of a linux/amd64 and a linux/arm64 manifest, each holding
/// the static binary of its architecture (tests/node/images.py `index`, an OCI image layout).
#[test]
fn both_binaries_make_one_two_platform_image() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node/images.py"))
        .arg("index")
        .arg("--out")
        .arg(dir.path())
        .arg("--amd64")
        .arg(musl_binary())
        .arg("--arm64")
        .arg(aarch64_binary())
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "{out:?}");
    // Every blob read is checked against its digest.
    let blob = |descriptor: &serde_json::Value| -> Vec<u8> {
        let digest = descriptor["digest"].as_str().unwrap();
        let hex = digest.strip_prefix("sha256:").unwrap();
        let data = std::fs::read(dir.path().join("blobs/sha256").join(hex)).unwrap();
        let actual = ring::digest::digest(&ring::digest::SHA256, &data);
        let actual: String = actual.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(actual, hex);
        assert_eq!(descriptor["size"], data.len());
        data
    };
    let json = |data: Vec<u8>| -> serde_json::Value { serde_json::from_slice(&data).unwrap() };
    let layout = json(std::fs::read(dir.path().join("index.json")).unwrap());
    let image = &layout["manifests"][0];
    assert_eq!(
        image["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let index = json(blob(image));
    let manifests = index["manifests"].as_array().unwrap();
    let platforms: Vec<_> = manifests
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(platforms, ["amd64", "arm64"]);
    for (entry, binary) in manifests.iter().zip([musl_binary(), aarch64_binary()]) {
        let manifest = json(blob(entry));
        let config = json(blob(&manifest["config"]));
        assert_eq!(config["architecture"], entry["platform"]["architecture"]);
        assert_eq!(config["os"], "linux");
        let layer = blob(&manifest["layers"][0]);
        let binary = std::fs::read(binary).unwrap();
        // tar puts a file's bytes on a 512-byte boundary.
        assert!(
            (0..layer.len().saturating_sub(binary.len()))
                .step_by(512)
                .any(|o| layer[o..o + binary.len()] == binary[..]),
            "the {} layer holds its binary",
            config["architecture"]
        );
    }
}
