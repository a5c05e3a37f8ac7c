//! Manifests for the offline preview: multi-document YAML or JSON in ([`yaml`]), Pods and
//! workload pod templates mutated with the same [`mutate`](crate::mutate::mutate), knowing the
//! ConfigMaps and Secrets of the input ([`sources`]), documents out.

pub mod sources;
pub mod yaml;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use serde::Deserialize as _;
use serde_json::{json, Value};

use crate::config::{Defaults, NamespaceConfig, ServerSettings, INJECT_LABEL};
use crate::mutate::pod::Pod as EnginePod;
use crate::mutate::{
    images_to_resolve, mutate_with_sources, EnvSources, ImageRequest, Patch, ResolvedImages,
};
use sources::KnownSources;
pub use yaml::YamlError;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error(transparent)]
    Syntax(#[from] YamlError),
    #[error("document {index}: expected a Kubernetes object (a map with kind)")]
    NotAnObject { index: usize },
    #[error("document {index} ({object}): {message}")]
    Invalid {
        index: usize,
        object: String,
        message: String,
    },
    #[error("expected one Namespace document, found {0}")]
    NotANamespace(String),
    #[error("-o patch needs exactly one Pod document, found {0}")]
    PatchNeedsOnePod(String),
}

/// Reads every document of a YAML stream (JSON is YAML too) as kubectl does, skipping empty
/// ones (see [`yaml`]).
pub fn parse_documents(text: &str) -> Result<Vec<Value>, ManifestError> {
    Ok(yaml::parse_documents(text)?)
}

/// Reads a Namespace manifest; its name and annotations configure the mutation.
pub fn parse_namespace(text: &str) -> Result<Namespace, ManifestError> {
    let docs = parse_documents(text)?;
    match docs.as_slice() {
        [doc] if doc.get("kind").and_then(Value::as_str) == Some("Namespace") => {
            serde_json::from_value(doc.clone()).map_err(|e| ManifestError::Invalid {
                index: 1,
                object: describe(doc),
                message: e.to_string(),
            })
        }
        [doc] => Err(ManifestError::NotANamespace(describe(doc))),
        _ => Err(ManifestError::NotANamespace(format!(
            "{} documents",
            docs.len()
        ))),
    }
}

/// `Kind/name` for messages.
pub fn describe(doc: &Value) -> String {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("object");
    let meta = doc.get("metadata");
    let name = meta
        .and_then(|m| m.get("name").or_else(|| m.get("generateName")))
        .and_then(Value::as_str)
        .unwrap_or("(unnamed)");
    format!("{kind}/{name}")
}

/// Where a kind keeps the pod template that its controller stamps pods from.
fn template_path(kind: &str) -> Option<&'static [&'static str]> {
    match kind {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
            Some(&["spec", "template"])
        }
        "CronJob" => Some(&["spec", "jobTemplate", "spec", "template"]),
        _ => None,
    }
}

/// The namespace a preview mutates in: the given Namespace manifest, or the built-in defaults
/// as if the document's namespace had opted in.
pub struct Preview {
    pub namespace: Option<Namespace>,
    pub defaults: Defaults,
    pub settings: ServerSettings,
}

/// The result of previewing a stream of documents.
#[derive(Debug, Default)]
pub struct Output {
    pub documents: Vec<Value>,
    /// `(object, warning)` pairs, in document order.
    pub warnings: Vec<(String, String)>,
    /// Patches of mutated Pods (not templates), in document order.
    pub patches: Vec<Patch>,
}

impl Preview {
    /// The namespace of a document without `metadata.namespace`: the `--namespace` one, else
    /// `default`, as kubectl would create it in.
    fn default_namespace(&self) -> &str {
        let name = self
            .namespace
            .as_ref()
            .and_then(|ns| ns.metadata.name.as_deref());
        name.unwrap_or("default")
    }

