//! Configuration: the `jvm-guard.io/` keys, their layering (defaults < namespace < pod) and
//! their parsing into typed settings. Nothing outside this module sees raw annotation strings.

use std::collections::BTreeMap;
use std::fmt;

use crate::quantity::Quantity;
use crate::rlimit::{self, Rlimit};
use crate::status::Feature;
use crate::warnings::Warnings;

pub const PREFIX: &str = "jvm-guard.io/";
/// Written by us on every mutated pod; its presence makes a mutation a no-op.
pub const STATUS_ANNOTATION: &str = "jvm-guard.io/status";
/// Namespace label that opts in (`enabled`); on a pod, `"false"` opts out.
pub const INJECT_LABEL: &str = "jvm-guard.io/inject";

/// Namespaces that are never mutated, whatever the webhook configuration says.
pub const EXCLUDED_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

/// Server-side switches that annotations cannot change.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// `serve --allow-host-path`: permits `dump-volume: hostPath:<path>`.
    pub allow_host_path: bool,
    /// The webhook's own namespace, never mutated.
    pub webhook_namespace: Option<String>,
    /// Image of the tools init container (the webhook's own); without it no tools are injected.
    pub tools_image: Option<String>,
}

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

/// Where a raw value came from; named in warnings so users know what to fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Defaults,
    Namespace,
    Pod,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Defaults => "defaults",
            Source::Namespace => "namespace",
            Source::Pod => "pod",
        })
    }
}

/// Keys under our prefix that are not configuration and must not be reported as typos.
fn is_reserved(name: &str) -> bool {
    matches!(name, "status" | "inject")
}

/// Raw values by key, each remembering its source; later layers override earlier ones.
#[derive(Debug, Clone, Default, PartialEq)]
struct Layers(BTreeMap<Key, (String, Source)>);

impl Layers {
    fn get(&self, key: Key) -> Option<(&str, Source)> {
        self.0.get(&key).map(|(v, s)| (v.as_str(), *s))
    }
}

/// Cluster-wide defaults (`serve --defaults FILE`): the same keys as a YAML map.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Defaults(BTreeMap<Key, String>);

#[derive(Debug, thiserror::Error)]
pub enum DefaultsError {
    #[error("not a YAML map of jvm-guard keys: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("key {0:?}: not a jvm-guard key")]
    UnknownKey(String),
    #[error("key {0:?}: value must be a string, number or boolean")]
    NotScalar(String),
    #[error("{0}")]
    Invalid(String),
}

impl Defaults {
    /// Parses a defaults file. Keys may carry the `jvm-guard.io/` prefix or not. Unlike
    /// annotations, a defaults file is owned by the platform team and checked at start-up, so
    /// unknown keys and invalid values are errors rather than warnings.
    pub fn from_yaml(text: &str) -> Result<Defaults, DefaultsError> {
        let map: BTreeMap<String, serde_yaml::Value> =
            serde_yaml::from_str::<Option<_>>(text)?.unwrap_or_default();
        let mut out = BTreeMap::new();
        for (raw_key, value) in map {
            let name = raw_key.strip_prefix(PREFIX).unwrap_or(&raw_key);
            let key =
                Key::from_name(name).ok_or_else(|| DefaultsError::UnknownKey(raw_key.clone()))?;
            let value = match value {
                serde_yaml::Value::String(s) => s,
                serde_yaml::Value::Bool(b) => b.to_string(),
                serde_yaml::Value::Number(n) => n.to_string(),
                _ => return Err(DefaultsError::NotScalar(raw_key)),
            };
            out.insert(key, value);
        }
        let defaults = Defaults(out);
        // Validate every value now: a typo in the cluster defaults should stop start-up. The
        // second pass switches on the features whose keys are not read while they are off.
        let mut warnings = Warnings::default();
        let settings = Settings {
            allow_host_path: true,
            ..Settings::default()
        };
        let switched_on: BTreeMap<String, String> = [(Key::HeapDump, "true"), (Key::Probes, "tcp")]
            .into_iter()
            .filter(|(k, _)| {
                defaults
                    .0
                    .get(k)
                    .is_none_or(|v| matches!(v.as_str(), "false" | "off"))
            })
            .map(|(k, v)| (k.annotation(), v.to_string()))
            .collect();
        for annotations in [None, Some(&switched_on)] {
            let ns = NamespaceConfig::new("", annotations, &defaults);
            Config::resolve(&ns, None, &settings, &mut warnings);
        }
        match warnings.into_vec().into_iter().next() {
            Some(w) => Err(DefaultsError::Invalid(w)),
            None => Ok(defaults),
        }
    }
}

