//! The supervising agent (`jvm-guard exec --supervise`) as a real process: signals reach the
//! child and its status comes back, orphans are reaped, and the verdict in the termination
//! message for a real JVM's OutOfMemoryError and for a kernel OOM kill under a real cgroup
//! memory limit. Needs root (cgroups) and a system `java`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

#[allow(dead_code)]
#[path = "support/cgroup.rs"]
mod cgroup;

use cgroup::MemoryCgroup;

const JVM_GUARD: &str = env!("CARGO_BIN_EXE_jvm-guard");
const MIB: u64 = 1 << 20;

/// `jvm-guard exec --supervise --termination-log <log> -- <command>`, its stdout piped.
fn supervised(log: &Path, command: &[&str]) -> Command {
    let mut cmd = Command::new(JVM_GUARD);
    cmd.args(["exec", "--supervise", "--termination-log"])
        .arg(log)
        .arg("--")
        .args(command)
        .env_remove("JAVA_TOOL_OPTIONS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// An empty termination-message file, as the kubelet makes one.
fn termination_log(dir: &Path) -> PathBuf {
    let path = dir.join("termination-log");
    std::fs::write(&path, "").unwrap();
    path
}

fn wait(child: &mut Child, seconds: u64) -> ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the agent still runs after {seconds} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stderr(child: &mut Child) -> String {
    let mut text = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut text).unwrap();
    text
}

/// The child's first line on stdout (it says it is ready).
fn first_line(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    line.trim().to_string()
}

#[test]
fn signals_reach_the_child_and_its_exit_code_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    for (signal, code) in [
        (libc::SIGTERM, 42),
        (libc::SIGINT, 43),
        (libc::SIGHUP, 44),
        (libc::SIGQUIT, 45),
        (libc::SIGUSR1, 46),
        (libc::SIGUSR2, 47),
    ] {
        let log = termination_log(dir.path());
        let script = format!(
            "trap 'exit {code}' {signal}; echo ready; while :; do sleep 0.05; done",
            signal = signal
        );
        let mut child = supervised(&log, &["sh", "-c", &script]).spawn().unwrap();
        assert_eq!(first_line(&mut child), "ready");
        // SAFETY: kill has no memory preconditions.
        unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        let status = wait(&mut child, 20);
        let err = stderr(&mut child);
        assert_eq!(status.code(), Some(code), "signal {signal}: {err}");
        let message = std::fs::read_to_string(&log).unwrap();
        assert!(
            message.starts_with(&format!("jvm-guard: the command exited with code {code}\n")),
            "{message}"
        );
    }
}

#[test]
fn a_child_killed_by_a_signal_gives_128_plus_the_signal() {
    let dir = tempfile::tempdir().unwrap();
    let log = termination_log(dir.path());
    let mut child = supervised(&log, &["sh", "-c", "kill -9 $$"])
        .spawn()
        .unwrap();
    let status = wait(&mut child, 20);
    assert_eq!(status.code(), Some(137), "{}", stderr(&mut child));
    let message = std::fs::read_to_string(&log).unwrap();
    // Not the kernel's OOM killer: the cgroup's counter did not move.
    assert!(
        message.starts_with("jvm-guard: the command was killed by SIGKILL (exit code 137)\n"),
        "{message}"
    );
    // A program that cannot start: 127 as a shell says it, and the message says why.
    let log = termination_log(dir.path());
    let mut child = supervised(&log, &["/no/such/program"]).spawn().unwrap();
    assert_eq!(wait(&mut child, 20).code(), Some(127));
    let message = std::fs::read_to_string(&log).unwrap();
    assert!(
        message.starts_with("jvm-guard: the command did not start: cannot run /no/such/program"),
        "{message}"
    );
}

/// The state (`R`, `S`, `Z`, ...) and parent of a process.
fn state_and_parent(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let mut fields = after.split(' ');
    let state = fields.next()?.chars().next()?;
    Some((state, fields.next()?.parse().ok()?))
}

#[test]
fn orphans_of_the_child_become_the_agent_s_and_are_reaped() {
    let dir = tempfile::tempdir().unwrap();
    let log = termination_log(dir.path());
    let pidfile = dir.path().join("orphan");
    // The inner shell starts a sleep in the background and exits: the sleep is orphaned.
    let script = format!(
        "sh -c 'sleep 1 & echo $! > {}'; echo ready; sleep 3",
        pidfile.display()
    );
    let mut child = supervised(&log, &["sh", "-c", &script]).spawn().unwrap();
    assert_eq!(first_line(&mut child), "ready");
    let orphan: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let (_, parent) = state_and_parent(orphan).expect("the orphan still sleeps");
    assert_eq!(parent, child.id(), "the agent adopted the orphan");
    // It exits after 1 s; the agent reaps it at once, while its own child still runs.
    std::thread::sleep(Duration::from_millis(1800));
    assert!(child.try_wait().unwrap().is_none());
    match state_and_parent(orphan) {
        None => {}
        Some((state, parent)) => {
            assert!(
                state != 'Z' && parent != child.id(),
                "orphan {orphan} is {state} under {parent}: not reaped"
            )
        }
    }
    assert_eq!(wait(&mut child, 20).code(), Some(0));
}

