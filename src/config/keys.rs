//! The `jvm-guard.io/` keys, each declared once (name, layering, parser, what it disables, docs),
//! the annotations and labels we own, and the typo hints for unknown keys.

use super::feature::Feature;
use super::quantity::Quantity;
use super::rlimit::Rlimit;
use super::values::*;

pub const PREFIX: &str = "jvm-guard.io/";
/// Written by us on every mutated pod; its presence makes a mutation a no-op.
pub const STATUS_ANNOTATION: &str = "jvm-guard.io/status";
/// Namespace label that opts in (`enabled`); on a pod, `"false"` opts out.
pub const INJECT_LABEL: &str = "jvm-guard.io/inject";

/// Namespaces that are never mutated, whatever the webhook configuration says.
pub const EXCLUDED_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

/// What a key's parser may need from the server: the same parser checks the defaults file at
/// start-up and annotations per admission.
#[derive(Debug, Clone, Copy)]
pub(super) struct ParseContext {
    /// `serve --allow-host-path`: a `hostPath:` dump volume is refused without it.
    pub allow_host_path: bool,
}

/// A key as a type: its typed value and the parser of its raw string. [`super::Config::resolve`]
/// reads keys only through these ([`typed`]), so what a key parses to is declared once.
pub(super) trait Spec {
    const KEY: Key;
    type Value;
    fn parse(value: &str, ctx: &ParseContext) -> Result<Self::Value, String>;
}

/// Declares the keys. Each entry gives everything about a key: its name, whether a pod may
/// override the namespace's value, what an invalid value disables (as warnings name it), its
/// typed value and parser, and a valid example and a one-line doc (docs/configuration.md's
/// table is checked against both).
macro_rules! keys {
    ($($variant:ident {
        name: $name:literal,
        pod: $pod:literal,
        disables: $disables:expr,
        value: $value:ty = $parse:expr,
        example: $example:literal,
        doc: $doc:literal $(,)?
    })*) => {
        /// A configuration key, without the `jvm-guard.io/` prefix.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Key { $(#[doc = $doc] $variant),* }

        impl Key {
            pub const ALL: &'static [Key] = &[$(Key::$variant),*];

            pub fn name(self) -> &'static str {
                match self { $(Key::$variant => $name),* }
            }

            /// Whether a pod annotation may override the namespace value.
            pub fn pod_overridable(self) -> bool {
                match self { $(Key::$variant => $pod),* }
            }

            /// What the key does, in one line.
            pub fn doc(self) -> &'static str {
                match self { $(Key::$variant => $doc),* }
            }

            /// A valid value that differs from the default.
            pub fn example(self) -> &'static str {
                match self { $(Key::$variant => $example),* }
            }

            /// What an invalid value disables, as the warning names it.
            pub(super) fn disables(self) -> &'static str {
                match self { $(Key::$variant => $disables),* }
            }

            /// Checks `value` with the key's parser, the one resolve uses.
            pub(super) fn check(self, value: &str, ctx: &ParseContext) -> Result<(), String> {
                let value = bounded(value)?.trim();
                match self { $(Key::$variant => <typed::$variant as Spec>::parse(value, ctx).map(drop)),* }
            }
        }

        /// The keys as types ([`Spec`]), named like [`Key`]'s variants.
        pub(super) mod typed {
            $(pub(in crate::config) struct $variant;)*
        }

        $(
            impl Spec for typed::$variant {
                const KEY: Key = Key::$variant;
                type Value = $value;
                fn parse(value: &str, ctx: &ParseContext) -> Result<$value, String> {
                    let parse: fn(&str, &ParseContext) -> Result<$value, String> = $parse;
                    parse(value, ctx)
                }
            }
        )*
    };
}

