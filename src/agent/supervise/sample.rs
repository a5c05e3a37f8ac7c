//! What the supervising agent reads every few seconds, at a bounded cost (one capped read of
//! the JVM's performance-data file, five small cgroup files): the JVM's heap, metaspace,
//! threads and GC time, and the container's memory, limit and OOM-kill counter.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::agent::cgroup::{self, Roots, Version};
use crate::agent::inspect::jvm;
use crate::agent::inspect::perfdata::PerfData;

/// The JVM's counters at one moment; `None`: the counter is not published (by this JVM or GC).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JvmSample {
    pub pid: u32,
    pub heap_used: Option<u64>,
    pub heap_committed: Option<u64>,
    pub heap_max: Option<u64>,
    pub metaspace_used: Option<u64>,
    pub threads: Option<u64>,
    /// Time in GC pauses since start, and how many.
    pub gc_time: Option<Duration>,
    pub gc_count: Option<u64>,
    /// Whether the JVM runs with `-XX:+ExitOnOutOfMemoryError` (its own record of its
    /// options says so).
    pub exit_on_oom: bool,
}

/// The container's memory cgroup at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct CgroupSample {
    pub version: Version,
    /// Memory charged to the container, page cache included (v1 `memory.usage_in_bytes`, v2
    /// `memory.current`).
    pub usage: Option<u64>,
    /// `usage` less the inactive file cache, which the kernel reclaims before it kills: what
    /// the kubelet calls the working set.
    pub working_set: Option<u64>,
    pub limit: Option<u64>,
    /// Processes the kernel's OOM killer killed in this cgroup (v1 `memory.oom_control` from
    /// Linux 4.13, v2 `memory.events`).
    pub oom_kills: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub at: SystemTime,
    /// The JVM's counters, or why there are none.
    pub jvm: Result<JvmSample, String>,
    pub cgroup: Result<CgroupSample, String>,
}

/// Each generation's spaces (young: eden and survivors; old), as every collector publishes.
const GENERATIONS: std::ops::Range<u32> = 0..2;
const SPACES: std::ops::Range<u32> = 0..4;
const COLLECTORS: std::ops::Range<u32> = 0..4;

pub fn jvm_sample(pid: u32, data: &PerfData) -> JvmSample {
    let get = |name: &str| data.long(name).and_then(|v| u64::try_from(v).ok());
    let sum = |names: Vec<String>| -> Option<u64> {
        let values: Vec<u64> = names.iter().filter_map(|n| get(n)).collect();
        (!values.is_empty()).then(|| values.iter().sum())
    };
    let mut used = Vec::new();
    let mut committed = Vec::new();
    for g in GENERATIONS {
        committed.push(format!("sun.gc.generation.{g}.capacity"));
        used.extend(SPACES.map(|s| format!("sun.gc.generation.{g}.space.{s}.used")));
    }
    let frequency = get("sun.os.hrt.frequency").filter(|&f| f > 0);
    let ticks = sum(COLLECTORS
        .map(|c| format!("sun.gc.collector.{c}.time"))
        .collect());
    let gc_time = match (ticks, frequency) {
        (Some(t), Some(f)) => Some(Duration::from_secs_f64(t as f64 / f as f64)),
        _ => None,
    };
    let gc = jvm::gc(data);
    let options = [
        data.string("java.rt.vmArgs"),
        data.string("java.rt.vmFlags"),
    ];
    JvmSample {
        pid,
        heap_used: sum(used),
        heap_committed: sum(committed),
        heap_max: jvm::max_heap(data, &gc),
        metaspace_used: get("sun.gc.metaspace.used"),
        threads: get("java.threads.live"),
        gc_time,
        gc_count: sum(COLLECTORS
            .map(|c| format!("sun.gc.collector.{c}.invocations"))
            .collect()),
        exit_on_oom: exits_on_oom(options.iter().flatten().copied()),
    }
}

