//! What the pod watcher reports, decided from each pod it is shown: a guarded container that
//! terminated (once per run of the container), and a pod of an opted-in namespace that the
//! webhook never marked (once per pod). Pure: [`Tracker`] holds what it has reported, the
//! caller publishes.

use std::collections::{HashMap, HashSet, VecDeque};

use k8s_openapi::api::core::v1::{ContainerStateTerminated, ObjectReference, Pod};
use k8s_openapi::jiff::Timestamp;

use super::Workload;
use crate::agent::supervise::message::{HEAP_OOM_LINE, KERNEL_KILL_LINE};
use crate::config::STATUS_ANNOTATION;
use crate::mutate::left_alone_by_design;

/// What the watcher reads of the status annotation: the names of the containers the webhook
/// took for JVMs (the rest of it may be of another version).
#[derive(Debug, serde::Deserialize)]
struct Guarded {
    containers: HashMap<String, serde::de::IgnoredAny>,
}

/// How a guarded container ended, as the Event's reason and the metric's label say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The agent's verdict: exit 3 after `-XX:+ExitOnOutOfMemoryError`.
    HeapOutOfMemory,
    /// The agent's verdict (SIGKILL with the cgroup's OOM-kill counter raised), or the
    /// kubelet's `OOMKilled` when the kernel killed the whole container, the agent with it.
    KilledByKernel,
    /// Any other end.
    Exited,
}

impl Reason {
    pub const ALL: [Reason; 3] = [
        Reason::HeapOutOfMemory,
        Reason::KilledByKernel,
        Reason::Exited,
    ];

    /// The Event's `reason`.
    pub fn event_reason(self) -> &'static str {
        match self {
            Reason::HeapOutOfMemory => "JvmHeapOutOfMemory",
            Reason::KilledByKernel => "JvmKilledByKernel",
            Reason::Exited => "JvmExited",
        }
    }

    /// The `reason` label of `jvm_guard_container_terminations_total`.
    pub fn label(self) -> &'static str {
        match self {
            Reason::HeapOutOfMemory => "heap_oom",
            Reason::KilledByKernel => "kernel_oom",
            Reason::Exited => "exited",
        }
    }

    /// What ended a container that terminated as `t` says.
    pub fn of(t: &ContainerStateTerminated) -> Reason {
        let first = t.message.as_deref().and_then(|m| m.lines().next());
        match first {
            Some(line) if line.starts_with(HEAP_OOM_LINE) => Reason::HeapOutOfMemory,
            Some(line) if line.starts_with(KERNEL_KILL_LINE) => Reason::KilledByKernel,
            _ if t.reason.as_deref() == Some("OOMKilled") => Reason::KilledByKernel,
            _ => Reason::Exited,
        }
    }
}

/// One guarded container's end.
#[derive(Debug, Clone, PartialEq)]
pub struct Termination {
    pub container: String,
    pub reason: Reason,
    pub exit_code: i32,
    /// The container's restart count when seen.
    pub restarts: i32,
    /// The Event's note: the container and the agent's verdict (or the kubelet's reason).
    pub note: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Finding {
    Terminated {
        pod: ObjectReference,
        workload: Workload,
        termination: Termination,
    },
    /// In an opted-in namespace, not left alone by design, and without the status
    /// annotation: the webhook did not see it (down, timed out with `failurePolicy: Ignore`),
    /// or the namespace opted in after it was created.
    Unguarded {
        pod: ObjectReference,
        workload: Workload,
    },
}

/// What an Event's note may hold (the API refuses more than 1 KiB).
pub const NOTE_BYTES: usize = 1024;
/// Runs remembered per container: the current state and the last one, with room to spare.
const RUNS_KEPT: usize = 4;

/// What has been reported, so that each run's end and each unguarded pod is reported once
/// however often the pod is shown again (every status update, every re-list).
#[derive(Debug)]
pub struct Tracker {
    /// Terminations that finished before this are history: seen, never reported.
    since: Timestamp,
    /// Per pod uid and container, the runs seen ended (container id, else finish time).
    ended: HashMap<(String, String), VecDeque<String>>,
    unguarded: HashSet<String>,
    /// During a re-list, the uids listed so far; pods deleted while the watch was down are
    /// the ones missing at its end.
    listing: Option<HashSet<String>>,
}

impl Tracker {
    pub fn new(since: Timestamp) -> Tracker {
        Tracker {
            since,
            ended: HashMap::new(),
            unguarded: HashSet::new(),
            listing: None,
        }
    }

