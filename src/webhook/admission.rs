//! The AdmissionReview protocol around [`mutate_with`]: a request body in, the response review
//! and what happened out. No HTTP and no registry here: the server resolves the images that
//! [`Parsed::images`] names and passes them in; it maps [`ReviewError`] to status codes.

use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crate::mutate::pod::Pod;
use kube_core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube_core::DynamicObject;
use serde_json::Value;

use crate::config::Feature;
use crate::config::Warnings;
use crate::config::{NamespaceConfig, ServerSettings};
use crate::mutate::{Mutation, Plan, ResolvedImages};
use crate::registry::PodImages;
use crate::webhook::namespaces::NamespaceLookup;

/// What the webhook did with a request; one label value each, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A patch was returned.
    Mutated,
    /// The pod was considered and needs nothing (already mutated, excluded namespace, ...).
    Unchanged,
    /// Not ours: not a pod CREATE, or the namespace did not opt in.
    Skipped,
    /// Admitted unchanged with a warning because something went wrong on our side.
    InternalError,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Mutated => "mutated",
            Outcome::Unchanged => "unchanged",
            Outcome::Skipped => "skipped",
            Outcome::InternalError => "internal_error",
        }
    }
}

/// The answer to one AdmissionReview.
#[derive(Debug)]
pub struct Reviewed {
    pub review: AdmissionReview<DynamicObject>,
    pub outcome: Outcome,
    /// The request's namespace, for logs.
    pub namespace: Option<String>,
    /// The features applied to at least one container when [`Outcome::Mutated`], else empty.
    pub applied: BTreeSet<Feature>,
}

/// A body that is not an AdmissionReview request; the apiserver never sends one.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("request body is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("AdmissionReview has no request")]
    NoRequest,
    #[error("invalid AdmissionReview request: {0}")]
    InvalidRequest(#[source] serde_json::Error),
}

/// Answers the AdmissionReview in `body`, knowing no image's ENTRYPOINT. Every well-formed
/// request is allowed; only a pod CREATE in an opted-in namespace can be patched.
pub fn review(
    body: &[u8],
    namespaces: &dyn NamespaceLookup,
    settings: &ServerSettings,
) -> Result<Reviewed, ReviewError> {
    let parsed = parse(body)?;
    let planned = parsed.plan(namespaces, settings);
    Ok(planned.answer(&ResolvedImages::default()))
}

/// An AdmissionReview request, read but not answered yet.
#[derive(Debug)]
pub struct Parsed {
    /// The request without its objects. Boxed, as the pod: a typed request is kilobytes
    /// (5.6 KB, its objects inline), and the handler's future holds this across the image
    /// lookup; every move of the future copied it (docs/performance.md).
    request: Box<AdmissionRequest<Pod>>,
    /// The pod, read apart from the envelope: a pod we cannot read must be a warning on an
    /// allowed response, not a 400 that the apiserver would drop silently.
    pod: Result<Box<Pod>, String>,
}

/// Reads the AdmissionReview in `body`: in one typed pass when it holds a readable pod (every
/// pod CREATE the apiserver sends), else through a JSON tree, to tell a bad envelope (an
/// error) from a bad object (a warning).
pub fn parse(body: &[u8]) -> Result<Parsed, ReviewError> {
    // JSON is UTF-8. Checked first: the typed pass skips unknown fields unchecked (found by
    // fuzzing), and a body the tree pass refuses must not be answered by the typed one.
    let body = std::str::from_utf8(body).map_err(|e| {
        ReviewError::NotJson(serde::de::Error::custom(format!("invalid UTF-8: {e}")))
    })?;
    if let Ok(review) = serde_json::from_str::<AdmissionReview<Pod>>(body) {
        if let Ok::<AdmissionRequest<Pod>, _>(mut request) = review.try_into() {
            request.old_object = None;
            let pod = request.object.take().map(Box::new).ok_or_else(no_pod);
            let request = Box::new(request);
            return Ok(Parsed { request, pod });
        }
    }
    let mut value: Value = serde_json::from_str(body).map_err(ReviewError::NotJson)?;
    let object = match value.get_mut("request") {
        None | Some(Value::Null) => return Err(ReviewError::NoRequest),
        Some(request) => request.as_object_mut().and_then(|r| {
            r.remove("oldObject");
            r.remove("object").filter(|o| !o.is_null())
        }),
    };
    let review: AdmissionReview<Pod> =
        serde_json::from_value(value).map_err(ReviewError::InvalidRequest)?;
    let request: AdmissionRequest<Pod> = review.try_into().map_err(|_| ReviewError::NoRequest)?;
    let pod = match object.map(serde_json::from_value::<Pod>) {
        Some(Ok(pod)) => Ok(Box::new(pod)),
        Some(Err(e)) => Err(format!("cannot read the pod ({e}); nothing injected")),
        None => Err(no_pod()),
    };
    let request = Box::new(request);
    Ok(Parsed { request, pod })
}

