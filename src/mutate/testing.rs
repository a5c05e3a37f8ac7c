//! Test support for the features' unit tests: the facts of a pod's first container, gathered
//! as the driver gathers them, so each feature's decision can be tested alone.

use std::collections::BTreeMap;

use super::pod::Pod;
use serde_json::{json, Value};

use super::container::{self, Target};
use super::env::EnvSources;
use super::facts::Facts;
use super::image::ImageConfig;
use super::plan::{Plan, Verdict};
use super::targets::Why;
use crate::config::{Defaults, NamespaceConfig, ServerSettings};

/// A pod with `annotations` and one container.
pub fn pod(annotations: Value, container: Value) -> Value {
    json!({
        "metadata": {"name": "p", "annotations": annotations},
        "spec": {"containers": [container]},
    })
}

/// Calls `f` with the facts of the first container of `pod` (in an opted-in namespace, with a
/// tools image unless `tools` is false).
pub fn with_facts<R>(pod: Value, tools: bool, f: impl FnOnce(&Facts<'_>) -> R) -> R {
    with_namespace_facts(json!({}), pod, tools, f)
}

/// [`with_facts`], in a namespace with `annotations`.
pub fn with_namespace_facts<R>(
    annotations: Value,
    pod: Value,
    tools: bool,
    f: impl FnOnce(&Facts<'_>) -> R,
) -> R {
    let settings = ServerSettings {
        tools_image: tools.then(|| "tools:1".to_string()),
        ..ServerSettings::default()
    };
    with_settings_facts(&settings, annotations, pod, f)
}

/// [`with_namespace_facts`], with the server's `settings` (its profiles, tools image).
pub fn with_settings_facts<R>(
    settings: &ServerSettings,
    annotations: Value,
    pod: Value,
    f: impl FnOnce(&Facts<'_>) -> R,
) -> R {
    facts_of(settings, annotations, pod, None, f)
}

/// [`with_facts`], the registry having answered `image` for the container's image.
pub fn with_image_facts<R>(pod: Value, image: &ImageConfig, f: impl FnOnce(&Facts<'_>) -> R) -> R {
    let settings = ServerSettings {
        tools_image: Some("tools:1".to_string()),
        ..ServerSettings::default()
    };
    facts_of(&settings, json!({}), pod, Some(image), f)
}

fn facts_of<R>(
    settings: &ServerSettings,
    annotations: Value,
    pod: Value,
    image: Option<&ImageConfig>,
    f: impl FnOnce(&Facts<'_>) -> R,
) -> R {
    let pod: Pod = serde_json::from_value(pod).expect("a valid pod");
    let annotations: BTreeMap<String, String> =
        serde_json::from_value(annotations).expect("string annotations");
    let ns = NamespaceConfig::new("shop", Some(&annotations), &Defaults::default());
    let sources = EnvSources::default();
    let plan = Plan::with_sources(&pod, &ns, settings, &sources);
    let Verdict::Mutate(plan) = plan.verdict else {
        panic!("the pod is left alone");
    };
    let target = Target {
        index: 0,
        container: &plan.facts.spec.containers[0],
        why: Why::Seen,
        image: image.map(Ok),
        pod: &plan.facts,
        sources: &sources,
    };
    f(&container::facts(&target))
}
