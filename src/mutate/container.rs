//! One target container through every feature: each feature is one method, in the module that
//! owns it; this driver gates them on their switch, gathers their JVM flags, and writes the env.

use k8s_openapi::api::core::v1::{Container, EnvVar};
use serde_json::Value;

use super::env::{EnvView, VarState};
use super::image::ImageCommand;
use super::jvm;
use super::launcher;
use super::patch::{pointer, to_value, PatchBuilder};
use super::plan::PodPlan;
use super::status::ContainerStatus;
use super::tools;
use crate::config::profiles::Profile;
use crate::config::{Feature, Switch, Warnings};
use crate::options::{self, agent_env, AgentEnv, Dumps, UserFlags, TOOL_OPTIONS, USER_OPTION_VARS};

/// What a container ended up using of the pod-level parts, so the pod gets the volumes and the
/// init container once.
#[derive(Default)]
pub(super) struct Uses {
    pub dump: bool,
    pub tools: bool,
}

/// What the JVM features of a container gathered: the env edits, written in one go, and what
/// they use of the pod.
#[derive(Default)]
pub(super) struct JvmEdits {
    pub env: EnvEdits,
    pub uses: Uses,
}

#[derive(Default)]
pub(super) struct EnvEdits {
    /// Our flags for the options variable, merged before the user's own.
    pub tokens: Vec<String>,
    /// Our memory flags, when they go to a variable of their own (the profile's memory
    /// variable, replacing the launcher's default heap).
    pub memory: Option<(String, Vec<String>)>,
    /// Variables set whole (a launcher's dump-directory variable).
    pub set_env: Vec<EnvVar>,
    /// Variables inserted at the front of the env (they must precede their users).
    pub prepend_env: Vec<EnvVar>,
}

pub(super) struct ContainerMutation<'a> {
    pub index: usize,
    pub container: &'a Container,
    /// The registry's answer for the container's image, when it was looked up.
    pub image: Option<Result<&'a ImageCommand, &'a str>>,
    pub pod: &'a PodPlan<'a>,
    /// The container's env, with the ConfigMaps and Secrets the caller knows.
    pub env: EnvView<'a>,
    pub patch: &'a mut PatchBuilder,
    pub warnings: &'a mut Warnings,
    pub status: ContainerStatus,
    /// Whether the agent starts the container (SPEC §4.4): then our flags are merged at start,
    /// into the environment the process really has, and what admission cannot read is no
    /// reason to skip.
    pub agent: bool,
}

