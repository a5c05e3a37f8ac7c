//! The mutation itself: a pure function from a Pod and its configuration to a JSONPatch, the
//! warnings and the status report. No I/O; the server, the CLI and the tests all call it.

use std::collections::HashMap;

use json_patch::Patch;
use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Map, Value};

use crate::config::{
    Config, DumpConfig, Key, NamespaceConfig, Setting, Settings, EXCLUDED_NAMESPACES, INJECT_LABEL,
    STATUS_ANNOTATION,
};
use crate::dumps;
use crate::jvm::{self, UserFlags, TOOL_OPTIONS};
use crate::patch::{pointer, to_value, PatchBuilder};
use crate::probes;
use crate::quantity::Quantity;
use crate::status::{ContainerStatus, Feature, Status};
use crate::targets;
use crate::tools::{self, ImageCommand};
use crate::warnings::Warnings;

/// The node labels that pick the image of a multi-arch index (SPEC §7).
pub const ARCH_LABEL: &str = "kubernetes.io/arch";
pub const OS_LABEL: &str = "kubernetes.io/os";

/// The platform a pod's images run on: its `kubernetes.io/os` and `kubernetes.io/arch` node
/// selector, else linux/amd64.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
}

impl Default for Platform {
    fn default() -> Self {
        Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
        }
    }
}

impl Platform {
    pub fn of(spec: &PodSpec) -> Platform {
        let selector = spec.node_selector.as_ref();
        let label = |key: &str| selector.and_then(|s| s.get(key)).cloned();
        let default = Platform::default();
        Platform {
            os: label(OS_LABEL).unwrap_or(default.os),
            architecture: label(ARCH_LABEL).unwrap_or(default.architecture),
        }
    }
}

/// An image whose ENTRYPOINT and CMD the mutation needs: as written in the pod, for the pod's
/// platform.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRequest {
    pub image: String,
    pub platform: Platform,
}

/// What the registry said about each requested image: its command, or why it is unknown.
/// The mutation's only view of registries; empty when nothing was looked up (offline).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvedImages(pub HashMap<ImageRequest, Result<ImageCommand, String>>);

impl ResolvedImages {
    pub fn get(&self, request: &ImageRequest) -> Option<Result<&ImageCommand, &str>> {
        self.0
            .get(request)
            .map(|r| r.as_ref().map_err(String::as_str))
    }

    pub fn insert(&mut self, request: ImageRequest, result: Result<ImageCommand, String>) {
        self.0.insert(request, result);
    }
}

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
            patch: Patch(Vec::new()),
            warnings: warnings.into_vec(),
            status: None,
        }
    }
}

/// Why the pod must be left alone, if it must.
fn excluded(pod: &Pod, ns: &NamespaceConfig, settings: &Settings) -> Option<String> {
    if EXCLUDED_NAMESPACES.contains(&ns.name.as_str())
        || settings.webhook_namespace.as_deref() == Some(ns.name.as_str())
    {
        return Some(format!("namespace {} is never mutated", ns.name));
    }
    let labels = pod.metadata.labels.as_ref();
    if labels.and_then(|l| l.get(INJECT_LABEL)).map(String::as_str) == Some("false") {
        return Some(format!("pod opted out with label {INJECT_LABEL}=false"));
    }
    None
}

/// Pod-level decisions every target shares: whether the dump volume and the tools can be
/// added, or why not.
struct PodPlan<'a> {
    dump: Result<&'a DumpConfig, String>,
    tools: Result<&'a str, String>,
}

/// What a container ended up using, so the pod gets the volumes and init container once.
#[derive(Default)]
struct Uses {
    dump: bool,
    tools: bool,
}

/// The tools image, or why the tools cannot be injected into this pod.
fn tools_image<'a>(
    spec: &PodSpec,
    config: &Config,
    settings: &'a Settings,
) -> Result<&'a str, String> {
    if !config.tools {
        return Err(format!("{} is \"false\"", Key::Tools.annotation()));
    }
    let image = settings
        .tools_image
        .as_deref()
        .ok_or_else(|| "no tools image is configured (--tools-image)".to_string())?;
    match tools::pod_collision(spec) {
        None => Ok(image),
        Some(reason) => Err(reason),
    }
}

