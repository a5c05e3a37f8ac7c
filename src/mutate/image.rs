//! What the mutation knows of images: the platform a pod runs on, the lookups it asks for, and
//! what the registry answered. Types only: the lookups themselves are the registry's.

use std::collections::{BTreeMap, HashMap};

use super::pod::PodSpec;

/// The node labels that pick the image of a multi-arch index (SPEC §7).
pub const ARCH_LABEL: &str = "kubernetes.io/arch";
pub const OS_LABEL: &str = "kubernetes.io/os";

/// The platform a pod's images run on: its `kubernetes.io/os` and `kubernetes.io/arch` node
/// selector, else linux/amd64.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
}

impl Default for Platform {
    fn default() -> Self {
        Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
        }
    }
}

impl Platform {
    pub fn of(spec: &PodSpec) -> Platform {
        let selector = spec.node_selector.as_ref();
        let label = |key: &str| selector.and_then(|s| s.get(key)).cloned();
        let default = Platform::default();
        Platform {
            os: label(OS_LABEL).unwrap_or(default.os),
            architecture: label(ARCH_LABEL).unwrap_or(default.architecture),
        }
    }
}

/// An image whose ENTRYPOINT and CMD the mutation needs: as written in the pod, for the pod's
/// platform.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRequest {
    pub image: String,
    pub platform: Platform,
}

/// What the registry said about each requested image: its command, or why it is unknown.
/// The mutation's only view of registries; empty when nothing was looked up (offline).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvedImages(pub HashMap<ImageRequest, Result<ImageConfig, String>>);

impl ResolvedImages {
    pub fn get(&self, request: &ImageRequest) -> Option<Result<&ImageConfig, &str>> {
        self.0
            .get(request)
            .map(|r| r.as_ref().map_err(String::as_str))
    }

    pub fn insert(&mut self, request: ImageRequest, result: Result<ImageConfig, String>) {
        self.0.insert(request, result);
    }
}

/// What an image's config says of the container it runs: its ENTRYPOINT and CMD, and the
/// evidence the features read (docs/design.md#image-lookup). The pod spec wins over it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `Env`, as (name, value), in the image's order; bounded ([`MAX_ENV_BYTES`]).
    pub env: Vec<(String, String)>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    /// `Labels` (OCI annotations of the image), bounded ([`MAX_LABEL_BYTES`]).
    pub labels: BTreeMap<String, String>,
}

/// The memory a cached config's `Env` may take, names and values together with what each
/// `String` costs besides its text ([`STRING_COST`]): a cached config is at most a few tens of
/// KiB, whatever the registry sends (up to the 1 MiB config body).
pub const MAX_ENV_BYTES: usize = 16 * 1024;
/// The same for its `Labels`.
pub const MAX_LABEL_BYTES: usize = 4 * 1024;
/// The same for ENTRYPOINT and CMD together, and the most strings they may hold: a config
/// beyond it is refused (a command cut short would be another command).
pub const MAX_COMMAND_BYTES: usize = 16 * 1024;
pub const MAX_COMMAND_STRINGS: usize = 256;
/// `User` and `WorkingDir` longer than this are not kept.
pub const MAX_FIELD_BYTES: usize = 1024;
/// What a kept string costs besides its text: its header and the allocator's rounding.
pub const STRING_COST: usize = 32;

/// The memory `strings` take, as [`MAX_COMMAND_BYTES`] counts it.
pub fn strings_cost<'s>(strings: impl IntoIterator<Item = &'s String>) -> usize {
    strings.into_iter().map(|s| s.len() + STRING_COST).sum()
}

impl ImageConfig {
    /// Keeps `env` (`NAME=value` entries) and `labels` within their bounds: entries beyond them
    /// are left out, whole.
    pub fn bounded_env(
        env: impl IntoIterator<Item = String>,
        labels: impl IntoIterator<Item = (String, String)>,
    ) -> (Vec<(String, String)>, BTreeMap<String, String>) {
        let mut room = MAX_ENV_BYTES;
        let mut kept_env = Vec::new();
        for entry in env {
            let Some((name, value)) = entry.split_once('=') else {
                continue;
            };
            let cost = entry.len() + 2 * STRING_COST;
            if cost > room {
                break;
            }
            room -= cost;
            kept_env.push((name.to_string(), value.to_string()));
        }
        let mut room = MAX_LABEL_BYTES;
        let mut kept_labels = BTreeMap::new();
        for (k, v) in labels {
            let cost = k.len() + v.len() + 2 * STRING_COST;
            if cost > room {
                continue;
            }
            room -= cost;
            kept_labels.insert(k, v);
        }
        (kept_env, kept_labels)
    }

    /// The image's value of `name`, the last one when it repeats.
    pub fn env_value(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The image's repository as written, without tag or digest: `docker.io/bitnami/kafka`.
pub fn repository(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    // A `:` after the last `/` starts the tag; one before it is a registry port.
    match image.rfind(':') {
        Some(colon) if !image[colon..].contains('/') => &image[..colon],
        _ => image,
    }
}

/// The image's name, the repository's last segment: `kafka` for `docker.io/bitnami/kafka:3`.
pub fn name(image: &str) -> &str {
    let repository = repository(image);
    repository.rsplit('/').next().unwrap_or(repository)
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case(
        "docker.io/bitnami/kafka:3.9.0-debian-12-r4",
        "docker.io/bitnami/kafka",
        "kafka"
    )]
    #[case(
        "registry.local:5000/bitnami/kafka@sha256:abc",
        "registry.local:5000/bitnami/kafka",
        "kafka"
    )]
    #[case("registry.local:5000/nginx", "registry.local:5000/nginx", "nginx")]
    #[case("nginx:1.27@sha256:abc", "nginx", "nginx")]
    #[case("busybox", "busybox", "busybox")]
    fn trims_tag_and_digest(#[case] image: &str, #[case] repo: &str, #[case] last: &str) {
        assert_eq!(repository(image), repo);
        assert_eq!(name(image), last);
    }
}
