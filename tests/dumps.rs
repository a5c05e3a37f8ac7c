//! `jvm-guard agent-dumps` (the container's side of `jvm-guard dumps`) on real JVMs: a live
//! heap dump through the HotSpot attach protocol with no JDK tool, checked as HPROF and for
//! the JVM's own objects, then sent compressed with its SHA-256 — on every JDK under test.
//! The exec API's side is in tests/node (`dumps take` and `pull` from a pod).
//!
//! Needs the JDKs of `scripts/install-jdks.sh` and javac; a missing one fails naming the step.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use jvm_guard::agent::dumps::{Listing, SendLine, Taken};
use jvm_guard::agent::hprof;

#[path = "support/jdks.rs"]
mod jdks;

const JVM_GUARD: &str = env!("CARGO_BIN_EXE_jvm-guard");
const MARKER: &str = "jvm-guard-dumps-marker-4711";

const HOLD_JAVA: &str = r#"
public class Hold {
    static final java.util.List<Object> KEEP = new java.util.ArrayList<>();

    public static void main(String[] args) throws Exception {
        KEEP.add(new StringBuilder("jvm-guard-dumps-").append("marker-4711").toString());
        for (int i = 0; i < 8; i++) {
            KEEP.add(new byte[1 << 20]);
        }
        System.out.println("ready");
        System.out.flush();
        Thread.sleep(300_000);
    }
}
"#;

/// A JVM holding [`MARKER`], killed when dropped.
struct Jvm(Child);

impl Drop for Jvm {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(home: &Path, classes: &Path, flags: &[&str]) -> Jvm {
    let mut child = Command::new(home.join("bin/java"))
        .env_remove("JAVA_TOOL_OPTIONS")
        .args(["-Xmx128m"])
        .args(flags)
        .arg("-cp")
        .arg(classes)
        .arg("Hold")
        .current_dir(classes)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("java");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    Jvm(child)
}

fn agent_dumps(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(JVM_GUARD)
        .arg("agent-dumps")
        .arg("--dir")
        .arg(dir)
        .args(args)
        .output()
        .unwrap()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_live_heap_dump_is_taken_without_jdk_tools_and_sent_intact_on_every_jdk() {
    let classes = tempfile::tempdir().unwrap();
    jdks::compile(classes.path(), "Hold", HOLD_JAVA);
    for (label, home) in jdks::jdk_homes() {
        let dumps = tempfile::tempdir().unwrap();
        let jvm = start(&home, classes.path(), &[]);
        let pid = jvm.0.id().to_string();
        let out = agent_dumps(dumps.path(), &["--pid", &pid, "take", "--container", "app"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{label}: take: {stderr}");
        let taken: Taken = serde_json::from_slice(&out.stdout).unwrap();
        assert!(
            taken.name.ends_with("-app-live.hprof"),
            "{label}: {taken:?}"
        );
        let path = dumps.path().join(&taken.name);

        // A complete HPROF of this JVM's heap: its marker string is in it.
        let summary = hprof::check_file(&path).unwrap();
        assert!(summary.complete, "{label}: {summary:?}");
        assert!(summary.heap_records >= 1, "{label}: {summary:?}");
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, taken.bytes, "{label}");
        assert!(
            contains(&bytes, MARKER.as_bytes()),
            "{label}: no marker in the dump"
        );

        // Listed as complete.
        let out = agent_dumps(dumps.path(), &["list"]);
        let listing: Listing = serde_json::from_slice(&out.stdout).unwrap();
        let listed = listing.files.iter().find(|f| f.name == taken.name).unwrap();
        assert_eq!(listed.complete, Some(true), "{label}");

        // Sent: gzip on stdout, the SHA-256 of the file on stderr.
        let out = agent_dumps(dumps.path(), &["send", &taken.name]);
        assert!(out.status.success(), "{label}: send");
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&out.stdout[..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(back == bytes, "{label}: the file came back different");
        assert!(
            out.stdout.len() * 2 < bytes.len(),
            "{label}: not compressed"
        );
        let last = String::from_utf8_lossy(&out.stderr);
        let sent = match serde_json::from_str(last.lines().last().unwrap()).unwrap() {
            SendLine::Sent(sent) => sent,
            other => panic!("{label}: {other:?}"),
        };
        let sha = ring::digest::digest(&ring::digest::SHA256, &bytes);
        assert_eq!(
            sent.sha256,
            jvm_guard::agent::dumps::hex(sha.as_ref()),
            "{label}"
        );
        drop(jvm);
    }
}

#[test]
fn a_jvm_that_refuses_attach_is_named_with_the_reason() {
    let classes = tempfile::tempdir().unwrap();
    jdks::compile(classes.path(), "Hold", HOLD_JAVA);
    let (_, home) = jdks::jdk_homes().remove(0);
    let dumps = tempfile::tempdir().unwrap();
    let jvm = start(&home, classes.path(), &["-XX:+DisableAttachMechanism"]);
    let pid = jvm.0.id().to_string();
    let out = agent_dumps(dumps.path(), &["--pid", &pid, "take"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("DisableAttachMechanism") && stderr.contains(&pid),
        "{stderr}"
    );
    assert_eq!(std::fs::read_dir(dumps.path()).unwrap().count(), 0);
    // The JVM is still running: SIGQUIT only made it print its threads.
    let mut jvm = jvm;
    assert!(jvm.0.try_wait().unwrap().is_none());
}
