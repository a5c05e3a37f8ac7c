//! Image ENTRYPOINT and CMD from OCI registries (SPEC §7): references, the platform of a
//! multi-arch index, pull-secret credentials, what a lookup may reach and read, a bounded
//! coalescing cache and the time budget.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::FutureExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
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
use crate::mutate::{ImageConfig, ImageRequest, ResolvedImages};
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
/// Its task, and the connections it opened, end then at the latest, also when its cache slot
/// was evicted meanwhile.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Lookups running at once, all admissions together (each holds one connection at a time, a
/// few KiB of buffers and at most its share of [`REGISTRY_BODY_BUDGET`]). A lookup that finds
/// them all taken waits for one within its admission's budget, then fails with "too many
/// registry lookups in flight": forged reviews naming thousands of images on a silent host
/// held ~10,000 sockets and 210-285 MiB before this bound.
pub const MAX_LOOKUPS_IN_FLIGHT: usize = 64;
/// Distinct images one review looks up; the pod's containers past them keep their unknown
/// ENTRYPOINT, with that reason. Real pods name a handful.
pub const MAX_IMAGES_PER_REVIEW: usize = 16;
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

/// The bounds a resolver works within: the constants above in `serve`, smaller in tests.
#[derive(Debug, Clone, Copy)]
struct Limits {
    lookup_timeout: Duration,
    in_flight: usize,
    per_review: usize,
    cache_capacity: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            lookup_timeout: LOOKUP_TIMEOUT,
            in_flight: MAX_LOOKUPS_IN_FLIGHT,
            per_review: MAX_IMAGES_PER_REVIEW,
            cache_capacity: CACHE_CAPACITY,
        }
    }
}

/// Looks up image commands for admissions; one per process, shared by every request.
pub struct Resolver {
    config: RegistryConfig,
    limits: Limits,
    access: Access,
    clients: Clients,
    /// Bytes of registry bodies held now, against [`REGISTRY_BODY_BUDGET`].
    bodies: Arc<Semaphore>,
    /// Lookups running now, against [`MAX_LOOKUPS_IN_FLIGHT`]: each lookup's task holds one
    /// permit until it ends.
    in_flight: Arc<Semaphore>,
    cache: Cache,
}

impl Resolver {
    pub fn new(config: RegistryConfig) -> Resolver {
        Resolver::with_limits(config, Limits::default())
    }