/// The images whose ENTRYPOINT and CMD [`mutate_with`] would use: those of the targets that
/// get the rlimit wrapper and have no `command`. Empty when the pod needs no lookup.
pub fn images_to_resolve(
    pod: &Pod,
    ns: &NamespaceConfig,
    settings: &Settings,
) -> Vec<ImageRequest> {
    let annotations = pod.metadata.annotations.as_ref();
    let (None, Some(spec)) = (excluded(pod, ns, settings), pod.spec.as_ref()) else {
        return Vec::new();
    };
    if annotations.is_some_and(|a| a.contains_key(STATUS_ANNOTATION)) {
        return Vec::new();
    }
    // The warnings are the mutation's to give; here they would be said twice.
    let mut unheard = Warnings::default();
    let config = Config::resolve(ns, annotations, settings, &mut unheard);
    if !matches!(config.ulimits, Setting::On(_)) || tools_image(spec, &config, settings).is_err() {
        return Vec::new();
    }
    let platform = Platform::of(spec);
    let mut requests: Vec<ImageRequest> = Vec::new();
    for index in targets::select(pod, &config.targets, &mut unheard) {
        let container = &spec.containers[index];
        let has_command = container.command.as_ref().is_some_and(|c| !c.is_empty());
        if has_command || tools::container_collision(container).is_some() {
            continue;
        }
        let Some(image) = container.image.as_ref().filter(|i| !i.is_empty()) else {
            continue;
        };
        let request = ImageRequest {
            image: image.clone(),
            platform: platform.clone(),
        };
        if !requests.contains(&request) {
            requests.push(request);
        }
    }
    requests
}

/// Mutates `pod`, created in namespace `ns`, knowing no image's ENTRYPOINT.
pub fn mutate(pod: &Pod, ns: &NamespaceConfig, settings: &Settings) -> Mutation {
    mutate_with(pod, ns, settings, &ResolvedImages::default())
}

/// Mutates `pod`, created in namespace `ns`, with the image commands looked up for
/// [`images_to_resolve`].
pub fn mutate_with(
    pod: &Pod,
    ns: &NamespaceConfig,
    settings: &Settings,
    images: &ResolvedImages,
) -> Mutation {
    let mut warnings = Warnings::default();
    if let Some(reason) = excluded(pod, ns, settings) {
        warnings.push(reason);
        return Mutation::unchanged(warnings);
    }
    let annotations = pod.metadata.annotations.as_ref();
    // Reinvocation and re-submitted manifests: our own mark means the work is done.
    if annotations.is_some_and(|a| a.contains_key(STATUS_ANNOTATION)) {
        return Mutation::unchanged(warnings);
    }
    let Some(spec) = pod.spec.as_ref() else {
        warnings.push("pod has no spec; nothing injected");
        return Mutation::unchanged(warnings);
    };
    let config = Config::resolve(ns, annotations, settings, &mut warnings);
    let targets = targets::select(pod, &config.targets, &mut warnings);

    let mut patch = PatchBuilder::default();
    let mut status = Status::new();
    let pod_plan = PodPlan {
        dump: match config.heap_dump.as_on() {
            Some(cfg) => match dumps::pod_collision(spec) {
                None => Ok(cfg),
                Some(reason) => {
                    warnings.push(format!("{reason}; heap-dump skipped"));
                    Err(reason)
                }
            },
            None => Err(String::new()),
        },
        tools: tools_image(spec, &config, settings),
    };
    let mut uses = Uses::default();
    let platform = Platform::of(spec);
    for index in targets {
        let container = &spec.containers[index];
        // A `command` replaces the ENTRYPOINT: the image's is of no use then.
        let has_command = container.command.as_ref().is_some_and(|c| !c.is_empty());
        let image = container
            .image
            .as_ref()
            .filter(|_| !has_command)
            .and_then(|image| {
                images.get(&ImageRequest {
                    image: image.clone(),
                    platform: platform.clone(),
                })
            });
        let mut ctx = ContainerMutation {
            index,
            container,
            image,
            config: &config,
            pod: &pod_plan,
            patch: &mut patch,
            warnings: &mut warnings,
            status: ContainerStatus::default(),
        };
        let used = ctx.run();
        uses.dump |= used.dump;
        uses.tools |= used.tools;
        status.containers.insert(container.name.clone(), ctx.status);
    }
    let mut volumes = Vec::new();
    if let (true, Ok(cfg)) = (uses.dump, &pod_plan.dump) {
        volumes.push(to_value(&dumps::volume(cfg)));
    }
    if let (true, Ok(image)) = (uses.tools, &pod_plan.tools) {
        volumes.push(to_value(&tools::volume()));
        patch.append(
            pointer(["spec", "initContainers"]),
            spec.init_containers.is_some(),
            vec![to_value(&tools::init_container(image))],
        );
    }
    patch.append(
        pointer(["spec", "volumes"]),
        spec.volumes.is_some(),
        volumes,
    );
    let status_value = Value::String(status.to_annotation());
    if annotations.is_some() {
        patch.add(
            pointer(["metadata", "annotations", STATUS_ANNOTATION]),
            status_value,
        );
    } else {
        // The typed pod cannot tell `metadata: {}` from no metadata at all (found by fuzzing):
        // an empty one is set whole, which `add` does in both cases.
        let annotations = Map::from_iter([(STATUS_ANNOTATION.to_string(), status_value)]);
        patch.insert_key(
            pointer(["metadata"]),
            pod.metadata != ObjectMeta::default(),
            "annotations",
            Value::Object(annotations),
        );
    }
    Mutation {
        patch: patch.build(),
        warnings: warnings.into_vec(),
        status: Some(status),
    }
}

