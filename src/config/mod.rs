//! Configuration: the `jvm-guard.io/` keys, their layering (defaults < namespace < pod) and
//! their parsing into typed values. Nothing outside this module sees raw annotation strings.

mod defaults;
mod feature;
mod keys;
pub mod matcher;
pub mod profiles;
pub mod quantity;
mod resolve;
pub mod rlimit;
mod values;
mod warnings;

pub use defaults::{Defaults, DefaultsError};
pub use feature::Feature;
pub use keys::{Key, EXCLUDED_NAMESPACES, INJECT_LABEL, PREFIX, STATUS_ANNOTATION};
pub use profiles::{Profile, Profiles};
#[cfg(test)]
pub(crate) use resolve::RESOLVED;
pub use resolve::{NamespaceConfig, Source};
pub use values::{
    AgentMode, DumpConfig, DumpVolume, MaxRam, MemoryConfig, Percent, PortRef, ProbeConfig,
    ProbeMode, ProfileChoice, Targets,
};
pub use warnings::{Warnings, MAX_WARNINGS, WARNING_PREFIX};

use rlimit::Rlimit;

/// Server-side switches that annotations cannot change.
#[derive(Debug, Clone, Default)]
pub struct ServerSettings {
    /// `serve --allow-host-path`: permits `dump-volume: hostPath:<path>`.
    pub allow_host_path: bool,
    /// The webhook's own namespace, never mutated.
    pub webhook_namespace: Option<String>,
    /// Image of the tools init container (the webhook's own); without it no tools are injected.
    pub tools_image: Option<String>,
    /// The launcher profiles: the built-in ones and the defaults file's.
    pub profiles: std::sync::Arc<Profiles>,
}

/// A feature's switch: off, on with its parameters, or disabled by an invalid value (already
/// warned about).
#[derive(Debug, Clone, PartialEq)]
pub enum Switch<T> {
    Off,
    On(T),
    Invalid,
}

impl<T> Switch<T> {
    pub fn as_on(&self) -> Option<&T> {
        match self {
            Switch::On(v) => Some(v),
            _ => None,
        }
    }

    pub fn is_on(&self) -> bool {
        matches!(self, Switch::On(_))
    }
}

/// The typed configuration for one pod.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub targets: Targets,
    pub memory: Switch<MemoryConfig>,
    pub heap_dump: Switch<DumpConfig>,
    pub exit_on_oom: Switch<()>,
    pub jvm_options: Switch<Vec<String>>,
    pub probes: Switch<ProbeConfig>,
    pub ulimits: Switch<Vec<Rlimit>>,
    /// Inject the tools init container (rlimit wrapper, dump rotation).
    pub tools: bool,
    pub profile: ProfileChoice,
    /// How the agent runs the command, when it starts the container.
    pub agent: AgentMode,
}

impl Config {
    /// Whether any feature that puts JVM flags in the container ([`Feature::jvm_flags`]) is on.
    pub fn jvm_flags_on(&self) -> bool {
        Feature::ALL
            .into_iter()
            .any(|f| f.jvm_flags() && self.wants(f))
    }

    /// Whether the configuration asks for `feature`; the mutation may still skip it for a
    /// container (with a reason).
    pub fn wants(&self, feature: Feature) -> bool {
        match feature {
            Feature::Memory => self.memory.is_on(),
            Feature::HeapDump => self.heap_dump.is_on(),
            Feature::ExitOnOom => self.exit_on_oom.is_on(),
            Feature::JvmOptions => self.jvm_options.is_on(),
            Feature::Probes => self.probes.is_on(),
            Feature::Ulimits => self.ulimits.is_on(),
            // The rotation hook comes with the heap dumps, run by the tools.
            Feature::DumpRotation => self.heap_dump.is_on() && self.tools,
        }
    }

