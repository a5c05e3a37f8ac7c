//! What a container's environment is known to hold: its `env`, and the ConfigMaps and Secrets
//! its `envFrom`/`valueFrom` name when the caller knows them (the preview reads them from its
//! input; the webhook knows none, so those stay opaque).

use std::collections::BTreeMap;

use super::image::ImageConfig;
use super::pod::Container;

/// ConfigMaps and Secrets of one namespace, by name: their data as strings (Secrets decoded).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvSources {
    pub config_maps: BTreeMap<String, BTreeMap<String, String>>,
    pub secrets: BTreeMap<String, BTreeMap<String, String>>,
}

impl EnvSources {
    pub fn is_empty(&self) -> bool {
        self.config_maps.is_empty() && self.secrets.is_empty()
    }
}

/// Where a variable stands in a container's env, as far as admission can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VarState {
    Absent,
    /// A literal `env` entry at `index`.
    Literal {
        index: usize,
        value: String,
    },
    /// Known from a ConfigMap or Secret the caller knows: through `valueFrom` at `index`, or
    /// through `envFrom` (`index: None`).
    Known {
        index: Option<usize>,
        value: String,
    },
    /// Set from something admission cannot read: we cannot merge, so we do not touch it.
    Opaque(String),
}

impl VarState {
    /// The value the process will see, when known.
    pub fn value(&self) -> Option<&str> {
        match self {
            VarState::Literal { value, .. } | VarState::Known { value, .. } => Some(value),
            VarState::Absent | VarState::Opaque(_) => None,
        }
    }
}

fn secret_note(name: &str) -> String {
    format!("{name} is set from a Secret, whose value is never copied into the pod")
}

/// A container's env as admission sees it, with the sources the caller knows and, when it was
/// looked up, its image's config (whose `Env` the pod spec overrides, and whose ENTRYPOINT and
/// CMD a `command` and `args` replace).
pub struct EnvView<'a> {
    container: &'a Container,
    sources: &'a EnvSources,
    image: Option<&'a ImageConfig>,
}