    /// The ConfigMaps and Secrets a pod with this `metadata.namespace` can read.
    fn sources<'k>(&self, known: &'k KnownSources, doc_ns: Option<&str>) -> &'k EnvSources {
        known.get(doc_ns.unwrap_or(self.default_namespace()))
    }

    fn namespace_config(&self, doc_namespace: Option<&str>) -> (NamespaceConfig, Vec<String>) {
        let mut notes = Vec::new();
        let Some(ns) = &self.namespace else {
            let name = doc_namespace.unwrap_or("default");
            return (NamespaceConfig::new(name, None, &self.defaults), notes);
        };
        let name = ns.metadata.name.as_deref().unwrap_or("default");
        if doc_namespace.is_some_and(|d| d != name) {
            notes.push(format!(
                "jvm-guard: object is in namespace {}, previewed with namespace {name}",
                doc_namespace.unwrap_or_default()
            ));
        }
        let opted_in = ns
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(INJECT_LABEL));
        if opted_in.map(String::as_str) != Some("enabled") {
            notes.push(format!(
                "jvm-guard: namespace {name} lacks the label {INJECT_LABEL}=enabled: the webhook would not be called there"
            ));
        }
        let config = NamespaceConfig::new(name, ns.metadata.annotations.as_ref(), &self.defaults);
        (config, notes)
    }

    /// Previews the documents knowing no image's ENTRYPOINT.
    pub fn run(&self, docs: Vec<Value>) -> Result<Output, ManifestError> {
        self.run_with(docs, &ResolvedImages::default())
    }

    /// Previews the documents with the image commands looked up for
    /// [`images_to_resolve`](Preview::images_to_resolve).
    pub fn run_with(
        &self,
        docs: Vec<Value>,
        images: &ResolvedImages,
    ) -> Result<Output, ManifestError> {
        let known = KnownSources::collect(&docs, self.default_namespace())?;
        let mut out = Output::default();
        for (i, doc) in docs.into_iter().enumerate() {
            let doc = self.document(i + 1, doc, images, &known, &mut out)?;
            out.documents.push(doc);
        }
        Ok(out)
    }

    /// The images whose ENTRYPOINT the preview of these documents would use; documents that
    /// are not valid are left to [`run_with`](Preview::run_with) to report.
    pub fn images_to_resolve(&self, docs: &[Value]) -> Vec<ImageRequest> {
        let mut requests = Vec::new();
        for doc in docs {
            if doc.get("kind").and_then(Value::as_str) == Some("List") {
                let items = doc.get("items").and_then(Value::as_array);
                requests.extend(self.images_to_resolve(items.map_or(&[], Vec::as_slice)));
                continue;
            }
            let Some(Ok(pod_value)) = pod_of(doc) else {
                continue;
            };
            let Ok(pod) = engine_pod(&pod_value) else {
                continue;
            };
            let doc_ns = doc.pointer("/metadata/namespace").and_then(Value::as_str);
            let (ns, _) = self.namespace_config(doc_ns);
            for request in images_to_resolve(&pod, &ns, &self.settings) {
                if !requests.contains(&request) {
                    requests.push(request);
                }
            }
        }
        requests
    }

    fn document(
        &self,
        index: usize,
        mut doc: Value,
        images: &ResolvedImages,
        known: &KnownSources,
        out: &mut Output,
    ) -> Result<Value, ManifestError> {
        if !doc.is_object() || doc.get("kind").and_then(Value::as_str).is_none() {
            return Err(ManifestError::NotAnObject { index });
        }
        let object = describe(&doc);
        let kind = doc["kind"].as_str().unwrap_or_default().to_string();
        let invalid = |message: String| ManifestError::Invalid {
            index,
            object: object.clone(),
            message,
        };
        if kind == "List" {
            let items = doc.get_mut("items").and_then(Value::as_array_mut);
            for item in items.into_iter().flatten() {
                *item = self.document(index, item.take(), images, known, out)?;
            }
            return Ok(doc);
        }
        let doc_ns = doc
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(str::to_string);
        let pod_value = match pod_of(&doc) {
            None => return Ok(doc),
            Some(pod) => pod.map_err(invalid)?,
        };
        let pod = engine_pod(&pod_value).map_err(|e| {
            invalid(format!(
                "not a valid pod{}: {e}{}",
                if kind == "Pod" { "" } else { " template" },
                yaml::hint(&e)
            ))
        })?;
        let (ns, notes) = self.namespace_config(doc_ns.as_deref());
        let sources = self.sources(known, doc_ns.as_deref());
        let mutation = mutate_with_sources(&pod, &ns, &self.settings, images, sources);
        for w in notes.into_iter().chain(mutation.warnings) {
            out.warnings.push((object.clone(), w));
        }
        let mut mutated = pod_value;
        mutation
            .patch
            .apply(&mut mutated)
            .map_err(|e| invalid(format!("internal error, the patch does not apply: {e}")))?;
        if kind == "Pod" {
            out.patches.push(mutation.patch);
            return Ok(mutated);
        }
        let mut template = &mut doc;
        for key in template_path(&kind).expect("checked above") {
            template = &mut template[*key];
        }
        for key in ["metadata", "spec"] {
            if let Some(v) = mutated.get(key) {
                template[key] = v.clone();
            }
        }
        Ok(doc)
    }
}

