//! Which containers of a pod get the features (SPEC §2): the `containers` key, else the
//! default-container annotation, else the first container that is not a known sidecar.

use k8s_openapi::api::core::v1::Pod;

use crate::config::Warnings;
use crate::config::{Key, Targets};

pub const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";

/// Containers that meshes, secret managers and agents inject next to the application.
pub const KNOWN_SIDECARS: &[&str] = &[
    "istio-proxy",
    "linkerd-proxy",
    "vault-agent",
    "consul-dataplane",
    "envoy",
    "envoy-sidecar",
    "kuma-sidecar",
    "daprd",
    "cloud-sql-proxy",
    "cloudsql-proxy",
    "aws-xray-daemon",
    "datadog-agent",
    "otel-collector",
    "jaeger-agent",
    "fluent-bit",
    "oauth2-proxy",
];

/// Indices into `spec.containers`, in the pod's order, each at most once.
pub fn select(pod: &Pod, targets: &Targets, warnings: &mut Warnings) -> Vec<usize> {
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    let index_of = |name: &str| containers.iter().position(|c| c.name == name);
    let mut out: Vec<usize> = match targets {
        Targets::Invalid => Vec::new(),
        Targets::All => (0..containers.len()).collect(),
        Targets::Named(names) => names
            .iter()
            .filter_map(|name| {
                let i = index_of(name);
                if i.is_none() {
                    warnings.push(format!(
                        "container {name} named in {} does not exist; skipped",
                        Key::Containers.annotation()
                    ));
                }
                i
            })
            .collect(),
        Targets::Default => {
            let named = pod
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DEFAULT_CONTAINER_ANNOTATION));
            match named {
                Some(name) => match index_of(name) {
                    Some(i) => vec![i],
                    None => {
                        warnings.push(format!(
                            "container {name} named in {DEFAULT_CONTAINER_ANNOTATION} does not exist; nothing injected"
                        ));
                        Vec::new()
                    }
                },
                None => match containers
                    .iter()
                    .position(|c| !KNOWN_SIDECARS.contains(&c.name.as_str()))
                {
                    Some(i) => vec![i],
                    None => {
                        if !containers.is_empty() {
                            warnings.push(format!(
                                "every container is a known sidecar; name the JVM container in {}",
                                Key::Containers.annotation()
                            ));
                        }
                        Vec::new()
                    }
                },
            }
        }
    };
    out.sort_unstable();
    out.dedup();
    out
}