const OOM_JAVA: &str = r#"
import java.util.ArrayList;
import java.util.List;

public class Oom {
    public static void main(String[] args) throws Exception {
        List<long[]> hold = new ArrayList<>();
        // Slowly first, so that the agent samples a running JVM.
        for (int i = 0; i < 30; i++) {
            hold.add(new long[1 << 16]);
            Thread.sleep(100);
        }
        while (true) {
            hold.add(new long[1 << 16]);
        }
    }
}
"#;

#[test]
fn a_real_jvm_s_heap_oom_leaves_the_heap_verdict_and_the_dump() {
    let dir = tempfile::tempdir().unwrap();
    let log = termination_log(dir.path());
    let dumps = dir.path().join("dumps");
    std::fs::create_dir(&dumps).unwrap();
    std::fs::write(dir.path().join("Oom.java"), OOM_JAVA).unwrap();
    let source = dir.path().join("Oom.java").display().to_string();
    let mut cmd = supervised(&log, &["java", "-Xmx64m", source.as_str()]);
    // What the webhook writes into the container's environment.
    cmd.env(
        "JVM_GUARD_JAVA_OPTIONS",
        format!(
            "-XX:+HeapDumpOnOutOfMemoryError -XX:HeapDumpPath={} -XX:+ExitOnOutOfMemoryError",
            dumps.display()
        ),
    )
    .env("JVM_GUARD_OPTIONS_VAR", "JAVA_TOOL_OPTIONS")
    .env("JVM_GUARD_DUMP_DIR", &dumps)
    .env("JVM_GUARD_DUMP_KEEP", "2")
    .env("JVM_GUARD_CONTAINER", "app");
    let cgroup = MemoryCgroup::new("supervise-heap", 512 * MIB).unwrap_or_else(|e| panic!("{e}"));
    cgroup.enter_on_exec(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let status = wait(&mut child, 120);
    let err = stderr(&mut child);
    assert_eq!(status.code(), Some(3), "{err}");
    let message = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = message.lines().collect();
    assert_eq!(
        lines[0],
        "jvm-guard: heap OutOfMemoryError: the JVM exited 3 (-XX:+ExitOnOutOfMemoryError)",
        "{message}\n{err}"
    );
    // The dump, renamed by the agent at exit (no hook: the options have none).
    let names: Vec<String> = std::fs::read_dir(&dumps)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].starts_with("jvm-guard-") && names[0].ends_with("-app.hprof"));
    assert_eq!(lines[1], format!("dump: {}/{}", dumps.display(), names[0]));
    // The heap at the end, from the counters HotSpot leaves behind: full, at 64 MiB.
    assert!(
        lines[2].starts_with("at the end: heap ") && lines[2].contains(", max 64 MiB;"),
        "{message}"
    );
    assert!(message.contains("\nlast sample ("), "{message}");
    assert!(message.contains("(cgroup v"), "{message}");
    assert!(message.len() <= 4096);
    // The same text on stderr, for `kubectl logs --previous`.
    assert!(err.contains(lines[0]), "{err}");
}

#[test]
fn a_kernel_oom_kill_at_the_cgroup_limit_is_told_apart() {
    let dir = tempfile::tempdir().unwrap();
    let log = termination_log(dir.path());
    // 4 MiB more of touched memory every 100 ms: past 96 MiB in about two seconds.
    let grow = "import time\nheld = []\nwhile True:\n    held.append(b'x' * (4 << 20))\n    time.sleep(0.1)\n";
    let mut cmd = supervised(&log, &["python3", "-c", grow]);
    let cgroup = MemoryCgroup::new("supervise-kill", 96 * MIB).unwrap_or_else(|e| panic!("{e}"));
    cgroup.enter_on_exec(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let status = wait(&mut child, 60);
    let err = stderr(&mut child);
    // The agent survives the kill of its child, the biggest process, and says so.
    assert_eq!(status.code(), Some(137), "{err}");
    let message = std::fs::read_to_string(&log).unwrap();
    assert!(
        message.starts_with(
            "jvm-guard: killed by the kernel at the container's memory limit (SIGKILL, exit code 137; OOM kills 0 -> 1)\n"
        ),
        "{message}\n{err}"
    );
    assert!(
        message.contains("raise jvm-guard.io/non-heap-reserve"),
        "{message}"
    );
    assert!(message.contains("of a 96 MiB limit (cgroup v"), "{message}");
}
