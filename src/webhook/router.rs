//! The webhook's HTTP surface: an axum [`Router`] with `POST /mutate`, and the one place where
//! errors become HTTP responses. TLS, the listener and the admin port wrap it in `serve`.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use futures_util::FutureExt as _;
use http_body_util::BodyExt;
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::field::{display, Empty};
use tracing::Instrument as _;

use crate::config::ServerSettings;
use crate::escape::Escaped;
use crate::mutate::ResolvedImages;
use crate::registry::Resolver;
use crate::webhook::admission::{self, ReviewError};
use crate::webhook::cost::parse_cost;
use crate::webhook::lean;
use crate::webhook::metrics::{Metrics, RequestOutcome};
use crate::webhook::namespaces::NamespaceLookup;

/// Bodies above this are refused with 413 (SPEC §5).
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// A request still unanswered after this, body upload included, gets a 408: the apiserver
/// has given up by then (`timeoutSeconds` is at most 30).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes that all `/mutate` requests in flight may hold together: each is charged its head
/// (see [`head_charge`]) on arrival, its body bytes as they are read, then what parsing may
/// cost ([`parse_cost`]), until its response has been sent (SPEC §5; README).
pub const BODY_BUDGET: usize = 24 * 1024 * 1024;
/// A request whose parse cost alone is over this is refused with 413: it would take most of
/// the budget (some 2,000 objects of the largest kind, or ~22,000 env vars).
pub const MAX_PARSE_COST: usize = 16 * 1024 * 1024;
/// What a request costs besides its head and body (its state, its answer's share), so that
/// requests without bodies are bounded in number too.
pub const REQUEST_CHARGE: usize = 2 * 1024;
/// How long a request waits, in all, for its share of [`BODY_BUDGET`] before a 503. The
/// apiserver admits a pod unmutated on any error (failurePolicy Ignore), so waiting a little
/// beats refusing; the chart's `timeoutSeconds` is 5.
pub const BUDGET_WAIT: Duration = Duration::from_secs(2);
/// Requests waiting for the budget at once (as many as `--max-connections` by default); any
/// more get a 503 at once, so waiting ones, each holding its head, are bounded too.
pub const MAX_WAITING: usize = 1024;

/// A request's charge before its body: [`REQUEST_CHARGE`] and its head as HTTP/2 counts it
/// (name, value and 32 bytes per field).
pub fn head_charge(headers: &axum::http::HeaderMap) -> usize {
    let head: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 32)
        .sum();
    REQUEST_CHARGE + head
}

/// The byte budget of requests in flight, shared by every connection.
struct Budget {
    bytes: Arc<Semaphore>,
    waiting: AtomicUsize,
}

impl Budget {
    fn new() -> Budget {
        Budget {
            bytes: Arc::new(Semaphore::new(BODY_BUDGET)),
            waiting: AtomicUsize::new(0),
        }
    }

    /// `n` more bytes into `held`, waiting until `deadline` at most.
    async fn take(
        &self,
        held: &mut Option<OwnedSemaphorePermit>,
        n: usize,
        deadline: tokio::time::Instant,
    ) -> Result<(), ApiError> {
        let permit = match self.bytes.clone().try_acquire_many_owned(n as u32) {
            Ok(permit) => permit,
            Err(_) => {
                let waiting = WaitingGuard::enter(&self.waiting)?;
                let acquired = tokio::time::timeout_at(
                    deadline,
                    self.bytes.clone().acquire_many_owned(n as u32),
                )
                .await;
                drop(waiting);
                match acquired {
                    Ok(Ok(permit)) => permit,
                    _ => return Err(ApiError::Busy),
                }
            }
        };
        match held {
            Some(held) => held.merge(permit),
            None => *held = Some(permit),
        }
        Ok(())
    }
}

/// One of [`MAX_WAITING`] places in the queue for the budget.
struct WaitingGuard<'a>(&'a AtomicUsize);

