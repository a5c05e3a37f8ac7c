//! Command-line interface: flags (each also from a `JVM_GUARD_*` variable) and the commands.

use std::ffi::OsString;
use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use crate::config::{Defaults, Settings};
use crate::manifest::{self, ManifestError, Preview};
use crate::mutate::ResolvedImages;
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
    /// Run the HTTPS admission webhook, with health and metrics on a plain-HTTP admin port.
    Serve(ServeArgs),
    /// Write a development CA and a serving certificate signed by it (ECDSA P-256).
    Certs(CertsArgs),
    /// Offline preview: read manifests, print them as the webhook would mutate them.
    Mutate(MutateArgs),
    /// Set resource limits, then run the command in this process (the rlimit wrapper).
    Exec(ExecArgs),
    /// Copy this binary into DIR (run by the injected init container).
    InstallTools(InstallToolsArgs),
    /// Rename fresh heap dumps to unique names and delete the oldest (the OutOfMemoryError hook).
    RotateDumps(RotateDumpsArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `jvm-guard serve` (SPEC §5.1). Addresses left unset depend on `--dev`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// HTTPS address of the webhook [default: 0.0.0.0:8443, or 127.0.0.1:8443 with --dev].
    /// Port 0 picks a free port; the bound address is logged.
    #[arg(long, env = "JVM_GUARD_ADDR", value_name = "IP:PORT")]
    pub addr: Option<SocketAddr>,
    /// Plain-HTTP address of /healthz, /readyz and /metrics [default: 0.0.0.0:8080, or
    /// 127.0.0.1:8080 with --dev].
    #[arg(long, env = "JVM_GUARD_ADMIN_ADDR", value_name = "IP:PORT")]
    pub admin_addr: Option<SocketAddr>,
    /// PEM certificate chain, leaf first; reloaded when it changes. Required without --dev.
    #[arg(long, env = "JVM_GUARD_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the certificate; reloaded with it. Required without --dev.
    #[arg(long, env = "JVM_GUARD_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Namespace objects (multi-document YAML or a List) instead of watching the cluster;
    /// those labelled jvm-guard.io/inject=enabled are opted in.
    #[arg(long, env = "JVM_GUARD_NAMESPACES_FILE", value_name = "FILE")]
    pub namespaces_file: Option<PathBuf>,
    /// Cluster-wide defaults: a YAML map of jvm-guard keys.
    #[arg(long, env = "JVM_GUARD_DEFAULTS", value_name = "FILE")]
    pub defaults: Option<PathBuf>,
    /// Image of the injected tools init container (this image). Without it no tools are
    /// injected: no ulimits, no heap-dump rotation [default with --dev: the published image].
    #[arg(long, env = "JVM_GUARD_TOOLS_IMAGE", value_name = "IMAGE")]
    pub tools_image: Option<String>,
    /// Permit `dump-volume: hostPath:<path>`.
    #[arg(long, env = "JVM_GUARD_ALLOW_HOST_PATH")]
    pub allow_host_path: bool,
    /// After SIGTERM, how long to keep accepting requests with /readyz failing, before
    /// draining: seconds, or a duration such as 5s, 1500ms, 1m.
    #[arg(
        long,
        env = "JVM_GUARD_SHUTDOWN_DELAY",
        value_name = "DURATION",
        default_value = "5s",
        value_parser = parse_duration
    )]
    pub shutdown_delay: Duration,
    /// Log lines as text or as JSON objects (on stderr). RUST_LOG sets the level.
    #[arg(long, env = "JVM_GUARD_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// The webhook's own namespace, never mutated.
    #[arg(long, env = "JVM_GUARD_WEBHOOK_NAMESPACE", value_name = "NAMESPACE")]
    pub webhook_namespace: Option<String>,
    /// Try it on a laptop: an in-memory self-signed certificate for localhost and 127.0.0.1,
    /// loopback addresses, and every namespace opted in unless --namespaces-file is given.
    #[arg(long, env = "JVM_GUARD_DEV")]
    pub dev: bool,
    /// Open webhook connections at most; beyond it new connections wait in the listen queue
    /// until one closes. Slow or idle clients are closed after 10 s (TLS handshake, request
    /// head), so they cannot hold the slots for long.
    #[arg(
        long,
        env = "JVM_GUARD_MAX_CONNECTIONS",
        value_name = "N",
        default_value_t = crate::serve::DEFAULT_MAX_CONNECTIONS,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_connections: u32,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Read the pod's imagePullSecrets (kubernetes.io/dockerconfigjson) to look up private
    /// images; needs `get` on Secrets.
    #[arg(long, env = "JVM_GUARD_IMAGE_PULL_SECRETS")]
    pub image_pull_secrets: bool,
}

