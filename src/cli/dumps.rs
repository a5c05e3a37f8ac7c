//! The workstation's commands, `jvm-guard dumps` and `jvm-guard report`, and `agent-dumps`
//! (the container's side of `dumps`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::remote::dumps::{self as remote, DumpsError};

#[derive(Debug, clap::Args)]
pub struct DumpsArgs {
    #[command(subcommand)]
    pub op: DumpsOp,
}

#[derive(Debug, clap::Subcommand)]
pub enum DumpsOp {
    /// The container's heap dumps and crash logs: size, time, and whether complete.
    List(TargetArgs),
    /// Copy a dump to this machine (gzip on the way, SHA-256 checked; never overwrites).
    Pull(PullArgs),
    /// Take a heap dump of the running JVM (no JDK needed in the image), then pull it.
    Take(TakeArgs),
}

#[derive(Debug, clap::Args)]
pub struct TargetArgs {
    /// The pod.
    pub pod: String,
    /// The container [default: the pod's default container, else its first].
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// The namespace [default: the kubeconfig's].
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct PullArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// The file in the dump directory [default: the newest complete heap dump].
    pub name: Option<String>,
    /// Where to write it [default: its name, in the current directory].
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct TakeArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Unreachable objects too (no full GC before the dump).
    #[arg(long)]
    pub all: bool,
    /// Leave the dump in the container's dump directory.
    #[arg(long)]
    pub no_pull: bool,
    /// Where to write it [default: its name, in the current directory].
    #[arg(short = 'o', long, value_name = "FILE", conflicts_with = "no_pull")]
    pub output: Option<PathBuf>,
}

pub fn run_dumps(args: DumpsArgs) -> ExitCode {
    finish(block_on(dumps(args)))
}

/// Runs `work` on a current-thread runtime with kube's TLS provider (rustls with ring, the one
/// built in).
fn block_on<T, E: std::fmt::Display>(
    work: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    runtime.block_on(work).map_err(|e| e.to_string())
}