/// Where `JAVA_TOOL_OPTIONS` stands in a container's env.
enum ToolOptions<'a> {
    Absent,
    Literal {
        index: usize,
        value: &'a str,
    },
    /// Set from `valueFrom`, or possibly by `envFrom`: we cannot merge, so we do not touch it.
    Opaque(String),
}

fn tool_options(container: &Container) -> ToolOptions<'_> {
    let env = container.env.as_deref().unwrap_or_default();
    match env
        .iter()
        .enumerate()
        .rev()
        .find(|(_, e)| e.name == TOOL_OPTIONS)
    {
        Some((index, e)) if e.value_from.is_none() => ToolOptions::Literal {
            index,
            value: e.value.as_deref().unwrap_or(""),
        },
        Some(_) => ToolOptions::Opaque(format!("{TOOL_OPTIONS} is set from valueFrom")),
        None if container.env_from.as_ref().is_some_and(|e| !e.is_empty()) => {
            ToolOptions::Opaque(format!("envFrom may set {TOOL_OPTIONS}"))
        }
        None => ToolOptions::Absent,
    }
}

fn memory_limit(container: &Container) -> Result<Option<u64>, String> {
    let limit = container
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .and_then(|l| l.get("memory"));
    match limit {
        None => Ok(None),
        Some(q) => {
            q.0.parse::<Quantity>()
                .map(|q| Some(q.bytes()))
                .map_err(|e| e.to_string())
        }
    }
}

enum State {
    Off,
    On,
    Invalid,
}

struct ContainerMutation<'a> {
    index: usize,
    container: &'a Container,
    /// The registry's answer for the container's image, when it was looked up.
    image: Option<Result<&'a ImageCommand, &'a str>>,
    config: &'a Config,
    pod: &'a PodPlan<'a>,
    patch: &'a mut PatchBuilder,
    warnings: &'a mut Warnings,
    status: ContainerStatus,
}

