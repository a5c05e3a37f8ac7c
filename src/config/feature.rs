//! The features a mutation applies, as named in the status annotation, warnings and metrics:
//! declared once below, with whether each puts JVM flags in the container.

use serde::{Deserialize, Serialize};

macro_rules! features {
    ($($(#[doc = $doc:literal])* $variant:ident => $name:literal, jvm_flags: $jvm:literal;)*) => {
        /// A feature of the mutation, as named in the status annotation and in warnings.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum Feature {
            $($(#[doc = $doc])* #[serde(rename = $name)] $variant),*
        }

        impl Feature {
            pub const ALL: [Feature; [$(Feature::$variant),*].len()] = [$(Feature::$variant),*];

            pub const fn name(self) -> &'static str {
                match self { $(Feature::$variant => $name),* }
            }

            /// Whether the feature puts JVM flags in the container (so it needs an options
            /// variable the JVM reads).
            pub const fn jvm_flags(self) -> bool {
                match self { $(Feature::$variant => $jvm),* }
            }
        }
    };
}

features! {
    Memory => "memory", jvm_flags: true;
    HeapDump => "heap-dump", jvm_flags: true;
    ExitOnOom => "exit-on-oom", jvm_flags: true;
    JvmOptions => "jvm-options", jvm_flags: true;
    Probes => "probes", jvm_flags: false;
    Ulimits => "ulimits", jvm_flags: false;
    /// Heap dumps renamed and pruned by the OutOfMemoryError hook (needs the tools).
    DumpRotation => "dump-rotation", jvm_flags: true;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_uses_the_declared_names() {
        for f in Feature::ALL {
            let json = serde_json::to_string(&f).unwrap();
            assert_eq!(json, format!("\"{}\"", f.name()));
            assert_eq!(serde_json::from_str::<Feature>(&json).unwrap(), f);
        }
    }
}
