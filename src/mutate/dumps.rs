//! The heap-dump feature, whole: the dump volume (one directory per container of each pod,
//! `subPathExpr: $(JVM_GUARD_POD_NAME)/<container>`, outliving the container), its JVM flags
//! and the rotation hook.

use k8s_openapi::api::core::v1::{
    EmptyDirVolumeSource, EnvVar, EnvVarSource, HostPathVolumeSource, ObjectFieldSelector,
    PersistentVolumeClaimVolumeSource, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;

use super::decision::Decision;
use super::env::VarState;
use super::facts::{Facts, Gate};
use super::parts::{DUMP_VOLUME, POD_NAMESPACE_ENV, POD_NAME_ENV, TOOLS_BINARY};
use super::pod::Container;
use crate::config::quantity::Quantity;
use crate::config::{DumpConfig, DumpVolume, Feature};
use crate::options::agent_env;
use crate::options::flag_in;

pub fn volume(cfg: &DumpConfig) -> Volume {
    let mut v = Volume {
        name: DUMP_VOLUME.to_string(),
        ..Volume::default()
    };
    match &cfg.volume {
        // Disk-backed: a dump in `medium: Memory` would count against the very limit it reports.
        DumpVolume::EmptyDir { size_limit } => {
            v.empty_dir = Some(EmptyDirVolumeSource {
                size_limit: size_limit.as_ref().map(|q| K8sQuantity(q.to_string())),
                ..EmptyDirVolumeSource::default()
            })
        }
        DumpVolume::Pvc(claim) => {
            v.persistent_volume_claim = Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.clone(),
                read_only: None,
            })
        }
        DumpVolume::HostPath(path) => {
            v.host_path = Some(HostPathVolumeSource {
                path: path.clone(),
                type_: Some("DirectoryOrCreate".to_string()),
            })
        }
    }
    v
}

/// Whether the volume is shared by the pods of every namespace on a node (a hostPath): then
/// the namespace leads each pod's directory. An emptyDir is the pod's own and a PVC its
/// namespace's.
fn shared_across_namespaces(cfg: &DumpConfig) -> bool {
    matches!(cfg.volume, DumpVolume::HostPath(_))
}

/// Each container of each pod writes its own directory: two JVMs of one pod are both pid 1
/// and would both write `java_pid1.hprof` (container names are DNS labels: safe in a path).
/// The layout on the volume: docs/agent.md#dump-directories.
pub fn mount(cfg: &DumpConfig, container: &str) -> VolumeMount {
    let pod = format!("$({POD_NAME_ENV})/{container}");
    let sub_path = match shared_across_namespaces(cfg) {
        true => format!("$({POD_NAMESPACE_ENV})/{pod}"),
        false => pod,
    };
    VolumeMount {
        name: DUMP_VOLUME.to_string(),
        mount_path: cfg.mount_path.clone(),
        sub_path_expr: Some(sub_path),
        ..VolumeMount::default()
    }
}

fn field_env(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: field_path.to_string(),
            }),
            ..EnvVarSource::default()
        }),
    }
}

/// The variables the mount's `subPathExpr` names, in the order they are inserted.
pub fn path_env(cfg: &DumpConfig) -> Vec<EnvVar> {
    let mut env = Vec::new();
    if shared_across_namespaces(cfg) {
        env.push(field_env(POD_NAMESPACE_ENV, "metadata.namespace"));
    }
    env.push(field_env(POD_NAME_ENV, "metadata.name"));
    env
}

/// Why this container cannot take our mount and variable, if it cannot.
pub fn container_collision(container: &Container, cfg: &DumpConfig) -> Option<String> {
    let same_path = |p: &str| p.trim_end_matches('/') == cfg.mount_path;
    if let Some(m) = container
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == DUMP_VOLUME || same_path(&m.mount_path))
    {
        return Some(format!(
            "container {} already mounts {} at {}",
            container.name, m.name, m.mount_path
        ));
    }
    let ours = path_env(cfg);
    container
        .env
        .iter()
        .flatten()
        .find(|e| ours.iter().any(|o| o.name == e.name))
        .map(|e| format!("container {} already sets {}", container.name, e.name))
}

/// Heap dump and crash log into the (per-pod) dump directory.
pub fn heap_dump_flags(cfg: &DumpConfig) -> Vec<String> {
    vec![
        "-XX:+HeapDumpOnOutOfMemoryError".to_string(),
        format!("-XX:HeapDumpPath={}", cfg.mount_path),
        format!("-XX:ErrorFile={}/hs_err_pid%p.log", cfg.mount_path),
    ]
}