/// The launcher facts the JVM features share.
pub(super) struct Jvm<'a> {
    pub profile: Option<&'a Profile>,
    /// The flags the container sets itself, wherever the JVM sees them.
    pub user: UserFlags,
    /// Each place the JVM reads flags from: a variable's name and value, or `the command`.
    pub places: Vec<(String, String)>,
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
        options: &Result<VarState, String>,
    ) -> Option<&'a T> {
        match (switch, options) {
            (Switch::Off, _) => None,
            (Switch::Invalid, _) => {
                self.skip(feature, "invalid configuration");
                None
            }
            // The agent reads the variable at start, whatever its source.
            (Switch::On(cfg), Ok(VarState::Opaque(_))) if self.agent => Some(cfg),
            (Switch::On(_), Err(reason) | Ok(VarState::Opaque(reason))) => {
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
            edits.env.tokens.extend(new);
        }
    }

    /// Every place the JVM reads flags from, with its known value.
    fn places(&self, profile: Option<&Profile>, options: Option<&str>) -> Vec<(String, String)> {
        let mut vars: Vec<&str> = USER_OPTION_VARS.to_vec();
        // Ours, from an earlier mutation: the agent merges them at start.
        vars.extend([agent_env::OPTIONS, agent_env::MEMORY_OPTIONS]);
        vars.extend(options);
        if let Some(p) = profile {
            vars.extend(p.options.as_deref());
            vars.extend(p.also_options.iter().map(String::as_str));
            vars.extend(p.heap.vars.iter().map(String::as_str));
            vars.extend(p.heap.memory_var.as_deref());
        }
        let mut places: Vec<(String, String)> = Vec::new();
        for var in vars {
            if places.iter().any(|(label, _)| label == var) {
                continue;
            }
            if let Some(value) = self.env.var(var).value().filter(|v| !v.trim().is_empty()) {
                places.push((var.to_string(), value.to_string()));
            }
        }
        let argv: Vec<&str> = self
            .container
            .command
            .iter()
            .flatten()
            .chain(self.container.args.iter().flatten())
            .map(String::as_str)
            .collect();
        if !argv.is_empty() {
            places.push(("the command".to_string(), argv.join(" ")));
        }
        places
    }

    /// Applies every feature to the container; returns what it uses of the pod-level parts.
    pub fn run(&mut self) -> Uses {
        let config = &self.pod.config;
        let profile = launcher::select(
            self.container,
            &self.env,
            &config.profile,
            &self.pod.profiles,
        );
        let options_var = launcher::options_var(profile);
        let limits = config.limits();
        let agent_command = self.agent_command(limits);
        let jvm_wanted = options_var.is_ok() && config.jvm_flags_on();
        self.agent = agent_command.is_ok() && (jvm_wanted || config.ulimits.is_on());
        self.status.profile = profile.map(|p| p.name.clone());
        self.status.via = options_var.as_ref().ok().map(|v| v.to_string());
        let options = options_var.clone().map(|v| self.env.var(v));
        let places = self.places(profile, options_var.as_deref().ok());
        let jvm = Jvm {
            profile,
            user: UserFlags::new(places.iter().map(|(_, text)| text.as_str())),
            places,
        };
        let user = &jvm.user;
        let mut edits = JvmEdits::default();

        let mut heap_max = None;
        if let Some(cfg) = self.gate(Feature::Memory, &config.memory, &options) {
            let memory = self.memory(cfg, &jvm);
            heap_max = memory.heap_max;
            match memory.flags {
                None => {}
                Some((flags, None)) => self.add_flags(Feature::Memory, flags, user, &mut edits),
                Some((flags, Some(var))) => match self.env.var(&var) {
                    VarState::Opaque(reason) if !self.agent => self.skip(Feature::Memory, reason),
                    _ => {
                        self.status.applied(Feature::Memory);
                        if self.status.via.as_deref() != Some(var.as_str()) {
                            self.status.memory_via = Some(var.clone());
                        }
                        edits.env.memory = Some((var, flags));
                    }
                },
            }
        }
        if self
            .gate(Feature::HeapDump, &config.heap_dump, &options)
            .is_some()
        {
            self.heap_dump(&jvm, heap_max, &mut edits);
        }
        if self
            .gate(Feature::ExitOnOom, &config.exit_on_oom, &options)
            .is_some()
        {
            self.add_flags(
                Feature::ExitOnOom,
                jvm::exit_on_oom_flags(),
                user,
                &mut edits,
            );
        }
        if let Some(tokens) = self.gate(Feature::JvmOptions, &config.jvm_options, &options) {
            self.add_flags(Feature::JvmOptions, tokens.clone(), user, &mut edits);
        }
        let name = &self.container.name;
        match &options {
            _ if self.status.skipped.is_empty() || self.agent => {}
            Err(reason) => self.warnings.push(format!(
                "container {name}: {reason}; JVM flags not injected"
            )),
            Ok(VarState::Opaque(reason)) => {
                let var = options_var.as_deref().unwrap_or(TOOL_OPTIONS);
                self.warnings.push(format!(
                    "container {name}: {reason}; JVM flags not injected (set {var} as a literal env value to let jvm-guard merge into it)"
                ));
            }
            Ok(_) => {}
        }

        let has_edits = !edits.env.tokens.is_empty() || edits.env.memory.is_some();
        let wanted = has_edits || edits.uses.dump || !limits.is_empty();
        // The agent's command, or why the entrypoint is unknown (what ulimits then report).
        let (started, unknown) = match agent_command {
            Ok(command) if self.agent && wanted => (Some(command), None),
            Ok(_) => (None, None),
            Err(reason) => (None, Some(reason)),
        };
        if let Ok(var) = options_var {
            let also = profile
                .map(|p| p.also_options.as_slice())
                .unwrap_or_default();
            if started.is_some() {
                let agent = self.agent_env(var, also, profile, &mut edits);
                edits
                    .env
                    .set_env
                    .extend(agent.to_env().into_iter().map(|(name, value)| EnvVar {
                        name: name.to_string(),
                        value: Some(value),
                        value_from: None,
                    }));
            }
            if let (None, true, Ok(cfg)) = (&started, edits.uses.dump, &self.pod.dump) {
                // What `inspect` lists; the agent's instructions carry it otherwise.
                edits.env.set_env.push(EnvVar {
                    name: agent_env::DUMP_DIR.to_string(),
                    value: Some(cfg.mount_path.clone()),
                    value_from: None,
                });
            }
            if has_edits || edits.uses.dump {
                self.status.merge = Some(
                    if started.is_some() {
                        "agent"
                    } else {
                        "admission"
                    }
                    .to_string(),
                );
            }
            self.apply_env(var, options.as_ref().ok(), also, edits.env);
        }
        self.probes(profile);
        let mut uses = edits.uses;
        match started {
            Some((command, args)) => {
                self.start(command, args, limits);
                uses.tools = true;
            }
            None => {
                if let (false, Some(reason)) = (limits.is_empty(), unknown) {
                    self.warnings.push(format!(
                        "container {}: {reason}; ulimits not applied",
                        self.container.name
                    ));
                    self.skip(Feature::Ulimits, reason);
                }
            }
        }
        if matches!(config.ulimits, Switch::Invalid) {
            self.skip(Feature::Ulimits, "invalid configuration");
        }
        if uses.tools {
            self.patch.append(
                self.path("volumeMounts"),
                self.container.volume_mounts.is_some() || uses.dump,
                vec![to_value(&tools::mount())],
            );
        }
        uses
    }

    /// The agent's instructions (SPEC §4.4): the edits' flags leave for its environment, to be
    /// merged at start into `var` (and `also`) as the process really has them.
    fn agent_env(
        &self,
        var: &str,
        also: &[String],
        profile: Option<&Profile>,
        edits: &mut JvmEdits,
    ) -> AgentEnv {
        let mut options = std::mem::take(&mut edits.env.tokens);
        let mut memory = edits.env.memory.take();
        if let Some((memory_var, flags)) = &memory {
            if memory_var == var {
                options.splice(0..0, flags.iter().cloned());
                memory = None;
            }
        }
        let mut vars = vec![var.to_string()];
        if !options.is_empty() {
            vars.extend(also.iter().filter(|v| v.as_str() != var).cloned());
        }
        let dumps = match (&self.pod.dump, edits.uses.dump) {
            (Ok(cfg), true) => Some(Dumps {
                dir: cfg.mount_path.clone(),
                keep: cfg.keep,
                container: self.container.name.clone(),
            }),
            _ => None,
        };
        AgentEnv {
            options,
            vars,
            memory,
            heap_vars: profile.map(|p| p.heap.vars.clone()).unwrap_or_default(),
            dumps,
        }
    }

    /// Env edits in an order whose indices stay valid: the in-place edits first, then the
    /// appends, then the inserts at the front.
    fn apply_env(
        &mut self,
        options_var: &str,
        options: Option<&VarState>,
        also: &[String],
        env: EnvEdits,
    ) {
        let EnvEdits {
            tokens,
            memory,
            set_env,
            prepend_env: prepend,
        } = env;
        // Each variable with our tokens, memory first (they precede the other flags).
        let mut merges: Vec<(String, VarState, Vec<String>)> = Vec::new();
        if let Some((var, flags)) = memory {
            let state = self.env.var(&var);
            merges.push((var, state, flags));
        }
        // Launchers that start several JVMs, each from its own variable, get the flags in each.
        for var in also.iter().filter(|_| !tokens.is_empty()) {
            match self.env.var(var) {
                VarState::Opaque(_) => {}
                state => merges.push((var.clone(), state, tokens.clone())),
            }
        }
        if !tokens.is_empty() {
            match merges.iter_mut().find(|(var, _, _)| var == options_var) {
                Some((_, _, flags)) => flags.extend(tokens),
                None => merges.push((
                    options_var.to_string(),
                    options.cloned().unwrap_or(VarState::Absent),
                    tokens,
                )),
            }
        }
        let env_path = self.path("env");
        let mut append: Vec<EnvVar> = Vec::new();
        let mut in_place: Vec<(jsonptr::PointerBuf, Value, bool)> = Vec::new();
        for (name, state, flags) in merges {
            let literal = |value: Option<&str>| EnvVar {
                name: name.clone(),
                value: Some(options::merge(&flags, value)),
                value_from: None,
            };
            match &state {
                VarState::Literal { index, value } => {
                    // `add`, not `replace`: the apiserver omits an empty `value`, so the key
                    // may be absent.
                    let path = env_path
                        .with_trailing_token(*index)
                        .with_trailing_token("value");
                    let merged = options::merge(&flags, Some(value));
                    in_place.push((path, Value::String(merged), false));
                }
                // A valueFrom whose source is known: the merged literal replaces the reference.
                VarState::Known {
                    index: Some(index),
                    value,
                } => in_place.push((
                    env_path.with_trailing_token(*index),
                    to_value(&literal(Some(value))),
                    true,
                )),
                // Through envFrom: an env entry wins over it.
                VarState::Known { index: None, value } => append.push(literal(Some(value))),
                VarState::Absent => append.push(literal(None)),
                VarState::Opaque(_) => {}
            }
        }
        append.extend(set_env);
        if self.container.env.is_none() {
            let all: Vec<Value> = prepend.iter().chain(&append).map(to_value).collect();
            if !all.is_empty() {
                self.patch.add(env_path, Value::Array(all));
            }
            return;
        }
        for (path, value, replace) in in_place {
            if replace {
                self.patch.replace(path, value);
            } else {
                self.patch.add(path, value);
            }
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
