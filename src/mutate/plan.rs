//! The plan of one admission: whether the pod is ours, its typed configuration (resolved once),
//! its targets and the pod-level parts they can share. Built once, then passed to the image
//! lookup ([`Plan::images_to_resolve`]) and to the mutation ([`Plan::mutate`]).

use std::collections::BTreeMap;

use super::env::EnvSources;
use super::facts::PodFacts;
use super::image::{ImageConfig, ImageRequest, Platform, ResolvedImages, OS_LABEL};
use super::parts::{dump_pod_collision, dump_tools_collision, tools_pod_collision};
use super::pod::{Container, Pod, PodSpec};
use super::targets;
use crate::config::{
    Config, Key, NamespaceConfig, ServerSettings, Switch, Warnings, EXCLUDED_NAMESPACES,
    INJECT_LABEL, STATUS_ANNOTATION,
};

/// What was decided about a pod before any container is looked at.
pub struct Plan<'a> {
    pub(super) pod: &'a Pod,
    pub(super) verdict: Verdict<'a>,
    /// The ConfigMaps and Secrets the caller knows, for `envFrom` and `valueFrom`.
    pub(super) sources: &'a EnvSources,
}

static NO_SOURCES: EnvSources = EnvSources {
    config_maps: BTreeMap::new(),
    secrets: BTreeMap::new(),
};

pub(super) enum Verdict<'a> {
    /// Left alone, with the warnings saying why (none for a pod we mutated already).
    LeaveAlone(Warnings),
    Mutate(Box<PodPlan<'a>>),
}

/// What was decided for a pod to mutate: the facts every target shares. Its targets are chosen
/// with the images' configs ([`PodPlan::targets`]).
pub(super) struct PodPlan<'a> {
    pub facts: PodFacts<'a>,
    pub platform: Platform,
    /// What resolving the configuration and choosing the targets had to say.
    pub warnings: Warnings,
}

/// Why the pod must be left alone, if it must.
fn excluded(pod: &Pod, ns: &NamespaceConfig, settings: &ServerSettings) -> Option<String> {
    if EXCLUDED_NAMESPACES.contains(&ns.name.as_str())
        || settings.webhook_namespace.as_deref() == Some(ns.name.as_str())
    {
        return Some(format!("namespace {} is never mutated", ns.name));
    }
    opted_out(pod)
}

fn opted_out(pod: &Pod) -> Option<String> {
    let labels = pod.metadata.labels.as_ref();
    (labels.and_then(|l| l.get(INJECT_LABEL)).map(String::as_str) == Some("false"))
        .then(|| format!("pod opted out with label {INJECT_LABEL}=false"))
}

/// Why the webhook leaves `pod` alone without its status annotation whatever its namespace
/// says (the opt-out label, a Helm test hook, a Windows pod), if it does: such a pod of an
/// opted-in namespace is not *unguarded* (missed by the webhook) for `report` and `serve`'s
/// pod watcher.
pub fn left_alone_by_design(pod: &Pod) -> Option<String> {
    opted_out(pod).or_else(|| not_for_us(pod, pod.spec.as_ref()?))
}

/// Pods that are not workloads to guard (SPEC §2): Helm test hooks, and Windows pods (the tools
/// are Linux binaries with a Linux security context).
fn not_for_us(pod: &Pod, spec: &PodSpec) -> Option<String> {
    let annotations = pod.metadata.annotations.as_ref();
    let hook = annotations.and_then(|a| a.get("helm.sh/hook"));
    if hook.is_some_and(|h| h.split(',').any(|h| h.trim().starts_with("test"))) {
        return Some("pod is a Helm test hook (helm.sh/hook: test); left alone".into());
    }
    let os = spec.os.as_ref().map(|o| o.name.as_str());
    let selector = spec
        .node_selector
        .as_ref()
        .and_then(|s| s.get(OS_LABEL))
        .map(String::as_str);
    if os == Some("windows") || selector == Some("windows") {
        return Some("Windows pod; left alone (jvm-guard's tools are Linux binaries)".into());
    }
    None
}

/// The tools image, or why the tools cannot be injected into this pod.
fn tools_image(
    spec: &PodSpec,
    config: &Config,
    settings: &ServerSettings,
) -> Result<String, String> {
    if !config.tools {
        return Err(format!("{} is \"false\"", Key::Tools.annotation()));
    }
    let image = settings
        .tools_image
        .as_deref()
        .ok_or_else(|| "no tools image is configured (--tools-image)".to_string())?;
    match tools_pod_collision(spec) {
        None => Ok(image.to_string()),
        Some(reason) => Err(reason),
    }
}

