//! The pod as the engine reads it: the fields the mutation looks at, under k8s-openapi's names
//! and with its leaf types, and nothing else. A review's pod is read straight into these, not
//! into k8s-openapi's `Pod`, whose `Container` alone is 2.3 KB of mostly unread fields that
//! serde builds and moves for every container and variable (docs/performance.md).
//!
//! What is kept is read as k8s-openapi reads it: unknown fields are skipped, a missing or
//! `null` required field (a name, `containers`) is empty, a wrong type or another `apiVersion`
//! or `kind` is an error. A field not kept is not looked at, even of the wrong type: the
//! apiserver decodes a pod into its own types before any webhook sees it. What the mutation
//! writes is built with k8s-openapi's types.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ContainerPort, EnvFromSource, EnvVarSource, LocalObjectReference, PodOS, Probe,
    ResourceRequirements, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Deserializer};

/// A Pod: its metadata and the parts of its spec the mutation reads.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Pod {
    /// Checked, not kept: another `apiVersion` or `kind` than a Pod's is an error, as it is
    /// for k8s-openapi (the apiserver always sends `v1`, `Pod`).
    #[serde(rename = "apiVersion", deserialize_with = "api_version")]
    api_version: (),
    #[serde(deserialize_with = "kind")]
    kind: (),
    #[serde(deserialize_with = "or_default")]
    pub metadata: ObjectMeta,
    pub spec: Option<PodSpec>,
}

/// What the admission types need to carry a [`Pod`]: it is the core API's Pod.
impl k8s_openapi::Resource for Pod {
    const API_VERSION: &'static str = "v1";
    const GROUP: &'static str = "";
    const KIND: &'static str = "Pod";
    const VERSION: &'static str = "v1";
    const URL_PATH_SEGMENT: &'static str = "pods";
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl k8s_openapi::Metadata for Pod {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(deserialize_with = "or_default")]
    pub containers: Vec<Container>,
    pub init_containers: Option<Vec<Container>>,
    pub volumes: Option<Vec<Volume>>,
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    pub node_selector: Option<BTreeMap<String, String>>,
    pub os: Option<PodOS>,
    pub host_users: Option<bool>,
}

/// A volume of the pod: only its name is ever compared.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Volume {
    #[serde(deserialize_with = "or_default")]
    pub name: String,
}

/// A container. The probes are boxed: most containers have none, and a `Probe` is large.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Container {
    #[serde(deserialize_with = "or_default")]
    pub name: String,
    pub image: Option<String>,
    pub command: Option<Vec<String>>,
    pub args: Option<Vec<String>>,
    pub env: Option<Vec<EnvVar>>,
    pub env_from: Option<Vec<EnvFromSource>>,
    pub resources: Option<ResourceRequirements>,
    pub ports: Option<Vec<ContainerPort>>,
    pub liveness_probe: Option<Box<Probe>>,
    pub readiness_probe: Option<Box<Probe>>,
    pub startup_probe: Option<Box<Probe>>,
    pub volume_mounts: Option<Vec<VolumeMount>>,
    pub termination_message_path: Option<String>,
    pub termination_message_policy: Option<String>,
}

/// A variable of `env`. Its source is boxed: most variables are literals.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct EnvVar {
    #[serde(deserialize_with = "or_default")]
    pub name: String,
    pub value: Option<String>,
    pub value_from: Option<Box<EnvVarSource>>,
}

impl From<&k8s_openapi::api::core::v1::Pod> for Pod {
    /// Through k8s-openapi's own JSON, which this type reads (tested below): for the callers
    /// that hold a cluster's Pod (the watcher, `report`), not the review's hot path. Were it
    /// ever unreadable, the metadata alone still serves their questions about labels.
    fn from(pod: &k8s_openapi::api::core::v1::Pod) -> Pod {
        serde_json::to_value(pod)
            .and_then(serde_json::from_value)
            .unwrap_or_else(|_| Pod {
                metadata: pod.metadata.clone(),
                ..Pod::default()
            })
    }
}

fn api_version<'de, D: Deserializer<'de>>(deserializer: D) -> Result<(), D::Error> {
    exactly(deserializer, <Pod as k8s_openapi::Resource>::API_VERSION)
}

fn kind<'de, D: Deserializer<'de>>(deserializer: D) -> Result<(), D::Error> {
    exactly(deserializer, <Pod as k8s_openapi::Resource>::KIND)
}

/// A string that must be `expected`, as k8s-openapi checks a Pod's `apiVersion` and `kind`.
fn exactly<'de, D: Deserializer<'de>>(deserializer: D, expected: &str) -> Result<(), D::Error> {
    let value = String::deserialize(deserializer)?;
    if value != expected {
        let found = serde::de::Unexpected::Str(&value);
        return Err(serde::de::Error::invalid_value(found, &expected));
    }
    Ok(())
}

