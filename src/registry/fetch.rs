//! One lookup: the reference parsed as the runtime does, the manifest (through an index for
//! the pod's platform) and the config blob's ENTRYPOINT and CMD, over the distribution API
//! with its token or basic auth; and the parsers of what a registry sends back.

use std::sync::Arc;

use base64::Engine as _;
use oci_client::Reference;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{Response, StatusCode, Url};
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::auth::Credentials;
use super::net::{origin, read_capped, status_error, Access, Clients};
use crate::mutate::{ImageCommand, Platform};

/// Manifests and indexes above this are refused: containerd's own limit is 4 MiB; real ones
/// are a few KB (an index of every platform and attestation, ~10 KB).
pub const MAX_MANIFEST_BYTES: usize = 1024 * 1024;
/// Config blobs above this are not image configs worth reading (real ones: a few KB, tens
/// with a long history).
pub const MAX_CONFIG_BYTES: usize = 1024 * 1024;
/// A token response (a JWT or two in JSON; Docker Hub's is ~5 KB).
pub const MAX_TOKEN_BYTES: usize = 64 * 1024;
/// What is read of an error response to find the registry's error codes.
pub const MAX_ERROR_BODY_BYTES: usize = 16 * 1024;

const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// Parses an image reference as the container runtime does: no registry host means Docker
/// Hub (`docker.io`, `library/` for single names), no tag means `latest`.
pub fn parse_reference(image: &str) -> Result<Reference, String> {
    image
        .parse::<Reference>()
        .map_err(|e| format!("image reference {image:?}: {e}"))
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
pub fn parse_manifest(bytes: &[u8]) -> Result<Manifest, String> {
    let fields: ManifestFields =
        serde_json::from_slice(bytes).map_err(|e| format!("the manifest is not JSON: {e}"))?;
    if fields.schema_version != Some(2) {
        return Err(format!(
            "manifest schemaVersion {:?}, only 2 is read",
            fields.schema_version
        ));
    }
    match (fields.manifests, fields.config) {
        (Some(manifests), _) => Ok(Manifest::Index { manifests }),
        (None, Some(config)) => Ok(Manifest::Image { config }),
        (None, None) => Err("the manifest has neither config nor manifests".into()),
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
pub(super) struct ImageConfigBlob {
    #[serde(default)]
    config: Option<ImageConfigFields>,
}

#[derive(Deserialize)]
pub(super) struct ImageConfigFields {
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
pub fn parse_token(bytes: &[u8]) -> Result<String, String> {
    let fields: TokenFields = serde_json::from_slice(bytes)
        .map_err(|e| format!("the token response is not JSON: {e}"))?;
    let token = fields
        .token
        .or(fields.access_token)
        .filter(|t| !t.is_empty())
        .ok_or("the token response has no token")?;
    // It goes into a header; a token that cannot is no token.
    HeaderValue::from_str(&token).map_err(|_| "the token is not a header value")?;
    Ok(token)
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    errors: Vec<ErrorEntry>,
}

#[derive(Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// The codes and messages of an OCI error envelope (`{"errors":[{"code","message"}]}`), on
/// one line; `None` for any other body.
pub fn parse_error_envelope(bytes: &[u8]) -> Option<String> {
    let envelope: ErrorEnvelope = serde_json::from_slice(bytes).ok()?;
    let text = envelope
        .errors
        .iter()
        .take(3)
        .map(|e| match (e.code.is_empty(), e.message.is_empty()) {
            (false, false) => format!("{} ({})", e.code, e.message),
            (false, true) => e.code.clone(),
            _ => e.message.clone(),
        })
        .collect::<Vec<_>>()
        .join("; ");
    (!text.is_empty()).then_some(text)
}

/// Checks `bytes` against a `sha256:` or `sha512:` digest.
pub fn verify_digest(expected: &str, bytes: &[u8]) -> Result<(), String> {
    let (algorithm, hex) = expected
        .split_once(':')
        .ok_or_else(|| format!("{expected:?} is not a digest"))?;
    let algorithm = match algorithm {
        "sha256" => &ring::digest::SHA256,
        "sha512" => &ring::digest::SHA512,
        other => return Err(format!("digest algorithm {other:?} is not supported")),
    };
    let actual: String = ring::digest::digest(algorithm, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if actual != hex {
        return Err(format!("the content does not match its digest {expected}"));
    }
    Ok(())
}

/// An error and its causes on one line: reqwest puts the useful part in the sources.
pub(super) fn describe(e: &dyn std::error::Error) -> String {
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

/// A body held against the resolver's byte budget until dropped.
struct Held {
    bytes: Vec<u8>,
    _permit: OwnedSemaphorePermit,
}

/// One lookup's requests to one registry: where it is, how requests are authorised once the
/// registry has said how, and the limits every answer is read within.
pub(super) struct Session<'a> {
    pub clients: &'a Clients,
    pub access: &'a Access,
    pub budget: Arc<Semaphore>,
    pub reference: &'a Reference,
    pub credentials: Option<&'a Credentials>,
    pub authorization: Option<HeaderValue>,
}

impl Session<'_> {
    fn base(&self) -> Result<Url, String> {
        let registry = self.reference.resolve_registry();
        let scheme = if self.access.insecure_registry(registry) {
            "http"
        } else {
            "https"
        };
        Url::parse(&format!("{scheme}://{registry}/"))
            .map_err(|e| format!("registry {registry:?}: {e}"))
    }

    /// GET a path of the repository; on a first 401, the challenge is answered (a token from
    /// the realm, or the basic credentials) and the request made again.
    async fn get(&mut self, path: &str, accept: Option<&'static str>) -> Result<Response, String> {
        let url = self
            .base()?
            .join(&format!("v2/{}/{path}", self.reference.repository()))
            .map_err(|e| format!("{path}: {e}"))?;
        let mut answered = false;
        loop {
            let mut headers = HeaderMap::new();
            if let Some(accept) = accept {
                headers.insert(ACCEPT, HeaderValue::from_static(accept));
            }
            if let Some(authorization) = &self.authorization {
                headers.insert(AUTHORIZATION, authorization.clone());
            }
            let response = self.clients.get(self.access, url.clone(), headers).await?;
            if response.status() != StatusCode::UNAUTHORIZED || answered {
                return Ok(response);
            }
            answered = true;
            let challenge = response
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_challenge);
            self.authorization = Some(match (challenge, self.credentials) {
                (Some(Challenge::Bearer { realm, service }), credentials) => {
                    self.token(&realm, service.as_deref(), credentials).await?
                }
                (Some(Challenge::Basic), Some(credentials)) => basic(credentials)?,
                _ => return Ok(response),
            });
        }
    }

    /// A bearer token for pulling the repository, from a realm that [`Access::outside`]
    /// allows, the credentials sent along if any.
    async fn token(
        &self,
        realm: &str,
        service: Option<&str>,
        credentials: Option<&Credentials>,
    ) -> Result<HeaderValue, String> {
        let mut url = Url::parse(realm).map_err(|_| "the token realm is not a URL".to_string())?;
        {
            let mut query = url.query_pairs_mut();
            query.append_pair(
                "scope",
                &format!("repository:{}:pull", self.reference.repository()),
            );
            if let Some(service) = service {
                query.append_pair("service", service);
            }
        }
        let shown = origin(&url);
        let request = |client: &reqwest::Client| {
            let request = client.get(url.clone());
            match credentials {
                Some(c) => request.basic_auth(&c.username, Some(&c.password)),
                None => request,
            }
        };
        let response = self
            .clients
            .get_outside(self.access, request, &url)
            .await
            .map_err(|e| format!("token realm: {e}"))?;
        if response.status() != StatusCode::OK {
            let error = status_error(response, MAX_ERROR_BODY_BYTES).await;
            return Err(format!("token realm {shown}: {error}"));
        }
        let body = self
            .read(response, MAX_TOKEN_BYTES, "token response")
            .await?;
        let token = parse_token(&body.bytes).map_err(|e| format!("token realm {shown}: {e}"))?;
        HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| format!("token realm {shown}: the token is not a header value"))
    }

    /// The body, at most `cap` bytes, held against the byte budget: the whole of its
    /// Content-Length (or the cap) is taken at once, so bodies never wait on each other's
    /// halves.
    async fn read(&self, response: Response, cap: usize, what: &str) -> Result<Held, String> {
        let declared = response.content_length();
        if let Some(n) = declared.filter(|n| *n > cap as u64) {
            return Err(format!("the {what} is {n} bytes, more than the {cap} read"));
        }
        let reserved = declared.map_or(cap, |n| n as usize).max(1);
        let permit = self
            .budget
            .clone()
            .acquire_many_owned(reserved as u32)
            .await
            .map_err(|_| "the resolver is shutting down".to_string())?;
        let bytes = read_capped(response, reserved, what).await?;
        Ok(Held {
            bytes,
            _permit: permit,
        })
    }

    async fn manifest(&mut self, reference: &str) -> Result<Manifest, String> {
        let response = self
            .get(&format!("manifests/{reference}"), Some(MANIFEST_TYPES))
            .await?;
        if response.status() != StatusCode::OK {
            return Err(status_error(response, MAX_ERROR_BODY_BYTES).await);
        }
        let body = self.read(response, MAX_MANIFEST_BYTES, "manifest").await?;
        if reference.contains(':') {
            verify_digest(reference, &body.bytes)?;
        }
        parse_manifest(&body.bytes)
    }

    async fn config(&mut self, descriptor: &Descriptor) -> Result<ImageCommand, String> {
        if descriptor.size > MAX_CONFIG_BYTES as i64 {
            return Err(format!(
                "the config is {} bytes, more than the {MAX_CONFIG_BYTES} read",
                descriptor.size
            ));
        }
        let response = self
            .get(&format!("blobs/{}", descriptor.digest), None)
            .await?;
        if response.status() != StatusCode::OK {
            return Err(status_error(response, MAX_ERROR_BODY_BYTES).await);
        }
        let body = self.read(response, MAX_CONFIG_BYTES, "config").await?;
        verify_digest(&descriptor.digest, &body.bytes)?;
        parse_image_config(&body.bytes)
    }
}

fn basic(credentials: &Credentials) -> Result<HeaderValue, String> {
    let encoded = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", credentials.username, credentials.password));
    HeaderValue::from_str(&format!("Basic {encoded}"))
        .map_err(|_| "the credentials are not a header value".to_string())
}

/// Reads what `reference` runs on `platform`: manifest (through an index if need be), then
/// the config blob.
pub(super) async fn fetch(
    session: &mut Session<'_>,
    platform: &Platform,
) -> Result<ImageCommand, String> {
    let reference = session.reference;
    let failed = |what: &str, e: String| format!("{what} of {reference}: {e}");
    let first = reference
        .digest()
        .or(reference.tag())
        .unwrap_or("latest")
        .to_string();
    let manifest = session
        .manifest(&first)
        .await
        .map_err(|e| failed("manifest", e))?;
    let config = match manifest {
        Manifest::Image { config } => config,
        Manifest::Index { manifests } => {
            let entry = pick(&manifests, platform).ok_or_else(|| {
                format!(
                    "{reference} has no {}/{} image",
                    platform.os, platform.architecture
                )
            })?;
            let digest = entry.digest.clone();
            if !digest.contains(':') {
                return Err(failed("manifest", format!("{digest:?} is not a digest")));
            }
            match session.manifest(&digest).await {
                Ok(Manifest::Image { config }) => config,
                Ok(Manifest::Index { .. }) => {
                    return Err(format!("{reference}@{digest} is an index inside an index"))
                }
                Err(e) => return Err(failed("manifest", e)),
            }
        }
    };
    session
        .config(&config)
        .await
        .map_err(|e| failed("config", e))
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
            (Err(e), Err(text)) => assert!(e.contains(text), "{e}"),
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
    fn error_envelopes() {
        let body =
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#;
        assert_eq!(
            parse_error_envelope(body).as_deref(),
            Some("MANIFEST_UNKNOWN (manifest unknown)")
        );
        assert_eq!(parse_error_envelope(b"<html>secret</html>"), None);
    }

    #[test]
    fn digests() {
        let digest = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        assert!(verify_digest(digest, b"hello").is_ok());
        assert!(verify_digest(digest, b"hello!").is_err());
        assert!(verify_digest("md5:abc", b"hello").is_err());
        assert!(verify_digest("nodigest", b"hello").is_err());
    }
}
