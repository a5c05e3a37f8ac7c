//! Command-line interface: flags (each also from a `JVM_GUARD_*` variable) and the commands.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{Defaults, Settings};
use crate::manifest::{self, ManifestError, Preview};
use crate::rlimit::Rlimit;

#[derive(Debug, Parser)]
#[command(
    name = "jvm-guard",
    version,
    about = "Makes JVM pods safe to run and easy to debug"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Offline preview: read manifests, print them as the webhook would mutate them.
    Mutate(MutateArgs),
    /// Set resource limits, then run the command in this process (the rlimit wrapper).
    Exec(ExecArgs),
    /// Copy this binary into DIR (run by the injected init container).
    InstallTools(InstallToolsArgs),
    /// Rename fresh heap dumps to unique names and delete the oldest (the OutOfMemoryError hook).
    RotateDumps(RotateDumpsArgs),
}

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// A limit: NAME=N or NAME=SOFT:HARD, NAME one of nofile, nproc, core, memlock, stack;
    /// `unlimited` allowed. Repeatable.
    #[arg(long = "rlimit", value_name = "NAME=SOFT[:HARD]", value_parser = parse_rlimit)]
    pub rlimits: Vec<Rlimit>,
    /// The program and its arguments, after `--`; found on PATH like a shell does.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

fn parse_rlimit(s: &str) -> Result<Rlimit, String> {
    s.parse()
        .map_err(|e: crate::rlimit::RlimitError| e.to_string())
}

#[derive(Debug, clap::Args)]
pub struct InstallToolsArgs {
    /// Target directory (an emptyDir shared with the application containers).
    pub dir: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct RotateDumpsArgs {
    /// The pod's dump directory.
    #[arg(long)]
    pub dir: PathBuf,
    /// How many rotated dumps to keep.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub keep: u32,
    /// The container name, part of the rotated file name.
    #[arg(long)]
    pub container: String,
}

/// The image this version is published as; the chart passes the exact reference.
pub const DEFAULT_TOOLS_IMAGE: &str =
    concat!("ghcr.io/jvm-guard/jvm-guard:", env!("CARGO_PKG_VERSION"));

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OutputFormat {
    Yaml,
    Json,
    /// The JSONPatch (single Pod input only).
    Patch,
}

#[derive(Debug, clap::Args)]
pub struct MutateArgs {
    /// Manifest file (multi-document YAML or JSON), or - for standard input.
    #[arg(short = 'f', long = "filename", value_name = "FILE|-")]
    pub file: PathBuf,
    /// A Namespace manifest whose annotations configure the mutation. Without it, the
    /// built-in defaults apply as if the namespace had opted in.
    #[arg(long, value_name = "NS.yaml", env = "JVM_GUARD_NAMESPACE")]
    pub namespace: Option<PathBuf>,
    /// Cluster-wide defaults: a YAML map of jvm-guard keys.
    #[arg(long, value_name = "FILE", env = "JVM_GUARD_DEFAULTS")]
    pub defaults: Option<PathBuf>,
    /// Permit `dump-volume: hostPath:<path>`, as `serve --allow-host-path` does.
    #[arg(long, env = "JVM_GUARD_ALLOW_HOST_PATH")]
    pub allow_host_path: bool,
    /// Image of the injected tools init container.
    #[arg(long, env = "JVM_GUARD_TOOLS_IMAGE", default_value = DEFAULT_TOOLS_IMAGE)]
    pub tools_image: String,
    #[arg(short = 'o', long = "output", value_enum, default_value = "yaml")]
    pub output: OutputFormat,
}

/// An error that names the file it came from; printed as one line, exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct InputError {
    pub file: String,
    pub message: String,
}

fn read_input(path: &Path) -> Result<String, InputError> {
    let name = path.display().to_string();
    let result = if name == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map(|_| s)
    } else {
        std::fs::read_to_string(path)
    };
    result.map_err(|e| InputError {
        file: if name == "-" { "<stdin>".into() } else { name },
        message: e.to_string(),
    })
}

