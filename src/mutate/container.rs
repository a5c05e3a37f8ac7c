//! One target container: the driver gathers its facts, asks each feature for its decision
//! (`memory`, `dumps`, `jvm`, `tools`, `probes`), merges them and writes the patch once.

use k8s_openapi::api::core::v1::{EnvVar, VolumeMount};
use serde::Serialize;

use super::decision::{Decision, EnvEdits, Outcome, Uses};
use super::env::{EnvSources, EnvView, VarState};
use super::facts::{Facts, PodFacts};
use super::image::ImageConfig;
use super::patch::{pointer, PatchBuilder, Pointer};
use super::pod::Container;
use super::status::ContainerStatus;
use super::targets::Why;
use super::{dumps, jdk, jvm, launcher, memory, probes, tools};
use crate::config::profiles::Profile;
use crate::config::AgentMode;
use crate::config::Warnings;
use crate::options::{self, agent_env, UserFlags, USER_OPTION_VARS};

/// A target container of a planned pod.
pub(super) struct Target<'a> {
    pub index: usize,
    pub container: &'a Container,
    pub why: Why,
    /// The registry's answer for the container's image, when it was looked up.
    pub image: Option<Result<&'a ImageConfig, &'a str>>,
    pub pod: &'a PodFacts<'a>,
    /// The ConfigMaps and Secrets the caller knows.
    pub sources: &'a EnvSources,
}

/// Every feature for one target: its status, and what it uses of the pod-level parts.
pub(super) fn run(
    target: &Target<'_>,
    patch: &mut PatchBuilder,
    warnings: &mut Warnings,
) -> (ContainerStatus, Uses) {
    let facts = facts(target);
    // Memory first: its flags precede the others, and its heap is what a dump can reach.
    let memory = memory::decide(&facts);
    let mut jvm = Decision::merge(
        [
            memory.decision,
            dumps::decide(&facts, memory.heap_max),
            jvm::exit_on_oom(&facts),
            jvm::jvm_options(&facts),
        ]
        .map(|d| jdk::fit(&facts, d)),
    );
    jvm = launcher::fit(&facts.launch, facts.name(), jvm);
    jvm.warnings.extend(jvm::not_injected(&facts, &jvm));
    let start = tools::start(&facts, &jvm);
    let started = start.command.is_some();
    let mut status = ContainerStatus {
        jvm: Some(target.why.as_str().to_string()),
        profile: facts.profile.map(|p| p.name.clone()),
        via: facts.options_var.as_ref().ok().map(|v| v.to_string()),
        ..ContainerStatus::default()
    };
    if let Some((var, _)) = &jvm.env.memory {
        status.memory_via = Some(var.clone()).filter(|v| status.via.as_ref() != Some(v));
    }
    if started {
        let mode = facts.config().agent;
        status.agent = Some(mode.name().to_string());
        if mode == AgentMode::Supervise {
            status.verdict = Some(match tools::termination_log(facts.container) {
                Ok(path) => path,
                Err(why) => format!("none: {why}"),
            });
        }
    }
    if jvm.env.has_flags() || jvm.uses.dump {
        let merge = if started { "agent" } else { "admission" };
        status.merge = Some(merge.to_string());
    }
    if let (true, Ok(var)) = (started, facts.options_var.as_ref()) {
        let env = std::mem::take(&mut jvm.env);
        jvm.env = tools::agent_env(&facts, var, env, jvm.uses.dump);
    }
    let decision = Decision::merge([jvm, probes::decide(&facts), start]);
    write(&facts, target.index, &decision, patch);
    for (feature, outcome) in &decision.outcomes {
        match outcome {
            Outcome::Applied => status.applied(*feature),
            Outcome::Unverified { reason } => status.unverified(*feature, reason.clone()),
            Outcome::Skipped { reason } => status.skipped(*feature, reason.clone()),
        }
    }
    for warning in decision.warnings {
        warnings.push(warning);
    }
    (status, decision.uses)
}