fn finish(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn dumps(args: DumpsArgs) -> Result<(), DumpsError> {
    let t = match &args.op {
        DumpsOp::List(t) => t,
        DumpsOp::Pull(p) => &p.target,
        DumpsOp::Take(t) => &t.target,
    };
    let client = crate::remote::client().await?;
    let target = crate::remote::target(
        client,
        t.namespace.as_deref(),
        &t.pod,
        t.container.as_deref(),
    )
    .await?;
    match args.op {
        DumpsOp::List(_) => {
            let listing = remote::list(&target).await?;
            print!("{}", remote::render(&listing, &target));
        }
        DumpsOp::Pull(p) => {
            let listing = remote::list(&target).await?;
            let name = match &p.name {
                Some(name) => name.clone(),
                None => remote::newest_heap_dump(&listing)
                    .ok_or_else(|| DumpsError::NoDump {
                        target: target.to_string(),
                        dir: Some(listing.dir.clone()),
                    })?
                    .to_string(),
            };
            let bytes = listing
                .files
                .iter()
                .find(|f| f.name == name)
                .map_or(0, |f| f.bytes);
            pull(&target, &name, bytes, p.output).await?;
        }
        DumpsOp::Take(t) => {
            let taken = remote::take(&target, t.all).await?;
            eprintln!(
                "took {} ({}) of the JVM (pid {}) in {target}",
                taken.name,
                crate::agent::inspect::bytes(taken.bytes),
                taken.pid
            );
            if !t.no_pull {
                pull(&target, &taken.name, taken.bytes, t.output).await?;
            }
        }
    }
    Ok(())
}

async fn pull(
    target: &crate::remote::Target,
    name: &str,
    bytes: u64,
    output: Option<PathBuf>,
) -> Result<(), DumpsError> {
    let dest = output.unwrap_or_else(|| PathBuf::from(name));
    let pulled = remote::pull(target, name, bytes, &dest, true).await?;
    let secs = pulled.elapsed.as_secs_f64().max(0.001);
    println!(
        "{}: {} bytes ({} compressed), sha256 {}, in {:.1} s ({:.1} MiB/s)",
        pulled.path.display(),
        pulled.bytes,
        pulled.compressed,
        pulled.sha256,
        secs,
        pulled.bytes as f64 / 1048576.0 / secs
    );
    Ok(())
}

/// The container's side, run by `dumps` through the exec API; its output is for that side.
#[derive(Debug, clap::Args)]
pub struct AgentDumpsArgs {
    #[command(subcommand)]
    pub op: AgentDumpsOp,
    /// The dump directory [default: $JVM_GUARD_DUMP_DIR, which the webhook sets].
    #[arg(long, value_name = "DIR", global = true)]
    pub dir: Option<PathBuf>,
    /// The JVM's pid, for `take` [default: as `inspect` finds it].
    #[arg(long, value_name = "PID", global = true)]
    pub pid: Option<u32>,
}

#[derive(Debug, clap::Subcommand)]
pub enum AgentDumpsOp {
    /// Print the dump directory's files as JSON.
    List,
    /// Write one file gzip-compressed to stdout, its size and SHA-256 on stderr (JSON lines).
    Send { name: String },
    /// Have the JVM write a heap dump into the dump directory (the attach protocol); print it.
    Take {
        /// The container's name, part of the file name [default: $JVM_GUARD_CONTAINER].
        #[arg(long)]
        container: Option<String>,
        #[arg(long)]
        all: bool,
    },
}

pub fn run_agent_dumps(args: AgentDumpsArgs) -> ExitCode {
    use crate::agent::dumps;
    let dir = match args.dir.clone().or_else(|| {
        std::env::var_os(crate::agent::inspect::DUMP_DIR_ENV)
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
    }) {
        Some(dir) => dir,
        None => {
            eprintln!(
                "error: no dump directory: --dir, or {} (set by the webhook when heap-dump is applied)",
                crate::agent::inspect::DUMP_DIR_ENV
            );
            return ExitCode::from(2);
        }
    };
    let result = match args.op {
        AgentDumpsOp::List => dumps::list(&dir).map(|l| json(&l)),
        AgentDumpsOp::Send { name } => {
            dumps::send(&dir, &name, std::io::stdout().lock(), std::io::stderr()).map(|_| ())
        }
        AgentDumpsOp::Take { container, all } => {
            let container = container
                .or_else(|| std::env::var(crate::options::agent_env::CONTAINER).ok())
                .unwrap_or_else(|| "container".into());
            let mut options = super::agent::jvm_options(args.pid, None, None);
            options.dumps = None;
            dumps::take(&options, &dir, &container, all, Duration::from_secs(600)).map(|t| json(&t))
        }
    };
    finish(result.map_err(|e| e.to_string()))
}

fn json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string(value).expect("plain data serializes")
    );
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Text,
    Wide,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The namespace [default: the kubeconfig's].
    #[arg(short = 'n', long, conflicts_with = "all_namespaces")]
    pub namespace: Option<String>,
    /// Every namespace labelled `jvm-guard.io/inject=enabled`.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// `text`, `wide` (the features, and with --live the JVM's heap and dumps) or `json`.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = ReportFormat::Text)]
    pub output: ReportFormat,
    /// Ask each guarded container's JVM (`inspect` through the exec API): its real heap
    /// maximum and the dumps on disk.
    #[arg(long)]
    pub live: bool,
}

pub fn run_report(args: ReportArgs) -> ExitCode {
    use crate::remote::report::{self, Scope};
    let rows = block_on(async {
        let client = crate::remote::client().await?;
        let scope = match (args.all_namespaces, &args.namespace) {
            (true, _) => Scope::OptedIn,
            (false, Some(ns)) => Scope::Namespace(ns.clone()),
            (false, None) => Scope::Namespace(client.default_namespace().to_string()),
        };
        report::gather(&client, scope, args.live).await
    });
    finish(rows.map(|rows| match args.output {
        ReportFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("plain data serializes")
        ),
        _ if rows.is_empty() => eprintln!("no guarded or unguarded JVM containers found"),
        format => print!("{}", report::render(&rows, format == ReportFormat::Wide)),
    }))
}
