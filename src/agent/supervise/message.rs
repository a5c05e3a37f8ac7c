//! The termination message: while the JVM runs, its latest sample; when it exits, the verdict
//! (what ended it, what it had, what to change). The kubelet shows the file's content as the
//! container's `lastState.terminated.message` and reads at most 4096 bytes of it.

use super::sample::{CgroupSample, JvmSample, Sample};
use super::signals::{name, Ended};
use crate::agent::inspect::bytes;
use crate::agent::rotate::timestamp;
use crate::escape::escape;

/// What the kubelet reads of a termination-message file.
pub const MAX_BYTES: usize = 4096;

/// The HotSpot exit code of `-XX:+ExitOnOutOfMemoryError`.
pub const EXIT_ON_OOM_CODE: i32 = 3;

/// How the verdict's first line starts, per kind: `serve`'s pod watcher reads them back from
/// `lastState.terminated.message` ([`crate::watch`]).
pub const HEAP_OOM_LINE: &str = "jvm-guard: heap OutOfMemoryError";
pub const KERNEL_KILL_LINE: &str = "jvm-guard: killed by the kernel";
pub const NO_VERDICT_LINE: &str = "jvm-guard: no verdict";

/// What ended the JVM, as far as the agent can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing yet: the JVM runs. What stays in the file when the whole container is killed,
    /// the agent with it.
    Running,
    /// Exit 3 with `-XX:+ExitOnOutOfMemoryError`: the newest heap dump, if any.
    HeapOom { dump: Option<String> },
    /// `SIGKILL` while the cgroup's OOM-kill counter rose from `before` to `after`.
    KernelKill { before: u64, after: u64 },
    /// Any other end.
    Exit(Ended),
    /// The command could not be started.
    NotStarted(String),
}

/// The verdict on how the child `ended`: `exit_on_oom` says whether the JVM ran with
/// `-XX:+ExitOnOutOfMemoryError`; `kills` the cgroup's OOM-kill counter at start and now.
pub fn decide(
    ended: Ended,
    exit_on_oom: bool,
    kills: (Option<u64>, Option<u64>),
    dump: Option<String>,
) -> Verdict {
    match (ended, kills) {
        (Ended::Exited(EXIT_ON_OOM_CODE), _) if exit_on_oom => Verdict::HeapOom { dump },
        (Ended::Killed(libc::SIGKILL), (Some(before), Some(after))) if after > before => {
            Verdict::KernelKill { before, after }
        }
        (ended, _) => Verdict::Exit(ended),
    }
}

/// The file's content for `verdict`: `last` is the latest periodic sample, `end` the JVM's
/// counters read after it exited (HotSpot leaves its file behind when it exits on an
/// OutOfMemoryError), `dump_dir` where the dump is. At most [`MAX_BYTES`].
pub fn message(
    verdict: &Verdict,
    last: Option<&Sample>,
    end: Option<&JvmSample>,
    dump_dir: Option<&str>,
) -> String {
    let at = |s: &Sample| timestamp(s.at);
    let mut lines: Vec<String> = Vec::new();
    let sample_lines = |lines: &mut Vec<String>, prefix: &str| match last {
        Some(s) => {
            lines.push(format!("{prefix} ({}):", at(s)));
            match &s.jvm {
                Ok(j) => lines.push(format!("  {}", jvm_line(j))),
                Err(why) => lines.push(format!("  JVM: {}", escape(why))),
            }
            match &s.cgroup {
                Ok(c) => lines.push(format!("  {}", cgroup_line(c))),
                Err(why) => lines.push(format!("  container: {}", escape(why))),
            }
        }
        None => lines.push(format!("{prefix}: none (the JVM ran less than one sample)")),
    };
    match verdict {
        Verdict::Running => {
            lines.push(format!(
                "{NO_VERDICT_LINE}: the container stopped with the agent (when the reason is \
                 OOMKilled, the kernel killed the whole container at its memory limit)"
            ));
            sample_lines(&mut lines, "last sample");
        }
        Verdict::HeapOom { dump } => {
            lines.push(format!(
                "{HEAP_OOM_LINE}: the JVM exited 3 (-XX:+ExitOnOutOfMemoryError)"
            ));
            lines.push(match (dump, dump_dir) {
                (Some(d), Some(dir)) => format!("dump: {}/{}", escape(dir), escape(d)),
                (Some(d), None) => format!("dump: {}", escape(d)),
                (None, Some(dir)) => format!("dump: none in {}", escape(dir)),
                (None, None) => "dump: no dump directory".to_string(),
            });
            if let Some(j) = end {
                lines.push(format!("at the end: {}", jvm_line(j)));
            }
            sample_lines(&mut lines, "last sample");
            lines.push(
                "what to change: the dump shows what filled the heap; for a larger heap, raise \
                 the memory limit or jvm-guard.io/max-ram-percentage"
                    .to_string(),
            );
        }
        Verdict::KernelKill { before, after } => {
            lines.push(format!(
                "{KERNEL_KILL_LINE} at the container's memory limit (SIGKILL, exit code 137; \
                 OOM kills {before} -> {after})"
            ));
            if let Some(line) = last.and_then(non_heap_line) {
                lines.push(line);
            }
            sample_lines(&mut lines, "last sample");
            lines.push(
                "what to change: the JVM needs more memory outside its heap than the limit \
                 leaves: raise jvm-guard.io/non-heap-reserve (the heap gets smaller) or the \
                 memory limit"
                    .to_string(),
            );
        }
        Verdict::Exit(ended) => {
            lines.push(match ended {
                Ended::Exited(code) => format!("jvm-guard: the command exited with code {code}"),
                Ended::Killed(sig) => format!(
                    "jvm-guard: the command was killed by {} (exit code {})",
                    name(*sig),
                    ended.exit_code()
                ),
            });
            sample_lines(&mut lines, "last sample");
        }
        Verdict::NotStarted(why) => {
            lines.push(format!(
                "jvm-guard: the command did not start: {}",
                escape(why)
            ));
        }
    }
    let mut text = lines.join("\n");
    text.push('\n');
    truncate(text, MAX_BYTES)
}

