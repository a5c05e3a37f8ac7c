//! After the crash, seen from `serve` (`--watch-pods`): one replica, chosen by a Lease, watches
//! the pods of opted-in namespaces and turns what the agent left in each guarded container's
//! termination message into Events on the pod and on its workload (`JvmHeapOutOfMemory`,
//! `JvmKilledByKernel`, `JvmExited`) and into metrics; pods the webhook never marked are
//! reported as unguarded. Nothing of a pod is cached but its uid and the runs seen ended
//! ([`findings::Tracker`]). Reference: docs/server.md#the-pod-watcher.

pub mod findings;
pub mod workload;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::ListParams;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher::{self, watcher, Event as WatchEvent};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, ResourceExt};
use kube_lease_manager::LeaseManagerBuilder;

pub use findings::{Finding, Reason, Tracker};
pub use workload::Workload;

use crate::webhook::metrics::Metrics;
use crate::webhook::namespaces::NamespaceLookup;

/// The Lease that picks the one replica that watches, in the webhook's namespace.
pub const LEASE_NAME: &str = "jvm-guard-pod-watcher";
/// A leader that stops renewing loses the Lease after this long.
const LEASE_SECONDS: u64 = 15;
/// It renews this long before the Lease would expire.
const LEASE_GRACE_SECONDS: u64 = 5;
/// How often the opted-in namespaces are compared with the last time, for the pods of those
/// that opted in since.
const NAMESPACE_CHECK: Duration = Duration::from_secs(5);
/// Pods per page when listing a namespace.
const PAGE: u32 = 500;
/// Terminations up to this long before the watch starts are still reported: a new leader
/// takes over what happened while the Lease changed hands.
const TAKEOVER: SignedDuration = SignedDuration::from_secs(LEASE_SECONDS as i64 * 2);

/// Who watches and where its Lease lives.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// The Lease's namespace (the webhook's own).
    pub namespace: String,
    /// This replica's name in the Lease and in its Events (`reportingInstance`).
    pub identity: String,
}

