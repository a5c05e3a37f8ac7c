//! Image ENTRYPOINT and CMD from OCI registries (SPEC §7): references, the platform of a
//! multi-arch index, pull-secret credentials, a bounded coalescing cache and the time budget.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use futures_util::future::{BoxFuture, FutureExt as _, Shared};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::{ImageIndexEntry, OciManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::Deserialize;
use tokio::time::Instant;

use crate::mutate::{ImageRequest, Platform, ResolvedImages};
use crate::tools::ImageCommand;

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
/// Config blobs above this are not image configs worth reading.
const MAX_CONFIG_BYTES: usize = 4 * 1024 * 1024;
/// Clients with credentials, one per credential (see [`Resolver::client`]).
const MAX_AUTHENTICATED_CLIENTS: usize = 64;

const USER_AGENT: &str = concat!("jvm-guard/", env!("CARGO_PKG_VERSION"));
const DOCKER_CONFIG_KEY: &str = ".dockerconfigjson";
pub const DOCKER_CONFIG_TYPE: &str = "kubernetes.io/dockerconfigjson";

/// How the resolver reaches registries; fixed at start-up.
#[derive(Clone)]
pub struct RegistryConfig {
    /// `HOST:PORT` of registries reached over plain HTTP (`--insecure-registry`).
    pub insecure: Vec<String>,
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
            budget: DEFAULT_BUDGET,
            secrets: None,
        }
    }
}

/// The `.dockerconfigjson` of a `kubernetes.io/dockerconfigjson` Secret, by namespace and name:
/// `Ok(None)` when there is no such Secret of that type. The kube client in `serve`, a map in
/// tests.
pub trait SecretSource: Send + Sync {
    fn docker_config<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, String>>;
}

/// Secrets from a map of `(namespace, name)` to `.dockerconfigjson` contents.
#[derive(Debug, Default, Clone)]
pub struct StaticSecrets(pub HashMap<(String, String), Vec<u8>>);

impl SecretSource for StaticSecrets {
    fn docker_config<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, String>> {
        let found = self
            .0
            .get(&(namespace.to_string(), name.to_string()))
            .cloned();
        async move { Ok(found) }.boxed()
    }
}

/// Secrets read from the apiserver at admission (needs `get` on `secrets`).
pub struct KubeSecrets(pub kube::Client);

impl SecretSource for KubeSecrets {
    fn docker_config<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, String>> {
        async move {
            let api: kube::Api<k8s_openapi::api::core::v1::Secret> =
                kube::Api::namespaced(self.0.clone(), namespace);
            let secret = api.get_opt(name).await.map_err(|e| e.to_string())?;
            Ok(secret
                .filter(|s| s.type_.as_deref() == Some(DOCKER_CONFIG_TYPE))
                .and_then(|s| s.data)
                .and_then(|mut d| d.remove(DOCKER_CONFIG_KEY))
                .map(|b| b.0))
        }
        .boxed()
    }
}

/// One pod's images to look up, with what its credentials are found by.
#[derive(Debug, Clone, Default)]
pub struct PodImages {
    pub namespace: String,
    /// Names of the pod's imagePullSecrets.
    pub pull_secrets: Vec<String>,
    pub requests: Vec<ImageRequest>,
}

/// A user name and password for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ***)", self.username)
    }
}

impl Credentials {
    /// Cache answers per credential: a pod must not learn a private image's command through
    /// another namespace's secret. Only this hash is kept.
    fn fingerprint(&self) -> [u8; 32] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(self.username.as_bytes());
        ctx.update(&[0]);
        ctx.update(self.password.as_bytes());
        ctx.finish()
            .as_ref()
            .try_into()
            .expect("SHA-256 is 32 bytes")
    }
}

/// `auths` of a `.dockerconfigjson`.
#[derive(Debug, Default, Deserialize)]
pub struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
}

#[derive(Debug, Default, Deserialize)]
struct DockerAuth {
    username: Option<String>,
    password: Option<String>,
    /// base64 of `user:password`, used when username and password are not given.
    auth: Option<String>,
}

