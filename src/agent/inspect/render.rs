//! The human summary of a [`Report`]: one fact a line, sizes and ages for people.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use super::cgroup::{self, MemoryLimit};
use super::{Jvm, Report, DUMP_DIR_ENV};
use crate::escape::Escaped;

/// The report for a terminal. Most of it is the container's own text (the JVM's command line
/// and arguments, file names): each line is escaped, so none of it can end a line or send the
/// terminal an escape sequence.
pub fn render(report: &Report, now: SystemTime) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        let _ = writeln!(out, "{}", Escaped(&s));
    };
    let limit = report.memory_limit.as_ref();
    match (&report.jvm, &report.jvm_error) {
        (Some(j), _) => {
            let name = j.vm_name.as_deref().unwrap_or("unknown JVM");
            let version = j.vm_version.as_deref().unwrap_or("(version unknown)");
            let mut facts = vec![format!("pid {}", j.pid)];
            if let Some(v) = &j.vm_vendor {
                facts.push(v.clone());
            }
            if !j.running {
                facts.push("no longer running".into());
            }
            line(format!("JVM: {name} {version} ({})", facts.join(", ")));
            if let Some(c) = &j.command {
                line(format!("command: {c}"));
            }
            line(heap_line(j, limit));
            match (&j.arg_sources, j.vm_args.as_deref()) {
                (_, None) => line("arguments: not recorded".into()),
                (_, Some("")) => line("arguments: none".into()),
                (Some(sources), Some(_)) => {
                    line("arguments:".into());
                    for s in sources {
                        line(format!("  from {}: {}", s.source, s.args.join(" ")));
                    }
                }
                (None, Some(args)) => {
                    line(format!("arguments (sources unknown): {args}"));
                }
            }
            if let Some(flags) = j.vm_flags.as_deref().filter(|f| !f.is_empty()) {
                line(format!("flags file: {flags}"));
            }
            line(format!("perf data: {}", j.file.display()));
        }
        (None, Some(e)) => line(format!("JVM: not inspected: {}", e.message)),
        (None, None) => {}
    }
    match (limit, &report.memory_limit_error) {
        (Some(m), _) => {
            let version = match m.version {
                cgroup::Version::V1 => "v1",
                cgroup::Version::V2 => "v2",
            };
            let amount = m.limit_bytes.map_or("none".to_string(), bytes);
            let from = m.limit_file.as_ref().unwrap_or(&m.dir);
            line(format!(
                "memory limit: {amount} (cgroup {version}, {})",
                from.display()
            ));
        }
        (None, Some(e)) => line(format!("memory limit: unknown: {e}")),
        (None, None) => {}
    }
    match (&report.dumps, &report.dumps_error) {
        (Some(d), _) => {
            let dir = d.dir.display();
            match d.files.first() {
                None => line(format!("dumps: none in {dir}")),
                Some(newest) => {
                    line(format!(
                        "dumps: {} in {dir}, newest {}",
                        d.files.len(),
                        ago(newest.modified, now)
                    ));
                    for f in &d.files {
                        line(format!(
                            "  {}  {}  {}",
                            f.name,
                            bytes(f.bytes),
                            ago(f.modified, now)
                        ));
                    }
                }
            }
        }
        (None, Some(e)) => line(format!("dumps: cannot list: {e}")),
        (None, None) => line(format!(
            "dumps: no dump directory is configured ({DUMP_DIR_ENV} is not set; --dumps DIR \
             names one)"
        )),
    }
    out
}

fn heap_line(j: &Jvm, limit: Option<&MemoryLimit>) -> String {
    let Some(heap) = j.max_heap_bytes else {
        return format!("heap: max unknown for {}", j.gc);
    };
    match limit.and_then(|m| m.limit_bytes) {
        Some(l) if l > 0 => format!(
            "heap: max {} of a {} memory limit ({}%), {}",
            bytes(heap),
            bytes(l),
            (heap as f64 * 100.0 / l as f64).round(),
            j.gc
        ),
        _ => format!(
            "heap: max {} (no memory limit found), {}",
            bytes(heap),
            j.gc
        ),
    }
}

/// `636 MiB`, `1 GiB`, `1.5 GiB`, `512 bytes`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    let text = format!("{value:.1}");
    let text = text.strip_suffix(".0").unwrap_or(&text);
    format!("{text} {}", UNITS[unit])
}

fn ago(modified: Option<u64>, now: SystemTime) -> String {
    let Some(m) = modified else {
        return "at an unknown time".into();
    };
    let now = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let secs = now.saturating_sub(m);
    match secs {
        0..60 => format!("{secs} s ago"),
        60..7200 => format!("{} min ago", secs / 60),
        7200..172_800 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn human_sizes_and_ages() {
        assert_eq!(bytes(512), "512 bytes");
        assert_eq!(bytes(636 << 20), "636 MiB");
        assert_eq!(bytes(1 << 30), "1 GiB");
        assert_eq!(bytes(3 << 29), "1.5 GiB");
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(ago(Some(1_000_000 - 12 * 60), now), "12 min ago");
        assert_eq!(ago(Some(1_000_000 - 5), now), "5 s ago");
        assert_eq!(ago(Some(1_000_000 - 3 * 86_400), now), "3 days ago");
        assert_eq!(ago(None, now), "at an unknown time");
    }
}
