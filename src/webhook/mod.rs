//! The webhook process (`jvm-guard serve`): the [`listener`] (TLS, connection limits,
//! timeouts), the [`router`] and [`admission`] protocol, certificate reloading ([`tls`]),
//! [`metrics`] and the [`admin`] port, the [`namespaces`] sources, and the SIGTERM drain.

pub mod admin;
pub mod admission;
pub mod certs;
pub mod cost;
pub mod lean;
pub mod listener;
pub mod metrics;
pub mod namespaces;
pub mod router;
pub mod tls;

use std::fs;
use std::future::Future;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context as _;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing_subscriber::EnvFilter;

pub use listener::{accept, DEFAULT_MAX_CONNECTIONS};

use crate::config::{Defaults, ServerSettings};
use crate::registry::{KubeSecrets, RegistryConfig, Resolver, SecretSource};
use admin::{admin_router, Health};
use certs::Names;
use listener::{bind, ADMIN_MAX_CONNECTIONS};
use metrics::Metrics;
use namespaces::{KubeNamespaces, NamespaceLookup, StaticNamespaces};
use router::AppState;
use tls::{CertFiles, Reload, ServingCert};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where namespace configuration comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamespaceSource {
    /// Namespace objects read once at start-up (`--namespaces-file`).
    File(PathBuf),
    /// Every namespace opted in with the defaults (`--dev` without a file).
    Every,
    /// The cluster's Namespaces, watched (kubeconfig or service account, as kubectl finds them).
    Cluster,
}

/// What `serve` runs with; `cli` builds it from the flags.
#[derive(Clone)]
pub struct ServeOptions {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// The certificate files, `None` for an in-memory self-signed certificate (`--dev`).
    pub tls: Option<CertFiles>,
    pub namespaces: NamespaceSource,
    /// The cluster-wide defaults file.
    pub defaults: Option<PathBuf>,
    pub settings: ServerSettings,
    pub shutdown_delay: Duration,
    pub log_format: LogFormat,
    pub max_connections: u32,
    /// Image lookups (SPEC §7), `None` when offline; the pull-secret source is added at start.
    pub registry: Option<RegistryConfig>,
    /// Read the pods' imagePullSecrets for the lookups.
    pub image_pull_secrets: bool,
    /// The CA of the clients the webhook port accepts (`--client-ca`); any client without it.
    pub client_ca: Option<PathBuf>,
    /// The pod watcher (`--watch-pods`), `None` without it.
    pub watch: Option<crate::watch::WatchOptions>,
    /// Logged at start-up only.
    pub dev: bool,
}

/// How often the certificate files are read to see whether they changed.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(1);
/// After the shutdown delay, connections get this long to finish their requests.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
/// Validity of the `--dev` certificate.
const DEV_CERT_DAYS: u32 = 30;

/// Runs `serve` until SIGTERM or SIGINT and the drain that follows.
pub fn run(args: ServeOptions) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let runtime = runtime()?;
    let result = runtime.block_on(serve(args));
    // Connections are drained by now; a certificate read stuck on a hung volume must not
    // hold the exit.
    runtime.shutdown_background();
    result
}

/// The runtime every server of this crate runs on: one worker thread per core.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // A second call (tests running `serve` twice in one process) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => logs.try_init(),
        LogFormat::Json => logs.json().flatten_event(true).try_init(),
    };
}

/// Where the handler finds namespace configuration.
pub async fn namespace_source(
    source: &NamespaceSource,
    defaults: &Defaults,
) -> anyhow::Result<Arc<dyn NamespaceLookup>> {
    match source {
        NamespaceSource::File(path) => {
            let text = fs::read_to_string(path)
                .with_context(|| format!("cannot read --namespaces-file {}", path.display()))?;
            let namespaces = StaticNamespaces::from_yaml(&text, defaults)
                .with_context(|| format!("--namespaces-file {}", path.display()))?;
            Ok(Arc::new(namespaces))
        }
        NamespaceSource::Every => Ok(Arc::new(StaticNamespaces::every(defaults))),
        NamespaceSource::Cluster => {
            let client = kube::Client::try_default().await.context(
                "no Kubernetes client configuration (in-cluster service account or kubeconfig); \
                 outside a cluster use --namespaces-file or --dev",
            )?;
            Ok(Arc::new(KubeNamespaces::spawn(client, defaults.clone())))
        }
    }
}

/// The image lookups (SPEC §7), with the kube client for imagePullSecrets when enabled;
/// `None` when offline.
pub async fn registry(args: &ServeOptions) -> anyhow::Result<Option<Arc<Resolver>>> {
    let Some(mut config) = args.registry.clone() else {
        return Ok(None);
    };
    if args.image_pull_secrets {
        let client = kube::Client::try_default().await.context(
            "--image-pull-secrets needs a Kubernetes client configuration (in-cluster service \
             account or kubeconfig)",
        )?;
        let secrets: Arc<dyn SecretSource> = Arc::new(KubeSecrets(client));
        config.secrets = Some(secrets);
    }
    Ok(Some(Arc::new(Resolver::new(config))))
}

fn load_defaults(args: &ServeOptions) -> anyhow::Result<Defaults> {
    let Some(path) = &args.defaults else {
        return Ok(Defaults::default());
    };
    let text = fs::read_to_string(path)
        .with_context(|| format!("cannot read --defaults {}", path.display()))?;
    let defaults =
        Defaults::from_yaml(&text).with_context(|| format!("--defaults {}", path.display()))?;
    defaults
        .check_server(args.settings.allow_host_path)
        .with_context(|| format!("--defaults {}", path.display()))?;
    Ok(defaults)
}