fn no_pod() -> String {
    "the request has no pod; nothing injected".to_string()
}

/// A pod to mutate: its namespace's configuration and the pod, or why it cannot be read.
type OurPod<'p> = (Arc<NamespaceConfig>, Result<&'p Pod, &'p str>);

impl Parsed {
    /// The pod to mutate and its namespace's configuration, if this request is one to mutate;
    /// else a warning when that is doubtful.
    fn pod(&self, namespaces: &dyn NamespaceLookup) -> Result<OurPod<'_>, Option<String>> {
        if !is_pod_create(&self.request) {
            return Err(None);
        }
        let name = self.request.namespace.as_deref().ok_or(None)?;
        let ns = namespaces.get(name).ok_or_else(|| namespaces.miss(name))?;
        Ok((ns, self.pod.as_deref().map_err(String::as_str)))
    }

    /// Plans the request's pod, once: the plan serves the image lookup
    /// ([`Planned::images`]) and the answer ([`Planned::answer`]).
    pub fn plan<'p>(
        &'p self,
        namespaces: &dyn NamespaceLookup,
        settings: &ServerSettings,
    ) -> Planned<'p> {
        let target = match self.pod(namespaces) {
            Err(warning) => Target::NotOurs(warning),
            Ok((_, Err(message))) => Target::Failed(message.to_string()),
            Ok((ns, Ok(pod))) => {
                match catch_unwind(AssertUnwindSafe(|| Plan::new(pod, &ns, settings))) {
                    Ok(plan) => Target::Pod(plan),
                    Err(_) => Target::Failed(INTERNAL_ERROR.to_string()),
                }
            }
        };
        Planned {
            parsed: self,
            target,
        }
    }
}

const INTERNAL_ERROR: &str = "internal error; nothing injected";

/// A request whose pod is planned, waiting for its images.
pub struct Planned<'p> {
    parsed: &'p Parsed,
    target: Target<'p>,
}

enum Target<'p> {
    /// Not a pod CREATE in an opted-in namespace; a warning when that is doubtful.
    NotOurs(Option<String>),
    /// Ours, but the pod cannot be read or planned: admitted unchanged with this warning.
    Failed(String),
    Pod(Plan<'p>),
}

type MutateFn = for<'p> fn(Plan<'p>, &ResolvedImages) -> Mutation;

impl Planned<'_> {
    /// The images whose ENTRYPOINT the mutation would use, with what the registry lookup needs
    /// of the pod; `None` when there are none.
    pub fn images(&self) -> Option<PodImages> {
        let Target::Pod(plan) = &self.target else {
            return None;
        };
        let requests = catch_unwind(AssertUnwindSafe(|| plan.images_to_resolve())).ok()?;
        if requests.is_empty() {
            return None;
        }
        let spec = self.parsed.pod.as_ref().ok()?.spec.as_ref()?;
        Some(PodImages {
            namespace: self.parsed.request.namespace.clone().unwrap_or_default(),
            pull_secrets: spec
                .image_pull_secrets
                .iter()
                .flatten()
                .map(|s| s.name.clone())
                .filter(|n| !n.is_empty())
                .collect(),
            requests,
        })
    }

    /// Answers the request with the image commands resolved for it.
    pub fn answer(self, images: &ResolvedImages) -> Reviewed {
        self.answer_with(images, |plan, images| plan.mutate(images))
    }

    fn answer_with(self, images: &ResolvedImages, mutate: MutateFn) -> Reviewed {
        let request = &self.parsed.request;
        let (response, outcome, applied) = respond(request, self.target, images, mutate);
        Reviewed {
            review: response.into_review(),
            outcome,
            namespace: request.namespace.clone(),
            applied,
        }
    }
}

fn is_pod_create(request: &AdmissionRequest<Pod>) -> bool {
    request.operation == Operation::Create
        && request.resource.group.is_empty()
        && request.resource.resource == "pods"
        // pods/binding and pods/eviction are CREATEs too, of other objects.
        && request.sub_resource.as_deref().is_none_or(str::is_empty)
}