impl DockerAuth {
    fn credentials(&self) -> Option<Credentials> {
        if let (Some(username), Some(password)) = (&self.username, &self.password) {
            return Some(Credentials {
                username: username.clone(),
                password: password.clone(),
            });
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(self.auth.as_deref()?.trim())
            .ok()?;
        let (username, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
        Some(Credentials {
            username: username.to_string(),
            password: password.to_string(),
        })
    }
}

/// Docker Hub's names, all one registry to a docker config.
fn canonical_host(host: &str) -> &str {
    match host {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io",
        other => other,
    }
}

/// A docker config key (`host[:port][/path]`, maybe with a scheme, or `*.domain`) matching the
/// image: how long the match is, to prefer the most specific key like the kubelet does.
fn key_match(key: &str, registry: &str, repository: &str) -> Option<usize> {
    let key = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let (host, path) = key.split_once('/').unwrap_or((key, ""));
    // The legacy Docker Hub key is https://index.docker.io/v1/: the version is no path.
    let path = path.trim_end_matches('/');
    let path = if matches!(path, "v1" | "v2") {
        ""
    } else {
        path
    };
    let host = canonical_host(host);
    let registry = canonical_host(registry);
    let host_matches = match host.strip_prefix("*.") {
        Some(domain) => registry
            .strip_suffix(domain)
            .and_then(|sub| sub.strip_suffix('.'))
            .is_some_and(|label| !label.is_empty() && !label.contains('.')),
        None => host == registry,
    };
    let path_matches = path.is_empty()
        || repository == path
        || repository
            .strip_prefix(path)
            .is_some_and(|rest| rest.starts_with('/'));
    (host_matches && path_matches).then_some(key.len())
}

impl DockerConfig {
    pub fn parse(bytes: &[u8]) -> Result<DockerConfig, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("not a docker config: {e}"))
    }

    /// The credentials of the most specific key matching the image.
    pub fn credentials(&self, registry: &str, repository: &str) -> Option<Credentials> {
        self.auths
            .iter()
            .filter_map(|(key, auth)| Some((key_match(key, registry, repository)?, auth)))
            .max_by_key(|(len, _)| *len)
            .and_then(|(_, auth)| auth.credentials())
    }
}

/// Parses an image reference as the container runtime does: no registry host means Docker
/// Hub (`docker.io`, `library/` for single names), no tag means `latest`.
pub fn parse_reference(image: &str) -> Result<Reference, String> {
    image
        .parse::<Reference>()
        .map_err(|e| format!("image reference {image:?}: {e}"))
}

/// The manifest of an index for `platform`; `variant` is not in a node selector, so the first
/// entry of the OS and architecture wins.
fn pick<'a>(entries: &'a [ImageIndexEntry], platform: &Platform) -> Option<&'a ImageIndexEntry> {
    entries.iter().find(|e| {
        e.platform.as_ref().is_some_and(|p| {
            p.os.to_string() == platform.os && p.architecture.to_string() == platform.architecture
        })
    })
}

#[derive(Deserialize)]
struct ImageConfigBlob {
    #[serde(default)]
    config: Option<ImageConfigFields>,
}

#[derive(Deserialize)]
struct ImageConfigFields {
    #[serde(rename = "Entrypoint", default)]
    entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    cmd: Option<Vec<String>>,
}

/// ENTRYPOINT and CMD from an image config blob.
pub fn parse_image_config(bytes: &[u8]) -> Result<ImageCommand, String> {
    let blob: ImageConfigBlob =
        serde_json::from_slice(bytes).map_err(|e| format!("the image config is not JSON: {e}"))?;
    let fields = blob.config;
    let mut entrypoint = fields
        .as_ref()
        .and_then(|f| f.entrypoint.clone())
        .unwrap_or_default();
    // `ENTRYPOINT [""]` resets it; containerd reads it as none.
    if entrypoint == [""] {
        entrypoint.clear();
    }
    let cmd = fields.and_then(|f| f.cmd).unwrap_or_default();
    Ok(ImageCommand { entrypoint, cmd })
}

/// An error and its causes on one line: reqwest puts the useful part in the sources.
fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Reads what `reference` runs on `platform`: manifest (through an index if need be), then
/// the config blob.
async fn fetch(
    client: &Client,
    reference: &Reference,
    platform: &Platform,
    auth: &RegistryAuth,
) -> Result<ImageCommand, String> {
    let failed = |what: &str, e: oci_client::errors::OciDistributionError| {
        format!("{what} of {reference}: {}", describe(&e))
    };
    let (manifest, _) = client
        .pull_manifest(reference, auth)
        .await
        .map_err(|e| failed("manifest", e))?;
    let manifest = match manifest {
        OciManifest::Image(m) => m,
        OciManifest::ImageIndex(index) => {
            let entry = pick(&index.manifests, platform).ok_or_else(|| {
                format!(
                    "{reference} has no {}/{} image",
                    platform.os, platform.architecture
                )
            })?;
            let by_digest = reference.clone_with_digest(entry.digest.clone());
            match client.pull_manifest(&by_digest, auth).await {
                Ok((OciManifest::Image(m), _)) => m,
                Ok((OciManifest::ImageIndex(_), _)) => {
                    return Err(format!("{by_digest} is an index inside an index"))
                }
                Err(e) => return Err(failed("manifest", e)),
            }
        }
    };
    if manifest.config.size > MAX_CONFIG_BYTES as i64 {
        return Err(format!(
            "the config of {reference} is {} bytes",
            manifest.config.size
        ));
    }
    let mut config = Vec::new();
    client
        .pull_blob(reference, &manifest.config, &mut config)
        .await
        .map_err(|e| failed("config", e))?;
    parse_image_config(&config)
}

type Outcome = Result<ImageCommand, String>;

