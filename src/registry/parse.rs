//! What a registry sends back, parsed: image references as the runtime reads them, manifests
//! and indexes, image configs, auth challenges and token responses, and digests checked.

use oci_client::Reference;
use reqwest::header::HeaderValue;
use serde::Deserialize;

use super::error::{BadResponse, LookupError};
use crate::mutate::image::{strings_cost, MAX_COMMAND_BYTES, MAX_COMMAND_STRINGS, MAX_FIELD_BYTES};
use crate::mutate::{ImageConfig, Platform};

/// Parses an image reference as the container runtime does: no registry host means Docker
/// Hub (`docker.io`, `library/` for single names), no tag means `latest`.
pub fn parse_reference(image: &str) -> Result<Reference, LookupError> {
    image
        .parse::<Reference>()
        .map_err(|e| LookupError::Reference {
            image: image.to_string(),
            reason: e.to_string(),
        })
}

/// A descriptor of a manifest or blob: what is needed of it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Descriptor {
    pub digest: String,
    #[serde(default)]
    pub size: i64,
    #[serde(default)]
    pub platform: Option<DescriptorPlatform>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct DescriptorPlatform {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
}

/// A manifest as far as a lookup reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    Image { config: Descriptor },
    Index { manifests: Vec<Descriptor> },
}

#[derive(Deserialize)]
struct ManifestFields {
    #[serde(rename = "schemaVersion")]
    schema_version: Option<i64>,
    config: Option<Descriptor>,
    manifests: Option<Vec<Descriptor>>,
}

/// An image manifest or an index (OCI or Docker schema 2), told apart by what it holds.
pub fn parse_manifest(bytes: &[u8]) -> Result<Manifest, BadResponse> {
    let fields: ManifestFields =
        serde_json::from_slice(bytes).map_err(|e| BadResponse::ManifestJson(e.to_string()))?;
    if fields.schema_version != Some(2) {
        return Err(BadResponse::SchemaVersion(fields.schema_version));
    }
    match (fields.manifests, fields.config) {
        (Some(manifests), _) => Ok(Manifest::Index { manifests }),
        (None, Some(config)) => Ok(Manifest::Image { config }),
        (None, None) => Err(BadResponse::EmptyManifest),
    }
}

/// The manifest of an index for `platform`; `variant` is not in a node selector, so the first
/// entry of the OS and architecture wins.
pub fn pick<'a>(entries: &'a [Descriptor], platform: &Platform) -> Option<&'a Descriptor> {
    entries.iter().find(|e| {
        e.platform
            .as_ref()
            .is_some_and(|p| p.os == platform.os && p.architecture == platform.architecture)
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
    #[serde(rename = "Env", default)]
    env: Option<Vec<String>>,
    #[serde(rename = "User", default)]
    user: Option<String>,
    #[serde(rename = "WorkingDir", default)]
    working_dir: Option<String>,
    #[serde(rename = "Labels", default)]
    labels: Option<std::collections::BTreeMap<String, String>>,
}

/// ENTRYPOINT, CMD, Env, User, WorkingDir and Labels from an image config blob, Env and Labels
/// within their bounds.
pub fn parse_image_config(bytes: &[u8]) -> Result<ImageConfig, BadResponse> {
    let blob: ImageConfigBlob =
        serde_json::from_slice(bytes).map_err(|e| BadResponse::ConfigJson(e.to_string()))?;
    let fields = blob.config;
    let mut entrypoint = fields
        .as_ref()
        .and_then(|f| f.entrypoint.clone())
        .unwrap_or_default();
    // `ENTRYPOINT [""]` resets it; containerd reads it as none.
    if entrypoint == [""] {
        entrypoint.clear();
    }
    let Some(fields) = fields else {
        return Ok(ImageConfig {
            entrypoint,
            ..ImageConfig::default()
        });
    };
    let (env, labels) = ImageConfig::bounded_env(
        fields.env.unwrap_or_default(),
        fields.labels.unwrap_or_default(),
    );
    let some = |s: Option<String>| s.filter(|s| !s.is_empty() && s.len() <= MAX_FIELD_BYTES);
    let cmd = fields.cmd.unwrap_or_default();
    let count = entrypoint.len() + cmd.len();
    if count > MAX_COMMAND_STRINGS
        || strings_cost(entrypoint.iter().chain(&cmd)) > MAX_COMMAND_BYTES
    {
        return Err(BadResponse::ConfigCommandTooLarge(
            "ENTRYPOINT and CMD",
            MAX_COMMAND_STRINGS,
            MAX_COMMAND_BYTES,
        ));
    }
    Ok(ImageConfig {
        entrypoint,
        cmd,
        env,
        user: some(fields.user),
        working_dir: some(fields.working_dir),
        labels,
    })
}

/// A `WWW-Authenticate` challenge of a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Bearer {
        realm: String,
        service: Option<String>,
    },
    Basic,
}

