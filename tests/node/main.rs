//! On a real node: the chart installed with `helm install`, the apiserver calling the webhook
//! through its Service, and Deployments of a real JVM app (tests/node/app) run by the kubelet,
//! containerd and runc. What the mutation promises is read from the running containers: the
//! heap the JVM sized, the dump on the node's disk, the exit code, the rlimits, the probes.
//! Binaries: scripts/install-e2e-tools.sh and scripts/install-node-tools.sh; needs root.

mod cluster;
mod dumps;
// The e2e suite's harness uses the rest.
#[allow(dead_code)]
#[path = "../support/control_plane.rs"]
mod control_plane;
mod faults;
// follow_lines is the other suites'.
#[allow(dead_code)]
#[path = "../support/process.rs"]
mod process;
// kubernetes-validate is tests/chart.rs's.
#[allow(dead_code)]
#[path = "../support/versions.rs"]
mod versions;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Namespace, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, PostParams};
use kube::Client;
use serde_json::{json, Value};

use cluster::{
    cluster, map, DISTROLESS_IMAGE, RELEASE, RELEASE_NAMESPACE, SHELL_IMAGE, STANDIN_IMAGE,
};
use process::{run_bounded, within};

/// The fault test deletes a webhook pod: it runs alone (write); every other test shares the
/// webhook (read).
static FAULTS: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

const MI: u64 = 1024 * 1024;
/// SPEC §3: the default `non-heap-reserve`.
const RESERVE: u64 = 384 * MI;

/// SPEC §4.1, `max-ram-percentage: auto`: p = clamp(floor(100 (L - R) / L), 25, 75).
fn auto_percentage(limit: u64) -> u64 {
    if limit <= RESERVE {
        return 25;
    }
    (100 * (limit - RESERVE) / limit).clamp(25, 75)
}

async fn namespace(client: &Client, name: &str, labels: &[(&str, &str)]) {
    let mut ns = Namespace::default();
    ns.metadata.name = Some(name.into());
    ns.metadata.labels = Some(map(labels));
    let api: Api<Namespace> = Api::all(client.clone());
    within(
        30,
        "create namespace",
        api.create(&PostParams::default(), &ns),
    )
    .await
    .unwrap_or_else(|e| panic!("namespace {name}: {e}"));
}

/// A namespace the webhook mutates pods in.
async fn injected_namespace(client: &Client, name: &str) {
    namespace(client, name, &[("jvm-guard.io/inject", "enabled")]).await;
    wait_injecting(client, name).await;
}

/// Dry-run creates a pod (one Pod Security `restricted` admits) until it comes back mutated.
/// The webhook reads namespaces from its own watch, which lags the apiserver's on a busy node:
/// until the new namespace is in it, `serve` allows pods there unmutated (a race jvm-guard has;
/// the report of tests/node has it). Tests create their Deployments after it ends.
async fn wait_injecting(client: &Client, ns: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe"},
        "spec": {
            "securityContext": {"runAsNonRoot": true, "runAsUser": 1000,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "app", "image": SHELL_IMAGE,
                "command": ["java", "-cp", "/app", "App"],
                "securityContext": {"allowPrivilegeEscalation": false,
                                    "capabilities": {"drop": ["ALL"]}},
                "resources": {"limits": {"memory": "512Mi"}}}],
        },
    }))
    .unwrap();
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        // Errors too: the ServiceAccount controller makes `default` in a moment.
        let created = within(30, "dry-run create", pods.create(&dry_run, &pod)).await;
        let mutated = created.as_ref().is_ok_and(|p| {
            p.metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key("jvm-guard.io/status"))
        });
        if mutated {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no mutated pod in {ns} within 120 s (last: {created:?})"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A Deployment of the test app: one replica, `java -cp /app App` on port 8080 named `http`.
fn app(name: &str, image: &str, memory_limit: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": {}},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [{
                        "name": "app",
                        "image": image,
                        "imagePullPolicy": "Never",
                        "command": ["java", "-cp", "/app", "App"],
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "env": [],
                        // Small CPU requests: the node has 2 cores for every test's pods.
                        "resources": {
                            "requests": {"cpu": "50m", "memory": "64Mi"},
                            "limits": {"cpu": "1", "memory": memory_limit},
                        },
                    }],
                },
            },
        },
    })
}

fn annotate(deployment: &mut Value, key: &str, value: &str) {
    deployment["spec"]["template"]["metadata"]["annotations"][key] = json!(value);
}

fn env(deployment: &mut Value, name: &str, value: &str) {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": name, "value": value}));
}

async fn deploy(client: &Client, ns: &str, deployment: Value) {
    let deployment: Deployment = serde_json::from_value(deployment).unwrap();
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    within(
        30,
        "create deployment",
        api.create(&PostParams::default(), &deployment),
    )
    .await
    .unwrap_or_else(|e| panic!("deployment in {ns}: {e}"));
}