/// `-XX:OnOutOfMemoryError` running the rotation after HotSpot wrote the dump. HotSpot runs
/// the value with `/bin/sh -c`; it is quoted so JAVA_TOOL_OPTIONS keeps it one option (every
/// HotSpot since JDK 9 honours quotes there). The path, keep count and container name contain
/// no spaces or quotes (validated).
pub fn oom_hook_flag(dump_dir: &str, keep: u32, container: &str) -> String {
    format!(
        "-XX:OnOutOfMemoryError=\"{TOOLS_BINARY} rotate-dumps --dir {dump_dir} --keep {keep} --container {container}\""
    )
}

/// The heap-dump feature: the mount and pod-name variable, the dump flags (or the launcher's
/// dump-directory variable), and the rotation hook when the tools are there (dump-rotation).
/// `heap_max` is what a dump can reach, when known.
pub fn decide(facts: &Facts<'_>, heap_max: Option<u64>) -> Decision {
    if let Gate::Closed(d) = facts.gate(Feature::HeapDump, &facts.config().heap_dump) {
        return *d;
    }
    let cfg = match &facts.pod.dump {
        Ok(cfg) => cfg,
        Err(reason) => return Decision::skipped(Feature::HeapDump, reason.clone()),
    };
    let name = facts.name();
    let mut d = Decision::default();
    if let Some(reason) = container_collision(facts.container, cfg) {
        d.warn(format!("{reason}; heap-dump skipped"));
        d.skip(Feature::HeapDump, reason);
        return d;
    }
    let dir_var = facts.profile.and_then(|p| p.dump_dir_var.as_deref());
    if let Some(var) = dir_var {
        if facts.env.var(var) != VarState::Absent {
            let reason = format!("the container sets {var}, where its launcher writes dumps");
            d.warn(format!("container {name}: {reason}; heap-dump skipped"));
            d.skip(Feature::HeapDump, reason);
            return d;
        }
    }
    // A dump path the workload sets anywhere the JVM or its launcher reads: dumps go there (or
    // to its fixed file name), not to a directory of ours.
    if let Some(by) = flag_in(&facts.places, "HeapDumpPath") {
        let reason = format!("dump path set by {by}");
        d.warn(format!(
            "container {name}: {reason}; heap-dump skipped (dumps go where it says, not to the dump volume)"
        ));
        d.skip(Feature::HeapDump, reason);
        return d;
    }
    d.mounts.push(mount(cfg, name));
    d.env.prepend_env.extend(path_env(cfg));
    d.uses.dump = true;
    // Counted as applied even if the user set every flag: the volume is there.
    d.apply(Feature::HeapDump);
    d.warnings.extend(no_room(facts.container, cfg, heap_max));
    let mut flags = heap_dump_flags(cfg);
    if let Some(var) = dir_var {
        // The launcher's -XX:HeapDumpPath comes later on its command line: it would win.
        flags.retain(|f| !f.starts_with("-XX:HeapDumpPath="));
        d.env.set_env.push(literal(var, &cfg.mount_path));
    }
    if !facts.agent {
        // What `inspect` lists; the agent's instructions carry it otherwise.
        d.env
            .set_env
            .push(literal(agent_env::DUMP_DIR, &cfg.mount_path));
    }
    let user = &facts.user;
    d.env
        .tokens
        .extend(flags.into_iter().filter(|t| !user.sets(t)));
    let hook = oom_hook_flag(&cfg.mount_path, cfg.keep, name);
    match &facts.tools {
        Err(reason) => d.skip(Feature::DumpRotation, reason.clone()),
        Ok(()) if user.sets(&hook) => d.skip(
            Feature::DumpRotation,
            "the container sets OnOutOfMemoryError",
        ),
        Ok(()) => {
            d.env.tokens.push(hook);
            d.uses.tools = true;
            d.apply(Feature::DumpRotation);
        }
    }
    d
}

fn literal(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.to_string()),
        value_from: None,
    }
}

/// The warning when a dump of `heap_max` bytes cannot fit where it is written: the emptyDir's
/// `sizeLimit` or the container's `ephemeral-storage` limit (an emptyDir counts against it;
/// past it the pod is evicted and the dump deleted with it).
fn no_room(container: &Container, cfg: &DumpConfig, heap_max: Option<u64>) -> Option<String> {
    let DumpVolume::EmptyDir { size_limit } = &cfg.volume else {
        return None;
    };
    let heap = heap_max?;
    let ephemeral = container
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .and_then(|l| l.get("ephemeral-storage"))
        .and_then(|q| q.0.parse::<Quantity>().ok());
    let rooms = [
        (size_limit.as_ref(), "the dump volume's sizeLimit"),
        (ephemeral.as_ref(), "the ephemeral-storage limit"),
    ];
    let (room, what) = rooms
        .into_iter()
        .filter_map(|(q, what)| q.map(|q| (q.bytes(), what)))
        .filter(|(room, _)| *room < heap)
        .min_by_key(|(room, _)| *room)?;
    Some(format!(
        "container {}: a heap dump can reach {} MiB but {what} is {} MiB: the dump would be lost with the pod; raise it or use dump-volume: pvc:<claim>",
        container.name,
        heap >> 20,
        room >> 20
    ))
}

