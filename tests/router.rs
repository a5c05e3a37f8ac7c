//! The webhook router over HTTP requests, without a socket (`tower::ServiceExt::oneshot`),
//! and once over a real socket where the connection's behaviour is the point.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use base64::Engine as _;
use futures_util::StreamExt as _;
use http_body_util::BodyExt;
use jvm_guard::webhook::metrics::Metrics;
use jvm_guard::webhook::namespaces::{NamespaceLookup, StaticNamespaces};
use jvm_guard::webhook::router::{router, AppState, MAX_BODY_BYTES};
use jvm_guard::{Defaults, NamespaceConfig, ServerSettings};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};
use tower::ServiceExt;

const UID: &str = "705ab4f5-6393-11e8-b7cc-42010a800002";

fn app(namespaces: Arc<dyn NamespaceLookup>) -> Router {
    counted_app(namespaces).0
}

/// The router and the metrics it counts into.
fn counted_app(namespaces: Arc<dyn NamespaceLookup>) -> (Router, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let app = router(AppState {
        namespaces,
        settings: Arc::new(ServerSettings::default()),
        metrics: metrics.clone(),
        registry: None,
    });
    (app, metrics)
}

fn dev_app() -> Router {
    app(Arc::new(StaticNamespaces::every(&Defaults::default())))
}

fn pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "api", "namespace": "shop"},
        "spec": {"containers": [{
            "name": "api",
            "image": "eclipse-temurin:21-jre",
            // `java` as the command: memory is applied, not unverified (a launcher nobody knows).
            "command": ["java", "-jar", "/app/api.jar"],
            "resources": {"limits": {"memory": "512Mi"}},
        }]},
    })
}

fn pod_review() -> Vec<u8> {
    review_in("shop")
}

fn review_in(namespace: &str) -> Vec<u8> {
    review_of(namespace, pod())
}

/// The review the apiserver sends for a CREATE of `pod` in `namespace`.
fn review_of(namespace: &str, pod: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": UID,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod,
            "dryRun": false,
        },
    }))
    .unwrap()
}

async fn send(app: Router, method: Method, body: impl Into<Body>) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri("/mutate")
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, value)
}

async fn post(app: Router, body: impl Into<Body>) -> (StatusCode, Value) {
    send(app, Method::POST, body).await
}