/// Polls the pods of `app` until one satisfies `ready`, for up to `seconds`.
async fn wait_pod(
    client: &Client,
    ns: &str,
    app: &str,
    seconds: u64,
    what: &str,
    ready: impl Fn(&Pod) -> bool,
) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let list = within(
            30,
            "list pods",
            pods.list(&ListParams::default().labels(&format!("app={app}"))),
        )
        .await;
        if let Ok(list) = &list {
            if let Some(pod) = list.items.iter().find(|p| ready(p)) {
                return pod.clone();
            }
        }
        if Instant::now() > deadline {
            let events = events(client, ns).await;
            panic!(
                "{ns}/{app}: no pod {what} within {seconds} s; pods: {}\nevents:\n{events}",
                serde_json::to_string_pretty(&list.map(|l| l.items).unwrap_or_default()).unwrap()
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn events(client: &Client, ns: &str) -> String {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    match api.list(&ListParams::default()).await {
        Ok(list) => list
            .items
            .iter()
            .map(|e| {
                format!(
                    "{} {}: {}",
                    e.involved_object.name.clone().unwrap_or_default(),
                    e.reason.clone().unwrap_or_default(),
                    e.message.clone().unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => format!("(events: {e})"),
    }
}

/// The pod watcher's Events of `reason` in `ns` (the chart's replicas, under the chart's RBAC),
/// once there is one on Pod/`pod` and one on Deployment/`deployment` whose `series` counts
/// `count` (1: no series): what `kubectl describe` shows for each, one Event per crash loop.
async fn watcher_events(
    client: &Client,
    ns: &str,
    reason: &str,
    pod: &Pod,
    deployment: &str,
    count: i32,
) -> Vec<k8s_openapi::api::events::v1::Event> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    let pod_name = pod.metadata.name.clone().unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let found: Vec<_> = api
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .collect();
        let on = |kind: &str, name: &str| -> Vec<i32> {
            found
                .iter()
                .filter(|e| {
                    let r = e.regarding.as_ref().unwrap();
                    r.kind.as_deref() == Some(kind) && r.name.as_deref() == Some(name)
                })
                .map(|e| e.series.as_ref().map_or(1, |s| s.count))
                .collect()
        };
        let (on_pod, on_deployment) = (on("Pod", &pod_name), on("Deployment", deployment));
        if on_pod == [count] && on_deployment == [count] {
            assert_eq!(found.len(), 2, "one Event each, no more: {found:#?}");
            let regarding = found
                .iter()
                .find_map(|e| {
                    e.regarding
                        .clone()
                        .filter(|r| r.kind.as_deref() == Some("Pod"))
                })
                .unwrap();
            assert_eq!(regarding.uid, pod.metadata.uid, "the pod's own uid");
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "no {reason} Event counting {count} on Pod/{pod_name} and Deployment/{deployment} \
             within 90 s: pod {on_pod:?}, deployment {on_deployment:?}\n{found:#?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The app container's log (this run's, or the previous run's), through the apiserver and the
/// kubelet, for failure messages.
async fn app_log(client: &Client, pod: &Pod, previous: bool) -> String {
    let api: Api<Pod> = Api::namespaced(client.clone(), pod.metadata.namespace.as_ref().unwrap());
    let params = kube::api::LogParams {
        container: Some("app".into()),
        previous,
        ..Default::default()
    };
    match within(
        30,
        "pod log",
        api.logs(pod.metadata.name.as_ref().unwrap(), &params),
    )
    .await
    {
        Ok(log) => log,
        Err(e) => format!("(no log: {e})"),
    }
}

fn app_status(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|s| s.name == "app")
}

fn running(pod: &Pod) -> bool {
    app_status(pod).is_some_and(|s| s.state.as_ref().is_some_and(|s| s.running.is_some()))
}

fn is_ready(pod: &Pod) -> bool {
    app_status(pod).is_some_and(|s| s.ready)
}

fn restarts(pod: &Pod) -> i32 {
    app_status(pod).map(|s| s.restart_count).unwrap_or(0)
}

fn pod_ip(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("a running pod has an IP")
}

fn status_annotation(pod: &Pod) -> Value {
    let text = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("jvm-guard.io/status"))
        .unwrap_or_else(|| {
            panic!(
                "pod {} was not mutated (no jvm-guard.io/status): {}",
                pod.metadata.name.clone().unwrap_or_default(),
                serde_json::to_string(&pod.metadata).unwrap()
            )
        });
    serde_json::from_str(text).unwrap()
}

/// One plain HTTP/1.0 GET from the node to a pod (the host routes the pod bridge).
fn http_get(ip: &str, path: &str) -> Result<(u16, String), String> {
    let addr: SocketAddr = format!("{ip}:8080").parse().unwrap();
    let mut tcp =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    tcp.write_all(format!("GET {path} HTTP/1.0\r\nHost: {ip}\r\n\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    tcp.read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP response: {response:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {head:?}"))?;
    Ok((status, body.to_string()))
}

/// GETs until the app answers 200, for up to `seconds` (a JVM starting on a busy node).
async fn get_ok(ip: &str, path: &str, seconds: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let (ip2, path2) = (ip.to_string(), path.to_string());
        let result = tokio::task::spawn_blocking(move || http_get(&ip2, &path2))
            .await
            .unwrap();
        match result {
            Ok((200, body)) => return body,
            other if Instant::now() > deadline => {
                panic!("GET http://{ip}:8080{path}: no 200 within {seconds} s (last: {other:?})")
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// The pod's directory of the dump emptyDir on the node's disk (the kubelet's layout): the
/// `subPathExpr` of the app's dump mount, with the pod's name for `$(JVM_GUARD_POD_NAME)`.
fn dump_dir_on_node(pod: &Pod, container: &str) -> PathBuf {
    let name = pod.metadata.name.as_ref().unwrap();
    let mount = pod
        .spec
        .as_ref()
        .unwrap()
        .containers
        .iter()
        .find(|c| c.name == container)
        .and_then(|c| c.volume_mounts.as_ref())
        .and_then(|m| m.iter().find(|m| m.name == "jvm-guard-dumps"))
        .expect("the dump volume is mounted")
        .clone();
    let sub_path = mount
        .sub_path_expr
        .expect("a subPathExpr per pod")
        .replace("$(JVM_GUARD_POD_NAME)", name);
    assert!(
        sub_path == *name || sub_path.starts_with(&format!("{name}/")),
        "the pod's own directory: {sub_path}"
    );
    PathBuf::from(cluster::KUBELET_ROOT)
        .join("pods")
        .join(pod.metadata.uid.as_ref().unwrap())
        .join("volumes/kubernetes.io~empty-dir/jvm-guard-dumps")
        .join(sub_path)
}

fn hprofs(dir: &PathBuf) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".hprof"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn the_heap_formula_is_spec_4_1() {
    assert_eq!(auto_percentage(512 * MI), 25);
    assert_eq!(auto_percentage(640 * MI), 40);
    assert_eq!(auto_percentage(1024 * MI), 62);
    assert_eq!(auto_percentage(1280 * MI), 70);
    assert_eq!(auto_percentage(4096 * MI), 75);
    assert_eq!(auto_percentage(256 * MI), 25);
}

/// The image of tests/node/images.py is the Dockerfile's: same binary path, user, ports,
/// entrypoint and command. A change to one without the other fails here.
#[test]
fn the_local_image_is_laid_out_as_the_dockerfile() {
    let dockerfile = std::fs::read_to_string(cluster::repo().join("Dockerfile")).unwrap();
    let last_stage = dockerfile.rsplit("\nFROM ").next().unwrap();
    let instruction = |name: &str| -> Vec<String> {
        last_stage
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("{name} ")))
            .map(|s| s.trim().to_string())
            .collect()
    };
    let out = run_bounded(
        std::process::Command::new("python3")
            .arg(cluster::repo().join("tests/node/images.py"))
            .args(["config", cluster::JVM_GUARD_IMAGE]),
        60,
    );
    assert!(out.status.success(), "{out:?}");
    let config: Value = serde_json::from_slice(&out.stdout).unwrap();

    let copy = instruction("COPY");
    assert_eq!(copy.len(), 1, "one COPY in the final stage: {copy:?}");
    let binary = copy[0].split_whitespace().last().unwrap();
    assert!(
        last_stage.starts_with("gcr.io/distroless/static"),
        "a base without a shell"
    );
    let entrypoint: Value = serde_json::from_str(&instruction("ENTRYPOINT")[0]).unwrap();
    let cmd: Value = serde_json::from_str(&instruction("CMD")[0]).unwrap();
    assert_eq!(config["Entrypoint"], entrypoint);
    assert_eq!(config["Entrypoint"], json!([binary]));
    assert_eq!(config["Cmd"], cmd);
    assert_eq!(config["User"], json!(instruction("USER")[0]));
    let exposed: Vec<String> = instruction("EXPOSE")[0]
        .split_whitespace()
        .map(|p| format!("{p}/tcp"))
        .collect();
    let mut local: Vec<String> = config["ExposedPorts"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    local.sort();
    let mut exposed_sorted = exposed.clone();
    exposed_sorted.sort();
    assert_eq!(local, exposed_sorted);
    // The chart runs the same user.
    let deployment =
        std::fs::read_to_string(cluster::repo().join("charts/jvm-guard/templates/deployment.yaml"))
            .unwrap();
    let user = instruction("USER")[0]
        .split(':')
        .next()
        .unwrap()
        .to_string();
    assert!(deployment.contains(&format!("runAsUser: {user}")));
}

/// `helm install` of the real chart: both replicas scheduled by the scheduler and Ready, the
/// certificates made by helm, the webhook registered by Service, and the apiserver calling it
/// through that Service (kube-proxy's rules, the pods' IPs): a pod in a labelled namespace
/// comes back mutated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_installs_and_the_apiserver_calls_it_through_its_service() {
    let _shared = FAULTS.read().await;
    let cluster = cluster();
    eprintln!(
        "node booted in {:.1} s: {:?}",
        cluster.boot_time.as_secs_f64(),
        cluster.steps
    );
    let client = cluster.client().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), RELEASE_NAMESPACE);
    let deployment = deployments.get(RELEASE).await.unwrap();
    let status = deployment.status.unwrap();
    assert_eq!(status.ready_replicas, Some(2), "{}", cluster.helm_output);
    let pods: Api<Pod> = Api::namespaced(client.clone(), RELEASE_NAMESPACE);
    let webhook_pods = pods
        .list(&ListParams::default().labels("app.kubernetes.io/name=jvm-guard"))
        .await
        .unwrap();
    let running: Vec<_> = webhook_pods
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    assert_eq!(running.len(), 2);
    for pod in &running {
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.node_name.as_deref(), Some(cluster::NODE_NAME));
        assert_eq!(
            spec.containers[0].image.as_deref(),
            Some(cluster::JVM_GUARD_IMAGE)
        );
        assert!(is_ready_any(pod), "{pod:?}");
    }

    let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let config = configs.list(&ListParams::default()).await.unwrap();
    let webhook = config
        .items
        .iter()
        .flat_map(|c| c.webhooks.iter().flatten())
        .next()
        .expect("the chart registers a webhook");
    let service = webhook
        .client_config
        .service
        .as_ref()
        .expect("registered by Service");
    assert!(webhook.client_config.url.is_none());
    assert!(webhook
        .client_config
        .ca_bundle
        .as_ref()
        .is_some_and(|b| !b.0.is_empty()));
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), RELEASE_NAMESPACE);
    let slices = slices
        .list(
            &ListParams::default().labels(&format!("kubernetes.io/service-name={}", service.name)),
        )
        .await
        .unwrap();
    let ready_endpoints = slices
        .items
        .iter()
        .flat_map(|s| s.endpoints.iter().flatten())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
        .count();
    assert_eq!(ready_endpoints, 2, "both replicas behind the Service");

    // The apiserver reaches the webhook only through the Service's ClusterIP.
    injected_namespace(&client, "node-chart").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "node-chart");
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe"},
        "spec": {"containers": [{"name": "app", "image": SHELL_IMAGE,
            "command": ["java", "-cp", "/app", "App"],
            "resources": {"limits": {"memory": "512Mi"}}}]},
    }))
    .unwrap();
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    // The ServiceAccount controller makes `default` in a new namespace in a moment.
    let deadline = Instant::now() + Duration::from_secs(60);
    let created = loop {
        match pods.create(&dry_run, &pod).await {
            Ok(pod) => break pod,
            Err(e) if Instant::now() < deadline => {
                eprintln!("dry-run create: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => panic!("dry-run create: {e}"),
        }
    };
    let status = status_annotation(&created);
    assert!(status.to_string().contains("memory"), "{status}");
}

fn is_ready_any(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// (1) The heap the JVM really has is the formula of SPEC §4.1 for the container's limit:
/// HotSpot's MaxRAMPercentage and the MaxHeapSize it computed from the cgroup limit, read from
/// the running app, in the image without a shell (the static agent runs there too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jvm_heap_is_the_formula_of_the_container_limit() {
    let _shared = FAULTS.read().await;
    let cluster = cluster();
    let client = cluster.client().await;
    let ns = "node-heap";
    injected_namespace(&client, ns).await;
    // Limits where L * p / 100 is a whole number of MiB, so HotSpot's alignment keeps it.
    let cases = [("heap-640", 640 * MI), ("heap-1280", 1280 * MI)];
    for (name, limit) in cases {
        deploy(
            &client,
            ns,
            app(name, DISTROLESS_IMAGE, &format!("{}Mi", limit / MI)),
        )
        .await;
    }
    for (name, limit) in cases {
        let pod = wait_pod(&client, ns, name, 300, "running", running).await;
        let status = status_annotation(&pod);
        let memory: Value = serde_json::from_str(&get_ok(&pod_ip(&pod), "/memory", 180).await)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let p = auto_percentage(limit);
        assert_eq!(
            memory["MaxRAMPercentage"].as_f64(),
            Some(p as f64),
            "{name}: {memory} (status {status})"
        );
        assert_eq!(
            memory["MinRAMPercentage"].as_f64(),
            Some(p as f64),
            "{memory}"
        );
        let heap = limit * p / 100;
        assert_eq!(
            heap % (2 * MI),
            0,
            "a limit HotSpot's alignment keeps exact"
        );
        assert_eq!(
            memory["MaxHeapSize"].as_u64(),
            Some(heap),
            "{name}: limit {limit}, p {p}: {memory}"
        );
        let max_memory = memory["maxMemory"].as_u64().unwrap();
        assert!(max_memory <= heap && max_memory > heap / 2, "{memory}");
        // The image's own JAVA_TOOL_OPTIONS (an image ENV admission never sees) is kept, ours
        // merged before it by the agent at start.
        let options: Value =
            serde_json::from_str(&get_ok(&pod_ip(&pod), "/options", 60).await).unwrap();
        assert_eq!(options["image.env"], "kept", "{options}");
        let merged = options["JAVA_TOOL_OPTIONS"].as_str().unwrap_or_default();
        assert!(
            merged.starts_with(&format!("-XX:MaxRAMPercentage={p}.0 "))
                && merged.ends_with(" -Dimage.env=kept"),
            "{name}: {merged}"
        );
        let log = app_log(&client, &pod, false).await;
        assert!(
            log.lines().any(|l| l.starts_with("jvm-guard: JDK 17.")
                && l.contains("; JAVA_TOOL_OPTIONS += ")
                && l.contains("no /bin/sh")),
            "the agent's line: {log}"
        );
        // `inspect`, through the apiserver's exec API as `kubectl exec` runs it, in an image
        // without a shell: the heap the JVM really has, and the container's limit.
        let report = inspect(&client, &pod).await;
        assert_eq!(
            report["jvm"]["max_heap_bytes"].as_u64(),
            Some(heap),
            "{name}: {report:#}"
        );
        assert_eq!(
            report["memory_limit"]["limit_bytes"].as_u64(),
            Some(limit),
            "{report:#}"
        );
        assert_eq!(report["dumps"]["dir"], "/dumps", "{report:#}");
    }
}

/// `jvm-guard inspect -o json` run in the pod's app container through the exec API.
/// A JDK 8u151 (the stand-in of tests/node/images.py, which stops on the RAM percentages as
/// HotSpot 8u151 does and otherwise sizes its heap from the host) starts through the agent with
/// a heap from its limit: the agent reads its `release` file and passes an `-Xmx` instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jdk_8u151_starts_with_a_heap_from_its_limit() {
    let _shared = FAULTS.read().await;
    let cluster = cluster();
    let client = cluster.client().await;
    let ns = "node-jdk8";
    injected_namespace(&client, ns).await;
    let limit = 640 * MI;
    deploy(&client, ns, app("jdk8", STANDIN_IMAGE, "640Mi")).await;
    let pod = wait_pod(&client, ns, "jdk8", 300, "running", running).await;
    let memory = get_ok(&pod_ip(&pod), "/memory", 180).await;
    let memory: Value = serde_json::from_str(&memory).unwrap();
    let heap = limit * auto_percentage(limit) / 100;
    assert_eq!(memory["MaxHeapSize"].as_u64(), Some(heap), "{memory}");
    let log = app_log(&client, &pod, false).await;
    let line = format!(
        "jvm-guard: JDK 8u151 (/usr/lib/jvm/java-8-standin/release): memory as -Xmx{}m from the {} MiB limit",
        heap / MI,
        limit / MI
    );
    assert!(log.lines().any(|l| l.starts_with(&line)), "{line}\n{log}");
    assert_eq!(restarts(&pod), 0, "{log}");
}

