//! What the mutation knows of images: the platform a pod runs on, the lookups it asks for, and
//! what the registry answered. Types only: the lookups themselves are the registry's.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::PodSpec;

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
pub struct ResolvedImages(pub HashMap<ImageRequest, Result<ImageCommand, String>>);

impl ResolvedImages {
    pub fn get(&self, request: &ImageRequest) -> Option<Result<&ImageCommand, &str>> {
        self.0
            .get(request)
            .map(|r| r.as_ref().map_err(String::as_str))
    }

    pub fn insert(&mut self, request: ImageRequest, result: Result<ImageCommand, String>) {
        self.0.insert(request, result);
    }
}

/// What an image runs: its ENTRYPOINT and CMD.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageCommand {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
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