/// Starts the pod watcher on the current runtime: it takes part in the election for the
/// Lease and watches while it holds it. Failures are logged and retried; it never ends the
/// process.
pub fn spawn(
    client: Client,
    namespaces: Arc<dyn NamespaceLookup>,
    metrics: Arc<Metrics>,
    options: WatchOptions,
) {
    tokio::spawn(async move {
        let mut backoff = Duration::from_secs(1);
        let manager = loop {
            let built = LeaseManagerBuilder::new(client.clone(), LEASE_NAME)
                .with_namespace(&options.namespace)
                .with_identity(&options.identity)
                .with_duration(LEASE_SECONDS)
                .with_grace(LEASE_GRACE_SECONDS)
                .build()
                .await;
            match built {
                Ok(manager) => break manager,
                Err(e) => {
                    tracing::warn!(error = %e, lease = LEASE_NAME, namespace = %options.namespace,
                        "pod watcher: cannot use its Lease; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        };
        let (mut leader, _task) = manager.watch().await;
        loop {
            if !*leader.borrow_and_update() {
                if leader.changed().await.is_err() {
                    return;
                }
                continue;
            }
            tracing::info!(identity = %options.identity, "pod watcher: leader; watching pods");
            metrics.set_pod_watcher_leader(true);
            let lost = async {
                while *leader.borrow_and_update() {
                    if leader.changed().await.is_err() {
                        break;
                    }
                }
            };
            tokio::select! {
                () = watch(client.clone(), namespaces.clone(), metrics.clone(), &options) => {}
                () = lost => tracing::info!("pod watcher: lost the Lease; stopped watching"),
            }
            metrics.set_pod_watcher_leader(false);
            metrics.set_unguarded_pods(0);
        }
    });
}

/// Watches every pod (the opted-in namespaces are chosen by a label on the Namespace, which a
/// pod watch cannot select by) until the stream ends, which it does not: errors are retried
/// with backoff.
async fn watch(
    client: Client,
    namespaces: Arc<dyn NamespaceLookup>,
    metrics: Arc<Metrics>,
    options: &WatchOptions,
) {
    // Which namespaces are opted in must be known before a pod can be called unguarded.
    while !namespaces.ready() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "jvm-guard".into(),
            instance: Some(options.identity.clone()),
        },
    );
    let mut tracker = Tracker::new(Timestamp::now() - TAKEOVER);
    let pods: Api<Pod> = Api::all(client.clone());
    // The list is paged (500 a page) and nothing is stored: memory does not grow with pods.
    let stream = watcher(pods, watcher::Config::default())
        .default_backoff()
        .modify(|pod| pod.managed_fields_mut().clear());
    let mut stream = std::pin::pin!(stream);
    // A namespace that opts in does not show its pods again: they are listed when it does.
    let mut known = namespaces.opted_in().unwrap_or_default();
    let mut tick = tokio::time::interval(NAMESPACE_CHECK);
    loop {
        let findings = tokio::select! {
            event = stream.next() => match event {
                Some(event) => seen(&mut tracker, namespaces.as_ref(), event),
                None => return,
            },
            _ = tick.tick() => {
                let now = namespaces.opted_in().unwrap_or_default();
                let mut found = Vec::new();
                for ns in now.difference(&known) {
                    for pod in list(&client, ns).await {
                        found.extend(tracker.pod(&pod, true));
                    }
                }
                known = now;
                found
            }
        };
        for finding in findings {
            publish(&recorder, &metrics, &finding).await;
        }
        metrics.set_unguarded_pods(tracker.unguarded());
    }
}

/// What one watch event adds.
fn seen(
    tracker: &mut Tracker,
    namespaces: &dyn NamespaceLookup,
    event: Result<WatchEvent<Pod>, watcher::Error>,
) -> Vec<Finding> {
    match event {
        Ok(WatchEvent::Init) => tracker.relist_started(),
        Ok(WatchEvent::InitDone) => tracker.relist_done(),
        Ok(WatchEvent::Apply(pod) | WatchEvent::InitApply(pod)) => {
            let namespace = pod.namespace().unwrap_or_default();
            return tracker.pod(&pod, namespaces.get(&namespace).is_some());
        }
        Ok(WatchEvent::Delete(pod)) => tracker.deleted(&pod),
        Err(e) => tracing::warn!(error = %e, "pod watcher: watch failed; retrying"),
    }
    Vec::new()
}

/// The pods of `namespace`, a page at a time; what could not be listed is logged and skipped.
async fn list(client: &Client, namespace: &str) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut pods = Vec::new();
    let mut params = ListParams::default().limit(PAGE);
    loop {
        match api.list(&params).await {
            Ok(page) => {
                pods.extend(page.items);
                match page.metadata.continue_.filter(|c| !c.is_empty()) {
                    Some(token) => params = params.continue_token(&token),
                    None => return pods,
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, namespace, "pod watcher: cannot list the pods of a namespace that opted in");
                return pods;
            }
        }
    }
}

/// Logs `finding`, counts it, and records its Events: on the pod, and on its workload.
async fn publish(recorder: &Recorder, metrics: &Metrics, finding: &Finding) {
    let (pod, workload, event) = match finding {
        Finding::Terminated {
            pod,
            workload,
            termination: t,
        } => {
            metrics.terminated(t.reason.label());
            tracing::info!(namespace = pod.namespace.as_deref().unwrap_or_default(),
                pod = pod.name.as_deref().unwrap_or_default(), container = %t.container,
                reason = t.reason.event_reason(), exit_code = t.exit_code, restarts = t.restarts,
                "guarded container terminated");
            let type_ = if t.exit_code == 0 {
                EventType::Normal
            } else {
                EventType::Warning
            };
            let event = Event {
                type_,
                reason: t.reason.event_reason().into(),
                note: Some(t.note.clone()),
                action: "Terminated".into(),
                secondary: None,
            };
            (pod, workload, event)
        }
        Finding::Unguarded { pod, workload } => {
            let namespace = pod.namespace.as_deref().unwrap_or_default();
            tracing::warn!(
                namespace,
                pod = pod.name.as_deref().unwrap_or_default(),
                "pod of an opted-in namespace without jvm-guard's status: unguarded"
            );
            let event = Event {
                type_: EventType::Warning,
                reason: "JvmGuardUnguarded".into(),
                note: Some(format!(
                    "pod of namespace {namespace} (opted in) has no jvm-guard.io/status: the \
                     webhook did not see it (down, or timed out under failurePolicy Ignore) or \
                     the namespace opted in after it was created; recreate it to have it guarded"
                )),
                action: "Admission".into(),
                secondary: None,
            };
            (pod, workload, event)
        }
    };
    let namespace = pod.namespace.clone().unwrap_or_default();
    let mut regarding = vec![pod.clone()];
    if !workload.is_pod() {
        regarding.push(workload.reference(&namespace));
    }
    for reference in &regarding {
        if let Err(e) = recorder.publish(&event, reference).await {
            tracing::warn!(error = %e, kind = reference.kind.as_deref().unwrap_or_default(),
                name = reference.name.as_deref().unwrap_or_default(), namespace = %namespace,
                reason = %event.reason, "pod watcher: cannot record the Event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reasons_are_the_metrics_labels() {
        let labels = Reason::ALL.map(Reason::label);
        assert_eq!(labels, crate::webhook::metrics::TERMINATION_REASONS);
    }
}