async fn inspect(client: &Client, pod: &Pod) -> Value {
    use kube::api::AttachParams;
    use tokio::io::AsyncReadExt;
    let ns = pod.metadata.namespace.as_deref().unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let params = AttachParams::default()
        .container("app")
        .stdout(true)
        .stderr(true);
    let command = ["/jvm-guard/bin/jvm-guard", "inspect", "-o", "json"];
    let name = pod.metadata.name.as_deref().unwrap();
    let mut attached = within(30, "exec inspect", pods.exec(name, command, &params))
        .await
        .unwrap_or_else(|e| panic!("exec into {name}: {e}"));
    let mut stdout = attached.stdout().expect("stdout");
    let mut stderr = attached.stderr().expect("stderr");
    let (mut out, mut err) = (String::new(), String::new());
    let read = async {
        stdout.read_to_string(&mut out).await.unwrap();
        stderr.read_to_string(&mut err).await.unwrap();
    };
    within(30, "inspect output", read).await;
    let _ = attached.join().await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("inspect -o json: {e}\n{out}\n{err}"))
}

/// (2) An OutOfMemoryError writes a dump into the pod's own directory of the dump emptyDir
/// (on the node's disk), the JVM exits 3, the kubelet restarts it, it serves again; a second
/// OutOfMemoryError leaves a second dump (the shell image: the hook renames the first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oom_dumps_into_the_pods_dir_exits_3_and_restarts() {
    let _shared = FAULTS.read().await;
    oom_twice("node-oom", SHELL_IMAGE).await;
}