/// A finished lookup and when it finished.
#[derive(Clone)]
struct Done {
    outcome: Outcome,
    at: Instant,
}

/// One reference as one credential sees it on one platform.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    reference: String,
    platform: Platform,
    credentials: Option<[u8; 32]>,
}

struct Slot {
    lookup: Shared<BoxFuture<'static, Done>>,
    used: Instant,
    by_digest: bool,
}

/// Answers by reference: digests for good, tags for [`TAG_TTL`], failures for
/// [`FAILURE_TTL`]. A lookup in progress is shared by everyone asking meanwhile.
struct Cache {
    slots: Mutex<HashMap<Key, Slot>>,
    capacity: usize,
}

impl Cache {
    fn fresh(slot: &Slot, now: Instant) -> bool {
        let Some(done) = slot.lookup.peek() else {
            return true; // in progress
        };
        let ttl = match &done.outcome {
            Ok(_) if slot.by_digest => return true,
            Ok(_) => TAG_TTL,
            Err(_) => FAILURE_TTL,
        };
        now.duration_since(done.at) < ttl
    }

    /// The lookup for `key`: cached, in progress, or started now with `start` on its own task.
    fn get(
        &self,
        key: Key,
        by_digest: bool,
        start: impl FnOnce() -> BoxFuture<'static, Outcome>,
    ) -> Shared<BoxFuture<'static, Done>> {
        let now = Instant::now();
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = slots.get_mut(&key).filter(|s| Self::fresh(s, now)) {
            slot.used = now;
            return slot.lookup.clone();
        }
        if slots.len() >= self.capacity && !slots.contains_key(&key) {
            slots.retain(|_, s| Self::fresh(s, now));
            if slots.len() >= self.capacity {
                let oldest = slots
                    .iter()
                    .min_by_key(|(_, s)| s.used)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    slots.remove(&oldest);
                }
            }
        }
        let lookup = start();
        let task = tokio::spawn(async move {
            let outcome = lookup.await;
            Done {
                outcome,
                at: Instant::now(),
            }
        });
        let lookup = async move {
            match task.await {
                Ok(done) => done,
                Err(e) => Done {
                    outcome: Err(format!("the lookup failed: {e}")),
                    at: Instant::now(),
                },
            }
        }
        .boxed()
        .shared();
        slots.insert(
            key,
            Slot {
                lookup: lookup.clone(),
                used: now,
                by_digest,
            },
        );
        lookup
    }

    fn len(&self) -> usize {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Looks up image commands for admissions; one per process, shared by every request.
pub struct Resolver {
    config: RegistryConfig,
    anonymous: Arc<Client>,
    /// Per credential: oci-client keeps the first credentials it sees for a registry, so
    /// different secrets need different clients.
    authenticated: Mutex<HashMap<[u8; 32], Arc<Client>>>,
    cache: Cache,
}

impl Resolver {
    pub fn new(config: RegistryConfig) -> Resolver {
        // reqwest takes the process default; ring is the one this binary is built with.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let anonymous = Arc::new(Self::build_client(&config));
        Resolver {
            config,
            anonymous,
            authenticated: Mutex::new(HashMap::new()),
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

    fn build_client(config: &RegistryConfig) -> Client {
        Client::new(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(config.insecure.clone()),
            connect_timeout: Some(LOOKUP_TIMEOUT),
            read_timeout: Some(LOOKUP_TIMEOUT),
            user_agent: USER_AGENT,
            ..ClientConfig::default()
        })
    }

    fn client(&self, credentials: Option<&Credentials>) -> Arc<Client> {
        let Some(credentials) = credentials else {
            return self.anonymous.clone();
        };
        let mut clients = self.authenticated.lock().unwrap_or_else(|e| e.into_inner());
        if clients.len() >= MAX_AUTHENTICATED_CLIENTS {
            clients.clear();
        }
        clients
            .entry(credentials.fingerprint())
            .or_insert_with(|| Arc::new(Self::build_client(&self.config)))
            .clone()
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
    pub async fn lookup(&self, request: &ImageRequest, configs: &[DockerConfig]) -> Outcome {
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
        let client = self.client(credentials.as_ref());
        let platform = request.platform.clone();
        let lookup = self.cache.get(key, by_digest, move || {
            async move {
                let auth = match &credentials {
                    Some(c) => RegistryAuth::Basic(c.username.clone(), c.password.clone()),
                    None => RegistryAuth::Anonymous,
                };
                let fetched = fetch(&client, &reference, &platform, &auth);
                tokio::time::timeout(LOOKUP_TIMEOUT, fetched)
                    .await
                    .unwrap_or_else(|_| {
                        Err(format!(
                            "{reference}: no answer within {}",
                            humantime::format_duration(LOOKUP_TIMEOUT)
                        ))
                    })
            }
            .boxed()
        });
        lookup.await.outcome
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

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

    fn answer(outcome: Outcome) -> BoxFuture<'static, Outcome> {
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