    /// Pods of opted-in namespaces without the status annotation, now.
    pub fn unguarded(&self) -> usize {
        self.unguarded.len()
    }

    /// A full list of the pods starts (the watch began or restarted).
    pub fn relist_started(&mut self) {
        self.listing = Some(HashSet::new());
    }

    /// The list is complete: pods not in it are gone.
    pub fn relist_done(&mut self) {
        if let Some(listed) = self.listing.take() {
            self.unguarded.retain(|uid| listed.contains(uid));
            self.ended.retain(|(uid, _), _| listed.contains(uid));
        }
    }

    pub fn deleted(&mut self, pod: &Pod) {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        self.unguarded.remove(uid);
        self.ended.retain(|(u, _), _| u != uid);
    }

    /// What `pod` (as it is now) adds to what was reported; `opted_in`: whether its namespace
    /// is opted in.
    pub fn pod(&mut self, pod: &Pod, opted_in: bool) -> Vec<Finding> {
        let Some(uid) = pod.metadata.uid.clone() else {
            return Vec::new();
        };
        if let Some(listed) = &mut self.listing {
            listed.insert(uid.clone());
        }
        let annotations = pod.metadata.annotations.as_ref();
        let Some(status) = annotations.and_then(|a| a.get(STATUS_ANNOTATION)) else {
            let missed = opted_in
                && pod.metadata.deletion_timestamp.is_none()
                && left_alone_by_design(&pod.into()).is_none();
            if !missed {
                self.unguarded.remove(&uid);
                return Vec::new();
            }
            if !self.unguarded.insert(uid) {
                return Vec::new();
            }
            return vec![Finding::Unguarded {
                pod: reference(pod),
                workload: Workload::of(pod),
            }];
        };
        self.unguarded.remove(&uid);
        // A status we cannot read guards nothing we can name.
        let Ok(status) = serde_json::from_str::<Guarded>(status) else {
            return Vec::new();
        };
        // Containers stopped by a deletion (a rollout, a scale-down) ended as asked.
        let deleting = pod.metadata.deletion_timestamp.is_some();
        let statuses = pod
            .status
            .iter()
            .flat_map(|s| s.container_statuses.iter().flatten());
        let mut found = Vec::new();
        for s in statuses.filter(|s| status.containers.contains_key(&s.name)) {
            let ends = [s.last_state.as_ref(), s.state.as_ref()];
            for t in ends
                .into_iter()
                .flatten()
                .filter_map(|st| st.terminated.as_ref())
            {
                let Some(run) = run_id(t) else { continue };
                let runs = self.ended.entry((uid.clone(), s.name.clone())).or_default();
                if runs.contains(&run) {
                    continue;
                }
                runs.push_back(run);
                if runs.len() > RUNS_KEPT {
                    runs.pop_front();
                }
                let recent = t.finished_at.as_ref().is_some_and(|f| f.0 >= self.since);
                if recent && !deleting {
                    found.push(Finding::Terminated {
                        pod: reference(pod),
                        workload: Workload::of(pod),
                        termination: termination(&s.name, s.restart_count, t),
                    });
                }
            }
        }
        found
    }
}

/// One run of a container: its id, else the time it finished.
fn run_id(t: &ContainerStateTerminated) -> Option<String> {
    t.container_id
        .clone()
        .or_else(|| t.finished_at.as_ref().map(|f| f.0.to_string()))
}

fn termination(container: &str, restarts: i32, t: &ContainerStateTerminated) -> Termination {
    let reason = Reason::of(t);
    let said = match t.message.as_deref().map(str::trim_end) {
        Some(message) if !message.is_empty() => message.to_string(),
        _ => format!(
            "terminated: {}, exit code {}",
            t.reason.as_deref().unwrap_or("no reason given"),
            t.exit_code
        ),
    };
    Termination {
        container: container.to_string(),
        reason,
        exit_code: t.exit_code,
        restarts,
        note: truncate(format!("container {container}: {said}"), NOTE_BYTES),
    }
}

fn reference(pod: &Pod) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        ..ObjectReference::default()
    }
}

