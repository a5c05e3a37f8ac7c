//! Pull-secret credentials: where Secrets are read, and the `.dockerconfigjson` entry that
//! matches an image, as the kubelet matches it.

use std::collections::{BTreeMap, HashMap};

use base64::Engine as _;
use serde::Deserialize;

use futures_util::future::{BoxFuture, FutureExt as _};

pub const DOCKER_CONFIG_TYPE: &str = "kubernetes.io/dockerconfigjson";
const DOCKER_CONFIG_KEY: &str = ".dockerconfigjson";

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
    pub(super) fn fingerprint(&self) -> [u8; 32] {
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

/// A `.dockerconfigjson` that does not parse: the Secret is skipped.
#[derive(Debug, thiserror::Error)]
#[error("not a docker config: {0}")]
pub struct NotDockerConfig(#[from] serde_json::Error);

/// `auths` of a `.dockerconfigjson`.
#[derive(Debug, Default, Deserialize)]
pub struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct DockerAuth {
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
pub(super) fn canonical_host(host: &str) -> &str {
    match host {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io",
        other => other,
    }
}

/// A docker config key (`host[:port][/path]`, maybe with a scheme, or `*.domain`) matching the
/// image: how long the match is, to prefer the most specific key like the kubelet does.
pub(super) fn key_match(key: &str, registry: &str, repository: &str) -> Option<usize> {
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
    pub fn parse(bytes: &[u8]) -> Result<DockerConfig, NotDockerConfig> {
        Ok(serde_json::from_slice(bytes)?)
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

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use rstest::rstest;

    use super::*;

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
}
