//! The fixed namespace source: a `--namespaces-file` read at start-up, or `--dev`'s every
//! namespace with the defaults.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::Namespace;
use serde_json::Value;

use super::{config, is_opted_in, NamespaceLookup};
use crate::config::{Defaults, NamespaceConfig};
use crate::manifest::{self, ManifestError};

/// A fixed set of namespaces, known at start-up.
#[derive(Debug, Clone)]
pub struct StaticNamespaces(Source);

#[derive(Debug, Clone)]
enum Source {
    OptedIn(HashMap<String, Arc<NamespaceConfig>>),
    /// `serve --dev` without a namespaces file: every namespace, with the defaults; each
    /// configuration built at the namespace's first request and kept, as a cluster's is kept
    /// per Namespace version (at most [`EVERY_KEPT`] of them).
    Every(Defaults, Arc<RwLock<HashMap<String, Arc<NamespaceConfig>>>>),
}

/// Namespace configurations `--dev` keeps; past it each further name's is built per request.
const EVERY_KEPT: usize = 1024;

/// A `--namespaces-file` that cannot be used; names the document and the problem.
#[derive(Debug, thiserror::Error)]
pub enum NamespacesFileError {
    #[error(transparent)]
    Syntax(#[from] ManifestError),
    #[error("{at}: expected a Namespace, found {found}")]
    NotANamespace { at: String, found: String },
    #[error("{at} ({object}): not a valid Namespace: {message}")]
    Invalid {
        at: String,
        object: String,
        message: String,
    },
    #[error("{at}: Namespace has no metadata.name")]
    NoName { at: String },
    #[error("{at}: namespace {name} is already defined in {first}")]
    Duplicate {
        at: String,
        name: String,
        first: String,
    },
}

impl StaticNamespaces {
    /// Keeps the namespaces labelled `jvm-guard.io/inject=enabled`, resolved against `defaults`.
    pub fn new(namespaces: Vec<Namespace>, defaults: &Defaults) -> StaticNamespaces {
        let opted_in = namespaces
            .iter()
            .filter(|ns| is_opted_in(ns))
            .filter_map(|ns| {
                let name = ns.metadata.name.as_deref()?;
                Some((name.to_string(), config(name, ns, defaults)))
            })
            .collect();
        StaticNamespaces(Source::OptedIn(opted_in))
    }

    /// Treats every namespace as opted in, without annotations (`serve --dev`).
    pub fn every(defaults: &Defaults) -> StaticNamespaces {
        StaticNamespaces(Source::Every(defaults.clone(), Arc::default()))
    }

    /// Reads a multi-document YAML (or JSON) file of Namespace objects; `List` documents, as
    /// written by `kubectl get namespaces -o yaml`, are read item by item.
    pub fn from_yaml(
        text: &str,
        defaults: &Defaults,
    ) -> Result<StaticNamespaces, NamespacesFileError> {
        let mut namespaces: Vec<Namespace> = Vec::new();
        let mut seen: HashMap<String, String> = HashMap::new();
        for (i, doc) in manifest::parse_documents(text)?.into_iter().enumerate() {
            let at = format!("document {}", i + 1);
            let entries = if kind(&doc) == Some("List") {
                let items = doc.get("items").and_then(Value::as_array);
                items
                    .into_iter()
                    .flatten()
                    .enumerate()
                    .map(|(j, item)| (format!("{at} item {}", j + 1), item.clone()))
                    .collect()
            } else {
                vec![(at, doc)]
            };
            for (at, doc) in entries {
                let ns = namespace(&at, doc)?;
                let name = ns.metadata.name.clone().unwrap_or_default();
                if let Some(first) = seen.get(&name) {
                    return Err(NamespacesFileError::Duplicate {
                        at,
                        name,
                        first: first.clone(),
                    });
                }
                seen.insert(name, at);
                namespaces.push(ns);
            }
        }
        Ok(StaticNamespaces::new(namespaces, defaults))
    }
}

fn kind(doc: &Value) -> Option<&str> {
    doc.get("kind").and_then(Value::as_str)
}

fn namespace(at: &str, doc: Value) -> Result<Namespace, NamespacesFileError> {
    if kind(&doc) != Some("Namespace") {
        return Err(NamespacesFileError::NotANamespace {
            at: at.to_string(),
            found: manifest::describe(&doc),
        });
    }
    let object = manifest::describe(&doc);
    let ns: Namespace = serde_json::from_value(doc).map_err(|e| NamespacesFileError::Invalid {
        at: at.to_string(),
        object,
        message: e.to_string(),
    })?;
    if ns.metadata.name.as_deref().is_none_or(str::is_empty) {
        return Err(NamespacesFileError::NoName { at: at.to_string() });
    }
    Ok(ns)
}

impl NamespaceLookup for StaticNamespaces {
    fn get(&self, name: &str) -> Option<Arc<NamespaceConfig>> {
        match &self.0 {
            Source::OptedIn(map) => map.get(name).cloned(),
            Source::Every(defaults, kept) => {
                let known = kept.read().ok().and_then(|k| k.get(name).cloned());
                if known.is_some() {
                    return known;
                }
                let config = Arc::new(NamespaceConfig::new(name, None, defaults));
                if let Ok(mut kept) = kept.write() {
                    if kept.len() < EVERY_KEPT {
                        kept.insert(name.to_string(), config.clone());
                    }
                }
                Some(config)
            }
        }
    }