/// `text` cut to at most `max` bytes on a character boundary.
fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const STATUS: &str = r#"{"containers":{"app":{"jvm":"seen","applied":["memory"]}}}"#;

    fn since() -> Timestamp {
        "2026-12-05T10:00:00Z".parse().unwrap()
    }

    fn terminated(id: &str, at: &str, code: i32, reason: &str, message: &str) -> Value {
        json!({"terminated": {"containerID": id, "finishedAt": at, "exitCode": code,
                              "reason": reason, "message": message}})
    }

    fn pod(annotated: bool, last: Value, state: Value, restarts: i32) -> Pod {
        let annotations = if annotated {
            json!({STATUS_ANNOTATION: STATUS})
        } else {
            json!({})
        };
        serde_json::from_value(json!({
            "metadata": {"name": "api-7d9f-x", "namespace": "shop", "uid": "u1",
                         "annotations": annotations, "labels": {"pod-template-hash": "7d9f"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                            "name": "api-7d9f", "uid": "rs", "controller": true}]},
            "spec": {"containers": [{"name": "app"}, {"name": "sidecar"}]},
            "status": {"containerStatuses": [
                {"name": "app", "restartCount": restarts, "lastState": last, "state": state,
                 "ready": false, "image": "i", "imageID": ""},
                {"name": "sidecar", "restartCount": 3, "ready": false, "image": "i", "imageID": "",
                 "lastState": terminated("containerd://s", "2026-12-05T11:00:00Z", 1, "Error", "")}
            ]}
        }))
        .unwrap()
    }

    fn reasons(found: &[Finding]) -> Vec<(Reason, i32)> {
        found
            .iter()
            .filter_map(|f| match f {
                Finding::Terminated { termination, .. } => {
                    Some((termination.reason, termination.restarts))
                }
                Finding::Unguarded { .. } => None,
            })
            .collect()
    }

    const HEAP: &str = "jvm-guard: heap OutOfMemoryError: the JVM exited 3 (-XX:+ExitOnOutOfMemoryError)\ndump: /dumps/x.hprof";
    const KERNEL: &str = "jvm-guard: killed by the kernel at the container's memory limit (SIGKILL, exit code 137; OOM kills 0 -> 1)";
    const NO_VERDICT: &str = "jvm-guard: no verdict: the container stopped with the agent";

    #[test]
    fn each_run_of_a_guarded_container_is_reported_once_with_its_verdict() {
        let mut t = Tracker::new(since());
        let first = terminated("containerd://a", "2026-12-05T11:00:00Z", 3, "Error", HEAP);
        let running = json!({"running": {"startedAt": "2026-12-05T11:00:05Z"}});
        let found = t.pod(&pod(true, first.clone(), running.clone(), 1), true);
        assert_eq!(reasons(&found), [(Reason::HeapOutOfMemory, 1)]);
        let Finding::Terminated {
            pod: reference,
            workload,
            termination,
        } = &found[0]
        else {
            panic!()
        };
        assert_eq!(reference.uid.as_deref(), Some("u1"));
        assert_eq!(workload.to_string(), "Deployment/api");
        assert!(
            termination
                .note
                .starts_with("container app: jvm-guard: heap OutOfMemoryError"),
            "{}",
            termination.note
        );
        // Shown again (any status update): nothing new. The sidecar is not guarded.
        assert!(t
            .pod(&pod(true, first.clone(), running, 1), true)
            .is_empty());
        // The next run ends in the kernel's OOM kill: reported, the earlier one not again,
        // also while it is both the state and the last state.
        let second = terminated(
            "containerd://b",
            "2026-12-05T11:01:00Z",
            137,
            "OOMKilled",
            NO_VERDICT,
        );
        let found = t.pod(&pod(true, first, second.clone(), 1), true);
        assert_eq!(reasons(&found), [(Reason::KilledByKernel, 1)]);
        let waiting = json!({"waiting": {"reason": "CrashLoopBackOff"}});
        assert!(t.pod(&pod(true, second, waiting, 2), true).is_empty());
    }

    #[test]
    fn history_before_the_watch_and_ends_of_a_deletion_are_not_reported() {
        let mut t = Tracker::new(since());
        let old = terminated(
            "containerd://a",
            "2026-12-05T09:00:00Z",
            137,
            "OOMKilled",
            "",
        );
        assert!(t.pod(&pod(true, old, json!(null), 1), true).is_empty());
        let mut deleting = pod(
            true,
            json!(null),
            terminated("containerd://b", "2026-12-05T11:00:00Z", 143, "Error", ""),
            1,
        );
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(since()));
        assert!(t.pod(&deleting, true).is_empty());
    }

    #[test]
    fn reasons_come_from_the_agents_first_line_then_the_kubelets_reason() {
        let t = |reason: &str, message: &str| -> ContainerStateTerminated {
            serde_json::from_value(json!({"exitCode": 1, "reason": reason, "message": message}))
                .unwrap()
        };
        assert_eq!(Reason::of(&t("Error", HEAP)), Reason::HeapOutOfMemory);
        assert_eq!(Reason::of(&t("Error", KERNEL)), Reason::KilledByKernel);
        assert_eq!(
            Reason::of(&t("OOMKilled", NO_VERDICT)),
            Reason::KilledByKernel
        );
        assert_eq!(Reason::of(&t("OOMKilled", "")), Reason::KilledByKernel);
        assert_eq!(Reason::of(&t("Error", NO_VERDICT)), Reason::Exited);
        // The verdict is the first line's; a later line quoting it is not.
        let quoted = format!("jvm-guard: the command exited with code 1\n{HEAP}");
        assert_eq!(Reason::of(&t("Error", &quoted)), Reason::Exited);
        // A note without the agent's message says what the kubelet said.
        let note = termination("app", 0, &t("Completed", "")).note;
        assert_eq!(note, "container app: terminated: Completed, exit code 1");
        let long = termination("app", 0, &t("Error", &"é".repeat(3000))).note;
        assert!(long.len() <= NOTE_BYTES && long.ends_with('é'));
    }

    #[test]
    fn an_unmarked_pod_of_an_opted_in_namespace_is_unguarded_once_until_it_is_gone() {
        let mut t = Tracker::new(since());
        let bare = pod(false, json!(null), json!(null), 0);
        assert!(matches!(
            &t.pod(&bare, true)[..],
            [Finding::Unguarded { .. }]
        ));
        assert!(t.pod(&bare, true).is_empty(), "reported once");
        assert_eq!(t.unguarded(), 1);
        t.deleted(&bare);
        assert_eq!(t.unguarded(), 0);
        // Not opted in, opted out, or a Helm test hook: not unguarded.
        assert!(t.pod(&bare, false).is_empty());
        let mut out = bare.clone();
        out.metadata.labels = Some([("jvm-guard.io/inject".into(), "false".into())].into());
        assert!(t.pod(&out, true).is_empty());
        let mut hook = bare.clone();
        hook.metadata.annotations = Some([("helm.sh/hook".into(), "test".into())].into());
        assert!(t.pod(&hook, true).is_empty());
        assert_eq!(t.unguarded(), 0);
        // Gone while the watch was down: dropped by the re-list that does not list it.
        t.pod(&bare, true);
        t.relist_started();
        t.relist_done();
        assert_eq!(t.unguarded(), 0);
        t.relist_started();
        t.pod(&bare, true);
        t.relist_done();
        assert_eq!(t.unguarded(), 1);
    }
}
