//! The pod-level parts targets share, by name and path: the tools directory and the dump
//! volume, and whether a pod or a container can take them (a collision is left alone).

use super::pod::{Container, PodSpec};
use crate::config::DumpConfig;

/// The init container that copies the tools.
pub const INIT_CONTAINER: &str = "jvm-guard-tools";
pub const TOOLS_VOLUME: &str = "jvm-guard-tools";
/// Where the targets see the tools.
pub const TOOLS_DIR: &str = "/jvm-guard/bin";
pub const TOOLS_BINARY: &str = "/jvm-guard/bin/jvm-guard";
/// Where the binary sits in the jvm-guard image (the Dockerfile copies it there).
pub const IMAGE_BINARY: &str = "/usr/local/bin/jvm-guard";
/// Where the kubelet mounts the ServiceAccount token; a mount of ours there keeps the
/// ServiceAccount admission plugin from adding the token to the init container.
pub const TOKEN_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

pub const DUMP_VOLUME: &str = "jvm-guard-dumps";
/// Pods created by controllers have no name at admission time, so the dump directory is named
/// by the kubelet from this variable.
pub const POD_NAME_ENV: &str = crate::options::agent_env::POD_NAME;
/// On a volume every pod of the node shares (hostPath), the namespace leads the directory:
/// two namespaces' `api-0` must neither read nor prune each other's dumps.
pub const POD_NAMESPACE_ENV: &str = crate::options::agent_env::POD_NAMESPACE;

/// Why the pod cannot take the tools, if it cannot.
pub fn tools_pod_collision(spec: &PodSpec) -> Option<String> {
    if spec
        .volumes
        .iter()
        .flatten()
        .any(|v| v.name == TOOLS_VOLUME)
    {
        return Some(format!("the pod already has a volume named {TOOLS_VOLUME}"));
    }
    let names = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers);
    names
        .clone()
        .any(|c| c.name == INIT_CONTAINER)
        .then(|| format!("the pod already has a container named {INIT_CONTAINER}"))
}

/// Why this container cannot mount the tools, if it cannot.
pub fn tools_container_collision(container: &Container) -> Option<String> {
    container
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == TOOLS_VOLUME || m.mount_path.trim_end_matches('/') == TOOLS_DIR)
        .map(|m| format!("it already mounts {} at {}", m.name, m.mount_path))
}

/// Why the pod cannot take the dump volume, if it cannot.
pub fn dump_pod_collision(spec: &PodSpec) -> Option<String> {
    spec.volumes
        .iter()
        .flatten()
        .any(|v| v.name == DUMP_VOLUME)
        .then(|| format!("the pod already has a volume named {DUMP_VOLUME}"))
}

/// Why the dump directory cannot be mounted next to the tools, if it cannot: at or under the
/// tools directory (two mounts at one path make the apiserver refuse the pod).
pub fn dump_tools_collision(cfg: &DumpConfig) -> Option<String> {
    let path = cfg.mount_path.as_str();
    let under = path
        .strip_prefix(TOOLS_DIR)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    under.then(|| format!("dump-mount-path {path} is the tools directory {TOOLS_DIR}"))
}