/// The challenge in a `WWW-Authenticate` value: `Bearer realm="...",service="..."` (RFC 6750
/// auth-params, quoted or not) or `Basic ...`; `None` for other schemes.
pub fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, params) = value.split_once([' ', '\t']).unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let (mut realm, mut service) = (None, None);
    let mut rest = params.trim_start();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key.trim().trim_start_matches(',').trim();
        let after = after.trim_start();
        let (val, next) = match after.strip_prefix('"') {
            Some(quoted) => {
                let mut val = String::new();
                let mut chars = quoted.char_indices();
                let mut end = None;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => val.extend(chars.next().map(|(_, c)| c)),
                        '"' => {
                            end = Some(i + 1);
                            break;
                        }
                        c => val.push(c),
                    }
                }
                (val, &quoted[end?..])
            }
            None => {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim().to_string(), &after[end..])
            }
        };
        if key.eq_ignore_ascii_case("realm") {
            realm = Some(val);
        } else if key.eq_ignore_ascii_case("service") {
            service = Some(val);
        }
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    Some(Challenge::Bearer {
        realm: realm?,
        service,
    })
}

#[derive(Deserialize)]
struct TokenFields {
    token: Option<String>,
    access_token: Option<String>,
}

/// The bearer token of a token response (`token`, or OAuth2's `access_token`).
pub fn parse_token(bytes: &[u8]) -> Result<String, BadResponse> {
    let fields: TokenFields =
        serde_json::from_slice(bytes).map_err(|e| BadResponse::TokenJson(e.to_string()))?;
    let token = fields
        .token
        .or(fields.access_token)
        .filter(|t| !t.is_empty())
        .ok_or(BadResponse::NoToken)?;
    // It goes into a header; a token that cannot is no token.
    HeaderValue::from_str(&token).map_err(|_| BadResponse::TokenHeader)?;
    Ok(token)
}

