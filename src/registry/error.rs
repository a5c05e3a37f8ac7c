//! Why a lookup fails: what a URL may not be fetched for, what in a registry's answer does not
//! hold up, and every other way a lookup ends without an image command. Each is worded for the
//! warning and the status annotation it ends up in, cut by `truncate_error` on the way there.

use std::time::Duration;

use reqwest::StatusCode;

/// Why a URL is not fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("{0} is not HTTPS (list its HOST:PORT with --insecure-registry to allow plain HTTP)")]
    NotHttps(String),
    #[error(
        "{0} is a private, loopback or link-local address (list its HOST:PORT with \
         --allow-registry to allow it)"
    )]
    NotPublic(String),
    #[error("{0} is not a URL the lookup can follow")]
    BadUrl(String),
}

/// What a registry sent that a lookup cannot use: the parsers' errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadResponse {
    #[error("the manifest is not JSON: {0}")]
    ManifestJson(String),
    #[error("manifest schemaVersion {0:?}, only 2 is read")]
    SchemaVersion(Option<i64>),
    #[error("the manifest has neither config nor manifests")]
    EmptyManifest,
    #[error("the image config is not JSON: {0}")]
    ConfigJson(String),
    #[error("the image config's {0} is larger than a command line jvm-guard keeps ({1} strings, {2} bytes at most)")]
    ConfigCommandTooLarge(&'static str, usize, usize),
    #[error("the token response is not JSON: {0}")]
    TokenJson(String),
    #[error("the token response has no token")]
    NoToken,
    /// A token goes into a header; one that cannot is no token.
    #[error("the token is not a header value")]
    TokenHeader,
    #[error("{0:?} is not a digest")]
    NotADigest(String),
    #[error("digest algorithm {0:?} is not supported")]
    DigestAlgorithm(String),
    #[error("the content does not match its digest {0}")]
    DigestMismatch(String),
}

/// Why one image's command was not found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("image reference {image:?}: {reason}")]
    Reference { image: String, reason: String },
    #[error("registry {registry:?}: {reason}")]
    RegistryUrl { registry: String, reason: String },
    #[error("{path}: {reason}")]
    PathUrl { path: String, reason: String },
    /// No connection, or no answer: the origin and reqwest's causes on one line.
    #[error("{origin}: {detail}")]
    Network { origin: String, detail: String },
    #[error("{0}")]
    Refused(Refused),
    #[error("redirect refused: {0}")]
    RedirectRefused(Refused),
    #[error("more than {max} redirects from {origin}")]
    TooManyRedirects { max: usize, origin: String },
    /// A token realm that redirects: not followed.
    #[error("{origin} answered {status} (redirects are not followed here)")]
    Redirected { origin: String, status: StatusCode },
    /// A status that is not success, with the registry's own error codes and messages when it
    /// sent the OCI error envelope (never the raw body).
    #[error("{}", status_text(*.status, .envelope.as_deref()))]
    Status {
        status: StatusCode,
        envelope: Option<String>,
    },
    #[error("the {what} is {size} bytes, more than the {cap} read")]
    TooLarge {
        what: &'static str,
        size: u64,
        cap: usize,
    },
    #[error("the {what} is more than the {cap} bytes read")]
    Overran { what: &'static str, cap: usize },
    #[error("reading the {what}: {detail}")]
    Read { what: &'static str, detail: String },
    #[error(transparent)]
    BadResponse(#[from] BadResponse),
    #[error("the token realm is not a URL")]
    RealmUrl,
    /// The token realm could not be reached.
    #[error("token realm: {0}")]
    RealmUnreachable(Box<LookupError>),
    /// The token realm answered, but not with a token.
    #[error("token realm {realm}: {source}")]
    Realm {
        realm: String,
        source: Box<LookupError>,
    },
    #[error("the credentials are not a header value")]
    CredentialsHeader,
    /// One step of the lookup (`manifest`, `config`) of a reference failed.
    #[error("{step} of {reference}: {source}")]
    Step {
        step: &'static str,
        reference: String,
        source: Box<LookupError>,
    },
    #[error("{reference} has no {os}/{architecture} image")]
    NoPlatform {
        reference: String,
        os: String,
        architecture: String,
    },
    #[error("{reference}@{digest} is an index inside an index")]
    NestedIndex { reference: String, digest: String },
    /// The lookup itself ran out of time (it outlives the admission that started it).
    #[error("{reference}: no answer within {}", humantime::format_duration(*.after))]
    Timeout { reference: String, after: Duration },
    /// The admission's budget ran out before the lookup finished.
    #[error("no answer from the registry within {}", humantime::format_duration(*.0))]
    Budget(Duration),
    #[error("reading imagePullSecrets timed out")]
    SecretsTimeout,
    /// Every lookup slot was taken for the whole of the admission's budget: a new lookup does
    /// not queue behind them.
    #[error("too many registry lookups in flight ({0})")]
    Busy(usize),
    /// The pod names more distinct images to look up than one review may start.
    #[error("not looked up: the pod names more than {0} images without a command")]
    TooManyImages(usize),
    #[error("the resolver is shutting down")]
    ShuttingDown,
    /// The lookup's task panicked or was cancelled.
    #[error("the lookup failed: {0}")]
    Task(String),
}

impl LookupError {
    /// `self` as the failure of `step` of `reference`.
    pub fn during(self, step: &'static str, reference: &impl std::fmt::Display) -> LookupError {
        LookupError::Step {
            step,
            reference: reference.to_string(),
            source: Box::new(self),
        }
    }
}

fn status_text(status: StatusCode, envelope: Option<&str>) -> String {
    let reason = match status {
        StatusCode::UNAUTHORIZED => "Not authorized".to_string(),
        other => other.to_string(),
    };
    match envelope {
        Some(detail) => format!("{reason}: {detail}"),
        None => reason,
    }
}

/// An error and its causes on one line: reqwest puts the useful part in the sources.
pub fn describe(e: &dyn std::error::Error) -> String {
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

#[derive(serde::Deserialize)]
struct ErrorEnvelope {
    errors: Vec<ErrorEntry>,
}

#[derive(serde::Deserialize)]
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn statuses_say_the_code_and_the_registrys_words() {
        let status = |status, envelope: Option<&str>| {
            LookupError::Status {
                status,
                envelope: envelope.map(str::to_string),
            }
            .to_string()
        };
        assert_eq!(status(StatusCode::UNAUTHORIZED, None), "Not authorized");
        assert_eq!(
            status(
                StatusCode::NOT_FOUND,
                Some("MANIFEST_UNKNOWN (manifest unknown)")
            ),
            "404 Not Found: MANIFEST_UNKNOWN (manifest unknown)"
        );
    }

    #[test]
    fn steps_and_realms_nest_their_causes() {
        let e = LookupError::Realm {
            realm: "https://auth.example".into(),
            source: Box::new(BadResponse::NoToken.into()),
        }
        .during("manifest", &"shop/api:1");
        assert_eq!(
            e.to_string(),
            "manifest of shop/api:1: token realm https://auth.example: the token response has \
             no token"
        );
        assert_eq!(
            LookupError::Budget(Duration::from_millis(1500)).to_string(),
            "no answer from the registry within 1s 500ms"
        );
    }
}