/// The response, what happened, and the features its patch applies.
type Answer = (AdmissionResponse, Outcome, BTreeSet<Feature>);

fn unpatched(response: AdmissionResponse, outcome: Outcome) -> Answer {
    (response, outcome, BTreeSet::new())
}

fn respond(
    request: &AdmissionRequest<Pod>,
    target: Target<'_>,
    images: &ResolvedImages,
    mutate: MutateFn,
) -> Answer {
    let response = AdmissionResponse::from(request);
    let plan = match target {
        Target::NotOurs(None) => return unpatched(response, Outcome::Skipped),
        Target::NotOurs(Some(warning)) => {
            let mut warnings = Warnings::default();
            warnings.push(warning);
            let mut response = response;
            response.warnings = Some(warnings.into_vec());
            return unpatched(response, Outcome::Skipped);
        }
        Target::Failed(message) => return internal_error(response, message),
        Target::Pod(plan) => plan,
    };
    let Ok(Mutation {
        patch,
        warnings,
        status,
    }) = catch_unwind(AssertUnwindSafe(|| mutate(plan, images)))
    else {
        return internal_error(response, INTERNAL_ERROR);
    };
    let mut response = response;
    if !warnings.is_empty() {
        response.warnings = Some(warnings);
    }
    if patch.is_empty() {
        return unpatched(response, Outcome::Unchanged);
    }
    match with_patch(response.clone(), patch.into_bytes()) {
        Ok(patched) => {
            let applied = status.map(|s| s.applied()).unwrap_or_default();
            (patched, Outcome::Mutated, applied)
        }
        Err(e) => internal_error(response, format!("internal error ({e}); nothing injected")),
    }
}

/// `response` carrying `patch`, a JSONPatch already encoded as JSON.
pub fn with_patch(
    response: AdmissionResponse,
    patch: Vec<u8>,
) -> Result<AdmissionResponse, kube_core::admission::SerializePatchError> {
    // `with_patch` sets the patch type, which has no setter of its own; the patch it encodes
    // is empty, then replaced by ours.
    let mut patched = response.with_patch(json_patch::Patch(Vec::new()))?;
    patched.patch = Some(patch);
    Ok(patched)
}

/// Admits unchanged, keeping earlier warnings, and says why.
fn internal_error(mut response: AdmissionResponse, message: impl Into<String>) -> Answer {
    let mut warnings = Warnings::default();
    for w in response.warnings.take().into_iter().flatten() {
        warnings.push(w);
    }
    warnings.push(message);
    response.warnings = Some(warnings.into_vec());
    response.patch = None;
    unpatched(response, Outcome::InternalError)
}

/// Serializes a review for the wire. The patch goes out base64-encoded, as the API documents
/// for `[]byte` fields; kube-core would write an array of numbers.
pub fn to_json(mut review: AdmissionReview<DynamicObject>) -> Result<Vec<u8>, serde_json::Error> {
    // Serialized apart: as a JSON array of numbers it would cost a tree node per byte.
    let Some(patch) = review.response.as_mut().and_then(|r| r.patch.as_mut()) else {
        return crate::json::to_vec(&review);
    };
    let patch = std::mem::take(patch);
    // The review with an empty patch (`"patch":[]`), then the base64 written in its place:
    // the alphabet needs no JSON escaping, and no value tree is built. The sequence cannot
    // occur inside a string (its quotes would be escaped there): it is the field.
    let review = crate::json::to_vec(&review)?;
    const EMPTY: &[u8] = b"\"patch\":[]";
    let Some(at) = memchr::memmem::find(&review, EMPTY) else {
        return Err(serde::ser::Error::custom("the review has no patch field"));
    };
    let base64 = base64_simd::STANDARD;
    // It asserts a length of at most usize::MAX / 2, which a Vec (isize::MAX) always is.
    let encoded = base64.encoded_length(patch.len());
    let mut out = Vec::with_capacity(review.len() + encoded + 2);
    out.extend_from_slice(&review[..at]);
    out.extend_from_slice(b"\"patch\":\"");
    base64.encode_append(&patch, &mut out);
    out.push(b'"');
    out.extend_from_slice(&review[at + EMPTY.len()..]);
    Ok(out)
}

#[cfg(test)]
mod tests;
