//! The admission engine, pure: a Pod and its configuration in, a JSONPatch, warnings and the
//! status report out. No I/O; the webhook, the preview and the tests all call it.
//!
//! [`Plan`] decides once per pod; each target then goes through `container`, which gathers
//! its facts, asks one function per feature for a decision (`memory`, [`dumps`], [`jvm`],
//! [`probes`], [`tools`]), merges the decisions and writes the patch.

mod container;
mod decision;
pub mod dumps;
pub mod env;
mod facts;
pub mod image;
mod jdk;
pub mod jvm;
mod launcher;
mod memory;
mod parts;
pub mod patch;
mod plan;
pub mod pod;
pub mod probes;
mod shell;
pub mod status;
pub mod targets;
#[cfg(test)]
mod testing;
pub mod tools;

use pod::Pod;

pub use env::EnvSources;
pub use image::{ImageConfig, ImageRequest, Platform, ResolvedImages};
pub use plan::{left_alone_by_design, Plan};

use crate::config::{NamespaceConfig, ServerSettings, Warnings};
use container::Target;
use decision::Uses;
pub use patch::Patch;
use patch::{pointer, raw, PatchBuilder};
use plan::Verdict;
use status::Status;

/// What a mutation decided. An empty patch means "admit unchanged".
#[derive(Debug, Clone)]
pub struct Mutation {
    pub patch: Patch,
    pub warnings: Vec<String>,
    /// The report written to the status annotation; `None` when the pod is left alone.
    pub status: Option<Status>,
}

impl Mutation {
    fn unchanged(warnings: Warnings) -> Mutation {
        Mutation {
            patch: Patch::empty(),
            warnings: warnings.into_vec(),
            status: None,
        }
    }
}

/// The images whose ENTRYPOINT and CMD [`mutate_with`] would use (see
/// [`Plan::images_to_resolve`]).
pub fn images_to_resolve(
    pod: &Pod,
    ns: &NamespaceConfig,
    settings: &ServerSettings,
) -> Vec<ImageRequest> {
    Plan::new(pod, ns, settings).images_to_resolve()
}

/// Mutates `pod`, created in namespace `ns`, knowing no image's ENTRYPOINT.
pub fn mutate(pod: &Pod, ns: &NamespaceConfig, settings: &ServerSettings) -> Mutation {
    mutate_with(pod, ns, settings, &ResolvedImages::default())
}

/// Mutates `pod`, created in namespace `ns`, with the image commands looked up for
/// [`images_to_resolve`].
pub fn mutate_with(
    pod: &Pod,
    ns: &NamespaceConfig,
    settings: &ServerSettings,
    images: &ResolvedImages,
) -> Mutation {
    Plan::new(pod, ns, settings).mutate(images)
}

/// Mutates `pod` as [`mutate_with`] does, reading the ConfigMaps and Secrets in `sources` that
/// its containers' `envFrom` and `valueFrom` name (the preview's view of its input).
pub fn mutate_with_sources(
    pod: &Pod,
    ns: &NamespaceConfig,
    settings: &ServerSettings,
    images: &ResolvedImages,
    sources: &EnvSources,
) -> Mutation {
    Plan::with_sources(pod, ns, settings, sources).mutate(images)
}

