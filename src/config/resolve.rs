//! Layering (defaults < namespace < pod) and the typed [`Config`] of one pod, resolved once
//! per admission; every invalid value disables its feature with a warning.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use super::defaults::Defaults;
use super::keys::{is_reserved, typed, unknown_key_message, Key, ParseContext, Spec, PREFIX};
use super::values::*;
use super::{Config, Profiles, ServerSettings, Switch, Warnings};

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

/// Raw values by key, each remembering its source; later layers override earlier ones.
#[derive(Debug, Clone, Default, PartialEq)]
struct Layers(BTreeMap<Key, (String, Source)>);

impl Layers {
    fn get(&self, key: Key) -> Option<(&str, Source)> {
        self.0.get(&key).map(|(v, s)| (v.as_str(), *s))
    }
}

/// The configuration of one namespace: defaults merged with its annotations, plus the warnings
/// those annotations deserve. Built once per namespace change, used for every pod in it.
#[derive(Debug, Clone, PartialEq)]
pub struct NamespaceConfig {
    pub name: String,
    layers: Layers,
    warnings: Vec<String>,
    /// The configuration of its pods that set none of our annotations, resolved at the first
    /// (see [`Config::resolve_shared`]).
    plain: Plain,
}

/// The configuration every pod without our annotations gets, with the warnings resolving it
/// gave, and the settings it was resolved under.
#[derive(Debug, Clone, Default)]
struct Plain(OnceLock<PlainConfig>);

#[derive(Debug, Clone)]
struct PlainConfig {
    allow_host_path: bool,
    profiles: Arc<Profiles>,
    config: Arc<Config>,
    warnings: Warnings,
}

/// A cache: two namespace configurations are equal by what they configure.
impl PartialEq for Plain {
    fn eq(&self, _: &Plain) -> bool {
        true
    }
}

impl NamespaceConfig {
    pub fn new(
        name: &str,
        annotations: Option<&BTreeMap<String, String>>,
        defaults: &Defaults,
    ) -> NamespaceConfig {
        let mut layers = Layers(
            defaults
                .values()
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
                None => {
                    let hint = !warnings.is_full();
                    warnings.push(unknown_key_message(annotation, "namespace", hint))
                }
            }
        }
        NamespaceConfig {
            name: name.to_string(),
            layers,
            warnings: warnings.into_vec(),
            plain: Plain::default(),
        }
    }

    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

// Counts the resolutions on this thread, for the tests that show one per admission.
#[cfg(test)]
thread_local! {
    pub(crate) static RESOLVED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The warning for an invalid value: it names the key, the value, where it came from and what it
/// disables.
fn invalid(key: Key, value: &str, source: Source, reason: &str) -> String {
    // A value over the cap is named by its start: the warning must stay short.
    let shown = match value.char_indices().nth(64) {
        Some((end, _)) if value.len() > MAX_VALUE_BYTES => format!("{:?}…", &value[..end]),
        _ => format!("{value:?}"),
    };
    format!(
        "invalid {source} value {}={shown}: {reason}; {} disabled",
        key.annotation(),
        key.disables()
    )
}

/// Parses the merged raw values, warning once per invalid value.
struct Parser<'a> {
    layers: &'a Layers,
    ctx: ParseContext,
    warnings: &'a mut Warnings,
}

impl Parser<'_> {
    /// Parses key `K` if set. An invalid value is warned about and reported as `Err(())`, which
    /// callers turn into [`Switch::Invalid`] for what the key disables.
    fn get<K: Spec>(&mut self) -> Result<Option<K::Value>, ()> {
        self.get_then::<K, _>(Ok)
    }

    /// [`Parser::get`], then a check that needs more than the value (`then`'s error is warned
    /// about the same way).
    fn get_then<K: Spec, T>(
        &mut self,
        then: impl FnOnce(K::Value) -> Result<T, String>,
    ) -> Result<Option<T>, ()> {
        let Some((value, source)) = self.layers.get(K::KEY) else {
            return Ok(None);
        };
        bounded(value)
            .and_then(|value| K::parse(value.trim(), &self.ctx))
            .and_then(then)
            .map(Some)
            .map_err(|reason| self.warnings.push(invalid(K::KEY, value, source, &reason)))
    }
}

impl Config {
    /// [`Config::resolve`], once per namespace configuration for the pods that set none of
    /// our annotations (most pods): theirs is the namespace's, the same for each, so it is
    /// resolved at the first and shared; its warnings are given again to each.
    pub fn resolve_shared(
        ns: &NamespaceConfig,
        pod_annotations: Option<&BTreeMap<String, String>>,
        settings: &ServerSettings,
        warnings: &mut Warnings,
    ) -> Arc<Config> {
        let ours = pod_annotations
            .into_iter()
            .flatten()
            .any(|(key, _)| key.starts_with(PREFIX));
        if ours {
            return Arc::new(Config::resolve(ns, pod_annotations, settings, warnings));
        }
        let plain = ns.plain.0.get_or_init(|| {
            let mut warned = Warnings::default();
            let config = Config::resolve(ns, None, settings, &mut warned);
            PlainConfig {
                allow_host_path: settings.allow_host_path,
                profiles: settings.profiles.clone(),
                config: Arc::new(config),
                warnings: warned,
            }
        });
        // Resolved under other settings (only tests share a namespace between servers).
        if plain.allow_host_path != settings.allow_host_path
            || !Arc::ptr_eq(&plain.profiles, &settings.profiles)
        {
            return Arc::new(Config::resolve(ns, None, settings, warnings));
        }
        if *warnings == Warnings::default() {
            warnings.clone_from(&plain.warnings); // with the count of those past the cap
        } else {
            for w in plain.warnings.clone().into_vec() {
                warnings.push(w);
            }
        }
        plain.config.clone()
    }

