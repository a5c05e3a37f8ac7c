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
mod fetch;
mod net;

pub use auth::{
    Credentials, DockerConfig, KubeSecrets, SecretSource, StaticSecrets, DOCKER_CONFIG_TYPE,
};
pub use fetch::{
    parse_challenge, parse_error_envelope, parse_image_config, parse_manifest, parse_reference,
    parse_token, pick, verify_digest, Challenge, Descriptor, Manifest, MAX_CONFIG_BYTES,
    MAX_ERROR_BODY_BYTES, MAX_MANIFEST_BYTES, MAX_TOKEN_BYTES,
};
pub use net::{is_public, Access, Refused, MAX_REDIRECTS};
pub use reqwest::Url;

use crate::mutate::{ImageRequest, ResolvedImages};
use cache::*;
use fetch::*;
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
            clients: Clients::new(USER_AGENT),
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
        let late = || {
            format!(
                "no answer from the registry within {}",
                humantime::format_duration(self.config.budget)
            )
        };
        let configs = match tokio::time::timeout_at(deadline, self.docker_configs(pod)).await {
            Ok(configs) => configs,
            Err(_) => {
                for request in &pod.requests {
                    resolved.insert(
                        request.clone(),
                        Err("reading imagePullSecrets timed out".into()),
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
                tracing::info!(image = %request.image, error = %e, "image ENTRYPOINT unresolved");
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
        for name in &pod.pull_secrets {
            match source.docker_config(&pod.namespace, name).await {
                Ok(Some(bytes)) => match DockerConfig::parse(&bytes) {
                    Ok(config) => configs.push(config),
                    Err(e) => {
                        tracing::warn!(namespace = %pod.namespace, secret = %name, error = %e, "imagePullSecret skipped")
                    }
                },
                Ok(None) => {
                    tracing::debug!(namespace = %pod.namespace, secret = %name, "no {DOCKER_CONFIG_TYPE} Secret of that name")
                }
                Err(e) => {
                    tracing::warn!(namespace = %pod.namespace, secret = %name, error = %e, "cannot read imagePullSecret")
                }
            }
        }
        configs
    }

    /// One image, through the cache, with the first matching pull-secret credentials.
    pub async fn lookup(&self, request: &ImageRequest, configs: &[DockerConfig]) -> Lookup {
        let reference = parse_reference(&request.image).map_err(|e| truncate_error(&e))?;
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
                let outcome = tokio::time::timeout(LOOKUP_TIMEOUT, fetched)
                    .await
                    .unwrap_or_else(|_| {
                        Err(format!(
                            "{reference}: no answer within {}",
                            humantime::format_duration(LOOKUP_TIMEOUT)
                        ))
                    });
                outcome.map_err(|e| truncate_error(&e))
            }
            .boxed()
        });
        lookup.await.outcome
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use futures_util::future::BoxFuture;
    use rstest::rstest;

    use super::auth::*;
    use super::*;
    use crate::mutate::{ImageCommand, Platform};

    #[rstest]
    #[case::official(
        "eclipse-temurin:21-jre",
        "docker.io",
        "library/eclipse-temurin",
        Some("21-jre"),
        None
    )]
    #[case::official_no_tag(
        "eclipse-temurin",
        "docker.io",
        "library/eclipse-temurin",
        Some("latest"),
        None
    )]
    #[case::user_repo("bitnami/kafka", "docker.io", "bitnami/kafka", Some("latest"), None)]
    #[case::explicit_hub(
        "docker.io/library/openjdk:17",
        "docker.io",
        "library/openjdk",
        Some("17"),
        None
    )]
    #[case::other_registry(
        "ghcr.io/acme/shop/api:1.2",
        "ghcr.io",
        "acme/shop/api",
        Some("1.2"),
        None
    )]
    #[case::port("127.0.0.1:5000/app", "127.0.0.1:5000", "app", Some("latest"), None)]
    #[case::localhost("localhost/app:dev", "localhost", "app", Some("dev"), None)]
    #[case::digest(
        "quay.io/acme/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "quay.io",
        "acme/app",
        None,
        Some("sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
    )]
    #[case::tag_and_digest(
        "app:1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "docker.io",
        "library/app",
        Some("1"),
        Some("sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
    )]
    fn references(
        #[case] image: &str,
        #[case] registry: &str,
        #[case] repository: &str,
        #[case] tag: Option<&str>,
        #[case] digest: Option<&str>,
    ) {
        let r = parse_reference(image).unwrap();
        assert_eq!(r.registry(), registry, "{image}");
        assert_eq!(r.repository(), repository, "{image}");
        assert_eq!(r.tag(), tag, "{image}");
        assert_eq!(r.digest(), digest, "{image}");
    }

    #[test]
    fn docker_hub_is_reached_at_its_api_host() {
        let r = parse_reference("eclipse-temurin:21").unwrap();
        assert_eq!(r.resolve_registry(), "index.docker.io");
    }

    #[rstest]
    #[case::uppercase("Shop/App")]
    #[case::empty("")]
    #[case::spaces("app name")]
    fn bad_references(#[case] image: &str) {
        assert!(parse_reference(image).is_err(), "{image}");
    }

    #[rstest]
    #[case::host("registry.acme.io", "registry.acme.io", "team/app", true)]
    #[case::scheme("https://registry.acme.io", "registry.acme.io", "team/app", true)]
    #[case::port("127.0.0.1:5000", "127.0.0.1:5000", "app", true)]
    #[case::other_port("127.0.0.1:5000", "127.0.0.1:5001", "app", false)]
    #[case::hub_legacy("https://index.docker.io/v1/", "docker.io", "library/app", true)]
    #[case::hub_short("docker.io", "docker.io", "acme/app", true)]
    #[case::path("registry.acme.io/team", "registry.acme.io", "team/app", true)]
    #[case::path_boundary("registry.acme.io/team", "registry.acme.io", "teamx/app", false)]
    #[case::wildcard("*.acme.io", "registry.acme.io", "app", true)]
    #[case::wildcard_one_label("*.acme.io", "a.b.acme.io", "app", false)]
    #[case::other_host("registry.acme.io", "ghcr.io", "app", false)]
    fn docker_config_keys(
        #[case] key: &str,
        #[case] registry: &str,
        #[case] repository: &str,
        #[case] matches: bool,
    ) {
        assert_eq!(
            key_match(key, registry, repository).is_some(),
            matches,
            "{key} for {registry}/{repository}"
        );
    }

    #[test]
    fn docker_config_credentials() {
        let auth = base64::engine::general_purpose::STANDARD.encode("robot:s3cret:x");
        let config = DockerConfig::parse(
            serde_json::json!({"auths": {
                "registry.acme.io": {"auth": auth},
                "registry.acme.io/team": {"username": "team", "password": "pw"},
                "ghcr.io": {"username": "gh"},
            }})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        let creds = |r: &str, p: &str| config.credentials(r, p).map(|c| c.username);
        assert_eq!(
            creds("registry.acme.io", "other/app").as_deref(),
            Some("robot")
        );
        let decoded = config.credentials("registry.acme.io", "x").unwrap();
        assert_eq!(decoded.password, "s3cret:x", "split at the first colon");
        assert_eq!(
            creds("registry.acme.io", "team/app").as_deref(),
            Some("team"),
            "the most specific key wins"
        );
        assert_eq!(creds("ghcr.io", "app"), None, "no password");
        assert_eq!(creds("quay.io", "app"), None);
        assert!(DockerConfig::parse(b"not json").is_err());
    }

    #[rstest]
    #[case::both(r#"{"config":{"Entrypoint":["java"],"Cmd":["-jar","app.jar"]}}"#, &["java"], &["-jar", "app.jar"])]
    #[case::nulls(r#"{"config":{"Entrypoint":null,"Cmd":["sh"]}}"#, &[], &["sh"])]
    #[case::reset(r#"{"config":{"Entrypoint":[""],"Cmd":["run"]}}"#, &[], &["run"])]
    #[case::no_config(r#"{"architecture":"amd64"}"#, &[], &[])]
    fn image_configs(#[case] blob: &str, #[case] entrypoint: &[&str], #[case] cmd: &[&str]) {
        let parsed = parse_image_config(blob.as_bytes()).unwrap();
        assert_eq!(parsed.entrypoint, entrypoint);
        assert_eq!(parsed.cmd, cmd);
    }

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

    #[test]
    fn credentials_do_not_print() {
        let c = Credentials {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_ne!(
            c.fingerprint(),
            Credentials {
                username: "u".into(),
                password: "other".into()
            }
            .fingerprint()
        );
    }

    fn key(reference: &str) -> Key {
        Key {
            reference: reference.into(),
            platform: Platform::default(),
            credentials: None,
        }
    }

    fn answer(outcome: Lookup) -> BoxFuture<'static, Lookup> {
        async move { outcome }.boxed()
    }

    #[tokio::test(start_paused = true)]
    async fn cache_coalesces_and_expires() {
        let cache = Cache {
            slots: Mutex::new(HashMap::new()),
            capacity: 2,
        };
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let slow = |calls: Arc<std::sync::atomic::AtomicUsize>| {
            move || {
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    Ok(ImageCommand::default())
                }
                .boxed()
            }
        };
        let a = cache.get(key("a:1"), false, slow(calls.clone()));
        let b = cache.get(key("a:1"), false, slow(calls.clone()));
        let (a, b) = tokio::join!(a, b);
        assert!(a.outcome.is_ok() && b.outcome.is_ok());
        assert_eq!(
            calls.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "coalesced"
        );

        cache.get(key("a:1"), false, slow(calls.clone())).await;
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1, "cached");
        tokio::time::advance(TAG_TTL).await;
        cache.get(key("a:1"), false, slow(calls.clone())).await;
        assert_eq!(
            calls.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "a tag expires"
        );

        cache.get(key("d@x"), true, slow(calls.clone())).await;
        tokio::time::advance(TAG_TTL * 10).await;
        cache.get(key("d@x"), true, slow(calls.clone())).await;
        assert_eq!(
            calls.load(std::sync::atomic::Ordering::SeqCst),
            3,
            "a digest does not"
        );

        let failed = cache
            .get(key("f:1"), false, || answer(Err("down".into())))
            .await;
        assert_eq!(failed.outcome, Err("down".to_string()));
        assert_eq!(cache.len(), 2, "bounded: the least recently used went");
        tokio::time::advance(FAILURE_TTL).await;
        let again = cache
            .get(key("f:1"), false, || answer(Ok(ImageCommand::default())))
            .await;
        assert!(again.outcome.is_ok(), "a failure is retried after its TTL");
    }
}
