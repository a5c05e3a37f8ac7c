//! End to end: a real kube-apiserver (and etcd) calls the real `jvm-guard serve`, registered
//! with the chart's MutatingWebhookConfiguration. The apiserver decides whether the webhook is
//! called, applies our JSONPatch with its own library and validates the mutated pod, so these
//! tests prove what the others can only assume. Binaries: scripts/install-e2e-tools.sh.

mod cluster;
#[path = "../support/control_plane.rs"]
mod control_plane;
mod dry_run;
#[path = "../support/process.rs"]
mod process;
// The e2e suite starts its registry with `start_in` (in the cluster's directory, a child that
// dies with the cluster): `Registry::start` is tests/registry.rs's alone.
mod goldens;
mod hardening;
mod property_pods;
#[allow(dead_code)]
#[path = "../support/registry.rs"]
mod registry_support;
mod sidecar;
mod watch;
// kubernetes-validate is tests/chart.rs's.
#[allow(dead_code)]
#[path = "../support/versions.rs"]
mod versions;

use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::{json, Value};
use tokio::sync::{RwLock, RwLockReadGuard};

use cluster::{
    cluster, create_default_service_account, create_namespace, helm_env, is_mutated, jvm_pod,
    wait_mutated, Cluster, Serve, TOOLS_IMAGE,
};
use control_plane::helm_bin;
use process::{run_bounded, within};

const INJECT: &str = "jvm-guard.io/inject";
const STATUS: &str = "jvm-guard.io/status";

/// The load test runs alone (write); every other test shares the cluster (read).
static LOAD: RwLock<()> = RwLock::const_new(());

async fn setup() -> (&'static Cluster, Client, RwLockReadGuard<'static, ()>) {
    let shared = LOAD.read().await;
    let cluster = cluster();
    (cluster, cluster.client().await, shared)
}

fn pods(client: &Client, ns: &str) -> Api<Pod> {
    Api::namespaced(client.clone(), ns)
}

async fn create(client: &Client, ns: &str, pod: Value) -> Pod {
    let pod: Pod = serde_json::from_value(pod).unwrap();
    within(
        30,
        "create pod",
        pods(client, ns).create(&PostParams::default(), &pod),
    )
    .await
    .unwrap_or_else(|e| panic!("creating a pod in {ns}: {e}"))
}

/// The pod as stored, as JSON.
async fn stored(client: &Client, ns: &str, name: &str) -> Value {
    let pod = within(30, "get pod", pods(client, ns).get(name))
        .await
        .unwrap_or_else(|e| panic!("pod {ns}/{name}: {e}"));
    serde_json::to_value(pod).unwrap()
}

fn name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap()
}

fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name} in {pod:#}"))
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .map(|items| items.iter().filter_map(|i| i["name"].as_str()).collect())
        .unwrap_or_default()
}

fn env_value<'a>(container: &'a Value, name: &str) -> &'a str {
    container["env"]
        .as_array()
        .and_then(|env| env.iter().find(|e| e["name"] == name))
        .and_then(|e| e["value"].as_str())
        .unwrap_or_else(|| panic!("no {name} in {container:#}"))
}

/// No trace of jvm-guard: the pod is as submitted (plus the apiserver's own defaults).
fn assert_unmodified(pod: &Value) {
    assert!(pod["metadata"]["annotations"][STATUS].is_null(), "{pod:#}");
    let app = container(pod, "app");
    assert_eq!(app["command"], json!(["java", "-jar", "/app/app.jar"]));
    assert!(app["env"].is_null(), "{app:#}");
    assert!(app["startupProbe"].is_null(), "{app:#}");
    assert!(pod["spec"]["initContainers"].is_null(), "{pod:#}");
    assert!(
        !names(&pod["spec"]["volumes"])
            .iter()
            .any(|v| v.starts_with("jvm-guard")),
        "{pod:#}"
    );
}

