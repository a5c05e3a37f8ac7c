//! The `jvm-guard.io/` keys: their names, which ones a pod may override, the annotations and
//! labels we own, and the typo hints for unknown keys.

pub const PREFIX: &str = "jvm-guard.io/";
/// Written by us on every mutated pod; its presence makes a mutation a no-op.
pub const STATUS_ANNOTATION: &str = "jvm-guard.io/status";
/// Namespace label that opts in (`enabled`); on a pod, `"false"` opts out.
pub const INJECT_LABEL: &str = "jvm-guard.io/inject";

/// Namespaces that are never mutated, whatever the webhook configuration says.
pub const EXCLUDED_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

macro_rules! keys {
    ($($variant:ident => $name:literal, pod: $pod:literal;)*) => {
        /// A configuration key, without the `jvm-guard.io/` prefix.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Key { $($variant),* }

        impl Key {
            pub const ALL: &'static [Key] = &[$(Key::$variant),*];

            pub fn name(self) -> &'static str {
                match self { $(Key::$variant => $name),* }
            }

            /// Whether a pod annotation may override the namespace value.
            pub fn pod_overridable(self) -> bool {
                match self { $(Key::$variant => $pod),* }
            }
        }
    };
}

keys! {
    Containers => "containers", pod: true;
    MaxRamPercentage => "max-ram-percentage", pod: true;
    InitialRamPercentage => "initial-ram-percentage", pod: true;
    NonHeapReserve => "non-heap-reserve", pod: true;
    HeapDump => "heap-dump", pod: true;
    ExitOnOom => "exit-on-oom", pod: true;
    DumpVolume => "dump-volume", pod: false;
    DumpMountPath => "dump-mount-path", pod: false;
    DumpSizeLimit => "dump-size-limit", pod: false;
    DumpKeep => "dump-keep", pod: false;
    JvmOptions => "jvm-options", pod: false;
    Probes => "probes", pod: true;
    ProbePath => "probe-path", pod: true;
    ProbePort => "probe-port", pod: true;
    StartupTimeout => "startup-timeout", pod: true;
    Ulimits => "ulimits", pod: true;
    Tools => "tools", pod: false;
    Profile => "profile", pod: true;
    PodOverrides => "pod-overrides", pod: false;
}

impl Key {
    pub fn from_name(name: &str) -> Option<Key> {
        Key::ALL.iter().copied().find(|k| k.name() == name)
    }

    pub fn annotation(self) -> String {
        format!("{PREFIX}{}", self.name())
    }
}

/// Keys under our prefix that are not configuration and must not be reported as typos.
pub(super) fn is_reserved(name: &str) -> bool {
    matches!(name, "status" | "inject")
}

pub(super) fn unknown_key_message(annotation: &str, on: &str) -> String {
    let name = annotation.strip_prefix(PREFIX).unwrap_or(annotation);
    let hint = Key::ALL
        .iter()
        .map(|k| (edit_distance(name, k.name()), k))
        .filter(|(d, _)| *d <= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| format!(" (did you mean {}?)", k.annotation()))
        .unwrap_or_default();
    format!("unknown {on} annotation {annotation}, ignored{hint}")
}

pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