/// A required field as k8s-openapi reads it: `null` is the empty value, as a missing one is.
fn or_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Option::<T>::deserialize(deserializer).map(Option::unwrap_or_default)
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    /// A pod with every field the engine reads, and fields it does not.
    fn full() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "shop", "labels": {"a": "b"},
                         "annotations": {"x/y": "z"}},
            "spec": {
                "nodeSelector": {"kubernetes.io/arch": "arm64"},
                "os": {"name": "linux"},
                "hostUsers": false,
                "imagePullSecrets": [{"name": "regcred"}],
                "volumes": [{"name": "data", "emptyDir": {"sizeLimit": "1Gi"}}],
                "serviceAccountName": "api",
                "initContainers": [{"name": "init", "image": "busybox"}],
                "containers": [{
                    "name": "app", "image": "eclipse-temurin:21",
                    "command": ["java"], "args": ["-jar", "app.jar"],
                    "env": [{"name": "A", "value": "1"},
                            {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}],
                    "envFrom": [{"prefix": "P_", "configMapRef": {"name": "cm"}}],
                    "resources": {"limits": {"memory": "1Gi"}, "requests": {"cpu": "100m"}},
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "livenessProbe": {"httpGet": {"path": "/h", "port": "http"}, "periodSeconds": 5},
                    "readinessProbe": {"tcpSocket": {"port": 8080}},
                    "startupProbe": {"exec": {"command": ["true"]}},
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                    "securityContext": {"runAsUser": 1000},
                    "imagePullPolicy": "Always",
                }],
            },
        })
    }

    /// Every field this type keeps reads as k8s-openapi reads it: the pod read here equals
    /// k8s-openapi's reading of the same pod, cut to these fields.
    #[test]
    fn reads_what_k8s_openapi_reads() {
        let ours: Pod = serde_json::from_value(full()).unwrap();
        let theirs: k8s_openapi::api::core::v1::Pod = serde_json::from_value(full()).unwrap();
        assert_eq!(ours, Pod::from(&theirs));
        let spec = ours.spec.as_ref().unwrap();
        let app = &spec.containers[0];
        assert_eq!(app.name, "app");
        assert_eq!(app.env.as_ref().unwrap()[1].name, "B");
        assert!(app.env.as_ref().unwrap()[1].value_from.is_some());
        assert_eq!(spec.volumes.as_ref().unwrap()[0].name, "data");
        assert_eq!(spec.host_users, Some(false));
        assert!(app.liveness_probe.as_ref().unwrap().http_get.is_some());
        // What is not kept is not held: neither the container's security context nor the
        // pod's service account.
        let held = format!("{ours:?}");
        assert!(
            !held.contains("run_as_user") && !held.contains("1000"),
            "{held}"
        );
        assert!(
            !held.contains("service_account") && !held.contains("\"api\""),
            "{held}"
        );
    }

    /// A required field missing or `null` is empty, as k8s-openapi reads it; a field of the
    /// wrong type is an error, as there.
    #[test]
    fn null_and_missing_required_fields_are_empty() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": null,
            "spec": {"containers": [{"name": null, "env": [{"value": "x"}]}, {}],
                     "volumes": [{"name": null}]},
        }))
        .unwrap();
        let spec = pod.spec.unwrap();
        assert_eq!(spec.containers.len(), 2);
        assert_eq!(spec.containers[0].name, "");
        assert_eq!(spec.containers[0].env.as_ref().unwrap()[0].name, "");
        assert_eq!(spec.volumes.unwrap()[0].name, "");
        let no_containers: Pod =
            serde_json::from_value(json!({"spec": {"containers": null}})).unwrap();
        assert!(no_containers.spec.unwrap().containers.is_empty());
        for bad in [
            json!({"apiVersion": "%1", "kind": "Pod"}),
            json!({"apiVersion": "v1", "kind": "Node"}),
            json!({"apiVersion": null}),
            json!({"spec": {"containers": [{"name": 1}]}}),
            json!({"spec": {"containers": {}}}),
            json!({"spec": {"containers": [{"env": [{"name": "A", "value": 1}]}]}}),
        ] {
            let ours = serde_json::from_value::<Pod>(bad.clone());
            let theirs = serde_json::from_value::<k8s_openapi::api::core::v1::Pod>(bad.clone());
            assert!(ours.is_err() && theirs.is_err(), "{bad}");
        }
    }

    /// Why this type exists: serde builds each container and variable on the stack and moves
    /// it into its `Vec` (docs/performance.md).
    #[test]
    fn a_container_is_a_fraction_of_k8s_openapis() {
        use std::mem::size_of;
        let (ours, theirs) = (
            size_of::<Container>(),
            size_of::<k8s_openapi::api::core::v1::Container>(),
        );
        assert!(ours * 4 < theirs, "{ours} bytes against {theirs}");
        assert!(size_of::<EnvVar>() <= 64, "{}", size_of::<EnvVar>());
        println!(
            "Container {ours} bytes (k8s-openapi's {theirs}), EnvVar {}",
            size_of::<EnvVar>()
        );
    }
}