impl Plan<'_> {
    /// Mutates the planned pod with the image commands looked up for
    /// [`images_to_resolve`](Plan::images_to_resolve).
    pub fn mutate(self, images: &ResolvedImages) -> Mutation {
        let (pod, sources) = (self.pod, self.sources);
        let mut plan = match self.verdict {
            Verdict::LeaveAlone(warnings) => return Mutation::unchanged(warnings),
            Verdict::Mutate(plan) => plan,
        };
        let facts = &plan.facts;
        let spec = facts.spec;
        let mut warnings = std::mem::take(&mut plan.warnings);
        let mut patch = PatchBuilder::default();
        let mut status = Status::new();
        let mut uses = Uses::default();
        let targets = plan.targets(pod, sources, images, &mut warnings);
        for (index, why) in targets {
            let container = &spec.containers[index];
            let image = plan.lookup(container, images);
            let target = Target {
                index,
                container,
                why,
                image,
                pod: facts,
                sources,
            };
            let (container_status, used) = container::run(&target, &mut patch, &mut warnings);
            uses.dump |= used.dump;
            uses.tools |= used.tools;
            status
                .containers
                .insert(container.name.clone(), container_status);
        }
        let dump_volume = match (uses.dump, &facts.dump) {
            (true, Ok(cfg)) => Some(raw(&dumps::volume(cfg))),
            _ => None,
        };
        let tools = match (uses.tools, &facts.tools) {
            (true, Ok(image)) => Some(tools::pod_parts(image)),
            _ => None,
        };
        if let Some(parts) = &tools {
            patch.append(
                &pointer(["spec", "initContainers"]),
                spec.init_containers.is_some(),
                &[parts.init_container()],
            );
        }
        let volumes: Vec<&patch::Raw> = (dump_volume.as_deref().into_iter())
            .chain(tools.as_ref().map(|parts| parts.volume()))
            .collect();
        patch.append(
            &pointer(["spec", "volumes"]),
            spec.volumes.is_some(),
            &volumes,
        );
        status::annotate(&mut patch, &pod.metadata, &status);
        Mutation {
            patch: patch.build(),
            warnings: warnings.into_vec(),
            status: Some(status),
        }
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;
    use serde_json::json;

    use super::*;
    use crate::config::Defaults;
    use serde_json::Value;

    fn pod(annotations: Value, containers: Value, node_selector: Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "annotations": annotations},
            "spec": {"containers": containers, "nodeSelector": node_selector},
        }))
        .unwrap()
    }

    fn settings(tools: bool) -> ServerSettings {
        ServerSettings {
            tools_image: tools.then(|| "tools:1".to_string()),
            ..ServerSettings::default()
        }
    }

    const ULIMITS: &str = "jvm-guard.io/ulimits";

    #[rstest]
    #[case::wrapped(json!({ULIMITS: "nofile=1024"}), json!([{"name": "a", "image": "app:1"}]), true, &["app:1"])]
    #[case::no_ulimits(json!({}), json!([{"name": "a", "image": "app:1"}]), true, &["app:1"])]
    #[case::nothing_on(
        json!({"jvm-guard.io/max-ram-percentage": "off", "jvm-guard.io/heap-dump": "false", "jvm-guard.io/exit-on-oom": "false"}),
        json!([{"name": "a", "image": "app:1"}]),
        true,
        &[]
    )]
    // The image config is evidence, not only an entrypoint: looked up without tools, and for
    // a container with its own command.
    #[case::no_tools(json!({ULIMITS: "nofile=1024"}), json!([{"name": "a", "image": "app:1"}]), false, &["app:1"])]
    #[case::command(json!({ULIMITS: "nofile=1024"}), json!([{"name": "a", "image": "app:1", "command": ["java"]}]), true, &["app:1"])]
    #[case::not_a_jvm_by_the_spec(
        json!({ULIMITS: "nofile=1024"}),
        json!([{"name": "web", "image": "nginx:1.27"}, {"name": "job", "image": "corp/tools:1", "command": ["sh", "-c", "curl -f http://x"]}, {"name": "a", "image": "app:1"}]),
        true,
        &["app:1"]
    )]
    #[case::empty_command(json!({ULIMITS: "nofile=1024"}), json!([{"name": "a", "image": "app:1", "command": []}]), true, &["app:1"])]
    #[case::already_mutated(json!({ULIMITS: "nofile=1024", "jvm-guard.io/status": "{}"}), json!([{"name": "a", "image": "app:1"}]), true, &[])]
    #[case::only_targets(
        json!({ULIMITS: "nofile=1024"}),
        json!([{"name": "istio-proxy", "image": "proxy:1"}, {"name": "a", "image": "app:1"}]),
        true,
        &["app:1"]
    )]
    #[case::once_per_image(
        json!({ULIMITS: "nofile=1024", "jvm-guard.io/containers": "*"}),
        json!([{"name": "a", "image": "app:1"}, {"name": "b", "image": "app:1"}, {"name": "c", "image": "app:2", "command": ["x"]}]),
        true,
        &["app:1", "app:2"]
    )]
    fn images_to_resolve_for_every_container_that_may_be_a_target(
        #[case] annotations: Value,
        #[case] containers: Value,
        #[case] tools: bool,
        #[case] expected: &[&str],
    ) {
        let pod = pod(annotations, containers, Value::Null);
        let ns = NamespaceConfig::new("shop", None, &Defaults::default());
        let images: Vec<String> = images_to_resolve(&pod, &ns, &settings(tools))
            .into_iter()
            .map(|r| r.image)
            .collect();
        assert_eq!(images, expected);
    }

    #[test]
    fn the_platform_comes_from_the_node_selector() {
        let containers = json!([{"name": "a", "image": "app:1"}]);
        let selector = json!({"kubernetes.io/arch": "arm64"});
        let pod = pod(json!({ULIMITS: "nofile=1024"}), containers, selector);
        let ns = NamespaceConfig::new("shop", None, &Defaults::default());
        let requests = images_to_resolve(&pod, &ns, &settings(true));
        assert_eq!(
            requests[0].platform,
            Platform {
                os: "linux".into(),
                architecture: "arm64".into()
            }
        );
        assert_eq!(Platform::default().architecture, "amd64");

        // What the lookup said reaches the container, an unknown image says why.
        let command = |result: Result<ImageConfig, String>| {
            let mut images = ResolvedImages::default();
            images.insert(requests[0].clone(), result);
            let m = mutate_with(&pod, &ns, &settings(true), &images);
            (serde_json::to_value(&m.patch).unwrap(), m.warnings)
        };
        let (patch, _) = command(Ok(ImageConfig {
            entrypoint: vec!["java".into()],
            cmd: vec!["-version".into()],
            ..ImageConfig::default()
        }));
        let ops = patch.as_array().unwrap();
        assert!(ops.iter().any(
            |op| op["path"] == "/spec/containers/0/args" && op["value"] == json!(["-version"])
        ));
        let (_, warnings) = command(Err("registry down".into()));
        assert!(
            warnings.iter().any(|w| w.contains(
                "no command, and the image ENTRYPOINT is unknown (registry down); set command to wrap it"
            )),
            "{warnings:?}"
        );
    }
}
