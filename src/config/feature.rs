//! The features a mutation applies, as named in the status annotation, warnings and metrics.

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