impl<'a> Plan<'a> {
    /// Decides about `pod`, created in namespace `ns`: the one place its configuration is
    /// resolved.
    pub fn new(pod: &'a Pod, ns: &NamespaceConfig, settings: &ServerSettings) -> Plan<'a> {
        Plan::with_sources(pod, ns, settings, &NO_SOURCES)
    }

    /// [`Plan::new`], knowing the ConfigMaps and Secrets in `sources` (the preview's input).
    pub fn with_sources(
        pod: &'a Pod,
        ns: &NamespaceConfig,
        settings: &ServerSettings,
        sources: &'a EnvSources,
    ) -> Plan<'a> {
        let leave_alone = |warnings| Plan {
            pod,
            verdict: Verdict::LeaveAlone(warnings),
            sources,
        };
        let mut warnings = Warnings::default();
        if let Some(reason) = excluded(pod, ns, settings) {
            warnings.push(reason);
            return leave_alone(warnings);
        }
        let annotations = pod.metadata.annotations.as_ref();
        // Reinvocation and re-submitted manifests: our own mark means the work is done.
        if annotations.is_some_and(|a| a.contains_key(STATUS_ANNOTATION)) {
            return leave_alone(warnings);
        }
        let Some(spec) = pod.spec.as_ref() else {
            warnings.push("pod has no spec; nothing injected");
            return leave_alone(warnings);
        };
        if let Some(reason) = not_for_us(pod, spec) {
            warnings.push(reason);
            return leave_alone(warnings);
        }
        let config = Config::resolve_shared(ns, annotations, settings, &mut warnings);
        let dump = match &config.heap_dump {
            Switch::On(cfg) => {
                match dump_pod_collision(spec).or_else(|| dump_tools_collision(cfg)) {
                    None => Ok(cfg.clone()),
                    Some(reason) => {
                        warnings.push(format!("{reason}; heap-dump skipped"));
                        Err(reason)
                    }
                }
            }
            Switch::Off | Switch::Invalid => Err(String::new()),
        };
        let tools = tools_image(spec, &config, settings);
        let plan = PodPlan {
            facts: PodFacts {
                spec,
                config,
                dump,
                tools,
                profiles: settings.profiles.clone(),
            },
            platform: Platform::of(spec),
            warnings,
        };
        Plan {
            pod,
            verdict: Verdict::Mutate(Box::new(plan)),
            sources,
        }
    }

    /// The images whose config the mutation would use (docs/design.md#image-lookup): those of
    /// every container that may be a target, for the evidence their config gives (`Env`,
    /// ENTRYPOINT) and, without a `command`, the entrypoint the agent wraps. Empty when the pod
    /// needs no lookup.
    pub fn images_to_resolve(&self) -> Vec<ImageRequest> {
        let Verdict::Mutate(plan) = &self.verdict else {
            return Vec::new();
        };
        let pod = &plan.facts;
        let wanted = pod.config.jvm_flags_on() || pod.config.ulimits.is_on();
        if !wanted {
            return Vec::new();
        }
        let mut requests: Vec<ImageRequest> = Vec::new();
        let candidates =
            targets::may_be_targets(self.pod, &pod.config.targets, &pod.profiles, self.sources);
        for index in candidates {
            let container = &pod.spec.containers[index];
            let Some(image) = container.image.as_ref().filter(|i| !i.is_empty()) else {
                continue;
            };
            let request = ImageRequest {
                image: image.clone(),
                platform: plan.platform.clone(),
            };
            if !requests.contains(&request) {
                requests.push(request);
            }
        }
        requests
    }
}

