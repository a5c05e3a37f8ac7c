//! The tools: the init container copying the static jvm-guard binary into an emptyDir that the
//! targets mount read-only, and the ulimits feature that wraps the entrypoint in `exec`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::OnceLock;

use k8s_openapi::api::core::v1::{
    Capabilities, Container as InitContainer, EmptyDirVolumeSource, EnvVar, ResourceRequirements,
    SeccompProfile, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::decision::{Command, Decision, EnvEdits};
use super::facts::Facts;
use super::image::ImageConfig;
use super::parts::{tools_container_collision, TOOLS_VOLUME};
use super::patch::{raw, Raw};
use super::pod::Container;
use crate::config::rlimit::{Resource, Rlimit};
use crate::config::{AgentMode, Feature, Switch};
use crate::options::{AgentEnv, Dumps};

pub use super::parts::{IMAGE_BINARY, INIT_CONTAINER, TOKEN_DIR, TOOLS_BINARY, TOOLS_DIR};

fn quantities(cpu: &str, memory: &str) -> BTreeMap<String, Quantity> {
    [("cpu", cpu), ("memory", memory)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
        .collect()
}

/// The pod-level parts, encoded: the init container and the tools volume.
#[derive(Debug, Clone)]
pub struct PodParts {
    image: String,
    init_container: Box<Raw>,
    volume: Box<Raw>,
}

impl PodParts {
    fn new(image: &str) -> PodParts {
        PodParts {
            image: image.to_string(),
            init_container: raw(&init_container(image)),
            volume: raw(&volume()),
        }
    }

    pub fn init_container(&self) -> &Raw {
        &self.init_container
    }

    pub fn volume(&self) -> &Raw {
        &self.volume
    }
}

/// The pod-level parts, encoded once per tools image (one per server), not per pod.
pub fn pod_parts(image: &str) -> Cow<'static, PodParts> {
    static BUILT: OnceLock<PodParts> = OnceLock::new();
    let built = BUILT.get_or_init(|| PodParts::new(image));
    if built.image == image {
        Cow::Borrowed(built)
    } else {
        Cow::Owned(PodParts::new(image)) // another tools image: tests only
    }
}

/// Small (requests equal to limits, so LimitRange ratios pass), compliant with the Pod Security
/// "restricted" profile, non-root as the image's numeric user (no fixed `runAsUser`, which
/// OpenShift's restricted SCC refuses), and without the API token (SPEC §4.4).
pub fn init_container(image: &str) -> InitContainer {
    InitContainer {
        name: INIT_CONTAINER.to_string(),
        image: Some(image.to_string()),
        command: Some(vec![
            IMAGE_BINARY.to_string(),
            "install-tools".to_string(),
            TOOLS_DIR.to_string(),
        ]),
        resources: Some(ResourceRequirements {
            requests: Some(quantities("100m", "64Mi")),
            limits: Some(quantities("100m", "64Mi")),
            ..ResourceRequirements::default()
        }),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_string()]),
                add: None,
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_string(),
                localhost_profile: None,
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount {
                name: TOOLS_VOLUME.to_string(),
                mount_path: TOOLS_DIR.to_string(),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: TOOLS_VOLUME.to_string(),
                mount_path: TOKEN_DIR.to_string(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
        ]),
        ..InitContainer::default()
    }
}

pub fn volume() -> Volume {
    Volume {
        name: TOOLS_VOLUME.to_string(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: Some(Quantity("64Mi".to_string())),
            ..EmptyDirVolumeSource::default()
        }),
        ..Volume::default()
    }
}

