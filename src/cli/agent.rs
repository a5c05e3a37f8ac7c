//! The agent commands' flags: `exec`, `install-tools`, `rotate-dumps`, `inspect`.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::config::rlimit::{Rlimit, RlimitError};

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// A limit: NAME=N or NAME=SOFT:HARD, NAME one of nofile, nproc, core, memlock, stack;
    /// `unlimited` allowed. Repeatable.
    #[arg(long = "rlimit", value_name = "NAME=SOFT[:HARD]", value_parser = parse_rlimit)]
    pub rlimits: Vec<Rlimit>,
    /// Stay as the container's init: start the command as a child, forward signals to it,
    /// reap orphans, sample the JVM and the cgroup, write the verdict when it exits, and exit
    /// with its status (128 + n for signal n).
    #[arg(long)]
    pub supervise: bool,
    /// The termination-message file to keep the latest sample and the verdict in (the
    /// kubelet's /dev/termination-log); left alone once something else writes to it.
    #[arg(long, value_name = "PATH", requires = "supervise")]
    pub termination_log: Option<PathBuf>,
    /// The program and its arguments, after `--`; found on PATH like a shell does.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

fn parse_rlimit(s: &str) -> Result<Rlimit, String> {
    s.parse().map_err(|e: RlimitError| e.to_string())
}

#[derive(Debug, clap::Args)]
pub struct InstallToolsArgs {
    /// Target directory (an emptyDir shared with the application containers).
    pub dir: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct RotateDumpsArgs {
    /// The container's dump directory.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// How many rotated dumps to keep (the `dump-keep` key).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 3,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub keep: u32,
    /// The container name, part of the rotated file name.
    #[arg(long, value_name = "NAME")]
    pub container: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InspectFormat {
    Text,
    Json,
}

/// `inspect`'s exit codes, shown by `--help` (kept equal to the constants in
/// `agent::inspect`, which a test checks).
const INSPECT_EXIT_CODES: &str = "Exit codes: 0 the JVM was found and read; 2 bad flags; \
    3 no JVM performance data found (-XX:-UsePerfData, a read-only or other temp directory, \
    another user's JVM); 4 the performance-data file cannot be read or parsed; 5 several JVMs \
    run and --pid is not given. The memory limit and the dumps are printed in every case.";

#[derive(Debug, clap::Args)]
#[command(after_help = INSPECT_EXIT_CODES)]
pub struct InspectArgs {
    /// The JVM's pid [default: 1 if it has performance data, else the only JVM running].
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    /// The temp directory holding hsperfdata_<user>/ [default: /tmp (where HotSpot on Linux
    /// always writes it) and $TMPDIR if set].
    #[arg(long, value_name = "DIR")]
    pub tmpdir: Option<PathBuf>,
    /// The dump directory to list [default: $JVM_GUARD_DUMP_DIR, which the webhook sets].
    #[arg(long, value_name = "DIR")]
    pub dumps: Option<PathBuf>,
    /// `text` for people, `json` for machines (the layout is in docs/agent.md).
    #[arg(short = 'o', long = "output", value_enum, default_value_t = InspectFormat::Text)]
    pub output: InspectFormat,
}

impl InspectArgs {
    pub fn options(&self) -> crate::agent::inspect::Options {
        jvm_options(self.pid, self.tmpdir.as_ref(), self.dumps.as_ref())
    }
}

/// How `inspect` (and `agent-dumps take`) find the JVM and the dump directory: the flags, else
/// the defaults they document.
pub fn jvm_options(
    pid: Option<u32>,
    tmpdir: Option<&PathBuf>,
    dumps: Option<&PathBuf>,
) -> crate::agent::inspect::Options {
    {
        use crate::agent::inspect::{DumpDir, Options, DUMP_DIR_ENV, HOTSPOT_TMPDIR};
        let tmpdirs = match tmpdir {
            Some(dir) => vec![dir.clone()],
            None => {
                let mut dirs = vec![PathBuf::from(HOTSPOT_TMPDIR)];
                if let Some(tmp) = std::env::var_os("TMPDIR").filter(|t| !t.is_empty()) {
                    let tmp = PathBuf::from(tmp);
                    if !dirs.contains(&tmp) {
                        dirs.push(tmp);
                    }
                }
                dirs
            }
        };
        let dumps = match dumps {
            Some(dir) => Some(DumpDir {
                dir: dir.clone(),
                from: "--dumps".into(),
            }),
            None => std::env::var_os(DUMP_DIR_ENV)
                .filter(|d| !d.is_empty())
                .map(|d| DumpDir {
                    dir: PathBuf::from(d),
                    from: DUMP_DIR_ENV.into(),
                }),
        };
        Options {
            pid,
            tmpdirs,
            dumps,
            cgroup: crate::agent::inspect::Roots::default(),
            proc: PathBuf::from("/proc"),
        }
    }
}

/// Prints the report; the exit code says whether the JVM part was found and read.
pub fn run_inspect(args: &InspectArgs) -> std::process::ExitCode {
    use crate::agent::inspect;
    let report = inspect::gather(&args.options());
    match args.output {
        InspectFormat::Text => print!("{}", inspect::render(&report, std::time::SystemTime::now())),
        InspectFormat::Json => match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("error: {e}");
                return std::process::ExitCode::FAILURE;
            }
        },
    }
    std::process::ExitCode::from(report.exit_code())
}

#[cfg(test)]
mod tests {
    use crate::agent::inspect;

    #[test]
    fn the_help_names_the_exit_codes_the_command_uses() {
        for (code, what) in [
            (inspect::EXIT_NO_JVM, "no JVM performance data found"),
            (
                inspect::EXIT_UNREADABLE,
                "the performance-data file cannot be read",
            ),
            (inspect::EXIT_SEVERAL_JVMS, "several JVMs"),
        ] {
            assert!(
                super::INSPECT_EXIT_CODES.contains(&format!("{code} {what}")),
                "{code} {what}"
            );
        }
    }
}
