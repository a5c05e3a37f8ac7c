//! The heap-dump feature, whole: the dump volume (one directory per container of each pod,
//! `subPathExpr: $(JVM_GUARD_POD_NAME)/<container>`, outliving the container), its JVM flags
//! and the rotation hook.

use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, HostPathVolumeSource,
    ObjectFieldSelector, PersistentVolumeClaimVolumeSource, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;

use super::decision::Decision;
use super::env::VarState;
use super::facts::{Facts, Gate};
use super::parts::{DUMP_VOLUME, POD_NAME_ENV, TOOLS_BINARY};
use crate::config::quantity::Quantity;
use crate::config::{DumpConfig, DumpVolume, Feature};
use crate::options::agent_env;

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

/// Each container of each pod writes its own directory: two JVMs of one pod are both pid 1
/// and would both write `java_pid1.hprof` (container names are DNS labels: safe in a path).
pub fn mount(cfg: &DumpConfig, container: &str) -> VolumeMount {
    VolumeMount {
        name: DUMP_VOLUME.to_string(),
        mount_path: cfg.mount_path.clone(),
        sub_path_expr: Some(format!("$({POD_NAME_ENV})/{container}")),
        ..VolumeMount::default()
    }
}

pub fn pod_name_env() -> EnvVar {
    EnvVar {
        name: POD_NAME_ENV.to_string(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: "metadata.name".to_string(),
            }),
            ..EnvVarSource::default()
        }),
    }
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
    container
        .env
        .iter()
        .flatten()
        .any(|e| e.name == POD_NAME_ENV)
        .then(|| format!("container {} already sets {POD_NAME_ENV}", container.name))
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
        return d;
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
    d.mounts.push(mount(cfg, name));
    d.env.prepend_env.push(pod_name_env());
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