#[cfg(test)]
mod tests {
    use rstest::rstest;
    use serde_json::{json, Value};

    use super::*;
    use crate::mutate::decision::Outcome;
    use crate::mutate::testing::{pod, with_facts};

    #[test]
    fn a_host_path_puts_the_namespace_first() {
        let cfg = |volume| DumpConfig {
            volume,
            mount_path: "/dumps".into(),
            keep: 3,
        };
        let host = cfg(DumpVolume::HostPath("/var/dumps".into()));
        assert_eq!(
            mount(&host, "app").sub_path_expr.as_deref(),
            Some("$(JVM_GUARD_POD_NAMESPACE)/$(JVM_GUARD_POD_NAME)/app")
        );
        let names: Vec<String> = path_env(&host).into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["JVM_GUARD_POD_NAMESPACE", "JVM_GUARD_POD_NAME"]);
        let own = cfg(DumpVolume::EmptyDir { size_limit: None });
        assert_eq!(
            mount(&own, "app").sub_path_expr.as_deref(),
            Some("$(JVM_GUARD_POD_NAME)/app")
        );
        assert_eq!(path_env(&own).len(), 1);
        // A container that sets the namespace variable itself would move its directory.
        let c: Container = serde_json::from_value(
            json!({"name": "a", "env": [{"name": "JVM_GUARD_POD_NAMESPACE", "value": "other"}]}),
        )
        .unwrap();
        assert_eq!(
            container_collision(&c, &host).as_deref(),
            Some("container a already sets JVM_GUARD_POD_NAMESPACE")
        );
        assert_eq!(container_collision(&c, &own), None);
    }

    fn applied(feature: Feature) -> (Feature, Outcome) {
        (feature, Outcome::Applied)
    }

    fn skipped(feature: Feature, reason: &str) -> (Feature, Outcome) {
        let reason = reason.to_string();
        (feature, Outcome::Skipped { reason })
    }

    const HOOK: &str = "-XX:OnOutOfMemoryError=\"/jvm-guard/bin/jvm-guard rotate-dumps --dir /dumps --keep 3 --container a\"";

    #[rstest]
    #[case::with_rotation(
        json!({"name": "a", "image": "corp/app:1"}), true,
        &[applied(Feature::HeapDump), applied(Feature::DumpRotation)],
        &["-XX:+HeapDumpOnOutOfMemoryError", "-XX:HeapDumpPath=/dumps", "-XX:ErrorFile=/dumps/hs_err_pid%p.log", HOOK],
        &[agent_env::DUMP_DIR], 0
    )]
    #[case::rotation_needs_the_tools(
        json!({"name": "a", "image": "corp/app:1"}), false,
        &[applied(Feature::HeapDump), skipped(Feature::DumpRotation, "no tools image is configured (--tools-image)")],
        &["-XX:+HeapDumpOnOutOfMemoryError", "-XX:HeapDumpPath=/dumps", "-XX:ErrorFile=/dumps/hs_err_pid%p.log"],
        &[agent_env::DUMP_DIR], 0
    )]
    #[case::user_sets_the_hook(
        json!({"name": "a", "image": "corp/app:1", "env": [{"name": "JAVA_OPTS", "value": "-XX:OnOutOfMemoryError=kill"}]}),
        true,
        &[applied(Feature::HeapDump), skipped(Feature::DumpRotation, "the container sets OnOutOfMemoryError")],
        &["-XX:+HeapDumpOnOutOfMemoryError", "-XX:HeapDumpPath=/dumps", "-XX:ErrorFile=/dumps/hs_err_pid%p.log"],
        &[agent_env::DUMP_DIR], 0
    )]
    #[case::the_workload_sets_the_dump_path(
        json!({"name": "a", "image": "corp/app:1", "env": [{"name": "APP_JVM_ARGS", "value": "-Xss1m -XX:HeapDumpPath=/data/dumps"}]}),
        true,
        &[skipped(Feature::HeapDump, "dump path set by APP_JVM_ARGS=-XX:HeapDumpPath=/data/dumps")],
        &[],
        &[], 1
    )]
    #[case::the_agent_carries_the_directory(
        json!({"name": "a", "image": "corp/app:1", "command": ["java", "-jar", "app.jar"]}), true,
        &[applied(Feature::HeapDump), applied(Feature::DumpRotation)],
        &["-XX:+HeapDumpOnOutOfMemoryError", "-XX:HeapDumpPath=/dumps", "-XX:ErrorFile=/dumps/hs_err_pid%p.log", HOOK],
        &[], 0
    )]
    #[case::launcher_dump_directory_variable(
        json!({"name": "a", "image": "cassandra:5"}), true,
        &[applied(Feature::HeapDump), applied(Feature::DumpRotation)],
        &["-XX:+HeapDumpOnOutOfMemoryError", "-XX:ErrorFile=/dumps/hs_err_pid%p.log", HOOK],
        &["CASSANDRA_HEAPDUMP_DIR", agent_env::DUMP_DIR], 0
    )]
    #[case::container_sets_the_launcher_variable(
        json!({"name": "a", "image": "cassandra:5", "env": [{"name": "CASSANDRA_HEAPDUMP_DIR", "value": "/data"}]}), true,
        &[skipped(Feature::HeapDump, "the container sets CASSANDRA_HEAPDUMP_DIR, where its launcher writes dumps")],
        &[], &[], 1
    )]
    #[case::container_mounts_at_the_dump_path(
        json!({"name": "a", "image": "corp/app:1", "volumeMounts": [{"name": "data", "mountPath": "/dumps/"}]}), true,
        &[skipped(Feature::HeapDump, "container a already mounts data at /dumps/")],
        &[], &[], 1
    )]
    #[case::container_sets_the_pod_name_variable(
        json!({"name": "a", "image": "corp/app:1", "env": [{"name": "JVM_GUARD_POD_NAME", "value": "x"}]}), true,
        &[skipped(Feature::HeapDump, "container a already sets JVM_GUARD_POD_NAME")],
        &[], &[], 1
    )]
    fn heap_dump(
        #[case] container: Value,
        #[case] tools: bool,
        #[case] outcomes: &[(Feature, Outcome)],
        #[case] tokens: &[&str],
        #[case] set_env: &[&str],
        #[case] warnings: usize,
    ) {
        let d = with_facts(pod(json!({}), container), tools, |f| decide(f, None));
        assert_eq!(d.outcomes, outcomes);
        assert_eq!(d.env.tokens, tokens);
        let names: Vec<&str> = d.env.set_env.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, set_env);
        assert_eq!(d.warnings.len(), warnings, "{:?}", d.warnings);
        let mounted = outcomes.contains(&applied(Feature::HeapDump));
        assert_eq!(d.uses.dump, mounted);
        assert_eq!(d.mounts.len(), usize::from(mounted));
        assert_eq!(d.env.prepend_env.len(), usize::from(mounted));
        assert_eq!(
            d.uses.tools,
            outcomes.contains(&applied(Feature::DumpRotation))
        );
    }

    #[test]
    fn a_pod_with_our_volume_name_is_skipped_with_the_plan_s_reason() {
        let mut p = pod(json!({}), json!({"name": "a", "image": "corp/app:1"}));
        p["spec"]["volumes"] = json!([{"name": DUMP_VOLUME, "emptyDir": {}}]);
        let d = with_facts(p, true, |f| decide(f, None));
        let reason = "the pod already has a volume named jvm-guard-dumps";
        assert_eq!(d.outcomes, [skipped(Feature::HeapDump, reason)]);
        assert!(d.env.tokens.is_empty() && d.mounts.is_empty());
    }

    #[rstest]
    #[case::fits("2Gi", 1 << 30, &[])]
    #[case::ephemeral_storage_too_small("512Mi", 1 << 30, &[
        "container a: a heap dump can reach 1024 MiB but the ephemeral-storage limit is 512 MiB: the dump would be lost with the pod; raise it or use dump-volume: pvc:<claim>"
    ])]
    #[case::heap_unknown("512Mi", 0, &[])]
    fn the_dump_must_fit_its_volume(
        #[case] ephemeral: &str,
        #[case] heap: u64,
        #[case] warnings: &[&str],
    ) {
        let limits = json!({"limits": {"ephemeral-storage": ephemeral}});
        let c = json!({"name": "a", "image": "corp/app:1", "resources": limits});
        let heap = (heap > 0).then_some(heap);
        let d = with_facts(pod(json!({}), c), true, |f| decide(f, heap));
        assert_eq!(d.warnings, warnings);
    }
}
