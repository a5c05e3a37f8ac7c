//! The load benchmark's baseline (`scripts/bench.sh`): jvm-guard's own serving stack — the
//! same runtime, rustls configuration, accept loop, hyper and axum — with a handler that reads
//! the AdmissionReview into kube-core's types and allows it unchanged. Whatever jvm-guard
//! costs beyond this is its own work: configuration, mutation, patch, metrics, logs.
//!
//! With `--patch FILE` it answers every review with that JSON Patch (the bytes as they are,
//! base64 in the answer as jvm-guard's): the floor of a webhook whose answer is as large as
//! jvm-guard's, since writing and encrypting the answer is part of what a request costs.
//!
//!     cargo run --release --example bench-baseline -- --addr 127.0.0.1:9443 \
//!         --tls-cert tls.crt --tls-key tls.key

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use axum::body::Bytes;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use clap::Parser;
use hyper_util::server::graceful::GracefulShutdown;
use jvm_guard::webhook;
use jvm_guard::webhook::admission;
use jvm_guard::webhook::router::MAX_BODY_BYTES;
use jvm_guard::webhook::tls::{self, CertFiles, ServingCert};
use kube_core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube_core::DynamicObject;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    addr: SocketAddr,
    #[arg(long)]
    tls_cert: PathBuf,
    #[arg(long)]
    tls_key: PathBuf,
    #[arg(long, default_value_t = webhook::DEFAULT_MAX_CONNECTIONS)]
    max_connections: u32,
    /// A JSON Patch to answer with, instead of allowing unchanged.
    #[arg(long)]
    patch: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cert = ServingCert::from_files(CertFiles {
        cert: args.tls_cert.clone(),
        key: args.tls_key.clone(),
    })
    .context("--tls-cert / --tls-key")?;
    let patch = match &args.patch {
        Some(path) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("--patch {}", path.display()))?;
            serde_json::from_slice::<json_patch::Patch>(&bytes)
                .with_context(|| format!("--patch {}: not a JSON Patch", path.display()))?;
            Some(Arc::new(bytes))
        }
        None => None,
    };
    let tls = TlsAcceptor::from(tls::server_config(Arc::new(cert), None)?);
    webhook::runtime()?.block_on(async {
        let listener = TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("cannot listen on {}", args.addr))?;
        eprintln!("baseline listening on {}", listener.local_addr()?);
        let app = Router::new()
            .route("/mutate", post(move |body| allow(body, patch)))
            .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES));
        let graceful = GracefulShutdown::new();
        let (_never, accepting) = watch::channel(false);
        webhook::accept(
            listener,
            Some(tls),
            app,
            args.max_connections,
            &graceful,
            accepting,
        )
        .await;
        Ok(())
    })
}

async fn allow(body: Bytes, patch: Option<Arc<Vec<u8>>>) -> Result<Response, StatusCode> {
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_slice(&body).map_err(|_| StatusCode::BAD_REQUEST)?;
    let request: AdmissionRequest<DynamicObject> =
        review.try_into().map_err(|_| StatusCode::BAD_REQUEST)?;
    let mut response = AdmissionResponse::from(&request);
    if let Some(patch) = patch {
        // The file's bytes, as read, as jvm-guard answers its own.
        response = admission::with_patch(response, patch.to_vec())
            .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    }
    let answer = response.into_review();
    // jvm-guard's encoding: the patch as base64, not kube-core's array of numbers (the same as
    // `serde_json::to_vec` without a patch).
    let json = admission::to_json(answer).map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response())
}
