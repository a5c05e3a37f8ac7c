//! The tools: the init container copying the static jvm-guard binary into an emptyDir that the
//! targets mount read-only, and the ulimits feature that wraps the entrypoint in `exec`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, PodSpec, ResourceRequirements, SeccompProfile,
    SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::container::ContainerMutation;
use super::image::ImageCommand;
use super::patch::to_value;
use crate::config::rlimit::{Resource, Rlimit};
use crate::config::Feature;

pub const INIT_CONTAINER: &str = "jvm-guard-tools";
pub const VOLUME_NAME: &str = "jvm-guard-tools";
/// Where the targets see the tools.
pub const TOOLS_DIR: &str = "/jvm-guard/bin";
pub const TOOLS_BINARY: &str = "/jvm-guard/bin/jvm-guard";
/// Where the binary sits in the jvm-guard image (the Dockerfile copies it there).
pub const IMAGE_BINARY: &str = "/usr/local/bin/jvm-guard";
/// Where the kubelet mounts the ServiceAccount token; a mount of ours there keeps the
/// ServiceAccount admission plugin from adding the token to the init container.
pub const TOKEN_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

fn quantities(cpu: &str, memory: &str) -> BTreeMap<String, Quantity> {
    [("cpu", cpu), ("memory", memory)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
        .collect()
}

/// Small (requests equal to limits, so LimitRange ratios pass), compliant with the Pod Security
/// "restricted" profile, non-root as the image's numeric user (no fixed `runAsUser`, which
/// OpenShift's restricted SCC refuses), and without the API token (SPEC §4.4).
pub fn init_container(image: &str) -> Container {
    Container {
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
                name: VOLUME_NAME.to_string(),
                mount_path: TOOLS_DIR.to_string(),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: VOLUME_NAME.to_string(),
                mount_path: TOKEN_DIR.to_string(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
        ]),
        ..Container::default()
    }
}

pub fn volume() -> Volume {
    Volume {
        name: VOLUME_NAME.to_string(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: Some(Quantity("64Mi".to_string())),
            ..EmptyDirVolumeSource::default()
        }),
        ..Volume::default()
    }
}

pub fn mount() -> VolumeMount {
    VolumeMount {
        name: VOLUME_NAME.to_string(),
        mount_path: TOOLS_DIR.to_string(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

/// Why the pod cannot take the tools, if it cannot.
pub fn pod_collision(spec: &PodSpec) -> Option<String> {
    if spec.volumes.iter().flatten().any(|v| v.name == VOLUME_NAME) {
        return Some(format!("the pod already has a volume named {VOLUME_NAME}"));
    }
    let names = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers);
    names
        .clone()
        .any(|c| c.name == INIT_CONTAINER)
        .then(|| format!("the pod already has a container named {INIT_CONTAINER}"))
}

/// Why this container cannot mount the tools, if it cannot.
pub fn container_collision(container: &Container) -> Option<String> {
    container
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == VOLUME_NAME || m.mount_path.trim_end_matches('/') == TOOLS_DIR)
        .map(|m| format!("it already mounts {} at {}", m.name, m.mount_path))
}

/// The container's new `command` (and `args`, when they must be set) running it under the
/// rlimit wrapper, following Kubernetes semantics: a `command` replaces the ENTRYPOINT and
/// drops the CMD; `args` replace the CMD. Without `command` the image's must be known
/// (`image`, from a registry lookup); `Err` says why it is not. Empty lists count as absent,
/// as the container runtime reads them.
pub fn wrapped_command(
    container: &Container,
    image: Option<&ImageCommand>,
    limits: &[Rlimit],
) -> Result<(Vec<String>, Option<Vec<String>>), String> {
    let mut command = vec![TOOLS_BINARY.to_string(), "exec".to_string()];
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
            command.extend(image.entrypoint.iter().cloned());
            // With our command set, the runtime no longer adds the image CMD: args carry it.
            let args = (!has_args && !image.cmd.is_empty()).then(|| image.cmd.clone());
            Ok((command, args))
        }
        (_, None) => Err(
            "no command, and the image ENTRYPOINT is unknown; set command to wrap it".to_string(),
        ),
    }
}

