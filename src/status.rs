//! The `jvm-guard.io/status` annotation: which features were applied or skipped, per container.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// A feature of the mutation, as named in the status annotation and in warnings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Feature {
    Memory,
    HeapDump,
    ExitOnOom,
    JvmOptions,
    Probes,
    Ulimits,
    /// Heap dumps renamed and pruned by the OutOfMemoryError hook (needs the tools).
    DumpRotation,
}

impl Feature {
    pub const ALL: [Feature; 7] = [
        Feature::Memory,
        Feature::HeapDump,
        Feature::ExitOnOom,
        Feature::JvmOptions,
        Feature::Probes,
        Feature::Ulimits,
        Feature::DumpRotation,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Feature::Memory => "memory",
            Feature::HeapDump => "heap-dump",
            Feature::ExitOnOom => "exit-on-oom",
            Feature::JvmOptions => "jvm-options",
            Feature::Probes => "probes",
            Feature::Ulimits => "ulimits",
            Feature::DumpRotation => "dump-rotation",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub applied: Vec<Feature>,
    /// Feature → why it was not applied.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub skipped: BTreeMap<Feature, String>,
}

impl ContainerStatus {
    pub fn applied(&mut self, feature: Feature) {
        if !self.applied.contains(&feature) {
            self.applied.push(feature);
        }
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
        serde_json::to_string(self).expect("status serializes")
    }
}

impl Default for Status {
    fn default() -> Self {
        Status::new()
    }
}
