//! A real container memory limit for a child process: a fresh child memory cgroup of the test
//! process's own (cgroup v1 `memory.limit_in_bytes`, or v2 `memory.max` on a unified
//! hierarchy), entered by the child between fork and exec, removed when dropped.
//!
//! Creating one needs root (or a delegated cgroup). Every failure is an error naming the path
//! it could not create, read or write: a test that needs a real limit never runs without one.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Where systemd, Docker and Kubernetes nodes mount the cgroup hierarchies.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

impl Version {
    /// The file that holds the memory limit.
    pub fn limit_file(self) -> &'static str {
        match self {
            Version::V1 => "memory.limit_in_bytes",
            Version::V2 => "memory.max",
        }
    }

    /// What `java -XshowSettings:system` prints as `Provider:`.
    pub fn provider(self) -> &'static str {
        match self {
            Version::V1 => "cgroupv1",
            Version::V2 => "cgroupv2",
        }
    }
}

/// A child memory cgroup with a limit; removed (rmdir) on drop, also when a test panics.
#[derive(Debug)]
pub struct MemoryCgroup {
    dir: PathBuf,
    version: Version,
    limit: u64,
    /// `<dir>/cgroup.procs`, made before any fork: the pre-exec hook may not allocate.
    procs: CString,
}

impl MemoryCgroup {
    /// A new cgroup named after `label` (and this process, and a counter, so parallel tests
    /// never share one) with a memory limit of `limit` bytes, read back to check the kernel
    /// took it as given (it rounds down to pages: pass a multiple of the page size).
    pub fn new(label: &str, limit: u64) -> Result<MemoryCgroup, String> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let (version, parent) = parent_dir()?;
        let label: String = label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let name = format!(
            "jvm-guard-test-{}-{}-{label}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let dir = parent.join(name);
        std::fs::create_dir(&dir).map_err(|e| {
            format!(
                "cannot create the memory cgroup {} ({e}); the JVM tests need a real cgroup \
                 memory limit: run them as root, or in a cgroup delegated to this user",
                dir.display()
            )
        })?;
        let procs = CString::new(dir.join("cgroup.procs").as_os_str().as_bytes())
            .expect("a cgroup path has no NUL");
        // From here on the directory is removed whatever happens.
        let cgroup = MemoryCgroup {
            dir,
            version,
            limit,
            procs,
        };
        let file = cgroup.dir.join(version.limit_file());
        std::fs::write(&file, limit.to_string())
            .map_err(|e| format!("cannot write {limit} to {}: {e}", file.display()))?;
        let read = std::fs::read_to_string(&file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        if read.trim() != limit.to_string() {
            return Err(format!(
                "{} reads {:?} after writing {limit} (not a multiple of the page size?)",
                file.display(),
                read.trim()
            ));
        }
        Ok(cgroup)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// The limit in bytes, as the kernel holds it.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Makes `cmd`'s child enter this cgroup before it executes the program, so the program's
    /// first instruction already runs under the limit (the JVM reads it at start-up). Writing
    /// `0` to `cgroup.procs` moves the writing process, in v1 and v2.
    pub fn enter_on_exec(&self, cmd: &mut Command) {
        let procs = self.procs.clone();
        // SAFETY: between fork and exec only async-signal-safe calls (open, write, close) on
        // memory allocated before the fork; errno is read by `last_os_error` without
        // allocating.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                let error = std::io::Error::last_os_error();
                libc::close(fd);
                if written == 1 {
                    Ok(())
                } else {
                    Err(error)
                }
            });
        }
    }

    /// What a spawn error means when the child could not enter the cgroup.
    pub fn describe_spawn_error(&self, error: &str) -> String {
        format!(
            "{error} (the child enters the memory cgroup by writing 0 to {} before exec)",
            self.dir.join("cgroup.procs").display()
        )
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // The child has been waited for, but the kernel may take a moment to let go of an
        // exited task: EBUSY is retried for up to a second.
        let mut last = None;
        for _ in 0..100 {
            match std::fs::remove_dir(&self.dir) {
                Ok(()) => return,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let message = format!(
            "cannot remove the memory cgroup {}: {}",
            self.dir.display(),
            last.map(|e| e.to_string()).unwrap_or_default()
        );
        if std::thread::panicking() {
            eprintln!("{message}");
        } else {
            panic!("{message}");
        }
    }
}

/// The cgroup hierarchy in use and the directory of this process's memory cgroup in it, under
/// which the test cgroups are made (so whatever limits this process has also bound them).
fn parent_dir() -> Result<(Version, PathBuf), String> {
    let root = Path::new(CGROUP_ROOT);
    let mountinfo = read("/proc/self/mountinfo")?;
    let own = read("/proc/self/cgroup")?;
    if root.join("cgroup.controllers").is_file() {
        // Unified: one hierarchy; "0::/path" in /proc/self/cgroup.
        let path = own
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .ok_or_else(|| format!("no cgroup v2 entry (0::) in /proc/self/cgroup: {own:?}"))?;
        let mount = mount_of(&mountinfo, |fstype, _| fstype == "cgroup2").ok_or_else(|| {
            format!("no cgroup2 mount in /proc/self/mountinfo under {CGROUP_ROOT}")
        })?;
        let dir = join_cgroup(&mount, path)?;
        // A child gets the memory controller only if the parent delegates it.
        let subtree = dir.join("cgroup.subtree_control");
        let enabled = read(&subtree)?;
        if !enabled.split_whitespace().any(|c| c == "memory") {
            return Err(format!(
                "the memory controller is not enabled for children of this process's cgroup: \
                 {} is {:?} (cgroup v2 enables it only in a cgroup without processes of its \
                 own): run the tests in a delegated cgroup with memory in its subtree_control",
                subtree.display(),
                enabled.trim()
            ));
        }
        return Ok((Version::V2, dir));
    }
    let v1 = root.join("memory");
    if !v1.is_dir() {
        return Err(format!(
            "no cgroup memory controller: neither {}/cgroup.controllers (v2) nor {} (v1) exists",
            root.display(),
            v1.display()
        ));
    }
    // "4:memory:/path" (controllers may be combined, e.g. "memory,foo").
    let path = own
        .lines()
        .find_map(|l| {
            let mut fields = l.splitn(3, ':');
            let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            controllers
                .split(',')
                .any(|c| c == "memory")
                .then_some(path)
        })
        .ok_or_else(|| format!("no memory controller in /proc/self/cgroup: {own:?}"))?;
    let mount = mount_of(&mountinfo, |fstype, options| {
        fstype == "cgroup" && options.split(',').any(|o| o == "memory")
    })
    .ok_or_else(|| "no cgroup v1 memory mount in /proc/self/mountinfo".to_string())?;
    Ok((Version::V1, join_cgroup(&mount, path)?))
}

/// A cgroup mount: the cgroup path it shows (its root) and where.
struct Mount {
    root: String,
    point: PathBuf,
}

/// The first mount under [`CGROUP_ROOT`] whose filesystem type and super options match.
/// A mountinfo line: `id parent dev root point options [tags] - fstype source superoptions`.
fn mount_of(mountinfo: &str, matches: impl Fn(&str, &str) -> bool) -> Option<Mount> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        let (root, point) = (*left.get(3)?, *left.get(4)?);
        let (fstype, options) = (*right.first()?, *right.get(2)?);
        (point.starts_with(CGROUP_ROOT) && matches(fstype, options)).then(|| Mount {
            root: root.to_string(),
            point: PathBuf::from(point),
        })
    })
}

/// The directory of cgroup `path` in `mount`, as the JVM computes it.
fn join_cgroup(mount: &Mount, path: &str) -> Result<PathBuf, String> {
    let relative = if mount.root == "/" {
        path
    } else {
        path.strip_prefix(mount.root.as_str()).ok_or_else(|| {
            format!(
                "this process's cgroup {path} is outside the mounted one {} at {}",
                mount.root,
                mount.point.display()
            )
        })?
    };
    let dir = mount.point.join(relative.trim_start_matches('/'));
    if dir.is_dir() {
        Ok(dir)
    } else {
        Err(format!(
            "this process's cgroup directory {} does not exist",
            dir.display()
        ))
    }
}

fn read(path: impl AsRef<Path>) -> Result<String, String> {
    let path = path.as_ref();
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}
