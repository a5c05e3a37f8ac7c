//! Image ENTRYPOINT and CMD from OCI registries (SPEC §7): references, the platform of a
//! multi-arch index, pull-secret credentials, what a lookup may reach and read, a bounded
//! coalescing cache and the time budget.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::FutureExt as _;
use tokio::sync::Semaphore;
use tokio::time::Instant;

mod auth;
mod cache;
mod error;
mod fetch;
mod net;
mod parse;

pub use auth::{
    Credentials, DockerConfig, KubeSecrets, NotDockerConfig, SecretSource, StaticSecrets,
    DOCKER_CONFIG_TYPE,
};
pub use error::{parse_error_envelope, BadResponse, LookupError, Refused};
pub use fetch::{MAX_CONFIG_BYTES, MAX_ERROR_BODY_BYTES, MAX_MANIFEST_BYTES, MAX_TOKEN_BYTES};
pub use net::{is_public, Access, MAX_REDIRECTS};
pub use parse::{
    parse_challenge, parse_image_config, parse_manifest, parse_reference, parse_token, pick,
    verify_digest, Challenge, Descriptor, DescriptorPlatform, Manifest,
};
pub use reqwest::Url;

use crate::escape::Escaped;
use crate::mutate::{ImageCommand, ImageRequest, ResolvedImages};
use cache::{Cache, Key};
use fetch::{fetch, Session};
use net::Clients;

/// What one admission may spend on lookups: well inside the webhook's 5 s timeout.
pub const DEFAULT_BUDGET: Duration = Duration::from_millis(1500);
/// How long a tag's answer is trusted; a digest's never changes.
pub const TAG_TTL: Duration = Duration::from_secs(5 * 60);
/// How long a failure is remembered, so a registry that is down does not cost every pod the
/// budget.
pub const FAILURE_TTL: Duration = Duration::from_secs(30);
/// Cached answers, all references together.
pub const CACHE_CAPACITY: usize = 1024;
/// A lookup outlives the admission that started it, up to this, so the next pod finds it cached.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Registry response bodies held at once by all lookups together; a body waits for its share
/// (within [`LOOKUP_TIMEOUT`]), so any number of pods naming any images hold at most this.
pub const REGISTRY_BODY_BUDGET: usize = 4 * 1024 * 1024;
/// Why a lookup failed is cut to this many characters (on a char boundary) before it reaches
/// a warning or the status annotation: a registry chooses that text.
pub const MAX_ERROR_CHARS: usize = 256;

const USER_AGENT: &str = concat!("jvm-guard/", env!("CARGO_PKG_VERSION"));

/// How the resolver reaches registries; fixed at start-up.
#[derive(Clone)]
pub struct RegistryConfig {
    /// `HOST:PORT` of registries reached over plain HTTP (`--insecure-registry`).
    pub insecure: Vec<String>,
    /// `HOST:PORT` that token realms and redirects may reach on private, loopback and
    /// link-local addresses (`--allow-registry`); the `insecure` ones may too.
    pub allowed: Vec<String>,
    /// The time one pod's lookups may take together.
    pub budget: Duration,
    /// Where the pod's imagePullSecrets are read; `None` unless enabled
    /// (`--image-pull-secrets`).
    pub secrets: Option<Arc<dyn SecretSource>>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            insecure: Vec::new(),
            allowed: Vec::new(),
            budget: DEFAULT_BUDGET,
            secrets: None,
        }
    }
}

/// `text` cut to [`MAX_ERROR_CHARS`] characters on one line, `...` marking a cut.
pub fn truncate_error(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_ERROR_CHARS)
        .collect();
    if text.chars().nth(MAX_ERROR_CHARS).is_some() {
        out.truncate(
            out.char_indices()
                .nth(MAX_ERROR_CHARS - 3)
                .map_or(out.len(), |(i, _)| i),
        );
        out.push_str("...");
    }
    out
}

/// One pod's images to look up, with what its credentials are found by.
#[derive(Debug, Clone, Default)]
pub struct PodImages {
    pub namespace: String,
    /// Names of the pod's imagePullSecrets.
    pub pull_secrets: Vec<String>,
    pub requests: Vec<ImageRequest>,
}

/// Looks up image commands for admissions; one per process, shared by every request.
pub struct Resolver {
    config: RegistryConfig,
    access: Access,
    clients: Clients,
    /// Bytes of registry bodies held now, against [`REGISTRY_BODY_BUDGET`].
    bodies: Arc<Semaphore>,
    cache: Cache,
}

impl Resolver {
    pub fn new(config: RegistryConfig) -> Resolver {
        // reqwest takes the process default; ring is the one this binary is built with.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Resolver {
            access: Access {
                insecure: config.insecure.clone(),
                allowed: config.allowed.clone(),
            },
            config,
            clients: Clients::new(USER_AGENT, LOOKUP_TIMEOUT),
            bodies: Arc::new(Semaphore::new(REGISTRY_BODY_BUDGET)),
            cache: Cache {
                slots: Mutex::new(HashMap::new()),
                capacity: CACHE_CAPACITY,
            },
        }
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// How many answers and lookups the cache holds.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// The pod's images, each resolved or with the reason it is not, within the budget: the
    /// lookups run concurrently, and those unfinished at the deadline are unresolved (they go
    /// on in the background and fill the cache).
    pub async fn resolve(&self, pod: &PodImages) -> ResolvedImages {
        let mut resolved = ResolvedImages::default();
        if pod.requests.is_empty() {
            return resolved;
        }
        let deadline = Instant::now() + self.config.budget;
        let late = || LookupError::Budget(self.config.budget).to_string();
        let configs = match tokio::time::timeout_at(deadline, self.docker_configs(pod)).await {
            Ok(configs) => configs,
            Err(_) => {
                for request in &pod.requests {
                    resolved.insert(
                        request.clone(),
                        Err(LookupError::SecretsTimeout.to_string()),
                    );
                }
                return resolved;
            }
        };
        let lookups = pod.requests.iter().map(|request| {
            let configs = &configs;
            async move {
                let outcome = tokio::time::timeout_at(deadline, self.lookup(request, configs))
                    .await
                    .unwrap_or_else(|_| Err(late()));
                (request.clone(), outcome)
            }
        });
        for (request, outcome) in futures_util::future::join_all(lookups).await {
            if let Err(e) = &outcome {
                tracing::info!(image = %Escaped(&request.image), error = %Escaped(e), "image ENTRYPOINT unresolved");
            }
            resolved.insert(request, outcome);
        }
        resolved
    }

