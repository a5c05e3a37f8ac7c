//! One target container through every feature: each feature is one method, in the module that
//! owns it; this driver gates them on their switch, gathers their JVM flags, and writes the env.

use k8s_openapi::api::core::v1::{Container, EnvVar};
use serde_json::Value;

use super::image::ImageCommand;
use super::jvm::{self, ToolOptions, UserFlags, TOOL_OPTIONS};
use super::patch::{pointer, to_value, PatchBuilder};
use super::plan::PodPlan;
use super::status::ContainerStatus;
use super::tools;
use crate::config::{Feature, Switch, Warnings};

/// What a container ended up using of the pod-level parts, so the pod gets the volumes and the
/// init container once.
#[derive(Default)]
pub(super) struct Uses {
    pub dump: bool,
    pub tools: bool,
}

/// What the JVM features of a container gathered, written to its env in one go.
#[derive(Default)]
pub(super) struct JvmEdits {
    /// Our flags, merged before the user's own.
    pub tokens: Vec<String>,
    /// Variables inserted at the front of the env (they must precede their users).
    pub prepend_env: Vec<EnvVar>,
    pub uses: Uses,
}

pub(super) struct ContainerMutation<'a> {
    pub index: usize,
    pub container: &'a Container,
    /// The registry's answer for the container's image, when it was looked up.
    pub image: Option<Result<&'a ImageCommand, &'a str>>,
    pub pod: &'a PodPlan<'a>,
    pub patch: &'a mut PatchBuilder,
    pub warnings: &'a mut Warnings,
    pub status: ContainerStatus,
}

impl<'a> ContainerMutation<'a> {
    pub fn path(&self, field: &str) -> jsonptr::PointerBuf {
        pointer(["spec", "containers"])
            .with_trailing_token(self.index)
            .with_trailing_token(field)
    }

    pub fn skip(&mut self, feature: Feature, reason: impl Into<String>) {
        self.status.skipped(feature, reason);
    }

    /// The tools, if this container can use them; else why not.
    pub fn tools(&self) -> Result<(), String> {
        self.pod.tools.as_ref().map_err(String::clone)?;
        match tools::container_collision(self.container) {
            None => Ok(()),
            Some(reason) => Err(reason),
        }
    }

    /// The feature's configuration when it is on and its flags can reach the JVM; else records
    /// why it is skipped.
    fn gate<T>(
        &mut self,
        feature: Feature,
        switch: &'a Switch<T>,
        options: &ToolOptions<'_>,
    ) -> Option<&'a T> {
        match (switch, options) {
            (Switch::Off, _) => None,
            (Switch::Invalid, _) => {
                self.skip(feature, "invalid configuration");
                None
            }
            (Switch::On(_), ToolOptions::Opaque(reason)) => {
                self.skip(feature, reason.clone());
                None
            }
            (Switch::On(cfg), _) => Some(cfg),
        }
    }

    /// Keeps the flags the container does not set itself; the feature is applied if any is left.
    fn add_flags(
        &mut self,
        feature: Feature,
        flags: Vec<String>,
        user: &UserFlags,
        edits: &mut JvmEdits,
    ) {
        let new: Vec<String> = flags.into_iter().filter(|t| !user.sets(t)).collect();
        if new.is_empty() {
            self.skip(feature, "already set by the container");
        } else {
            self.status.applied(feature);
            edits.tokens.extend(new);
        }
    }

    /// Applies every feature to the container; returns what it uses of the pod-level parts.
    pub fn run(&mut self) -> Uses {
        let config = &self.pod.config;
        let user = UserFlags::of(self.container);
        let options = jvm::tool_options(self.container);
        let mut edits = JvmEdits::default();

        if let Some(cfg) = self.gate(Feature::Memory, &config.memory, &options) {
            if let Some(flags) = self.memory(cfg, &user) {
                self.add_flags(Feature::Memory, flags, &user, &mut edits);
            }
        }
        if self
            .gate(Feature::HeapDump, &config.heap_dump, &options)
            .is_some()
        {
            self.heap_dump(&user, &mut edits);
        }
        if self
            .gate(Feature::ExitOnOom, &config.exit_on_oom, &options)
            .is_some()
        {
            self.add_flags(
                Feature::ExitOnOom,
                jvm::exit_on_oom_flags(),
                &user,
                &mut edits,
            );
        }
        if let Some(tokens) = self.gate(Feature::JvmOptions, &config.jvm_options, &options) {
            self.add_flags(Feature::JvmOptions, tokens.clone(), &user, &mut edits);
        }
        if let ToolOptions::Opaque(reason) = &options {
            if !self.status.skipped.is_empty() {
                self.warnings.push(format!(
                    "container {}: {reason}; JVM flags not injected (set {TOOL_OPTIONS} as a literal env value to let jvm-guard merge into it)",
                    self.container.name
                ));
            }
        }

        self.apply_env(&options, &edits.tokens, edits.prepend_env);
        self.probes();
        let mut uses = edits.uses;
        uses.tools |= self.ulimits();
        if uses.tools {
            self.patch.append(
                self.path("volumeMounts"),
                self.container.volume_mounts.is_some() || uses.dump,
                vec![to_value(&tools::mount())],
            );
        }
        uses
    }

    /// Env edits in an order whose indices stay valid: the in-place replace first, then the
    /// append, then the inserts at the front.
    fn apply_env(&mut self, options: &ToolOptions<'_>, tokens: &[String], prepend: Vec<EnvVar>) {
        let env_path = self.path("env");
        let mut append: Vec<EnvVar> = Vec::new();
        let mut replace: Option<(usize, String)> = None;
        match options {
            _ if tokens.is_empty() => {}
            ToolOptions::Literal { index, value } => {
                replace = Some((*index, jvm::merge_tool_options(tokens, Some(value))))
            }
            ToolOptions::Absent => append.push(EnvVar {
                name: TOOL_OPTIONS.to_string(),
                value: Some(jvm::merge_tool_options(tokens, None)),
                value_from: None,
            }),
            // No feature gathers tokens for opaque options (see `gate`).
            ToolOptions::Opaque(_) => {}
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
}