#[tokio::test]
async fn a_pod_create_gets_a_patch() {
    let (status, out) = post(dev_app(), pod_review()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(out["apiVersion"], "admission.k8s.io/v1");
    let response = &out["response"];
    assert_eq!(response["uid"], UID);
    assert_eq!(response["allowed"], true);
    assert_eq!(response["patchType"], "JSONPatch");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(response["patch"].as_str().unwrap())
        .unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
    let mut mutated = pod();
    json_patch::patch(&mut mutated, &patch).unwrap();
    let _: Pod = serde_json::from_value(mutated).unwrap();
}

#[tokio::test]
async fn a_namespace_that_did_not_opt_in_gets_no_patch() {
    let app = app(Arc::new(StaticNamespaces::new(
        vec![],
        &Defaults::default(),
    )));
    let (status, out) = post(app, pod_review()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(out["response"]["uid"], UID);
    assert_eq!(out["response"]["allowed"], true);
    assert!(out["response"].get("patch").is_none());
}

#[tokio::test]
async fn invalid_json_is_400_with_a_json_error() {
    let (status, out) = post(dev_app(), "{\"request\": ").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let error = out["error"].as_str().unwrap();
    assert!(error.starts_with("request body is not JSON"), "{error}");
}

#[tokio::test]
async fn a_review_without_request_is_400() {
    let body = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#;
    let (status, out) = post(dev_app(), body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(out, json!({"error": "AdmissionReview has no request"}));
}

#[tokio::test]
async fn a_body_over_4_mib_is_413() {
    // A well-formed review padded with whitespace: only its size is wrong.
    let mut body = pod_review();
    body.resize(5 * 1024 * 1024, b' ');
    let (status, out) = post(dev_app(), body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        out,
        json!({"error": format!("request body is larger than {MAX_BODY_BYTES} bytes")})
    );

    let mut body = pod_review();
    body.resize(MAX_BODY_BYTES, b' ');
    let (status, _) = post(dev_app(), body).await;
    assert_eq!(status, StatusCode::OK, "exactly 4 MiB is allowed");

    // Far over the limit: refused from its Content-Length, without reading it.
    let body = vec![b' '; 17 * 1024 * 1024];
    let (status, _) = post(dev_app(), body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn get_is_405() {
    let (status, _) = send(dev_app(), Method::GET, Body::empty()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

/// A namespace cache with a bug for namespace `boom`, and every other namespace opted in.
struct PanicsOnBoom(StaticNamespaces);

impl NamespaceLookup for PanicsOnBoom {
    fn get(&self, name: &str) -> Option<Arc<NamespaceConfig>> {
        assert_ne!(name, "boom", "namespace cache bug");
        self.0.get(name)
    }
    fn ready(&self) -> bool {
        true
    }
}

#[tokio::test]
async fn a_panic_is_500_and_the_router_keeps_serving() {
    let every = StaticNamespaces::every(&Defaults::default());
    let app = app(Arc::new(PanicsOnBoom(every)));
    let (status, out) = post(app.clone(), review_in("boom")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(out, json!({"error": "internal error"}));

    let (status, out) = post(app, review_in("shop")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(out["response"]["patch"].is_string());
}

/// Over a real socket, as the apiserver sends it: the whole oversize body is written, and the
/// client must read a 413, not a reset connection.
#[tokio::test]
async fn a_body_over_4_mib_is_413_over_a_socket() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, dev_app()).await });
    let response = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        let limit = Some(std::time::Duration::from_secs(20));
        stream.set_read_timeout(limit).unwrap();
        stream.set_write_timeout(limit).unwrap();
        let body = vec![b' '; 5 * 1024 * 1024];
        let head = format!(
            "POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(&body).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    })
    .await
    .unwrap();
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.ends_with(r#"{"error":"request body is larger than 4194304 bytes"}"#));
}

#[tokio::test]
async fn every_answer_is_counted_by_outcome() {
    let every = StaticNamespaces::every(&Defaults::default());
    let (app, metrics) = counted_app(Arc::new(PanicsOnBoom(every)));
    let mut big = pod_review();
    big.resize(MAX_BODY_BYTES + 1, b' ');
    let kube_system = review_in("kube-system");
    for body in [
        pod_review(),
        kube_system,
        b"{".to_vec(),
        big,
        review_in("boom"),
    ] {
        post(app.clone(), body).await;
    }
    send(app, Method::GET, Body::empty()).await;

    let text = metrics.encode();
    let value = |series: &str| {
        let line = text.lines().find(|l| l.starts_with(&format!("{series} ")));
        let value = line.unwrap_or_else(|| panic!("no {series} in\n{text}"));
        value.rsplit(' ').next().unwrap().parse::<f64>().unwrap()
    };
    for (outcome, count) in [
        ("mutated", 1.0),
        ("unchanged", 1.0),
        ("bad_request", 1.0),
        ("too_large", 1.0),
        ("failed", 1.0),
        ("rejected", 1.0),
        ("skipped", 0.0),
        ("internal_error", 0.0),
    ] {
        let series = format!("jvm_guard_admission_requests_total{{outcome=\"{outcome}\"}}");
        assert_eq!(value(&series), count, "{series}");
    }
    assert_eq!(value("jvm_guard_admission_duration_seconds_count"), 6.0);
    assert_eq!(value("jvm_guard_internal_errors_total"), 1.0, "the panic");
    assert_eq!(value("jvm_guard_mutations_total{feature=\"memory\"}"), 1.0);
    assert_eq!(value("jvm_guard_mutations_total{feature=\"probes\"}"), 0.0);
}

/// A review as the apiserver sends it for a pod of `containers` × `vars` env vars: with the
/// `managedFields` every real review carries (about four JSON objects per env var).
fn large_review(containers: usize, vars: usize) -> Vec<u8> {
    let env: Vec<Value> = (0..vars)
        .map(|i| json!({"name": format!("SETTING_{i}"), "value": format!("value-{i}")}))
        .collect();
    let managed_env: serde_json::Map<String, Value> = (0..vars)
        .map(|i| {
            (
                format!("k:{{\"name\":\"SETTING_{i}\"}}"),
                json!({".": {}, "f:name": {}, "f:value": {}}),
            )
        })
        .collect();
    let names: Vec<String> = (0..containers).map(|c| format!("app-{c}")).collect();
    let managed_containers: serde_json::Map<String, Value> = names
        .iter()
        .map(|n| {
            (
                format!("k:{{\"name\":\"{n}\"}}"),
                json!({".": {}, "f:env": managed_env, "f:image": {}, "f:name": {}}),
            )
        })
        .collect();
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "big",
            "namespace": "shop",
            "managedFields": [{
                "manager": "kube-controller-manager",
                "operation": "Update",
                "apiVersion": "v1",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {"f:containers": managed_containers}},
            }],
        },
        "spec": {"containers": names.iter().map(|n| json!({
            "name": n,
            "image": "eclipse-temurin:21-jre",
            "env": env,
            "resources": {"limits": {"memory": "512Mi"}},
        })).collect::<Vec<_>>()},
    });
    review_of("shop", pod)
}

#[tokio::test]
async fn a_real_pod_with_hundreds_of_env_vars_is_mutated() {
    // Both were refused as too costly to parse (413) while managedFields were counted: the
    // 3 × 130 pod of the hardening report, and a pod of 400 env vars.
    for (containers, vars) in [(3, 130), (1, 400), (2, 400)] {
        let body = large_review(containers, vars);
        let (status, value) = post(dev_app(), body.clone()).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{containers} x {vars} env vars ({} bytes): {value}",
            body.len()
        );
        assert_eq!(value["response"]["uid"], UID);
        assert!(
            value["response"]["patch"].is_string(),
            "{containers} x {vars}: no patch: {value}"
        );
    }
}

/// Bodies that never end get a 408 at the request's deadline, are counted as refused, and give
/// back their share of the budget: six of them hold nearly all of it (a review beyond waits,
/// then gets a 503) until their deadline, after which a review is served again.
#[tokio::test(start_paused = true)]
async fn bodies_that_never_end_are_408_at_the_deadline_and_give_the_budget_back() {
    use jvm_guard::webhook::router::{BODY_BUDGET, REQUEST_TIMEOUT};
    use std::time::Duration;
    let (app, metrics) = counted_app(Arc::new(StaticNamespaces::every(&Defaults::default())));
    // Each holds its head and a first piece of body just under the size limit.
    let piece = MAX_BODY_BYTES - 4 * 1024;
    let stalled_count = 6;
    assert!(stalled_count * piece < BODY_BUDGET, "all six are let in");
    let start = tokio::time::Instant::now();
    let stalled: Vec<_> = (0..stalled_count)
        .map(|_| {
            let first = axum::body::Bytes::from(vec![b' '; piece]);
            let body = futures_util::stream::iter([Ok::<_, std::io::Error>(first)])
                .chain(futures_util::stream::pending());
            // Bounded here: without the router's deadline the test fails, it does not hang.
            let answer = tokio::time::timeout(
                REQUEST_TIMEOUT + Duration::from_secs(5),
                post(app.clone(), Body::from_stream(body)),
            );
            tokio::spawn(answer)
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let (status, _) = post(app.clone(), pod_review()).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "the budget is held"
    );

    for answer in stalled {
        let (status, _) = answer
            .await
            .unwrap()
            .expect("answered by the router's deadline");
        assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
    }
    let waited = start.elapsed();
    assert!(
        waited >= REQUEST_TIMEOUT && waited < REQUEST_TIMEOUT + Duration::from_secs(1),
        "answered at the deadline, not after {waited:?}"
    );
    let text = metrics.encode();
    let rejected =
        format!("jvm_guard_admission_requests_total{{outcome=\"rejected\"}} {stalled_count}\n");
    assert!(text.contains(&rejected), "{text}");

    let (status, out) = post(app, pod_review()).await;
    assert_eq!(status, StatusCode::OK, "the budget is given back");
    assert!(out["response"]["patch"].is_string());
}
