//! Heap-dump rotation, run by `-XX:OnOutOfMemoryError` after HotSpot wrote its dump. In a
//! container the JVM is always pid 1 and HotSpot never overwrites `java_pid1.hprof`, so without
//! this the second OutOfMemoryError in a pod loses its dump.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Rotated files are named `jvm-guard-<UTC time>-<container><suffix>`: unique and sortable.
const ROTATED_PREFIX: &str = "jvm-guard-";

/// What HotSpot writes under a fixed name in a container (the pid is always 1) and never
/// overwrites: the heap dump and the crash log.
struct Kind {
    fresh_prefix: &'static str,
    fresh_suffix: &'static str,
    rotated_suffix: &'static str,
}

const KINDS: [Kind; 2] = [
    Kind {
        fresh_prefix: "java_pid",
        fresh_suffix: ".hprof",
        rotated_suffix: ".hprof",
    },
    Kind {
        fresh_prefix: "hs_err_pid",
        fresh_suffix: ".log",
        rotated_suffix: ".hs_err.log",
    },
];

impl Kind {
    fn is_fresh(&self, name: &str) -> bool {
        name.starts_with(self.fresh_prefix) && name.ends_with(self.fresh_suffix)
    }

    fn is_rotated(&self, name: &str) -> bool {
        name.starts_with(ROTATED_PREFIX) && name.ends_with(self.rotated_suffix)
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rotation {
    pub renamed: Vec<(PathBuf, PathBuf)>,
    pub deleted: Vec<PathBuf>,
    /// Rotated heap dumps left in the directory.
    pub kept: usize,
}

/// `20261126T081156.123Z`: fixed width, so names sort by time.
pub fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

fn names(dir: &Path, pick: impl Fn(&str) -> bool) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if pick(&name) && entry.file_type()?.is_file() {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

/// Renames the fresh heap dumps and crash logs in `dir` (`java_pid*.hprof`,
/// `hs_err_pid*.log`) to unique names after the time they were written (`now` when the file
/// does not say), then deletes the oldest rotated ones beyond `keep`, of each kind. One
/// implementation for both callers: the OutOfMemoryError hook, right after the dump, and the
/// agent, at every container start (which also covers images without a shell).
pub fn rotate(dir: &Path, keep: usize, container: &str, now: SystemTime) -> io::Result<Rotation> {
    let mut rotation = Rotation::default();
    let mut taken = Taken::new(dir)?;
    for kind in &KINDS {
        let name = |ms: u64| {
            format!(
                "{ROTATED_PREFIX}{}-{container}{}",
                timestamp(UNIX_EPOCH + Duration::from_millis(ms)),
                kind.rotated_suffix
            )
        };
        let mut next = HashMap::new();
        for fresh in names(dir, |n| kind.is_fresh(n))? {
            let from = dir.join(&fresh);
            let at = std::fs::metadata(&from)
                .and_then(|m| m.modified())
                .unwrap_or(now);
            let ms = at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            // A name already taken (same millisecond) moves on by a millisecond, so names
            // stay unique and still sort by age.
            let ms = taken.free(ms, &mut next, &name);
            let to = dir.join(name(ms));
            std::fs::rename(&from, &to)?;
            rotation.renamed.push((from, to));
        }
        let rotated = names(dir, |n| kind.is_rotated(n))?;
        let excess = rotated.len().saturating_sub(keep.max(1));
        for old in &rotated[..excess] {
            let path = dir.join(old);
            std::fs::remove_file(&path)?;
            rotation.deleted.push(path);
        }
        if kind.rotated_suffix == ".hprof" {
            rotation.kept = rotated.len() - excess;
        }
    }
    Ok(rotation)
}

/// The names in the directory, read once, and those given out since. Dumps that share one
/// time (copied, restored from a backup) each need the next free millisecond: probing one name
/// after the other from that time made a start with 3,000 of them take seconds, quadratic.
struct Taken(HashSet<String>);

impl Taken {
    fn new(dir: &Path) -> io::Result<Taken> {
        let mut names = HashSet::new();
        for entry in std::fs::read_dir(dir)? {
            names.insert(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(Taken(names))
    }

    /// The first millisecond from `ms` whose `name` is free, now taken. `next` remembers, for
    /// each millisecond found taken, where to look on from, shortened as it is followed, so
    /// that a run of taken names is walked about once whatever the number of files in it.
    fn free(
        &mut self,
        ms: u64,
        next: &mut HashMap<u64, u64>,
        name: &impl Fn(u64) -> String,
    ) -> u64 {
        let mut path = Vec::new();
        let mut at = ms;
        loop {
            if let Some(&on) = next.get(&at) {
                path.push(at);
                at = on;
            } else if self.0.contains(&name(at)) {
                path.push(at);
                at += 1;
            } else {
                break;
            }
        }
        self.0.insert(name(at));
        path.push(at);
        for p in path {
            next.insert(p, at + 1);
        }
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_and_fixed_width() {
        assert_eq!(timestamp(UNIX_EPOCH), "19700101T000000.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_680_716_123);
        assert_eq!(timestamp(t), "20261126T081156.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(timestamp(leap), "20000229T000000.000Z");
    }

    #[test]
    fn keeps_the_newest_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(1_795_680_000 + s);
        // Written at `at(s)`: the name is the time of the dump, not of the rotation.
        let write = |name: &str, s: u64| {
            let path = dir.path().join(name);
            std::fs::write(&path, name).unwrap();
            let file = std::fs::File::options().write(true).open(&path).unwrap();
            file.set_modified(at(s)).unwrap();
        };
        let later = at(3600);
        for i in 0..3 {
            write("java_pid1.hprof", i);
            rotate(dir.path(), 2, "app", later).unwrap();
        }
        // Same second twice: a second name, not an overwrite.
        write("java_pid1.hprof", 2);
        let r = rotate(dir.path(), 2, "app", later).unwrap();
        assert_eq!(r.kept, 2);
        assert_eq!(r.renamed.len(), 1);
        let left = names(dir.path(), |_| true).unwrap();
        assert_eq!(
            left,
            vec![
                "jvm-guard-20261126T080002.000Z-app.hprof",
                "jvm-guard-20261126T080002.001Z-app.hprof"
            ]
        );
        write("unrelated.txt", 3);
        assert!(rotate(dir.path(), 1, "app", later)
            .unwrap()
            .renamed
            .is_empty());
        assert!(dir.path().join("unrelated.txt").exists());
        assert_eq!(
            names(dir.path(), |n| KINDS[0].is_rotated(n)).unwrap().len(),
            1
        );
    }

    #[test]
    fn crash_logs_are_rotated_apart_from_dumps() {
        let dir = tempfile::tempdir().unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_795_680_000);
        for i in 0..3u64 {
            std::fs::write(dir.path().join("hs_err_pid1.log"), "crash").unwrap();
            std::fs::write(dir.path().join("java_pid1.hprof"), "dump").unwrap();
            let r = rotate(dir.path(), 2, "app", now + Duration::from_secs(i)).unwrap();
            assert_eq!(r.renamed.len(), 2);
        }
        let left = names(dir.path(), |_| true).unwrap();
        assert_eq!(left.len(), 4, "two of each kind: {left:?}");
        assert_eq!(
            left.iter().filter(|n| n.ends_with(".hs_err.log")).count(),
            2
        );
        assert_eq!(left.iter().filter(|n| n.ends_with("-app.hprof")).count(), 2);
    }

    #[test]
    fn many_dumps_of_one_time_get_unique_names_and_the_newest_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let at = UNIX_EPOCH + Duration::from_secs(1_795_680_000);
        let ms = |n: u64| at + Duration::from_millis(n);
        let rotated = |n: u64| format!("jvm-guard-{}-app.hprof", timestamp(ms(n)));
        let count = 3_000u64;
        for i in 0..count {
            let path = dir.path().join(format!("java_pid{i}.hprof"));
            let file = std::fs::File::create(&path).unwrap();
            file.set_modified(at).unwrap();
        }
        // One name in the middle of the run is already taken: skipped, not overwritten.
        std::fs::write(dir.path().join(rotated(1)), "older").unwrap();
        let r = rotate(dir.path(), 5, "app", at + Duration::from_secs(3600)).unwrap();
        assert_eq!(r.renamed.len(), count as usize);
        let targets: std::collections::HashSet<_> = r.renamed.iter().map(|(_, to)| to).collect();
        assert_eq!(targets.len(), count as usize, "unique names");
        assert!(!targets.contains(&dir.path().join(rotated(1))));
        // 3,000 renamed into 0..=3,000 ms but 1, and the taken one: the newest 5 are left.
        let left = names(dir.path(), |_| true).unwrap();
        let newest: Vec<String> = (count - 4..=count).map(rotated).collect();
        assert_eq!(left, newest);
        assert_eq!(r.kept, 5);
        assert_eq!(r.deleted.len(), count as usize + 1 - 5);
    }
}
