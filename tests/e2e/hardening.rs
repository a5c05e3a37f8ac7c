//! Issue 26, items 1-4, through the real apiserver: what a hostile pod author, a forging
//! client and a large real pod do to the webhook that the apiserver calls.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use http_body_util::BodyExt as _;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use kube::api::{Api, PostParams};
use kube::Client;
use serde_json::{json, Value};

use jvm_guard::config::MAX_WARNINGS;
use jvm_guard::registry::{MAX_IMAGES_PER_REVIEW, MAX_LOOKUPS_IN_FLIGHT};
use jvm_guard::webhook::cost::parse_cost;
use jvm_guard::webhook::router::MAX_PARSE_COST;

use crate::cluster::{create_namespace, wait_mutated, Cluster, Serve, OWN_WEBHOOK_NAMESPACES};
use crate::control_plane::Pki;
use crate::process::within;
use crate::{setup, INJECT, STATUS};

/// A server-side dry-run create of `pod` in `ns` as kubectl sends it: the status, the pod
/// the apiserver would store (or its error), and the warnings of the answer, as kubectl
/// prints them.
async fn dry_run_create(client: &Client, ns: &str, pod: &Value) -> (u16, Value, Vec<String>) {
    let request = axum::http::Request::post(format!("/api/v1/namespaces/{ns}/pods?dryRun=All"))
        .header("content-type", "application/json")
        .body(kube::client::Body::from(serde_json::to_vec(pod).unwrap()))
        .unwrap();
    let response = within(60, "dry-run create", client.send(request))
        .await
        .unwrap_or_else(|e| panic!("dry-run create in {ns}: {e}"));
    let status = response.status().as_u16();
    let warnings = response
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    let body = within(60, "answer", response.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    (status, serde_json::from_slice(&body).unwrap(), warnings)
}

fn status_of(pod: &Value) -> Option<Value> {
    let text = pod["metadata"]["annotations"][STATUS].as_str()?;
    Some(serde_json::from_str(text).unwrap())
}

/// A JVM pod of `containers` containers with `env` env vars each.
fn pod_with_env(name: &str, containers: usize, env: usize) -> Value {
    let env: Vec<Value> = (0..env)
        .map(|i| json!({"name": format!("SETTING_{i:05}"), "value": format!("value-{i:05}")}))
        .collect();
    let containers: Vec<Value> = (0..containers)
        .map(|c| {
            json!({
                "name": format!("app-{c}"),
                "image": "eclipse-temurin:21-jre",
                "command": ["java", "-jar", "/app/app.jar"],
                "resources": {"limits": {"memory": "1Gi"}},
                "env": env,
            })
        })
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": containers},
    })
}

/// Item 1: a namespace with a hundred unknown keys, and a pod whose container list is 240 KB
/// (the apiserver's own limit for all annotations is 256 KiB), are answered quickly, with at
/// most MAX_WARNINGS warnings and one that counts the rest, and the pods are still mutated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_annotations_get_capped_warnings_and_the_pod_is_mutated() {
    let (_cluster, client, _shared) = setup().await;
    let ns = "e2e-hardening-warnings";
    let unknown: Vec<(String, String)> = (0..100)
        .map(|i| (format!("jvm-guard.io/no-such-key-{i:03}"), "1".to_string()))
        .collect();
    let annotations: Vec<(&str, &str)> = unknown
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    create_namespace(&client, ns, &[(INJECT, "enabled")], &annotations).await;
    let pod = crate::cluster::jvm_pod("plain");

    // The reflector sees the namespace within moments: until then the pod has its own
    // warning only.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let (status, stored, warnings) = loop {
        let started = std::time::Instant::now();
        let answer = dry_run_create(&client, ns, &pod).await;
        println!(
            "dry-run create in a namespace of 100 unknown keys: {:?}, {} warnings",
            started.elapsed(),
            answer.2.len()
        );
        if answer.2.len() > 2 || std::time::Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(status, 201, "{stored:#}");
    assert!(status_of(&stored).is_some(), "not mutated: {stored:#}");
    assert!(
        warnings.len() <= MAX_WARNINGS + 1 && warnings.len() > 2,
        "{} warnings: {warnings:#?}",
        warnings.len()
    );
    assert!(
        warnings.iter().all(|w| w.contains("jvm-guard: ")),
        "{warnings:#?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("more warnings, left out")),
        "the rest are counted: {warnings:#?}"
    );
    let bytes: usize = warnings.iter().map(String::len).sum();
    assert!(bytes < 32 * 1024, "{bytes} bytes of warnings");

    let ns = "e2e-hardening-long-list";
    create_namespace(&client, ns, &[(INJECT, "enabled")], &[]).await;
    let names: Vec<String> = (0..30_000).map(|i| format!("c{i:05}")).collect();
    let mut pod = crate::cluster::jvm_pod("hostile");
    pod["metadata"]["annotations"] = json!({"jvm-guard.io/containers": names.join(",")});
    let started = std::time::Instant::now();
    let (status, stored, warnings) = dry_run_create(&client, ns, &pod).await;
    println!(
        "dry-run create of a pod listing 30,000 containers: {:?}",
        started.elapsed()
    );
    assert_eq!(status, 201, "{stored:#}");
    assert!(status_of(&stored).is_some(), "not mutated: {stored:#}");
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].contains("more than the 4096 a key takes"),
        "the list is refused with a short warning: {warnings:#?}"
    );
    assert!(warnings[0].len() < 1024, "{}", warnings[0]);
}