/// What the features know of `target`: its launcher, where its flags go, what it sets
/// itself, and whether the agent starts it.
pub(super) fn facts<'a>(target: &Target<'a>) -> Facts<'a> {
    let (container, pod) = (target.container, target.pod);
    let config = &pod.config;
    let image = target.image.and_then(Result::ok);
    let env = EnvView::with_image(container, target.sources, image);
    let profile = launcher::select(container, &env, &config.profile, &pod.profiles);
    let options_var = launcher::options_var(profile);
    let tools = tools::reach(&pod.tools, container);
    let command = tools::agent_command(
        container,
        target.image,
        &tools,
        config.agent,
        config.limits(),
    );
    let jvm_wanted = options_var.is_ok() && config.jvm_flags_on();
    let agent = command.is_ok() && (jvm_wanted || config.ulimits.is_on());
    let options = options_var.clone().map(|v| env.var(v));
    let places = places(&env, profile, options_var.as_deref().ok());
    let jdk = jdk::known(container, &env);
    let launch = launcher::launch(&env, profile);
    Facts {
        user: UserFlags::new(places.iter().map(|(_, text)| text.as_str())),
        container,
        pod,
        env,
        profile,
        options_var,
        options,
        places,
        tools,
        command,
        agent,
        launch,
        jdk,
        limit: memory::memory_limit(container).ok().flatten(),
    }
}

/// Every place the JVM reads flags from, with its known value.
fn places(
    env: &EnvView<'_>,
    profile: Option<&Profile>,
    options: Option<&str>,
) -> Vec<(String, String)> {
    // The variables the JVM or a known launcher reads first, in that order; then every other
    // variable the container sets (pod spec, known sources, image Env): a launcher may put any
    // of them on the java command line (docs/design.md#memory).
    let mut first: Vec<&str> = USER_OPTION_VARS.to_vec();
    // Ours, from an earlier mutation: the agent merges them at start.
    first.extend([agent_env::OPTIONS, agent_env::MEMORY_OPTIONS]);
    first.extend(options);
    if let Some(p) = profile {
        first.extend(p.options.as_deref());
        first.extend(p.also_options.iter().map(String::as_str));
        first.extend(p.heap.vars.iter().map(String::as_str));
        first.extend(p.heap.memory_var.as_deref());
    }
    let values = env.values();
    let mut seen =
        foldhash::HashSet::with_capacity_and_hasher(first.len() + values.len(), Default::default());
    let mut places: Vec<(String, String)> = Vec::with_capacity(values.len() + 1);
    for var in first {
        if !seen.insert(var) {
            continue;
        }
        if let Some(value) = env.var(var).value().filter(|v| !v.trim().is_empty()) {
            places.push((var.to_string(), value.to_string()));
        }
    }
    let keep: Vec<bool> = (values.iter())
        .map(|(var, value)| !value.trim().is_empty() && seen.insert(var.as_str()))
        .collect();
    drop(seen);
    let kept = values.into_iter().zip(keep).filter(|(_, keep)| *keep);
    places.extend(kept.map(|(place, _)| place));
    let argv: Vec<&str> = env.argv().into_iter().map(String::as_str).collect();
    if !argv.is_empty() {
        places.push(("the command".to_string(), argv.join(" ")));
    }
    places
}

/// Writes a container's decision: its mounts (the tools' too, when it uses them), env, probes
/// and command.
fn write(facts: &Facts<'_>, index: usize, d: &Decision, patch: &mut PatchBuilder) {
    let container = facts.container;
    let at = pointer(["spec", "containers"]).child(index);
    let path = |field: &str| at.child(field);
    let tools = d.uses.tools.then(tools::mount);
    let mounts: Vec<&VolumeMount> = d.mounts.iter().chain(&tools).collect();
    patch.append(
        &path("volumeMounts"),
        container.volume_mounts.is_some(),
        &mounts,
    );
    if let Ok(var) = facts.options_var {
        write_env(facts, var, path("env"), &d.env, patch);
    }
    for (field, probe) in &d.probes {
        patch.add(&path(field), probe);
    }
    if let Some(command) = &d.command {
        patch.add(&path("command"), &command.command);
        if let Some(args) = &command.args {
            patch.add(&path("args"), args);
        }
    }
}

