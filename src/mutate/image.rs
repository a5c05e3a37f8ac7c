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