/// Item 2: every real review carries managedFields; a pod of 3 × 1,000 env vars is mutated,
/// and one past the parse bound is admitted unmutated with a log line naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_pods_are_mutated_and_one_past_the_bound_is_named() {
    let (cluster, client, _shared) = setup().await;
    let ns = "e2e-hardening-large";
    create_namespace(&client, ns, &[(INJECT, "enabled")], &[]).await;

    let large = pod_with_env("large", 3, 1000);
    let (status, stored, _) = dry_run_create(&client, ns, &large).await;
    assert_eq!(status, 201, "{stored:#}");
    assert!(
        stored["metadata"]["managedFields"].is_array(),
        "the review carried managedFields"
    );
    assert!(
        status_of(&stored).is_some(),
        "3 × 1,000 env vars: not mutated"
    );

    // Past the bound on its own JSON (the managedFields the apiserver adds are cut first).
    let mut env = 1000;
    let past = loop {
        let pod = pod_with_env("past-the-bound", 3, env);
        if parse_cost(&serde_json::to_vec(&pod).unwrap()) > MAX_PARSE_COST {
            break pod;
        }
        env += 1000;
    };
    let (status, stored, _) = dry_run_create(&client, ns, &past).await;
    assert_eq!(status, 201, "admitted (failurePolicy Ignore)");
    assert!(
        status_of(&stored).is_none(),
        "3 × {env} env vars: mutated, the bound is not where the test thinks"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let logged = cluster.serve.logs.lock().unwrap().iter().any(|line| {
            line.contains("review refused") && line.contains("past-the-bound") && line.contains(ns)
        });
        if logged {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no log line names the refused pod"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    println!("3 × 1,000 env vars mutated; 3 × {env} env vars refused and named");
}

/// Item 3: with `--client-ca`, only a client with a certificate of that CA gets an answer.
/// A direct connection: the shared apiserver presents no client certificate (that needs an
/// admission configuration file at its start), so the apiserver side is not tried here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_client_ca_only_its_clients_are_answered() {
    let (cluster, _client, _shared) = setup().await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (trusted, stranger) = (Pki::new("apiserver-clients"), Pki::new("stranger"));
    let ca = cluster.dir.join("hardening-client-ca.crt");
    std::fs::write(&ca, &trusted.ca).unwrap();
    let serve = Serve::start_with(
        &cluster.kubeconfig,
        &cluster.webhook_certs,
        "client-ca",
        &["--offline", "--client-ca", ca.to_str().unwrap()],
    )
    .unwrap();
    let webhook_ca = reqwest::Certificate::from_pem(cluster.webhook_ca().as_bytes()).unwrap();
    let client = |identity: Option<(String, String)>| {
        let builder = reqwest::Client::builder()
            .tls_certs_only([webhook_ca.clone()])
            .timeout(std::time::Duration::from_secs(10));
        let builder = match identity {
            Some((cert, key)) => builder
                .identity(reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap()),
            None => builder,
        };
        builder.build().unwrap()
    };
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "b3a5f0d2-0000-4000-8000-00000000c1ca",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "e2e-hardening-client-ca",
            "operation": "CREATE",
            "userInfo": {"username": "admin"},
            "object": crate::cluster::jvm_pod("forged"),
        },
    });
    let post = |client: reqwest::Client| {
        let (url, review) = (serve.url(), review.clone());
        async move {
            let response = client.post(url).json(&review).send().await?;
            let status = response.status().as_u16();
            let body: Value = response.json().await?;
            Ok::<_, reqwest::Error>((status, body))
        }
    };
    let anonymous = within(30, "anonymous", post(client(None))).await;
    assert!(
        anonymous.is_err(),
        "answered without a certificate: {anonymous:?}"
    );
    let forged = within(30, "stranger", post(client(Some(stranger.admin())))).await;
    assert!(
        forged.is_err(),
        "answered a certificate of another CA: {forged:?}"
    );
    let (status, body) = within(30, "apiserver", post(client(Some(trusted.admin()))))
        .await
        .expect("the CA's client is answered");
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(body["response"]["uid"], review["request"]["uid"]);
    assert_eq!(body["response"]["allowed"], true);
}

/// A registry host that accepts connections and never answers, counting them.
struct Silent {
    addr: SocketAddr,
    open: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
}

