//! The memory limit of the cgroup this process runs in (v1 `memory.limit_in_bytes`, v2
//! `memory.max`), found as the JVM finds it: the process's cgroup in `/proc/self/cgroup`, the
//! hierarchy's mount in `/proc/self/mountinfo`, and the lowest limit from there up to the mount.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// Where to read from: `/proc/self` and `/` in production, temp dirs in tests.
#[derive(Debug, Clone)]
pub struct Roots {
    /// Holds `cgroup` and `mountinfo`.
    pub proc_self: PathBuf,
    /// Prefixed to the mount points `mountinfo` names.
    pub root: PathBuf,
}

impl Default for Roots {
    fn default() -> Roots {
        Roots {
            proc_self: PathBuf::from("/proc/self"),
            root: PathBuf::from("/"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Version {
    V1,
    V2,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemoryLimit {
    pub version: Version,
    /// The process's memory cgroup directory.
    pub dir: PathBuf,
    /// The lowest limit from `dir` up to the hierarchy's mount; `None`: no limit.
    pub limit_bytes: Option<u64>,
    /// The file that holds it (`None` when there is no limit).
    pub limit_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot read {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("no cgroup memory controller is mounted (neither a v1 memory nor a cgroup2 mount)")]
    NoController,
    #[error("{path} does not say which {version} cgroup this process is in")]
    NoEntry {
        path: PathBuf,
        version: &'static str,
    },
    #[error("{path} holds {value:?}, not a number of bytes")]
    BadLimit { path: PathBuf, value: String },
}

/// cgroup v1 writes "no limit" as the largest page-aligned `i64` (`PAGE_COUNTER_MAX` pages),
/// 9223372036854771712 with 4 KiB pages; anything this large is no limit.
const V1_UNLIMITED_FROM: u64 = 1 << 62;

pub fn memory_limit(roots: &Roots) -> Result<MemoryLimit, CgroupError> {
    let own = read(&roots.proc_self.join("cgroup"))?;
    let mountinfo = read(&roots.proc_self.join("mountinfo"))?;
    let mounts = parse_mountinfo(&mountinfo);
    // A v1 memory mount wins on hybrid hosts: there the unified hierarchy has no memory
    // controller.
    let (version, mount, path) = if let Some(m) = mounts
        .iter()
        .find(|m| m.fstype == "cgroup" && m.super_options.split(',').any(|o| o == "memory"))
    {
        let path = own
            .lines()
            .find_map(|l| {
                let mut f = l.splitn(3, ':');
                let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
                controllers
                    .split(',')
                    .any(|c| c == "memory")
                    .then_some(path)
            })
            .ok_or_else(|| CgroupError::NoEntry {
                path: roots.proc_self.join("cgroup"),
                version: "v1 memory",
            })?;
        (Version::V1, m, path)
    } else if let Some(m) = mounts.iter().find(|m| m.fstype == "cgroup2") {
        let path = own
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .ok_or_else(|| CgroupError::NoEntry {
                path: roots.proc_self.join("cgroup"),
                version: "v2",
            })?;
        (Version::V2, m, path)
    } else {
        return Err(CgroupError::NoController);
    };

    let mount_dir = roots
        .root
        .join(mount.point.strip_prefix("/").unwrap_or(&mount.point));
    // Without a cgroup namespace the mount may show a cgroup above ours ("/docker/abc" as root
    // and as our path): the rest of the path is ours. A path outside the mounted root (a
    // namespace boundary) leaves the mount's own directory, as the JVM does.
    let relative = if mount.root == "/" {
        path
    } else {
        path.strip_prefix(mount.root.as_str()).unwrap_or("")
    };
    let dir = mount_dir.join(relative.trim_start_matches('/'));
    let file = match version {
        Version::V1 => "memory.limit_in_bytes",
        Version::V2 => "memory.max",
    };

    let mut lowest: Option<(u64, PathBuf)> = None;
    let mut at = dir.as_path();
    loop {
        let limit_path = at.join(file);
        // The root of a v2 hierarchy has no memory.max; a missing file above ours is no limit.
        let missing_is_fine = at != dir || version == Version::V2;
        match std::fs::read_to_string(&limit_path) {
            Ok(text) => {
                if let Some(limit) = parse_limit(version, &text, &limit_path)? {
                    if lowest.as_ref().is_none_or(|(l, _)| limit < *l) {
                        lowest = Some((limit, limit_path));
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && missing_is_fine => {}
            Err(e) => {
                return Err(CgroupError::Read {
                    path: limit_path,
                    message: e.to_string(),
                })
            }
        }
        match at.parent() {
            Some(parent) if at != mount_dir && parent.starts_with(&mount_dir) => at = parent,
            _ => break,
        }
    }
    let (limit_bytes, limit_file) = match lowest {
        Some((l, f)) => (Some(l), Some(f)),
        None => (None, None),
    };
    Ok(MemoryLimit {
        version,
        dir,
        limit_bytes,
        limit_file,
    })
}

fn parse_limit(version: Version, text: &str, path: &Path) -> Result<Option<u64>, CgroupError> {
    let value = text.trim();
    if version == Version::V2 && value == "max" {
        return Ok(None);
    }
    let bytes: u64 = value.parse().map_err(|_| CgroupError::BadLimit {
        path: path.to_path_buf(),
        value: value.chars().take(64).collect(),
    })?;
    Ok((version == Version::V2 || bytes < V1_UNLIMITED_FROM).then_some(bytes))
}

struct Mount {
    root: String,
    point: PathBuf,
    fstype: String,
    super_options: String,
}

/// `id parent major:minor root point options [optional...] - fstype source super_options`,
/// with spaces and the like in paths written as octal escapes (`\040`).
fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let mut right = right.split(' ');
            let fstype = right.next()?;
            let _source = right.next()?;
            Some(Mount {
                root: unescape(left.get(3)?),
                point: PathBuf::from(unescape(left.get(4)?)),
                fstype: fstype.to_string(),
                super_options: right.next().unwrap_or("").to_string(),
            })
        })
        .collect()
}

fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                let v = d.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                out.push(v as u8);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn read(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path).map_err(|e| CgroupError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    /// A fake `/proc/self` and root with these files (paths relative to the root).
    fn layout(cgroup: &str, mountinfo: &str, files: &[(&str, &str)]) -> (tempfile::TempDir, Roots) {
        let tmp = tempfile::tempdir().unwrap();
        let proc_self = tmp.path().join("proc/self");
        fs::create_dir_all(&proc_self).unwrap();
        fs::write(proc_self.join("cgroup"), cgroup).unwrap();
        fs::write(proc_self.join("mountinfo"), mountinfo).unwrap();
        let root = tmp.path().join("root");
        for (path, content) in files {
            let path = root.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, content).unwrap();
        }
        let roots = Roots { proc_self, root };
        (tmp, roots)
    }

    const V2_MOUNT: &str =
        "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
    const V1_MOUNTS: &str = "\
25 24 0:22 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755
33 25 0:29 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
34 25 0:30 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
35 25 0:31 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
";

    #[test]
    fn v2_in_a_container() {
        // A cgroup namespace: the container's cgroup is "/", mounted at /sys/fs/cgroup.
        let (_tmp, roots) = layout(
            "0::/\n",
            V2_MOUNT,
            &[("sys/fs/cgroup/memory.max", "1073741824\n")],
        );
        let m = memory_limit(&roots).unwrap();
        assert_eq!(m.version, Version::V2);
        assert_eq!(m.limit_bytes, Some(1 << 30));
        assert_eq!(m.dir, roots.root.join("sys/fs/cgroup"));
        assert_eq!(
            m.limit_file,
            Some(roots.root.join("sys/fs/cgroup/memory.max"))
        );
    }

    #[test]
    fn v2_max_is_no_limit_and_the_lowest_ancestor_wins() {
        let (_tmp, roots) = layout(
            "0::/kubepods/pod1/c1\n",
            V2_MOUNT,
            &[
                ("sys/fs/cgroup/kubepods/pod1/c1/memory.max", "max\n"),
                ("sys/fs/cgroup/kubepods/pod1/memory.max", "536870912\n"),
                ("sys/fs/cgroup/kubepods/memory.max", "max\n"),
            ],
        );
        let m = memory_limit(&roots).unwrap();
        assert_eq!(m.limit_bytes, Some(512 << 20));
        assert_eq!(m.dir, roots.root.join("sys/fs/cgroup/kubepods/pod1/c1"));

        let (_tmp, roots) = layout(
            "0::/a\n",
            V2_MOUNT,
            &[("sys/fs/cgroup/a/memory.max", "max\n")],
        );
        let m = memory_limit(&roots).unwrap();
        assert_eq!((m.limit_bytes, m.limit_file), (None, None));
    }

    #[test]
    fn v1_on_a_hybrid_host() {
        let (_tmp, roots) = layout(
            "12:pids:/x\n4:memory:/process_api/abc\n0::/\n",
            V1_MOUNTS,
            &[
                (
                    "sys/fs/cgroup/memory/process_api/abc/memory.limit_in_bytes",
                    "268435456\n",
                ),
                (
                    "sys/fs/cgroup/memory/process_api/memory.limit_in_bytes",
                    "9223372036854771712\n",
                ),
                (
                    "sys/fs/cgroup/memory/memory.limit_in_bytes",
                    "9223372036854771712\n",
                ),
            ],
        );
        let m = memory_limit(&roots).unwrap();
        assert_eq!(m.version, Version::V1);
        assert_eq!(m.limit_bytes, Some(256 << 20));
    }

    #[test]
    fn v1_unlimited_and_a_mount_of_our_own_cgroup() {
        // Docker without a cgroup namespace: the mount shows our cgroup as its root.
        let mounts = "33 25 0:29 /docker/abc /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n";
        let (_tmp, roots) = layout(
            "4:memory:/docker/abc\n",
            mounts,
            &[(
                "sys/fs/cgroup/memory/memory.limit_in_bytes",
                "9223372036854771712",
            )],
        );
        let m = memory_limit(&roots).unwrap();
        assert_eq!(m.dir, roots.root.join("sys/fs/cgroup/memory"));
        assert_eq!(m.limit_bytes, None);
    }

    #[test]
    fn escaped_mount_points() {
        let mounts = "30 23 0:26 / /sys/fs/my\\040cgroup rw - cgroup2 cgroup2 rw\n";
        let (_tmp, roots) = layout("0::/\n", mounts, &[("sys/fs/my cgroup/memory.max", "4096")]);
        assert_eq!(memory_limit(&roots).unwrap().limit_bytes, Some(4096));
    }

    #[test]
    fn errors_name_what_is_missing() {
        let (_tmp, roots) = layout("0::/\n", "", &[]);
        assert_eq!(memory_limit(&roots), Err(CgroupError::NoController));

        let (_tmp, roots) = layout("1:cpu:/\n", V2_MOUNT, &[]);
        assert!(matches!(
            memory_limit(&roots),
            Err(CgroupError::NoEntry { version: "v2", .. })
        ));

        let (_tmp, roots) = layout("4:memory:/a\n", V1_MOUNTS, &[]);
        let err = memory_limit(&roots).unwrap_err();
        assert!(
            err.to_string().contains("memory/a/memory.limit_in_bytes"),
            "{err}"
        );

        let (_tmp, roots) = layout("0::/\n", V2_MOUNT, &[("sys/fs/cgroup/memory.max", "lots")]);
        assert!(matches!(
            memory_limit(&roots),
            Err(CgroupError::BadLimit { .. })
        ));

        let roots = Roots {
            proc_self: PathBuf::from("/nonexistent/proc"),
            root: PathBuf::from("/"),
        };
        assert!(matches!(
            memory_limit(&roots),
            Err(CgroupError::Read { .. })
        ));
    }
}