impl<'a> WaitingGuard<'a> {
    fn enter(waiting: &'a AtomicUsize) -> Result<WaitingGuard<'a>, ApiError> {
        if waiting.fetch_add(1, Ordering::SeqCst) >= MAX_WAITING {
            waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(ApiError::Busy);
        }
        Ok(WaitingGuard(waiting))
    }
}

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What every request needs, parsed once at start-up.
#[derive(Clone)]
pub struct AppState {
    pub namespaces: Arc<dyn NamespaceLookup>,
    pub settings: Arc<ServerSettings>,
    pub metrics: Arc<Metrics>,
    /// Image ENTRYPOINT/CMD lookups (SPEC §7); `None`: never contact a registry.
    pub registry: Option<Arc<Resolver>>,
}

/// `POST /mutate`, behind one middleware ([`guarded`]): the request's deadline, its share of
/// the byte budget, a panic anywhere in it answered as a 500 for that request only, and every
/// answer, panics and timeouts included, counted by outcome and timed. Other paths get a plain
/// 404 and are not counted.
pub fn router(state: AppState) -> Router {
    let guard = Arc::new(Guard {
        budget: Budget::new(),
        metrics: state.metrics.clone(),
    });
    Router::new()
        .route("/mutate", post(mutate))
        .route_layer(middleware::from_fn_with_state(guard, guarded))
        .with_state(state)
}

/// What [`guarded`] shares between requests.
struct Guard {
    budget: Budget,
    metrics: Arc<Metrics>,
}

/// The one middleware of `/mutate`. One layer rather than four (a timeout, the budget, a panic
/// catcher, the metrics), each of which boxed a clone of the route and its future per request.
async fn guarded(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    // The runtime's clock, as the budget's waits use (and tests that pause it).
    let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
    let answered = AssertUnwindSafe(budgeted(&guard.budget, request, next)).catch_unwind();
    let response = match tokio::time::timeout_at(deadline, answered).await {
        Ok(Ok(response)) => response,
        Ok(Err(panic)) => panic_response(panic),
        Err(_elapsed) => StatusCode::REQUEST_TIMEOUT.into_response(),
    };
    // The outcome the handler left in the response, or one implied by the status when no
    // handler answered (a panic, a timeout, a wrong method).
    let outcome = match response.extensions().get::<RequestOutcome>() {
        Some(outcome) => *outcome,
        None if response.status().is_server_error() => RequestOutcome::Failed,
        None => RequestOutcome::Rejected,
    };
    guard
        .metrics
        .request(outcome, start.elapsed().as_secs_f64());
    response
}

/// Bodies up to this are read to the end even when over [`MAX_BODY_BYTES`], so that a client
/// still sending reads our 413 instead of a connection reset; larger ones are cut short.
const DRAIN_LIMIT: u64 = 4 * MAX_BODY_BYTES as u64;

/// Reads the body within the budget, then hands the request on with the body in memory; the
/// budget taken is given back when the response body has been sent (or dropped).
async fn budgeted(budget: &Budget, request: Request, next: Next) -> Response {
    let deadline = tokio::time::Instant::now() + BUDGET_WAIT;
    let mut held = None;
    let charge = head_charge(request.headers());
    if let Err(e) = budget.take(&mut held, charge, deadline).await {
        return e.into_response();
    }
    let (parts, body) = request.into_parts();
    let body = match read_body(body, budget, &mut held, deadline).await {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    // The pod's managedFields are never read, and are most of a large pod's JSON objects:
    // cut before parsing, and before the parse cost is counted.
    let body = match lean::cut(&body) {
        Some(leaner) => Bytes::from(leaner),
        None => body,
    };
    // What parsing will allocate is taken before it starts; a body that could never get it
    // is refused like one over the size limit, and named in the log: the apiserver admits
    // the pod unmutated (failurePolicy Ignore).
    let cost = parse_cost(&body);
    if cost > MAX_PARSE_COST {
        let named = lean::lean(&body);
        tracing::warn!(
            namespace = ?named.namespace.unwrap_or_default(),
            pod = ?named.name.unwrap_or_default(),
            bytes = body.len(),
            cost,
            "review refused: the pod would cost more to parse than the webhook allows; it is admitted unmutated"
        );
        return ApiError::TooComplex(cost).into_response();
    }
    if let Err(e) = budget.take(&mut held, cost, deadline).await {
        return e.into_response();
    }
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, Body::new(Held { body, _held: held }))
}

/// A response body that keeps the request's share of the budget until it is sent or dropped,
/// its size hint (the Content-Length) unchanged.
struct Held {
    body: Body,
    _held: Option<OwnedSemaphorePermit>,
}

impl HttpBody for Held {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, axum::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// The request body, at most [`MAX_BODY_BYTES`], each piece taken from the budget as it is read.
async fn read_body(
    mut body: Body,
    budget: &Budget,
    held: &mut Option<OwnedSemaphorePermit>,
    deadline: tokio::time::Instant,
) -> Result<Bytes, ApiError> {
    let hint = body.size_hint();
    if hint.lower() > DRAIN_LIMIT {
        return Err(ApiError::TooLarge);
    }
    let expected = hint.exact().unwrap_or(u64::MAX).min(MAX_BODY_BYTES as u64) as usize;
    let mut data = Vec::new();
    let mut size = 0;
    while let Some(frame) = body.frame().await {
        let Ok(chunk) = frame.map_err(ApiError::Body)?.into_data() else {
            continue; // trailers
        };
        size += chunk.len() as u64;
        if size <= MAX_BODY_BYTES as u64 {
            budget.take(held, chunk.len(), deadline).await?;
            append(&mut data, &chunk, expected);
        } else if size > DRAIN_LIMIT {
            break;
        }
    }
    if size > MAX_BODY_BYTES as u64 {
        return Err(ApiError::TooLarge);
    }
    Ok(data.into())
}

/// Appends a chunk to a body of `expected` bytes at most (its Content-Length, or the limit),
/// growing it by doubling up to `expected`: never more than twice what has arrived, and
/// charged. Reserving the declared size at the first chunk let each stalled body hold up to
/// 4 MiB of the allocator's dirty pages for the 16 KiB it sent, which the budget never saw:
/// tests/node saw the webhook OOM-killed at the chart's 128Mi by ~400 connections.
fn append(data: &mut Vec<u8>, chunk: &[u8], expected: usize) {
    let needed = data.len() + chunk.len();
    if needed > data.capacity() {
        let capacity = (2 * data.capacity()).min(expected).max(needed);
        data.reserve_exact(capacity - data.len());
    }
    data.extend_from_slice(chunk);
}

async fn mutate(State(state): State<AppState>, body: Body) -> Result<Response, ApiError> {
    // In memory already (`budgeted`); axum's `Bytes` extractor would cap it at 2 MB.
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(ApiError::Body)?;
    // One line per admission at debug (`RUST_LOG=info,jvm_guard::webhook::router=debug`): at info, the
    // span and line took over 40% of the throughput of 2 KB reviews (scripts/bench.sh); the
    // metrics count every outcome, and warnings and errors are logged at info anyway.
    let span = tracing::debug_span!("admission", uid = Empty, namespace = Empty, outcome = Empty);
    let parsed = span.in_scope(|| admission::parse(&body))?;
    let planned = span.in_scope(|| parsed.plan(state.namespaces.as_ref(), &state.settings));
    // The one wait on the way: the images of containers without command, within the budget.
    // (Without a registry the images are not even listed.)
    let wanted = state.registry.as_ref().map(|r| (r, planned.images()));
    let images = match wanted {
        Some((registry, Some(pod))) => registry.resolve(&pod).instrument(span.clone()).await,
        _ => ResolvedImages::default(),
    };
    // The answer is pure and takes microseconds: run it here rather than on a blocking pool.
    span.in_scope(|| {
        let reviewed = planned.answer(&images);
        let uid = reviewed.review.response.as_ref().map(|r| r.uid.as_str());
        // The request's own text: escaped, so a newline in it cannot forge a text log line.
        span.record("uid", display(Escaped(uid.unwrap_or_default())));
        span.record(
            "namespace",
            display(Escaped(reviewed.namespace.as_deref().unwrap_or_default())),
        );
        span.record("outcome", reviewed.outcome.as_str());
        tracing::debug!("admission reviewed");
        let json = admission::to_json(reviewed.review).map_err(ApiError::Encode)?;
        state.metrics.mutated(reviewed.applied.iter().copied());
        let mut response = ([(header::CONTENT_TYPE, "application/json")], json).into_response();
        let outcome = RequestOutcome::from(reviewed.outcome);
        response.extensions_mut().insert(outcome);
        Ok(response)
    })
}

/// Every way a request can fail, mapped to HTTP in [`IntoResponse`] below.
#[derive(Debug, thiserror::Error)]
enum ApiError {
    #[error(transparent)]
    Review(#[from] ReviewError),
    #[error("request body is larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    #[error("cannot read the request body: {0}")]
    Body(axum::Error),
    #[error("cannot encode the response: {0}")]
    Encode(serde_json::Error),
    #[error("handler panicked: {0}")]
    Panic(String),
    #[error("too many request bytes in flight; try again")]
    Busy,
    #[error("request body would take {0} bytes to read, more than the webhook allows")]
    TooComplex(usize),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, outcome, message) = match &self {
            ApiError::Review(e) => (
                StatusCode::BAD_REQUEST,
                RequestOutcome::BadRequest,
                e.to_string(),
            ),
            ApiError::TooLarge | ApiError::TooComplex(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                RequestOutcome::TooLarge,
                self.to_string(),
            ),
            ApiError::Body(_) => (
                StatusCode::BAD_REQUEST,
                RequestOutcome::Rejected,
                self.to_string(),
            ),
            ApiError::Busy => (
                StatusCode::SERVICE_UNAVAILABLE,
                RequestOutcome::Failed,
                self.to_string(),
            ),
            ApiError::Encode(_) | ApiError::Panic(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                RequestOutcome::Failed,
                "internal error".into(),
            ),
        };
        // A review's error can quote the request: escaped, one log line whatever it holds.
        let error = self.to_string();
        if status.is_server_error() {
            tracing::error!(error = %Escaped(&error), "request failed");
        } else {
            tracing::warn!(error = %Escaped(&error), "request refused");
        }
        let mut response = (status, Json(json!({ "error": message }))).into_response();
        response.extensions_mut().insert(outcome);
        response
    }
}

fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(s), _) => s.to_string(),
        (_, Some(s)) => s.clone(),
        _ => "(no message)".to_string(),
    };
    ApiError::Panic(message).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_holds_at_most_twice_what_arrived_and_ends_at_its_length() {
        // A stalled body that declared the limit and sent one HTTP/2 window.
        let mut data = Vec::new();
        append(&mut data, &[b' '; 16 * 1024], MAX_BODY_BYTES);
        assert!(data.capacity() <= 2 * data.len(), "{}", data.capacity());
        // The body arriving to its Content-Length: doubling, exact at the end.
        let length = 3 * 1024 * 1024 + 5;
        let mut data = Vec::new();
        let mut grown = 0;
        while data.len() < length {
            let before = data.capacity();
            let n = (length - data.len()).min(16 * 1024);
            append(&mut data, &vec![b' '; n], length);
            grown += usize::from(data.capacity() != before);
            assert!(data.capacity() <= (2 * data.len()).max(16 * 1024));
        }
        assert_eq!(data.capacity(), length, "no slack at the end");
        assert!(grown <= 10, "{grown} reallocations");
        // Without a Content-Length: the same doubling, up to the limit.
        let mut data = Vec::new();
        for _ in 0..100 {
            append(&mut data, &[b' '; 1000], MAX_BODY_BYTES);
        }
        assert!(data.capacity() <= 2 * data.len());
    }
}