/// Whether the last `ExitOnOutOfMemoryError` flag among `texts` turns it on.
fn exits_on_oom<'a>(texts: impl Iterator<Item = &'a str>) -> bool {
    let mut on = false;
    for token in texts.flat_map(str::split_whitespace) {
        match token {
            "-XX:+ExitOnOutOfMemoryError" | "+ExitOnOutOfMemoryError" => on = true,
            "-XX:-ExitOnOutOfMemoryError" | "-ExitOnOutOfMemoryError" => on = false,
            _ => {}
        }
    }
    on
}

/// The memory cgroup this process is in (the container's), read where `roots` say.
pub fn cgroup_sample(roots: &Roots) -> Result<CgroupSample, String> {
    let found = cgroup::memory_limit(roots).map_err(|e| e.to_string())?;
    let dir = found.dir.as_path();
    let (usage_file, events_file, inactive) = match found.version {
        Version::V1 => (
            "memory.usage_in_bytes",
            "memory.oom_control",
            "total_inactive_file",
        ),
        Version::V2 => ("memory.current", "memory.events", "inactive_file"),
    };
    let usage = read_small(&dir.join(usage_file)).and_then(|t| t.trim().parse::<u64>().ok());
    let inactive = read_small(&dir.join("memory.stat")).and_then(|t| counter(&t, inactive));
    let oom_kills = read_small(&dir.join(events_file)).and_then(|t| counter(&t, "oom_kill"));
    Ok(CgroupSample {
        version: found.version,
        usage,
        working_set: usage.map(|u| u.saturating_sub(inactive.unwrap_or(0))),
        limit: found.limit_bytes,
        oom_kills,
    })
}

