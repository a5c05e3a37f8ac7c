//! The plain-HTTP admin port: `/healthz`, `/readyz` (TLS loaded, namespaces known, not shutting
//! down) and `/metrics`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::metrics::{self, Metrics};
use super::namespaces::NamespaceLookup;

/// What `/readyz` answers from: the webhook is ready once it serves TLS (the admin port opens
/// only after the certificate is loaded) and the namespaces are known, until shutdown begins.
#[derive(Clone)]
pub(super) struct Health {
    pub namespaces: Arc<dyn NamespaceLookup>,
    pub metrics: Arc<Metrics>,
    pub shutting_down: Arc<AtomicBool>,
}

pub(super) fn admin_router(health: Health) -> Router {
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
