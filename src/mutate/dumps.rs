//! The heap-dump feature, whole: the dump volume (one directory per container of each pod,
//! `subPathExpr: $(JVM_GUARD_POD_NAME)/<container>`, outliving the container), its JVM flags
//! and the rotation hook.

use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, HostPathVolumeSource,
    ObjectFieldSelector, PersistentVolumeClaimVolumeSource, PodSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;

use super::container::{ContainerMutation, Jvm, JvmEdits};
use super::env::VarState;
use super::patch::to_value;
use super::tools::{TOOLS_BINARY, TOOLS_DIR};
use crate::config::quantity::Quantity;
use crate::config::{DumpConfig, DumpVolume, Feature};

pub const VOLUME_NAME: &str = "jvm-guard-dumps";
/// Pods created by controllers have no name at admission time, so the directory is named
/// by the kubelet from this variable.
pub const POD_NAME_ENV: &str = crate::options::agent_env::POD_NAME;

pub fn volume(cfg: &DumpConfig) -> Volume {
    let mut v = Volume {
        name: VOLUME_NAME.to_string(),
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
        name: VOLUME_NAME.to_string(),
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

/// Why the pod cannot take our volume, if it cannot.
pub fn pod_collision(spec: &PodSpec) -> Option<String> {
    spec.volumes
        .iter()
        .flatten()
        .any(|v| v.name == VOLUME_NAME)
        .then(|| format!("the pod already has a volume named {VOLUME_NAME}"))
}

/// Why the dump directory cannot be mounted next to the tools, if it cannot: at or under the
/// tools directory (two mounts at one path make the apiserver refuse the pod).
pub fn tools_collision(cfg: &DumpConfig) -> Option<String> {
    let path = cfg.mount_path.as_str();
    let under = path == TOOLS_DIR || path.starts_with(&format!("{TOOLS_DIR}/"));
    under.then(|| format!("dump-mount-path {path} is the tools directory {TOOLS_DIR}"))
}

/// Why this container cannot take our mount and variable, if it cannot.
pub fn container_collision(container: &Container, cfg: &DumpConfig) -> Option<String> {
    let same_path = |p: &str| p.trim_end_matches('/') == cfg.mount_path;
    if let Some(m) = container
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == VOLUME_NAME || same_path(&m.mount_path))
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

impl ContainerMutation<'_> {
    /// The heap-dump feature: the mount and pod-name variable, the dump flags (or the
    /// launcher's dump-directory variable), and the rotation hook when the tools are there
    /// (dump-rotation). `heap_max` is what a dump can reach, when known.
    pub(super) fn heap_dump(&mut self, jvm: &Jvm<'_>, heap_max: Option<u64>, edits: &mut JvmEdits) {
        let cfg = match &self.pod.dump {
            Ok(cfg) => cfg,
            Err(reason) => return self.skip(Feature::HeapDump, reason.clone()),
        };
        if let Some(reason) = container_collision(self.container, cfg) {
            self.warnings.push(format!("{reason}; heap-dump skipped"));
            return self.skip(Feature::HeapDump, reason);
        }
        let dir_var = jvm.profile.and_then(|p| p.dump_dir_var.as_deref());
        if let Some(var) = dir_var {
            if self.env.var(var) != VarState::Absent {
                let reason = format!("the container sets {var}, where its launcher writes dumps");
                self.warnings.push(format!(
                    "container {}: {reason}; heap-dump skipped",
                    self.container.name
                ));
                return self.skip(Feature::HeapDump, reason);
            }
        }
        self.patch.append(
            self.path("volumeMounts"),
            self.container.volume_mounts.is_some(),
            vec![to_value(&mount(cfg, &self.container.name))],
        );
        edits.env.prepend_env.push(pod_name_env());
        edits.uses.dump = true;
        // Counted as applied even if the user set every flag: the volume is there.
        self.status.applied(Feature::HeapDump);
        self.check_room(cfg, heap_max);
        let mut flags = heap_dump_flags(cfg);
        if let Some(var) = dir_var {
            // The launcher's -XX:HeapDumpPath comes later on its command line: it would win.
            flags.retain(|f| !f.starts_with("-XX:HeapDumpPath="));
            edits.env.set_env.push(EnvVar {
                name: var.to_string(),
                value: Some(cfg.mount_path.clone()),
                value_from: None,
            });
        }
        let user = &jvm.user;
        edits
            .env
            .tokens
            .extend(flags.into_iter().filter(|t| !user.sets(t)));
        let hook = oom_hook_flag(&cfg.mount_path, cfg.keep, &self.container.name);
        match self.tools() {
            Err(reason) => self.skip(Feature::DumpRotation, reason),
            Ok(()) if user.sets(&hook) => self.skip(
                Feature::DumpRotation,
                "the container sets OnOutOfMemoryError",
            ),
            Ok(()) => {
                edits.env.tokens.push(hook);
                edits.uses.tools = true;
                self.status.applied(Feature::DumpRotation);
            }
        }
    }

    /// Warns when a dump of `heap_max` bytes cannot fit where it is written: the emptyDir's
    /// `sizeLimit` or the container's `ephemeral-storage` limit (an emptyDir counts against
    /// it; past it the pod is evicted and the dump deleted with it).
    fn check_room(&mut self, cfg: &DumpConfig, heap_max: Option<u64>) {
        let DumpVolume::EmptyDir { size_limit } = &cfg.volume else {
            return;
        };
        let Some(heap) = heap_max else {
            return;
        };
        let ephemeral = self
            .container
            .resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .and_then(|l| l.get("ephemeral-storage"))
            .and_then(|q| q.0.parse::<Quantity>().ok());
        let rooms = [
            (size_limit.as_ref(), "the dump volume's sizeLimit"),
            (ephemeral.as_ref(), "the ephemeral-storage limit"),
        ];
        if let Some((room, what)) = rooms
            .into_iter()
            .filter_map(|(q, what)| q.map(|q| (q.bytes(), what)))
            .filter(|(room, _)| *room < heap)
            .min_by_key(|(room, _)| *room)
        {
            self.warnings.push(format!(
                "container {}: a heap dump can reach {} MiB but {what} is {} MiB: the dump would be lost with the pod; raise it or use dump-volume: pvc:<claim>",
                self.container.name,
                heap >> 20,
                room >> 20
            ));
        }
    }
}
