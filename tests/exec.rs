//! The rlimit wrapper and the tools installer as real processes.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const JVM_GUARD: &str = env!("CARGO_BIN_EXE_jvm-guard");

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn wrapper(args: &[&str]) -> Command {
    let mut cmd = Command::new(JVM_GUARD);
    cmd.arg("exec").args(args);
    cmd
}

#[test]
fn sets_soft_and_hard_and_keeps_the_pid() {
    let child = wrapper(&[
        "--rlimit",
        "nofile=1024:2048",
        "--",
        "sh",
        "-c",
        "ulimit -Sn; ulimit -Hn; echo $$",
    ])
    .stdout(std::process::Stdio::piped())
    .spawn()
    .expect("wrapper starts");
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), format!("1024\n2048\n{pid}\n"));
}

#[test]
fn arguments_reach_the_program_unchanged() {
    let args = [
        "a b",
        "\"quoted\"",
        "'single'",
        "$HOME",
        "x;y",
        "$(id)",
        "",
        "-- --",
    ];
    let mut cmd = wrapper(&["--rlimit", "core=0", "--", "printf", "[%s]\\n"]);
    cmd.args(args);
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let expected: String = args.iter().map(|a| format!("[{a}]\n")).collect();
    assert_eq!(text(&out.stdout), expected);
}

#[test]
fn unlimited_and_several_limits() {
    let out = wrapper(&[
        "--rlimit",
        "core=unlimited",
        "--rlimit",
        "nofile=512",
        "--",
        "sh",
        "-c",
        "ulimit -Sc; ulimit -Hc; ulimit -Sn; ulimit -Hn",
    ])
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "unlimited\nunlimited\n512\n512\n");
}

/// The binary, readable and executable by any user (the target dir may not be).
fn world_executable_copy(dir: &Path) -> PathBuf {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = dir.join("jvm-guard");
    std::fs::copy(JVM_GUARD, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    copy
}

#[test]
fn a_limit_above_the_hard_limit_is_lowered_and_the_app_still_starts() {
    let dir = tempfile::tempdir().unwrap();
    let binary = world_executable_copy(dir.path());
    let mut cmd = Command::new(&binary);
    cmd.args(["exec", "--rlimit", "nofile=4096:8192", "--"])
        .args(["sh", "-c", "ulimit -Sn; ulimit -Hn"]);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 1024,
                rlim_max: 2048,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // Root may raise any limit: run as nobody so the raise is refused, as in a pod.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        cmd.uid(65534).gid(65534);
    }
    let out: Output = cmd.output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "2048\n2048\n");
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("jvm-guard: nofile=4096:8192 not allowed")
            && stderr.contains("set nofile=2048:2048"),
        "{stderr}"
    );
}

#[test]
fn invalid_flags_exit_2_before_running_anything() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let touch = format!("touch {}", marker.display());
    for bad in [
        vec!["--rlimit", "nofile=10:5", "--", "sh", "-c", touch.as_str()],
        vec!["--rlimit", "files=10", "--", "sh", "-c", touch.as_str()],
        vec!["--rlimit", "nofile=lots", "--", "sh", "-c", touch.as_str()],
        vec!["--rlimit", "nofile=10"],
        vec!["--bogus", "--", "sh", "-c", touch.as_str()],
    ] {
        let out = wrapper(&bad).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", text(&out.stderr));
        assert!(!text(&out.stderr).is_empty());
        assert!(!marker.exists(), "{bad:?} ran the program");
    }
}

#[test]
fn a_missing_program_exits_127() {
    let out = wrapper(&["--", "/no/such/program"]).output().unwrap();
    assert_eq!(out.status.code(), Some(127));
    assert!(text(&out.stderr).contains("/no/such/program"));
}

#[test]
fn install_tools_copies_a_runnable_binary() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(JVM_GUARD)
        .arg("install-tools")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let installed = dir.path().join("jvm-guard");
    let mode = std::fs::metadata(&installed).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o755);
    let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(entries.len(), 1, "no temporary file left behind");
    let version = Command::new(&installed).arg("--version").output().unwrap();
    assert!(text(&version.stdout).starts_with("jvm-guard "));

    let missing = Command::new(JVM_GUARD)
        .args(["install-tools", "/no/such/dir"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(text(&missing.stderr).contains("/no/such/dir"));
}