/// The same without a shell (SPEC §4.4): HotSpot cannot run the hook, the agent renames the
/// first dump when the container restarts, and the second OutOfMemoryError keeps its dump too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oom_twice_keeps_both_dumps_in_an_image_without_a_shell() {
    let _shared = FAULTS.read().await;
    oom_twice("node-oom-distroless", DISTROLESS_IMAGE).await;
}

async fn oom_twice(ns: &str, image: &str) {
    let cluster = cluster();
    let client = cluster.client().await;
    injected_namespace(&client, ns).await;
    deploy(&client, ns, app("oom", image, "512Mi")).await;
    let pod = wait_pod(&client, ns, "oom", 300, "running", running).await;
    status_annotation(&pod);
    let name = pod.metadata.name.clone().unwrap();
    let ip = pod_ip(&pod);
    get_ok(&ip, "/health", 180).await;
    let dir = dump_dir_on_node(&pod, "app");
    assert_eq!(hprofs(&dir), Vec::<String>::new(), "no dump before the OOM");
    let status = status_annotation(&pod);
    assert_eq!(
        status["containers"]["app"]["agent"], "supervise",
        "{status}"
    );
    assert_eq!(
        status["containers"]["app"]["verdict"], "/dev/termination-log",
        "{status}"
    );

    for round in 1..=2 {
        // The request never gets an answer: the JVM dumps and exits.
        let ip2 = ip.clone();
        let _ = tokio::task::spawn_blocking(move || http_get(&ip2, "/oom")).await;
        let pod = wait_pod(
            &client,
            ns,
            "oom",
            300,
            &format!("restarted {round} time(s) and running"),
            |p| restarts(p) >= round && running(p),
        )
        .await;
        assert_eq!(
            pod.metadata.name.as_deref(),
            Some(name.as_str()),
            "same pod"
        );
        let last = app_status(&pod)
            .unwrap()
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .expect("lastState.terminated")
            .clone();
        assert_eq!(last.exit_code, 3, "ExitOnOutOfMemoryError: {last:?}");
        get_ok(&ip, "/health", 180).await;
        let dumps = hprofs(&dir);
        // The supervising agent's verdict, in the pod's own status: the dump it names is on
        // the node's disk.
        let message = last.message.clone().unwrap_or_default();
        let lines: Vec<&str> = message.lines().collect();
        assert_eq!(
            lines.first().copied(),
            Some(
                "jvm-guard: heap OutOfMemoryError: the JVM exited 3 (-XX:+ExitOnOutOfMemoryError)"
            ),
            "{message}"
        );
        let named = lines[1].strip_prefix("dump: /dumps/").unwrap_or_default();
        assert!(
            dumps.iter().any(|d| d == named),
            "{message}\ndumps: {dumps:?}"
        );
        assert!(lines[2].starts_with("at the end: heap "), "{message}");
        assert_eq!(
            dumps.len(),
            round as usize,
            "dumps in {} after OOM {round}: {dumps:?}\nthe run that ran out of memory:\n{}",
            dir.display(),
            app_log(&client, &pod, true).await
        );
        // The container sees the same directory as /dumps.
        let listed = get_ok(&ip, "/ls?dir=/dumps", 60).await;
        for dump in &dumps {
            assert!(listed.lines().any(|l| l == dump), "{listed}");
        }
        // The pod watcher: one Event on the pod and one on its Deployment for the crash loop,
        // counting the OOMs. Its note is the first crash's verdict (a series repeats its
        // Event), naming the first dump; the pod's status has the latest.
        let found = watcher_events(&client, ns, "JvmHeapOutOfMemory", &pod, "oom", round).await;
        let note = found[0].note.clone().unwrap_or_default();
        assert!(
            note.starts_with("container app: jvm-guard: heap OutOfMemoryError")
                && note.contains(&dumps[0]),
            "{note}\ndumps: {dumps:?}"
        );
    }
}

