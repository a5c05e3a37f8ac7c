//! The webhook's HTTP surface: an axum [`Router`] with `POST /mutate`, and the one place where
//! errors become HTTP responses. TLS, the listener and the admin port wrap it elsewhere.

use std::any::Any;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;
use tower_http::catch_panic::CatchPanicLayer;
use tracing::field::Empty;

use crate::admission::{self, ReviewError};
use crate::config::Settings;
use crate::namespaces::NamespaceLookup;

/// Bodies above this are refused with 413 (SPEC §5).
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// What every request needs, parsed once at start-up.
#[derive(Clone)]
pub struct AppState {
    pub namespaces: Arc<dyn NamespaceLookup>,
    pub settings: Arc<Settings>,
}

/// `POST /mutate`. A panic anywhere in a request becomes a 500 for that request only.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(CatchPanicLayer::custom(panic_response))
        .with_state(state)
}

async fn mutate(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    // The review is pure and takes microseconds: run it here rather than on a blocking pool.
    let span = tracing::info_span!("admission", uid = Empty, namespace = Empty, outcome = Empty);
    span.in_scope(|| {
        let reviewed = admission::review(&body?, state.namespaces.as_ref(), &state.settings)?;
        let uid = reviewed.review.response.as_ref().map(|r| r.uid.as_str());
        span.record("uid", uid.unwrap_or_default());
        span.record(
            "namespace",
            reviewed.namespace.as_deref().unwrap_or_default(),
        );
        span.record("outcome", reviewed.outcome.as_str());
        tracing::info!("admission reviewed");
        let json = admission::to_json(&reviewed.review).map_err(ApiError::Encode)?;
        Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response())
    })
}

/// Every way a request can fail, mapped to HTTP in [`IntoResponse`] below.
#[derive(Debug, thiserror::Error)]
enum ApiError {
    #[error(transparent)]
    Review(#[from] ReviewError),
    #[error("cannot read the request body: {0}")]
    Body(#[from] BytesRejection),
    #[error("cannot encode the response: {0}")]
    Encode(serde_json::Error),
    #[error("handler panicked: {0}")]
    Panic(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match &self {
            ApiError::Review(e) => (StatusCode::BAD_REQUEST, e.to_string()),
            ApiError::Body(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body is larger than {MAX_BODY_BYTES} bytes"),
            ),
            ApiError::Body(e) => (e.status(), self.to_string()),
            ApiError::Encode(_) | ApiError::Panic(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error".into())
            }
        };
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        } else {
            tracing::warn!(error = %self, "request refused");
        }
        (status, Json(json!({ "error": message }))).into_response()
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
