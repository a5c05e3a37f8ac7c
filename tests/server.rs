//! The real `jvm-guard serve` process on loopback, with certificates written by the real
//! `jvm-guard certs`, spoken to over HTTPS by a client that trusts only that CA.

// free_port is the suites' that start servers of their own.
#[allow(dead_code)]
#[path = "support/process.rs"]
mod process;
use process::{follow_lines, run_bounded, within};

use std::net::SocketAddr;
use std::os::unix::fs::symlink;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::StreamExt as _;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::core::v1::Pod;
use rstest::rstest;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

const BIN: &str = env!("CARGO_BIN_EXE_jvm-guard");

/// Runs `jvm-guard certs --out DIR ARGS...`.
fn certs(dir: &Path, args: &[&str]) {
    let out = run_bounded(
        Command::new(BIN)
            .arg("certs")
            .arg("--out")
            .arg(dir)
            .args(args),
        30,
    );
    assert!(
        out.status.success(),
        "jvm-guard certs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn leaf_der(cert_file: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(cert_file).unwrap()
}

const NAMESPACES: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {jvm-guard.io/inject: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: legacy, labels: {jvm-guard.io/inject: disabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: plain}
---
apiVersion: v1
kind: Namespace
metadata: {name: kube-system, labels: {jvm-guard.io/inject: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: jvm-guard, labels: {jvm-guard.io/inject: enabled}}
"#;

/// A running `jvm-guard serve`; killed when dropped, its log printed if the test failed.
struct Server {
    child: Child,
    addr: SocketAddr,
    admin: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    ca: PathBuf,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- jvm-guard serve log ---");
            for line in self.logs.lock().unwrap().iter() {
                eprintln!("{line}");
            }
        }
    }
}

struct Options {
    /// Certificate and key; default: a pair from `jvm-guard certs` in the server's directory.
    tls: Option<(PathBuf, PathBuf, PathBuf)>,
    args: Vec<String>,
    /// Flags given as `JVM_GUARD_*` variables instead of arguments.
    env: bool,
    /// `--dev`: no certificate, namespace or webhook-namespace flags. The test writes the CA
    /// file (the self-signed certificate) itself.
    dev: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            tls: None,
            args: vec!["--shutdown-delay".into(), "0".into()],
            env: false,
            dev: false,
        }
    }
}

impl Server {
    fn start() -> Server {
        Server::start_with(Options::default())
    }

    fn start_with(options: Options) -> Server {
        let dir = tempfile::tempdir().unwrap();
        // JVM_GUARD_SERVER_BIN: another build of the same binary, e.g. the release one for the
        // memory figures of the README.
        let mut command = Command::new(std::env::var("JVM_GUARD_SERVER_BIN").unwrap_or(BIN.into()));
        command.arg("serve");
        let (cert, key, ca) = options.tls.unwrap_or_else(|| {
            certs(&dir.path().join("certs"), &[]);
            let certs = dir.path().join("certs");
            (
                certs.join("tls.crt"),
                certs.join("tls.key"),
                certs.join("ca.crt"),
            )
        });
        let namespaces = dir.path().join("namespaces.yaml");
        std::fs::write(&namespaces, NAMESPACES).unwrap();
        let mut flags = vec![
            ("--addr", "127.0.0.1:0".to_string()),
            ("--admin-addr", "127.0.0.1:0".into()),
            ("--log-format", "json".into()),
        ];
        let ca = if options.dev {
            command.arg("--dev");
            dir.path().join("dev.crt")
        } else {
            flags.extend([
                ("--tls-cert", cert.display().to_string()),
                ("--tls-key", key.display().to_string()),
                ("--namespaces-file", namespaces.display().to_string()),
                ("--webhook-namespace", "jvm-guard".into()),
            ]);
            ca
        };
        for (flag, value) in flags {
            if options.env {
                let var = format!("JVM_GUARD_{}", flag[2..].replace('-', "_").to_uppercase());
                command.env(var, value);
            } else {
                command.arg(flag).arg(value);
            }
        }
        command
            .args(&options.args)
            .env("RUST_LOG", "info,jvm_guard::webhook::router=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // Should the test process die without unwinding, the server dies with it.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = command.spawn().unwrap();

        let (logs, lines) = follow_lines(child.stderr.take().unwrap());
        let deadline = Instant::now() + Duration::from_secs(30);
        let listening = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    let Ok(entry) = serde_json::from_str::<Value>(&line) else {
                        continue;
                    };
                    if entry["message"] == "listening" {
                        break entry;
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait().unwrap();
                    panic!(
                        "serve did not start ({status}):\n{}",
                        logs.lock().unwrap().join("\n")
                    );
                }
            }
        };
        let address = |field: &str| listening[field].as_str().unwrap().parse().unwrap();
        Server {
            addr: address("addr"),
            admin: address("admin_addr"),
            child,
            logs,
            ca,
            dir,
        }
    }

    fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    fn sigterm(&self) {
        assert_eq!(unsafe { libc::kill(self.pid(), libc::SIGTERM) }, 0);
    }

    /// Waits for the process to end, polling so the test stays bounded.
    async fn exit_status(&mut self, seconds: u64) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "still running after {seconds} s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_contains(&self, text: &str) -> bool {
        self.logs.lock().unwrap().iter().any(|l| l.contains(text))
    }

    fn client_config(&self, alpn: &[u8]) -> Arc<ClientConfig> {
        client_config(&self.ca, alpn, None)
    }

    /// A TLS connection that trusts only the test CA and checks the name `localhost`.
    async fn connect_with(&self, config: Arc<ClientConfig>) -> TlsStream<TcpStream> {
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        TlsConnector::from(config).connect(name, tcp).await.unwrap()
    }

    async fn connect(&self) -> TlsStream<TcpStream> {
        self.connect_with(self.client_config(b"http/1.1")).await
    }

    /// The leaf certificate a new connection is served.
    async fn peer_certificate(&self) -> CertificateDer<'static> {
        let tls = self.connect().await;
        tls.get_ref().1.peer_certificates().unwrap()[0].clone()
    }

    /// `POST /mutate` on a new HTTP/1.1 connection.
    async fn post(&self, body: impl Into<Bytes>) -> (StatusCode, Value) {
        let tls = self.connect().await;
        within(10, "POST /mutate", post_on(tls, body.into())).await
    }

    /// `GET path` on the admin port: status and body.
    async fn admin_get(&self, path: &str) -> (u16, String) {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let exchange = async {
            let mut tcp = TcpStream::connect(self.admin).await.unwrap();
            tcp.write_all(request.as_bytes()).await.unwrap();
            let mut response = Vec::new();
            tcp.read_to_end(&mut response).await.unwrap();
            parse_response(&response)
        };
        within(10, path, exchange).await
    }

    async fn metric(&self, series: &str) -> f64 {
        let (status, text) = self.admin_get("/metrics").await;
        assert_eq!(status, 200);
        sample(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"))
    }
}

