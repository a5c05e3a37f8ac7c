//! `jvm-guard inspect`: what the JVM in this container runs with, read from its HotSpot
//! performance data (no JDK tool needed), against the cgroup memory limit, with its dumps.
//!
//! [`gather`] collects a [`Report`] (each part on its own: a JVM that cannot be read still
//! leaves the limit and the dumps), [`render`] prints it for people, `-o json` prints the
//! struct itself.

pub use super::cgroup;
mod dumps;
mod find;
pub mod jvm;
pub mod perfdata;
mod render;

use std::path::PathBuf;

use serde::Serialize;

pub use self::cgroup::{MemoryLimit, Roots};
pub use self::jvm::{ArgSource, Gc};
pub use self::render::{bytes, render};

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

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct DumpFile {
    pub name: String,
    pub kind: DumpKind,
    pub bytes: u64,
    /// Seconds since the Unix epoch.
    pub modified: Option<u64>,
    /// Heap dumps: whether the HPROF records end where the file does, closed (see
    /// `agent::hprof`); `false` while the JVM still writes it or when a kill cut it short.
    /// `null` for crash logs.
    #[serde(default)]
    pub complete: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DumpKind {
    /// `*.hprof`
    HeapDump,
    /// `hs_err_pid*.log` (and rotated `*.hs_err.log`)
    ErrorLog,
}

/// The heap dumps and crash logs of `dir`, newest first.
pub fn dump_files(dir: &std::path::Path) -> std::io::Result<Vec<DumpFile>> {
    dumps::list(dir)
}

impl Report {
    /// 0, or the code of the JVM part's problem.
    pub fn exit_code(&self) -> u8 {
        self.jvm_error.as_ref().map_or(0, |e| e.kind.exit_code())
    }
}

/// The performance data of the JVM `options` choose, as it is now, and its pid: for callers
/// that want the counters themselves (the supervising agent's samples).
pub fn perf_data(options: &Options) -> Result<(u32, perfdata::PerfData), JvmError> {
    find::read(options).map(|(pid, _, data)| (pid, data))
}

pub fn gather(options: &Options) -> Report {
    let (jvm, jvm_error) = match find::find_and_read(options) {
        Ok(jvm) => (Some(jvm), None),
        Err(e) => (None, Some(e)),
    };
    let (memory_limit, memory_limit_error) = match cgroup::memory_limit(&options.cgroup) {
        Ok(m) => (Some(m), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let (dumps, dumps_error) = match &options.dumps {
        None => (None, None),
        Some(d) => match dumps::list(&d.dir) {
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

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;
    use std::time::{Duration, SystemTime};

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
    fn text_from_the_container_cannot_forge_lines_or_drive_the_terminal() {
        let tmp = tempfile::tempdir().unwrap();
        let forged = Builder::new(ByteOrder::Little)
            .string(
                "java.property.java.vm.name",
                "OpenJDK\u{1b}[2J\u{1b}]0;owned\u{7}",
            )
            .string("sun.rt.javaCommand", "app.jar\nheap: max 64 GiB\r")
            .string("java.rt.vmArgs", "-Dx=\u{202e}gpj.exe -Xss1m")
            .string("sun.gc.policy.name", "Copy:MSC")
            .long("sun.gc.generation.0.maxCapacity", 222_298_112)
            .long("sun.gc.generation.1.maxCapacity", 444_596_224)
            .build();
        perf_file(&tmp.path().join("tmp"), "app", 1, &forged);
        let dumps = tmp.path().join("dumps");
        fs::create_dir_all(&dumps).unwrap();
        fs::write(dumps.join("java_pid1\ndumps: none.hprof"), "x").unwrap();
        let mut opts = options(tmp.path(), &[1], None);
        opts.dumps = Some(DumpDir {
            dir: dumps,
            from: DUMP_DIR_ENV.into(),
        });
        let report = gather(&opts);
        let text = render(&report, SystemTime::now());
        assert!(
            !text
                .chars()
                .any(|c| c.is_control() && c != '\n' || c == '\u{202e}'),
            "{text:?}"
        );
        assert!(
            text.contains("OpenJDK\\u{1b}[2J\\u{1b}]0;owned\\u{7}"),
            "{text}"
        );
        assert!(
            text.contains("command: app.jar\\nheap: max 64 GiB\\r\n"),
            "{text}"
        );
        assert!(text.contains("-Dx=\\u{202e}gpj.exe"), "{text}");
        assert!(text.contains("  java_pid1\\ndumps: none.hprof  "), "{text}");
        let starts = |prefix: &str| text.lines().filter(|l| l.starts_with(prefix)).count();
        assert_eq!(starts("heap: "), 1, "{text}");
        assert_eq!(starts("dumps: "), 1, "{text}");
        // JSON carries the text as it is.
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["jvm"]["command"], "app.jar\nheap: max 64 GiB\r");
    }

    #[test]
    fn a_fifo_in_the_perf_data_directory_is_not_waited_on() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("tmp/hsperfdata_app");
        fs::create_dir_all(&dir).unwrap();
        let fifo =
            std::ffi::CString::new(dir.join("1").into_os_string().into_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let opts = options(tmp.path(), &[1], None);
        let (sent, received) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = sent.send(gather(&opts));
        });
        // Only that it returns: opening a FIFO without a writer blocks for good.
        let report = received
            .recv_timeout(Duration::from_secs(60))
            .expect("inspect returns despite a FIFO named like a perf-data file");
        let err = report.jvm_error.unwrap();
        assert_eq!(err.kind, JvmErrorKind::Unreadable);
        assert!(
            err.message.contains("not a regular file"),
            "{}",
            err.message
        );
        assert!(report.memory_limit.is_some(), "the rest is still reported");
    }
}
