//! The workload a pod belongs to, read from its controller reference alone (no read of the
//! owner: the watcher's RBAC is pods and events only).

use std::fmt;

use k8s_openapi::api::core::v1::{ObjectReference, Pod};

/// `Deployment/api`, `StatefulSet/db`, or the pod itself when it has no controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    /// Known when the owner is the pod's direct controller; a Deployment is named through its
    /// ReplicaSet, whose reference does not carry the Deployment's uid.
    pub uid: Option<String>,
}

impl Workload {
    /// The owning workload: a ReplicaSet named by its Deployment (the `pod-template-hash`
    /// suffix dropped), else the controller itself, else the pod.
    pub fn of(pod: &Pod) -> Workload {
        let owner = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true));
        let Some(owner) = owner else {
            return Workload {
                api_version: "v1".into(),
                kind: "Pod".into(),
                name: pod.metadata.name.clone().unwrap_or_default(),
                uid: pod.metadata.uid.clone(),
            };
        };
        let hash = pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("pod-template-hash"));
        let deployment = match (owner.kind.as_str(), hash) {
            ("ReplicaSet", Some(hash)) => owner.name.strip_suffix(&format!("-{hash}")),
            _ => None,
        };
        match deployment {
            Some(name) => Workload {
                api_version: owner.api_version.clone(),
                kind: "Deployment".into(),
                name: name.to_string(),
                uid: None,
            },
            None => Workload {
                api_version: owner.api_version.clone(),
                kind: owner.kind.clone(),
                name: owner.name.clone(),
                uid: Some(owner.uid.clone()),
            },
        }
    }

    /// The reference of an Event about the workload, in the pod's namespace.
    pub fn reference(&self, namespace: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some(self.api_version.clone()),
            kind: Some(self.kind.clone()),
            name: Some(self.name.clone()),
            namespace: Some(namespace.to_string()),
            uid: self.uid.clone(),
            ..ObjectReference::default()
        }
    }

    pub fn is_pod(&self) -> bool {
        self.kind == "Pod" && self.api_version == "v1"
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(owner: serde_json::Value, hash: Option<&str>) -> Pod {
        let labels = hash.map(|h| json!({"pod-template-hash": h}));
        serde_json::from_value(json!({
            "metadata": {"name": "api-7d9f-x", "uid": "pod-uid", "labels": labels,
                         "ownerReferences": owner},
        }))
        .unwrap()
    }

    fn owner(kind: &str, name: &str) -> serde_json::Value {
        json!([{"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": "owner-uid",
                "controller": true}])
    }

    #[test]
    fn a_replica_set_of_a_deployment_is_named_by_the_deployment() {
        let w = Workload::of(&pod(owner("ReplicaSet", "api-7d9f"), Some("7d9f")));
        assert_eq!(w.to_string(), "Deployment/api");
        assert_eq!(w.uid, None, "the ReplicaSet's uid is not the Deployment's");
        let r = w.reference("shop");
        assert_eq!(r.api_version.as_deref(), Some("apps/v1"));
        assert_eq!(r.namespace.as_deref(), Some("shop"));
    }

    #[test]
    fn other_controllers_are_themselves_with_their_uid() {
        let w = Workload::of(&pod(owner("StatefulSet", "db"), None));
        assert_eq!(
            (w.to_string(), w.uid.as_deref()),
            ("StatefulSet/db".into(), Some("owner-uid"))
        );
        // A ReplicaSet without the hash label (made by hand) is not taken for a Deployment's.
        let w = Workload::of(&pod(owner("ReplicaSet", "api-7d9f"), None));
        assert_eq!(w.to_string(), "ReplicaSet/api-7d9f");
    }

    #[test]
    fn a_bare_pod_is_its_own_workload() {
        let w = Workload::of(&pod(json!(null), None));
        assert!(w.is_pod());
        assert_eq!(
            (w.to_string(), w.uid.as_deref()),
            ("Pod/api-7d9f-x".into(), Some("pod-uid"))
        );
    }
}