fn client_config(
    ca: &Path,
    alpn: &[u8],
    version: Option<&'static rustls::SupportedProtocolVersion>,
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(ca).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions = match version {
        Some(v) => vec![v],
        None => vec![&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

fn mutate_request(body: Bytes) -> Request<Full<Bytes>> {
    Request::post("/mutate")
        .header(HOST, "localhost")
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .unwrap()
}

async fn read_json(response: hyper::Response<hyper::body::Incoming>) -> (StatusCode, Value) {
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn post_on(tls: TlsStream<TcpStream>, body: Bytes) -> (StatusCode, Value) {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    read_json(sender.send_request(mutate_request(body)).await.unwrap()).await
}

/// Status and body of a raw HTTP/1.1 response with a Content-Length.
fn parse_response(raw: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// Reads until the server closes. A close without TLS close_notify still ends the response.
async fn read_until_close(tls: &mut TlsStream<TcpStream>) -> Vec<u8> {
    let mut response = Vec::new();
    match tls.read_to_end(&mut response).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {}
        Err(e) => panic!("reading the response: {e} (after {} bytes)", response.len()),
    }
    response
}

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

fn pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "api-", "namespace": "shop"},
        "spec": {"containers": [{
            "name": "api",
            "image": "eclipse-temurin:21-jre",
            // `java` as the command: memory is applied, not unverified (a launcher nobody knows).
            "command": ["java", "-jar", "/app/api.jar"],
            "ports": [{"name": "http", "containerPort": 8080}],
            "resources": {"limits": {"memory": "1Gi"}},
        }]},
    })
}

fn review(uid: &str, namespace: &str, operation: &str, resource: &str, dry_run: bool) -> Value {
    let (kind, object) = match resource {
        "pods" => ("Pod", pod()),
        "configmaps" => (
            "ConfigMap",
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}}),
        ),
        other => panic!("no test resource {other}"),
    };
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": kind},
            "resource": {"group": "", "version": "v1", "resource": resource},
            "namespace": namespace,
            "operation": operation,
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": object,
            "oldObject": if operation == "UPDATE" { pod() } else { Value::Null },
            "dryRun": dry_run,
        },
    })
}

fn pod_review(uid: &str) -> Bytes {
    serde_json::to_vec(&review(uid, "shop", "CREATE", "pods", false))
        .unwrap()
        .into()
}

/// The patch of an admission response, applied to `object`; `None` when there is no patch.
fn patched(response: &Value, object: &Value) -> Option<Value> {
    let patch = response
        .get("patch")?
        .as_str()
        .expect("patch is base64 text");
    assert_eq!(response["patchType"], "JSONPatch");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
    let mut out = object.clone();
    json_patch::patch(&mut out, &patch).expect("the patch applies");
    Some(out)
}