    /// Merges the pod's annotations over the namespace configuration and parses the result.
    /// Every doubtful input becomes a warning; nothing fails.
    pub fn resolve(
        ns: &NamespaceConfig,
        pod_annotations: Option<&BTreeMap<String, String>>,
        settings: &ServerSettings,
        warnings: &mut Warnings,
    ) -> Config {
        #[cfg(test)]
        RESOLVED.with(|n| n.set(n.get() + 1));
        for w in &ns.warnings {
            warnings.push(w.clone());
        }
        let mut layers = ns.layers.clone();
        let ctx = ParseContext {
            allow_host_path: settings.allow_host_path,
        };
        let overrides = match layers.get(Key::PodOverrides) {
            None => true,
            Some((v, source)) => {
                typed::PodOverrides::parse(v.trim(), &ctx).unwrap_or_else(|reason| {
                    warnings.push(invalid(Key::PodOverrides, v, source, &reason));
                    false
                })
            }
        };
        for (annotation, value) in pod_annotations.into_iter().flatten() {
            let Some(name) = annotation.strip_prefix(PREFIX) else {
                continue;
            };
            match Key::from_name(name) {
                None if is_reserved(name) => {}
                None => {
                    let hint = !warnings.is_full();
                    warnings.push(unknown_key_message(annotation, "pod", hint))
                }
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
            ctx,
            warnings,
        };
        Config {
            targets: match p.get::<typed::Containers>() {
                Ok(t) => t.unwrap_or(Targets::Default),
                Err(()) => Targets::Invalid,
            },
            memory: memory_setting(&mut p),
            heap_dump: dump_setting(&mut p),
            exit_on_oom: match p.get::<typed::ExitOnOom>() {
                Ok(Some(false)) => Switch::Off,
                Ok(_) => Switch::On(()),
                Err(()) => Switch::Invalid,
            },
            jvm_options: match p.get::<typed::JvmOptions>() {
                Ok(Some(tokens)) if !tokens.is_empty() => Switch::On(tokens),
                Ok(_) => Switch::Off,
                Err(()) => Switch::Invalid,
            },
            probes: probe_setting(&mut p),
            ulimits: match p.get::<typed::Ulimits>() {
                Ok(Some(limits)) => Switch::On(limits),
                Ok(None) => Switch::Off,
                Err(()) => Switch::Invalid,
            },
            tools: p
                .get::<typed::Tools>()
                .map(|t| t.unwrap_or(true))
                .unwrap_or(false),
            profile: match p.get_then::<typed::Profile, _>(|choice| match choice {
                ProfileChoice::Named(name) if settings.profiles.get(&name).is_none() => {
                    Err(format!("no launcher profile is named {name}"))
                }
                choice => Ok(choice),
            }) {
                Ok(choice) => choice.unwrap_or(ProfileChoice::Auto),
                Err(()) => ProfileChoice::Auto,
            },
            agent: p.get::<typed::Agent>().ok().flatten().unwrap_or_default(),
        }
    }
}

fn memory_setting(p: &mut Parser<'_>) -> Switch<MemoryConfig> {
    let max = p.get::<typed::MaxRamPercentage>();
    let initial = p.get::<typed::InitialRamPercentage>();
    let reserve = p.get::<typed::NonHeapReserve>();
    let (Ok(max), Ok(initial), Ok(reserve)) = (max, initial, reserve) else {
        return Switch::Invalid;
    };
    Switch::On(MemoryConfig {
        max: max.unwrap_or(MaxRam::Auto),
        initial,
        reserve: reserve.unwrap_or_else(|| DEFAULT_RESERVE.parse().expect("valid default")),
    })
}

fn dump_setting(p: &mut Parser<'_>) -> Switch<DumpConfig> {
    // When the feature is off its other keys are not read, so they cannot disable it twice.
    match p.get::<typed::HeapDump>() {
        Err(()) => return Switch::Invalid,
        Ok(Some(false)) => return Switch::Off,
        Ok(_) => {}
    }
    let volume = p.get::<typed::DumpVolume>();
    let mount_path = p.get::<typed::DumpMountPath>();
    let size_limit = p.get::<typed::DumpSizeLimit>();
    let keep = p.get::<typed::DumpKeep>();
    let (Ok(volume), Ok(mount_path), Ok(size_limit), Ok(keep)) =
        (volume, mount_path, size_limit, keep)
    else {
        return Switch::Invalid;
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
    Switch::On(DumpConfig {
        volume,
        mount_path: mount_path.unwrap_or_else(|| DEFAULT_MOUNT_PATH.to_string()),
        keep: keep.unwrap_or(DEFAULT_DUMP_KEEP),
    })
}

fn probe_setting(p: &mut Parser<'_>) -> Switch<ProbeConfig> {
    let mut mode = match p.get::<typed::Probes>() {
        Err(()) => return Switch::Invalid,
        Ok(None | Some(None)) => return Switch::Off,
        Ok(Some(Some(mode))) => mode,
    };
    let path = p.get::<typed::ProbePath>();
    let port = p.get::<typed::ProbePort>();
    let timeout = p.get::<typed::StartupTimeout>();
    let (Ok(path), Ok(port), Ok(timeout)) = (path, port, timeout) else {
        return Switch::Invalid;
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
                return Switch::Invalid;
            }
        }
    }
    Switch::On(ProbeConfig {
        mode,
        port,
        startup_timeout_seconds: timeout.unwrap_or(DEFAULT_STARTUP_TIMEOUT),
    })
}