impl Silent {
    async fn start() -> Silent {
        use tokio::io::AsyncReadExt as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent = Silent {
            addr: listener.local_addr().unwrap(),
            open: Arc::default(),
            most: Arc::default(),
        };
        let (open, most) = (silent.open.clone(), silent.most.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                most.fetch_max(open.fetch_add(1, SeqCst) + 1, SeqCst);
                let open = open.clone();
                tokio::spawn(async move {
                    let mut buffer = [0u8; 1024];
                    while let Ok(1..) = stream.read(&mut buffer).await {}
                    open.fetch_sub(1, SeqCst);
                });
            }
        });
        silent
    }
}

/// `VmRSS` and `VmHWM` of a process, in KiB.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A server of our own that may reach `registry`, registered for `ns` alone.
async fn serve_for(cluster: &Cluster, client: &Client, ns: &str, registry: SocketAddr) -> Serve {
    let serve = Serve::start(
        &cluster.kubeconfig,
        &cluster.webhook_certs,
        ns,
        Some(&registry.to_string()),
    )
    .unwrap();
    let config = cluster.chart_webhook(
        &format!("jvm-guard-{ns}"),
        &serve.url(),
        json!({"webhook": {"namespaceSelector": {"matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "In", "values": [ns]},
        ]}}}),
    );
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    within(
        30,
        "register",
        configs.create(&PostParams::default(), &config),
    )
    .await
    .unwrap();
    wait_mutated(client, ns, 30).await;
    serve
}

/// Item 4: pods naming many distinct images on a silent registry host. Every create is
/// answered by the webhook (mutated, each container with the reason its ENTRYPOINT is
/// unknown), at most MAX_LOOKUPS_IN_FLIGHT connections reach the host, and serve's memory
/// stays small.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_images_on_a_silent_registry_are_bounded() {
    let (cluster, client, _shared) = setup().await;
    let ns = "e2e-hardening-lookups";
    assert!(OWN_WEBHOOK_NAMESPACES.contains(&ns));
    let silent = Silent::start().await;
    create_namespace(
        &client,
        ns,
        &[(INJECT, "enabled")],
        &[("jvm-guard.io/ulimits", "nofile=65536")],
    )
    .await;
    let serve = serve_for(cluster, &client, ns, silent.addr).await;
    let pid = serve.pid().unwrap();
    let before = memory(pid);

    let (pods, per_pod) = (32, MAX_IMAGES_PER_REVIEW + 4);
    let pod = |p: usize| {
        let containers: Vec<Value> = (0..per_pod)
            .map(|c| {
                json!({
                    "name": format!("app-{c}"),
                    "image": format!("{}/forged/image-{p}-{c}:1", silent.addr),
                    "resources": {"limits": {"memory": "256Mi"}},
                })
            })
            .collect();
        let every: Vec<String> = (0..per_pod).map(|c| format!("app-{c}")).collect();
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": format!("many-images-{p}"),
                "annotations": {"jvm-guard.io/containers": every.join(",")},
            },
            "spec": {"containers": containers},
        })
    };
    let started = std::time::Instant::now();
    let answers = futures_util::future::join_all((0..pods).map(|p| {
        let (client, pod) = (client.clone(), pod(p));
        async move { dry_run_create(&client, ns, &pod).await }
    }))
    .await;
    let elapsed = started.elapsed();
    let after = memory(pid);

    let mut reasons = std::collections::BTreeMap::<String, usize>::new();
    for (status, stored, _) in &answers {
        assert_eq!(*status, 201, "{stored:#}");
        let status = status_of(stored).unwrap_or_else(|| panic!("not mutated: {stored:#}"));
        for (name, container) in status["containers"].as_object().unwrap() {
            let why = container["skipped"]["ulimits"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: {container}"));
            let why = why
                .split_once('(')
                .and_then(|(_, rest)| rest.rsplit_once(')'))
                .map_or(why, |(inside, _)| inside);
            *reasons.entry(why.to_string()).or_default() += 1;
        }
    }
    println!(
        "{pods} pods × {per_pod} images on a silent host: answered in {elapsed:?}; at most {} \
         connections to it at once; serve VmRSS {} KiB before, {} KiB after (VmHWM {} KiB); \
         reasons {reasons:#?}",
        silent.most.load(SeqCst),
        before.0,
        after.0,
        after.1,
    );
    assert_eq!(reasons.values().sum::<usize>(), pods * per_pod);
    let busy = format!("too many registry lookups in flight ({MAX_LOOKUPS_IN_FLIGHT})");
    let not_looked_up = format!(
        "not looked up: the pod names more than {MAX_IMAGES_PER_REVIEW} images without a command"
    );
    assert_eq!(
        reasons.get(&not_looked_up),
        Some(&(pods * 4)),
        "{reasons:#?}"
    );
    assert!(reasons.contains_key(&busy), "{reasons:#?}");
    let most = silent.most.load(SeqCst);
    assert!(
        (1..=MAX_LOOKUPS_IN_FLIGHT).contains(&most),
        "{most} connections at once"
    );
    assert!(after.1 < 150 * 1024, "serve's peak RSS: {} KiB", after.1);
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let _ = configs
        .delete(&format!("jvm-guard-{ns}"), &Default::default())
        .await;
}