/// Env edits in an order whose indices stay valid: the in-place edits first, then the
/// appends, then the inserts at the front. Our flags go to `options_var`, and to the
/// profile's other options variables.
fn write_env(
    facts: &Facts<'_>,
    options_var: &str,
    env_path: Pointer,
    edits: &EnvEdits,
    patch: &mut PatchBuilder,
) {
    let EnvEdits {
        tokens,
        memory,
        set_env,
        prepend_env: prepend,
    } = edits;
    let also = facts.profile.map(|p| p.also_options.as_slice());
    // Each variable with our tokens, memory first (they precede the other flags).
    let mut merges: Vec<(String, VarState, Vec<String>)> = Vec::new();
    if let Some((var, flags)) = memory {
        merges.push((var.clone(), facts.env.var(var), flags.clone()));
    }
    // Launchers that start several JVMs, each from its own variable, get the flags in each.
    let also = also.unwrap_or_default().iter();
    for var in also.filter(|_| !tokens.is_empty()) {
        match facts.env.var(var) {
            VarState::Opaque(_) => {}
            state => merges.push((var.clone(), state, tokens.clone())),
        }
    }
    if !tokens.is_empty() {
        match merges.iter_mut().find(|(var, _, _)| var == options_var) {
            Some((_, _, flags)) => flags.extend(tokens.iter().cloned()),
            None => merges.push((
                options_var.to_string(),
                facts.options.clone().unwrap_or(VarState::Absent),
                tokens.clone(),
            )),
        }
    }
    let mut append: Vec<EnvVar> = Vec::new();
    let mut in_place: Vec<(Pointer, InPlace, bool)> = Vec::new();
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
                let path = env_path.child(*index).child("value");
                let merged = options::merge(&flags, Some(value));
                in_place.push((path, InPlace::Value(merged), false));
            }
            // A valueFrom whose source is known: the merged literal replaces the reference.
            VarState::Known {
                index: Some(index),
                value,
            } => in_place.push((
                env_path.child(*index),
                InPlace::Var(Box::new(literal(Some(value)))),
                true,
            )),
            // Through envFrom: an env entry wins over it.
            VarState::Known { index: None, value } => append.push(literal(Some(value))),
            VarState::Absent => append.push(literal(None)),
            VarState::Opaque(_) => {}
        }
    }
    append.extend(set_env.iter().cloned());
    if facts.container.env.is_none() {
        let all: Vec<&EnvVar> = prepend.iter().chain(&append).collect();
        patch.append(&env_path, false, &all);
        return;
    }
    for (path, value, replace) in &in_place {
        if *replace {
            patch.replace(path, value);
        } else {
            patch.add(path, value);
        }
    }
    patch.append(&env_path, true, &append);
    patch.prepend_existing(&env_path, prepend);
}

/// What an env edit writes in place: a literal's merged value, or a whole variable.
#[derive(Serialize)]
#[serde(untagged)]
enum InPlace {
    Value(String),
    Var(Box<EnvVar>),
}

#[cfg(test)]
mod tests {
    use crate::mutate::pod::Pod;
    use rstest::rstest;
    use serde_json::{json, Value};

    use crate::config::{Defaults, Feature, NamespaceConfig, ServerSettings};
    use crate::mutate::status::ContainerStatus;
    use crate::mutate::testing::pod;

    /// The mutated container, and its status.
    fn mutated(container: Value) -> (Value, ContainerStatus) {
        let input = pod(json!({}), container);
        let typed: Pod = serde_json::from_value(input.clone()).unwrap();
        let ns = NamespaceConfig::new("shop", None, &Defaults::default());
        let settings = ServerSettings {
            tools_image: Some("tools:1".into()),
            ..ServerSettings::default()
        };
        let m = crate::mutate::mutate(&typed, &ns, &settings);
        let mut doc = input;
        m.patch.apply(&mut doc).unwrap();
        let status = m.status.unwrap().containers["a"].clone();
        (doc["spec"]["containers"][0].clone(), status)
    }

    fn env(container: &Value, name: &str) -> Option<String> {
        let vars = container["env"].as_array()?;
        let var = vars.iter().find(|e| e["name"] == name)?;
        var["value"].as_str().map(str::to_string)
    }