impl PodPlan<'_> {
    /// The targets, with why each is one, knowing the images' configs in `images`.
    pub fn targets(
        &self,
        pod: &Pod,
        sources: &EnvSources,
        images: &ResolvedImages,
        warnings: &mut Warnings,
    ) -> Vec<(usize, targets::Why)> {
        let image = |c: &Container| self.image_of(c, images);
        let profiles = &self.facts.profiles;
        targets::select(
            pod,
            &self.facts.config.targets,
            profiles,
            sources,
            &image,
            warnings,
        )
    }

    /// What the registry said of `container`'s image, when it was looked up.
    pub fn lookup<'i>(
        &self,
        container: &Container,
        images: &'i ResolvedImages,
    ) -> Option<Result<&'i ImageConfig, &'i str>> {
        let image = container.image.as_ref()?;
        images.get(&ImageRequest {
            image: image.clone(),
            platform: self.platform.clone(),
        })
    }

    fn image_of<'i>(&self, c: &Container, images: &'i ResolvedImages) -> Option<&'i ImageConfig> {
        self.lookup(c, images).and_then(Result::ok)
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;
    use serde_json::{json, Value};

    use super::*;
    use crate::config::Defaults;

    fn settings() -> ServerSettings {
        ServerSettings {
            tools_image: Some("tools:1".into()),
            webhook_namespace: Some("jvm-guard".into()),
            ..ServerSettings::default()
        }
    }

    fn plan_of<R>(namespace: &str, pod: Value, f: impl FnOnce(&Verdict<'_>) -> R) -> R {
        let pod: Pod = serde_json::from_value(pod).unwrap();
        let ns = NamespaceConfig::new(namespace, None, &Defaults::default());
        let settings = settings();
        f(&Plan::new(&pod, &ns, &settings).verdict)
    }

    fn app() -> Value {
        json!([{"name": "app", "image": "corp/app:1", "command": ["java", "-jar", "app.jar"]}])
    }

    fn left_alone(verdict: &Verdict<'_>) -> Option<Vec<String>> {
        match verdict {
            Verdict::LeaveAlone(w) => Some(w.clone().into_vec()),
            Verdict::Mutate(_) => None,
        }
    }

    #[rstest]
    #[case::kube_system("kube-system", json!({"metadata": {}, "spec": {"containers": app()}}), "namespace kube-system is never mutated")]
    #[case::the_webhook_s_own("jvm-guard", json!({"metadata": {}, "spec": {"containers": app()}}), "namespace jvm-guard is never mutated")]
    #[case::opted_out(
        "shop", json!({"metadata": {"labels": {INJECT_LABEL: "false"}}, "spec": {"containers": app()}}),
        "pod opted out with label jvm-guard.io/inject=false"
    )]
    #[case::helm_test_hook(
        "shop", json!({"metadata": {"annotations": {"helm.sh/hook": "pre-install, test-success"}}, "spec": {"containers": app()}}),
        "pod is a Helm test hook (helm.sh/hook: test); left alone"
    )]
    #[case::windows_by_os("shop", json!({"metadata": {}, "spec": {"os": {"name": "windows"}, "containers": app()}}), "Windows pod; left alone")]
    #[case::windows_by_selector(
        "shop", json!({"metadata": {}, "spec": {"nodeSelector": {"kubernetes.io/os": "windows"}, "containers": app()}}),
        "Windows pod; left alone"
    )]
    #[case::no_spec("shop", json!({"metadata": {}}), "pod has no spec; nothing injected")]
    fn pods_left_alone(#[case] namespace: &str, #[case] pod: Value, #[case] why: &str) {
        let warnings = plan_of(namespace, pod, left_alone).expect("left alone");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains(why), "{warnings:?}");
    }

    #[test]
    fn a_mutated_pod_is_left_alone_silently() {
        let pod = json!({"metadata": {"annotations": {STATUS_ANNOTATION: "{}"}}, "spec": {"containers": app()}});
        assert_eq!(plan_of("shop", pod, left_alone), Some(Vec::new()));
    }

    #[test]
    fn a_helm_hook_that_is_not_a_test_is_mutated() {
        let hook = json!({"helm.sh/hook": "pre-install"});
        let pod = json!({"metadata": {"annotations": hook}, "spec": {"containers": app()}});
        assert_eq!(plan_of("shop", pod, left_alone), None);
    }

    #[rstest]
    #[case::free(json!([]), json!([]), Ok(()), Ok(()))]
    #[case::dump_volume_taken(
        json!([{"name": "jvm-guard-dumps", "emptyDir": {}}]), json!([]),
        Err("the pod already has a volume named jvm-guard-dumps"), Ok(())
    )]
    #[case::tools_volume_taken(
        json!([{"name": "jvm-guard-tools", "emptyDir": {}}]), json!([]),
        Ok(()), Err("the pod already has a volume named jvm-guard-tools")
    )]
    #[case::init_container_taken(
        json!([]), json!([{"name": "jvm-guard-tools", "image": "x"}]),
        Ok(()), Err("the pod already has a container named jvm-guard-tools")
    )]
    fn what_the_pod_can_take(
        #[case] volumes: Value,
        #[case] init: Value,
        #[case] dump: Result<(), &str>,
        #[case] tools: Result<(), &str>,
    ) {
        let pod = json!({"metadata": {}, "spec": {"containers": app(), "volumes": volumes, "initContainers": init}});
        let typed: Pod = serde_json::from_value(pod.clone()).unwrap();
        plan_of("shop", pod, |verdict| {
            let Verdict::Mutate(plan) = verdict else {
                panic!("mutated");
            };
            let facts = &plan.facts;
            assert_eq!(
                facts.dump.as_ref().map(|_| ()).map_err(String::as_str),
                dump
            );
            assert_eq!(
                facts.tools.as_ref().map(|_| ()).map_err(String::as_str),
                tools
            );
            let warned = plan.warnings.clone().into_vec();
            let dump_warning = dump
                .err()
                .map(|r| format!("jvm-guard: {r}; heap-dump skipped"));
            assert_eq!(warned, dump_warning.into_iter().collect::<Vec<_>>());
            let mut warnings = Warnings::default();
            let images = ResolvedImages::default();
            let sources = EnvSources::default();
            let targets = plan.targets(&typed, &sources, &images, &mut warnings);
            assert_eq!(targets, [(0, targets::Why::Seen)]);
        });
    }

    #[test]
    fn the_dump_directory_cannot_be_the_tools_directory() {
        let cfg = |path: &str| crate::config::DumpConfig {
            volume: crate::config::DumpVolume::EmptyDir { size_limit: None },
            mount_path: path.into(),
            keep: 3,
        };
        assert!(dump_tools_collision(&cfg("/jvm-guard/bin/dumps")).is_some());
        assert!(dump_tools_collision(&cfg("/jvm-guard/bin")).is_some());
        assert!(dump_tools_collision(&cfg("/jvm-guard/binaries")).is_none());
    }
}
