//! `jvm-guard serve`: the webhook router behind rustls, the plain-HTTP admin port (health,
//! readiness, metrics), certificate reloading, logging, and the SIGTERM drain.

use std::fs;
use std::future::Future;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context as _;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;
use tracing_subscriber::EnvFilter;

use crate::certs::{self, Names};
use crate::cli::{LogFormat, ServeArgs};
use crate::config::Defaults;
use crate::metrics::{self, Metrics};
use crate::namespace_cache::KubeNamespaces;
use crate::namespaces::{NamespaceLookup, StaticNamespaces};
use crate::registry::{KubeSecrets, Resolver, SecretSource};
use crate::server::{self, AppState};
use crate::tls::{self, Reload, ServingCert};

/// How often the certificate files are read to see whether they changed.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(1);
/// A client must finish the TLS handshake within this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A client must send a request's head within this, and an idle keep-alive connection is
/// closed after it, so slow or silent clients cannot hold connections forever.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The HTTP/1 read buffer of a connection grows to this at most (hyper's minimum); bodies are
/// read through it in pieces. hyper's default, ~400 KiB, lets every connection sending a large
/// review grow a buffer that large: memory that 1,000 connections multiply.
pub const HTTP1_MAX_BUF_SIZE: usize = 8 * 1024;
/// After the shutdown delay, connections get this long to finish their requests.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
/// Default of `--max-connections`: far above what apiservers open (they multiplex over HTTP/2),
/// and inside the chart's 128Mi memory limit with every connection sending a 20 KB review at
/// once (about 100 MiB at 1,000, measured by scripts/bench.sh).
pub const DEFAULT_MAX_CONNECTIONS: u32 = 1024;
/// Open connections at most on the admin port: probes and scrapes; a flood of webhook
/// connections never takes its slots, so the kubelet still sees the pod alive.
pub const ADMIN_MAX_CONNECTIONS: u32 = 64;
/// Validity of the `--dev` certificate.
const DEV_CERT_DAYS: u32 = 30;

/// Runs `serve` until SIGTERM or SIGINT and the drain that follows.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
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

/// Where the handler finds namespace configuration: `--namespaces-file`, every namespace with
/// `--dev`, else the in-cluster reflector (kubeconfig or service account, as kubectl finds them).
pub async fn namespace_source(
    args: &ServeArgs,
    defaults: &Defaults,
) -> anyhow::Result<Arc<dyn NamespaceLookup>> {
    match (&args.namespaces_file, args.dev) {
        (Some(path), _) => {
            let text = fs::read_to_string(path)
                .with_context(|| format!("cannot read --namespaces-file {}", path.display()))?;
            let namespaces = StaticNamespaces::from_yaml(&text, defaults)
                .with_context(|| format!("--namespaces-file {}", path.display()))?;
            Ok(Arc::new(namespaces))
        }
        (None, true) => Ok(Arc::new(StaticNamespaces::every(defaults))),
        (None, false) => {
            let client = kube::Client::try_default().await.context(
                "no Kubernetes client configuration (in-cluster service account or kubeconfig); \
                 outside a cluster use --namespaces-file or --dev",
            )?;
            Ok(Arc::new(KubeNamespaces::spawn(client, defaults.clone())))
        }
    }
}

/// The image lookups (SPEC §7), with the kube client for imagePullSecrets when enabled;
/// `None` with `--offline`.
pub async fn registry(args: &ServeArgs) -> anyhow::Result<Option<Arc<Resolver>>> {
    let secrets: Option<Arc<dyn SecretSource>> =
        if args.image_pull_secrets && !args.registry.offline {
            let client = kube::Client::try_default().await.context(
                "--image-pull-secrets needs a Kubernetes client configuration (in-cluster service \
             account or kubeconfig)",
            )?;
            Some(Arc::new(KubeSecrets(client)))
        } else {
            None
        };
    Ok(args
        .registry
        .config(secrets)
        .map(|config| Arc::new(Resolver::new(config))))
}