    fn ready(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const FILE: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {jvm-guard.io/inject: enabled}
  annotations: {jvm-guard.io/max-ram-percentage: "60"}
---
apiVersion: v1
kind: Namespace
metadata:
  name: legacy
  labels: {jvm-guard.io/inject: disabled}
---
apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: Namespace
    metadata: {name: billing, labels: {jvm-guard.io/inject: enabled}}
  - apiVersion: v1
    kind: Namespace
    metadata: {name: unlabelled}
"#;

    #[rstest]
    #[case::labelled("shop", true)]
    #[case::labelled_in_a_list("billing", true)]
    #[case::label_not_enabled("legacy", false)]
    #[case::no_label("unlabelled", false)]
    #[case::unknown("elsewhere", false)]
    fn only_labelled_namespaces_are_opted_in(#[case] name: &str, #[case] opted_in: bool) {
        let lookup = StaticNamespaces::from_yaml(FILE, &Defaults::default()).unwrap();
        assert!(lookup.ready());
        let found = lookup.get(name);
        assert_eq!(found.is_some(), opted_in);
        if let Some(config) = found {
            assert_eq!(config.name, name);
        }
    }

    #[test]
    fn annotations_configure_the_namespace() {
        let lookup = StaticNamespaces::from_yaml(FILE, &Defaults::default()).unwrap();
        let with_annotation = NamespaceConfig::new(
            "shop",
            Some(
                &[(
                    "jvm-guard.io/max-ram-percentage".to_string(),
                    "60".to_string(),
                )]
                .into(),
            ),
            &Defaults::default(),
        );
        assert_eq!(*lookup.get("shop").unwrap(), with_annotation);
    }

    #[test]
    fn every_namespace_opts_in_with_the_defaults() {
        let defaults = Defaults::from_yaml("max-ram-percentage: 50").unwrap();
        let lookup = StaticNamespaces::every(&defaults);
        let config = lookup.get("anything").unwrap();
        assert_eq!(*config, NamespaceConfig::new("anything", None, &defaults));
    }

    #[rstest]
    #[case::not_yaml("kind: [", "document 1, line 1: not valid YAML or JSON")]
    #[case::duplicate_key(
        "---\n---\nkind: Namespace\nmetadata:\n  name: a\n  name: b\n",
        "document 1, line 6: duplicate key name"
    )]
    #[case::other_kind(
        "kind: Namespace\nmetadata: {name: a}\n---\nkind: Pod\nmetadata: {name: p}",
        "document 2: expected a Namespace, found Pod/p"
    )]
    #[case::invalid(
        "kind: Namespace\nmetadata: {name: a, labels: [x]}",
        "document 1 (Namespace/a): not a valid Namespace"
    )]
    #[case::no_name(
        "kind: Namespace\nmetadata: {}",
        "document 1: Namespace has no metadata.name"
    )]
    #[case::duplicate(
        "kind: List\nitems: [{kind: Namespace, metadata: {name: a}}]\n---\nkind: Namespace\nmetadata: {name: a}",
        "document 2: namespace a is already defined in document 1 item 1"
    )]
    fn bad_files_name_the_document(#[case] text: &str, #[case] message: &str) {
        let err = StaticNamespaces::from_yaml(text, &Defaults::default()).unwrap_err();
        assert!(
            err.to_string().starts_with(message),
            "{err} does not start with {message}"
        );
    }

    #[test]
    fn an_empty_file_opts_nothing_in() {
        let lookup = StaticNamespaces::from_yaml("", &Defaults::default()).unwrap();
        assert!(lookup.get("default").is_none());
    }
}