fn serving_cert(args: &ServeOptions) -> anyhow::Result<ServingCert> {
    match args.tls.clone() {
        Some(files) => {
            let described = format!(
                "--tls-cert {} / --tls-key {}",
                files.cert.display(),
                files.key.display()
            );
            ServingCert::from_files(files).with_context(|| described)
        }
        None => {
            let (cert, key) = certs::self_signed(&Names::default(), DEV_CERT_DAYS)?;
            Ok(ServingCert::fixed(cert.as_bytes(), key.as_bytes())?)
        }
    }
}

fn rfc3339(unix_seconds: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_secs(unix_seconds.max(0) as u64);
    humantime::format_rfc3339_seconds(time).to_string()
}

/// The signal that starts the shutdown. SIGINT (Ctrl-C at a terminal) skips the delay, which
/// only matters while a Service still sends traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Terminate,
    Interrupt,
}

fn stop_signal() -> anyhow::Result<impl Future<Output = Stop>> {
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => Stop::Terminate,
            _ = int.recv() => Stop::Interrupt,
        }
    })
}

async fn serve(args: ServeOptions) -> anyhow::Result<()> {
    // Handlers first: a SIGTERM during start-up must not kill the process with a signal status.
    let stop = stop_signal()?;
    let defaults = load_defaults(&args)?;
    let namespaces = namespace_source(&args.namespaces, &defaults).await?;
    let settings = Arc::new(ServerSettings {
        profiles: defaults.profiles(),
        ..args.settings.clone()
    });
    let registry = registry(&args).await?;
    if settings.tools_image.is_none() {
        tracing::warn!(
            "no --tools-image: pods get no tools init container, so no ulimits and no heap-dump \
             rotation"
        );
    }
    let metrics = Arc::new(Metrics::new());
    if let Some(watch) = &args.watch {
        let client = kube::Client::try_default()
            .await
            .context("--watch-pods needs a Kubernetes client configuration")?;
        crate::watch::spawn(client, namespaces.clone(), metrics.clone(), watch.clone());
    }
    let cert = Arc::new(serving_cert(&args)?);
    metrics.set_tls_cert_expiry(cert.not_after());
    let clients = match &args.client_ca {
        Some(path) => Some(tls::client_verifier(path).with_context(|| {
            format!(
                "--client-ca {}: cannot verify clients with it",
                path.display()
            )
        })?),
        None => None,
    };
    let tls = TlsAcceptor::from(tls::server_config(cert.clone(), clients)?);

    let webhook = bind(args.addr, "--addr").await?;
    let admin = bind(args.admin_addr, "--admin-addr").await?;
    let health = Health {
        namespaces: namespaces.clone(),
        metrics: metrics.clone(),
        shutting_down: Arc::new(AtomicBool::new(false)),
    };
    let app = router::router(AppState {
        namespaces,
        settings,
        metrics: metrics.clone(),
        registry: registry.clone(),
    });
    if cert.files().is_some() {
        tokio::spawn(watch_certificate(cert.clone(), metrics.clone()));
    }
    tracing::info!(
        addr = %webhook.local_addr()?,
        admin_addr = %admin.local_addr()?,
        dev = args.dev,
        image_lookups = registry.is_some(),
        image_pull_secrets = registry.as_ref().is_some_and(|r| r.config().secrets.is_some()),
        watch_pods = args.watch.is_some(),
        certificate_expires = %rfc3339(cert.not_after()),
        "listening"
    );

    let graceful = GracefulShutdown::new();
    let (stop_accepting, accepting) = watch::channel(false);
    let serving = async {
        tokio::join!(
            accept(
                webhook,
                Some(tls),
                app,
                args.max_connections,
                &graceful,
                accepting.clone()
            ),
            accept(
                admin,
                None,
                admin_router(health.clone()),
                ADMIN_MAX_CONNECTIONS,
                &graceful,
                accepting
            ),
        )
    };
    let shutdown = async {
        let signal = stop.await;
        health.shutting_down.store(true, Ordering::SeqCst);
        let delay = match signal {
            Stop::Terminate => args.shutdown_delay,
            Stop::Interrupt => Duration::ZERO,
        };
        tracing::info!(
            signal = ?signal,
            delay = %humantime::format_duration(delay),
            "shutting down: /readyz fails, requests are still served until the delay ends"
        );
        tokio::time::sleep(delay).await;
        let _ = stop_accepting.send(true);
    };
    tokio::join!(serving, shutdown);

    tracing::info!(
        connections = graceful.count(),
        "stopped accepting; draining connections"
    );
    match tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await {
        Ok(()) => tracing::info!("drained; exiting"),
        Err(_) => tracing::warn!(
            timeout = %humantime::format_duration(DRAIN_TIMEOUT),
            "connections still open after the drain timeout; exiting"
        ),
    }
    Ok(())
}

/// Reads the certificate files every [`RELOAD_INTERVAL`], for the life of the process.
async fn watch_certificate(cert: Arc<ServingCert>, metrics: Arc<Metrics>) {
    let mut ticks = tokio::time::interval(RELOAD_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let polled = cert.clone();
        match tokio::task::spawn_blocking(move || polled.reload()).await {
            Ok(Reload::Unchanged) => {}
            Ok(Reload::Reloaded { not_after }) => {
                metrics.set_tls_cert_expiry(not_after);
                tracing::info!(expires = %rfc3339(not_after), "serving a new certificate");
            }
            Ok(Reload::Failed(e)) => {
                metrics.tls_reload_error();
                tracing::error!(error = %e, "the changed certificate files cannot be used; \
                     still serving the previous certificate");
            }
            Err(e) => tracing::error!(error = %e, "certificate reload task failed"),
        }
    }
}
