//! `jvm-guard inspect`: what the JVM in this container runs with, read from its HotSpot
//! performance data (no JDK tool needed), against the cgroup memory limit, with its dumps.
//!
//! [`gather`] collects a [`Report`] (each part on its own: a JVM that cannot be read still
//! leaves the limit and the dumps), [`render`] prints it for people, `-o json` prints the
//! struct itself.

pub mod cgroup;
pub mod jvm;
pub mod perfdata;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

pub use self::cgroup::{MemoryLimit, Roots};
pub use self::jvm::{ArgSource, Gc};

/// The container's own dump directory, set by the webhook in guarded containers.
pub const DUMP_DIR_ENV: &str = crate::options::agent_env::DUMP_DIR;

/// Where HotSpot on Linux puts `hsperfdata_<user>`: `os::get_temp_directory()` is `/tmp`
/// whatever `TMPDIR` or `java.io.tmpdir` say.
pub const HOTSPOT_TMPDIR: &str = "/tmp";

/// Exit codes besides 0 (the JVM was found and read) and 2 (bad flags).
pub const EXIT_NO_JVM: u8 = 3;
pub const EXIT_UNREADABLE: u8 = 4;
pub const EXIT_SEVERAL_JVMS: u8 = 5;

/// The version of the JSON layout: raised when a field changes meaning or goes away.
pub const FORMAT: u32 = 1;