/// Checks `bytes` against a `sha256:` or `sha512:` digest.
pub fn verify_digest(expected: &str, bytes: &[u8]) -> Result<(), BadResponse> {
    let (algorithm, hex) = expected
        .split_once(':')
        .ok_or_else(|| BadResponse::NotADigest(expected.to_string()))?;
    let algorithm = match algorithm {
        "sha256" => &ring::digest::SHA256,
        "sha512" => &ring::digest::SHA512,
        other => return Err(BadResponse::DigestAlgorithm(other.to_string())),
    };
    let actual: String = ring::digest::digest(algorithm, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if actual != hex {
        return Err(BadResponse::DigestMismatch(expected.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case::docker_hub(
        r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io""#,
        Some(Challenge::Bearer { realm: "https://auth.docker.io/token".into(), service: Some("registry.docker.io".into()) })
    )]
    #[case::spaces_and_scope(
        r#"Bearer realm="https://ghcr.io/token", service="ghcr.io", scope="repository:a/b:pull""#,
        Some(Challenge::Bearer { realm: "https://ghcr.io/token".into(), service: Some("ghcr.io".into()) })
    )]
    #[case::unquoted(
        "bearer realm=https://r.example/t,service=r",
        Some(Challenge::Bearer { realm: "https://r.example/t".into(), service: Some("r".into()) })
    )]
    #[case::escaped(
        r#"Bearer realm="https://r.example/\"t\"""#,
        Some(Challenge::Bearer { realm: "https://r.example/\"t\"".into(), service: None })
    )]
    #[case::basic(r#"Basic realm="registry""#, Some(Challenge::Basic))]
    #[case::no_realm(r#"Bearer service="x""#, None)]
    #[case::unterminated(r#"Bearer realm="https://x"#, None)]
    #[case::other("Negotiate abc", None)]
    #[case::empty("", None)]
    fn challenges(#[case] value: &str, #[case] expected: Option<Challenge>) {
        assert_eq!(parse_challenge(value), expected, "{value}");
    }

    #[rstest]
    #[case::token(r#"{"token":"abc","expires_in":300}"#, Ok("abc"))]
    #[case::access_token(r#"{"access_token":"xyz"}"#, Ok("xyz"))]
    #[case::empty(r#"{"token":""}"#, Err("no token"))]
    #[case::newline(r#"{"token":"a\nb"}"#, Err("not a header value"))]
    #[case::not_json("<html>", Err("not JSON"))]
    fn tokens(#[case] body: &str, #[case] expected: Result<&str, &str>) {
        match (parse_token(body.as_bytes()), expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want),
            (Err(e), Err(text)) => assert!(e.to_string().contains(text), "{e}"),
            (got, want) => panic!("{body}: {got:?}, expected {want:?}"),
        }
    }

    #[test]
    fn manifests_and_indexes() {
        let image = br#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:ab","size":12},"layers":[]}"#;
        assert_eq!(
            parse_manifest(image).unwrap(),
            Manifest::Image {
                config: Descriptor {
                    digest: "sha256:ab".into(),
                    size: 12,
                    platform: None
                }
            }
        );
        let index = br#"{"schemaVersion":2,"manifests":[{"digest":"sha256:cd","size":1,"platform":{"os":"linux","architecture":"arm64"}}]}"#;
        let Manifest::Index { manifests } = parse_manifest(index).unwrap() else {
            panic!("an index");
        };
        let arm = Platform {
            os: "linux".into(),
            architecture: "arm64".into(),
        };
        assert_eq!(pick(&manifests, &arm).unwrap().digest, "sha256:cd");
        assert!(pick(&manifests, &Platform::default()).is_none());
        assert!(parse_manifest(br#"{"schemaVersion":1,"fsLayers":[]}"#).is_err());
        assert!(parse_manifest(br#"{"schemaVersion":2}"#).is_err());
    }

    #[test]
    fn digests() {
        let digest = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        assert!(verify_digest(digest, b"hello").is_ok());
        assert!(verify_digest(digest, b"hello!").is_err());
        assert!(verify_digest("md5:abc", b"hello").is_err());
        assert!(verify_digest("nodigest", b"hello").is_err());
    }

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
    #[case::both(r#"{"config":{"Entrypoint":["java"],"Cmd":["-jar","app.jar"]}}"#, &["java"], &["-jar", "app.jar"])]
    #[case::nulls(r#"{"config":{"Entrypoint":null,"Cmd":["sh"]}}"#, &[], &["sh"])]
    #[case::reset(r#"{"config":{"Entrypoint":[""],"Cmd":["run"]}}"#, &[], &["run"])]
    #[case::no_config(r#"{"architecture":"amd64"}"#, &[], &[])]
    fn image_configs(#[case] blob: &str, #[case] entrypoint: &[&str], #[case] cmd: &[&str]) {
        let parsed = parse_image_config(blob.as_bytes()).unwrap();
        assert_eq!(parsed.entrypoint, entrypoint);
        assert_eq!(parsed.cmd, cmd);
    }
}

#[cfg(test)]
mod bounds {
    use super::*;
    use crate::mutate::image::{MAX_ENV_BYTES, STRING_COST};

    /// What a cached config holds stays within its bounds whatever the registry sends: many
    /// small Env entries (each a `String` pair, not only its text), a huge command.
    #[test]
    fn a_config_is_kept_within_its_memory_bounds() {
        let env: Vec<String> = (0..8192).map(|i| format!("A{i}=")).collect();
        let blob = serde_json::json!({"config": {"Env": env, "Entrypoint": ["java"]}});
        let config = parse_image_config(blob.to_string().as_bytes()).unwrap();
        let kept: usize = config
            .env
            .iter()
            .map(|(n, v)| n.len() + v.len() + 1 + 2 * STRING_COST)
            .sum();
        assert!(kept <= MAX_ENV_BYTES, "{kept}");
        assert!(config.env.len() < 300, "{} entries kept", config.env.len());

        let entrypoint: Vec<String> = (0..258_000).map(|_| "a".to_string()).collect();
        let blob = serde_json::json!({"config": {"Entrypoint": entrypoint}});
        let error = parse_image_config(blob.to_string().as_bytes()).unwrap_err();
        assert!(error.to_string().contains("ENTRYPOINT and CMD"), "{error}");

        let long = "x".repeat(4096);
        let blob = serde_json::json!({"config": {"User": long, "WorkingDir": "/app"}});
        let config = parse_image_config(blob.to_string().as_bytes()).unwrap();
        assert_eq!(config.user, None);
        assert_eq!(config.working_dir.as_deref(), Some("/app"));
    }
}