/// The `admission reviewed` outcomes jvm-guard logged for `ns`, once `count` have arrived
/// (the log is read by another thread), or what there is after 5 s.
async fn outcomes(serve: &Serve, ns: &str, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let seen = serve.outcomes(ns);
        if seen.len() >= count || Instant::now() > deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Acceptance 1: Every feature at once, as the apiserver applied, validated and stored it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opted_in_pod_is_stored_with_every_feature() {
    let (cluster, client, _shared) = setup().await;
    let ns = "e2e-features";
    create_namespace(
        &client,
        ns,
        &[(INJECT, "enabled")],
        &[
            ("jvm-guard.io/probes", "spring-boot"),
            ("jvm-guard.io/ulimits", "nofile=65536,nproc=4096"),
        ],
    )
    .await;
    let mut pod = jvm_pod("shop");
    pod["spec"]["containers"][0]["ports"] = json!([{"name": "http", "containerPort": 8080}]);
    // Spring Boot evidence, without which the preset would give tcpSocket probes.
    pod["spec"]["containers"][0]["env"] =
        json!([{"name": "SPRING_PROFILES_ACTIVE", "value": "prod"}]);
    create(&client, ns, pod).await;
    let pod = stored(&client, ns, "shop").await;

    let app = container(&pod, "app");
    // The command is known: the agent merges our flags at start (SPEC §4.4).
    assert_eq!(env_value(app, "JVM_GUARD_OPTIONS_VAR"), "JAVA_TOOL_OPTIONS");
    let options = env_value(app, "JVM_GUARD_JAVA_OPTIONS");
    for flag in [
        // 1Gi limit, 384Mi reserve: floor(100 × 640 / 1024) = 62.
        "-XX:MaxRAMPercentage=62.0",
        "-XX:MinRAMPercentage=62.0",
        "-XX:+HeapDumpOnOutOfMemoryError",
        "-XX:HeapDumpPath=/dumps",
        "-XX:ErrorFile=/dumps/hs_err_pid%p.log",
        concat!(
            "-XX:OnOutOfMemoryError=\"/jvm-guard/bin/jvm-guard rotate-dumps",
            " --dir /dumps --keep 3 --container app\""
        ),
        "-XX:+ExitOnOutOfMemoryError",
    ] {
        assert!(options.contains(flag), "{flag} not in {options}");
    }
    // The pod's name, first in env, names its dump directory.
    assert_eq!(
        app["env"][0],
        json!({
            "name": "JVM_GUARD_POD_NAME",
            "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
        })
    );
    let mounts = app["volumeMounts"].as_array().unwrap();
    let dumps = json!({
        "name": "jvm-guard-dumps",
        "mountPath": "/dumps",
        "subPathExpr": "$(JVM_GUARD_POD_NAME)/app",
    });
    assert!(mounts.contains(&dumps), "{mounts:#?}");
    assert!(
        mounts.contains(
            &json!({"name": "jvm-guard-tools", "mountPath": "/jvm-guard/bin", "readOnly": true})
        ),
        "{mounts:#?}"
    );
    // Our volumes next to the ServiceAccount token volume the ServiceAccount plugin added first.
    let volumes = names(&pod["spec"]["volumes"]);
    assert!(
        volumes.iter().any(|v| v.starts_with("kube-api-access-")),
        "{volumes:?}"
    );
    assert!(
        volumes.contains(&"jvm-guard-dumps") && volumes.contains(&"jvm-guard-tools"),
        "{volumes:?}"
    );

    // Probes of the spring-boot preset on the port named http.
    for (probe, path) in [
        ("startupProbe", "/actuator/health/liveness"),
        ("readinessProbe", "/actuator/health/readiness"),
        ("livenessProbe", "/actuator/health/liveness"),
    ] {
        assert_eq!(
            app[probe]["httpGet"]["path"], path,
            "{probe}: {:#}",
            app[probe]
        );
        assert_eq!(
            app[probe]["httpGet"]["port"], 8080,
            "{probe}: the number of the port named http"
        );
    }
    assert_eq!(app["startupProbe"]["failureThreshold"], 36);

    // The tools init container and the rlimit wrapper around the command.
    let init = &pod["spec"]["initContainers"];
    assert_eq!(names(init), ["jvm-guard-tools"]);
    assert_eq!(init[0]["image"], TOOLS_IMAGE);
    assert_eq!(
        init[0]["command"],
        json!([
            "/usr/local/bin/jvm-guard",
            "install-tools",
            "/jvm-guard/bin"
        ])
    );
    assert_eq!(
        app["command"],
        json!([
            "/jvm-guard/bin/jvm-guard",
            "exec",
            "--supervise",
            "--termination-log",
            "/dev/termination-log",
            "--rlimit",
            "nofile=65536:65536",
            "--rlimit",
            "nproc=4096:4096",
            "--",
            "java",
            "-jar",
            "/app/app.jar"
        ])
    );

    let status: Value =
        serde_json::from_str(pod["metadata"]["annotations"][STATUS].as_str().unwrap()).unwrap();
    let applied = &status["containers"]["app"]["applied"];
    for feature in [
        "memory",
        "heap-dump",
        "dump-rotation",
        "exit-on-oom",
        "probes",
        "ulimits",
    ] {
        assert!(
            applied.as_array().unwrap().contains(&json!(feature)),
            "{feature}: {status}"
        );
    }
    // The apiserver runs the in-tree mutating plugins again after a webhook changed the pod:
    // ServiceAccount would mount the token into our init container too, but our own mount at
    // the token path keeps it out (SPEC §4.4). So the plugins change nothing after us, and the
    // apiserver calls jvm-guard once per create (no reinvocation).
    let init_mounts = names(&init[0]["volumeMounts"]);
    assert!(
        !init_mounts
            .iter()
            .any(|m| m.starts_with("kube-api-access-")),
        "no API token in the init container: {init_mounts:?}"
    );
    let token_path = init[0]["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == "/var/run/secrets/kubernetes.io/serviceaccount");
    assert_eq!(
        token_path.map(|m| &m["name"]),
        Some(&json!("jvm-guard-tools"))
    );
    // Every call happened before the create returned; the log lines may lag a little.
    outcomes(&cluster.serve, ns, 1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        cluster.serve.outcomes(ns),
        ["mutated"],
        "one call per create"
    );
}

/// Acceptance 2: The chart's namespaceSelector: the apiserver does not even call the webhook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_not_opted_in_is_stored_unmodified() {
    let (cluster, client, _shared) = setup().await;
    let ns = "e2e-not-opted-in";
    create_namespace(&client, ns, &[], &[("jvm-guard.io/probes", "tcp")]).await;
    create(&client, ns, jvm_pod("plain")).await;
    assert_unmodified(&stored(&client, ns, "plain").await);
    assert!(
        cluster.serve.outcomes(ns).is_empty(),
        "the webhook was called for {ns}"
    );
}

/// Acceptance 2: the chart's objectSelector. A pod labelled `jvm-guard.io/inject: "false"` is
/// not sent, while its neighbour without the label is mutated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_opt_out_label_is_stored_unmodified() {
    let (cluster, client, _shared) = setup().await;
    let ns = "e2e-opt-out";
    create_namespace(&client, ns, &[(INJECT, "enabled")], &[]).await;
    let mut pod = jvm_pod("opted-out");
    pod["metadata"]["labels"] = json!({INJECT: "false"});
    create(&client, ns, pod).await;
    assert_unmodified(&stored(&client, ns, "opted-out").await);
    // Without a token volume the neighbour is reviewed once (no ServiceAccount reinvocation),
    // so one logged review means the opted-out pod, created first, was never sent.
    let mut neighbour = jvm_pod("neighbour");
    neighbour["spec"]["automountServiceAccountToken"] = json!(false);
    let neighbour = create(&client, ns, neighbour).await;
    assert!(is_mutated(&neighbour));
    assert_eq!(
        outcomes(&cluster.serve, ns, 1).await,
        ["mutated"],
        "only the neighbour was sent"
    );
}