fn in_file(path: &Path) -> impl Fn(ManifestError) -> InputError + '_ {
    move |e| InputError {
        file: if path.as_os_str() == "-" {
            "<stdin>".into()
        } else {
            path.display().to_string()
        },
        message: e.to_string(),
    }
}

/// Runs `jvm-guard mutate`: the output on stdout, warnings on stderr.
pub fn run_mutate(args: &MutateArgs) -> Result<(String, Vec<String>), InputError> {
    let defaults = match &args.defaults {
        None => Defaults::default(),
        Some(path) => Defaults::from_yaml(&read_input(path)?).map_err(|e| InputError {
            file: path.display().to_string(),
            message: e.to_string(),
        })?,
    };
    let namespace = match &args.namespace {
        None => None,
        Some(path) => Some(manifest::parse_namespace(&read_input(path)?).map_err(in_file(path))?),
    };
    let preview = Preview {
        namespace,
        defaults,
        settings: Settings {
            allow_host_path: args.allow_host_path,
            webhook_namespace: None,
            tools_image: Some(args.tools_image.clone()),
        },
    };
    let text = read_input(&args.file)?;
    let docs = manifest::parse_documents(&text).map_err(in_file(&args.file))?;
    let single_pod = docs.len() == 1 && docs[0].get("kind").and_then(|k| k.as_str()) == Some("Pod");
    if matches!(args.output, OutputFormat::Patch) && !single_pod {
        let found = match docs.as_slice() {
            [one] => manifest::describe(one),
            many => format!("{} documents", many.len()),
        };
        return Err(in_file(&args.file)(ManifestError::PatchNeedsOnePod(found)));
    }
    let out = preview.run(docs).map_err(in_file(&args.file))?;
    let warnings = out
        .warnings
        .iter()
        .map(|(object, w)| format!("{object}: {w}"))
        .collect();
    let rendered = match args.output {
        OutputFormat::Yaml => manifest::to_yaml(&out.documents),
        OutputFormat::Json => manifest::to_json(&out.documents),
        OutputFormat::Patch => {
            serde_json::to_string_pretty(&out.patches[0]).expect("patches serialize") + "\n"
        }
    };
    Ok((rendered, warnings))
}

/// Copies the running binary into `dir` atomically: a half-copied tool is never visible.
pub fn install_tools(dir: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let exe = std::env::current_exe()?;
    let target = dir.join("jvm-guard");
    let tmp = dir.join(format!(".jvm-guard.{}.tmp", std::process::id()));
    std::fs::copy(&exe, &tmp)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&tmp, &target)?;
    Ok(target)
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Mutate(args) => match run_mutate(&args) {
            Ok((output, warnings)) => {
                for w in warnings {
                    eprintln!("warning: {w}");
                }
                print!("{output}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Exec(args) => {
            let err = crate::exec::run(&args.rlimits, &args.command);
            eprintln!(
                "jvm-guard exec: cannot run {}: {err}",
                args.command[0].to_string_lossy()
            );
            // Like a shell: 127 when the program is not found, 126 when it cannot be run.
            ExitCode::from(if err.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            })
        }
        Command::InstallTools(args) => match install_tools(&args.dir) {
            Ok(path) => {
                println!("jvm-guard: installed {}", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {}: {e}", args.dir.display());
                ExitCode::FAILURE
            }
        },
        Command::RotateDumps(args) => {
            let now = std::time::SystemTime::now();
            match crate::rotate::rotate(&args.dir, args.keep as usize, &args.container, now) {
                Ok(r) => {
                    for (from, to) in r.renamed {
                        eprintln!(
                            "jvm-guard: heap dump {} -> {}",
                            from.display(),
                            to.display()
                        );
                    }
                    for old in r.deleted {
                        eprintln!("jvm-guard: deleted old heap dump {}", old.display());
                    }
                }
                // Runs on the JVM's way out: report, never fail it.
                Err(e) => eprintln!("jvm-guard: rotating dumps in {}: {e}", args.dir.display()),
            }
            ExitCode::SUCCESS
        }
    }
}
