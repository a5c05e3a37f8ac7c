//! Server-side dry-run creates in namespaces that enforce a Pod Security level, shared by the
//! golden outputs (goldens.rs) and the sample of generated pods (property_pods.rs). The
//! namespaces are not opted in to jvm-guard: the object the apiserver validates is the pod sent,
//! not one the webhook mutated again.

use k8s_openapi::api::core::v1::{Pod, PodSpec};
use kube::api::{Api, PostParams};
use kube::Client;
use serde_json::Value;

use crate::cluster::create_namespace;
use crate::process::within;

#[path = "../support/pod_security.rs"]
mod pod_security;

/// Creates namespace `name` enforcing the Pod Security `level` ("privileged", "baseline" or
/// "restricted"), at the latest version.
pub async fn pod_security_namespace(client: &Client, name: &str, level: &str) {
    let labels = [
        ("pod-security.kubernetes.io/enforce", level),
        ("pod-security.kubernetes.io/enforce-version", "latest"),
    ];
    create_namespace(client, name, &labels, &[]).await;
}

/// A server-side dry-run create of `pod` in `ns`: nothing is stored; the error is the
/// apiserver's message (validation, Pod Security) or why `pod` is not a Pod.
pub async fn dry_run(client: &Client, ns: &str, pod: &Value) -> Result<(), String> {
    let pod: Pod = serde_json::from_value(pod.clone()).map_err(|e| format!("not a Pod: {e}"))?;
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    match within(30, "dry-run create", api.create(&params, &pod)).await {
        Ok(_) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// Whether the pod has a hostPath volume, which Pod Security "baseline" refuses by design.
pub fn has_host_path(pod: &Value) -> bool {
    pod["spec"]["volumes"]
        .as_array()
        .is_some_and(|v| v.iter().any(|v| v.get("hostPath").is_some()))
}

/// Whether our own check of the Pod Security "restricted" profile (tests/support) passes.
pub fn passes_restricted_check(pod: &Value) -> bool {
    serde_json::from_value::<PodSpec>(pod["spec"].clone())
        .is_ok_and(|s| pod_security::restricted_violations(&s).is_empty())
}