/// Acceptance 2: kube-system, even labelled for injection: excluded by name in the chart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_system_is_stored_unmodified() {
    let (cluster, client, _shared) = setup().await;
    let ns = "kube-system";
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let label = json!({"metadata": {"labels": {INJECT: "enabled"}}});
    within(
        30,
        "label kube-system",
        namespaces.patch(ns, &PatchParams::default(), &Patch::Merge(&label)),
    )
    .await
    .unwrap();
    create_default_service_account(&client, ns).await;
    create(&client, ns, jvm_pod("system-jvm")).await;
    assert_unmodified(&stored(&client, ns, "system-jvm").await);
    assert!(
        cluster.serve.outcomes(ns).is_empty(),
        "the webhook was called for kube-system"
    );
}

/// Acceptance 3: The reflector's watch: a namespace annotation change reaches the next pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_annotation_change_reaches_the_next_pod_within_seconds() {
    let (_cluster, client, _shared) = setup().await;
    let ns = "e2e-annotation-change";
    let key = "jvm-guard.io/max-ram-percentage";
    create_namespace(&client, ns, &[(INJECT, "enabled")], &[(key, "50")]).await;
    create(&client, ns, jvm_pod("before")).await;
    let before = stored(&client, ns, "before").await;
    assert!(
        env_value(container(&before, "app"), "JVM_GUARD_JAVA_OPTIONS")
            .contains("-XX:MaxRAMPercentage=50.0")
    );

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let change = json!({"metadata": {"annotations": {key: "60"}}});
    within(
        30,
        "annotate",
        namespaces.patch(ns, &PatchParams::default(), &Patch::Merge(&change)),
    )
    .await
    .unwrap();
    let changed = Instant::now();
    let mut attempt = 0;
    let (pod, elapsed) = loop {
        attempt += 1;
        let name = format!("after-{attempt}");
        create(&client, ns, jvm_pod(&name)).await;
        let pod = stored(&client, ns, &name).await;
        if env_value(container(&pod, "app"), "JVM_GUARD_JAVA_OPTIONS")
            .contains("-XX:MaxRAMPercentage=60.0")
        {
            break (pod, changed.elapsed());
        }
        assert!(
            changed.elapsed() < Duration::from_secs(5),
            "still the old value after 5 s: {pod:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!env_value(container(&pod, "app"), "JVM_GUARD_JAVA_OPTIONS").contains("=50.0"));
    println!("namespace annotation change seen by the next pod after {elapsed:?} ({attempt} pods)");
}

/// Acceptance 4: A second `jvm-guard serve` with its own registration from the chart, for one
/// namespace: mutating while up, then killed.
async fn webhook_that_goes_down(
    cluster: &Cluster,
    client: &Client,
    ns: &str,
    failure_policy: &str,
) -> (Serve, String) {
    create_namespace(client, ns, &[(INJECT, "enabled")], &[]).await;
    let serve = Serve::start(&cluster.kubeconfig, &cluster.webhook_certs, ns, None).unwrap();
    let config_name = format!("jvm-guard-{ns}");
    let config = cluster.chart_webhook(
        &config_name,
        &serve.url(),
        json!({"webhook": {
            "failurePolicy": failure_policy,
            "namespaceSelector": {"matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "In", "values": [ns]},
            ]},
        }}),
    );
    assert_eq!(
        config.webhooks.as_ref().unwrap()[0]
            .failure_policy
            .as_deref(),
        Some(failure_policy)
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
    let up = create(client, ns, jvm_pod("while-up")).await;
    assert!(is_mutated(&up), "mutated while the webhook is up");
    serve.stop();
    (serve, config_name)
}

async fn unregister(client: &Client, config_name: &str) {
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    within(
        30,
        "unregister",
        configs.delete(config_name, &DeleteParams::default()),
    )
    .await
    .unwrap();
}

/// Acceptance 4: failurePolicy: Ignore (the chart's default): a dead webhook never blocks a pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_down_with_failure_policy_ignore_admits_pods_unmodified() {
    let (cluster, client, _shared) = setup().await;
    let ns = cluster::OWN_WEBHOOK_NAMESPACES[0];
    let (_serve, config_name) = webhook_that_goes_down(cluster, &client, ns, "Ignore").await;
    let started = Instant::now();
    create(&client, ns, jvm_pod("while-down")).await;
    println!(
        "pod created with the webhook down (Ignore) in {:?}",
        started.elapsed()
    );
    assert_unmodified(&stored(&client, ns, "while-down").await);
    unregister(&client, &config_name).await;
}