/// How image ENTRYPOINT and CMD are looked up (SPEC §7), for `serve` and `mutate`.
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryArgs {
    /// Never contact a registry: containers without command are not wrapped.
    #[arg(long, env = "JVM_GUARD_OFFLINE")]
    pub offline: bool,
    /// A registry reached over plain HTTP instead of HTTPS; repeatable (comma-separated in
    /// the variable).
    #[arg(
        long = "insecure-registry",
        env = "JVM_GUARD_INSECURE_REGISTRY",
        value_name = "HOST:PORT",
        value_delimiter = ','
    )]
    pub insecure_registries: Vec<String>,
    /// The time all image lookups of one pod may take together; after it the pod is
    /// admitted with its unresolved containers unwrapped, and a warning.
    #[arg(
        long,
        env = "JVM_GUARD_REGISTRY_TIMEOUT",
        value_name = "DURATION",
        default_value = "1.5s",
        value_parser = parse_duration
    )]
    pub registry_timeout: Duration,
}

impl RegistryArgs {
    /// The resolver's configuration, `None` when offline.
    pub fn config(
        &self,
        secrets: Option<std::sync::Arc<dyn crate::registry::SecretSource>>,
    ) -> Option<crate::registry::RegistryConfig> {
        (!self.offline).then(|| crate::registry::RegistryConfig {
            insecure: self.insecure_registries.clone(),
            budget: self.registry_timeout,
            secrets,
        })
    }
}

pub const DEFAULT_ADDR: &str = "0.0.0.0:8443";
pub const DEFAULT_ADMIN_ADDR: &str = "0.0.0.0:8080";
pub const DEV_ADDR: &str = "127.0.0.1:8443";
pub const DEV_ADMIN_ADDR: &str = "127.0.0.1:8080";

impl ServeArgs {
    pub fn addr(&self) -> SocketAddr {
        let default = if self.dev { DEV_ADDR } else { DEFAULT_ADDR };
        self.addr
            .unwrap_or_else(|| default.parse().expect("valid default"))
    }

    pub fn admin_addr(&self) -> SocketAddr {
        let default = if self.dev {
            DEV_ADMIN_ADDR
        } else {
            DEFAULT_ADMIN_ADDR
        };
        self.admin_addr
            .unwrap_or_else(|| default.parse().expect("valid default"))
    }

    /// The certificate files, `None` for the in-memory `--dev` certificate, or what is missing.
    pub fn tls_files(&self) -> Result<Option<crate::tls::CertFiles>, String> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Some(crate::tls::CertFiles {
                cert: cert.clone(),
                key: key.clone(),
            })),
            (None, None) if self.dev => Ok(None),
            (None, None) => Err(
                "--tls-cert and --tls-key are required (or JVM_GUARD_TLS_CERT \
                 and JVM_GUARD_TLS_KEY); for a try-out without certificates use --dev"
                    .into(),
            ),
            (Some(_), None) => Err("--tls-cert is given without --tls-key".into()),
            (None, Some(_)) => Err("--tls-key is given without --tls-cert".into()),
        }
    }

    /// The server-side settings every mutation gets.
    pub fn settings(&self) -> Settings {
        let dev_image = self.dev.then(|| DEFAULT_TOOLS_IMAGE.to_string());
        Settings {
            allow_host_path: self.allow_host_path,
            webhook_namespace: self.webhook_namespace.clone(),
            tools_image: self.tools_image.clone().or(dev_image),
        }
    }
}

/// Seconds (`5`, `0.5`) or a humantime duration (`5s`, `1500ms`, `1m 30s`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(seconds) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds)
            .map_err(|_| format!("{s:?} is not a number of seconds >= 0"));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?}: {e}; give seconds or a duration such as 5s, 1500ms, 1m"))
}

/// `jvm-guard certs` (SPEC §5.1).
#[derive(Debug, clap::Args)]
pub struct CertsArgs {
    /// Directory for ca.crt, tls.crt, tls.key and, when a new CA is made, ca.key.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// A DNS name of the serving certificate; repeatable [default: localhost and 127.0.0.1,
    /// when no --dns-name or --ip is given].
    #[arg(long = "dns-name", value_name = "NAME")]
    pub dns_names: Vec<String>,
    /// An IP address of the serving certificate; repeatable.
    #[arg(long = "ip", value_name = "IP")]
    pub ips: Vec<IpAddr>,
    /// Sign with this CA certificate (PEM) instead of making a new CA; needs --ca-key.
    #[arg(long, value_name = "FILE", requires = "ca_key")]
    pub ca_cert: Option<PathBuf>,
    /// The private key of --ca-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "ca_cert")]
    pub ca_key: Option<PathBuf>,
    /// Validity of the serving certificate, in days.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,
}

