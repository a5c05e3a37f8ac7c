//! The pod watcher (`serve --watch-pods`) against the real apiserver: two replicas, one Lease;
//! a guarded container's termination, as the kubelet reports it in the pod's status (written
//! here through the status subresource: there is no kubelet in this cluster; the node suite
//! has the real one), becomes one Event on the pod and one on its Deployment, aggregated
//! across a crash loop; a pod created before its namespace opted in is reported unguarded.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{json, Value};

use crate::cluster::{
    admin_get, create_namespace, Serve, OWN_WEBHOOK_NAMESPACES, WEBHOOK_NAMESPACE,
};
use crate::process::within;
use crate::{create, is_mutated, setup, INJECT};

const HEAP_OOM: &str = "jvm-guard: heap OutOfMemoryError: the JVM exited 3 (-XX:+ExitOnOutOfMemoryError)\ndump: /dumps/api/jvm-guard-1.hprof";
const KERNEL: &str = "jvm-guard: killed by the kernel at the container's memory limit (SIGKILL, exit code 137; OOM kills 0 -> 1)";

fn watcher(cluster: &crate::cluster::Cluster, identity: &str) -> Serve {
    Serve::start_with(
        &cluster.kubeconfig,
        &cluster.webhook_certs,
        identity,
        &["--watch-pods", "--watch-identity", identity, "--offline"],
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The value of a sample of the replica's `/metrics`.
fn metric(serve: &Serve, series: &str) -> Option<f64> {
    let (_, body) = admin_get(serve.admin, "/metrics")?;
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

/// The index of the replica that holds the Lease, once one does (of those running).
async fn leader(replicas: &[Serve]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let leading: Vec<usize> = (0..replicas.len())
            .filter(|&i| metric(&replicas[i], "jvm_guard_pod_watcher_leader") == Some(1.0))
            .collect();
        match leading[..] {
            [one] => return one,
            [] if Instant::now() < deadline => {}
            _ => panic!("{} leaders", leading.len()),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A container status as the kubelet writes it after the container's `run`-th run ended.
fn crashed(run: u32, exit_code: i32, reason: &str, message: &str) -> Value {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    json!({"status": {"containerStatuses": [{
        "name": "app", "image": "eclipse-temurin:21-jre", "imageID": "", "ready": false,
        "restartCount": run,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {
            "containerID": format!("containerd://run-{run}"), "exitCode": exit_code,
            "reason": reason, "message": message, "startedAt": now, "finishedAt": now}},
    }]}})
}

/// The Events of `ns` with `reason`, once there are `want` of them (or what there is after
/// 30 s).
async fn events(client: &Client, ns: &str, reason: &str, want: usize) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = within(30, "list events", api.list(&ListParams::default()))
            .await
            .unwrap();
        let found: Vec<Event> = list
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .collect();
        if found.len() >= want || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn regarding(e: &Event) -> String {
    let r = e.regarding.as_ref().unwrap();
    format!(
        "{}/{}",
        r.kind.as_deref().unwrap_or(""),
        r.name.as_deref().unwrap_or("")
    )
}

fn count(e: &Event) -> i32 {
    e.series.as_ref().map_or(1, |s| s.count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminations_and_unguarded_pods_become_events_from_one_replica() {
    let (cluster, client, _shared) = setup().await;
    // The Lease lives in the webhook's namespace.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if within(30, "get ns", namespaces.get_opt(WEBHOOK_NAMESPACE))
        .await
        .unwrap()
        .is_none()
    {
        create_namespace(&client, WEBHOOK_NAMESPACE, &[], &[]).await;
    }
    let ns = "e2e-watch";
    create_namespace(&client, ns, &[(INJECT, "enabled")], &[]).await;
    let late = "e2e-watch-late";
    create_namespace(&client, late, &[], &[]).await;
    let unguarded = create(&client, late, crate::cluster::jvm_pod("before-opt-in")).await;
    assert!(!is_mutated(&unguarded));

    let replicas = [watcher(cluster, "watcher-a"), watcher(cluster, "watcher-b")];
    let lead = leader(&replicas).await;
    let (first, other) = (&replicas[lead], &replicas[1 - lead]);
    println!("leader: replica {lead}");

    // A Deployment's pod (owned by its ReplicaSet), guarded by the shared webhook.
    let mut pod = crate::cluster::jvm_pod("api-7d9f-x1");
    pod["metadata"]["labels"] = json!({"pod-template-hash": "7d9f"});
    pod["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "name": "api-7d9f", "uid": "3a4c1b8e-0000-4000-8000-000000000001", "controller": true}]);
    let created = create(&client, ns, pod).await;
    assert!(is_mutated(&created), "the shared webhook guards it");
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let status = |run, code, reason: &'static str, message: &'static str| {
        let pods = pods.clone();
        async move {
            within(
                30,
                "patch status",
                pods.patch_status(
                    "api-7d9f-x1",
                    &PatchParams::default(),
                    &Patch::Strategic(crashed(run, code, reason, message)),
                ),
            )
            .await
            .unwrap();
        }
    };

    // Two heap OOMs of one crash loop: one Event on the pod, one on the Deployment, each
    // counting 2.
    status(1, 3, "Error", HEAP_OOM).await;
    let found = events(&client, ns, "JvmHeapOutOfMemory", 2).await;
    let mut on: Vec<String> = found.iter().map(regarding).collect();
    on.sort();
    assert_eq!(on, ["Deployment/api", "Pod/api-7d9f-x1"], "{found:#?}");
    let pod_event = found
        .iter()
        .find(|e| regarding(e).starts_with("Pod/"))
        .unwrap();
    assert_eq!(
        pod_event.regarding.as_ref().unwrap().uid,
        created.metadata.uid
    );
    let note = pod_event.note.as_deref().unwrap_or_default();
    assert!(
        note.starts_with("container app: jvm-guard: heap OutOfMemoryError")
            && note.contains("dump: /dumps/api/jvm-guard-1.hprof"),
        "{note}"
    );
    assert_eq!(pod_event.type_.as_deref(), Some("Warning"));
    status(2, 3, "Error", HEAP_OOM).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let found = loop {
        let found = events(&client, ns, "JvmHeapOutOfMemory", 2).await;
        if found.iter().all(|e| count(e) == 2) || Instant::now() > deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(found.len(), 2, "aggregated, not a second Event: {found:#?}");
    assert!(found.iter().all(|e| count(e) == 2), "{found:#?}");

    // The kernel's kill is its own reason, and its own count.
    status(3, 137, "OOMKilled", KERNEL).await;
    let found = events(&client, ns, "JvmKilledByKernel", 2).await;
    assert_eq!(found.len(), 2, "{found:#?}");
    assert_eq!(
        metric(
            first,
            "jvm_guard_container_terminations_total{reason=\"heap_oom\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(
            first,
            "jvm_guard_container_terminations_total{reason=\"kernel_oom\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            other,
            "jvm_guard_container_terminations_total{reason=\"heap_oom\"}"
        ),
        Some(0.0),
        "only the leader watches"
    );

    // A pod of a namespace that opted in after it was created: unguarded, Event and gauge.
    within(
        30,
        "label",
        namespaces.patch(
            late,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {INJECT: "enabled"}}})),
        ),
    )
    .await
    .unwrap();
    let found = events(&client, late, "JvmGuardUnguarded", 1).await;
    assert_eq!(
        found.iter().map(regarding).collect::<Vec<_>>(),
        ["Pod/before-opt-in"],
        "{found:#?}"
    );
    // A pod of an opted-in namespace that no webhook saw (no webhook serves this namespace:
    // as if jvm-guard were scaled to zero under failurePolicy Ignore).
    let missed = OWN_WEBHOOK_NAMESPACES[3];
    create_namespace(&client, missed, &[(INJECT, "enabled")], &[]).await;
    let pod = create(&client, missed, crate::cluster::jvm_pod("while-down")).await;
    assert!(!is_mutated(&pod));
    let found = events(&client, missed, "JvmGuardUnguarded", 1).await;
    assert_eq!(
        found.iter().map(regarding).collect::<Vec<_>>(),
        ["Pod/while-down"],
        "{found:#?}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(first, "jvm_guard_unguarded_pods").unwrap_or(0.0) < 2.0 {
        assert!(Instant::now() < deadline, "no unguarded pod counted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The leader goes away: the other replica takes the Lease and reports the next end.
    first.stop();
    let started = Instant::now();
    assert_eq!(leader(&replicas).await, 1 - lead);
    println!("Lease taken over in {:?}", started.elapsed());
    status(4, 1, "Error", "jvm-guard: the command exited with code 1").await;
    let found = events(&client, ns, "JvmExited", 2).await;
    assert_eq!(found.len(), 2, "{found:#?}");
    assert_eq!(
        metric(
            other,
            "jvm_guard_container_terminations_total{reason=\"exited\"}"
        ),
        Some(1.0)
    );
}