/// Acceptance 4: failurePolicy: Fail (a chart value): the create is refused, naming the webhook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_down_with_failure_policy_fail_refuses_pods_with_a_clear_error() {
    let (cluster, client, _shared) = setup().await;
    let ns = cluster::OWN_WEBHOOK_NAMESPACES[1];
    let (_serve, config_name) = webhook_that_goes_down(cluster, &client, ns, "Fail").await;
    let pod: Pod = serde_json::from_value(jvm_pod("while-down")).unwrap();
    let refused = within(
        30,
        "create",
        pods(&client, ns).create(&PostParams::default(), &pod),
    )
    .await;
    let Err(kube::Error::Api(error)) = refused else {
        panic!("created with a failurePolicy: Fail webhook down: {refused:?}");
    };
    println!("refused: {} ({})", error.message, error.code);
    assert!(
        error
            .message
            .contains("failed calling webhook \"mutate.jvm-guard.io\"")
            && error.message.contains("connection refused"),
        "{error:?}"
    );
    let gone = within(30, "get", pods(&client, ns).get_opt("while-down"))
        .await
        .unwrap();
    assert!(gone.is_none(), "stored although refused");
    unregister(&client, &config_name).await;
}

/// Acceptance 5: Dry run: the mutated pod comes back, nothing is stored, and our warnings arrive as
/// `Warning` headers (what kubectl prints).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_returns_the_mutated_pod_stores_nothing_and_warns() {
    let (_cluster, client, _shared) = setup().await;
    let ns = "e2e-dry-run";
    create_namespace(&client, ns, &[(INJECT, "enabled")], &[]).await;
    let mut pod = jvm_pod("dry");
    pod["spec"]["containers"][0]["resources"] = json!({});
    let params = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let request = kube::core::Request::new(format!("/api/v1/namespaces/{ns}/pods"))
        .create(&params, serde_json::to_vec(&pod).unwrap())
        .unwrap();
    let (parts, body) = request.into_parts();
    let request = axum::http::Request::from_parts(parts, kube::client::Body::from(body));
    let response = within(30, "dry-run create", client.send(request))
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let warnings: Vec<String> = response
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let body = within(30, "body", response.into_body().collect_bytes())
        .await
        .unwrap();
    let returned: Value = serde_json::from_slice(&body).unwrap();

    assert!(
        returned["metadata"]["annotations"][STATUS].is_string(),
        "{returned:#}"
    );
    assert!(names(&returned["spec"]["volumes"]).contains(&"jvm-guard-dumps"));
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("299 - \"jvm-guard: ") && w.contains("no memory limit")),
        "{warnings:?}"
    );
    let list = within(30, "list", pods(&client, ns).list(&Default::default()))
        .await
        .unwrap();
    assert!(list.items.is_empty(), "a dry run stored {:?}", list.items);
}

/// Acceptance 6: generateName. The name exists only after admission, so the dump directory
/// comes from the stored env var and subPathExpr, and differs per pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_name_pods_get_distinct_dump_directories() {
    let (_cluster, client, _shared) = setup().await;
    let ns = "e2e-generate-name";
    create_namespace(&client, ns, &[(INJECT, "enabled")], &[]).await;
    let mut pod = jvm_pod("unused");
    pod["metadata"] = json!({"generateName": "batch-"});
    // No token volume: our patch adds /spec/volumes itself.
    pod["spec"]["automountServiceAccountToken"] = json!(false);
    let mut directories = Vec::new();
    for _ in 0..2 {
        let created = create(&client, ns, pod.clone()).await;
        let pod = stored(&client, ns, &name(&created)).await;
        let app = container(&pod, "app");
        assert_eq!(app["env"][0]["name"], "JVM_GUARD_POD_NAME");
        assert_eq!(
            app["env"][0]["valueFrom"]["fieldRef"]["fieldPath"],
            "metadata.name"
        );
        let mount = app["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "jvm-guard-dumps")
            .unwrap();
        assert_eq!(mount["subPathExpr"], "$(JVM_GUARD_POD_NAME)/app");
        assert_eq!(
            names(&pod["spec"]["volumes"]),
            ["jvm-guard-dumps", "jvm-guard-tools"]
        );
        // What the kubelet will expand the subPathExpr to.
        directories.push(name(&created));
    }
    assert!(
        directories.iter().all(|d| d.starts_with("batch-")),
        "{directories:?}"
    );
    assert_ne!(directories[0], directories[1]);
}