    /// The rlimits the agent sets: none unless `ulimits` is on.
    pub fn limits(&self) -> &[Rlimit] {
        self.ulimits.as_on().map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::keys::edit_distance;
    use super::values::parse_percent;
    use super::*;
    use rstest::rstest;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string()))
            .collect()
    }

    fn resolve(ns: &[(&str, &str)], pod: &[(&str, &str)]) -> (Config, Vec<String>) {
        let ns = NamespaceConfig::new("team", Some(&annotations(ns)), &Defaults::default());
        let mut w = Warnings::default();
        let c = Config::resolve(
            &ns,
            Some(&annotations(pod)),
            &ServerSettings::default(),
            &mut w,
        );
        (c, w.into_vec())
    }

    #[rstest]
    #[case("75", Some(750))]
    #[case("62.5", Some(625))]
    #[case("100", Some(1000))]
    #[case("0.1", Some(1))]
    #[case("0", None)]
    #[case("100.1", None)]
    #[case("50.25", None)]
    #[case("-5", None)]
    #[case("5.", None)]
    #[case(".5", None)]
    #[case("abc", None)]
    fn percent(#[case] text: &str, #[case] tenths: Option<u16>) {
        assert_eq!(parse_percent(text).ok().map(Percent::tenths), tenths);
    }

    #[test]
    fn defaults_when_nothing_is_set() {
        let (c, w) = resolve(&[], &[]);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.targets, Targets::Default);
        let m = c.memory.as_on().unwrap();
        assert_eq!(
            (m.max.clone(), m.reserve.bytes()),
            (MaxRam::Auto, 384 << 20)
        );
        let d = c.heap_dump.as_on().unwrap();
        assert_eq!(d.mount_path, "/dumps");
        assert_eq!(d.keep, 3);
        assert_eq!(c.exit_on_oom, Switch::On(()));
        assert_eq!(c.probes, Switch::Off);
        assert_eq!(c.ulimits, Switch::Off);
        assert!(c.tools);
    }

    #[test]
    fn pod_overrides_pod_keys_only() {
        let (c, w) = resolve(
            &[("max-ram-percentage", "50"), ("dump-mount-path", "/ns")],
            &[("max-ram-percentage", "70"), ("dump-mount-path", "/pod")],
        );
        assert_eq!(c.memory.as_on().unwrap().max, MaxRam::Fixed(Percent(700)));
        assert_eq!(c.heap_dump.as_on().unwrap().mount_path, "/ns");
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("can only be set on the namespace"), "{w:?}");
    }

    #[test]
    fn locked_namespace_ignores_pod_values() {
        let (c, w) = resolve(
            &[("pod-overrides", "false"), ("probes", "tcp")],
            &[("probes", "off")],
        );
        assert!(matches!(
            c.probes,
            Switch::On(ProbeConfig {
                mode: ProbeMode::Tcp,
                ..
            })
        ));
        assert!(w[0].contains("pod-overrides"), "{w:?}");
    }

    #[test]
    fn invalid_value_disables_only_its_feature() {
        let (c, w) = resolve(&[("max-ram-percentage", "80%")], &[]);
        assert_eq!(c.memory, Switch::Invalid);
        assert!(c.heap_dump.as_on().is_some());
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("max-ram-percentage=\"80%\""), "{w:?}");
        assert!(w[0].contains("memory disabled"), "{w:?}");
    }

    #[test]
    fn a_value_over_the_cap_is_refused_with_a_short_warning() {
        // 60,000 container names (480 KB): a pod author's stall of every review.
        let names: Vec<String> = (0..60_000).map(|i| format!("c{i}")).collect();
        let list = names.join(",");
        let (c, w) = resolve(&[], &[("containers", &list)]);
        assert_eq!(c.targets, Targets::Invalid);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("more than the 4096 a key takes"), "{}", w[0]);
        assert!(w[0].len() < 400, "{}", w[0].len());
        // At the cap it is read as before.
        let at_cap = format!("{}{}", "a,".repeat(2047), "b");
        assert_eq!(at_cap.len(), super::values::MAX_VALUE_BYTES - 1);
        let (c, _) = resolve(&[], &[("containers", &at_cap)]);
        assert!(matches!(c.targets, Targets::Named(_)));
        // The defaults file's check is the same.
        let long = "-Xss1m ".repeat(1000);
        assert!(Key::JvmOptions
            .check(
                &long,
                &super::keys::ParseContext {
                    allow_host_path: false
                }
            )
            .is_err());
    }

    #[test]
    fn unknown_key_suggests_the_nearest() {
        let (_, w) = resolve(&[("max-ram-percentag", "50"), ("status", "{}")], &[]);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("did you mean jvm-guard.io/max-ram-percentage?"),
            "{w:?}"
        );
    }

    #[test]
    fn keys_of_a_feature_that_is_off_are_not_read() {
        let (c, w) = resolve(
            &[
                ("startup-timeout", "-1"),
                ("heap-dump", "false"),
                ("dump-keep", "0"),
            ],
            &[],
        );
        assert_eq!((c.probes, c.heap_dump), (Switch::Off, Switch::Off));
        assert!(w.is_empty(), "{w:?}");
        assert!(matches!(
            Defaults::from_yaml("probes: off\nstartup-timeout: -1\n"),
            Err(DefaultsError::Invalid(_))
        ));
    }

    #[rstest]
    #[case::quote("/d\"x", false)]
    #[case::command("/d;touch${IFS}/tmp/pwned;#", false)]
    #[case::double_slash("//", false)]
    #[case::empty_part("/a//b", false)]
    #[case::dot("/a/./b", false)]
    #[case::dotdot("/a/../b", false)]
    #[case::relative("dumps", false)]
    #[case::space("/my dumps", false)]
    #[case::colon("/a:b", false)]
    #[case::plain("/dumps", true)]
    #[case::trailing("/var/dumps/", true)]
    #[case::chars("/data/heap_dumps-1.0", true)]
    fn dump_paths_are_safe_in_a_shell_and_an_options_string(#[case] path: &str, #[case] ok: bool) {
        let (c, w) = resolve(&[("dump-mount-path", path)], &[]);
        assert_eq!(c.heap_dump.as_on().is_some(), ok, "{path}: {w:?}");
        assert_eq!(w.is_empty(), ok, "{w:?}");
    }

    #[test]
    fn jvm_options_cannot_carry_quotes_or_separators() {
        let (c, w) = resolve(&[("jvm-options", "-Dx=\"a -XX:+UseG1GC")], &[]);
        assert_eq!(c.jvm_options, Switch::Invalid, "{w:?}");
        let (c, _) = resolve(&[("jvm-options", "-Dx=a:b,c -XX:+UseG1GC")], &[]);
        assert!(c.jvm_options.as_on().is_some());
    }

    #[test]
    fn http_probes_need_a_path() {
        let (c, w) = resolve(&[("probes", "http")], &[]);
        assert_eq!(c.probes, Switch::Invalid);
        assert!(w[0].contains("probe-path"));
    }

    #[test]
    fn pods_without_our_annotations_share_the_namespace_s_configuration() {
        let ns = NamespaceConfig::new(
            "team",
            Some(&annotations(&[("max-ram-percentage", "60"), ("nope", "1")])),
            &Defaults::default(),
        );
        let settings = ServerSettings::default();
        let shared = |pod: Option<&BTreeMap<String, String>>| {
            let mut w = Warnings::default();
            let c = Config::resolve_shared(&ns, pod, &settings, &mut w);
            let mut alone = Warnings::default();
            let resolved = Config::resolve(&ns, pod, &settings, &mut alone);
            // The same configuration and warnings as a resolution of its own.
            assert_eq!(*c, resolved);
            assert_eq!(w, alone);
            assert!(!w.is_empty(), "the namespace's unknown key, each time");
            c
        };
        let other = BTreeMap::from([("app".to_string(), "x".to_string())]);
        let first = shared(None);
        assert!(Arc::ptr_eq(&first, &shared(Some(&other))), "resolved once");
        let ours = annotations(&[("max-ram-percentage", "50")]);
        let own = shared(Some(&ours));
        assert!(!Arc::ptr_eq(&first, &own));
        assert_ne!(own.memory, first.memory, "the pod's own percentage");
        // Other settings: resolved for them, not the first server's.
        let host = ServerSettings {
            allow_host_path: true,
            ..ServerSettings::default()
        };
        let c = Config::resolve_shared(&ns, None, &host, &mut Warnings::default());
        assert!(!Arc::ptr_eq(&first, &c));
    }

    #[test]
    fn host_path_needs_the_server_flag() {
        let (c, w) = resolve(&[("dump-volume", "hostPath:/var/dumps")], &[]);
        assert_eq!(c.heap_dump, Switch::Invalid);
        assert!(w[0].contains("--allow-host-path"));
        let ns = NamespaceConfig::new(
            "team",
            Some(&annotations(&[("dump-volume", "hostPath:/var/dumps")])),
            &Defaults::default(),
        );
        let settings = ServerSettings {
            allow_host_path: true,
            ..ServerSettings::default()
        };
        let c = Config::resolve(&ns, None, &settings, &mut Warnings::default());
        assert_eq!(
            c.heap_dump.as_on().unwrap().volume,
            DumpVolume::HostPath("/var/dumps".into())
        );
    }

    #[test]
    fn a_host_path_in_the_defaults_needs_the_server_flag() {
        let d = Defaults::from_yaml("dump-volume: hostPath:/var/dumps\n").unwrap();
        let err = d.check_server(false).unwrap_err().to_string();
        assert!(err.contains("--allow-host-path"), "{err}");
        assert!(d.check_server(true).is_ok());
        assert!(Defaults::default().check_server(false).is_ok());
    }

    #[test]
    fn defaults_file_is_checked_at_load() {
        let d = Defaults::from_yaml(
            "jvm-guard.io/probes: tcp\nstartup-timeout: 300\nheap-dump: false\n",
        )
        .unwrap();
        assert_eq!(
            d.values().get(&Key::StartupTimeout).map(String::as_str),
            Some("300")
        );
        assert!(matches!(
            Defaults::from_yaml("probez: tcp"),
            Err(DefaultsError::UnknownKey(_))
        ));
        assert!(matches!(
            Defaults::from_yaml("probes: maybe"),
            Err(DefaultsError::Invalid(_))
        ));
        assert!(matches!(
            Defaults::from_yaml("probes: [tcp]"),
            Err(DefaultsError::NotScalar(_))
        ));
        assert_eq!(Defaults::from_yaml("").unwrap(), Defaults::default());
    }

    #[test]
    fn jvm_flags_are_on_with_any_jvm_flag_feature() {
        let (on, _) = resolve(&[], &[]);
        assert!(on.jvm_flags_on());
        let only = |pairs: &[(&str, &str)]| {
            let mut off = vec![
                ("max-ram-percentage", "x"),
                ("heap-dump", "false"),
                ("exit-on-oom", "false"),
            ];
            off.retain(|(k, _)| !pairs.iter().any(|(p, _)| p == k));
            off.extend_from_slice(pairs);
            resolve(&off, &[]).0.jvm_flags_on()
        };
        assert!(!only(&[("probes", "tcp"), ("ulimits", "nofile=1024")]));
        assert!(only(&[("max-ram-percentage", "50")]));
        assert!(only(&[("heap-dump", "true")]));
        assert!(only(&[("exit-on-oom", "true")]));
        assert!(only(&[("jvm-options", "-Xss1m")]));
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("probes", "probes"), 0);
        assert_eq!(edit_distance("probe", "probes"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