    /// The docker configs of the pod's imagePullSecrets, when reading them is enabled; one
    /// that cannot be read is left out (the lookup goes on anonymously).
    async fn docker_configs(&self, pod: &PodImages) -> Vec<DockerConfig> {
        let Some(source) = &self.config.secrets else {
            return Vec::new();
        };
        let mut configs = Vec::new();
        let namespace = Escaped(&pod.namespace);
        for name in &pod.pull_secrets {
            let secret = Escaped(name);
            match source.docker_config(&pod.namespace, name).await {
                Ok(Some(bytes)) => match DockerConfig::parse(&bytes) {
                    Ok(config) => configs.push(config),
                    Err(e) => {
                        tracing::warn!(%namespace, %secret, error = %Escaped(&e.to_string()), "imagePullSecret skipped")
                    }
                },
                Ok(None) => {
                    tracing::debug!(%namespace, %secret, "no {DOCKER_CONFIG_TYPE} Secret of that name")
                }
                Err(e) => {
                    tracing::warn!(%namespace, %secret, error = %Escaped(&e), "cannot read imagePullSecret")
                }
            }
        }
        configs
    }

    /// One image, through the cache, with the first matching pull-secret credentials; why
    /// not, as the warning says it.
    pub async fn lookup(
        &self,
        request: &ImageRequest,
        configs: &[DockerConfig],
    ) -> Result<ImageCommand, String> {
        self.lookup_typed(request, configs)
            .await
            .map_err(|e| truncate_error(&e.to_string()))
    }

    async fn lookup_typed(
        &self,
        request: &ImageRequest,
        configs: &[DockerConfig],
    ) -> Result<ImageCommand, LookupError> {
        let reference = parse_reference(&request.image)?;
        let credentials = configs
            .iter()
            .find_map(|c| c.credentials(reference.registry(), reference.repository()));
        let key = Key {
            reference: reference.whole(),
            platform: request.platform.clone(),
            credentials: credentials.as_ref().map(Credentials::fingerprint),
        };
        let by_digest = reference.digest().is_some();
        let (clients, access) = (self.clients.clone(), self.access.clone());
        let budget = self.bodies.clone();
        let platform = request.platform.clone();
        let lookup = self.cache.get(key, by_digest, move || {
            async move {
                let mut session = Session {
                    clients: &clients,
                    access: &access,
                    budget,
                    reference: &reference,
                    credentials: credentials.as_ref(),
                    authorization: None,
                };
                let fetched = fetch(&mut session, &platform);
                tokio::time::timeout(LOOKUP_TIMEOUT, fetched)
                    .await
                    .unwrap_or_else(|_| {
                        Err(LookupError::Timeout {
                            reference: reference.to_string(),
                            after: LOOKUP_TIMEOUT,
                        })
                    })
            }
            .boxed()
        });
        lookup.await.outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_text_is_cut_on_a_char_boundary_and_kept_on_one_line() {
        assert_eq!(truncate_error("short"), "short");
        assert_eq!(truncate_error("two\nlines"), "two lines");
        let long = "é".repeat(1000);
        let cut = truncate_error(&long);
        assert_eq!(cut.chars().count(), MAX_ERROR_CHARS);
        assert!(cut.ends_with("..."));
        assert!(cut.starts_with("ééé"));
        let exact = "x".repeat(MAX_ERROR_CHARS);
        assert_eq!(truncate_error(&exact), exact, "at the cap: not cut");
    }

    /// What a text-format subscriber (the default `--log-format`) writes while `run` runs.
    async fn text_logs<F: std::future::Future>(run: F) -> String {
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let guard = tracing::subscriber::set_default(subscriber);
        run.await;
        drop(guard);
        let bytes = buffer.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[tokio::test]
    async fn an_image_reference_cannot_forge_a_text_log_line() {
        let resolver = Resolver::new(RegistryConfig::default());
        let pod = PodImages {
            namespace: "shop".into(),
            pull_secrets: vec![],
            requests: vec![ImageRequest {
                image: "app\n2026-01-01T00:00:00Z  INFO jvm_guard: admin logged in\u{1b}[8m".into(),
                platform: Default::default(),
            }],
        };
        let logs = text_logs(async {
            let resolved = resolver.resolve(&pod).await;
            assert!(resolved.0.values().all(Result::is_err));
        })
        .await;
        assert_eq!(logs.lines().count(), 1, "{logs}");
        assert!(logs.contains("image ENTRYPOINT unresolved"), "{logs}");
        assert!(logs.contains("app\\n2026-01-01T00:00:00Z"), "{logs}");
        assert!(!logs.contains('\u{1b}'), "{logs:?}");
    }
}