/// The kernel's OOM killer at the container's memory limit, with the heap far from full: the
/// JVM allocates native memory until it is killed. The supervising agent survives its child
/// (on cgroup v1 the kernel kills the biggest process) and leaves its verdict in the pod's
/// status, with the heap and the rest at its last sample.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kernel_oom_kill_leaves_its_verdict_in_the_pod_status() {
    let _shared = FAULTS.read().await;
    let ns = "node-kernel-oom";
    let cluster = cluster();
    let client = cluster.client().await;
    injected_namespace(&client, ns).await;
    deploy(&client, ns, app("native", SHELL_IMAGE, "512Mi")).await;
    let pod = wait_pod(&client, ns, "native", 300, "running", running).await;
    let ip = pod_ip(&pod);
    get_ok(&ip, "/health", 180).await;
    // Past the first samples of a JVM at rest.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let ip2 = ip.clone();
    let _ = tokio::task::spawn_blocking(move || http_get(&ip2, "/native")).await;
    let pod = wait_pod(&client, ns, "native", 300, "restarted", |p| {
        restarts(p) >= 1
    })
    .await;
    let last = app_status(&pod)
        .unwrap()
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .expect("lastState.terminated")
        .clone();
    let message = last.message.clone().unwrap_or_default();
    let log = app_log(&client, &pod, true).await;
    assert_eq!(last.exit_code, 137, "{last:?}\n{log}");
    let lines: Vec<&str> = message.lines().collect();
    assert!(
        lines.first().is_some_and(|l| l.starts_with(
            "jvm-guard: killed by the kernel at the container's memory limit (SIGKILL, exit code 137; OOM kills 0 -> 1)"
        )),
        "{last:?}\n{log}"
    );
    // Heap and the rest at the last sample: the heap is small, the rest is what grew.
    assert!(
        lines[1].starts_with("at the last sample: heap ")
            && lines[1].contains("of a 512 MiB limit"),
        "{message}"
    );
    assert!(
        message.contains("raise jvm-guard.io/non-heap-reserve"),
        "{message}"
    );
    assert!(message.len() <= 4096);
    println!(
        "kernel OOM kill: reason {:?}, message:\n{message}",
        last.reason
    );
    // The pod watcher says so on the pod and on its Deployment, with the sample.
    let found = watcher_events(&client, ns, "JvmKilledByKernel", &pod, "native", 1).await;
    let note = found[0].note.clone().unwrap_or_default();
    assert!(
        note.starts_with("container app: jvm-guard: killed by the kernel"),
        "{note}"
    );
    assert_eq!(found[0].type_.as_deref(), Some("Warning"));
}

