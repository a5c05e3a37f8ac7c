//! The workstation half: commands a user runs with their own kubeconfig against pods the
//! webhook guarded. They reach into containers only through the exec API and the binary the
//! init container already put there (`/jvm-guard/bin/jvm-guard`), so the webhook needs no new
//! RBAC and the image needs no shell, `tar` or JDK tool.

pub mod dumps;
pub mod exec;
pub mod report;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::Api;

pub use exec::Target;

/// Where the init container puts this binary in guarded containers.
pub const TOOLS_BINARY: &str = "/jvm-guard/bin/jvm-guard";

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("no Kubernetes client configuration (KUBECONFIG, ~/.kube/config or in-cluster): {0}")]
    Config(String),
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("pod {0} is gone")]
    PodGone(String),
    #[error("pod {pod} has no container {container:?} (it has: {names})")]
    NoContainer {
        pod: String,
        container: String,
        names: String,
    },
    #[error("the exec stream broke: {0}")]
    Stream(String),
    #[error("{0}")]
    Sink(std::io::Error),
    #[error("{0}")]
    Failed(String),
}

/// A client from the user's kubeconfig (or the in-cluster configuration).
pub async fn client() -> Result<kube::Client, RemoteError> {
    kube::Client::try_default()
        .await
        .map_err(|e| RemoteError::Config(e.to_string()))
}

/// The container `container` (or the pod's default one) of `pod` in `namespace` (or the
/// kubeconfig's namespace).
pub async fn target(
    client: kube::Client,
    namespace: Option<&str>,
    pod: &str,
    container: Option<&str>,
) -> Result<Target, RemoteError> {
    let namespace = namespace.unwrap_or(client.default_namespace()).to_string();
    let pods: Api<Pod> = Api::namespaced(client, &namespace);
    let found = get(&pods, &namespace, pod).await?;
    let container = choose_container(&found, container)?;
    Ok(Target {
        pods,
        namespace,
        pod: pod.to_string(),
        container,
    })
}

pub async fn get(pods: &Api<Pod>, namespace: &str, name: &str) -> Result<Pod, RemoteError> {
    match pods.get_opt(name).await {
        Ok(Some(pod)) => Ok(pod),
        Ok(None) => Err(RemoteError::PodGone(format!("{namespace}/{name}"))),
        Err(e) => Err(RemoteError::Api {
            what: format!("reading pod {namespace}/{name}"),
            source: e,
        }),
    }
}

/// As kubectl chooses: the one named, else the `kubectl.kubernetes.io/default-container`
/// annotation's, else the first (with a note on stderr when there are several).
fn choose_container(pod: &Pod, wanted: Option<&str>) -> Result<String, RemoteError> {
    let names: Vec<&str> = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter().map(|c| c.name.as_str()))
        .collect();
    let annotated = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("kubectl.kubernetes.io/default-container"))
        .map(String::as_str);
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let chosen = match wanted.or(annotated) {
        Some(name) => name,
        None => {
            let first = names.first().copied().unwrap_or_default();
            if names.len() > 1 {
                eprintln!(
                    "Defaulted container \"{first}\" out of: {} (-c chooses)",
                    names.join(", ")
                );
            }
            first
        }
    };
    if names.contains(&chosen) {
        Ok(chosen.to_string())
    } else {
        Err(RemoteError::NoContainer {
            pod: pod_name,
            container: chosen.to_string(),
            names: names.join(", "),
        })
    }
}

/// The status of the container named `name`, `None` while it has none.
pub fn container_status<'a>(pod: &'a Pod, name: &str) -> Option<&'a ContainerStatus> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    statuses.iter().find(|s| s.name == name)
}

/// The container's restart count and id, `None` while it has no status.
pub fn container_state(pod: &Pod, container: &str) -> Option<(i32, Option<String>)> {
    let s = container_status(pod, container)?;
    Some((s.restart_count, s.container_id.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(annotations: serde_json::Value, containers: &[&str]) -> Pod {
        let containers: Vec<_> = containers.iter().map(|n| json!({"name": n})).collect();
        serde_json::from_value(json!({
            "metadata": {"name": "api-0", "annotations": annotations},
            "spec": {"containers": containers}
        }))
        .unwrap()
    }

    #[test]
    fn the_container_is_chosen_as_kubectl_does() {
        let p = pod(json!({}), &["app", "sidecar"]);
        assert_eq!(choose_container(&p, None).unwrap(), "app");
        assert_eq!(choose_container(&p, Some("sidecar")).unwrap(), "sidecar");
        let e = choose_container(&p, Some("db")).unwrap_err().to_string();
        assert!(
            e.contains("no container \"db\"") && e.contains("app, sidecar"),
            "{e}"
        );
        let p = pod(
            json!({"kubectl.kubernetes.io/default-container": "sidecar"}),
            &["app", "sidecar"],
        );
        assert_eq!(choose_container(&p, None).unwrap(), "sidecar");
    }
}
