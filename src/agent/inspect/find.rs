//! The JVM to inspect: its performance-data file among `hsperfdata_*` (`--pid`, pid 1, or the
//! only one running), read, and its environment, to tell where its options came from.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::perfdata::PerfData;
use super::{jvm, perfdata, Jvm, JvmError, JvmErrorKind, Options};

/// How long a file HotSpot has not yet marked accessible is waited for (jstat waits 5 s).
const ACCESSIBLE_WAIT: Duration = Duration::from_secs(2);

/// Why a JVM may have no file, said whenever none is found.
const WHY_ABSENT: &str = "the JVM may run with -XX:-UsePerfData, have a temp directory it \
    cannot write (a read-only /tmp) or another than the one searched (--tmpdir), or run as \
    another user (the file is readable by its owner only)";

/// The chosen JVM's pid, its file and what the file holds now.
pub(super) fn read(options: &Options) -> Result<(u32, PathBuf, PerfData), JvmError> {
    let (pid, file) = choose(options)?;
    let unreadable = |message: String| JvmError {
        kind: JvmErrorKind::Unreadable,
        file: Some(file.clone()),
        message: format!("{}: {message}", file.display()),
    };
    let started = std::time::Instant::now();
    loop {
        let bytes = read_capped(&file).map_err(|e| unreadable(e.to_string()))?;
        match perfdata::parse(&bytes) {
            Err(perfdata::PerfDataError::NotAccessible) if started.elapsed() < ACCESSIBLE_WAIT => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(unreadable(e.to_string())),
            Ok(data) => return Ok((pid, file, data)),
        }
    }
}

pub(super) fn find_and_read(options: &Options) -> Result<Jvm, JvmError> {
    let (pid, file, data) = read(options)?;
    let proc_dir = options.proc.join(pid.to_string());
    let env = read_environ(&proc_dir.join("environ"));
    let string = |name: &str| data.string(name).map(str::to_string);
    let vm_args = string("java.rt.vmArgs");
    let arg_sources = match (&vm_args, &env) {
        (Some(args), Some(env)) => {
            let vars: Vec<(&str, Option<&str>)> = jvm::OPTION_VARS
                .iter()
                .map(|&name| {
                    let value = env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
                    (name, value)
                })
                .collect();
            jvm::arg_sources(args, &vars)
        }
        _ => None,
    };
    let gc = jvm::gc(&data);
    Ok(Jvm {
        pid,
        file: file.clone(),
        running: proc_dir.exists(),
        vm_name: string("java.property.java.vm.name"),
        vm_version: string("java.property.java.vm.version"),
        vm_vendor: string("java.property.java.vm.vendor"),
        java_version: string("java.property.java.version"),
        command: string("sun.rt.javaCommand"),
        vm_args,
        vm_flags: string("java.rt.vmFlags"),
        arg_sources,
        max_heap_bytes: jvm::max_heap(&data, &gc),
        gc,
    })
}

/// The file to read: `--pid`'s, else pid 1's (the container's main process), else the only
/// running JVM's.
fn choose(options: &Options) -> Result<(u32, PathBuf), JvmError> {
    let found = candidates(&options.tmpdirs);
    let searched = options
        .tmpdirs
        .iter()
        .map(|d| format!("{}/hsperfdata_*/", d.display()))
        .collect::<Vec<_>>()
        .join(", ");
    let not_found = |message: String| JvmError {
        kind: JvmErrorKind::NotFound,
        file: None,
        message,
    };
    if let Some(pid) = options.pid {
        return found.into_iter().find(|(p, _)| *p == pid).ok_or_else(|| {
            not_found(format!(
                "no performance-data file for pid {pid} in {searched}: {WHY_ABSENT}"
            ))
        });
    }
    if let Some(one) = found.iter().find(|(p, _)| *p == 1) {
        return Ok(one.clone());
    }
    let running: Vec<&(u32, PathBuf)> = found
        .iter()
        .filter(|(p, _)| options.proc.join(p.to_string()).exists())
        .collect();
    match running.as_slice() {
        [one] => Ok((*one).clone()),
        [] if found.is_empty() => Err(not_found(format!(
            "no JVM performance data in {searched}: {WHY_ABSENT}"
        ))),
        [] => Err(not_found(format!(
            "only files of JVMs that no longer run ({}) in {searched}: {WHY_ABSENT}",
            list(&found)
        ))),
        several => Err(JvmError {
            kind: JvmErrorKind::SeveralJvms,
            file: None,
            message: format!(
                "several JVMs run ({}); choose one with --pid",
                list(&several.iter().map(|c| (*c).clone()).collect::<Vec<_>>())
            ),
        }),
    }
}

fn list(candidates: &[(u32, PathBuf)]) -> String {
    candidates
        .iter()
        .map(|(p, f)| format!("pid {p}: {}", f.display()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every `<dir>/hsperfdata_<user>/<pid>`, by pid.
fn candidates(tmpdirs: &[PathBuf]) -> Vec<(u32, PathBuf)> {
    let mut out = Vec::new();
    for tmp in tmpdirs {
        let Ok(dirs) = std::fs::read_dir(tmp) else {
            continue;
        };
        for dir in dirs.flatten() {
            if !dir.file_name().to_string_lossy().starts_with("hsperfdata_") {
                continue;
            }
            let Ok(files) = std::fs::read_dir(dir.path()) else {
                continue;
            };
            for file in files.flatten() {
                let name = file.file_name();
                let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
                    continue;
                };
                if !out.iter().any(|(p, _)| *p == pid) {
                    out.push((pid, file.path()));
                }
            }
        }
    }
    out.sort();
    out
}

/// The file's bytes, up to one past the cap. Anyone who can write `/tmp` can plant a name
/// there: a FIFO would block `open` and `read` for good, a symlink would lead elsewhere. So the
/// file is opened without blocking and without following a link, and read only if it is a
/// regular file (HotSpot makes it one, and refuses links itself).
fn read_capped(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut bytes = Vec::new();
    file.take(perfdata::MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// `KEY=value` pairs of `/proc/<pid>/environ`; `None` if unreadable (another user's process).
fn read_environ(path: &Path) -> Option<Vec<(String, String)>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(1 << 20)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(
        bytes
            .split(|&b| b == 0)
            .filter_map(|kv| {
                let kv = String::from_utf8_lossy(kv);
                let (k, v) = kv.split_once('=')?;
                Some((k.to_string(), v.to_string()))
            })
            .collect(),
    )
}