keys! {
    Containers {
        name: "containers", pod: true, disables: "injection",
        value: Targets = |v, _| parse_targets(v),
        example: "app",
        doc: "The containers that get the features.",
    }
    MaxRamPercentage {
        name: "max-ram-percentage", pod: true, disables: Feature::Memory.name(),
        value: MaxRam = |v, _| parse_max_ram(v),
        example: "70",
        doc: "The heap's share of the memory limit (`-XX:MaxRAMPercentage`); `auto` leaves the non-heap reserve.",
    }
    InitialRamPercentage {
        name: "initial-ram-percentage", pod: true, disables: Feature::Memory.name(),
        value: Percent = |v, _| parse_percent(v),
        example: "25",
        doc: "The initial heap's share of the memory limit (`-XX:InitialRAMPercentage`).",
    }
    NonHeapReserve {
        name: "non-heap-reserve", pod: true, disables: Feature::Memory.name(),
        value: Quantity = |v, _| parse_quantity(v),
        example: "256Mi",
        doc: "The memory left to the JVM outside the heap (metaspace, threads, buffers), which `auto` keeps free.",
    }
    HeapDump {
        name: "heap-dump", pod: true, disables: Feature::HeapDump.name(),
        value: bool = |v, _| parse_bool(v),
        example: "false",
        doc: "A heap dump on OutOfMemoryError, written to the dump volume.",
    }
    ExitOnOom {
        name: "exit-on-oom", pod: true, disables: Feature::ExitOnOom.name(),
        value: bool = |v, _| parse_bool(v),
        example: "false",
        doc: "The JVM exits on OutOfMemoryError (`-XX:+ExitOnOutOfMemoryError`) instead of running on.",
    }
    DumpVolume {
        name: "dump-volume", pod: false, disables: Feature::HeapDump.name(),
        value: DumpVolume = |v, ctx| parse_dump_volume(v, ctx.allow_host_path),
        example: "pvc:dumps",
        doc: "The volume heap dumps are written to.",
    }
    DumpMountPath {
        name: "dump-mount-path", pod: false, disables: Feature::HeapDump.name(),
        value: String = |v, _| parse_abs_path(v),
        example: "/var/dumps",
        doc: "Where the dump volume is mounted (`-XX:HeapDumpPath`).",
    }
    DumpSizeLimit {
        name: "dump-size-limit", pod: false, disables: Feature::HeapDump.name(),
        value: Quantity = |v, _| parse_quantity(v),
        example: "4Gi",
        doc: "The `sizeLimit` of an emptyDir dump volume.",
    }
    DumpKeep {
        name: "dump-keep", pod: false, disables: Feature::HeapDump.name(),
        value: u32 = |v, _| parse_keep(v),
        example: "5",
        doc: "How many dumps the rotation hook keeps per pod directory.",
    }
    JvmOptions {
        name: "jvm-options", pod: false, disables: Feature::JvmOptions.name(),
        value: Vec<String> = |v, _| parse_jvm_options(v),
        example: "-XX:+UseG1GC -Dfile.encoding=UTF-8",
        doc: "Extra JVM flags, added with ours.",
    }
    Probes {
        name: "probes", pod: true, disables: Feature::Probes.name(),
        value: Option<ProbeMode> = |v, _| parse_probe_mode(v),
        example: "tcp",
        doc: "Probes: all three where the container has none (a framework preset only with evidence of the framework, else `tcp`); else a missing startup probe from its liveness probe, or `tcp` startup and liveness beside a lone readiness probe.",
    }
    ProbePath {
        name: "probe-path", pod: true, disables: Feature::Probes.name(),
        value: String = |v, _| parse_http_path(v),
        example: "/health",
        doc: "The path `http` probes request.",
    }
    ProbePort {
        name: "probe-port", pod: true, disables: Feature::Probes.name(),
        value: PortRef = |v, _| parse_port(v),
        example: "8080",
        doc: "The port the probes use.",
    }
    StartupTimeout {
        name: "startup-timeout", pod: true, disables: Feature::Probes.name(),
        value: u32 = |v, _| parse_seconds(v),
        example: "300",
        doc: "How long the startup probe gives the JVM to start.",
    }
    Ulimits {
        name: "ulimits", pod: true, disables: Feature::Ulimits.name(),
        value: Vec<Rlimit> = |v, _| parse_ulimits(v),
        example: "nofile=65536",
        doc: "Resource limits (rlimits) the agent sets before it runs the container's command.",
    }
    Tools {
        name: "tools", pod: false, disables: "the tools init container",
        value: bool = |v, _| parse_bool(v),
        example: "false",
        doc: "Inject the tools init container (the agent, dump rotation).",
    }
    Profile {
        name: "profile", pod: true, disables: "the profile choice (auto used)",
        value: ProfileChoice = |v, _| parse_profile(v),
        example: "none",
        doc: "The launcher profile: matched on evidence, named, or none.",
    }
    Agent {
        name: "agent", pod: true, disables: "the agent mode (supervise used)",
        value: AgentMode = |v, _| parse_agent_mode(v),
        example: "exec",
        doc: "How the agent runs the command: `supervise` stays as the container's init and writes the verdict of each exit to the termination message; `exec` becomes the command.",
    }
    PodOverrides {
        name: "pod-overrides", pod: false, disables: "pod overrides",
        value: bool = |v, _| parse_bool(v),
        example: "false",
        doc: "Whether pod annotations may override the namespace's values.",
    }
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

/// The warning for an unknown key; `hint`: with the nearest key's name, which costs an edit
/// distance to every key (left out once the warnings are full: nobody reads it).
pub(super) fn unknown_key_message(annotation: &str, on: &str, hint: bool) -> String {
    let name = annotation.strip_prefix(PREFIX).unwrap_or(annotation);
    if !hint {
        return format!("unknown {on} annotation {annotation}, ignored");
    }
    let near = |k: &&Key| k.name().len().abs_diff(name.len()) <= 3;
    let hint = Key::ALL
        .iter()
        .filter(near)
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::{Config, Defaults, NamespaceConfig, ServerSettings, Warnings};

    fn resolve(ns: &[(&str, &str)], pod: &[(&str, &str)]) -> (Config, Vec<String>) {
        let annotations = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string()))
                .collect()
        };
        let ns = NamespaceConfig::new("team", Some(&annotations(ns)), &Defaults::default());
        let mut w = Warnings::default();
        let settings = ServerSettings::default();
        let c = Config::resolve(&ns, Some(&annotations(pod)), &settings, &mut w);
        (c, w.into_vec())
    }

    /// A key that resolve forgets compiles; this catches it: each key's example, set where it
    /// may be set, changes the resolved configuration. The pod turns on the probes (off by
    /// default) so their keys are read, and gives `pod-overrides` something to refuse.
    #[test]
    fn every_key_changes_the_resolved_config() {
        let pod = [("probes", "http"), ("probe-path", "/ready")];
        let (base, base_warnings) = resolve(&[], &pod);
        assert!(base_warnings.is_empty(), "{base_warnings:?}");
        for &key in Key::ALL {
            let set = [(key.name(), key.example())];
            let (config, warnings) = if key.pod_overridable() {
                let mut pod = BTreeMap::from(pod);
                pod.insert(key.name(), key.example());
                resolve(&[], &pod.into_iter().collect::<Vec<_>>())
            } else {
                resolve(&set, &pod)
            };
            assert!(
                !warnings.iter().any(|w| w.contains("invalid")),
                "{key:?}: {warnings:?}"
            );
            assert_ne!(
                config,
                base,
                "{}={:?} is not read",
                key.name(),
                key.example()
            );
        }
    }

    /// Every parser refuses something, so no key is declared with a parser that takes anything.
    #[test]
    fn every_key_checks_its_value() {
        let ctx = ParseContext {
            allow_host_path: false,
        };
        for &key in Key::ALL {
            assert_eq!(key.check(key.example(), &ctx), Ok(()), "{key:?}");
            assert!(key.check("\"", &ctx).is_err(), "{key:?} takes a quote");
        }
    }

    #[test]
    fn names_are_unique_and_read_back() {
        for &key in Key::ALL {
            assert_eq!(Key::from_name(key.name()), Some(key));
            assert!(!is_reserved(key.name()), "{key:?}");
        }
    }

    /// docs/configuration.md's key table lists every key once, in declaration order, with the
    /// declared doc, example and layering.
    #[test]
    fn the_docs_table_matches_the_declarations() {
        let docs = include_str!("../../docs/configuration.md");
        let rows: Vec<Vec<&str>> = docs
            .lines()
            .filter(|l| l.starts_with("| `"))
            .map(|l| l.trim_matches('|').split(" | ").map(str::trim).collect())
            .collect();
        let names: Vec<&str> = rows.iter().map(|r| r[0].trim_matches('`')).collect();
        let keys: Vec<&str> = Key::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(names, keys, "docs/configuration.md's key table vs Key::ALL");
        for (row, &key) in rows.iter().zip(Key::ALL) {
            let [_, doc, _values, _default, example, pod] = row[..] else {
                panic!("{key:?}: expected 6 columns: {row:?}");
            };
            assert_eq!(doc, key.doc(), "{key:?}: the doc");
            assert_eq!(
                example,
                format!("`{}`", key.example()),
                "{key:?}: the example"
            );
            let pod_expected = if key.pod_overridable() { "yes" } else { "no" };
            assert_eq!(pod, pod_expected, "{key:?}: pod-overridable");
        }
    }
}
