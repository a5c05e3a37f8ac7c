//! `jvm-guard report`: one line per JVM container of the pods in scope, like `kubectl get`:
//! what the webhook decided (the `jvm-guard.io/status` annotation), the heap maximum its flags
//! give against the memory limit, restarts, and the verdict the supervising agent left in the
//! container's last termination message. Pods of opted-in namespaces that carry no status are
//! listed as unguarded. `--live` adds what the running JVM reports (`inspect` in the container).
//!
//! [`rows`] is a pure function of the pods and the opted-in namespaces; [`gather`] reads them.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Container, Namespace, Pod};
use kube::api::ListParams;
use kube::Api;
use serde::Serialize;

use crate::config::quantity::Quantity;
use crate::config::{INJECT_LABEL, STATUS_ANNOTATION};
use crate::mutate::left_alone_by_design;
use crate::mutate::status::{ContainerStatus, Status};
use crate::options::heap_in;
use crate::watch::Workload;

use super::{container_status, RemoteError};

/// Which pods: one namespace, or every opted-in namespace.
#[derive(Debug, Clone)]
pub enum Scope {
    Namespace(String),
    OptedIn,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    /// `Deployment/api`, `StatefulSet/db`, `Job/x`, or `Pod/<name>` for a bare pod.
    pub workload: String,
    /// `guarded`, `unguarded` (opted-in namespace, no status) or `opted-out`.
    pub state: String,
    /// Why the container is a target: `seen`, `assumed`, `named`.
    pub jvm: Option<String>,
    pub profile: Option<String>,
    /// The variable the JVM flags go to.
    pub via: Option<String>,
    /// The heap maximum the container's flags give, and who sets it.
    pub heap_max: Option<u64>,
    pub heap_by: Option<String>,
    pub memory_limit: Option<u64>,
    pub restarts: i32,
    /// The last termination: the agent's verdict line, else the reason and exit code.
    pub last_verdict: Option<String>,
    pub applied: Vec<String>,
    pub unverified: Vec<String>,
    pub skipped: Vec<String>,
    /// `--live`: what the running JVM reports.
    pub live: Option<Live>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Live {
    pub max_heap: Option<u64>,
    pub dumps: Option<usize>,
    pub error: Option<String>,
}

/// The rows of `pods`; `opted_in`: the namespaces labelled for injection.
pub fn rows(pods: &[Pod], opted_in: &BTreeSet<String>) -> Vec<Row> {
    let mut out = Vec::new();
    for pod in pods {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let annotations = pod.metadata.annotations.as_ref();
        let status: Option<Status> = annotations
            .and_then(|a| a.get(STATUS_ANNOTATION))
            .and_then(|s| serde_json::from_str(s).ok());
        let opted_out = pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(INJECT_LABEL))
            .is_some_and(|v| v == "false");
        // Helm test hooks and Windows pods: the webhook leaves them alone unmarked. Asked once
        // per pod, and only of a pod it could have marked.
        let by_design =
            status.is_none() && !opted_out && left_alone_by_design(&pod.into()).is_some();
        let containers = pod.spec.iter().flat_map(|s| s.containers.iter());
        for c in containers {
            let base = |state: &str| Row {
                namespace: namespace.clone(),
                pod: pod.metadata.name.clone().unwrap_or_default(),
                container: c.name.clone(),
                workload: Workload::of(pod).to_string(),
                state: state.into(),
                jvm: None,
                profile: None,
                via: None,
                heap_max: None,
                heap_by: None,
                memory_limit: limit(c),
                restarts: restarts(pod, &c.name),
                last_verdict: last_verdict(pod, &c.name),
                applied: Vec::new(),
                unverified: Vec::new(),
                skipped: Vec::new(),
                live: None,
            };
            match &status {
                Some(status) => {
                    // Containers the webhook did not take for JVMs are not in its status.
                    if let Some(s) = status.containers.get(&c.name) {
                        out.push(guarded(base("guarded"), c, s));
                    }
                }
                None if opted_out => out.push(base("opted-out")),
                None if by_design => {}
                None if opted_in.contains(&namespace) => out.push(base("unguarded")),
                None => {}
            }
        }
    }
    out
}

fn guarded(mut row: Row, c: &Container, s: &ContainerStatus) -> Row {
    row.jvm = s.jvm.clone();
    row.profile = s.profile.clone();
    row.via = s.via.clone();
    let mut places: Vec<(String, String)> = c
        .env
        .iter()
        .flatten()
        .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
        .collect();
    let command: Vec<String> = c
        .command
        .iter()
        .chain(c.args.iter())
        .flatten()
        .cloned()
        .collect();
    places.push(("the command".into(), command.join(" ")));
    if let Some((by, max)) = heap_in(&places, row.memory_limit) {
        row.heap_max = max;
        row.heap_by = Some(by);
    }
    row.applied = s.applied.iter().map(|f| f.name().to_string()).collect();
    row.unverified = s.unverified.keys().map(|f| f.name().to_string()).collect();
    row.skipped = s.skipped.keys().map(|f| f.name().to_string()).collect();
    row
}