/// Deleting the pod sends SIGTERM to the agent (pid 1), which passes it to the JVM: the
/// JVM's shutdown hook runs and its exit code is the container's, well within the grace period
/// (a signal lost would wait out the 30 s and end in SIGKILL, 137).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_reaches_the_jvm_and_the_pod_ends_with_its_exit_code() {
    use futures_util::StreamExt as _;
    use kube::api::{DeleteParams, WatchEvent, WatchParams};
    let _shared = FAULTS.read().await;
    let ns = "node-sigterm";
    let cluster = cluster();
    let client = cluster.client().await;
    injected_namespace(&client, ns).await;
    let mut deployment = app("term", DISTROLESS_IMAGE, "512Mi");
    deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = json!(30);
    env(&mut deployment, "TERM_EXIT_CODE", "42");
    deploy(&client, ns, deployment).await;
    let pod = wait_pod(&client, ns, "term", 300, "running", running).await;
    get_ok(&pod_ip(&pod), "/health", 180).await;
    let name = pod.metadata.name.clone().unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let watch = WatchParams::default().fields(&format!("metadata.name={name}"));
    let version = pod.metadata.resource_version.clone().unwrap();
    let mut events = within(30, "watch the pod", pods.watch(&watch, &version))
        .await
        .unwrap()
        .boxed();
    let started = Instant::now();
    within(
        30,
        "delete the pod",
        pods.delete(&name, &DeleteParams::default()),
    )
    .await
    .unwrap();
    // The last state the kubelet reported before the pod went away.
    let mut terminated = None;
    let gone = within(60, "the pod gone", async {
        while let Some(event) = events.next().await {
            let (pod, deleted) = match event {
                Ok(WatchEvent::Modified(pod)) => (pod, false),
                Ok(WatchEvent::Deleted(pod)) => (pod, true),
                _ => continue,
            };
            let state = app_status(&pod).and_then(|s| s.state.as_ref());
            if let Some(t) = state.and_then(|s| s.terminated.as_ref()) {
                terminated.get_or_insert((t.clone(), started.elapsed()));
            }
            if deleted {
                return started.elapsed();
            }
        }
        panic!("the watch ended before the pod was deleted");
    })
    .await;
    let (terminated, at) = terminated.expect("the kubelet reported the container terminated");
    assert_eq!(terminated.exit_code, 42, "{terminated:?}");
    assert!(
        at < Duration::from_secs(15),
        "terminated {at:?} after the delete, gone after {gone:?}: the grace period ran out"
    );
    let message = terminated.message.unwrap_or_default();
    assert!(
        message.starts_with("jvm-guard: the command exited with code 42\n"),
        "{message}"
    );
    println!("SIGTERM: exit code 42 {at:?} after the delete, pod gone after {gone:?}");
}