/// How long a file HotSpot has not yet marked accessible is waited for (jstat waits 5 s).
const ACCESSIBLE_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct Options {
    pub pid: Option<u32>,
    /// Searched for `hsperfdata_*/<pid>`, in order.
    pub tmpdirs: Vec<PathBuf>,
    pub dumps: Option<DumpDir>,
    pub cgroup: Roots,
    /// `/proc`: which pids run, and their environment.
    pub proc: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DumpDir {
    pub dir: PathBuf,
    /// `--dumps` or `JVM_GUARD_DUMP_DIR`.
    pub from: String,
}

/// Everything `inspect` found; `-o json` prints exactly this. Each part is either its value or
/// its error (the other `null`); `dumps` and `dumps_error` both `null`: no dump directory is
/// configured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub format: u32,
    pub jvm: Option<Jvm>,
    pub jvm_error: Option<JvmError>,
    pub memory_limit: Option<MemoryLimit>,
    pub memory_limit_error: Option<String>,
    pub dumps: Option<Dumps>,
    pub dumps_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Jvm {
    pub pid: u32,
    /// The performance-data file read.
    pub file: PathBuf,
    /// Whether `/proc/<pid>` exists: a JVM killed hard leaves its file behind.
    pub running: bool,
    /// `java.property.java.vm.name`, e.g. `OpenJDK 64-Bit Server VM`.
    pub vm_name: Option<String>,
    /// `java.property.java.vm.version`, e.g. `17.0.15+6-LTS`.
    pub vm_version: Option<String>,
    pub vm_vendor: Option<String>,
    /// `java.property.java.version`, e.g. `17.0.15`.
    pub java_version: Option<String>,
    /// `sun.rt.javaCommand`: the main class or `-jar` file and its arguments.
    pub command: Option<String>,
    /// `java.rt.vmArgs`: every JVM option, as HotSpot recorded them.
    pub vm_args: Option<String>,
    /// `java.rt.vmFlags`: options from a flags file (`-XX:Flags=`, `.hotspotrc`).
    pub vm_flags: Option<String>,
    /// `vm_args` split by where they came from, from the JVM's environment; `null` when that
    /// cannot be told (environment unreadable, or the record does not match it).
    pub arg_sources: Option<Vec<ArgSource>>,
    pub gc: Gc,
    /// `MaxHeapSize`; `null` when the counters do not give it for this GC.
    pub max_heap_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JvmErrorKind {
    /// No performance-data file: exit code [`EXIT_NO_JVM`].
    NotFound,
    /// Several running JVMs and no `--pid`: [`EXIT_SEVERAL_JVMS`].
    SeveralJvms,
    /// The file cannot be read or parsed: [`EXIT_UNREADABLE`].
    Unreadable,
}

#[derive(Debug, Clone, Serialize)]
pub struct JvmError {
    pub kind: JvmErrorKind,
    /// The file, when the problem is one file.
    pub file: Option<PathBuf>,
    pub message: String,
}

impl JvmErrorKind {
    pub fn exit_code(&self) -> u8 {
        match self {
            JvmErrorKind::NotFound => EXIT_NO_JVM,
            JvmErrorKind::SeveralJvms => EXIT_SEVERAL_JVMS,
            JvmErrorKind::Unreadable => EXIT_UNREADABLE,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Dumps {
    pub dir: PathBuf,
    pub from: String,
    /// Newest first.
    pub files: Vec<DumpFile>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DumpFile {
    pub name: String,
    /// `heap_dump` (`*.hprof`) or `error_log` (`hs_err_pid*.log`).
    pub kind: &'static str,
    pub bytes: u64,
    /// Seconds since the Unix epoch.
    pub modified: Option<u64>,
}

impl Report {
    /// 0, or the code of the JVM part's problem.
    pub fn exit_code(&self) -> u8 {
        self.jvm_error.as_ref().map_or(0, |e| e.kind.exit_code())
    }
}

pub fn gather(options: &Options) -> Report {
    let (jvm, jvm_error) = match find_and_read(options) {
        Ok(jvm) => (Some(jvm), None),
        Err(e) => (None, Some(e)),
    };
    let (memory_limit, memory_limit_error) = match cgroup::memory_limit(&options.cgroup) {
        Ok(m) => (Some(m), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let (dumps, dumps_error) = match &options.dumps {
        None => (None, None),
        Some(d) => match list_dumps(&d.dir) {
            Ok(files) => (
                Some(Dumps {
                    dir: d.dir.clone(),
                    from: d.from.clone(),
                    files,
                }),
                None,
            ),
            Err(e) => (None, Some(format!("{}: {e}", d.dir.display()))),
        },
    };
    Report {
        format: FORMAT,
        jvm,
        jvm_error,
        memory_limit,
        memory_limit_error,
        dumps,
        dumps_error,
    }
}

/// Why a JVM may have no file, said whenever none is found.
const WHY_ABSENT: &str = "the JVM may run with -XX:-UsePerfData, have a temp directory it \
    cannot write (a read-only /tmp) or another than the one searched (--tmpdir), or run as \
    another user (the file is readable by its owner only)";

fn find_and_read(options: &Options) -> Result<Jvm, JvmError> {
    let (pid, file) = choose(options)?;
    let unreadable = |message: String| JvmError {
        kind: JvmErrorKind::Unreadable,
        file: Some(file.clone()),
        message: format!("{}: {message}", file.display()),
    };
    let started = std::time::Instant::now();
    let data = loop {
        let bytes = read_capped(&file).map_err(|e| unreadable(e.to_string()))?;
        match perfdata::parse(&bytes) {
            Err(perfdata::PerfDataError::NotAccessible) if started.elapsed() < ACCESSIBLE_WAIT => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(unreadable(e.to_string())),
            Ok(data) => break data,
        }
    };
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

fn read_capped(path: &Path) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
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

fn list_dumps(dir: &Path) -> std::io::Result<Vec<DumpFile>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let kind = if name.ends_with(".hprof") {
            "heap_dump"
        } else if name.starts_with("hs_err_pid") && name.ends_with(".log") {
            "error_log"
        } else {
            continue;
        };
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs());
        files.push(DumpFile {
            name,
            kind,
            bytes: meta.len(),
            modified,
        });
    }
    files.sort_by(|a, b| b.modified.cmp(&a.modified).then(a.name.cmp(&b.name)));
    Ok(files)
}

// ---------------------------------------------------------------------------------------------
// The human summary

pub fn render(report: &Report, now: SystemTime) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
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
    use std::fs;

    use super::perfdata::{tests::Builder, ByteOrder};
    use super::*;

    fn perf_file(dir: &Path, user: &str, pid: u32, bytes: &[u8]) -> PathBuf {
        let d = dir.join(format!("hsperfdata_{user}"));
        fs::create_dir_all(&d).unwrap();
        let f = d.join(pid.to_string());
        fs::write(&f, bytes).unwrap();
        f
    }

    fn jvm_bytes() -> Vec<u8> {
        Builder::new(ByteOrder::Little)
            .string("java.property.java.vm.name", "OpenJDK 64-Bit Server VM")
            .string("java.property.java.vm.version", "17.0.15+6")
            .string("sun.rt.javaCommand", "app.jar")
            .string("java.rt.vmArgs", "-XX:MaxRAMPercentage=62 -Xss1m")
            .string("sun.gc.policy.name", "Copy:MSC")
            .long("sun.gc.generation.0.maxCapacity", 222_298_112)
            .long("sun.gc.generation.1.maxCapacity", 444_596_224)
            .build()
    }

    /// A fake `/proc` where these pids run, one with an environment.
    fn options(tmp: &Path, running: &[u32], pid: Option<u32>) -> Options {
        let proc = tmp.join("proc");
        for p in running {
            fs::create_dir_all(proc.join(p.to_string())).unwrap();
        }
        if let Some(p) = running.first() {
            fs::write(
                proc.join(p.to_string()).join("environ"),
                b"PATH=/bin\0JAVA_TOOL_OPTIONS=-XX:MaxRAMPercentage=62\0",
            )
            .unwrap();
        }
        let cg = tmp.join("cg");
        fs::create_dir_all(cg.join("proc/self")).unwrap();
        fs::create_dir_all(cg.join("root/sys/fs/cgroup")).unwrap();
        fs::write(cg.join("proc/self/cgroup"), "0::/\n").unwrap();
        fs::write(
            cg.join("proc/self/mountinfo"),
            "1 2 0:1 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
        )
        .unwrap();
        fs::write(cg.join("root/sys/fs/cgroup/memory.max"), "1073741824\n").unwrap();
        Options {
            pid,
            tmpdirs: vec![tmp.join("tmp")],
            dumps: None,
            cgroup: Roots {
                proc_self: cg.join("proc/self"),
                root: cg.join("root"),
            },
            proc,
        }
    }

    #[test]
    fn reports_the_jvm_against_the_limit() {
        let tmp = tempfile::tempdir().unwrap();
        perf_file(&tmp.path().join("tmp"), "app", 1, &jvm_bytes());
        let report = gather(&options(tmp.path(), &[1], None));
        assert_eq!(report.exit_code(), 0, "{:?}", report.jvm_error);
        let jvm = report.jvm.as_ref().unwrap();
        assert_eq!(jvm.max_heap_bytes, Some(666_894_336));
        assert_eq!(jvm.gc, Gc::Serial);
        assert!(jvm.running);
        let sources = jvm.arg_sources.as_ref().unwrap();
        assert_eq!(sources[0].source, "JAVA_TOOL_OPTIONS");
        assert_eq!(sources[1].args, ["-Xss1m"]);
        let text = render(&report, SystemTime::now());
        assert!(
            text.contains("JVM: OpenJDK 64-Bit Server VM 17.0.15+6 (pid 1)"),
            "{text}"
        );
        assert!(
            text.contains("heap: max 636 MiB of a 1 GiB memory limit (62%), Serial GC"),
            "{text}"
        );
        assert!(
            text.contains("  from JAVA_TOOL_OPTIONS: -XX:MaxRAMPercentage=62"),
            "{text}"
        );
        assert!(text.contains("  from command line: -Xss1m"), "{text}");
        assert!(
            text.contains("dumps: no dump directory is configured"),
            "{text}"
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["format"], 1);
        assert_eq!(json["jvm"]["max_heap_bytes"], 666_894_336u64);
        assert_eq!(json["jvm"]["gc"], "serial");
        assert_eq!(json["memory_limit"]["limit_bytes"], 1u64 << 30);
        assert_eq!(json["memory_limit"]["version"], "v2");
        assert!(json["dumps"].is_null() && json["dumps_error"].is_null());
    }

    #[test]
    fn chooses_pid_1_then_the_only_running_jvm() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path().join("tmp");
        perf_file(&t, "a", 40, &jvm_bytes());
        perf_file(&t, "b", 41, &jvm_bytes());
        // 41 is stale (not running): 40 is the one.
        let report = gather(&options(tmp.path(), &[40], None));
        assert_eq!(report.jvm.unwrap().pid, 40);

        let report = gather(&options(tmp.path(), &[40, 41], None));
        let err = report.jvm_error.unwrap();
        assert_eq!(err.kind, JvmErrorKind::SeveralJvms);
        assert!(err.message.contains("--pid"), "{}", err.message);
        assert!(err.message.contains("pid 41"), "{}", err.message);

        let report = gather(&options(tmp.path(), &[40, 41], Some(41)));
        assert_eq!(report.jvm.unwrap().pid, 41);

        perf_file(&t, "c", 1, &jvm_bytes());
        let report = gather(&options(tmp.path(), &[40, 41], None));
        assert_eq!(report.jvm.unwrap().pid, 1);

        let report = gather(&options(tmp.path(), &[], Some(7)));
        assert_eq!(report.exit_code(), EXIT_NO_JVM);
    }

    #[test]
    fn no_file_says_why_and_still_reports_the_rest() {
        let tmp = tempfile::tempdir().unwrap();
        let dumps = tmp.path().join("dumps");
        fs::create_dir_all(&dumps).unwrap();
        fs::write(dumps.join("java_pid1.hprof"), vec![0u8; 2048]).unwrap();
        fs::write(dumps.join("hs_err_pid1.log"), "x").unwrap();
        fs::write(dumps.join("notes.txt"), "x").unwrap();
        let mut opts = options(tmp.path(), &[], None);
        opts.dumps = Some(DumpDir {
            dir: dumps.clone(),
            from: DUMP_DIR_ENV.into(),
        });
        let report = gather(&opts);
        assert_eq!(report.exit_code(), EXIT_NO_JVM);
        let text = render(&report, SystemTime::now());
        assert!(text.contains("-XX:-UsePerfData"), "{text}");
        assert!(text.contains("memory limit: 1 GiB (cgroup v2"), "{text}");
        assert!(
            text.contains(&format!("dumps: 2 in {}", dumps.display())),
            "{text}"
        );
        assert!(text.contains("java_pid1.hprof  2 KiB"), "{text}");
        let d = report.dumps.unwrap();
        assert_eq!(d.files.len(), 2);

        // Stale files only.
        perf_file(&tmp.path().join("tmp"), "a", 99, &jvm_bytes());
        let err = gather(&options(tmp.path(), &[], None)).jvm_error.unwrap();
        assert!(err.message.contains("no longer run"), "{}", err.message);
    }

    #[test]
    fn a_bad_file_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let mut bad = jvm_bytes();
        bad.truncate(60);
        let file = perf_file(&tmp.path().join("tmp"), "app", 1, &bad);
        let report = gather(&options(tmp.path(), &[1], None));
        let err = report.jvm_error.as_ref().unwrap();
        assert_eq!(err.kind, JvmErrorKind::Unreadable);
        assert_eq!(report.exit_code(), EXIT_UNREADABLE);
        assert!(
            err.message.starts_with(&file.display().to_string()),
            "{}",
            err.message
        );
        assert!(err.message.contains("runs past the end"), "{}", err.message);
        assert!(report.memory_limit.is_some());
    }

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