fn limit(c: &Container) -> Option<u64> {
    let q = c.resources.as_ref()?.limits.as_ref()?.get("memory")?;
    q.0.parse::<Quantity>().ok().map(|q| q.bytes())
}

fn restarts(pod: &Pod, name: &str) -> i32 {
    container_status(pod, name).map_or(0, |s| s.restart_count)
}

fn last_verdict(pod: &Pod, name: &str) -> Option<String> {
    let s = container_status(pod, name)?;
    let t = s.last_state.as_ref()?.terminated.as_ref()?;
    let first = t.message.as_deref().and_then(|m| m.lines().next());
    match first {
        // The supervising agent's verdict (docs/agent.md#the-supervising-agent).
        Some(line) if line.starts_with("jvm-guard: ") => {
            Some(line.trim_start_matches("jvm-guard: ").to_string())
        }
        _ => Some(format!(
            "{} (exit {})",
            t.reason.as_deref().unwrap_or("Terminated"),
            t.exit_code
        )),
    }
}

/// Reads the pods in scope, and with `live` asks each guarded container's JVM.
pub async fn gather(
    client: &kube::Client,
    scope: Scope,
    live: bool,
) -> Result<Vec<Row>, RemoteError> {
    let api_error = |what: String| move |source| RemoteError::Api { what, source };
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let selector = format!("{INJECT_LABEL}=enabled");
    let opted_in: BTreeSet<String> = namespaces
        .list_metadata(&ListParams::default().labels(&selector))
        .await
        .map_err(api_error("listing the opted-in namespaces".into()))?
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    let mut pods = Vec::new();
    let names: Vec<String> = match &scope {
        Scope::Namespace(ns) => vec![ns.clone()],
        Scope::OptedIn => opted_in.iter().cloned().collect(),
    };
    for ns in &names {
        let api: Api<Pod> = Api::namespaced(client.clone(), ns);
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(api_error(format!("listing the pods of {ns}")))?;
        pods.extend(list.items);
    }
    let mut rows = rows(&pods, &opted_in);
    if live {
        for row in rows.iter_mut().filter(|r| r.state == "guarded") {
            row.live = Some(ask(client, row).await);
        }
    }
    Ok(rows)
}

/// `inspect -o json` in the container.
async fn ask(client: &kube::Client, row: &Row) -> Live {
    let target = super::Target {
        pods: Api::namespaced(client.clone(), &row.namespace),
        namespace: row.namespace.clone(),
        pod: row.pod.clone(),
        container: row.container.clone(),
    };
    let command = [super::TOOLS_BINARY, "inspect", "-o", "json"];
    let (ended, report) = match super::exec::collect(&target, &command).await {
        Ok((out, ended)) => (
            Ok(ended),
            serde_json::from_slice::<serde_json::Value>(&out).ok(),
        ),
        Err(e) => (Err(e), None),
    };
    match (ended, report) {
        (_, Some(r)) => Live {
            max_heap: r["jvm"]["max_heap_bytes"].as_u64(),
            dumps: r["dumps"]["files"].as_array().map(Vec::len),
            error: r["jvm_error"]["message"].as_str().map(String::from),
        },
        (Ok(ended), None) => Live {
            max_heap: None,
            dumps: None,
            error: Some(ended.why()),
        },
        (Err(e), None) => Live {
            max_heap: None,
            dumps: None,
            error: Some(e.to_string()),
        },
    }
}

