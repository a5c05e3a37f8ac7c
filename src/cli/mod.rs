//! Command-line interface: the clap definitions of every command and each command's glue;
//! `main` dispatches. The work itself is in `webhook`, `manifest` and `agent`.

mod agent;
mod certs;
mod dumps;
mod mutate;
mod serve;

pub use crate::webhook::LogFormat;
pub use agent::{ExecArgs, InspectArgs, InspectFormat, InstallToolsArgs, RotateDumpsArgs};
pub use certs::{run_certs, CertsArgs};
pub use mutate::{run_mutate, InputError, MutateArgs, OutputFormat};
pub use serve::{
    parse_duration, RegistryArgs, ServeArgs, DEFAULT_ADDR, DEFAULT_ADMIN_ADDR, DEV_ADDR,
    DEV_ADMIN_ADDR,
};

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

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
    /// Show the running JVM's version, heap maximum against the memory limit, arguments and
    /// dumps, from its performance data (run inside the container).
    Inspect(InspectArgs),
    /// A pod's heap dumps and crash logs: list them, pull one to this machine, or take a heap
    /// dump of the running JVM (through the exec API, with your kubeconfig).
    Dumps(dumps::DumpsArgs),
    /// One line per JVM container: what the webhook decided, heap against limit, restarts, the
    /// verdict of the last exit; unguarded pods of opted-in namespaces too.
    Report(dumps::ReportArgs),
    /// The container's side of `dumps` (run through the exec API).
    #[command(hide = true)]
    AgentDumps(dumps::AgentDumpsArgs),
}

/// The image this version is published as; the chart passes the exact reference.
pub const DEFAULT_TOOLS_IMAGE: &str =
    concat!("ghcr.io/jvm-guard/jvm-guard:", env!("CARGO_PKG_VERSION"));

/// The name kubectl runs this binary by as a plugin (`kubectl jvm-guard ...`): kubectl looks
/// for `kubectl-jvm_guard` on PATH, a `-` in the command being `_` in the file name.
pub const KUBECTL_PLUGIN: &str = "kubectl-jvm_guard";

/// How to name the program in help and errors: `kubectl jvm-guard` when run as the plugin.
pub fn bin_name(argv0: &std::ffi::OsStr) -> &'static str {
    let file = std::path::Path::new(argv0).file_name();
    if file.is_some_and(|f| f == KUBECTL_PLUGIN) {
        "kubectl jvm-guard"
    } else {
        "jvm-guard"
    }
}

pub fn main() -> ExitCode {
    use clap::FromArgMatches;
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let matches = Cli::command().bin_name(bin_name(&argv0)).get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Serve(args) => {
            let options = match args.options() {
                Ok(options) => options,
                Err(message) => Cli::command()
                    .error(clap::error::ErrorKind::MissingRequiredArgument, message)
                    .exit(),
            };
            // The only command with an async runtime: `exec` and `mutate` stay plain and quick.
            match crate::webhook::run(options) {
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
        Command::Exec(args) if args.supervise => {
            let code = crate::agent::supervise::run(
                &args.rlimits,
                &args.command,
                args.termination_log.as_deref(),
            );
            ExitCode::from(code)
        }
        Command::Exec(args) => {
            let err = crate::agent::exec::run(&args.rlimits, &args.command);
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
        Command::InstallTools(args) => match crate::agent::install::install_tools(&args.dir) {
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
            match crate::agent::rotate::rotate(&args.dir, args.keep as usize, &args.container, now)
            {
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
        Command::Inspect(args) => agent::run_inspect(&args),
        Command::Dumps(args) => dumps::run_dumps(args),
        Command::AgentDumps(args) => dumps::run_agent_dumps(args),
        Command::Report(args) => dumps::run_report(args),
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::path::Path;
    use std::time::Duration;

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