/// Acceptance 7: Another webhook (ordered after ours by configuration name) adds a container; the
/// apiserver calls jvm-guard again (reinvocationPolicy: IfNeeded), which changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reinvocation_after_another_webhook_keeps_one_copy_of_each_change() {
    let (cluster, client, _shared) = setup().await;
    let ns = "e2e-reinvocation";
    create_namespace(
        &client,
        ns,
        &[(INJECT, "enabled")],
        &[("jvm-guard.io/ulimits", "nofile=65536")],
    )
    .await;
    let sidecar = sidecar::Sidecar::start(&cluster.webhook_certs).await;
    let ca = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        cluster.webhook_ca(),
    );
    let config: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "zz-e2e-sidecar"},
        "webhooks": [{
            "name": "sidecar.e2e.jvm-guard.io",
            "admissionReviewVersions": ["v1"],
            "clientConfig": {"url": sidecar.url(), "caBundle": ca},
            "rules": [{
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "operations": ["CREATE"],
                "resources": ["pods"],
            }],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "reinvocationPolicy": "Never",
        }],
    }))
    .unwrap();
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    within(
        30,
        "register",
        configs.create(&PostParams::default(), &config),
    )
    .await
    .unwrap();
    // No token volume, so that only the sidecar's change makes the apiserver call jvm-guard
    // again (not the ServiceAccount plugin's, see opted_in_pod_is_stored_with_every_feature).
    let mut pod = jvm_pod("reinvoked");
    pod["spec"]["automountServiceAccountToken"] = json!(false);
    // Active once a dry run comes back with the sidecar. Each dry run is reviewed by jvm-guard
    // once, or twice when the sidecar took part.
    let probe: Pod = serde_json::from_value(pod.clone()).unwrap();
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut probe_calls = 0;
    loop {
        let pod = within(30, "dry run", pods(&client, ns).create(&dry_run, &probe))
            .await
            .unwrap();
        if pod
            .spec
            .unwrap()
            .containers
            .iter()
            .any(|c| c.name == sidecar::CONTAINER)
        {
            probe_calls += 2;
            break;
        }
        probe_calls += 1;
        assert!(
            Instant::now() < deadline,
            "the sidecar webhook never took effect"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let calls_before = outcomes(&cluster.serve, ns, probe_calls).await.len();
    assert_eq!(calls_before, probe_calls);
    let seen_before = sidecar.seen.lock().unwrap().len();

    create(&client, ns, pod).await;
    let pod = stored(&client, ns, "reinvoked").await;

    // jvm-guard first (a patch), the sidecar after it, then jvm-guard again (no patch).
    let calls = outcomes(&cluster.serve, ns, calls_before + 2).await;
    assert_eq!(calls[calls_before..], ["mutated", "unchanged"]);
    let seen = sidecar.seen.lock().unwrap()[seen_before..].to_vec();
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0]["metadata"]["annotations"][STATUS].is_string(),
        "the sidecar ran before jvm-guard"
    );

    assert_eq!(
        names(&pod["spec"]["containers"]),
        ["app", sidecar::CONTAINER]
    );
    assert_eq!(names(&pod["spec"]["initContainers"]), ["jvm-guard-tools"]);
    let volumes = names(&pod["spec"]["volumes"]);
    for ours in ["jvm-guard-dumps", "jvm-guard-tools"] {
        assert_eq!(
            volumes.iter().filter(|v| **v == ours).count(),
            1,
            "{volumes:?}"
        );
    }
    let app = container(&pod, "app");
    assert_eq!(
        names(&app["env"])
            .iter()
            .filter(|e| **e == "JVM_GUARD_POD_NAME")
            .count(),
        1
    );
    assert_eq!(
        env_value(app, "JVM_GUARD_JAVA_OPTIONS")
            .matches("-XX:+HeapDumpOnOutOfMemoryError")
            .count(),
        1
    );
    assert_eq!(
        app["command"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| **a == "exec")
            .count(),
        1
    );
    assert!(
        container(&pod, sidecar::CONTAINER)["env"].is_null(),
        "the sidecar is no target"
    );
    within(
        30,
        "unregister",
        configs.delete("zz-e2e-sidecar", &DeleteParams::default()),
    )
    .await
    .unwrap();
}