    fn with_limits(config: RegistryConfig, limits: Limits) -> Resolver {
        // reqwest takes the process default; ring is the one this binary is built with.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Resolver {
            access: Access {
                insecure: config.insecure.clone(),
                allowed: config.allowed.clone(),
            },
            config,
            limits,
            clients: Clients::new(USER_AGENT, limits.lookup_timeout),
            bodies: Arc::new(Semaphore::new(REGISTRY_BODY_BUDGET)),
            in_flight: Arc::new(Semaphore::new(limits.in_flight)),
            cache: Cache {
                slots: Mutex::new(HashMap::new()),
                capacity: limits.cache_capacity,
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
    /// first [`MAX_IMAGES_PER_REVIEW`] lookups run concurrently, and those unfinished at the
    /// deadline are unresolved (they go on in the background and fill the cache); the images
    /// past them are not looked up.
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
        let (looked_up, past) = pod
            .requests
            .split_at(pod.requests.len().min(self.limits.per_review));
        for request in past {
            let why = LookupError::TooManyImages(self.limits.per_review).to_string();
            resolved.insert(request.clone(), Err(why));
        }
        let lookups = looked_up.iter().map(|request| {
            let configs = &configs;
            async move {
                let lookup = self.lookup_within(request, configs, deadline);
                let outcome = tokio::time::timeout_at(deadline, lookup)
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
    ) -> Result<ImageConfig, String> {
        let deadline = Instant::now() + self.config.budget;
        self.lookup_within(request, configs, deadline).await
    }

    async fn lookup_within(
        &self,
        request: &ImageRequest,
        configs: &[DockerConfig],
        deadline: Instant,
    ) -> Result<ImageConfig, String> {
        self.lookup_typed(request, configs, deadline)
            .await
            .map_err(|e| truncate_error(&e.to_string()))
    }

    /// A lookup slot, waited for until `deadline` at most.
    async fn slot(&self, deadline: Instant) -> Result<OwnedSemaphorePermit, LookupError> {
        match tokio::time::timeout_at(deadline, self.in_flight.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(LookupError::ShuttingDown),
            Err(_) => Err(LookupError::Busy(self.limits.in_flight)),
        }
    }

    /// Through the cache; a lookup that is neither cached nor in progress starts once it has
    /// a slot of [`MAX_LOOKUPS_IN_FLIGHT`], waiting for one until `deadline` at most.
    async fn lookup_typed(
        &self,
        request: &ImageRequest,
        configs: &[DockerConfig],
        deadline: Instant,
    ) -> Result<ImageConfig, LookupError> {
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
        // Taken when all slots were: the next round starts with it.
        let mut waited: Option<OwnedSemaphorePermit> = None;
        loop {
            let start = || {
                let permit = match waited.take() {
                    Some(permit) => permit,
                    None => self
                        .in_flight
                        .clone()
                        .try_acquire_owned()
                        .map_err(|_| LookupError::Busy(self.limits.in_flight))?,
                };
                Ok(self.start(reference.clone(), credentials.clone(), request, permit))
            };
            match self.cache.get(key.clone(), by_digest, start) {
                Ok(lookup) => return lookup.await.outcome,
                Err(LookupError::Busy(_)) => waited = Some(self.slot(deadline).await?),
                Err(e) => return Err(e),
            }
        }
    }

    /// The lookup of `reference`, holding `permit` until it ends, within the lookup timeout.
    fn start(
        &self,
        reference: oci_client::Reference,
        credentials: Option<Credentials>,
        request: &ImageRequest,
        permit: OwnedSemaphorePermit,
    ) -> futures_util::future::BoxFuture<'static, cache::Lookup> {
        let (clients, access) = (self.clients.clone(), self.access.clone());
        let budget = self.bodies.clone();
        let platform = request.platform.clone();
        let timeout = self.limits.lookup_timeout;
        async move {
            let _permit = permit;
            let mut session = Session {
                clients: &clients,
                access: &access,
                budget,
                reference: &reference,
                credentials: credentials.as_ref(),
                authorization: None,
            };
            let fetched = fetch(&mut session, &platform);
            tokio::time::timeout(timeout, fetched)
                .await
                .unwrap_or_else(|_| {
                    Err(LookupError::Timeout {
                        reference: reference.to_string(),
                        after: timeout,
                    })
                })
        }
        .boxed()
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

    /// A registry on loopback that counts its connections: open now and the most at once.
    /// A silent one accepts and never answers; the other answers every request 404 and
    /// keeps the connection open for the next one, as registries do.
    #[derive(Clone)]
    struct Counting {
        addr: std::net::SocketAddr,
        open: Arc<std::sync::atomic::AtomicUsize>,
        most: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Counting {
        async fn start(answers: bool) -> Counting {
            use std::sync::atomic::Ordering::SeqCst;
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let counting = Counting {
                addr: listener.local_addr().unwrap(),
                open: Default::default(),
                most: Default::default(),
            };
            let (open, most) = (counting.open.clone(), counting.most.clone());
            tokio::spawn(async move {
                while let Ok((mut stream, _)) = listener.accept().await {
                    let now = open.fetch_add(1, SeqCst) + 1;
                    most.fetch_max(now, SeqCst);
                    let open = open.clone();
                    tokio::spawn(async move {
                        let mut buffer = [0u8; 4096];
                        let mut seen = Vec::new();
                        while let Ok(n @ 1..) = stream.read(&mut buffer).await {
                            seen.extend_from_slice(&buffer[..n]);
                            while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                                seen.drain(..end + 4);
                                let reply = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
                                if answers && stream.write_all(reply).await.is_err() {
                                    break;
                                }
                            }
                        }
                        open.fetch_sub(1, SeqCst);
                    });
                }
            });
            counting
        }

        fn open(&self) -> usize {
            self.open.load(std::sync::atomic::Ordering::SeqCst)
        }

        fn most(&self) -> usize {
            self.most.load(std::sync::atomic::Ordering::SeqCst)
        }

        fn config(&self, budget: Duration) -> RegistryConfig {
            RegistryConfig {
                insecure: vec![self.addr.to_string()],
                budget,
                ..RegistryConfig::default()
            }
        }

        /// A pod naming `count` distinct images on this registry, `first` the first's number.
        fn pod(&self, first: usize, count: usize) -> PodImages {
            let requests = (first..first + count)
                .map(|i| ImageRequest {
                    image: format!("{}/forged/image-{i}:1", self.addr),
                    platform: Default::default(),
                })
                .collect();
            PodImages {
                namespace: "shop".into(),
                pull_secrets: vec![],
                requests,
            }
        }
    }

    /// The reasons of the lookups that failed, by how many times each was given.
    fn reasons(outcomes: &[ResolvedImages]) -> std::collections::BTreeMap<String, usize> {
        let mut reasons = std::collections::BTreeMap::new();
        for outcome in outcomes.iter().flat_map(|r| r.0.values()) {
            let why = outcome.as_ref().expect_err("nothing answers");
            *reasons.entry(why.clone()).or_insert(0) += 1;
        }
        reasons
    }

    /// Issue 26, item 4: forged reviews naming many distinct images on a silent host. Each
    /// lookup held its connection for LOOKUP_TIMEOUT, and nothing bounded how many ran.
    #[tokio::test]
    async fn lookups_in_flight_are_bounded_and_the_rest_fail_fast_with_the_reason() {
        let registry = Counting::start(false).await;
        let resolver = Resolver::new(registry.config(Duration::from_millis(300)));
        let reviews = 8;
        let per_review = MAX_IMAGES_PER_REVIEW;
        let pods: Vec<PodImages> = (0..reviews)
            .map(|r| registry.pod(r * per_review, per_review))
            .collect();
        let outcomes =
            futures_util::future::join_all(pods.iter().map(|p| resolver.resolve(p))).await;
        // Connections that were on their way when the budget ran out have arrived.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            registry.most() <= MAX_LOOKUPS_IN_FLIGHT,
            "{} connections at once",
            registry.most()
        );
        assert_eq!(
            registry.most(),
            MAX_LOOKUPS_IN_FLIGHT,
            "every slot was used"
        );
        let expected = [
            (
                "no answer from the registry within 300ms".to_string(),
                MAX_LOOKUPS_IN_FLIGHT,
            ),
            (
                format!("too many registry lookups in flight ({MAX_LOOKUPS_IN_FLIGHT})"),
                reviews * per_review - MAX_LOOKUPS_IN_FLIGHT,
            ),
        ];
        assert_eq!(reasons(&outcomes), expected.into_iter().collect());
        assert!(
            resolver.cached() <= MAX_LOOKUPS_IN_FLIGHT,
            "a refused lookup is not cached: {}",
            resolver.cached()
        );
    }

    /// A lookup waiting for a slot takes one freed within its budget.
    #[tokio::test]
    async fn a_lookup_waits_for_a_slot_within_its_budget() {
        let registry = Counting::start(true).await;
        let limits = Limits {
            in_flight: 1,
            ..Limits::default()
        };
        let resolver = Resolver::with_limits(registry.config(Duration::from_secs(5)), limits);
        let pods: Vec<PodImages> = (0..4).map(|i| registry.pod(i, 1)).collect();
        let outcomes =
            futures_util::future::join_all(pods.iter().map(|p| resolver.resolve(p))).await;
        assert_eq!(registry.most(), 1);
        let reasons = reasons(&outcomes);
        assert_eq!(reasons.values().sum::<usize>(), 4);
        for why in reasons.keys() {
            assert!(why.contains("404 Not Found"), "every one answered: {why}");
        }
    }

    /// Issue 26, item 4: one review starts at most MAX_IMAGES_PER_REVIEW lookups.
    #[tokio::test]
    async fn a_review_looks_up_at_most_its_share_of_images() {
        let registry = Counting::start(false).await;
        let resolver = Resolver::new(registry.config(Duration::from_millis(200)));
        let pod = registry.pod(0, MAX_IMAGES_PER_REVIEW + 4);
        let resolved = resolver.resolve(&pod).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(registry.most(), MAX_IMAGES_PER_REVIEW);
        let expected = [
            (
                "no answer from the registry within 200ms".to_string(),
                MAX_IMAGES_PER_REVIEW,
            ),
            (
                format!(
                    "not looked up: the pod names more than {MAX_IMAGES_PER_REVIEW} images \
                     without a command"
                ),
                4,
            ),
        ];
        assert_eq!(reasons(&[resolved]), expected.into_iter().collect());
    }

    /// A lookup ends with its timeout, its connection closed, also once its cache slot has
    /// gone to another reference.
    #[tokio::test]
    async fn an_evicted_lookup_closes_its_connection_at_the_lookup_timeout() {
        let registry = Counting::start(false).await;
        let limits = Limits {
            lookup_timeout: Duration::from_millis(500),
            cache_capacity: 1,
            ..Limits::default()
        };
        let resolver = Resolver::with_limits(registry.config(Duration::from_millis(100)), limits);
        resolver.resolve(&registry.pod(0, 1)).await;
        resolver.resolve(&registry.pod(1, 1)).await;
        assert_eq!(resolver.cached(), 1, "the first lookup's slot was evicted");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(registry.open(), 2, "both still wait for an answer");
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(registry.open(), 0, "both gave up at the lookup timeout");
    }

    /// Issue 26, item 4: no connection is kept idle after its request, so a burst of lookups
    /// of as many hosts leaves none open (an idle pool kept one per lookup for 90 s).
    #[tokio::test]
    async fn no_connection_outlives_its_request() {
        let registry = Counting::start(true).await;
        let resolver = Resolver::new(registry.config(Duration::from_secs(5)));
        let resolved = resolver
            .resolve(&registry.pod(0, MAX_IMAGES_PER_REVIEW))
            .await;
        for (why, _) in reasons(&[resolved]) {
            assert!(why.contains("404 Not Found"), "{why}");
        }
        assert!(registry.most() > 1, "the lookups ran together");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(registry.open(), 0, "connections left open");
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
