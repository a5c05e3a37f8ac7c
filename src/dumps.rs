//! The dump volume: where heap dumps and crash logs go, one directory per pod
//! (`subPathExpr: $(JVM_GUARD_POD_NAME)`), on a volume that outlives the container.

use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, HostPathVolumeSource,
    ObjectFieldSelector, PersistentVolumeClaimVolumeSource, PodSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;

use crate::config::{DumpConfig, DumpVolume};

pub const VOLUME_NAME: &str = "jvm-guard-dumps";
/// Pods created by controllers have no name at admission time, so the directory is named
/// by the kubelet from this variable.
pub const POD_NAME_ENV: &str = "JVM_GUARD_POD_NAME";

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

pub fn mount(cfg: &DumpConfig) -> VolumeMount {
    VolumeMount {
        name: VOLUME_NAME.to_string(),
        mount_path: cfg.mount_path.clone(),
        sub_path_expr: Some(format!("$({POD_NAME_ENV})")),
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