fn load_defaults(args: &ServeArgs) -> anyhow::Result<Defaults> {
    let Some(path) = &args.defaults else {
        return Ok(Defaults::default());
    };
    let text = fs::read_to_string(path)
        .with_context(|| format!("cannot read --defaults {}", path.display()))?;
    Defaults::from_yaml(&text).with_context(|| format!("--defaults {}", path.display()))
}

fn serving_cert(args: &ServeArgs) -> anyhow::Result<ServingCert> {
    match args.tls_files().map_err(anyhow::Error::msg)? {
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

/// What `/readyz` answers from: the webhook is ready once it serves TLS (the admin port opens
/// only after the certificate is loaded) and the namespaces are known, until shutdown begins.
#[derive(Clone)]
struct Health {
    namespaces: Arc<dyn NamespaceLookup>,
    metrics: Arc<Metrics>,
    shutting_down: Arc<AtomicBool>,
}

fn admin_router(health: Health) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(health)
}

async fn readyz(State(health): State<Health>) -> impl IntoResponse {
    if health.shutting_down.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else if !health.namespaces.ready() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "namespace cache not synced\n",
        )
    } else {
        (StatusCode::OK, "ok\n")
    }
}

async fn metrics_text(State(health): State<Health>) -> impl IntoResponse {
    health
        .metrics
        .set_namespace_cache_ready(health.namespaces.ready());
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        health.metrics.encode(),
    )
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

async fn bind(addr: SocketAddr, flag: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {flag} {addr}"))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // Handlers first: a SIGTERM during start-up must not kill the process with a signal status.
    let stop = stop_signal()?;
    let defaults = load_defaults(&args)?;
    let namespaces = namespace_source(&args, &defaults).await?;
    let settings = Arc::new(args.settings());
    let registry = registry(&args).await?;
    if settings.tools_image.is_none() {
        tracing::warn!(
            "no --tools-image: pods get no tools init container, so no ulimits and no heap-dump \
             rotation"
        );
    }
    let metrics = Arc::new(Metrics::new());
    let cert = Arc::new(serving_cert(&args)?);
    metrics.set_tls_cert_expiry(cert.not_after());
    let tls = TlsAcceptor::from(tls::server_config(cert.clone())?);

    let webhook = bind(args.addr(), "--addr").await?;
    let admin = bind(args.admin_addr(), "--admin-addr").await?;
    let health = Health {
        namespaces: namespaces.clone(),
        metrics: metrics.clone(),
        shutting_down: Arc::new(AtomicBool::new(false)),
    };
    let app = server::router(AppState {
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

/// Accepts connections until told to stop, each served on its own task and watched by
/// `graceful` from the moment it is accepted. At `max_connections` open, the next is accepted
/// only when one closes. TLS when `tls` is given; the benchmark baseline serves through here
/// too, so both are measured on the same stack.
pub async fn accept(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    max_connections: u32,
    graceful: &GracefulShutdown,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(max_connections as usize));
    loop {
        let slot = tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, most likely: back off rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let watcher = graceful.watcher();
        let (tls, app) = (tls.clone(), app.clone());
        tokio::spawn(async move {
            if let Err(e) = connection(stream, tls, app, watcher).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn http1() -> hyper::server::conn::http1::Builder {
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(HTTP1_MAX_BUF_SIZE);
    http1
}

/// One connection: TLS when `tls` is given, then HTTP/2 if ALPN chose it, else HTTP/1.1.
async fn connection(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    app: Router,
    watcher: Watcher,
) -> Result<(), BoxError> {
    stream.set_nodelay(true)?;
    let service = TowerToHyperService::new(app);
    let Some(tls) = tls else {
        let conn = http1().serve_connection(TokioIo::new(stream), service);
        return Ok(watcher.watch(conn).await?);
    };
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream))
        .await
        .map_err(|_| "TLS handshake timed out")??;
    if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
        let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(Duration::from_secs(20)));
        let conn = http2.serve_connection(TokioIo::new(stream), service);
        Ok(watcher.watch(conn).await?)
    } else {
        let conn = http1().serve_connection(TokioIo::new(stream), service);
        Ok(watcher.watch(conn).await?)
    }
}