#[tokio::test]
async fn a_pod_create_is_mutated_and_the_patch_applies() {
    let server = Server::start();
    let uid = "b3a5e8a2-1f3c-4a7e-9d51-0c6f2e4b7a10";
    let (status, out) = server.post(pod_review(uid)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(out["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(out["kind"], "AdmissionReview");
    let response = &out["response"];
    assert_eq!(response["uid"], uid);
    assert_eq!(response["allowed"], true);
    let mutated = patched(response, &pod()).expect("a patch");
    let pod: Pod = serde_json::from_value(mutated).expect("a valid Pod");
    let annotations = pod.metadata.annotations.unwrap();
    assert!(annotations["jvm-guard.io/status"].contains("memory"));
    let env = pod.spec.unwrap().containers[0].env.clone().unwrap();
    let options = env.iter().find(|e| e.name == "JAVA_TOOL_OPTIONS").unwrap();
    assert!(options
        .value
        .as_deref()
        .unwrap()
        .contains("-XX:MaxRAMPercentage=62.0"));
}

/// Requests that are allowed without a patch: each echoes its uid.
#[rstest]
#[case::namespace_label_disabled("legacy", "CREATE", "pods", None)]
#[case::unlabelled_namespace("plain", "CREATE", "pods", None)]
#[case::namespace_not_in_file("elsewhere", "CREATE", "pods", None)]
#[case::kube_system(
    "kube-system",
    "CREATE",
    "pods",
    Some("jvm-guard: namespace kube-system is never mutated")
)]
#[case::webhook_namespace(
    "jvm-guard",
    "CREATE",
    "pods",
    Some("jvm-guard: namespace jvm-guard is never mutated")
)]
#[case::config_map("shop", "CREATE", "configmaps", None)]
#[case::pod_update("shop", "UPDATE", "pods", None)]
#[tokio::test]
async fn not_mutated(
    #[case] namespace: &str,
    #[case] operation: &str,
    #[case] resource: &str,
    #[case] warning: Option<&str>,
) {
    let server = Server::start();
    let uid = format!("uid-{namespace}-{operation}-{resource}");
    let body = review(&uid, namespace, operation, resource, false);
    let (status, out) = server.post(serde_json::to_vec(&body).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let response = &out["response"];
    assert_eq!(response["uid"], uid.as_str());
    assert_eq!(response["allowed"], true);
    assert!(response.get("patch").is_none(), "{response}");
    let warnings: Vec<_> = response["warnings"].as_array().cloned().unwrap_or_default();
    assert_eq!(warnings, warning.into_iter().collect::<Vec<_>>());
}

#[tokio::test]
async fn a_dry_run_is_mutated_the_same_way() {
    let server = Server::start();
    let create = review("uid-create", "shop", "CREATE", "pods", false);
    let dry_run = review("uid-dry-run", "shop", "CREATE", "pods", true);
    let (_, created) = server.post(serde_json::to_vec(&create).unwrap()).await;
    let (status, dry) = server.post(serde_json::to_vec(&dry_run).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(dry["response"]["uid"], "uid-dry-run");
    let dry_pod = patched(&dry["response"], &pod()).expect("a patch");
    assert_eq!(Some(dry_pod), patched(&created["response"], &pod()));
}

#[rstest]
#[case::invalid_json(b"{\"request\": ".as_slice(), "request body is not JSON")]
#[case::invalid_utf8_even_where_ignored(
    b"{\"request\": {\"unknown\": \"\xff\"}}".as_slice(),
    "request body is not JSON: invalid UTF-8"
)]
#[case::no_request(
    br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.as_slice(),
    "AdmissionReview has no request"
)]
#[tokio::test]
async fn not_an_admission_review_is_400(#[case] body: &'static [u8], #[case] error: &str) {
    let server = Server::start();
    let (status, out) = server.post(body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = out["error"].as_str().expect("a JSON error body");
    assert!(message.starts_with(error), "{message}");
    // The server is not hurt by it.
    let (status, _) = server.post(pod_review("after")).await;
    assert_eq!(status, StatusCode::OK);
}

/// As the apiserver sends it: the whole 5 MiB body written, then the answer read. The client
/// must get a 413, not a reset connection.
#[tokio::test]
async fn a_5_mib_body_is_413_not_a_broken_connection() {
    let server = Server::start();
    let mut body = pod_review("too-big").to_vec();
    body.resize(5 * 1024 * 1024, b' ');
    let head = format!(
        "POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut tls = server.connect().await;
    let exchange = async {
        tls.write_all(head.as_bytes()).await.unwrap();
        tls.write_all(&body).await.unwrap();
        tls.flush().await.unwrap();
        read_until_close(&mut tls).await
    };
    let (status, text) = parse_response(&within(20, "5 MiB POST", exchange).await);
    assert_eq!(status, 413, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"error": "request body is larger than 4194304 bytes"})
    );
    let (status, _) = server.post(pod_review("after")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_hundred_concurrent_requests_each_get_their_own_uid() {
    let server = Arc::new(Server::start());
    let config = server.client_config(b"http/1.1");
    let requests = (0..400).map(|i| {
        let (server, config) = (server.clone(), config.clone());
        tokio::spawn(async move {
            let uid = format!("concurrent-{i:03}");
            let tls = server.connect_with(config).await;
            let (status, out) = post_on(tls, pod_review(&uid)).await;
            assert_eq!(status, StatusCode::OK);
            assert!(out["response"]["patch"].is_string());
            (uid, out["response"]["uid"].as_str().unwrap().to_string())
        })
    });
    let all = within(60, "400 requests", futures_join_all(requests.collect())).await;
    for (sent, echoed) in &all {
        assert_eq!(sent, echoed);
    }
    assert_eq!(all.len(), 400);
    let mutated = server
        .metric("jvm_guard_admission_requests_total{outcome=\"mutated\"}")
        .await;
    assert_eq!(mutated, 400.0);
}

/// `join_all` without the futures crate: the tasks already run concurrently once spawned.
async fn futures_join_all<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.expect("request task"));
    }
    out
}