impl<'a> EnvView<'a> {
    pub fn new(container: &'a Container, sources: &'a EnvSources) -> EnvView<'a> {
        EnvView::with_image(container, sources, None)
    }

    /// [`EnvView::new`], knowing the image's config.
    pub fn with_image(
        container: &'a Container,
        sources: &'a EnvSources,
        image: Option<&'a ImageConfig>,
    ) -> EnvView<'a> {
        EnvView {
            container,
            sources,
            image,
        }
    }

    /// The image's config, when it was looked up.
    pub fn image(&self) -> Option<&'a ImageConfig> {
        self.image
    }

    /// Whether the program the container starts is known: its `command`, or the image's config.
    pub fn program_known(&self) -> bool {
        let command = self
            .container
            .command
            .as_ref()
            .is_some_and(|c| !c.is_empty());
        command || self.image.is_some()
    }

    /// The command line the container runs, as far as it is known: `command`, else the image's
    /// ENTRYPOINT; then `args`, else (without a `command`) the image's CMD. Empty lists count
    /// as absent, as the runtime reads them.
    pub fn argv(&self) -> Vec<&'a String> {
        let set = |l: &'a Option<Vec<String>>| l.as_deref().filter(|l| !l.is_empty());
        let (command, args) = (set(&self.container.command), set(&self.container.args));
        let image = self.image;
        let head: &[String] = match command {
            Some(c) => c,
            None => image.map(|i| i.entrypoint.as_slice()).unwrap_or_default(),
        };
        let tail: &[String] = match (args, command) {
            (Some(a), _) => a,
            (None, Some(_)) => &[],
            (None, None) => image.map(|i| i.cmd.as_slice()).unwrap_or_default(),
        };
        head.iter().chain(tail).collect()
    }

    fn source(
        &self,
        config_map: Option<&str>,
        secret: Option<&str>,
    ) -> Option<&BTreeMap<String, String>> {
        match (config_map, secret) {
            (Some(name), _) => self.sources.config_maps.get(name),
            (_, Some(name)) => self.sources.secrets.get(name),
            _ => None,
        }
    }

    /// What `name` holds (the last `env` entry wins over `envFrom`, as the kubelet does).
    pub fn var(&self, name: &str) -> VarState {
        let env = self.container.env.as_deref().unwrap_or_default();
        if let Some((index, e)) = env.iter().enumerate().rev().find(|(_, e)| e.name == name) {
            let Some(from) = &e.value_from else {
                let value = e.value.clone().unwrap_or_default();
                return VarState::Literal { index, value };
            };
            let cm = from.config_map_key_ref.as_ref();
            let secret = from.secret_key_ref.as_ref();
            let known = self
                .source(cm.map(|r| r.name.as_str()), secret.map(|r| r.name.as_str()))
                .and_then(|data| {
                    let key = cm.map(|r| &r.key).or(secret.map(|r| &r.key))?;
                    data.get(key)
                });
            return match known {
                // A Secret's value never leaves the Secret: merged into a literal it would be
                // readable by anyone who can read the workload. Opaque, as for the webhook,
                // which reads no Secret: the agent merges at start.
                Some(_) if secret.is_some() && cm.is_none() => VarState::Opaque(secret_note(name)),
                Some(value) => VarState::Known {
                    index: Some(index),
                    value: value.clone(),
                },
                None => VarState::Opaque(format!("{name} is set from valueFrom")),
            };
        }
        // Later envFrom sources win over earlier ones.
        for from in self.container.env_from.iter().flatten().rev() {
            let prefix = from.prefix.as_deref().unwrap_or("");
            let cm = from.config_map_ref.as_ref().map(|r| r.name.as_str());
            let secret = from.secret_ref.as_ref().map(|r| r.name.as_str());
            match self.source(cm, secret) {
                None if cm.is_some() || secret.is_some() => {
                    return VarState::Opaque(format!("envFrom may set {name}"));
                }
                None => {}
                Some(data) => {
                    let key = name.strip_prefix(prefix);
                    if let Some(value) = key.and_then(|k| data.get(k)) {
                        if cm.is_none() {
                            return VarState::Opaque(secret_note(name));
                        }
                        return VarState::Known {
                            index: None,
                            value: value.clone(),
                        };
                    }
                }
            }
        }
        // The image's ENV, under everything the pod spec sets.
        match self.image.and_then(|i| i.env_value(name)) {
            Some(value) => VarState::Known {
                index: None,
                value: value.to_string(),
            },
            None => VarState::Absent,
        }
    }

    /// Every variable the container is known to set, each once, with its value as the process
    /// will see it, when known: one pass over `env` (the last entry of a name wins), then the
    /// names only known `envFrom` sources or the image's `Env` set.
    pub fn values(&self) -> Vec<(String, String)> {
        let env = self.container.env.as_deref().unwrap_or_default();
        let mut seen = foldhash::HashSet::with_capacity_and_hasher(env.len(), Default::default());
        let mut out = Vec::with_capacity(env.len());
        for e in env.iter().rev() {
            if !seen.insert(e.name.as_str()) {
                continue;
            }
            let value = match &e.value_from {
                None => e.value.clone(),
                Some(_) => self.var(&e.name).value().map(str::to_string),
            };
            out.extend(value.map(|v| (e.name.clone(), v)));
        }
        out.reverse();
        let names = self.names();
        for name in names.iter().filter(|n| !seen.contains(n.as_str())) {
            if let Some(value) = self.var(name).value() {
                out.push((name.clone(), value.to_string()));
            }
        }
        out
    }

    /// Every variable name the container is known to set (`env`, and known `envFrom` sources).
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .container
            .env
            .iter()
            .flatten()
            .map(|e| e.name.clone())
            .collect();
        for from in self.container.env_from.iter().flatten() {
            let prefix = from.prefix.as_deref().unwrap_or("");
            let cm = from.config_map_ref.as_ref().map(|r| r.name.as_str());
            let secret = from.secret_ref.as_ref().map(|r| r.name.as_str());
            if let Some(data) = self.source(cm, secret) {
                names.extend(data.keys().map(|k| format!("{prefix}{k}")));
            }
        }
        for (name, _) in self.image.map(|i| i.env.as_slice()).unwrap_or_default() {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        names
    }
}