/// Whether the container sets its own `command` (an empty one counts as absent, as the runtime
/// reads it).
pub fn has_command(container: &Container) -> bool {
    container.command.as_ref().is_some_and(|c| !c.is_empty())
}

impl ContainerMutation<'_> {
    /// The agent's `command` (and `args`, when they must be set) for this container: its
    /// entrypoint under `jvm-guard exec`, with `limits`; `Err` says why the entrypoint is
    /// unknown or the tools cannot reach the container.
    pub(super) fn agent_command(
        &self,
        limits: &[Rlimit],
    ) -> Result<(Vec<String>, Option<Vec<String>>), String> {
        self.tools()?;
        match self.image {
            Some(Err(why)) => Err(format!(
                "no command, and the image ENTRYPOINT is unknown ({why}); set command to wrap it"
            )),
            image => wrapped_command(self.container, image.and_then(Result::ok), limits),
        }
    }

    /// Starts the container through the agent: the command is replaced, and the ulimits (when
    /// on) are applied by it.
    pub(super) fn start(
        &mut self,
        command: Vec<String>,
        args: Option<Vec<String>>,
        limits: &[Rlimit],
    ) {
        if !limits.is_empty() {
            let user_namespace = self.pod.spec.host_users == Some(false);
            if !user_namespace && limits.iter().any(|l| l.resource == Resource::Nproc) {
                self.warnings.push(format!(
                    "container {}: nproc limits the processes of the container's UID on the whole node, not in the container (set hostUsers: false for a user namespace)",
                    self.container.name
                ));
            }
            self.status.applied(Feature::Ulimits);
        }
        self.patch.add(self.path("command"), to_value(&command));
        if let Some(args) = args {
            self.patch.add(self.path("args"), to_value(&args));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let image = ImageCommand {
            entrypoint: vec!["java".into()],
            cmd: vec!["-jar".into(), "app.jar".into()],
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
            wrapped_command(&c, Some(&image), &limits).unwrap(),
            (with(&["java", "-jar", "x.jar"]), None)
        );

        let c = container(None, None);
        assert_eq!(
            wrapped_command(&c, Some(&image), &limits).unwrap(),
            (with(&["java"]), Some(vec!["-jar".into(), "app.jar".into()]))
        );

        let c = container(None, Some(&["-jar", "other.jar"]));
        assert_eq!(
            wrapped_command(&c, Some(&image), &limits).unwrap(),
            (with(&["java"]), None)
        );

        let c = container(None, Some(&[]));
        assert_eq!(
            wrapped_command(&c, Some(&image), &limits).unwrap(),
            (with(&["java"]), Some(vec!["-jar".into(), "app.jar".into()])),
            "empty args are absent: the image CMD still runs"
        );

        let cmd_only = ImageCommand {
            entrypoint: vec![],
            cmd: vec!["java".into(), "-jar".into(), "app.jar".into()],
        };
        assert_eq!(
            wrapped_command(&container(None, None), Some(&cmd_only), &limits).unwrap(),
            (
                with(&[]),
                Some(vec!["java".into(), "-jar".into(), "app.jar".into()])
            )
        );
        assert_eq!(
            wrapped_command(
                &container(None, Some(&["run.sh"])),
                Some(&cmd_only),
                &limits
            )
            .unwrap(),
            (with(&[]), None),
            "args replace the CMD and, without ENTRYPOINT, run as the program"
        );

        let entrypoint_only = ImageCommand {
            entrypoint: vec!["java".into()],
            cmd: vec![],
        };
        assert_eq!(
            wrapped_command(&container(None, None), Some(&entrypoint_only), &limits).unwrap(),
            (with(&["java"]), None),
            "no CMD, no args to set"
        );

        let nothing = ImageCommand::default();
        assert!(wrapped_command(&container(None, None), Some(&nothing), &limits).is_err());
        assert!(wrapped_command(&container(None, None), None, &limits).is_err());
    }
}
