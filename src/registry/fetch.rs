//! One lookup: the manifest of a reference (through an index for the pod's platform) and the
//! config blob's ENTRYPOINT and CMD, over the distribution API with its token or basic auth,
//! every body read within a cap and the resolvers' byte budget.

use std::sync::Arc;

use base64::Engine as _;
use oci_client::Reference;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{Response, StatusCode, Url};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::auth::Credentials;
use super::error::{BadResponse, LookupError};
use super::net::{origin, read_capped, status_error, Access, Clients};
use super::parse::{
    parse_challenge, parse_image_config, parse_manifest, parse_token, pick, verify_digest,
    Challenge, Descriptor, Manifest,
};
use crate::mutate::{ImageConfig, Platform};

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
    fn base(&self) -> Result<Url, LookupError> {
        let registry = self.reference.resolve_registry();
        let scheme = if self.access.insecure_registry(registry) {
            "http"
        } else {
            "https"
        };
        Url::parse(&format!("{scheme}://{registry}/")).map_err(|e| LookupError::RegistryUrl {
            registry: registry.to_string(),
            reason: e.to_string(),
        })
    }

    /// GET a path of the repository; on a first 401, the challenge is answered (a token from
    /// the realm, or the basic credentials) and the request made again.
    async fn get(
        &mut self,
        path: &str,
        accept: Option<&'static str>,
    ) -> Result<Response, LookupError> {
        let url = self
            .base()?
            .join(&format!("v2/{}/{path}", self.reference.repository()))
            .map_err(|e| LookupError::PathUrl {
                path: path.to_string(),
                reason: e.to_string(),
            })?;
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
    ) -> Result<HeaderValue, LookupError> {
        let mut url = Url::parse(realm).map_err(|_| LookupError::RealmUrl)?;
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
        let at_realm = |e: LookupError| LookupError::Realm {
            realm: shown.clone(),
            source: Box::new(e),
        };
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
            .map_err(|e| LookupError::RealmUnreachable(Box::new(e)))?;
        if response.status() != StatusCode::OK {
            let error = status_error(response, MAX_ERROR_BODY_BYTES).await;
            return Err(at_realm(error));
        }
        let body = self
            .read(response, MAX_TOKEN_BYTES, "token response")
            .await?;
        let token = parse_token(&body.bytes).map_err(|e| at_realm(e.into()))?;
        HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| at_realm(BadResponse::TokenHeader.into()))
    }

    /// The body, at most `cap` bytes, held against the byte budget: the whole of its
    /// Content-Length (or the cap) is taken at once, so bodies never wait on each other's
    /// halves.
    async fn read(
        &self,
        response: Response,
        cap: usize,
        what: &'static str,
    ) -> Result<Held, LookupError> {
        let declared = response.content_length();
        if let Some(size) = declared.filter(|n| *n > cap as u64) {
            return Err(LookupError::TooLarge { what, size, cap });
        }
        let reserved = declared.map_or(cap, |n| n as usize).max(1);
        let permit = self
            .budget
            .clone()
            .acquire_many_owned(reserved as u32)
            .await
            .map_err(|_| LookupError::ShuttingDown)?;
        let bytes = read_capped(response, reserved, what).await?;
        Ok(Held {
            bytes,
            _permit: permit,
        })
    }

    async fn manifest(&mut self, reference: &str) -> Result<Manifest, LookupError> {
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
        Ok(parse_manifest(&body.bytes)?)
    }

    async fn config(&mut self, descriptor: &Descriptor) -> Result<ImageConfig, LookupError> {
        if descriptor.size > MAX_CONFIG_BYTES as i64 {
            return Err(LookupError::TooLarge {
                what: "config",
                size: descriptor.size as u64,
                cap: MAX_CONFIG_BYTES,
            });
        }
        let response = self
            .get(&format!("blobs/{}", descriptor.digest), None)
            .await?;
        if response.status() != StatusCode::OK {
            return Err(status_error(response, MAX_ERROR_BODY_BYTES).await);
        }
        let body = self.read(response, MAX_CONFIG_BYTES, "config").await?;
        verify_digest(&descriptor.digest, &body.bytes)?;
        Ok(parse_image_config(&body.bytes)?)
    }
}

fn basic(credentials: &Credentials) -> Result<HeaderValue, LookupError> {
    let encoded = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", credentials.username, credentials.password));
    HeaderValue::from_str(&format!("Basic {encoded}")).map_err(|_| LookupError::CredentialsHeader)
}

/// Reads what `reference` runs on `platform`: manifest (through an index if need be), then
/// the config blob.
pub(super) async fn fetch(
    session: &mut Session<'_>,
    platform: &Platform,
) -> Result<ImageConfig, LookupError> {
    let reference = session.reference;
    let first = reference
        .digest()
        .or(reference.tag())
        .unwrap_or("latest")
        .to_string();
    let manifest = session
        .manifest(&first)
        .await
        .map_err(|e| e.during("manifest", reference))?;
    let config = match manifest {
        Manifest::Image { config } => config,
        Manifest::Index { manifests } => {
            let entry = pick(&manifests, platform).ok_or_else(|| LookupError::NoPlatform {
                reference: reference.to_string(),
                os: platform.os.clone(),
                architecture: platform.architecture.clone(),
            })?;
            let digest = entry.digest.clone();
            if !digest.contains(':') {
                let e = LookupError::from(BadResponse::NotADigest(digest));
                return Err(e.during("manifest", reference));
            }
            match session.manifest(&digest).await {
                Ok(Manifest::Image { config }) => config,
                Ok(Manifest::Index { .. }) => {
                    return Err(LookupError::NestedIndex {
                        reference: reference.to_string(),
                        digest,
                    })
                }
                Err(e) => return Err(e.during("manifest", reference)),
            }
        }
    };
    session
        .config(&config)
        .await
        .map_err(|e| e.during("config", reference))
}
