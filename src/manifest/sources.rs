//! The ConfigMaps and Secrets of the preview's input, by namespace: what an `envFrom` or
//! `valueFrom` of a pod in the same input reads (SPEC §6).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use serde_json::Value;

use super::{describe, ManifestError};
use crate::mutate::EnvSources;

/// [`EnvSources`] per namespace, collected from every document before any is mutated: Helm
/// may render a ConfigMap after the Deployment that reads it.
#[derive(Debug, Default)]
pub struct KnownSources(BTreeMap<String, EnvSources>);

static NONE: EnvSources = EnvSources {
    config_maps: BTreeMap::new(),
    secrets: BTreeMap::new(),
};

impl KnownSources {
    /// Reads the ConfigMaps and Secrets among `docs` (and in their `List`s); a document without
    /// `metadata.namespace` is in `namespace`. Numbers documents from 1 for errors.
    pub fn collect(docs: &[Value], namespace: &str) -> Result<KnownSources, ManifestError> {
        let mut known = KnownSources::default();
        for (i, doc) in docs.iter().enumerate() {
            known.add(i + 1, doc, namespace)?;
        }
        Ok(known)
    }

    /// The ConfigMaps and Secrets of `namespace`.
    pub fn get(&self, namespace: &str) -> &EnvSources {
        self.0.get(namespace).unwrap_or(&NONE)
    }

    fn add(&mut self, index: usize, doc: &Value, namespace: &str) -> Result<(), ManifestError> {
        let invalid = |kind: &str, e: serde_json::Error| ManifestError::Invalid {
            index,
            object: describe(doc),
            message: format!("not a valid {kind}: {e}{}", super::yaml::hint(&e)),
        };
        // Nothing can refer to a ConfigMap by a name the API server has not given it yet.
        let name = doc.pointer("/metadata/name").and_then(Value::as_str);
        let doc_ns = doc
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or(namespace);
        match doc.get("kind").and_then(Value::as_str) {
            Some("List") => {
                for item in doc
                    .get("items")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    self.add(index, item, namespace)?;
                }
            }
            Some("ConfigMap") => {
                let cm: ConfigMap =
                    serde_json::from_value(doc.clone()).map_err(|e| invalid("ConfigMap", e))?;
                if let Some(name) = name {
                    let sources = self.0.entry(doc_ns.to_string()).or_default();
                    let data = cm.data.unwrap_or_default();
                    sources.config_maps.insert(name.to_string(), data);
                }
            }
            Some("Secret") => {
                let secret: Secret =
                    serde_json::from_value(doc.clone()).map_err(|e| invalid("Secret", e))?;
                if let Some(name) = name {
                    let sources = self.0.entry(doc_ns.to_string()).or_default();
                    sources
                        .secrets
                        .insert(name.to_string(), secret_data(secret));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// A Secret's values as its pods see them: `data` decoded, then `stringData`, which the API
/// server merges over `data`.
fn secret_data(secret: Secret) -> BTreeMap<String, String> {
    let mut values: BTreeMap<String, String> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
        .collect();
    values.extend(secret.string_data.unwrap_or_default());
    values
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn config_maps_and_secrets_by_namespace() {
        let docs = vec![
            json!({"kind": "Deployment", "metadata": {"name": "app"}}),
            json!({"kind": "ConfigMap", "metadata": {"name": "env"},
                   "data": {"A": "1"}, "binaryData": {"B": "AAE="}}),
            json!({"kind": "ConfigMap", "metadata": {"name": "env", "namespace": "other"},
                   "data": {"A": "2"}}),
            json!({"kind": "List", "items": [
                {"kind": "Secret", "metadata": {"name": "creds"},
                 "data": {"USER": "YWRtaW4=", "PASS": "eA=="}, "stringData": {"PASS": "secret"}},
            ]}),
            json!({"kind": "ConfigMap", "metadata": {"generateName": "x-"}, "data": {"C": "3"}}),
        ];
        let known = KnownSources::collect(&docs, "team").unwrap();
        let team = known.get("team");
        assert_eq!(
            team.config_maps,
            BTreeMap::from([("env".into(), map(&[("A", "1")]))])
        );
        assert_eq!(
            team.secrets,
            BTreeMap::from([(
                "creds".into(),
                map(&[("PASS", "secret"), ("USER", "admin")])
            )])
        );
        assert_eq!(known.get("other").config_maps["env"], map(&[("A", "2")]));
        assert!(known.get("default").is_empty());
    }

    #[test]
    fn an_invalid_secret_names_the_document() {
        let docs = vec![
            json!({"kind": "Pod", "metadata": {"name": "p"}}),
            json!({"kind": "Secret", "metadata": {"name": "s"}, "data": {"K": "not base64!"}}),
        ];
        let err = KnownSources::collect(&docs, "default").unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("document 2 (Secret/s): not a valid Secret: "),
            "{message}"
        );
    }
}