/// (3) `jvm-guard.io/ulimits` reaches the JVM: /proc/self/limits of the java process (values
/// under the hard limit this machine's processes have: no CAP_SYS_RESOURCE to raise it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ulimits_are_what_the_jvm_sees() {
    let _shared = FAULTS.read().await;
    let cluster = cluster();
    let mut hard = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut hard) };
    assert!(
        hard.rlim_max >= 4096,
        "the node's hard nofile limit is {}: the test needs 4096",
        hard.rlim_max
    );
    let client = cluster.client().await;
    let ns = "node-ulimits";
    injected_namespace(&client, ns).await;
    let mut deployment = app("ulimits", DISTROLESS_IMAGE, "512Mi");
    annotate(
        &mut deployment,
        "jvm-guard.io/ulimits",
        "nofile=2048:4096,core=0",
    );
    deploy(&client, ns, deployment).await;
    let pod = wait_pod(&client, ns, "ulimits", 300, "running", running).await;
    status_annotation(&pod);
    let limits = get_ok(&pod_ip(&pod), "/limits", 180).await;
    let row = |name: &str| -> Vec<String> {
        limits
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in {limits}"))[name.len()..]
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    // The agent sets them before it starts the JVM (its child inherits them).
    let command = pod.spec.as_ref().unwrap().containers[0]
        .command
        .clone()
        .unwrap_or_default()
        .join(" ");
    assert!(
        command.starts_with(
            "/jvm-guard/bin/jvm-guard exec --supervise --termination-log /dev/termination-log \
             --rlimit nofile=2048:4096"
        ),
        "{command}"
    );
    // The hard limit is jvm-guard's (below the node's); HotSpot itself raises its soft limit
    // to the hard one at start (-XX:+MaxFDLimit, on by default on Linux).
    let log = app_log(&client, &pod, false).await;
    assert_eq!(
        row("Max open files")[..2],
        ["4096", "4096"],
        "{limits}\n{log}"
    );
    assert_eq!(
        row("Max core file size")[..2],
        ["0", "0"],
        "{limits}\n{log}"
    );
}

/// (4) A JVM that takes 45 s to listen survives thanks to the startup probe the webhook adds
/// (`probes: http`), which the kubelet really runs (its failures are events), and becomes
/// Ready through the added readiness probe, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_start_survives_with_the_added_startup_probe() {
    let _shared = FAULTS.read().await;
    let cluster = cluster();
    let client = cluster.client().await;
    let ns = "node-slow";
    injected_namespace(&client, ns).await;
    let slow = 45;
    let mut deployment = app("slow", SHELL_IMAGE, "512Mi");
    annotate(&mut deployment, "jvm-guard.io/probes", "http");
    annotate(&mut deployment, "jvm-guard.io/probe-path", "/health");
    env(&mut deployment, "SLOW_START_SECONDS", &slow.to_string());
    deploy(&client, ns, deployment).await;

    let pod = wait_pod(&client, ns, "slow", 300, "running", running).await;
    status_annotation(&pod);
    let container = &pod.spec.as_ref().unwrap().containers[0];
    let startup = container
        .startup_probe
        .as_ref()
        .expect("the webhook added a startup probe");
    assert_eq!(
        startup.http_get.as_ref().and_then(|h| h.path.as_deref()),
        Some("/health")
    );
    assert!(container.readiness_probe.is_some() && container.liveness_probe.is_some());
    let started = app_status(&pod)
        .unwrap()
        .state
        .as_ref()
        .unwrap()
        .running
        .as_ref()
        .unwrap()
        .started_at
        .clone()
        .unwrap()
        .0;

    let pod = wait_pod(&client, ns, "slow", 400, "Ready", is_ready).await;
    assert_eq!(restarts(&pod), 0, "the slow start was not killed");
    let ready_at = pod
        .status
        .as_ref()
        .unwrap()
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .last_transition_time
        .clone()
        .unwrap()
        .0;
    let took = ready_at.as_second() - started.as_second();
    assert!(
        took >= slow - 1,
        "Ready {took} s after the start: before the app listened?"
    );
    let events = events(&client, ns).await;
    assert!(
        events.contains("Startup probe failed"),
        "the kubelet ran the startup probe while the app slept:\n{events}"
    );
}

