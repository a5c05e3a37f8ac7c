//! A second mutating webhook for the reinvocation test: over HTTPS on loopback, it adds a
//! container to every pod that lacks it and records each pod it is sent.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub const CONTAINER: &str = "zz-sidecar";

pub struct Sidecar {
    pub addr: SocketAddr,
    /// The pods it was asked about, in order.
    pub seen: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Sidecar {
    /// Serves on the current runtime with the certificate in `certs` (tls.crt, tls.key).
    pub async fn start(certs: &Path) -> Sidecar {
        let chain = CertificateDer::pem_file_iter(certs.join("tls.crt"))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(certs.join("tls.key")).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorded = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        let recorded = recorded.clone();
                        async move {
                            let body = request.into_body().collect().await?.to_bytes();
                            let answer = review(&body, &recorded);
                            let body = Full::new(Bytes::from(serde_json::to_vec(&answer).unwrap()));
                            Ok::<_, hyper::Error>(
                                Response::builder()
                                    .header("content-type", "application/json")
                                    .body(body)
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Sidecar { addr, seen, task }
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/", self.addr.port())
    }
}

/// Adds the sidecar container unless the pod has it (so that a reinvocation is a no-op).
fn review(body: &[u8], seen: &Mutex<Vec<Value>>) -> Value {
    let review: Value = serde_json::from_slice(body).unwrap_or_default();
    let request = &review["request"];
    let pod = &request["object"];
    seen.lock().unwrap().push(pod.clone());
    let has_it = pod["spec"]["containers"]
        .as_array()
        .is_some_and(|containers| containers.iter().any(|c| c["name"] == CONTAINER));
    let mut response = json!({"uid": request["uid"], "allowed": true});
    if !has_it {
        let patch = json!([{
            "op": "add",
            "path": "/spec/containers/-",
            "value": {
                "name": CONTAINER,
                "image": "registry.k8s.io/pause:3.10",
                "resources": {"limits": {"memory": "16Mi"}},
            },
        }]);
        response["patchType"] = json!("JSONPatch");
        response["patch"] =
            json!(base64::engine::general_purpose::STANDARD
                .encode(serde_json::to_vec(&patch).unwrap()));
    }
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": response,
    })
}