/// `text` cut to at most `max` bytes on a character boundary.
fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

fn maybe(v: Option<u64>) -> String {
    v.map_or_else(|| "?".to_string(), bytes)
}

fn jvm_line(j: &JvmSample) -> String {
    let mut parts = vec![format!(
        "heap {} used, {} committed, max {}",
        maybe(j.heap_used),
        maybe(j.heap_committed),
        maybe(j.heap_max)
    )];
    if let Some(m) = j.metaspace_used {
        parts.push(format!("metaspace {}", bytes(m)));
    }
    if let Some(t) = j.threads {
        parts.push(format!("{t} threads"));
    }
    if let Some(gc) = j.gc_time {
        let count = j
            .gc_count
            .map(|c| format!(" in {c} pauses"))
            .unwrap_or_default();
        parts.push(format!("GC {:.1} s{count}", gc.as_secs_f64()));
    }
    format!("{} (JVM pid {})", parts.join("; "), j.pid)
}

fn cgroup_line(c: &CgroupSample) -> String {
    let limit = match c.limit {
        Some(l) => format!(" of a {} limit", bytes(l)),
        None => ", no limit".to_string(),
    };
    let working = match (c.working_set, c.usage) {
        (Some(w), Some(u)) if w != u => format!(" (working set {})", bytes(w)),
        _ => String::new(),
    };
    let kills = c
        .oom_kills
        .map(|k| format!(", {k} OOM kills"))
        .unwrap_or_default();
    let version = match c.version {
        crate::agent::cgroup::Version::V1 => "v1",
        crate::agent::cgroup::Version::V2 => "v2",
    };
    format!(
        "container memory {}{working}{limit} (cgroup {version}){kills}",
        maybe(c.usage)
    )
}