/// Acceptance 8: Pod Security "restricted" validates the pod after our mutation: what we add
/// (the init container, volumes, probes, the wrapper) must pass it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restricted_pod_security_admits_the_mutated_pod() {
    let (_cluster, client, _shared) = setup().await;
    let ns = "e2e-restricted";
    create_namespace(
        &client,
        ns,
        &[
            (INJECT, "enabled"),
            ("pod-security.kubernetes.io/enforce", "restricted"),
            ("pod-security.kubernetes.io/enforce-version", "latest"),
        ],
        &[
            ("jvm-guard.io/ulimits", "nofile=65536"),
            ("jvm-guard.io/probes", "tcp"),
        ],
    )
    .await;
    let mut pod = jvm_pod("compliant");
    pod["spec"]["securityContext"] = json!({
        "runAsNonRoot": true,
        "runAsUser": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    });
    pod["spec"]["containers"][0]["securityContext"] =
        json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}});
    pod["spec"]["containers"][0]["ports"] = json!([{"containerPort": 8080}]);
    let created = create(&client, ns, pod).await;
    assert!(is_mutated(&created));
    let pod = stored(&client, ns, "compliant").await;
    assert_eq!(names(&pod["spec"]["initContainers"]), ["jvm-guard-tools"]);
    assert!(container(&pod, "app")["startupProbe"]["tcpSocket"].is_object());

    // The control: the profile is enforced here.
    let plain: Pod = serde_json::from_value(jvm_pod("non-compliant")).unwrap();
    let refused = within(
        30,
        "create",
        pods(&client, ns).create(&PostParams::default(), &plain),
    )
    .await;
    let Err(kube::Error::Api(error)) = refused else {
        panic!("a non-compliant pod was admitted: {refused:?}");
    };
    assert!(
        error
            .message
            .contains("violates PodSecurity \"restricted:latest\""),
        "{error:?}"
    );
}

/// Issue 8: a container without `command` is wrapped around its image's ENTRYPOINT, read by
/// `serve` from the cluster's registry (plain HTTP on loopback). The image's CMD becomes `args`
/// unless the pod has its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_without_command_is_wrapped_with_the_image_entrypoint() {
    let (cluster, client, _shared) = setup().await;
    let ns = "e2e-image-entrypoint";
    within(
        30,
        "push image",
        cluster.registry.push_image(
            "shop/api",
            "1.0",
            Some(&["java", "-jar", "/app/app.jar"]),
            Some(&["--server.port=8080"]),
            false,
            "amd64",
        ),
    )
    .await;
    let image = format!("{}/shop/api:1.0", cluster.registry.host());
    create_namespace(
        &client,
        ns,
        &[(INJECT, "enabled")],
        &[("jvm-guard.io/ulimits", "nofile=65536")],
    )
    .await;
    let wrapped = json!([
        "/jvm-guard/bin/jvm-guard",
        "exec",
        "--supervise",
        "--termination-log",
        "/dev/termination-log",
        "--rlimit",
        "nofile=65536:65536",
        "--",
        "java",
        "-jar",
        "/app/app.jar"
    ]);
    let without_command = |name: &str, args: Option<Value>| {
        let mut pod = jvm_pod(name);
        let app = &mut pod["spec"]["containers"][0];
        app["image"] = json!(image);
        app.as_object_mut().unwrap().remove("command");
        if let Some(args) = args {
            app["args"] = args;
        }
        pod
    };

    // No command, no args: the ENTRYPOINT behind the wrapper, the CMD as args.
    let created = create(&client, ns, without_command("image-cmd", None)).await;
    assert!(is_mutated(&created));
    let pod = stored(&client, ns, "image-cmd").await;
    let app = container(&pod, "app");
    assert_eq!(app["command"], wrapped, "{app:#}");
    assert_eq!(app["args"], json!(["--server.port=8080"]), "{app:#}");
    let status: Value =
        serde_json::from_str(pod["metadata"]["annotations"][STATUS].as_str().unwrap()).unwrap();
    let applied = status["containers"]["app"]["applied"].as_array().unwrap();
    assert!(applied.contains(&json!("ulimits")), "{status}");

    // The pod's own args replace the CMD and stay as they are.
    create(
        &client,
        ns,
        without_command("own-args", Some(json!(["--debug"]))),
    )
    .await;
    let pod = stored(&client, ns, "own-args").await;
    let app = container(&pod, "app");
    assert_eq!(app["command"], wrapped, "{app:#}");
    assert_eq!(app["args"], json!(["--debug"]), "{app:#}");
    let status: Value =
        serde_json::from_str(pod["metadata"]["annotations"][STATUS].as_str().unwrap()).unwrap();
    let applied = status["containers"]["app"]["applied"].as_array().unwrap();
    assert!(applied.contains(&json!("ulimits")), "{status}");
}