impl ContainerMutation<'_> {
    fn path(&self, field: &str) -> jsonptr::PointerBuf {
        pointer(["spec", "containers"])
            .with_trailing_token(self.index)
            .with_trailing_token(field)
    }

    fn skip(&mut self, feature: Feature, reason: impl Into<String>) {
        self.status.skipped(feature, reason);
    }

    /// The tools, if this container can use them; else why not.
    fn tools(&self) -> Result<(), String> {
        self.pod.tools.as_ref().map_err(String::clone)?;
        match tools::container_collision(self.container) {
            None => Ok(()),
            Some(reason) => Err(reason),
        }
    }

    /// Applies every feature to the container; returns what it uses of the pod-level parts.
    fn run(&mut self) -> Uses {
        let name = self.container.name.clone();
        let user = UserFlags::of(self.container);
        let options = tool_options(self.container);
        let mut tokens: Vec<String> = Vec::new();
        let mut prepend_env: Vec<EnvVar> = Vec::new();
        let mut uses = Uses::default();

        for feature in [
            Feature::Memory,
            Feature::HeapDump,
            Feature::ExitOnOom,
            Feature::JvmOptions,
        ] {
            match self.state(feature) {
                State::Off => continue,
                State::Invalid => {
                    self.skip(feature, "invalid configuration");
                    continue;
                }
                State::On => {}
            }
            if let ToolOptions::Opaque(reason) = &options {
                self.skip(feature, reason.clone());
                continue;
            }
            let flags = match feature {
                Feature::Memory => {
                    let cfg = self.config.memory.as_on().expect("checked valid");
                    let limit = memory_limit(self.container).unwrap_or_else(|e| {
                        self.warnings
                            .push(format!("container {name}: memory limit {e}"));
                        None
                    });
                    let out = jvm::memory_flags(cfg, limit, &name, &user);
                    for w in out.warnings {
                        self.warnings.push(w);
                    }
                    if out.flags.is_empty() && !user.sets("-XX:MaxRAMPercentage") {
                        self.skip(feature, "no memory limit");
                        continue;
                    }
                    out.flags
                }
                Feature::HeapDump => {
                    let cfg = match &self.pod.dump {
                        Ok(cfg) => *cfg,
                        Err(reason) => {
                            self.skip(feature, reason.clone());
                            continue;
                        }
                    };
                    if let Some(reason) = dumps::container_collision(self.container, cfg) {
                        self.warnings.push(format!("{reason}; heap-dump skipped"));
                        self.skip(feature, reason);
                        continue;
                    }
                    self.patch.append(
                        self.path("volumeMounts"),
                        self.container.volume_mounts.is_some(),
                        vec![to_value(&dumps::mount(cfg))],
                    );
                    prepend_env.push(dumps::pod_name_env());
                    uses.dump = true;
                    // Counted as applied even if the user set every flag: the volume is there.
                    self.status.applied(feature);
                    tokens.extend(
                        jvm::heap_dump_flags(cfg)
                            .into_iter()
                            .filter(|t| !user.sets(t)),
                    );
                    let hook = tools::oom_hook_flag(&cfg.mount_path, cfg.keep, &name);
                    match self.tools() {
                        Err(reason) => self.skip(Feature::DumpRotation, reason),
                        Ok(()) if user.sets(&hook) => self.skip(
                            Feature::DumpRotation,
                            "the container sets OnOutOfMemoryError",
                        ),
                        Ok(()) => {
                            tokens.push(hook);
                            uses.tools = true;
                            self.status.applied(Feature::DumpRotation);
                        }
                    }
                    continue;
                }
                Feature::ExitOnOom => jvm::exit_on_oom_flags(),
                Feature::JvmOptions => self.config.jvm_options.as_on().cloned().unwrap_or_default(),
                Feature::Probes | Feature::Ulimits | Feature::DumpRotation => {
                    unreachable!("not a flag feature")
                }
            };
            let new: Vec<String> = flags.into_iter().filter(|t| !user.sets(t)).collect();
            if new.is_empty() {
                self.skip(feature, "already set by the container");
            } else {
                self.status.applied(feature);
                tokens.extend(new);
            }
        }
        if let ToolOptions::Opaque(reason) = &options {
            if !self.status.skipped.is_empty() {
                self.warnings.push(format!(
                    "container {name}: {reason}; JVM flags not injected (set {TOOL_OPTIONS} as a literal env value to let jvm-guard merge into it)"
                ));
            }
        }

        self.apply_env(&options, &tokens, prepend_env);
        self.apply_probes();
        uses.tools |= self.apply_ulimits();
        if uses.tools {
            self.patch.append(
                self.path("volumeMounts"),
                self.container.volume_mounts.is_some() || uses.dump,
                vec![to_value(&tools::mount())],
            );
        }
        uses
    }

    fn state(&self, feature: Feature) -> State {
        fn of<T>(s: &Setting<T>) -> State {
            match s {
                Setting::Off => State::Off,
                Setting::On(_) => State::On,
                Setting::Invalid => State::Invalid,
            }
        }
        let c = self.config;
        match feature {
            Feature::Memory => of(&c.memory),
            Feature::HeapDump => of(&c.heap_dump),
            Feature::ExitOnOom => of(&c.exit_on_oom),
            Feature::JvmOptions => of(&c.jvm_options),
            Feature::Probes => of(&c.probes),
            Feature::Ulimits => of(&c.ulimits),
            Feature::DumpRotation => unreachable!("follows heap-dump"),
        }
    }

    /// Env edits in an order whose indices stay valid: the in-place replace first, then the
    /// append, then the inserts at the front.
    fn apply_env(&mut self, options: &ToolOptions<'_>, tokens: &[String], prepend: Vec<EnvVar>) {
        let env_path = self.path("env");
        let mut append: Vec<EnvVar> = Vec::new();
        let mut replace: Option<(usize, String)> = None;
        if !tokens.is_empty() {
            match options {
                ToolOptions::Literal { index, value } => {
                    replace = Some((*index, jvm::merge_tool_options(tokens, Some(value))))
                }
                ToolOptions::Absent => append.push(EnvVar {
                    name: TOOL_OPTIONS.to_string(),
                    value: Some(jvm::merge_tool_options(tokens, None)),
                    value_from: None,
                }),
                ToolOptions::Opaque(_) => unreachable!("no tokens are gathered for opaque options"),
            }
        }
        if self.container.env.is_none() {
            let all: Vec<Value> = prepend.iter().chain(&append).map(to_value).collect();
            if !all.is_empty() {
                self.patch.add(env_path, Value::Array(all));
            }
            return;
        }
        if let Some((index, value)) = replace {
            // `add`, not `replace`: the apiserver omits an empty `value`, so the key may be absent.
            self.patch.add(
                env_path
                    .with_trailing_token(index)
                    .with_trailing_token("value"),
                Value::String(value),
            );
        }
        self.patch.append(
            env_path.clone(),
            true,
            append.iter().map(to_value).collect(),
        );
        self.patch
            .prepend_existing(&env_path, prepend.iter().map(to_value).collect());
    }

    fn apply_probes(&mut self) {
        let cfg = match &self.config.probes {
            Setting::Off => return,
            Setting::Invalid => return self.skip(Feature::Probes, "invalid configuration"),
            Setting::On(cfg) => cfg,
        };
        match probes::plan(self.container, cfg) {
            Err(reason) => {
                self.warnings.push(format!("{reason}; probes skipped"));
                self.skip(Feature::Probes, reason);
            }
            Ok(plan) if plan.is_empty() => {
                self.skip(Feature::Probes, "the container has its own probes")
            }
            Ok(plan) => {
                for (field, probe) in [
                    ("startupProbe", plan.startup),
                    ("readinessProbe", plan.readiness),
                    ("livenessProbe", plan.liveness),
                ] {
                    if let Some(probe) = probe {
                        self.patch.add(self.path(field), to_value(&probe));
                    }
                }
                self.status.applied(Feature::Probes);
            }
        }
    }

    /// Wraps the command in the rlimit wrapper; returns whether the tools are used.
    fn apply_ulimits(&mut self) -> bool {
        let limits = match &self.config.ulimits {
            Setting::Off => return false,
            Setting::Invalid => {
                self.skip(Feature::Ulimits, "invalid configuration");
                return false;
            }
            Setting::On(limits) => limits,
        };
        let wrapped = self.tools().and_then(|()| match self.image {
            Some(Err(why)) => Err(format!(
                "no command, and the image ENTRYPOINT is unknown ({why}); set command to wrap it"
            )),
            image => tools::wrapped_command(self.container, image.and_then(Result::ok), limits),
        });
        match wrapped {
            Err(reason) => {
                self.warnings.push(format!(
                    "container {}: {reason}; ulimits not applied",
                    self.container.name
                ));
                self.skip(Feature::Ulimits, reason);
                false
            }
            Ok((command, args)) => {
                self.patch.add(self.path("command"), to_value(&command));
                if let Some(args) = args {
                    self.patch.add(self.path("args"), to_value(&args));
                }
                self.status.applied(Feature::Ulimits);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;
    use serde_json::json;

    use super::*;
    use crate::config::Defaults;

    fn pod(annotations: Value, containers: Value, node_selector: Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "annotations": annotations},
            "spec": {"containers": containers, "nodeSelector": node_selector},
        }))
        .unwrap()
    }

    fn settings(tools: bool) -> Settings {
        Settings {
            tools_image: tools.then(|| "tools:1".to_string()),
            ..Settings::default()
        }
    }

    const ULIMITS: &str = "jvm-guard.io/ulimits";

    #[rstest]
    #[case::wrapped(json!({ULIMITS: "nofile=1024"}), json!([{"name": "a", "image": "app:1"}]), true, &["app:1"])]
    #[case::no_ulimits(json!({}), json!([{"name": "a", "image": "app:1"}]), true, &[])]
    #[case::no_tools(json!({ULIMITS: "nofile=1024"}), json!([{"name": "a", "image": "app:1"}]), false, &[])]
    #[case::command(json!({ULIMITS: "nofile=1024"}), json!([{"name": "a", "image": "app:1", "command": ["java"]}]), true, &[])]
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
        json!([{"name": "a", "image": "app:1"}, {"name": "b", "image": "app:1"}, {"name": "c", "image": "app:1", "command": ["x"]}]),
        true,
        &["app:1"]
    )]
    fn images_to_resolve_only_for_wrapped_targets(
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
        let command = |result: Result<ImageCommand, String>| {
            let mut images = ResolvedImages::default();
            images.insert(requests[0].clone(), result);
            let m = mutate_with(&pod, &ns, &settings(true), &images);
            (serde_json::to_value(&m.patch).unwrap(), m.warnings)
        };
        let (patch, _) = command(Ok(ImageCommand {
            entrypoint: vec!["java".into()],
            cmd: vec!["-version".into()],
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