/// The control for (4): the same slow app with a startup timeout shorter than its start is
/// killed by the added probes and restarted. The probes are enforced, not decoration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_startup_timeout_shorter_than_the_start_restarts_the_app() {
    let _shared = FAULTS.read().await;
    let cluster = cluster();
    let client = cluster.client().await;
    let ns = "node-slow-control";
    injected_namespace(&client, ns).await;
    let mut deployment = app("slow-control", SHELL_IMAGE, "512Mi");
    annotate(&mut deployment, "jvm-guard.io/probes", "http");
    annotate(&mut deployment, "jvm-guard.io/probe-path", "/health");
    annotate(&mut deployment, "jvm-guard.io/startup-timeout", "15");
    env(&mut deployment, "SLOW_START_SECONDS", "45");
    deploy(&client, ns, deployment).await;
    let pod = wait_pod(&client, ns, "slow-control", 300, "running", running).await;
    status_annotation(&pod);
    assert!(pod.spec.as_ref().unwrap().containers[0]
        .startup_probe
        .is_some());
    let pod = wait_pod(&client, ns, "slow-control", 400, "restarted", |p| {
        restarts(p) >= 1
    })
    .await;
    assert!(!is_ready(&pod));
}

/// (5) In a `restricted` Pod Security namespace the mutated pod is admitted and runs; the tools
/// init container ran as non-root (the files it wrote on the node belong to the pod's runAsUser).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restricted_namespace_runs_the_pod_with_a_non_root_init_container() {
    let _shared = FAULTS.read().await;
    let cluster = cluster();
    let client = cluster.client().await;
    let ns = "node-restricted";
    namespace(
        &client,
        ns,
        &[
            ("jvm-guard.io/inject", "enabled"),
            ("pod-security.kubernetes.io/enforce", "restricted"),
            ("pod-security.kubernetes.io/enforce-version", "latest"),
        ],
    )
    .await;
    wait_injecting(&client, ns).await;
    let mut deployment = app("restricted", DISTROLESS_IMAGE, "512Mi");
    deployment["spec"]["template"]["spec"]["securityContext"] = json!({
        "runAsNonRoot": true, "runAsUser": 1000, "runAsGroup": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    });
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"] = json!({
        "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]},
    });
    deploy(&client, ns, deployment).await;
    let pod = wait_pod(&client, ns, "restricted", 300, "running", running).await;
    status_annotation(&pod);
    get_ok(&pod_ip(&pod), "/health", 180).await;

    let init_status = pod
        .status
        .as_ref()
        .unwrap()
        .init_container_statuses
        .iter()
        .flatten()
        .find(|s| s.name == "jvm-guard-tools")
        .unwrap();
    let terminated = init_status
        .state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .expect("the init container ran to its end");
    assert_eq!(terminated.exit_code, 0);
    // What it wrote, on the node's disk: owned by the user it really ran as.
    let tools = PathBuf::from(cluster::KUBELET_ROOT)
        .join("pods")
        .join(pod.metadata.uid.as_ref().unwrap())
        .join("volumes/kubernetes.io~empty-dir/jvm-guard-tools");
    let mut owners = Vec::new();
    for entry in std::fs::read_dir(&tools).unwrap() {
        let entry = entry.unwrap();
        owners.push((
            entry.file_name().to_string_lossy().into_owned(),
            std::os::unix::fs::MetadataExt::uid(&entry.metadata().unwrap()),
        ));
    }
    assert!(!owners.is_empty(), "{}", tools.display());
    // No fixed runAsUser on the init container (OpenShift's SCCs refuse one): it runs as the
    // pod's runAsUser, as the app does, and as the image's numeric user (65532) without one.
    for (name, uid) in &owners {
        assert_ne!(*uid, 0, "{name} written by root");
        assert_eq!(*uid, 1000, "{name}: the pod's runAsUser");
    }
}

/// (6, first half) SPEC §4.4: the tools init container has no ServiceAccount token: our own
/// mount at the token path keeps the ServiceAccount admission plugin, reinvoked after the
/// webhook, from adding the `kube-api-access-*` volume to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tools_init_container_gets_no_api_token() {
    let _shared = FAULTS.read().await;
    let cluster = cluster();
    let client = cluster.client().await;
    let ns = "node-token";
    injected_namespace(&client, ns).await;
    deploy(&client, ns, app("token", DISTROLESS_IMAGE, "512Mi")).await;
    let pod = wait_pod(&client, ns, "token", 300, "running", running).await;
    let init = pod
        .spec
        .as_ref()
        .unwrap()
        .init_containers
        .iter()
        .flatten()
        .find(|c| c.name == "jvm-guard-tools")
        .expect("the tools init container")
        .clone();
    let mounts = init.volume_mounts.iter().flatten();
    let token_mounts: Vec<_> = mounts
        .filter(|m| {
            m.mount_path.contains("serviceaccount") || m.name.starts_with("kube-api-access")
        })
        .collect();
    assert!(
        token_mounts.iter().all(|m| m.name == "jvm-guard-tools"),
        "an API token in the init container: {token_mounts:?}"
    );
    assert!(
        !token_mounts.is_empty(),
        "our mount at the token path is there"
    );
}