/// The pod of a document as the engine reads it, once it is checked as a whole `Pod`, as the
/// apiserver would check it (the engine reads only part of it).
fn engine_pod(pod: &Value) -> Result<EnginePod, serde_json::Error> {
    Pod::deserialize(pod)?;
    EnginePod::deserialize(pod)
}

/// The pod a document is or stamps out, as a Pod object (a workload's template under the path
/// its kind keeps it at); `None` for other kinds, an error when the template is missing.
pub fn pod_of(doc: &Value) -> Option<Result<Value, String>> {
    let kind = doc.get("kind").and_then(Value::as_str)?;
    if kind == "Pod" {
        return Some(Ok(doc.clone()));
    }
    let path = template_path(kind)?;
    let mut template = doc;
    for key in path {
        match template.get(key) {
            Some(inner) => template = inner,
            None => return Some(Err(format!("has no {}", path.join(".")))),
        }
    }
    Some(Ok(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": template.get("metadata").cloned().unwrap_or_else(|| json!({})),
        "spec": template.get("spec").cloned().unwrap_or(Value::Null),
    })))
}

/// Renders documents as YAML that kubectl reads back the same (see [`yaml::to_yaml`]),
/// separated by `---`.
pub fn to_yaml(docs: &[Value]) -> String {
    docs.iter()
        .map(yaml::to_yaml)
        .collect::<Vec<_>>()
        .join("---\n")
}

/// One document as itself, several as a `v1` `List`, like `kubectl get -o json`.
pub fn to_json(docs: &[Value]) -> String {
    let value = match docs {
        [one] => one.clone(),
        many => json!({"apiVersion": "v1", "kind": "List", "items": many}),
    };
    serde_json::to_string_pretty(&value).expect("JSON values serialize") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preview(namespace: Option<&str>) -> Preview {
        let namespace = namespace.map(|name| {
            serde_json::from_value(json!({"metadata": {"name": name}})).expect("a Namespace")
        });
        Preview {
            namespace,
            defaults: Defaults::default(),
            settings: ServerSettings::default(),
        }
    }

    #[test]
    fn a_pod_reads_the_sources_of_its_namespace() {
        let docs = vec![
            json!({"kind": "ConfigMap", "metadata": {"name": "env"}, "data": {"WHERE": "unset"}}),
            json!({"kind": "ConfigMap", "metadata": {"name": "env", "namespace": "shop"},
                   "data": {"WHERE": "shop"}}),
        ];
        let data = |preview: &Preview, doc_ns: Option<&str>| {
            let known = KnownSources::collect(&docs, preview.default_namespace()).unwrap();
            let sources = preview.sources(&known, doc_ns);
            sources.config_maps.get("env").map(|d| d["WHERE"].clone())
        };
        let plain = preview(None);
        assert_eq!(data(&plain, None).as_deref(), Some("unset"));
        assert_eq!(data(&plain, Some("default")).as_deref(), Some("unset"));
        assert_eq!(data(&plain, Some("shop")).as_deref(), Some("shop"));
        assert_eq!(data(&plain, Some("other")), None);
        // With --namespace team, documents without a namespace are in team.
        let team = preview(Some("team"));
        assert_eq!(data(&team, None).as_deref(), Some("unset"));
        assert_eq!(data(&team, Some("default")), None);
        assert_eq!(data(&team, Some("shop")).as_deref(), Some("shop"));
    }
}
