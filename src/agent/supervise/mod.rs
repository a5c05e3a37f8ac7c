//! `jvm-guard exec --supervise`: the agent stays as the container's init
//! (docs/agent.md#the-supervising-agent). After what `exec` does at start ([`super::exec`]) it
//! starts the command as its child, forwards every signal to it, reaps every child (orphans
//! included), samples the JVM and the cgroup every [`SAMPLE_EVERY`] into the termination
//! message, writes the verdict when the child exits and exits with its status.

pub mod message;
pub mod sample;
pub mod signals;
mod termination;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use self::message::{decide, message, Verdict};
use self::sample::{JvmSample, Sample};
use self::signals::Ended;
use self::termination::TerminationLog;
use super::cgroup::Roots;
use super::inspect::{self, JvmErrorKind, HOTSPOT_TMPDIR};
use super::rotate::rotate;
use crate::config::rlimit::Rlimit;

/// How often the JVM and the cgroup are sampled: one capped read of a ~32 KiB file and five
/// small cgroup files, so the cost is negligible at this rate, and a kill leaves a sample at
/// most this old.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// The first sample comes sooner: a JVM that dies at start still leaves one.
const FIRST_SAMPLE: Duration = Duration::from_secs(1);

/// Runs `command` supervised; the agent's exit code.
pub fn run(limits: &[Rlimit], command: &[OsString], termination_log: Option<&Path>) -> u8 {
    let program = command
        .first()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Blocked before anything starts, so no signal is lost in between.
    let blocked = match signals::block() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("jvm-guard exec: cannot block signals: {e}");
            return 126;
        }
    };
    signals::become_subreaper();
    let prepared = super::exec::prepare(limits, command);
    // After the agent's line: that one stays the first.
    let mut log = termination_log.and_then(TerminationLog::open);
    let prepared = match prepared {
        Ok(p) => p,
        Err(e) => return not_started(&mut log, &program, &e),
    };
    let roots = Roots::default();
    let kills_before = sample::cgroup_sample(&roots).ok().and_then(|c| c.oom_kills);
    let mut cmd = prepared.command;
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return not_started(&mut log, &program, &e),
    };
    let pid = child.id();
    // Reaped below with every other child, not through `child`.
    drop(child);

    let mut last: Option<Sample> = None;
    let mut next = Instant::now() + FIRST_SAMPLE;
    let status = loop {
        if let Some(status) = signals::reap(pid) {
            break status;
        }
        let now = Instant::now();
        if now >= next {
            let hint = last
                .as_ref()
                .and_then(|s| s.jvm.as_ref().ok())
                .map(|j| j.pid);
            let s = take(hint.unwrap_or(pid), &roots);
            if let Some(log) = &mut log {
                log.write(&message(&Verdict::Running, Some(&s), None, None));
            }
            last = Some(s);
            next = Instant::now() + SAMPLE_EVERY;
            continue;
        }
        match blocked.wait(next - now) {
            None | Some(libc::SIGCHLD) => {}
            Some(sig) => signals::send(pid, sig),
        }
    };

    let ended = Ended::from_wait_status(status);
    let jvm_pid = last
        .as_ref()
        .and_then(|s| s.jvm.as_ref().ok())
        .map_or(pid, |j| j.pid);
    // HotSpot removes its file on a normal exit, not on -XX:+ExitOnOutOfMemoryError.
    let end = jvm(Some(jvm_pid)).ok();
    let kills_after = sample::cgroup_sample(&roots).ok().and_then(|c| c.oom_kills);
    let exit_on_oom = match end
        .as_ref()
        .or(last.as_ref().and_then(|s| s.jvm.as_ref().ok()))
    {
        Some(j) => j.exit_on_oom,
        // No counters: what the agent set, as HotSpot would read it.
        None => prepared
            .set
            .iter()
            .any(|(_, v)| v.contains("-XX:+ExitOnOutOfMemoryError")),
    };
    let mut dump = None;
    if ended == Ended::Exited(message::EXIT_ON_OOM_CODE) {
        if let Some(d) = &prepared.dumps {
            // The hook ran if there is a shell; without one the dump is renamed now, so the
            // verdict names the file that stays.
            let dir = Path::new(&d.dir);
            let _ = rotate(dir, d.keep as usize, &d.container, SystemTime::now());
            dump = newest_hprof(dir);
        }
    }
    let verdict = decide(ended, exit_on_oom, (kills_before, kills_after), dump);
    let dump_dir = prepared.dumps.as_ref().map(|d| d.dir.as_str());
    let text = message(&verdict, last.as_ref(), end.as_ref(), dump_dir);
    if let Some(log) = &mut log {
        log.write(&text);
    }
    eprint!("{text}");
    ended.exit_code().clamp(0, 255) as u8
}

/// Reports a command that could not start, like a shell: 127 when the program is not found,
/// 126 when it cannot be run.
fn not_started(log: &mut Option<TerminationLog>, program: &str, e: &std::io::Error) -> u8 {
    let why = format!("cannot run {program}: {e}");
    eprintln!("jvm-guard exec: {why}");
    if let Some(log) = log {
        log.write(&message(&Verdict::NotStarted(why), None, None, None));
    }
    if e.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    }
}

/// One sample: the JVM's counters (`pid`'s, else the only JVM running) and the cgroup's.
fn take(pid: u32, roots: &Roots) -> Sample {
    let jvm = jvm(Some(pid)).or_else(|_| jvm(None));
    Sample {
        at: SystemTime::now(),
        jvm,
        cgroup: sample::cgroup_sample(roots),
    }
}

fn jvm(pid: Option<u32>) -> Result<JvmSample, String> {
    let mut tmpdirs = vec![PathBuf::from(HOTSPOT_TMPDIR)];
    if let Some(tmp) = std::env::var_os("TMPDIR").filter(|t| !t.is_empty()) {
        let tmp = PathBuf::from(tmp);
        if !tmpdirs.contains(&tmp) {
            tmpdirs.push(tmp);
        }
    }
    let options = inspect::Options {
        pid,
        tmpdirs,
        dumps: None,
        cgroup: Roots::default(),
        proc: PathBuf::from("/proc"),
    };
    let (pid, data) = inspect::perf_data(&options).map_err(|e| match e.kind {
        // The long explanation is `inspect`'s to give.
        JvmErrorKind::NotFound => "no performance data of a running JVM in /tmp".to_string(),
        _ => e.message,
    })?;
    Ok(sample::jvm_sample(pid, &data))
}

/// The name of the newest `*.hprof` in `dir`.
fn newest_hprof(dir: &Path) -> Option<String> {
    let entries = std::fs::read_dir(dir).ok()?;
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let meta = e.metadata().ok()?;
            (name.ends_with(".hprof") && meta.is_file()).then(|| (meta.modified().ok(), name))
        })
        .max()
        .map(|(_, name)| name)
}