/// Issue 21: the image's own config is evidence. An image whose `Env` sets a heap in
/// `JAVA_TOOL_OPTIONS` is stored with `memory` not applied (skipped, naming the variable),
/// through the real apiserver and `serve`'s lookup in the cluster's registry; an image whose
/// `Env` names another server is not guarded at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_that_sets_its_heap_is_stored_with_memory_not_applied() {
    let (cluster, client, _shared) = setup().await;
    let ns = "e2e-image-config";
    let heap = [
        "JAVA_HOME=/opt/java/openjdk",
        "JAVA_TOOL_OPTIONS=-Xmx300m -Dapp.mode=prod",
    ];
    within(
        30,
        "push images",
        cluster.registry.push_image_with_env(
            "shop/heap",
            "1.0",
            &["java", "-jar", "/app/app.jar"],
            &heap,
        ),
    )
    .await;
    let web = ["NGINX_VERSION=1.27.3"];
    within(
        30,
        "push images",
        cluster.registry.push_image_with_env(
            "shop/web",
            "1.0",
            &["/docker-entrypoint.sh", "nginx"],
            &web,
        ),
    )
    .await;
    create_namespace(&client, ns, &[(INJECT, "enabled")], &[]).await;
    let host = cluster.registry.host();
    let with_image = |name: &str, image: &str| {
        let mut pod = jvm_pod(name);
        let app = &mut pod["spec"]["containers"][0];
        app["image"] = json!(format!("{host}/{image}"));
        app.as_object_mut().unwrap().remove("command");
        pod
    };

    create(&client, ns, with_image("heap", "shop/heap:1.0")).await;
    let pod = stored(&client, ns, "heap").await;
    let status: Value =
        serde_json::from_str(pod["metadata"]["annotations"][STATUS].as_str().unwrap()).unwrap();
    let app = &status["containers"]["app"];
    assert_eq!(
        app["skipped"]["memory"], "heap set by JAVA_TOOL_OPTIONS=-Xmx300m",
        "{status}"
    );
    assert!(
        !app["applied"]
            .as_array()
            .unwrap()
            .contains(&json!("memory")),
        "{status}"
    );
    assert_eq!(app["jvm"], "seen", "{status}");
    // The agent still merges the other flags, into the image's value at start.
    let env = container(&pod, "app")["env"].to_string();
    assert!(!env.contains("MaxRAMPercentage"), "{env}");

    create(&client, ns, with_image("web", "shop/web:1.0")).await;
    let pod = stored(&client, ns, "web").await;
    let status = pod["metadata"]["annotations"][STATUS]
        .as_str()
        .unwrap_or("{}");
    assert!(
        !status.contains("\"app\""),
        "a server image is not a target: {status}"
    );
    assert!(pod["spec"]["initContainers"].is_null(), "{pod:#}");
}

