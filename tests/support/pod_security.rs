//! Pod Security Standards checks shared by the golden and chart tests.

use k8s_openapi::api::core::v1::{Container, PodSpec, SecurityContext};

/// The checks of the Pod Security "restricted" profile (with baseline's container-level rules)
/// that a pod spec can fail, as the PodSecurity admission plugin applies them: every violation,
/// described.
pub fn restricted_violations(spec: &PodSpec) -> Vec<String> {
    let mut v = Vec::new();
    let pod_sc = spec.security_context.as_ref();
    if spec.host_network == Some(true) || spec.host_pid == Some(true) || spec.host_ipc == Some(true)
    {
        v.push("host namespaces".into());
    }
    const ALLOWED_VOLUMES: [&str; 8] = [
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    ];
    for vol in spec.volumes.iter().flatten() {
        let value = serde_json::to_value(vol).expect("serializable");
        for key in value.as_object().expect("object").keys() {
            if key != "name" && !ALLOWED_VOLUMES.contains(&key.as_str()) {
                v.push(format!("volume {} has type {key}", vol.name));
            }
        }
    }
    let pod_non_root = pod_sc.and_then(|s| s.run_as_non_root);
    let pod_seccomp = pod_sc
        .and_then(|s| s.seccomp_profile.as_ref())
        .map(|p| p.type_.clone());
    if pod_non_root == Some(false) {
        v.push("pod runAsNonRoot=false".into());
    }
    if pod_sc.and_then(|s| s.run_as_user) == Some(0) {
        v.push("pod runAsUser=0".into());
    }
    if pod_seccomp.as_deref() == Some("Unconfined") {
        v.push("pod seccomp Unconfined".into());
    }
    let containers: Vec<&Container> = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .collect();
    for c in containers {
        let default = SecurityContext::default();
        let sc = c.security_context.as_ref().unwrap_or(&default);
        let name = &c.name;
        if sc.privileged == Some(true) {
            v.push(format!("{name}: privileged"));
        }
        if sc.allow_privilege_escalation != Some(false) {
            v.push(format!("{name}: allowPrivilegeEscalation != false"));
        }
        if sc.run_as_non_root.or(pod_non_root) != Some(true) {
            v.push(format!("{name}: runAsNonRoot != true"));
        }
        if sc.run_as_user == Some(0) {
            v.push(format!("{name}: runAsUser=0"));
        }
        let seccomp = sc
            .seccomp_profile
            .as_ref()
            .map(|p| p.type_.clone())
            .or_else(|| pod_seccomp.clone());
        if !matches!(seccomp.as_deref(), Some("RuntimeDefault" | "Localhost")) {
            v.push(format!("{name}: seccompProfile {seccomp:?}"));
        }
        let caps = sc.capabilities.as_ref();
        let drops_all = caps
            .and_then(|c| c.drop.as_ref())
            .is_some_and(|d| d.iter().any(|x| x == "ALL"));
        if !drops_all {
            v.push(format!("{name}: capabilities do not drop ALL"));
        }
        for add in caps.and_then(|c| c.add.as_ref()).into_iter().flatten() {
            if add != "NET_BIND_SERVICE" {
                v.push(format!("{name}: adds capability {add}"));
            }
        }
        if c.ports
            .iter()
            .flatten()
            .any(|p| p.host_port.is_some_and(|h| h != 0))
        {
            v.push(format!("{name}: hostPort"));
        }
    }
    v
}