/// The table; `wide` adds the features and, with `--live`, what the JVM reports.
pub fn render(rows: &[Row], wide: bool) -> String {
    let mib = |b: Option<u64>| b.map_or("-".to_string(), |b| format!("{}Mi", b >> 20));
    let dash = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
    let mut table: Vec<Vec<String>> = vec![[
        "NAMESPACE",
        "POD",
        "CONTAINER",
        "WORKLOAD",
        "STATE",
        "JVM",
        "PROFILE",
        "VIA",
        "HEAP/LIMIT",
        "RESTARTS",
        "LAST VERDICT",
    ]
    .map(String::from)
    .to_vec()];
    if wide {
        table[0]
            .extend(["APPLIED", "UNVERIFIED", "SKIPPED", "LIVE HEAP", "DUMPS"].map(String::from));
    }
    for r in rows {
        let mut line = vec![
            r.namespace.clone(),
            r.pod.clone(),
            r.container.clone(),
            r.workload.clone(),
            r.state.clone(),
            dash(&r.jvm),
            dash(&r.profile),
            dash(&r.via),
            format!("{}/{}", mib(r.heap_max), mib(r.memory_limit)),
            r.restarts.to_string(),
            crate::escape::escape(&dash(&r.last_verdict)),
        ];
        if wide {
            let list = |v: &[String]| {
                if v.is_empty() {
                    "-".into()
                } else {
                    v.join(",")
                }
            };
            let live = r.live.as_ref();
            line.extend([
                list(&r.applied),
                list(&r.unverified),
                list(&r.skipped),
                live.map_or("-".into(), |l| match &l.error {
                    Some(e) if l.max_heap.is_none() => crate::escape::escape(e),
                    _ => mib(l.max_heap),
                }),
                live.and_then(|l| l.dumps)
                    .map_or("-".into(), |n| n.to_string()),
            ]);
        }
        table.push(line);
    }
    let columns = table[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            table
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for line in &table {
        let cells: Vec<String> = line
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                if i + 1 == columns {
                    cell.clone()
                } else {
                    format!("{cell:<width$}", width = widths[i])
                }
            })
            .collect();
        out.push_str(cells.join("   ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, ns: &str, extra: serde_json::Value) -> Pod {
        let mut p = json!({
            "metadata": {"name": name, "namespace": ns, "labels": {"pod-template-hash": "7d9f"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "api-7d9f", "uid": "u", "controller": true}]},
            "spec": {"containers": [
                {"name": "app", "image": "app:1",
                 "resources": {"limits": {"memory": "1Gi"}},
                 "env": [{"name": "JVM_GUARD_MEMORY_OPTIONS", "value": "-XX:MaxRAMPercentage=62.5"}]},
                {"name": "sidecar", "image": "envoy:1"}]},
        });
        json_patch::merge(&mut p, &extra);
        serde_json::from_value(p).unwrap()
    }

    #[test]
    fn guarded_unguarded_and_the_verdict_of_the_last_crash() {
        let status = json!({"version": "0.1.0", "containers": {"app": {
            "applied": ["memory", "heap-dump"], "unverified": {"probes": "x"},
            "jvm": "seen", "profile": "spring-boot", "via": "JAVA_TOOL_OPTIONS"}}});
        let guarded = pod(
            "api-7d9f-a",
            "shop",
            json!({"metadata": {"annotations": {"jvm-guard.io/status": status.to_string()}},
                   "status": {"containerStatuses": [{"name": "app", "restartCount": 2,
                     "image": "app:1", "imageID": "", "ready": true,
                     "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled",
                       "message": "jvm-guard: killed by the kernel at the memory limit (OOM kills 0 -> 1)\nheap ..."}}}]}}),
        );
        let unguarded = pod("api-7d9f-b", "shop", json!({}));
        let elsewhere = pod("api-7d9f-c", "other", json!({}));
        let opted_in = BTreeSet::from(["shop".to_string()]);
        let rows = rows(&[guarded, unguarded, elsewhere], &opted_in);
        // The guarded pod's sidecar is not a JVM (not in the status); the unguarded pod lists
        // both containers; a pod of a namespace not opted in is not listed.
        let names: Vec<(&str, &str, &str)> = rows
            .iter()
            .map(|r| (r.pod.as_str(), r.container.as_str(), r.state.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("api-7d9f-a", "app", "guarded"),
                ("api-7d9f-b", "app", "unguarded"),
                ("api-7d9f-b", "sidecar", "unguarded")
            ]
        );
        let r = &rows[0];
        assert_eq!(r.workload, "Deployment/api");
        assert_eq!(r.heap_max, Some(671_088_640));
        assert_eq!(r.memory_limit, Some(1 << 30));
        assert_eq!(r.restarts, 2);
        assert_eq!(
            r.last_verdict.as_deref(),
            Some("killed by the kernel at the memory limit (OOM kills 0 -> 1)")
        );
        assert_eq!(r.applied, ["memory", "heap-dump"]);
        assert_eq!(r.unverified, ["probes"]);
        let text = render(&rows, false);
        assert!(
            text.lines().nth(1).unwrap().contains("640Mi/1024Mi"),
            "{text}"
        );
        assert!(render(&rows, true).starts_with("NAMESPACE"), "{text}");
    }

    #[test]
    fn a_pod_that_opts_out_says_so_and_a_bare_pod_is_its_own_workload() {
        let p = pod(
            "solo",
            "shop",
            json!({"metadata": {"labels": {"jvm-guard.io/inject": "false"}, "ownerReferences": null}}),
        );
        let rows = rows(&[p], &BTreeSet::new());
        assert_eq!(rows[0].state, "opted-out");
        assert_eq!(rows[0].workload, "Pod/solo");
        assert_eq!(rows[0].last_verdict, None);
    }
}