/// What was outside the heap at the last sample: the working set less the committed heap.
fn non_heap_line(s: &Sample) -> Option<String> {
    let (j, c) = (s.jvm.as_ref().ok()?, s.cgroup.as_ref().ok()?);
    let working = c.working_set.or(c.usage)?;
    let heap = j.heap_committed.or(j.heap_used)?;
    let limit = c
        .limit
        .map(|l| format!(" of a {} limit", bytes(l)))
        .unwrap_or_default();
    Some(format!(
        "at the last sample: heap {} used of max {}; outside the heap about {} (container {} \
         less {} committed heap){limit}",
        maybe(j.heap_used),
        maybe(j.heap_max),
        bytes(working.saturating_sub(heap)),
        bytes(working),
        bytes(heap)
    ))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::agent::cgroup::Version;

    const MIB: u64 = 1 << 20;

    fn sample() -> Sample {
        Sample {
            at: UNIX_EPOCH + Duration::from_secs(1_796_000_000),
            jvm: Ok(JvmSample {
                pid: 7,
                heap_used: Some(60 * MIB),
                heap_committed: Some(100 * MIB),
                heap_max: Some(128 * MIB),
                metaspace_used: Some(40 * MIB),
                threads: Some(25),
                gc_time: Some(Duration::from_millis(1250)),
                gc_count: Some(14),
                exit_on_oom: true,
            }),
            cgroup: Ok(CgroupSample {
                version: Version::V1,
                usage: Some(500 * MIB),
                working_set: Some(480 * MIB),
                limit: Some(512 * MIB),
                oom_kills: Some(0),
            }),
        }
    }

    #[test]
    fn the_verdict_follows_the_exit_and_the_oom_counter() {
        let dump = Some("jvm-guard-x-app.hprof".to_string());
        assert_eq!(
            decide(Ended::Exited(3), true, (Some(0), Some(0)), dump.clone()),
            Verdict::HeapOom { dump: dump.clone() }
        );
        // Exit 3 of a JVM without ExitOnOutOfMemoryError is its own business.
        assert_eq!(
            decide(Ended::Exited(3), false, (None, None), dump),
            Verdict::Exit(Ended::Exited(3))
        );
        assert_eq!(
            decide(Ended::Killed(9), true, (Some(1), Some(2)), None),
            Verdict::KernelKill {
                before: 1,
                after: 2
            }
        );
        // A SIGKILL with the counter unchanged, or unknown, is somebody's kill.
        for kills in [(Some(2), Some(2)), (None, Some(1)), (Some(0), None)] {
            assert_eq!(
                decide(Ended::Killed(9), true, kills, None),
                Verdict::Exit(Ended::Killed(9))
            );
        }
        assert_eq!(
            decide(Ended::Killed(15), true, (Some(0), Some(1)), None),
            Verdict::Exit(Ended::Killed(15))
        );
    }

    #[test]
    fn a_heap_oom_names_the_dump_and_the_heap_at_the_end() {
        let mut end = sample().jvm.unwrap();
        end.heap_used = Some(127 * MIB);
        let m = message(
            &Verdict::HeapOom {
                dump: Some("jvm-guard-20261201T163143.476Z-app.hprof".into()),
            },
            Some(&sample()),
            Some(&end),
            Some("/dumps"),
        );
        assert_eq!(
            m,
            "jvm-guard: heap OutOfMemoryError: the JVM exited 3 (-XX:+ExitOnOutOfMemoryError)\n\
             dump: /dumps/jvm-guard-20261201T163143.476Z-app.hprof\n\
             at the end: heap 127 MiB used, 100 MiB committed, max 128 MiB; metaspace 40 MiB; 25 threads; GC 1.2 s in 14 pauses (JVM pid 7)\n\
             last sample (20261130T005320.000Z):\n\
             \x20 heap 60 MiB used, 100 MiB committed, max 128 MiB; metaspace 40 MiB; 25 threads; GC 1.2 s in 14 pauses (JVM pid 7)\n\
             \x20 container memory 500 MiB (working set 480 MiB) of a 512 MiB limit (cgroup v1), 0 OOM kills\n\
             what to change: the dump shows what filled the heap; for a larger heap, raise the memory limit or jvm-guard.io/max-ram-percentage\n"
        );
    }

    #[test]
    fn a_kernel_kill_gives_heap_and_non_heap_and_what_to_change() {
        let m = message(
            &Verdict::KernelKill {
                before: 0,
                after: 1,
            },
            Some(&sample()),
            None,
            None,
        );
        let lines: Vec<&str> = m.lines().collect();
        assert_eq!(
            lines[0],
            "jvm-guard: killed by the kernel at the container's memory limit (SIGKILL, exit code 137; OOM kills 0 -> 1)"
        );
        assert_eq!(
            lines[1],
            "at the last sample: heap 60 MiB used of max 128 MiB; outside the heap about 380 MiB (container 480 MiB less 100 MiB committed heap) of a 512 MiB limit"
        );
        assert!(
            lines
                .last()
                .unwrap()
                .contains("raise jvm-guard.io/non-heap-reserve"),
            "{m}"
        );
    }

    #[test]
    fn other_ends_give_the_code_and_the_last_sample() {
        let m = message(
            &Verdict::Exit(Ended::Killed(15)),
            Some(&sample()),
            None,
            None,
        );
        assert!(
            m.starts_with(
                "jvm-guard: the command was killed by SIGTERM (exit code 143)\nlast sample ("
            ),
            "{m}"
        );
        let m = message(&Verdict::Exit(Ended::Exited(1)), None, None, None);
        assert_eq!(
            m,
            "jvm-guard: the command exited with code 1\nlast sample: none (the JVM ran less than one sample)\n"
        );
        let mut s = sample();
        s.jvm = Err("no JVM performance data in /tmp/hsperfdata_*/".into());
        let m = message(&Verdict::Running, Some(&s), None, None);
        assert!(m.starts_with("jvm-guard: no verdict: the container stopped with the agent"));
        assert!(
            m.contains("\n  JVM: no JVM performance data in /tmp/hsperfdata_*/\n"),
            "{m}"
        );
    }

    #[test]
    fn the_message_fits_the_kubelet_s_4096_bytes_and_forges_no_line() {
        let long = format!("{}\nforged line", "é".repeat(3000));
        let m = message(
            &Verdict::HeapOom {
                dump: Some(long.clone()),
            },
            Some(&sample()),
            None,
            Some("/dumps"),
        );
        assert!(m.len() <= MAX_BYTES, "{}", m.len());
        assert!(m.is_char_boundary(m.len()));
        assert!(!m.lines().any(|l| l.starts_with("forged")), "{m}");
        let m = message(&Verdict::NotStarted(long), None, None, None);
        assert!(m.len() <= MAX_BYTES);
    }
}
