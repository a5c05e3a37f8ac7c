//! The listener: TCP accept with a connection limit, TLS with a handshake timeout, then HTTP/2
//! or HTTP/1.1 with a header timeout; each connection watched for the graceful drain.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

/// A client must finish the TLS handshake within this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A client must send a request's head within this, and an idle keep-alive connection is
/// closed after it, so slow or silent clients cannot hold connections forever.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The HTTP/1 read buffer of a connection grows to this at most (hyper's minimum); bodies are
/// read through it in pieces. hyper's default, ~400 KiB, lets every connection sending a large
/// review grow a buffer that large: memory that 1,000 connections multiply.
pub const HTTP1_MAX_BUF_SIZE: usize = 8 * 1024;
/// Default of `--max-connections`: far above what apiservers open (they multiplex over HTTP/2),
/// and inside the chart's 128Mi memory limit with every connection sending a 20 KB review at
/// once (about 100 MiB at 1,000, measured by scripts/bench.sh).
pub const DEFAULT_MAX_CONNECTIONS: u32 = 1024;
/// Open connections at most on the admin port: probes and scrapes; a flood of webhook
/// connections never takes its slots, so the kubelet still sees the pod alive.
pub const ADMIN_MAX_CONNECTIONS: u32 = 64;
pub(super) async fn bind(addr: SocketAddr, flag: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {flag} {addr}"))
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
