//! Heap-dump rotation, run by `-XX:OnOutOfMemoryError` after HotSpot wrote its dump. In a
//! container the JVM is always pid 1 and HotSpot never overwrites `java_pid1.hprof`, so without
//! this the second OutOfMemoryError in a pod loses its dump.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Rotated dumps are named `jvm-guard-<UTC time>-<container>.hprof`: unique and sortable.
const ROTATED_PREFIX: &str = "jvm-guard-";

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rotation {
    pub renamed: Vec<(PathBuf, PathBuf)>,
    pub deleted: Vec<PathBuf>,
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

fn is_fresh_dump(name: &str) -> bool {
    name.starts_with("java_pid") && name.ends_with(".hprof")
}

fn is_rotated(name: &str) -> bool {
    name.starts_with(ROTATED_PREFIX) && name.ends_with(".hprof")
}

fn names(dir: &Path, pick: fn(&str) -> bool) -> io::Result<Vec<String>> {
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

/// Renames fresh `java_pid*.hprof` dumps in `dir` to unique names, then deletes the oldest
/// rotated dumps beyond `keep`.
pub fn rotate(dir: &Path, keep: usize, container: &str, now: SystemTime) -> io::Result<Rotation> {
    let mut rotation = Rotation::default();
    let mut at = now;
    for fresh in names(dir, is_fresh_dump)? {
        let from = dir.join(&fresh);
        // A name already taken (same millisecond) moves on by a millisecond, so names stay
        // unique and still sort by age.
        let mut to = dir.join(format!(
            "{ROTATED_PREFIX}{}-{container}.hprof",
            timestamp(at)
        ));
        while to.exists() {
            at += Duration::from_millis(1);
            to = dir.join(format!(
                "{ROTATED_PREFIX}{}-{container}.hprof",
                timestamp(at)
            ));
        }
        std::fs::rename(&from, &to)?;
        rotation.renamed.push((from, to));
    }
    let rotated = names(dir, is_rotated)?;
    let excess = rotated.len().saturating_sub(keep.max(1));
    for old in &rotated[..excess] {
        let path = dir.join(old);
        std::fs::remove_file(&path)?;
        rotation.deleted.push(path);
    }
    Ok(rotation)
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
        let write = |name: &str| std::fs::write(dir.path().join(name), name).unwrap();
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(1_795_680_000 + s);
        for i in 0..3 {
            write("java_pid1.hprof");
            rotate(dir.path(), 2, "app", at(i)).unwrap();
        }
        // Same second twice: a second name, not an overwrite.
        write("java_pid1.hprof");
        let r = rotate(dir.path(), 2, "app", at(2)).unwrap();
        assert_eq!(r.renamed.len(), 1);
        let left = names(dir.path(), |_| true).unwrap();
        assert_eq!(
            left,
            vec![
                "jvm-guard-20261126T080002.000Z-app.hprof",
                "jvm-guard-20261126T080002.001Z-app.hprof"
            ]
        );
        write("unrelated.txt");
        assert!(rotate(dir.path(), 1, "app", at(3))
            .unwrap()
            .renamed
            .is_empty());
        assert!(dir.path().join("unrelated.txt").exists());
        assert_eq!(names(dir.path(), is_rotated).unwrap().len(), 1);
    }
}