/// The value of a `key value` line (`memory.events`, `memory.oom_control`, `memory.stat`).
pub fn counter(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

/// A cgroup file's text, read up to 64 KiB (`memory.stat` is a few hundred bytes).
fn read_small(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(64 << 10)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::agent::inspect::perfdata::{self, tests::Builder, ByteOrder};

    /// A fake `/proc/self` and cgroup mount of `version` holding `files` in the process's
    /// cgroup directory.
    fn layout(version: Version, files: &[(&str, &str)]) -> (tempfile::TempDir, Roots) {
        let tmp = tempfile::tempdir().unwrap();
        let proc_self = tmp.path().join("proc/self");
        fs::create_dir_all(&proc_self).unwrap();
        let (cgroup, mount, dir) = match version {
            Version::V1 => (
                "4:memory:/kubepods/pod1/c1\n",
                "33 25 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
                "sys/fs/cgroup/memory/kubepods/pod1/c1",
            ),
            Version::V2 => (
                "0::/\n",
                "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
                "sys/fs/cgroup",
            ),
        };
        fs::write(proc_self.join("cgroup"), cgroup).unwrap();
        fs::write(proc_self.join("mountinfo"), mount).unwrap();
        let root = tmp.path().join("root");
        let dir = root.join(dir);
        fs::create_dir_all(&dir).unwrap();
        for (name, text) in files {
            fs::write(dir.join(name), text).unwrap();
        }
        (tmp, Roots { proc_self, root })
    }

    #[test]
    fn v1_usage_limit_and_oom_kills() {
        let (_tmp, roots) = layout(
            Version::V1,
            &[
                ("memory.limit_in_bytes", "536870912\n"),
                ("memory.usage_in_bytes", "400000000\n"),
                (
                    "memory.stat",
                    "cache 100\ninactive_file 1\ntotal_inactive_file 50000000\n",
                ),
                (
                    "memory.oom_control",
                    "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
                ),
            ],
        );
        let s = cgroup_sample(&roots).unwrap();
        assert_eq!(s.version, Version::V1);
        assert_eq!(s.limit, Some(512 << 20));
        assert_eq!(s.usage, Some(400_000_000));
        assert_eq!(s.working_set, Some(350_000_000));
        assert_eq!(s.oom_kills, Some(2));
    }

    #[test]
    fn v2_usage_limit_and_oom_kills() {
        let (_tmp, roots) = layout(
            Version::V2,
            &[
                ("memory.max", "1073741824\n"),
                ("memory.current", "734003200\n"),
                ("memory.stat", "anon 1\nfile 2\ninactive_file 4000\n"),
                (
                    "memory.events",
                    "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n",
                ),
            ],
        );
        let s = cgroup_sample(&roots).unwrap();
        assert_eq!(s.version, Version::V2);
        assert_eq!(s.limit, Some(1 << 30));
        assert_eq!(s.usage, Some(734_003_200));
        assert_eq!(s.working_set, Some(734_003_200 - 4000));
        assert_eq!(s.oom_kills, Some(1));
    }

    #[test]
    fn an_old_kernel_has_no_oom_counter_and_missing_files_are_unknowns() {
        // Before Linux 4.13 memory.oom_control has no oom_kill line.
        let (_tmp, roots) = layout(
            Version::V1,
            &[
                ("memory.limit_in_bytes", "9223372036854771712\n"),
                ("memory.oom_control", "oom_kill_disable 0\nunder_oom 0\n"),
            ],
        );
        let s = cgroup_sample(&roots).unwrap();
        assert_eq!((s.limit, s.usage, s.oom_kills), (None, None, None));
        assert_eq!(s.working_set, None);
        let (_tmp, roots) = layout(Version::V2, &[("memory.max", "lots")]);
        assert!(cgroup_sample(&roots).unwrap_err().contains("lots"));
    }

    #[test]
    fn counters_are_whole_keys() {
        let text = "oom 3\noom_kill 1\noom_group_kill 7\n";
        assert_eq!(counter(text, "oom_kill"), Some(1));
        assert_eq!(counter(text, "oom"), Some(3));
        assert_eq!(counter(text, "oom_k"), None);
        assert_eq!(counter("oom_kill x\n", "oom_kill"), None);
    }

    #[test]
    fn the_jvm_counters_as_hotspot_names_them() {
        // A Serial-GC JDK 17: young (eden, two survivors) and old, metaspace, two collectors.
        let data = Builder::new(ByteOrder::Little)
            .string("sun.gc.policy.name", "Copy:MSC")
            .string(
                "java.rt.vmArgs",
                "-XX:-ExitOnOutOfMemoryError -XX:+ExitOnOutOfMemoryError -Xss1m",
            )
            .long("sun.gc.generation.0.maxCapacity", 89_456_640)
            .long("sun.gc.generation.1.maxCapacity", 178_978_816)
            .long("sun.gc.generation.0.capacity", 20 << 20)
            .long("sun.gc.generation.1.capacity", 60 << 20)
            .long("sun.gc.generation.0.space.0.used", 10 << 20)
            .long("sun.gc.generation.0.space.1.used", 1 << 20)
            .long("sun.gc.generation.0.space.2.used", 0)
            .long("sun.gc.generation.1.space.0.used", 40 << 20)
            .long("sun.gc.metaspace.used", 30 << 20)
            .long("java.threads.live", 21)
            .long("sun.os.hrt.frequency", 1_000_000_000)
            .long("sun.gc.collector.0.time", 1_500_000_000)
            .long("sun.gc.collector.1.time", 500_000_000)
            .long("sun.gc.collector.0.invocations", 40)
            .long("sun.gc.collector.1.invocations", 2)
            .build();
        let s = jvm_sample(7, &perfdata::parse(&data).unwrap());
        assert_eq!(
            s,
            JvmSample {
                pid: 7,
                heap_used: Some(51 << 20),
                heap_committed: Some(80 << 20),
                heap_max: Some(268_435_456),
                metaspace_used: Some(30 << 20),
                threads: Some(21),
                gc_time: Some(Duration::from_secs(2)),
                gc_count: Some(42),
                exit_on_oom: true,
            }
        );
        // Nothing published: every counter unknown, not zero.
        let empty = jvm_sample(
            1,
            &perfdata::parse(&Builder::new(ByteOrder::Big).build()).unwrap(),
        );
        assert_eq!(
            empty,
            JvmSample {
                pid: 1,
                ..JvmSample::default()
            }
        );
        assert!(!exits_on_oom(
            ["-XX:+ExitOnOutOfMemoryError -XX:-ExitOnOutOfMemoryError"].into_iter()
        ));
    }
}
