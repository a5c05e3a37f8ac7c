//! Namespace configuration for the webhook: which namespaces opted in, and their resolved
//! [`NamespaceConfig`], from a fixed file ([`file`]) or the cluster ([`reflector`]).

pub mod file;
pub mod reflector;

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;

pub use file::{NamespacesFileError, StaticNamespaces};
pub use reflector::KubeNamespaces;

use crate::config::{Defaults, NamespaceConfig, INJECT_LABEL};

/// Where the handler finds a namespace's configuration: [`StaticNamespaces`] here, or the kube
/// reflector cache ([`KubeNamespaces`]). Lookups must not do I/O.
pub trait NamespaceLookup: Send + Sync {
    /// The configuration of `name` if it opted in, else `None` (the pod is left alone).
    fn get(&self, name: &str) -> Option<Arc<NamespaceConfig>>;
    /// Whether the namespaces are known yet (readiness).
    fn ready(&self) -> bool;
    /// For a pod the webhook was called for in `name` while [`get`](Self::get) does not know
    /// it as opted in: the warning worth giving, if any (a cache behind the label).
    fn miss(&self, _name: &str) -> Option<String> {
        None
    }
    /// The names of the opted-in namespaces, when the source can list them.
    fn opted_in(&self) -> Option<BTreeSet<String>> {
        None
    }
}

fn is_opted_in(ns: &Namespace) -> bool {
    let labels = ns.metadata.labels.as_ref();
    labels.and_then(|l| l.get(INJECT_LABEL)).map(String::as_str) == Some("enabled")
}

fn config(name: &str, ns: &Namespace, defaults: &Defaults) -> Arc<NamespaceConfig> {
    Arc::new(NamespaceConfig::new(
        name,
        ns.metadata.annotations.as_ref(),
        defaults,
    ))
}
