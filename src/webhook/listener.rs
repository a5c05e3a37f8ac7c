//! The listener: TCP accept with a connection limit, TLS with a handshake timeout, then HTTP/2
//! (idle deadline, small windows and stream limits) or HTTP/1.1 (header timeout); each
//! connection watched for the graceful drain.

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
/// and what keeps the worst mix of hostile clients inside the chart's 192Mi limit. On the real
/// node (tests/node/faults.rs) a sustained worst mix peaked at 115 MiB with 256 TLS
/// connections; at 512 a webhook pod was OOM-killed at 128Mi (README, "Memory").
pub const DEFAULT_MAX_CONNECTIONS: u32 = 256;
/// An HTTP/2 connection with no request in progress for this long, from its start or its last
/// answer, is closed (GOAWAY): what the header timeout is to HTTP/1.1, for a client that
/// negotiates h2 and then sends nothing (or only pings).
pub const H2_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// After the GOAWAY, a connection whose client neither closes it nor lets its last answers
/// through is dropped after this.
pub const H2_CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Keep-alive pings on HTTP/2 connections: a peer that stops answering them is gone.
pub const H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);
pub const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests open at once on one HTTP/2 connection (hyper's default: 200); Go's HTTP/2 client,
/// the apiserver's, opens another connection when they are taken.
pub const H2_MAX_CONCURRENT_STREAMS: u32 = 32;
/// Flow-control windows of HTTP/2 streams and connections (hyper's default: 1 MiB each): what
/// a client can make a connection buffer before the handler reads it, 1,024 times over. 16 KiB
/// per round trip is 16 MB/s at 1 ms: a 4 MiB review in a quarter of a second.
pub const H2_WINDOW: u32 = 16 * 1024;
/// The largest request head on HTTP/2, as [`HTTP1_MAX_BUF_SIZE`] bounds it on HTTP/1.1.
pub const H2_MAX_HEADER_LIST_SIZE: u32 = 8 * 1024;
/// What HTTP/2 buffers of a response per stream (hyper's default: 400 KiB).
pub const H2_MAX_SEND_BUF_SIZE: usize = 64 * 1024;
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
        let (tls, app, stop) = (tls.clone(), app.clone(), stop.clone());
        tokio::spawn(async move {
            if let Err(e) = connection(stream, tls, app, watcher, stop).await {
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

fn http2() -> hyper::server::conn::http2::Builder<TokioExecutor> {
    let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    http2
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(H2_KEEP_ALIVE_INTERVAL))
        .keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT)
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        .initial_stream_window_size(H2_WINDOW)
        .initial_connection_window_size(H2_WINDOW)
        .max_header_list_size(H2_MAX_HEADER_LIST_SIZE)
        .max_send_buf_size(H2_MAX_SEND_BUF_SIZE);
    http2
}

/// One connection: TLS when `tls` is given, then HTTP/2 if ALPN chose it, else HTTP/1.1.
async fn connection(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    app: Router,
    watcher: Watcher,
    stop: watch::Receiver<bool>,
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
        http2_connection(TokioIo::new(stream), service, watcher, stop).await
    } else {
        let conn = http1().serve_connection(TokioIo::new(stream), service);
        Ok(watcher.watch(conn).await?)
    }
}

/// An HTTP/2 connection, closed with a GOAWAY when it has had no request in progress for
/// [`H2_IDLE_TIMEOUT`] or when the drain starts, and dropped [`H2_CLOSE_TIMEOUT`] later if
/// it is still open. `watcher` is held until it ends, so the drain waits for it.
async fn http2_connection<I>(
    io: I,
    service: TowerToHyperService<Router>,
    watcher: Watcher,
    mut stop: watch::Receiver<bool>,
) -> Result<(), BoxError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (open, mut in_progress) = watch::channel(0usize);
    let service = InProgress {
        inner: service,
        open: Arc::new(open),
    };
    let conn = http2().serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let mut closing: Option<tokio::time::Instant> = None;
    let result = loop {
        let close_by = closing.unwrap_or_else(tokio::time::Instant::now);
        tokio::select! {
            result = conn.as_mut() => break result.map_err(BoxError::from),
            _ = stop.wait_for(|stop| *stop), if closing.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing = Some(tokio::time::Instant::now() + H2_CLOSE_TIMEOUT);
            }
            _ = idle_for(&mut in_progress, H2_IDLE_TIMEOUT), if closing.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing = Some(tokio::time::Instant::now() + H2_CLOSE_TIMEOUT);
            }
            _ = tokio::time::sleep_until(close_by), if closing.is_some() => {
                break Err("HTTP/2 connection still open after its GOAWAY".into());
            }
        }
    };
    drop(watcher);
    result
}

/// Resolves once no request has been in progress for `idle` without a break.
async fn idle_for(in_progress: &mut watch::Receiver<usize>, idle: Duration) {
    loop {
        if in_progress.wait_for(|n| *n == 0).await.is_err() {
            return;
        }
        let busy = tokio::time::timeout(idle, in_progress.wait_for(|n| *n > 0)).await;
        if busy.is_err() {
            return;
        }
    }
}

/// A service counting its calls in progress, for [`idle_for`].
#[derive(Clone)]
struct InProgress<S> {
    inner: S,
    open: Arc<watch::Sender<usize>>,
}

/// One call in progress, counted until dropped.
struct Call(Arc<watch::Sender<usize>>);

impl Drop for Call {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

impl<S, R> hyper::service::Service<R> for InProgress<S>
where
    S: hyper::service::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn call(&self, request: R) -> Self::Future {
        self.open.send_modify(|n| *n += 1);
        let call = Call(self.open.clone());
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await;
            drop(call);
            response
        })
    }
}
