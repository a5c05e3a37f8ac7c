//! The cluster-wide defaults file (`serve --defaults FILE`): the same keys as a YAML map,
//! each value checked at start-up by the parser of its key.

use std::collections::BTreeMap;

use super::keys::{Key, ParseContext, PREFIX};
use super::profiles::{ProfileError, Profiles};

/// Cluster-wide defaults (`serve --defaults FILE`): the same keys as a YAML map.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Defaults(BTreeMap<Key, String>, Option<std::sync::Arc<Profiles>>);

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
    #[error(transparent)]
    Profile(#[from] ProfileError),
}

impl Defaults {
    /// Parses a defaults file. Keys may carry the `jvm-guard.io/` prefix or not. Unlike
    /// annotations, a defaults file is owned by the platform team and checked at start-up, so
    /// unknown keys and invalid values are errors rather than warnings.
    pub fn from_yaml(text: &str) -> Result<Defaults, DefaultsError> {
        let map: BTreeMap<String, serde_yaml::Value> =
            serde_yaml::from_str::<Option<_>>(text)?.unwrap_or_default();
        let mut out = BTreeMap::new();
        let mut profiles = None;
        for (raw_key, value) in map {
            if raw_key == "profiles" {
                let text = serde_yaml::to_string(&value)?;
                profiles = Some(std::sync::Arc::new(Profiles::with_overrides(&text)?));
                continue;
            }
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
        let defaults = Defaults(out, profiles);
        // A typo in the cluster defaults should stop start-up: every value is checked by its
        // key's parser, whether or not its feature is on. hostPath is checked as a path here;
        // whether it is allowed is the server's flag, checked when a pod is mutated.
        for (key, value) in &defaults.0 {
            key.check(
                value,
                &ParseContext {
                    allow_host_path: true,
                },
            )
            .map_err(|reason| {
                DefaultsError::Invalid(format!(
                    "invalid defaults value {}={value:?}: {reason}",
                    key.annotation()
                ))
            })?;
        }
        defaults.check_combinations()?;
        Ok(defaults)
    }

    /// Values that are valid alone but not together.
    fn check_combinations(&self) -> Result<(), DefaultsError> {
        let get = |key: Key| self.0.get(&key).map(|v| v.trim());
        if get(Key::Probes) == Some("http") && get(Key::ProbePath).is_none() {
            return Err(DefaultsError::Invalid(format!(
                "{}: \"http\" needs {}",
                Key::Probes.annotation(),
                Key::ProbePath.annotation()
            )));
        }
        if let Some(name) = get(Key::Profile).filter(|n| !matches!(*n, "auto" | "none")) {
            if self.profiles().get(name).is_none() {
                return Err(DefaultsError::Invalid(format!(
                    "{}: no launcher profile is named {name}",
                    Key::Profile.annotation()
                )));
            }
        }
        let volume = get(Key::DumpVolume).unwrap_or("emptyDir");
        if get(Key::DumpSizeLimit).is_some() && volume != "emptyDir" {
            return Err(DefaultsError::Invalid(format!(
                "{} only applies to emptyDir dump volumes, not {volume}",
                Key::DumpSizeLimit.annotation()
            )));
        }
        Ok(())
    }

    pub(super) fn values(&self) -> &BTreeMap<Key, String> {
        &self.0
    }

    /// Checks the values the server's flags decide: a `hostPath` dump volume needs
    /// `--allow-host-path`, else it would disable dumps on every pod (refused at start-up).
    pub fn check_server(&self, allow_host_path: bool) -> Result<(), DefaultsError> {
        match self.0.get(&Key::DumpVolume) {
            Some(v) => Key::DumpVolume
                .check(v, &ParseContext { allow_host_path })
                .map_err(|reason| {
                    DefaultsError::Invalid(format!(
                        "invalid defaults value {}={v:?}: {reason}",
                        Key::DumpVolume.annotation()
                    ))
                }),
            None => Ok(()),
        }
    }

    /// The launcher profiles: the file's `profiles:` over the built-in ones.
    pub fn profiles(&self) -> std::sync::Arc<Profiles> {
        match &self.1 {
            Some(p) => p.clone(),
            None => Profiles::built_in(),
        }
    }
}