/// Runs `jvm-guard certs`: the paths written.
pub fn run_certs(args: &CertsArgs) -> Result<Vec<PathBuf>, InputError> {
    use crate::certs;
    let names = if args.dns_names.is_empty() && args.ips.is_empty() {
        certs::Names::default()
    } else {
        certs::Names {
            dns: args.dns_names.clone(),
            ips: args.ips.clone(),
        }
    };
    let ca = match (&args.ca_cert, &args.ca_key) {
        (Some(cert), Some(key)) => Some((read_input(cert)?, read_input(key)?)),
        _ => None,
    };
    let ca_refs = ca.as_ref().map(|(c, k)| (c.as_str(), k.as_str()));
    let bundle = certs::issue(&names, args.days, ca_refs).map_err(|e| InputError {
        file: match &args.ca_cert {
            Some(path) if matches!(e, certs::CertsError::Ca(_)) => path.display().to_string(),
            _ => "certs".into(),
        },
        message: e.to_string(),
    })?;
    certs::write(&args.out, &bundle).map_err(|e| InputError {
        file: args.out.display().to_string(),
        message: e.to_string(),
    })
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
    #[command(flatten)]
    pub registry: RegistryArgs,
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
    let images = match args.registry.config(None) {
        Some(config) => {
            resolve_images(config, preview.images_to_resolve(&docs)).map_err(|message| {
                InputError {
                    file: args.file.display().to_string(),
                    message,
                }
            })?
        }
        None => ResolvedImages::default(),
    };
    let out = preview
        .run_with(docs, &images)
        .map_err(in_file(&args.file))?;
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

/// Looks the images up on a runtime made for this call only: `mutate` is otherwise plain.
fn resolve_images(
    config: crate::registry::RegistryConfig,
    requests: Vec<crate::mutate::ImageRequest>,
) -> Result<ResolvedImages, String> {
    if requests.is_empty() {
        return Ok(ResolvedImages::default());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime for registry lookups: {e}"))?;
    let images = runtime.block_on(async {
        let resolver = crate::registry::Resolver::new(config);
        let pod = crate::registry::PodImages {
            requests,
            ..Default::default()
        };
        resolver.resolve(&pod).await
    });
    // Lookups past the budget go on in the background; they must not hold the exit.
    runtime.shutdown_background();
    Ok(images)
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
        Command::Serve(args) => {
            if let Err(message) = args.tls_files() {
                Cli::command()
                    .error(clap::error::ErrorKind::MissingRequiredArgument, message)
                    .exit();
            }
            // The only command with an async runtime: `exec` and `mutate` stay plain and quick.
            match crate::serve::run(args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Certs(args) => match run_certs(&args) {
            Ok(paths) => {
                for path in paths {
                    println!("wrote {}", path.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
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

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    fn serve(args: &[&str]) -> ServeArgs {
        let argv = ["jvm-guard", "serve"].iter().chain(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Serve(args) => args,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[rstest]
    #[case::seconds("5", Duration::from_secs(5))]
    #[case::fraction("0.25", Duration::from_millis(250))]
    #[case::zero("0", Duration::ZERO)]
    #[case::humantime("5s", Duration::from_secs(5))]
    #[case::millis("1500ms", Duration::from_millis(1500))]
    #[case::minutes("1m 30s", Duration::from_secs(90))]
    fn durations(#[case] text: &str, #[case] expected: Duration) {
        assert_eq!(parse_duration(text), Ok(expected));
    }

    #[rstest]
    #[case::negative("-1")]
    #[case::words("soon")]
    #[case::empty("")]
    #[case::unit_only("s")]
    fn bad_durations(#[case] text: &str) {
        assert!(parse_duration(text).is_err(), "{text}");
    }

    #[test]
    fn production_defaults() {
        let args = serve(&["--tls-cert", "c.pem", "--tls-key", "k.pem"]);
        assert_eq!(args.addr(), "0.0.0.0:8443".parse().unwrap());
        assert_eq!(args.admin_addr(), "0.0.0.0:8080".parse().unwrap());
        assert_eq!(args.shutdown_delay, Duration::from_secs(5));
        assert_eq!(args.log_format, LogFormat::Text);
        let files = args.tls_files().unwrap().unwrap();
        assert_eq!(files.cert, Path::new("c.pem"));
        assert_eq!(files.key, Path::new("k.pem"));
        let settings = args.settings();
        assert_eq!(settings.tools_image, None);
        assert!(!settings.allow_host_path);
        assert_eq!(settings.webhook_namespace, None);
        // Image lookups on, anonymous, HTTPS only, 1.5 s per pod.
        assert!(!args.image_pull_secrets);
        let registry = args.registry.config(None).expect("lookups on by default");
        assert!(registry.insecure.is_empty());
        assert_eq!(registry.budget, crate::registry::DEFAULT_BUDGET);
        assert!(registry.secrets.is_none());
    }

    #[test]
    fn registry_flags() {
        let args = serve(&[
            "--dev",
            "--insecure-registry",
            "127.0.0.1:5000",
            "--insecure-registry=registry.local:5000",
            "--registry-timeout",
            "800ms",
            "--image-pull-secrets",
        ]);
        assert!(args.image_pull_secrets);
        let registry = args.registry.config(None).unwrap();
        assert_eq!(registry.insecure, ["127.0.0.1:5000", "registry.local:5000"]);
        assert_eq!(registry.budget, Duration::from_millis(800));
        assert!(serve(&["--dev", "--offline"])
            .registry
            .config(None)
            .is_none());

        let argv = ["jvm-guard", "mutate", "-f", "-", "--offline"];
        let Command::Mutate(args) = Cli::try_parse_from(argv).unwrap().command else {
            panic!("not mutate");
        };
        assert!(args.registry.config(None).is_none(), "mutate --offline");
        let argv = [
            "jvm-guard",
            "mutate",
            "-f",
            "-",
            "--insecure-registry",
            "h:1",
        ];
        let Command::Mutate(args) = Cli::try_parse_from(argv).unwrap().command else {
            panic!("not mutate");
        };
        assert_eq!(args.registry.config(None).unwrap().insecure, ["h:1"]);
    }

    #[test]
    fn dev_defaults() {
        let args = serve(&["--dev"]);
        assert_eq!(args.addr(), "127.0.0.1:8443".parse().unwrap());
        assert_eq!(args.admin_addr(), "127.0.0.1:8080".parse().unwrap());
        assert_eq!(args.tls_files(), Ok(None));
        assert_eq!(
            args.settings().tools_image.as_deref(),
            Some(DEFAULT_TOOLS_IMAGE)
        );
    }

    #[test]
    fn every_flag() {
        let args = serve(&[
            "--dev",
            "--addr",
            "127.0.0.1:0",
            "--admin-addr",
            "[::1]:9090",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--namespaces-file",
            "ns.yaml",
            "--defaults",
            "defaults.yaml",
            "--tools-image",
            "registry.local/jvm-guard:1",
            "--allow-host-path",
            "--shutdown-delay",
            "2",
            "--log-format",
            "json",
            "--webhook-namespace",
            "jvm-guard",
        ]);
        assert_eq!(args.addr(), "127.0.0.1:0".parse().unwrap());
        assert_eq!(args.admin_addr(), "[::1]:9090".parse().unwrap());
        assert!(args.tls_files().unwrap().is_some(), "files win over --dev");
        assert_eq!(args.namespaces_file.as_deref(), Some(Path::new("ns.yaml")));
        assert_eq!(args.defaults.as_deref(), Some(Path::new("defaults.yaml")));
        assert_eq!(args.shutdown_delay, Duration::from_secs(2));
        assert_eq!(args.log_format, LogFormat::Json);
        let settings = args.settings();
        assert_eq!(
            settings.tools_image.as_deref(),
            Some("registry.local/jvm-guard:1")
        );
        assert!(settings.allow_host_path);
        assert_eq!(settings.webhook_namespace.as_deref(), Some("jvm-guard"));
    }

    #[rstest]
    #[case::none(&[], "--tls-cert and --tls-key are required")]
    #[case::cert_only(&["--tls-cert", "c.pem"], "--tls-cert is given without --tls-key")]
    #[case::key_only(&["--tls-key", "k.pem"], "--tls-key is given without --tls-cert")]
    fn certificates_are_required_without_dev(#[case] flags: &[&str], #[case] message: &str) {
        let err = serve(flags).tls_files().unwrap_err();
        assert!(err.starts_with(message), "{err}");
    }

    #[rstest]
    #[case::addr(&["--addr", "localhost"])]
    #[case::log_format(&["--log-format", "yaml"])]
    #[case::delay(&["--shutdown-delay", "later"])]
    fn invalid_flags_are_refused(#[case] flags: &[&str]) {
        let argv = ["jvm-guard", "serve"].iter().chain(flags);
        assert!(Cli::try_parse_from(argv).is_err());
    }

    #[test]
    fn certs_flags() {
        let argv = [
            "jvm-guard",
            "certs",
            "--out",
            "certs",
            "--dns-name",
            "a.svc",
            "--dns-name",
            "b.svc",
            "--ip",
            "10.0.0.1",
        ];
        let Command::Certs(args) = Cli::try_parse_from(argv).unwrap().command else {
            panic!("not certs");
        };
        assert_eq!(args.dns_names, ["a.svc", "b.svc"]);
        assert_eq!(args.ips, ["10.0.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(args.days, 365);
        let half_ca = ["jvm-guard", "certs", "--out", "d", "--ca-cert", "ca.crt"];
        assert!(
            Cli::try_parse_from(half_ca).is_err(),
            "--ca-cert needs --ca-key"
        );
    }
}