#[tokio::test]
async fn http2_and_tls_1_2_are_served() {
    let server = Server::start();
    let tls = server.connect_with(server.client_config(b"h2")).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(b"h2".as_slice()));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    for uid in ["h2-a", "h2-b"] {
        let response = sender.send_request(mutate_request(pod_review(uid)));
        let (status, out) = read_json(within(10, "h2 POST", response).await.unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(out["response"]["uid"], uid);
    }

    let tls12 = client_config(&server.ca, b"http/1.1", Some(&rustls::version::TLS12));
    let tls = server.connect_with(tls12).await;
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    let (status, _) = within(10, "TLS 1.2 POST", post_on(tls, pod_review("tls12"))).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn health_readiness_and_metrics_on_the_admin_port() {
    let server = Server::start();
    assert_eq!(server.admin_get("/healthz").await, (200, "ok\n".into()));
    assert_eq!(server.admin_get("/readyz").await, (200, "ok\n".into()));
    server.post(pod_review("m-1")).await;
    server.post(pod_review("m-2")).await;
    server.post(&b"{"[..]).await;
    let review = review("m-3", "kube-system", "CREATE", "pods", false);
    server.post(serde_json::to_vec(&review).unwrap()).await;
    // A pod the server cannot read: allowed with a warning, counted as an internal error.
    let mut broken =
        serde_json::to_value(self::review("m-4", "shop", "CREATE", "pods", false)).unwrap();
    broken["request"]["object"]["spec"]["containers"] = json!("api");
    let (status, out) = server.post(serde_json::to_vec(&broken).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(out["response"]["allowed"], true);
    assert!(out["response"]["warnings"][0]
        .as_str()
        .unwrap()
        .starts_with("jvm-guard: cannot read the pod"));

    let (status, text) = server.admin_get("/metrics").await;
    assert_eq!(status, 200);
    let value = |series: &str| sample(&text, series).unwrap_or_else(|| panic!("{series}"));
    for (outcome, count) in [
        ("mutated", 2.0),
        ("bad_request", 1.0),
        ("unchanged", 1.0),
        ("internal_error", 1.0),
        ("skipped", 0.0),
    ] {
        let series = format!("jvm_guard_admission_requests_total{{outcome=\"{outcome}\"}}");
        assert_eq!(value(&series), count, "{series}");
    }
    assert_eq!(value("jvm_guard_admission_duration_seconds_count"), 5.0);
    assert_eq!(value("jvm_guard_mutations_total{feature=\"memory\"}"), 2.0);
    assert_eq!(value("jvm_guard_internal_errors_total"), 1.0);
    assert_eq!(value("jvm_guard_namespace_cache_ready"), 1.0);
    assert_eq!(value("jvm_guard_tls_reload_errors_total"), 0.0);
    let cert_der = leaf_der(&server.dir.path().join("certs/tls.crt"));
    let (_, cert) = x509_parser::parse_x509_certificate(&cert_der).unwrap();
    assert_eq!(
        value("jvm_guard_tls_cert_expiry_timestamp_seconds"),
        cert.validity().not_after.timestamp() as f64
    );
    assert!(server.log_contains(r#""message":"admission reviewed""#));
    assert!(server.log_contains(r#""outcome":"mutated""#));
}

/// SIGTERM: /readyz fails at once, requests are served through --shutdown-delay, a request
/// in flight when the listener closes completes, and the process exits 0.
#[tokio::test]
async fn sigterm_fails_readiness_serves_through_the_delay_drains_and_exits_0() {
    let mut server = Server::start_with(Options {
        args: vec!["--shutdown-delay".into(), "2s".into()],
        ..Options::default()
    });
    assert_eq!(server.admin_get("/readyz").await.0, 200);

    // A request whose body is still on its way when the shutdown begins.
    let body = pod_review("in-flight");
    let head = format!(
        "POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut in_flight = server.connect().await;
    in_flight.write_all(head.as_bytes()).await.unwrap();
    in_flight.write_all(&body[..100]).await.unwrap();
    in_flight.flush().await.unwrap();

    let signalled = Instant::now();
    server.sigterm();
    let readiness = async {
        while server.admin_get("/readyz").await != (503, "shutting down\n".into()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    within(1, "/readyz failing", readiness).await;
    assert!(signalled.elapsed() < Duration::from_millis(500));

    // Still serving during the delay, on new connections too.
    let (status, out) = server.post(pod_review("during-delay")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(out["response"]["uid"], "during-delay");
    assert_eq!(server.admin_get("/healthz").await.0, 200);
    assert!(signalled.elapsed() < Duration::from_secs(2), "the delay");

    // After the delay no new connection is accepted, but the process waits for the request.
    let refused = async {
        while TcpStream::connect(server.addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    within(5, "the listener closing", refused).await;
    assert!(signalled.elapsed() >= Duration::from_secs(2));
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "exited mid-request"
    );

    in_flight.write_all(&body[100..]).await.unwrap();
    in_flight.flush().await.unwrap();
    let response = within(10, "in-flight response", read_until_close(&mut in_flight)).await;
    let (status, text) = parse_response(&response);
    assert_eq!(status, 200, "{text}");
    let out: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(out["response"]["uid"], "in-flight");
    assert!(out["response"]["patch"].is_string());

    let status = server.exit_status(10).await;
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(server.log_contains("drained; exiting"));
}

/// The kubelet's Secret volume: files are symlinks through `..data`, which a rename swaps to a
/// new timestamped directory.
struct SecretVolume {
    dir: PathBuf,
}

impl SecretVolume {
    fn new(dir: PathBuf, cert: &Path, key: &Path) -> SecretVolume {
        std::fs::create_dir_all(&dir).unwrap();
        let volume = SecretVolume { dir };
        volume.write_version("..2026_01_01_00_00_00.1", &read(cert), &read(key));
        symlink("..2026_01_01_00_00_00.1", volume.dir.join("..data")).unwrap();
        symlink("..data/tls.crt", volume.dir.join("tls.crt")).unwrap();
        symlink("..data/tls.key", volume.dir.join("tls.key")).unwrap();
        volume
    }

    fn write_version(&self, version: &str, cert: &[u8], key: &[u8]) {
        let dir = self.dir.join(version);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("tls.crt"), cert).unwrap();
        std::fs::write(dir.join("tls.key"), key).unwrap();
    }

    fn swap_to(&self, version: &str, cert: &[u8], key: &[u8]) {
        self.write_version(version, cert, key);
        symlink(version, self.dir.join("..data_tmp")).unwrap();
        std::fs::rename(self.dir.join("..data_tmp"), self.dir.join("..data")).unwrap();
    }
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[tokio::test]
async fn a_secret_swap_is_served_without_restart_and_a_corrupt_pair_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    certs(&first, &[]);
    let ca_cert = first.join("ca.crt").display().to_string();
    let ca_key = first.join("ca.key").display().to_string();
    certs(&second, &["--ca-cert", &ca_cert, "--ca-key", &ca_key]);
    let volume = SecretVolume::new(
        dir.path().join("volume"),
        &first.join("tls.crt"),
        &first.join("tls.key"),
    );
    let mut server = Server::start_with(Options {
        tls: Some((
            volume.dir.join("tls.crt"),
            volume.dir.join("tls.key"),
            first.join("ca.crt"),
        )),
        ..Options::default()
    });
    let pid = server.pid();
    let (first_leaf, second_leaf) = (
        leaf_der(&first.join("tls.crt")),
        leaf_der(&second.join("tls.crt")),
    );
    assert_ne!(first_leaf, second_leaf);
    assert_eq!(server.peer_certificate().await, first_leaf);

    volume.swap_to(
        "..2026_02_01_00_00_00.2",
        &read(&second.join("tls.crt")),
        &read(&second.join("tls.key")),
    );
    let reloaded = async {
        while server.peer_certificate().await != second_leaf {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    within(10, "the new certificate", reloaded).await;
    assert_eq!(server.pid(), pid);
    let (status, _) = server.post(pod_review("after-swap")).await;
    assert_eq!(status, StatusCode::OK);

    volume.swap_to(
        "..2026_03_01_00_00_00.3",
        b"not a certificate",
        b"not a key",
    );
    let failed = async {
        while server.metric("jvm_guard_tls_reload_errors_total").await < 1.0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    within(10, "the reload error", failed).await;
    assert_eq!(
        server.peer_certificate().await,
        second_leaf,
        "the previous pair is kept"
    );
    let (status, out) = server.post(pod_review("after-corrupt")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(out["response"]["uid"], "after-corrupt");
    assert!(server.log_contains("still serving the previous certificate"));
    assert_eq!(
        server.metric("jvm_guard_tls_reload_errors_total").await,
        1.0,
        "one bad pair is reported once"
    );
    assert!(server.child.try_wait().unwrap().is_none(), "still running");
}

#[tokio::test]
async fn every_flag_can_come_from_the_environment() {
    let server = Server::start_with(Options {
        env: true,
        ..Options::default()
    });
    let (status, out) = server.post(pod_review("from-env")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(out["response"]["patch"].is_string());
    // JVM_GUARD_WEBHOOK_NAMESPACE took effect.
    let own = review("own", "jvm-guard", "CREATE", "pods", false);
    let (_, out) = server.post(serde_json::to_vec(&own).unwrap()).await;
    assert!(out["response"].get("patch").is_none());
}

/// `serve --dev` with the example review, as the README shows (on free ports here).
#[tokio::test]
async fn dev_mode_mutates_the_example_review() {
    let server = Server::start_with(Options {
        dev: true,
        ..Options::default()
    });
    // The dev certificate is self-signed: trust it as its own CA, for both of its names.
    let cert = fetch_certificate(TcpStream::connect(server.addr).await.unwrap()).await;
    let pem = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        base64::engine::general_purpose::STANDARD.encode(&cert)
    );
    std::fs::write(&server.ca, pem).unwrap();
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    TlsConnector::from(server.client_config(b"http/1.1"))
        .connect(name, tcp)
        .await
        .expect("the dev certificate is valid for 127.0.0.1");

    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/admission-review.json");
    let body = std::fs::read(&example).unwrap();
    let (status, out) = server.post(body.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let example: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(out["response"]["uid"], example["request"]["uid"]);
    let pod = patched(&out["response"], &example["request"]["object"]).expect("a patch");
    let pod: Pod = serde_json::from_value(pod).unwrap();
    let init = pod.spec.unwrap().init_containers.unwrap();
    assert_eq!(
        init[0].image.as_deref(),
        Some(jvm_guard::cli::DEFAULT_TOOLS_IMAGE),
        "--dev injects the tools with the published image"
    );
}

/// The server's certificate, taken from a handshake that trusts anything.
async fn fetch_certificate(tcp: TcpStream) -> Vec<u8> {
    #[derive(Debug)]
    struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);
    impl rustls::client::danger::ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = within(
        10,
        "handshake",
        TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// Start-up errors: a one-line reason and a non-zero exit, without serving.
#[rstest]
#[case::no_cluster_to_watch(
    &["--tls-cert", "CERT", "--tls-key", "KEY"],
    1,
    "error: no Kubernetes client configuration (in-cluster service account or kubeconfig); outside a cluster use --namespaces-file or --dev"
)]
#[case::no_certificates(
    &["--namespaces-file", "NS"],
    2,
    "error: --tls-cert and --tls-key are required"
)]
#[case::unreadable_certificate(
    &["--dev", "--tls-cert", "/nonexistent/tls.crt", "--tls-key", "KEY"],
    1,
    "error: --tls-cert /nonexistent/tls.crt / --tls-key"
)]
#[case::certificate_not_pem(
    &["--dev", "--tls-cert", "NS", "--tls-key", "KEY"],
    1,
    "the certificate file has no PEM certificate"
)]
#[case::bad_namespaces_file(
    &["--dev", "--namespaces-file", "CERT"],
    1,
    "error: --namespaces-file"
)]
#[case::bad_defaults(&["--dev", "--defaults", "NS"], 1, "error: --defaults")]
fn refuses_to_start(#[case] args: &[&str], #[case] code: i32, #[case] message: &str) {
    let dir = tempfile::tempdir().unwrap();
    certs(dir.path(), &[]);
    let ns = dir.path().join("ns.yaml");
    std::fs::write(&ns, NAMESPACES).unwrap();
    let substitute = |a: &&str| match *a {
        "CERT" => dir.path().join("tls.crt").display().to_string(),
        "KEY" => dir.path().join("tls.key").display().to_string(),
        "NS" => ns.display().to_string(),
        other => other.to_string(),
    };
    let out = run_bounded(
        Command::new(BIN)
            .arg("serve")
            // No cluster to find: the in-cluster watch has no configuration.
            .env("KUBECONFIG", "/nonexistent/kubeconfig")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .args(["--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
            .args(args.iter().map(substitute)),
        30,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    assert!(stderr.contains(message), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// Slow and surplus clients (slowloris): timeouts and the connection limit.

/// Whether the peer closes `stream` within `seconds`, reading and discarding what it sends.
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(stream: &mut S, seconds: u64) -> bool {
    let drain = async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(seconds), drain)
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_slow_clients_do_not_stop_others_and_are_cut_off() {
    // Room for the thousand and the ordinary clients beside them.
    let server = Arc::new(Server::start_with(Options {
        args: vec![
            "--shutdown-delay".into(),
            "0".into(),
            "--max-connections".into(),
            "1100".into(),
        ],
        ..Options::default()
    }));
    let config = server.client_config(b"http/1.1");
    // 500 connections that finish TLS and then send a request head one byte a second, and
    // 500 that never start TLS: together they hold 1,000 connections open.
    let (stop_trickle, _) = tokio::sync::broadcast::channel::<()>(1);
    let (ready, mut readies) = tokio::sync::mpsc::channel::<()>(500);
    let mut trickling = Vec::new();
    for _ in 0..500 {
        let (server, config, ready) = (server.clone(), config.clone(), ready.clone());
        let mut stop = stop_trickle.subscribe();
        trickling.push(tokio::spawn(async move {
            let mut tls = server.connect_with(config).await;
            tls.write_all(b"POST /mutate HTTP/1.1\r\nHost: localhost\r\n")
                .await
                .unwrap();
            ready.send(()).await.unwrap();
            // One header byte a second, for ever; the server must end it.
            let started = Instant::now();
            let header = b"X-Slow: ".iter().chain(std::iter::repeat(&b'a'));
            for byte in header {
                tokio::select! {
                    _ = stop.recv() => return None,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                if tls.write_all(&[*byte]).await.is_err() || tls.flush().await.is_err() {
                    break;
                }
                if started.elapsed() > Duration::from_secs(60) {
                    return None;
                }
            }
            // A write failed: the server closed the connection.
            Some(started.elapsed())
        }));
    }
    within(30, "500 slow clients connected", async {
        for _ in 0..500 {
            readies.recv().await.unwrap();
        }
    })
    .await;
    let mut silent = Vec::new();
    for _ in 0..500 {
        silent.push(TcpStream::connect(server.addr).await.unwrap());
    }

    // Meanwhile ordinary clients are served at once, well before any timeout frees a slot
    // (the slow ones are cut after 10 s): the slow ones do not make them wait.
    within(5, "20 requests beside 1,000 slow connections", async {
        for i in 0..20 {
            let uid = format!("beside-the-slow-{i}");
            let (status, out) = server.post(pod_review(&uid)).await;
            assert_eq!(status, StatusCode::OK, "{out}");
            assert_eq!(out["response"]["uid"], uid.as_str());
        }
        let (status, _) = server.admin_get("/healthz").await;
        assert_eq!(status, 200);
    })
    .await;
    let cut_early = trickling.iter().filter(|t| t.is_finished()).count();
    assert_eq!(
        cut_early, 0,
        "slow clients were cut before the head timeout"
    );

    // The silent ones are closed after the TLS handshake timeout, the slow ones after the
    // request-head timeout (both 10 s), not kept for ever.
    let mut still_open = 0;
    for mut tcp in silent {
        if !closed_within(&mut tcp, 30).await {
            still_open += 1;
        }
    }
    assert_eq!(still_open, 0, "silent connections still open after 30 s");
    for task in trickling {
        match within(60, "a slow client", task).await.unwrap() {
            Some(elapsed) if elapsed < Duration::from_secs(45) => {}
            other => panic!("a slow client was not cut off: {other:?}"),
        }
    }
    drop(stop_trickle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_max_connections_clients_wait_and_the_admin_port_still_answers() {
    let server = Server::start_with(Options {
        args: vec![
            "--shutdown-delay".into(),
            "0".into(),
            "--max-connections".into(),
            "8".into(),
        ],
        ..Options::default()
    });
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(server.connect().await);
    }
    // The ninth is queued by the kernel, not served: no handshake while eight are open.
    let config = server.client_config(b"http/1.1");
    let ninth = {
        let tcp = TcpStream::connect(server.addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        tokio::spawn(TlsConnector::from(config).connect(name, tcp))
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !ninth.is_finished(),
        "a ninth connection was served at --max-connections 8"
    );
    // Probes do not queue behind webhook clients.
    let (status, _) = server.admin_get("/healthz").await;
    assert_eq!(status, 200);

    drop(held.pop());
    let tls = within(10, "the ninth handshake", ninth)
        .await
        .unwrap()
        .expect("TLS handshake");
    let (status, out) = within(10, "POST", post_on(tls, pod_review("ninth"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(out["response"]["uid"], "ninth");
}

/// An HTTP/2 client connection over TLS, answering pings and sending its own every second.
async fn h2_handshake<B>(
    tls: TlsStream<TcpStream>,
) -> (
    hyper::client::conn::http2::SendRequest<B>,
    tokio::task::JoinHandle<()>,
)
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(b"h2".as_slice()));
    let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(hyper_util::rt::TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(1))
        .keep_alive_while_idle(true)
        .handshake(TokioIo::new(tls))
        .await
        .unwrap();
    (
        sender,
        tokio::spawn(async move {
            let _ = conn.await;
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_http2_clients_are_closed_and_give_their_slots_back() {
    let server = Server::start_with(Options {
        args: vec![
            "--shutdown-delay".into(),
            "0".into(),
            "--max-connections".into(),
            "64".into(),
        ],
        ..Options::default()
    });
    let config = server.client_config(b"h2");
    let started = Instant::now();
    // 32 that finish the HTTP/2 handshake and then open no stream, pinging every second (one
    // sends a request first), and 32 that choose h2 in TLS and never send the preface: every
    // slot is taken.
    let mut pinging = Vec::new();
    for i in 0..32 {
        let (mut sender, conn) = h2_handshake(server.connect_with(config.clone()).await).await;
        if i == 0 {
            let response = sender.send_request(mutate_request(pod_review("h2-then-idle")));
            let (status, _) = read_json(within(10, "h2 POST", response).await.unwrap()).await;
            assert_eq!(status, StatusCode::OK);
        }
        pinging.push((sender, conn));
    }
    let mut silent = Vec::new();
    for _ in 0..32 {
        silent.push(server.connect_with(config.clone()).await);
    }
    // They are closed (GOAWAY) once idle for 10 s, not kept for ever.
    for (_sender, conn) in pinging {
        within(40, "an idle HTTP/2 connection closed", conn)
            .await
            .unwrap();
    }
    for mut tls in silent {
        assert!(
            closed_within(&mut tls, 30).await,
            "an HTTP/2 connection without a preface still open"
        );
    }
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "closed before the idle timeout: {:?}",
        started.elapsed()
    );
    // The slots are back.
    let (status, out) = server.post(pod_review("after-the-idle-h2")).await;
    assert_eq!(status, StatusCode::OK, "{out}");
}

/// An HTTP/2 stream that sends its head and part of its body, then nothing more.
fn stalled_request(sent: usize, declared: usize, pad: usize) -> Request<StalledBody> {
    let chunks = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(
        hyper::body::Frame::data(Bytes::from(vec![b' '; sent])),
    )])
    .chain(futures_util::stream::pending());
    Request::post("/mutate")
        .header(HOST, "localhost")
        .header(CONTENT_TYPE, "application/json")
        .header(hyper::header::CONTENT_LENGTH, declared)
        .header("x-pad", "p".repeat(pad))
        .body(http_body_util::StreamBody::new(
            Box::pin(chunks) as StalledStream
        ))
        .unwrap()
}

type StalledStream = std::pin::Pin<
    Box<
        dyn futures_util::Stream<Item = Result<hyper::body::Frame<Bytes>, std::convert::Infallible>>
            + Send,
    >,
>;
type StalledBody = http_body_util::StreamBody<StalledStream>;

/// Starts an HTTP/1.1 request of `declared` body bytes, sends `sent` of them and stops.
async fn stall_http1(server: &Server, sent: usize, declared: usize) -> TlsStream<TcpStream> {
    let mut tls = server.connect().await;
    let head = format!(
        "POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {declared}\r\n\r\n"
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(&vec![b' '; sent]).await.unwrap();
    tls.flush().await.unwrap();
    tls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_in_flight_are_bounded_and_a_request_beyond_waits_then_gets_503() {
    use jvm_guard::webhook::router::{BODY_BUDGET, BUDGET_WAIT, MAX_BODY_BYTES, REQUEST_CHARGE};
    let server = Server::start();
    // Clients hold all but about 1 KiB of the budget with bodies they never finish: each is
    // charged its head and what it sent.
    let stallers = BODY_BUDGET.div_ceil(MAX_BODY_BYTES - 64 * 1024);
    let sent = BODY_BUDGET / stallers - REQUEST_CHARGE - 512;
    let mut stalled = Vec::new();
    for _ in 0..stallers {
        stalled.push(stall_http1(&server, sent, MAX_BODY_BYTES).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The next waits for its share, then gets a 503 rather than the server growing.
    let started = Instant::now();
    let (status, out) = server.post(pod_review("beyond-the-budget")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{out}");
    assert!(
        started.elapsed() >= BUDGET_WAIT - Duration::from_millis(100),
        "answered without waiting: {:?}",
        started.elapsed()
    );
    // A request that comes while one goes waits and is served.
    let freed = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        drop(stalled.pop());
    };
    let ((status, out), ()) = tokio::join!(server.post(pod_review("budget-freed")), freed);
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["response"]["uid"], "budget-freed");
}

/// Resident and peak resident memory of a process, in bytes (`VmRSS`, `VmHWM`).
fn memory_of(pid: libc::pid_t) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The chart's memory limit (charts/jvm-guard/values.yaml).
const CHART_MEMORY_LIMIT: u64 = 128 * 1024 * 1024;
/// `serve` at rest, release build, after one request (README, "Performance and robustness").
const RELEASE_IDLE_RSS: u64 = 16 * 1024 * 1024;

/// Every kind of hostile client at once, 500 connections (inside the default 512): HTTP/2 ones opening every stream
/// they may with 8 KiB heads and stalled 4 MiB bodies, HTTP/1.1 ones with stalled bodies
/// (some nearly 4 MiB), silent ones. The server's peak RSS stays inside the chart's limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_inside_the_chart_limit_under_a_mix_of_hostile_clients() {
    let (idle, hwm) = hostile_mix(200, 150, 150).await;
    // What the clients add, beside the release build's idle RSS (14 MiB; a debug build's is
    // twice that, which the chart never runs).
    assert!(
        hwm - idle < CHART_MEMORY_LIMIT - RELEASE_IDLE_RSS,
        "the clients added {} MiB to {} MiB idle",
        (hwm - idle) >> 20,
        idle >> 20
    );
}

/// The worst case for per-connection memory: 500 HTTP/2 connections, each with every
/// stream open and its window full. For the README's figures (`--ignored --nocapture`,
/// `JVM_GUARD_SERVER_BIN=target/release/jvm-guard` for the release build).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: minutes on 2 cores"]
async fn memory_with_every_connection_on_http2_with_full_windows() {
    hostile_mix(500, 0, 0).await;
}

/// Opens the mix, holds it 5 s, samples the server's RSS; returns its RSS before and its peak
/// (VmHWM).
async fn hostile_mix(h2_connections: usize, h1_connections: usize, silent: usize) -> (u64, u64) {
    use jvm_guard::webhook::listener::{H2_MAX_CONCURRENT_STREAMS, H2_WINDOW};
    use jvm_guard::webhook::router::MAX_BODY_BYTES;
    let server = Arc::new(Server::start());
    let (status, _) = server.post(pod_review("warm-up")).await;
    assert_eq!(status, StatusCode::OK);
    let (idle_rss, _) = memory_of(server.pid());

    let h2 = server.client_config(b"h2");
    let mut held = Vec::new();
    let mut streams = Vec::new();
    for _ in 0..h2_connections {
        let (sender, conn) = h2_handshake(server.connect_with(h2.clone()).await).await;
        for _ in 0..H2_MAX_CONCURRENT_STREAMS {
            let mut sender = sender.clone();
            let request = stalled_request(H2_WINDOW as usize, MAX_BODY_BYTES, 7 * 1024);
            streams.push(tokio::spawn(async move {
                let _ = sender.send_request(request).await;
            }));
        }
        held.push(conn);
    }
    // Each on its own task: the server may stop reading one (no budget left) and answer 503.
    for i in 0..h1_connections {
        let sent = if i < 8 { MAX_BODY_BYTES - 1 } else { 64 * 1024 };
        let server = server.clone();
        streams.push(tokio::spawn(async move {
            let mut tls = server.connect().await;
            let head = format!(
                "POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Length: {MAX_BODY_BYTES}\r\n\r\n"
            );
            if tls.write_all(head.as_bytes()).await.is_ok() {
                let _ = tls.write_all(&vec![b' '; sent]).await;
                let _ = tls.flush().await;
            }
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(tls);
        }));
    }
    let mut quiet = Vec::new();
    for _ in 0..silent {
        quiet.push(server.connect().await);
    }
    let mut peak_rss = 0;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        peak_rss = peak_rss.max(memory_of(server.pid()).0);
    }
    let (_, hwm) = memory_of(server.pid());
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    eprintln!(
        "memory: idle {:.1} MiB; {h2_connections} HTTP/2 connections ({} streams), \
         {h1_connections} HTTP/1.1 with stalled bodies, {silent} silent: {:.1} MiB sampled, \
         {:.1} MiB peak (VmHWM); limit {:.0} MiB",
        mib(idle_rss),
        h2_connections * H2_MAX_CONCURRENT_STREAMS as usize,
        mib(peak_rss),
        mib(hwm),
        mib(CHART_MEMORY_LIMIT)
    );
    // And it still answers.
    let (status, out) = server.post(pod_review("beside-the-hostile")).await;
    assert!(
        status == StatusCode::OK || status == StatusCode::SERVICE_UNAVAILABLE,
        "{status} {out}"
    );
    drop((held, quiet));
    for task in streams {
        task.abort();
    }
    (idle_rss, hwm)
}

/// A 4 MiB body of two million JSON values is 300 MiB as a JSON tree, and 300,000 volumes
/// `{"name":"v"}` a gigabyte as a typed Pod: refused before parsing, the server staying small.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_would_parse_into_hundreds_of_mib_is_refused_before_parsing() {
    let server = Server::start();
    let zeros = vec!["0"; 2 * 1024 * 1024 - 64].join(",");
    let tree = format!(
        r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":5,"x":[{zeros}]}}}}"#
    );
    let volumes = vec![r#"{"name":"v"}"#; 300_000].join(",");
    let mut typed: Value = serde_json::from_slice(&pod_review("many-volumes")).unwrap();
    typed["request"]["object"]["spec"]["volumes"] = Value::Null;
    let typed = serde_json::to_string(&typed)
        .unwrap()
        .replace(r#""volumes":null"#, &format!(r#""volumes":[{volumes}]"#));
    for (what, body) in [("tree", tree), ("typed", typed)] {
        assert!(body.len() <= 4 * 1024 * 1024, "{what}: {}", body.len());
        let (status, out) = server.post(body).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{what}: {out}");
    }
    let (_, peak) = memory_of(server.pid());
    assert!(peak < 96 * 1024 * 1024, "peak RSS {} MiB", peak >> 20);
}