/// The configuration of one namespace: defaults merged with its annotations, plus the warnings
/// those annotations deserve. Built once per namespace change, used for every pod in it.
#[derive(Debug, Clone, PartialEq)]
pub struct NamespaceConfig {
    pub name: String,
    layers: Layers,
    warnings: Vec<String>,
}

impl NamespaceConfig {
    pub fn new(
        name: &str,
        annotations: Option<&BTreeMap<String, String>>,
        defaults: &Defaults,
    ) -> NamespaceConfig {
        let mut layers = Layers(
            defaults
                .0
                .iter()
                .map(|(k, v)| (*k, (v.clone(), Source::Defaults)))
                .collect(),
        );
        let mut warnings = Warnings::default();
        for (annotation, value) in annotations.into_iter().flatten() {
            let Some(name) = annotation.strip_prefix(PREFIX) else {
                continue;
            };
            match Key::from_name(name) {
                Some(key) => {
                    layers.0.insert(key, (value.clone(), Source::Namespace));
                }
                None if is_reserved(name) => {}
                None => warnings.push(unknown_key_message(annotation, "namespace")),
            }
        }
        NamespaceConfig {
            name: name.to_string(),
            layers,
            warnings: warnings.into_vec(),
        }
    }

    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

fn unknown_key_message(annotation: &str, on: &str) -> String {
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

fn edit_distance(a: &str, b: &str) -> usize {
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

/// A feature's setting: switched off, on with its parameters, or disabled by an invalid value
/// (already warned about).
#[derive(Debug, Clone, PartialEq)]
pub enum Setting<T> {
    Off,
    On(T),
    Invalid,
}

impl<T> Setting<T> {
    pub fn as_on(&self) -> Option<&T> {
        match self {
            Setting::On(v) => Some(v),
            _ => None,
        }
    }
}

/// A RAM percentage in tenths of a percent: (0, 100] with at most one decimal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Percent(u16);

impl Percent {
    pub fn from_tenths(tenths: u16) -> Option<Percent> {
        (1..=1000).contains(&tenths).then_some(Percent(tenths))
    }

    pub fn tenths(self) -> u16 {
        self.0
    }
}

impl fmt::Display for Percent {
    // Always with a decimal point: every HotSpot release parses `62.0` for a double flag.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0 / 10, self.0 % 10)
    }
}

fn parse_percent(v: &str) -> Result<Percent, String> {
    let bad = || "expected a number in (0, 100] with at most one decimal".to_string();
    let (int, frac) = v.split_once('.').unwrap_or((v, "0"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || !digits(frac) || frac.len() != 1 || int.len() > 3 {
        return Err(bad());
    }
    let tenths =
        int.parse::<u16>().map_err(|_| bad())? * 10 + frac.parse::<u16>().map_err(|_| bad())?;
    Percent::from_tenths(tenths).ok_or_else(bad)
}

#[derive(Debug, Clone, PartialEq)]
pub enum MaxRam {
    /// Sized from the container's memory limit and the non-heap reserve.
    Auto,
    Fixed(Percent),
}

#[derive(Debug, Clone, PartialEq)]
pub struct MemoryConfig {
    pub max: MaxRam,
    pub initial: Option<Percent>,
    pub reserve: Quantity,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DumpVolume {
    EmptyDir { size_limit: Option<Quantity> },
    Pvc(String),
    HostPath(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct DumpConfig {
    pub volume: DumpVolume,
    pub mount_path: String,
    /// Newest dumps kept per pod directory by the rotation hook.
    pub keep: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ProbeMode {
    Tcp,
    Http { path: String },
    SpringBoot,
    Quarkus,
    Micronaut,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PortRef {
    Number(u16),
    Name(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProbeConfig {
    pub mode: ProbeMode,
    /// `None`: the port named `http`, else the first TCP containerPort.
    pub port: Option<PortRef>,
    pub startup_timeout_seconds: u32,
}

/// Which containers get the features.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// The default-container annotation, else the first non-sidecar container.
    Default,
    All,
    Named(Vec<String>),
    /// `containers` was invalid: nothing is targeted.
    Invalid,
}

/// The typed configuration for one pod.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub targets: Targets,
    pub memory: Setting<MemoryConfig>,
    pub heap_dump: Setting<DumpConfig>,
    pub exit_on_oom: Setting<()>,
    pub jvm_options: Setting<Vec<String>>,
    pub probes: Setting<ProbeConfig>,
    pub ulimits: Setting<Vec<Rlimit>>,
    /// Inject the tools init container (rlimit wrapper, dump rotation).
    pub tools: bool,
}

const DEFAULT_RESERVE: &str = "384Mi";
const DEFAULT_MOUNT_PATH: &str = "/dumps";
const DEFAULT_DUMP_KEEP: u32 = 3;
const DEFAULT_STARTUP_TIMEOUT: u32 = 180;

/// Parses the merged raw values, warning once per invalid value.
struct Parser<'a> {
    layers: &'a Layers,
    warnings: &'a mut Warnings,
}

impl Parser<'_> {
    /// Parses `key` if set. An invalid value is warned about and reported as `Err(())`, which
    /// callers turn into [`Setting::Invalid`] for the feature the key belongs to.
    fn parse<T>(
        &mut self,
        key: Key,
        feature: &str,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ()> {
        let Some((value, source)) = self.layers.get(key) else {
            return Ok(None);
        };
        f(value.trim()).map(Some).map_err(|reason| {
            self.warnings.push(format!(
                "invalid {source} value {}={value:?}: {reason}; {feature} disabled",
                key.annotation()
            ));
        })
    }
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

fn parse_quantity(v: &str) -> Result<Quantity, String> {
    v.parse()
        .map_err(|e: crate::quantity::QuantityError| e.to_string())
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn parse_abs_path(v: &str) -> Result<String, String> {
    let ok = v.starts_with('/')
        && v.len() > 1
        && !v.split('/').any(|c| c == "..")
        && !v.contains(|c: char| c == ':' || c.is_whitespace() || c.is_control());
    if ok {
        Ok(v.trim_end_matches('/').to_string())
    } else {
        Err("expected an absolute path without '..', ':' or spaces".into())
    }
}

fn parse_targets(v: &str) -> Result<Targets, String> {
    if v == "*" {
        return Ok(Targets::All);
    }
    let names: Vec<String> = v.split(',').map(|s| s.trim().to_string()).collect();
    if names.iter().all(|n| is_dns_label(n)) {
        Ok(Targets::Named(names))
    } else {
        Err("expected a comma list of container names, or *".into())
    }
}

fn parse_dump_volume(v: &str, allow_host_path: bool) -> Result<DumpVolume, String> {
    if v == "emptyDir" {
        Ok(DumpVolume::EmptyDir { size_limit: None })
    } else if let Some(claim) = v.strip_prefix("pvc:") {
        if is_dns_subdomain(claim) {
            Ok(DumpVolume::Pvc(claim.to_string()))
        } else {
            Err("pvc: needs a valid claim name".into())
        }
    } else if let Some(path) = v.strip_prefix("hostPath:") {
        if !allow_host_path {
            return Err("hostPath volumes need the server flag --allow-host-path".into());
        }
        parse_abs_path(path).map(DumpVolume::HostPath)
    } else {
        Err("expected emptyDir, pvc:<claim> or hostPath:<absolute path>".into())
    }
}

fn parse_jvm_options(v: &str) -> Result<Vec<String>, String> {
    let tokens: Vec<String> = v.split_whitespace().map(str::to_string).collect();
    match tokens.iter().find(|t| !t.starts_with('-')) {
        Some(t) => Err(format!("{t:?} does not start with '-'")),
        None => Ok(tokens),
    }
}

fn parse_probe_mode(v: &str) -> Result<Option<ProbeMode>, String> {
    Ok(Some(match v {
        "off" => return Ok(None),
        "tcp" => ProbeMode::Tcp,
        "http" => ProbeMode::Http {
            path: String::new(),
        },
        "spring-boot" => ProbeMode::SpringBoot,
        "quarkus" => ProbeMode::Quarkus,
        "micronaut" => ProbeMode::Micronaut,
        _ => return Err("expected off, tcp, http, spring-boot, quarkus or micronaut".into()),
    }))
}

fn parse_http_path(v: &str) -> Result<String, String> {
    if v.starts_with('/') && !v.contains(|c: char| c.is_whitespace() || c.is_control()) {
        Ok(v.to_string())
    } else {
        Err("expected an absolute HTTP path such as /health".into())
    }
}

fn parse_port(v: &str) -> Result<PortRef, String> {
    if v.bytes().all(|b| b.is_ascii_digit()) {
        return match v.parse::<u16>() {
            Ok(n) if n > 0 => Ok(PortRef::Number(n)),
            _ => Err("port number must be in 1..65535".into()),
        };
    }
    // IANA_SVC_NAME, as Kubernetes validates containerPort names.
    let ok = v.len() <= 15
        && is_dns_label(v)
        && v.bytes().any(|b| b.is_ascii_lowercase())
        && !v.contains("--");
    if ok {
        Ok(PortRef::Name(v.to_string()))
    } else {
        Err("expected a port number or a container port name".into())
    }
}

fn parse_seconds(v: &str) -> Result<u32, String> {
    match v.parse::<u32>() {
        Ok(n) if (1..=86_400).contains(&n) => Ok(n),
        _ => Err("expected whole seconds between 1 and 86400".into()),
    }
}

fn parse_keep(v: &str) -> Result<u32, String> {
    match v.parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("expected an integer >= 1".into()),
    }
}

impl Config {
    /// Merges the pod's annotations over the namespace configuration and parses the result.
    /// Every doubtful input becomes a warning; nothing fails.
    pub fn resolve(
        ns: &NamespaceConfig,
        pod_annotations: Option<&BTreeMap<String, String>>,
        settings: &Settings,
        warnings: &mut Warnings,
    ) -> Config {
        for w in &ns.warnings {
            warnings.push(w.clone());
        }
        let mut layers = ns.layers.clone();
        let overrides = match layers.get(Key::PodOverrides) {
            None => true,
            Some((v, source)) => parse_bool(v.trim()).unwrap_or_else(|reason| {
                warnings.push(format!(
                    "invalid {source} value {}={v:?}: {reason}; pod overrides disabled",
                    Key::PodOverrides.annotation()
                ));
                false
            }),
        };
        for (annotation, value) in pod_annotations.into_iter().flatten() {
            let Some(name) = annotation.strip_prefix(PREFIX) else {
                continue;
            };
            match Key::from_name(name) {
                None if is_reserved(name) => {}
                None => warnings.push(unknown_key_message(annotation, "pod")),
                Some(key) if !key.pod_overridable() => warnings.push(format!(
                    "pod annotation {annotation} is ignored: it can only be set on the namespace"
                )),
                Some(_) if !overrides => warnings.push(format!(
                    "pod annotation {annotation} is ignored: namespace {} sets {}: \"false\"",
                    ns.name,
                    Key::PodOverrides.annotation()
                )),
                Some(key) => {
                    layers.0.insert(key, (value.clone(), Source::Pod));
                }
            }
        }
        let mut p = Parser {
            layers: &layers,
            warnings,
        };
        Config {
            targets: match p.parse(Key::Containers, "injection", parse_targets) {
                Ok(t) => t.unwrap_or(Targets::Default),
                Err(()) => Targets::Invalid,
            },
            memory: memory_setting(&mut p),
            heap_dump: dump_setting(&mut p, settings),
            exit_on_oom: match p.parse(Key::ExitOnOom, Feature::ExitOnOom.name(), parse_bool) {
                Ok(Some(false)) => Setting::Off,
                Ok(_) => Setting::On(()),
                Err(()) => Setting::Invalid,
            },
            jvm_options: match p.parse(
                Key::JvmOptions,
                Feature::JvmOptions.name(),
                parse_jvm_options,
            ) {
                Ok(Some(tokens)) if !tokens.is_empty() => Setting::On(tokens),
                Ok(_) => Setting::Off,
                Err(()) => Setting::Invalid,
            },
            probes: probe_setting(&mut p),
            ulimits: match p.parse(Key::Ulimits, Feature::Ulimits.name(), |v| {
                rlimit::parse_list(v).map_err(|e| e.to_string())
            }) {
                Ok(Some(limits)) => Setting::On(limits),
                Ok(None) => Setting::Off,
                Err(()) => Setting::Invalid,
            },
            tools: p
                .parse(Key::Tools, "the tools init container", parse_bool)
                .map(|t| t.unwrap_or(true))
                .unwrap_or(false),
        }
    }
}

fn memory_setting(p: &mut Parser<'_>) -> Setting<MemoryConfig> {
    let feature = Feature::Memory.name();
    let max = p.parse(Key::MaxRamPercentage, feature, |v| {
        if v == "auto" {
            Ok(MaxRam::Auto)
        } else {
            parse_percent(v).map(MaxRam::Fixed)
        }
    });
    let initial = p.parse(Key::InitialRamPercentage, feature, parse_percent);
    let reserve = p.parse(Key::NonHeapReserve, feature, parse_quantity);
    let (Ok(max), Ok(initial), Ok(reserve)) = (max, initial, reserve) else {
        return Setting::Invalid;
    };
    Setting::On(MemoryConfig {
        max: max.unwrap_or(MaxRam::Auto),
        initial,
        reserve: reserve.unwrap_or_else(|| DEFAULT_RESERVE.parse().expect("valid default")),
    })
}

fn dump_setting(p: &mut Parser<'_>, settings: &Settings) -> Setting<DumpConfig> {
    let feature = Feature::HeapDump.name();
    // When the feature is off its other keys are not read, so they cannot disable it twice.
    match p.parse(Key::HeapDump, feature, parse_bool) {
        Err(()) => return Setting::Invalid,
        Ok(Some(false)) => return Setting::Off,
        Ok(_) => {}
    }
    let volume = p.parse(Key::DumpVolume, feature, |v| {
        parse_dump_volume(v, settings.allow_host_path)
    });
    let mount_path = p.parse(Key::DumpMountPath, feature, parse_abs_path);
    let size_limit = p.parse(Key::DumpSizeLimit, feature, parse_quantity);
    let keep = p.parse(Key::DumpKeep, feature, parse_keep);
    let (Ok(volume), Ok(mount_path), Ok(size_limit), Ok(keep)) =
        (volume, mount_path, size_limit, keep)
    else {
        return Setting::Invalid;
    };
    let volume = match (
        volume.unwrap_or(DumpVolume::EmptyDir { size_limit: None }),
        size_limit,
    ) {
        (DumpVolume::EmptyDir { .. }, size_limit) => DumpVolume::EmptyDir { size_limit },
        (other, Some(_)) => {
            p.warnings.push(format!(
                "{} only applies to emptyDir dump volumes; ignored",
                Key::DumpSizeLimit.annotation()
            ));
            other
        }
        (other, None) => other,
    };
    Setting::On(DumpConfig {
        volume,
        mount_path: mount_path.unwrap_or_else(|| DEFAULT_MOUNT_PATH.to_string()),
        keep: keep.unwrap_or(DEFAULT_DUMP_KEEP),
    })
}

fn probe_setting(p: &mut Parser<'_>) -> Setting<ProbeConfig> {
    let feature = Feature::Probes.name();
    let mut mode = match p.parse(Key::Probes, feature, parse_probe_mode) {
        Err(()) => return Setting::Invalid,
        Ok(None | Some(None)) => return Setting::Off,
        Ok(Some(Some(mode))) => mode,
    };
    let path = p.parse(Key::ProbePath, feature, parse_http_path);
    let port = p.parse(Key::ProbePort, feature, parse_port);
    let timeout = p.parse(Key::StartupTimeout, feature, parse_seconds);
    let (Ok(path), Ok(port), Ok(timeout)) = (path, port, timeout) else {
        return Setting::Invalid;
    };
    if let ProbeMode::Http { path: p_path } = &mut mode {
        match path {
            Some(path) => *p_path = path,
            None => {
                p.warnings.push(format!(
                    "{}: \"http\" needs {}; probes disabled",
                    Key::Probes.annotation(),
                    Key::ProbePath.annotation()
                ));
                return Setting::Invalid;
            }
        }
    }
    Setting::On(ProbeConfig {
        mode,
        port,
        startup_timeout_seconds: timeout.unwrap_or(DEFAULT_STARTUP_TIMEOUT),
    })
}

#[cfg(test)]
mod tests {
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
        let c = Config::resolve(&ns, Some(&annotations(pod)), &Settings::default(), &mut w);
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
        assert_eq!(c.exit_on_oom, Setting::On(()));
        assert_eq!(c.probes, Setting::Off);
        assert_eq!(c.ulimits, Setting::Off);
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
            Setting::On(ProbeConfig {
                mode: ProbeMode::Tcp,
                ..
            })
        ));
        assert!(w[0].contains("pod-overrides"), "{w:?}");
    }

    #[test]
    fn invalid_value_disables_only_its_feature() {
        let (c, w) = resolve(&[("max-ram-percentage", "80%")], &[]);
        assert_eq!(c.memory, Setting::Invalid);
        assert!(c.heap_dump.as_on().is_some());
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("max-ram-percentage=\"80%\""), "{w:?}");
        assert!(w[0].contains("memory disabled"), "{w:?}");
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
        assert_eq!((c.probes, c.heap_dump), (Setting::Off, Setting::Off));
        assert!(w.is_empty(), "{w:?}");
        assert!(matches!(
            Defaults::from_yaml("probes: off\nstartup-timeout: -1\n"),
            Err(DefaultsError::Invalid(_))
        ));
    }

    #[test]
    fn http_probes_need_a_path() {
        let (c, w) = resolve(&[("probes", "http")], &[]);
        assert_eq!(c.probes, Setting::Invalid);
        assert!(w[0].contains("probe-path"));
    }

    #[test]
    fn host_path_needs_the_server_flag() {
        let (c, w) = resolve(&[("dump-volume", "hostPath:/var/dumps")], &[]);
        assert_eq!(c.heap_dump, Setting::Invalid);
        assert!(w[0].contains("--allow-host-path"));
        let ns = NamespaceConfig::new(
            "team",
            Some(&annotations(&[("dump-volume", "hostPath:/var/dumps")])),
            &Defaults::default(),
        );
        let settings = Settings {
            allow_host_path: true,
            ..Settings::default()
        };
        let c = Config::resolve(&ns, None, &settings, &mut Warnings::default());
        assert_eq!(
            c.heap_dump.as_on().unwrap().volume,
            DumpVolume::HostPath("/var/dumps".into())
        );
    }

    #[test]
    fn defaults_file_is_checked_at_load() {
        let d = Defaults::from_yaml(
            "jvm-guard.io/probes: tcp\nstartup-timeout: 300\nheap-dump: false\n",
        )
        .unwrap();
        assert_eq!(
            d.0.get(&Key::StartupTimeout).map(String::as_str),
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
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("probes", "probes"), 0);
        assert_eq!(edit_distance("probe", "probes"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
