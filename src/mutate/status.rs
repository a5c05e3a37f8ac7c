//! The `jvm-guard.io/status` annotation: which features were applied or skipped, per container,
//! and the patch that writes it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::patch::{pointer, PatchBuilder};
use crate::config::{Feature, STATUS_ANNOTATION};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub applied: Vec<Feature>,
    /// Feature → what admission could not know: passed on, decided where it runs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unverified: BTreeMap<Feature, String>,
    /// Feature → why it was not applied.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub skipped: BTreeMap<Feature, String>,
    /// Why the container is a target: `seen` (JVM evidence), `assumed` (none either way) or
    /// `named` (listed in `containers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jvm: Option<String>,
    /// The launcher profile matched (SPEC §4.7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// The variable our JVM flags go to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// The variable our memory flags go to, when not `via` (the launcher's heap variable).
    #[serde(
        default,
        rename = "memory-via",
        skip_serializing_if = "Option::is_none"
    )]
    pub memory_via: Option<String>,
    /// Where our JVM flags are merged: `agent` (at start, into the environment the process
    /// really has, SPEC §4.4) or `admission` (into a literal value of the pod spec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge: Option<String>,
    /// How the agent runs the container, when it starts it: `supervise` or `exec`
    /// (docs/agent.md#the-agent-jvm-guard-exec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Where the supervising agent writes its samples and the verdict of each exit (the
    /// termination-message file), or `none: <why>` when it leaves the file alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
}

impl ContainerStatus {
    pub fn applied(&mut self, feature: Feature) {
        if !self.applied.contains(&feature) {
            self.applied.push(feature);
        }
    }

    pub fn unverified(&mut self, feature: Feature, reason: impl Into<String>) {
        self.unverified.insert(feature, reason.into());
    }

    pub fn skipped(&mut self, feature: Feature, reason: impl Into<String>) {
        self.skipped.insert(feature, reason.into());
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub containers: BTreeMap<String, ContainerStatus>,
}

impl Status {
    /// Every feature applied to at least one container.
    pub fn applied(&self) -> BTreeSet<Feature> {
        let containers = self.containers.values();
        containers.flat_map(|c| c.applied.iter().copied()).collect()
    }

    pub fn new() -> Status {
        Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            containers: BTreeMap::new(),
        }
    }

    /// Compact JSON, as stored in the annotation.
    pub fn to_annotation(&self) -> String {
        crate::json::to_string(self).expect("status serializes")
    }
}

impl Default for Status {
    fn default() -> Self {
        Status::new()
    }
}

/// Adds the status annotation to the pod's metadata, creating what is missing.
pub fn annotate(patch: &mut PatchBuilder, metadata: &ObjectMeta, status: &Status) {
    let value = status.to_annotation();
    if metadata.annotations.is_some() {
        patch.add(
            &pointer(["metadata", "annotations", STATUS_ANNOTATION]),
            &value,
        );
    } else {
        // The typed pod cannot tell `metadata: {}` from no metadata at all (found by fuzzing):
        // an empty one is set whole, which `add` does in both cases.
        let annotations = BTreeMap::from([(STATUS_ANNOTATION, value)]);
        patch.insert_key(
            &pointer(["metadata"]),
            *metadata != ObjectMeta::default(),
            "annotations",
            &annotations,
        );
    }
}