pub fn mount() -> VolumeMount {
    VolumeMount {
        name: TOOLS_VOLUME.to_string(),
        mount_path: TOOLS_DIR.to_string(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

/// Whether the tools can reach `container`, else why not: the pod's `tools` (its image, or
/// why the pod cannot take them) and what the container mounts.
pub fn reach(tools: &Result<String, String>, container: &Container) -> Result<(), String> {
    tools.as_ref().map_err(String::clone)?;
    match tools_container_collision(container) {
        None => Ok(()),
        Some(reason) => Err(reason),
    }
}

/// The container's new `command` (and `args`, when they must be set) running it under the
/// rlimit wrapper, following Kubernetes semantics: a `command` replaces the ENTRYPOINT and
/// drops the CMD; `args` replace the CMD. Without `command` the image's must be known
/// (`image`, from a registry lookup); `Err` says why it is not. Empty lists count as absent,
/// as the container runtime reads them.
pub fn wrapped_command(
    container: &Container,
    image: Option<&ImageConfig>,
    mode: AgentMode,
    limits: &[Rlimit],
) -> Result<(Vec<String>, Option<Vec<String>>), String> {
    let mut command = vec![TOOLS_BINARY.to_string(), "exec".to_string()];
    if mode == AgentMode::Supervise {
        command.push("--supervise".to_string());
        if let Ok(path) = termination_log(container) {
            command.push("--termination-log".to_string());
            command.push(path);
        }
    }
    for limit in limits {
        command.push("--rlimit".to_string());
        command.push(limit.to_string());
    }
    command.push("--".to_string());
    match (&container.command, image) {
        (Some(original), _) if !original.is_empty() => {
            command.extend(original.iter().cloned());
            Ok((command, None))
        }
        (_, Some(image)) => {
            let has_args = container.args.as_ref().is_some_and(|a| !a.is_empty());
            if image.entrypoint.is_empty() && image.cmd.is_empty() && !has_args {
                return Err(
                    "the image has neither ENTRYPOINT nor CMD, and there is no command or args"
                        .to_string(),
                );
            }
            command.extend(image.entrypoint.iter().map(|a| escape_expansion(a)));
            // With our command set, the runtime no longer adds the image CMD: args carry it.
            let args = (!has_args && !image.cmd.is_empty())
                .then(|| image.cmd.iter().map(|a| escape_expansion(a)).collect());
            Ok((command, args))
        }
        (_, None) => Err(
            "no command, and the image ENTRYPOINT is unknown; set command to wrap it".to_string(),
        ),
    }
}

/// The kubelet's default `terminationMessagePath`.
pub const DEFAULT_TERMINATION_LOG: &str = "/dev/termination-log";

/// The termination-message file the supervising agent keeps its sample and verdict in, or why
/// it leaves it alone: only the default file read with the default policy `File` (the apiserver
/// fills both in before admission). A path of its own, or `FallbackToLogsOnError`, says the
/// application has a use for the message.
pub fn termination_log(container: &Container) -> Result<String, String> {
    match container.termination_message_policy.as_deref() {
        None | Some("File") => {}
        Some(policy) => return Err(format!("terminationMessagePolicy is {policy}")),
    }
    match container.termination_message_path.as_deref() {
        None | Some(DEFAULT_TERMINATION_LOG) => Ok(DEFAULT_TERMINATION_LOG.to_string()),
        Some(path) => Err(format!(
            "terminationMessagePath is the application's {path}"
        )),
    }
}

/// `arg` as the kubelet must read it to pass `arg` on: in `command` and `args` it expands
/// `$(VAR)` and turns `$$` into `$`, which the image's ENTRYPOINT and CMD never went through.
pub fn escape_expansion(arg: &str) -> String {
    arg.replace('$', "$$")
}

/// The agent's command for a container: its entrypoint under `jvm-guard exec` in `mode`, with
/// `limits`;
/// `Err` says why the entrypoint is unknown (`image` is the registry's answer, when asked) or
/// the tools cannot reach the container (`tools`, from [`reach`]).
pub fn agent_command(
    container: &Container,
    image: Option<Result<&ImageConfig, &str>>,
    tools: &Result<(), String>,
    mode: AgentMode,
    limits: &[Rlimit],
) -> Result<Command, String> {
    tools.clone()?;
    let has_command = container.command.as_ref().is_some_and(|c| !c.is_empty());
    let (command, args) = match image {
        Some(Err(why)) if !has_command => {
            return Err(format!(
                "no command, and the image ENTRYPOINT is unknown ({why}); set command to wrap it"
            ))
        }
        image => wrapped_command(container, image.and_then(Result::ok), mode, limits)?,
    };
    Ok(Command { command, args })
}

/// The agent-start feature, with ulimits: the agent starts the container when it can and
/// there is something for it to do (`jvm`, the JVM features' decision, has flags or a dump
/// directory, or there are limits to set); the ulimits are applied by it, or skipped with why
/// the entrypoint is unknown.
pub fn start(facts: &Facts<'_>, jvm: &Decision) -> Decision {
    let limits = facts.config().limits();
    let wanted = jvm.env.has_flags() || jvm.uses.dump || !limits.is_empty();
    let mut d = Decision::default();
    match &facts.command {
        Ok(command) if facts.agent && wanted => {
            if !limits.is_empty() {
                let user_namespace = facts.pod.spec.host_users == Some(false);
                if !user_namespace && limits.iter().any(|l| l.resource == Resource::Nproc) {
                    d.warn(format!(
                        "container {}: nproc limits the processes of the container's UID on the whole node, not in the container (set hostUsers: false for a user namespace)",
                        facts.name()
                    ));
                }
                d.apply(Feature::Ulimits);
            }
            d.command = Some(command.clone());
            d.uses.tools = true;
        }
        Ok(_) => {}
        Err(reason) if !limits.is_empty() => {
            d.warn(format!(
                "container {}: {reason}; ulimits not applied",
                facts.name()
            ));
            d.skip(Feature::Ulimits, reason.clone());
        }
        Err(_) => {}
    }
    if matches!(facts.config().ulimits, Switch::Invalid) {
        d.skip(Feature::Ulimits, "invalid configuration");
    }
    d
}

/// The agent's instructions, when it starts the container: the flags of `edits` leave for its
/// environment, to be merged at start into `var` (and the profile's other options variables)
/// as the process really has them; `dump` says whether the container got the dump directory.
pub fn agent_env(facts: &Facts<'_>, var: &str, edits: EnvEdits, dump: bool) -> EnvEdits {
    let EnvEdits {
        tokens: mut options,
        mut memory,
        mut set_env,
        prepend_env,
    } = edits;
    if let Some((memory_var, flags)) = &memory {
        if memory_var == var {
            options.splice(0..0, flags.iter().cloned());
            memory = None;
        }
    }
    let mut vars = vec![var.to_string()];
    if !options.is_empty() {
        let also = facts.profile.map(|p| p.also_options.as_slice());
        let also = also.unwrap_or_default().iter();
        vars.extend(also.filter(|v| v.as_str() != var).cloned());
    }
    let dumps = match (&facts.pod.dump, dump) {
        (Ok(cfg), true) => Some(Dumps {
            dir: cfg.mount_path.clone(),
            keep: cfg.keep,
            container: facts.name().to_string(),
        }),
        _ => None,
    };
    let agent = AgentEnv {
        options,
        vars,
        memory,
        heap_vars: facts
            .profile
            .map(|p| p.heap.vars.clone())
            .unwrap_or_default(),
        dumps,
    };
    set_env.extend(agent.to_env().into_iter().map(|(name, value)| EnvVar {
        name: name.to_string(),
        value: Some(value),
        value_from: None,
    }));
    EnvEdits {
        tokens: Vec::new(),
        memory: None,
        set_env,
        prepend_env,
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;
    use serde_json::{json, Value};

    use super::*;
    use crate::mutate::decision::Outcome;
    use crate::mutate::testing::{pod, with_facts};
    use crate::options::agent_env;

    const ULIMITS: &str = "jvm-guard.io/ulimits";

    fn skipped(reason: &str) -> Vec<(Feature, Outcome)> {
        let reason = reason.to_string();
        vec![(Feature::Ulimits, Outcome::Skipped { reason })]
    }

    #[rstest]
    #[case::started_with_limits(
        json!({ULIMITS: "nofile=1024"}), json!({"name": "a", "command": ["java"]}), true, false,
        Some(vec![TOOLS_BINARY, "exec", "--supervise", "--termination-log", "/dev/termination-log", "--rlimit", "nofile=1024:1024", "--", "java"]),
        vec![(Feature::Ulimits, Outcome::Applied)], 0
    )]
    #[case::nproc_is_per_uid(
        json!({ULIMITS: "nproc=100"}), json!({"name": "a", "command": ["java"]}), true, false,
        Some(vec![TOOLS_BINARY, "exec", "--supervise", "--termination-log", "/dev/termination-log", "--rlimit", "nproc=100:100", "--", "java"]),
        vec![(Feature::Ulimits, Outcome::Applied)], 1
    )]
    #[case::started_for_the_flags(
        json!({}), json!({"name": "a", "command": ["java"]}), true, true,
        Some(vec![TOOLS_BINARY, "exec", "--supervise", "--termination-log", "/dev/termination-log", "--", "java"]), vec![], 0
    )]
    #[case::exec_mode(
        json!({"jvm-guard.io/agent": "exec"}), json!({"name": "a", "command": ["java"]}), true, true,
        Some(vec![TOOLS_BINARY, "exec", "--", "java"]), vec![], 0
    )]
    #[case::the_application_s_message(
        json!({}), json!({"name": "a", "command": ["java"], "terminationMessagePolicy": "FallbackToLogsOnError"}), true, true,
        Some(vec![TOOLS_BINARY, "exec", "--supervise", "--", "java"]), vec![], 0
    )]
    #[case::nothing_to_do(json!({}), json!({"name": "a", "command": ["java"]}), true, false, None, vec![], 0)]
    #[case::entrypoint_unknown(
        json!({ULIMITS: "nofile=1024"}), json!({"name": "a", "image": "corp/app:1"}), true, false, None,
        skipped("no command, and the image ENTRYPOINT is unknown; set command to wrap it"), 1
    )]
    #[case::no_tools(
        json!({ULIMITS: "nofile=1024"}), json!({"name": "a", "command": ["java"]}), false, false, None,
        skipped("no tools image is configured (--tools-image)"), 1
    )]
    #[case::tools_mounted_already(
        json!({ULIMITS: "nofile=1024"}),
        json!({"name": "a", "command": ["java"], "volumeMounts": [{"name": "bin", "mountPath": "/jvm-guard/bin"}]}),
        true, false, None, skipped("it already mounts bin at /jvm-guard/bin"), 1
    )]
    #[case::invalid(
        json!({ULIMITS: "nofile=lots"}), json!({"name": "a", "command": ["java"]}), true, false, None,
        skipped("invalid configuration"), 0
    )]
    fn the_agent_starts_the_container(
        #[case] annotations: Value,
        #[case] container: Value,
        #[case] tools: bool,
        #[case] flags: bool,
        #[case] command: Option<Vec<&str>>,
        #[case] outcomes: Vec<(Feature, Outcome)>,
        #[case] warnings: usize,
    ) {
        let mut jvm = Decision::default();
        if flags {
            jvm.env.tokens.push("-XX:+ExitOnOutOfMemoryError".into());
        }
        let d = with_facts(pod(annotations, container), tools, |f| start(f, &jvm));
        let got = d
            .command
            .as_ref()
            .map(|c| c.command.iter().map(String::as_str).collect());
        assert_eq!(got, command);
        assert_eq!(d.uses.tools, command.is_some());
        assert_eq!(d.outcomes, outcomes);
        assert_eq!(d.warnings.len(), warnings, "{:?}", d.warnings);
    }

    fn env(edits: &EnvEdits) -> Vec<(&str, &str)> {
        let vars = edits.set_env.iter();
        vars.map(|e| (e.name.as_str(), e.value.as_deref().unwrap_or_default()))
            .collect()
    }

    #[test]
    fn the_agent_gets_the_flags() {
        let tokens = |t: &[&str]| t.iter().map(|t| t.to_string()).collect::<Vec<_>>();
        // Memory flags in the options variable itself go first.
        let strimzi = pod(
            json!({}),
            json!({"name": "a", "image": "strimzi/operator:0.45"}),
        );
        let edits = EnvEdits {
            tokens: tokens(&["-XX:+ExitOnOutOfMemoryError"]),
            memory: Some(("JAVA_OPTS".into(), tokens(&["-XX:MaxRAMPercentage=62.0"]))),
            ..EnvEdits::default()
        };
        let out = with_facts(strimzi, true, |f| agent_env(f, "JAVA_OPTS", edits, false));
        assert!(!out.has_flags());
        assert_eq!(
            env(&out),
            [
                (
                    agent_env::OPTIONS,
                    "-XX:MaxRAMPercentage=62.0 -XX:+ExitOnOutOfMemoryError"
                ),
                (agent_env::OPTIONS_VAR, "JAVA_OPTS"),
            ]
        );
        // Elsewhere they keep their variable; the dump directory is the agent's to rotate.
        let kafka = pod(
            json!({}),
            json!({"name": "a", "image": "apache/kafka:3.9.0"}),
        );
        let edits = EnvEdits {
            tokens: tokens(&["-XX:+HeapDumpOnOutOfMemoryError"]),
            memory: Some((
                "KAFKA_HEAP_OPTS".into(),
                tokens(&["-XX:MaxRAMPercentage=62.0"]),
            )),
            ..EnvEdits::default()
        };
        let out = with_facts(kafka, true, |f| agent_env(f, "KAFKA_OPTS", edits, true));
        assert_eq!(
            env(&out),
            [
                (agent_env::OPTIONS, "-XX:+HeapDumpOnOutOfMemoryError"),
                (agent_env::OPTIONS_VAR, "KAFKA_OPTS"),
                (agent_env::MEMORY_OPTIONS, "-XX:MaxRAMPercentage=62.0"),
                (agent_env::MEMORY_VAR, "KAFKA_HEAP_OPTS"),
                (agent_env::HEAP_VARS, "KAFKA_HEAP_OPTS"),
                (agent_env::DUMP_DIR, "/dumps"),
                (agent_env::DUMP_KEEP, "3"),
                (agent_env::CONTAINER, "a"),
            ]
        );
    }

    #[rstest]
    #[case::defaults(None, None, Ok("/dev/termination-log"))]
    #[case::as_the_apiserver_fills_in(
        Some("File"),
        Some("/dev/termination-log"),
        Ok("/dev/termination-log")
    )]
    #[case::fallback(
        Some("FallbackToLogsOnError"),
        None,
        Err("terminationMessagePolicy is FallbackToLogsOnError")
    )]
    #[case::own_path(
        Some("File"),
        Some("/tmp/done"),
        Err("terminationMessagePath is the application's /tmp/done")
    )]
    fn the_termination_log_is_ours_only_by_default(
        #[case] policy: Option<&str>,
        #[case] path: Option<&str>,
        #[case] want: Result<&str, &str>,
    ) {
        let c = Container {
            termination_message_policy: policy.map(str::to_string),
            termination_message_path: path.map(str::to_string),
            ..Container::default()
        };
        let got = termination_log(&c);
        assert_eq!(got.as_deref().map_err(String::as_str), want);
    }

    fn container(command: Option<&[&str]>, args: Option<&[&str]>) -> Container {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        Container {
            name: "app".into(),
            command: command.map(strings),
            args: args.map(strings),
            ..Container::default()
        }
    }

    #[test]
    fn wraps_following_kubernetes_semantics() {
        let limits = vec!["nofile=65536".parse().unwrap()];
        let prefix = [TOOLS_BINARY, "exec", "--rlimit", "nofile=65536:65536", "--"];
        let image = ImageConfig {
            entrypoint: vec!["java".into()],
            cmd: vec!["-jar".into(), "app.jar".into()],
            ..ImageConfig::default()
        };
        let with = |c: &[&str]| {
            prefix
                .iter()
                .chain(c)
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
        };

        let c = container(Some(&["java", "-jar", "x.jar"]), Some(&["--port=1"]));
        assert_eq!(
            wrapped_command(&c, Some(&image), AgentMode::Exec, &limits).unwrap(),
            (with(&["java", "-jar", "x.jar"]), None)
        );

        let c = container(None, None);
        assert_eq!(
            wrapped_command(&c, Some(&image), AgentMode::Exec, &limits).unwrap(),
            (with(&["java"]), Some(vec!["-jar".into(), "app.jar".into()]))
        );

        let c = container(None, Some(&["-jar", "other.jar"]));
        assert_eq!(
            wrapped_command(&c, Some(&image), AgentMode::Exec, &limits).unwrap(),
            (with(&["java"]), None)
        );

        let c = container(None, Some(&[]));
        assert_eq!(
            wrapped_command(&c, Some(&image), AgentMode::Exec, &limits).unwrap(),
            (with(&["java"]), Some(vec!["-jar".into(), "app.jar".into()])),
            "empty args are absent: the image CMD still runs"
        );

        let cmd_only = ImageConfig {
            entrypoint: vec![],
            cmd: vec!["java".into(), "-jar".into(), "app.jar".into()],
            ..ImageConfig::default()
        };
        assert_eq!(
            wrapped_command(
                &container(None, None),
                Some(&cmd_only),
                AgentMode::Exec,
                &limits
            )
            .unwrap(),
            (
                with(&[]),
                Some(vec!["java".into(), "-jar".into(), "app.jar".into()])
            )
        );
        assert_eq!(
            wrapped_command(
                &container(None, Some(&["run.sh"])),
                Some(&cmd_only),
                AgentMode::Exec,
                &limits
            )
            .unwrap(),
            (with(&[]), None),
            "args replace the CMD and, without ENTRYPOINT, run as the program"
        );

        let entrypoint_only = ImageConfig {
            entrypoint: vec!["java".into()],
            cmd: vec![],
            ..ImageConfig::default()
        };
        assert_eq!(
            wrapped_command(
                &container(None, None),
                Some(&entrypoint_only),
                AgentMode::Exec,
                &limits
            )
            .unwrap(),
            (with(&["java"]), None),
            "no CMD, no args to set"
        );

        // The image's words reach the process as the image wrote them: `$` is escaped for
        // the kubelet's expansion, the container's own command is already in its terms.
        let shell = ImageConfig {
            entrypoint: vec!["sh".into(), "-c".into()],
            cmd: vec!["exec java $JAVA_OPTS -Dhome=$(HOME) -Dcost=$$5 -jar app.jar".into()],
            ..ImageConfig::default()
        };
        assert_eq!(
            wrapped_command(
                &container(None, None),
                Some(&shell),
                AgentMode::Exec,
                &limits
            )
            .unwrap(),
            (
                with(&["sh", "-c"]),
                Some(vec![
                    "exec java $$JAVA_OPTS -Dhome=$$(HOME) -Dcost=$$$$5 -jar app.jar".into()
                ])
            )
        );
        let own = container(Some(&["sh", "-c", "echo $(HOME)"]), None);
        assert_eq!(
            wrapped_command(&own, Some(&shell), AgentMode::Exec, &limits).unwrap(),
            (with(&["sh", "-c", "echo $(HOME)"]), None)
        );

        let nothing = ImageConfig::default();
        assert!(wrapped_command(
            &container(None, None),
            Some(&nothing),
            AgentMode::Exec,
            &limits
        )
        .is_err());
        assert!(wrapped_command(&container(None, None), None, AgentMode::Exec, &limits).is_err());
        // Supervised: the flags of the mode come first.
        let c = container(Some(&["java"]), None);
        assert_eq!(
            wrapped_command(&c, None, AgentMode::Supervise, &[])
                .unwrap()
                .0,
            [
                TOOLS_BINARY,
                "exec",
                "--supervise",
                "--termination-log",
                "/dev/termination-log",
                "--",
                "java"
            ]
        );
    }
}