/// Acceptance 9: the chart itself, installed by real helm (certificates by the chart). An
/// upgrade finds the Secret with `lookup` and keeps the CA, the serving pair and the caBundle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_then_upgrade_keeps_the_ca_and_serving_secret() {
    let (cluster, client, _shared) = setup().await;
    let ns = "e2e-helm";
    // Inert for the other tests: the release's webhook would call a Service nothing backs.
    let values = cluster.dir.join("helm-release-values.yaml");
    std::fs::write(
        &values,
        serde_yaml::to_string(&json!({"webhook": {"objectSelector": {
            "matchLabels": {"e2e.jvm-guard.io/helm-release": "true"},
        }}}))
        .unwrap(),
    )
    .unwrap();
    let helm = |args: &[&str]| {
        let out = run_bounded(
            std::process::Command::new(helm_bin())
                .args(args)
                .args([
                    "jvm-guard",
                    &format!("{}/charts/jvm-guard", env!("CARGO_MANIFEST_DIR")),
                ])
                .args(["--namespace", ns, "--kubeconfig"])
                .arg(&cluster.kubeconfig)
                .arg("-f")
                .arg(&values)
                .envs(helm_env(&cluster.dir)),
            180,
        );
        assert!(
            out.status.success(),
            "helm {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let snapshot = || async {
        let secret = within(30, "secret", secrets.get("jvm-guard-tls"))
            .await
            .unwrap();
        let data = secret.data.unwrap();
        let config = within(30, "webhook", configs.get("jvm-guard"))
            .await
            .unwrap();
        let ca_bundle = config.webhooks.unwrap()[0]
            .client_config
            .ca_bundle
            .clone()
            .unwrap();
        (
            data["ca.crt"].0.clone(),
            data["tls.crt"].0.clone(),
            data["tls.key"].0.clone(),
            ca_bundle.0,
        )
    };

    helm(&["install", "--create-namespace"]);
    let installed = snapshot().await;
    assert_eq!(installed.0, installed.3, "caBundle is the Secret's CA");
    assert!(String::from_utf8_lossy(&installed.1).starts_with("-----BEGIN CERTIFICATE-----"));

    helm(&["upgrade", "--set", "replicaCount=3"]);
    let upgraded = snapshot().await;
    assert!(
        installed == upgraded,
        "the upgrade changed the CA, the serving pair or the caBundle"
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let deployment = within(30, "deployment", deployments.get("jvm-guard"))
        .await
        .unwrap();
    assert_eq!(deployment.spec.replicas, Some(3), "the upgrade was applied");
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Latencies(Vec<Duration>);

impl Latencies {
    fn mean(&self) -> Duration {
        self.0.iter().sum::<Duration>() / self.0.len() as u32
    }

    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.0.clone();
        sorted.sort();
        sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
    }

    fn line(&self, label: &str) -> String {
        format!(
            "{label:<26} mean {:6.2} ms  p50 {:6.2} ms  p90 {:6.2} ms  p99 {:6.2} ms  \
             max {:6.2} ms",
            ms(self.mean()),
            ms(self.percentile(0.50)),
            ms(self.percentile(0.90)),
            ms(self.percentile(0.99)),
            ms(*self.0.iter().max().unwrap()),
        )
    }
}

/// Acceptance 10: load. 500 pod creates through the apiserver with jvm-guard in the path and
/// 500 in a namespace its selector does not match, interleaved, one at a time. Reports the
/// figures (in the test's output and target/tmp/e2e-load.txt); no timing assertion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_500_creates_with_and_without_the_webhook() {
    let _alone = LOAD.write().await;
    let cluster = cluster();
    let client = cluster.client().await;
    let (with, without) = ("e2e-load-with", "e2e-load-without");
    create_namespace(&client, with, &[(INJECT, "enabled")], &[]).await;
    create_namespace(&client, without, &[], &[]).await;
    let mut pod = jvm_pod("unused");
    pod["metadata"] = json!({"generateName": "load-"});
    let pod: Pod = serde_json::from_value(pod).unwrap();
    let (api_with, api_without) = (pods(&client, with), pods(&client, without));
    let time = |api: Api<Pod>, pod: Pod| async move {
        let started = Instant::now();
        let created = within(30, "create", api.create(&PostParams::default(), &pod))
            .await
            .unwrap();
        (started.elapsed(), created)
    };
    // Warm-up: connections, the apiserver's caches, our TLS session.
    for _ in 0..20 {
        time(api_with.clone(), pod.clone()).await;
        time(api_without.clone(), pod.clone()).await;
    }
    let (mut on, mut off) = (Vec::new(), Vec::new());
    let started = Instant::now();
    for _ in 0..500 {
        let (elapsed, created) = time(api_with.clone(), pod.clone()).await;
        assert!(is_mutated(&created));
        on.push(elapsed);
        let (elapsed, created) = time(api_without.clone(), pod.clone()).await;
        assert!(!is_mutated(&created));
        off.push(elapsed);
    }
    let total = started.elapsed();
    let reviews = outcomes(&cluster.serve, with, 1).await.len() as f64 / 520.0;
    let (on, off) = (Latencies(on), Latencies(off));
    let added = |f: fn(&Latencies) -> Duration| ms(f(&on)) - ms(f(&off));
    let report = format!(
        "pod create latency through kube-apiserver {}, 500 sequential creates each \
         (after 20 warm-up), {:.1} s in all:\n{}\n{}\n\
         added by the webhook: mean {:+.2} ms, p50 {:+.2} ms, p99 {:+.2} ms\n\
         jvm-guard reviews per create with it: {reviews:.2} (the ServiceAccount plugin's change \
         to the injected init container makes the apiserver call it again)\n",
        versions::KUBERNETES_VERSION,
        total.as_secs_f64(),
        on.line("with jvm-guard called"),
        off.line("without (not selected)"),
        added(Latencies::mean),
        added(|l| l.percentile(0.50)),
        added(|l| l.percentile(0.99)),
    );
    println!("{report}");
    std::fs::write(
        format!("{}/e2e-load.txt", env!("CARGO_TARGET_TMPDIR")),
        &report,
    )
    .unwrap();
}

/// How long the shared cluster took to start (printed for the record).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_boots_with_the_reflector_and_the_chart_webhook() {
    let (cluster, client, _shared) = setup().await;
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let config = within(30, "webhook", configs.get(cluster::WEBHOOK_CONFIG))
        .await
        .unwrap();
    let webhook = &config.webhooks.unwrap()[0];
    assert_eq!(
        webhook.client_config.url.as_deref(),
        Some(cluster.serve.url().as_str())
    );
    assert_eq!(webhook.failure_policy.as_deref(), Some("Ignore"));
    assert_eq!(webhook.reinvocation_policy.as_deref(), Some("IfNeeded"));
    println!(
        "cluster (etcd, kube-apiserver, jvm-guard serve, webhook) up in {:?}",
        cluster.boot_time
    );
}

/// Issue 14, item 10: the golden outputs, validated by the real apiserver (see `goldens.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_golden_output_is_a_pod_the_apiserver_accepts() {
    let (_cluster, client, _shared) = setup().await;
    goldens::every_golden_output_is_a_pod_the_apiserver_accepts(&client).await;
}

/// Issue 14, item 10: a fixed sample of the property tests' generated pods, mutated, validated
/// by the real apiserver (see `property_pods.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn property_generated_pods_mutated_are_pods_the_apiserver_accepts() {
    let (_cluster, client, _shared) = setup().await;
    property_pods::generated_pods_mutated_are_pods_the_apiserver_accepts(&client).await;
}