    #[test]
    fn memory_flags_come_first_and_the_user_s_last() {
        let c = json!({
            "name": "a", "image": "eclipse-temurin:21-jre",
            "env": [{"name": "JAVA_TOOL_OPTIONS", "value": "-Dapp=1"}],
            "resources": {"limits": {"memory": "1Gi"}},
        });
        let (c, status) = mutated(c);
        let value = env(&c, "JAVA_TOOL_OPTIONS").unwrap();
        assert!(
            value.starts_with("-XX:MaxRAMPercentage=62.0 -XX:MinRAMPercentage=62.0 -XX:+HeapDumpOnOutOfMemoryError "),
            "{value}"
        );
        assert!(
            value.ends_with(" -XX:+ExitOnOutOfMemoryError -Dapp=1"),
            "{value}"
        );
        assert_eq!(status.merge.as_deref(), Some("admission"));
        assert_eq!(status.via.as_deref(), Some("JAVA_TOOL_OPTIONS"));
        assert_eq!(env(&c, "JVM_GUARD_DUMP_DIR").as_deref(), Some("/dumps"));
    }

    #[rstest]
    // Without a command (and no image config) nobody knows what sets the dump path: unverified.
    #[case::admission(json!({"name": "a", "image": "corp/app:1"}), "admission", false, &["dump-rotation", "exit-on-oom"])]
    #[case::agent(json!({"name": "a", "image": "corp/app:1", "command": ["java", "-jar", "app.jar"]}), "agent", true, &["heap-dump", "dump-rotation", "exit-on-oom"])]
    fn where_the_flags_are_merged(
        #[case] container: Value,
        #[case] merge: &str,
        #[case] agent: bool,
        #[case] expected: &[&str],
    ) {
        let (c, status) = mutated(container);
        assert_eq!(status.merge.as_deref(), Some(merge));
        let command = c["command"][0].as_str().unwrap_or_default();
        assert_eq!(command == "/jvm-guard/bin/jvm-guard", agent, "{c}");
        // The agent gets the flags in its own variables; admission merges them.
        assert_eq!(env(&c, "JVM_GUARD_JAVA_OPTIONS").is_some(), agent, "{c}");
        assert_eq!(env(&c, "JAVA_TOOL_OPTIONS").is_some(), !agent, "{c}");
        let applied: Vec<&str> = status.applied.iter().map(|f| f.name()).collect();
        assert_eq!(applied, expected);
        assert_eq!(
            status.unverified.contains_key(&Feature::HeapDump),
            !agent,
            "{status:?}"
        );
    }

    #[test]
    fn memory_in_the_launcher_s_variable_is_reported() {
        let c = json!({
            "name": "a", "image": "confluentinc/cp-schema-registry:7.6.0",
            "resources": {"limits": {"memory": "1Gi"}},
        });
        let (c, status) = mutated(c);
        assert_eq!(
            status.memory_via.as_deref(),
            Some("SCHEMA_REGISTRY_HEAP_OPTS")
        );
        // No agent and no JDK the image name says: an -Xmx every JDK takes, unverified.
        assert_eq!(
            env(&c, "SCHEMA_REGISTRY_HEAP_OPTS").as_deref(),
            Some("-Xmx634m")
        );
        assert_eq!(
            status.unverified[&Feature::Memory],
            "the JDK is not known at admission and no agent starts the container: memory as -Xmx634m from the 1024 MiB limit"
        );
        assert!(!status.applied.contains(&Feature::Memory));
    }

    #[test]
    fn nothing_to_merge_reports_no_merge() {
        let c = json!({"name": "a", "image": "corp/app:1"});
        let off = json!({"jvm-guard.io/heap-dump": "false", "jvm-guard.io/exit-on-oom": "false"});
        let input: Pod = serde_json::from_value(pod(off, c)).unwrap();
        let ns = NamespaceConfig::new("shop", None, &Defaults::default());
        let m = crate::mutate::mutate(&input, &ns, &ServerSettings::default());
        let status = &m.status.unwrap().containers["a"];
        assert_eq!(status.merge, None);
        assert_eq!(
            status.skipped[&crate::config::Feature::Memory],
            "no memory limit"
        );
    }
}
