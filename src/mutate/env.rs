//! What a container's environment is known to hold: its `env`, and the ConfigMaps and Secrets
//! its `envFrom`/`valueFrom` name when the caller knows them (the preview reads them from its
//! input; the webhook knows none, so those stay opaque).

use std::collections::BTreeMap;

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
