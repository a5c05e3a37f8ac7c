//! The AdmissionReview protocol around [`mutate_with`]: a request body in, the response review
//! and what happened out. No HTTP and no registry here: the server resolves the images that
//! [`Parsed::images`] names and passes them in; it maps [`ReviewError`] to status codes.

use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use base64::Engine as _;
use k8s_openapi::api::core::v1::Pod;
use kube_core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube_core::DynamicObject;
use serde_json::Value;

use crate::config::{NamespaceConfig, Settings};
use crate::mutate::{images_to_resolve, mutate_with, Mutation, ResolvedImages};
use crate::namespaces::NamespaceLookup;
use crate::registry::PodImages;
use crate::status::Feature;
use crate::warnings::Warnings;

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
    settings: &Settings,
) -> Result<Reviewed, ReviewError> {
    let parsed = parse(body)?;
    Ok(answer(
        parsed,
        namespaces,
        settings,
        &ResolvedImages::default(),
    ))
}

/// An AdmissionReview request, read but not answered yet.
#[derive(Debug)]
pub struct Parsed {
    /// The request without its objects.
    request: AdmissionRequest<Pod>,
    /// The pod, read apart from the envelope: a pod we cannot read must be a warning on an
    /// allowed response, not a 400 that the apiserver would drop silently.
    pod: Result<Pod, String>,
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
            let pod = request.object.take().ok_or_else(no_pod);
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
        Some(Ok(pod)) => Ok(pod),
        Some(Err(e)) => Err(format!("cannot read the pod ({e}); nothing injected")),
        None => Err(no_pod()),
    };
    Ok(Parsed { request, pod })
}

fn no_pod() -> String {
    "the request has no pod; nothing injected".to_string()
}

impl Parsed {
    /// The pod to mutate and its namespace's configuration, if this request is one to mutate.
    fn pod(
        &self,
        namespaces: &dyn NamespaceLookup,
    ) -> Option<(Arc<NamespaceConfig>, Result<&Pod, &str>)> {
        if !is_pod_create(&self.request) {
            return None;
        }
        let ns = namespaces.get(self.request.namespace.as_deref()?)?;
        Some((ns, self.pod.as_ref().map_err(String::as_str)))
    }

    /// The images whose ENTRYPOINT the mutation would use, with what the registry lookup needs
    /// of the pod; `None` when there are none.
    pub fn images(
        &self,
        namespaces: &dyn NamespaceLookup,
        settings: &Settings,
    ) -> Option<PodImages> {
        let (ns, Ok(pod)) = self.pod(namespaces)? else {
            return None;
        };
        let requests = images_to_resolve(pod, &ns, settings);
        if requests.is_empty() {
            return None;
        }
        let spec = pod.spec.as_ref()?;
        Some(PodImages {
            namespace: self.request.namespace.clone().unwrap_or_default(),
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
}

/// Answers a parsed request with the image commands resolved for it.
pub fn answer(
    parsed: Parsed,
    namespaces: &dyn NamespaceLookup,
    settings: &Settings,
    images: &ResolvedImages,
) -> Reviewed {
    answer_with(parsed, namespaces, settings, images, mutate_with)
}

type MutateFn = fn(&Pod, &NamespaceConfig, &Settings, &ResolvedImages) -> Mutation;

fn answer_with(
    parsed: Parsed,
    namespaces: &dyn NamespaceLookup,
    settings: &Settings,
    images: &ResolvedImages,
    mutate: MutateFn,
) -> Reviewed {
    let (response, outcome, applied) = respond(&parsed, namespaces, settings, images, mutate);
    Reviewed {
        review: response.into_review(),
        outcome,
        namespace: parsed.request.namespace,
        applied,
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
    parsed: &Parsed,
    namespaces: &dyn NamespaceLookup,
    settings: &Settings,
    images: &ResolvedImages,
    mutate: MutateFn,
) -> Answer {
    let mut response = AdmissionResponse::from(&parsed.request);
    let Some((ns, pod)) = parsed.pod(namespaces) else {
        return unpatched(response, Outcome::Skipped);
    };
    let pod = match pod {
        Ok(pod) => pod,
        Err(message) => return internal_error(response, message),
    };
    let Ok(Mutation {
        patch,
        warnings,
        status,
    }) = catch_unwind(AssertUnwindSafe(|| mutate(pod, &ns, settings, images)))
    else {
        return internal_error(response, "internal error; nothing injected");
    };
    if !warnings.is_empty() {
        response.warnings = Some(warnings);
    }
    if patch.0.is_empty() {
        return unpatched(response, Outcome::Unchanged);
    }
    match response.clone().with_patch(patch) {
        Ok(patched) => {
            let applied = status.map(|s| s.applied()).unwrap_or_default();
            (patched, Outcome::Mutated, applied)
        }
        Err(e) => internal_error(response, format!("internal error ({e}); nothing injected")),
    }
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
        return serde_json::to_vec(&review);
    };
    let patch = std::mem::take(patch);
    let mut value = serde_json::to_value(&review)?;
    if let Some(slot) = value.pointer_mut("/response/patch") {
        *slot = Value::String(base64::engine::general_purpose::STANDARD.encode(patch));
    }
    serde_json::to_vec(&value)
}

#[cfg(test)]
mod tests {
    use rstest::rstest;
    use serde_json::json;

    use super::*;
    use crate::config::Defaults;
    use crate::namespaces::StaticNamespaces;

    const UID: &str = "0c9a8d74-9cb7-44dd-b98e-09fd62def2f4";

    fn pod() -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"generateName": "shop-", "namespace": "shop"},
            "spec": {"containers": [{
                "name": "app",
                "image": "eclipse-temurin:21-jre",
                "resources": {"limits": {"memory": "1Gi"}},
            }]},
        })
    }

    fn body(
        operation: &str,
        resource: &str,
        namespace: &str,
        object: Value,
        dry_run: bool,
    ) -> Vec<u8> {
        let (group, kind, sub_resource) = match resource {
            "pods" => ("", "Pod", None),
            "pods/eviction" => ("", "Eviction", Some("eviction")),
            "configmaps" => ("", "ConfigMap", None),
            "deployments" => ("apps", "Deployment", None),
            other => panic!("no test resource {other}"),
        };
        let resource = resource.split('/').next().unwrap();
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": UID,
                "kind": {"group": group, "version": "v1", "kind": kind},
                "resource": {"group": group, "version": "v1", "resource": resource},
                "subResource": sub_resource,
                "namespace": namespace,
                "operation": operation,
                "userInfo": {"username": "admin"},
                "object": object,
                "oldObject": if operation == "UPDATE" { pod() } else { Value::Null },
                "dryRun": dry_run,
            },
        }))
        .unwrap()
    }

    /// `shop` and `kube-system` opted in; `legacy` did not.
    fn namespaces() -> StaticNamespaces {
        let ns = |name: &str, label: &str| {
            serde_json::from_value(json!({
                "metadata": {"name": name, "labels": {"jvm-guard.io/inject": label}},
            }))
            .unwrap()
        };
        let all = vec![
            ns("shop", "enabled"),
            ns("kube-system", "enabled"),
            ns("legacy", "disabled"),
        ];
        StaticNamespaces::new(all, &Defaults::default())
    }

    /// The response as the apiserver reads it: JSON, with the patch in base64.
    fn wire(reviewed: &Reviewed) -> Value {
        serde_json::from_slice(&to_json(reviewed.review.clone()).unwrap()).unwrap()
    }

    #[rstest]
    #[case::pod_create("CREATE", "pods", "shop", pod(), false, Outcome::Mutated, None)]
    #[case::dry_run("CREATE", "pods", "shop", pod(), true, Outcome::Mutated, None)]
    #[case::pod_update("UPDATE", "pods", "shop", pod(), false, Outcome::Skipped, None)]
    #[case::eviction(
        "CREATE",
        "pods/eviction",
        "shop",
        json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p"}}),
        false,
        Outcome::Skipped,
        None
    )]
    #[case::config_map(
        "CREATE",
        "configmaps",
        "shop",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}),
        false,
        Outcome::Skipped,
        None
    )]
    #[case::deployment("CREATE", "deployments", "shop", pod(), false, Outcome::Skipped, None)]
    #[case::not_opted_in("CREATE", "pods", "legacy", pod(), false, Outcome::Skipped, None)]
    #[case::unknown_namespace("CREATE", "pods", "other", pod(), false, Outcome::Skipped, None)]
    #[case::kube_system(
        "CREATE",
        "pods",
        "kube-system",
        pod(),
        false,
        Outcome::Unchanged,
        Some("jvm-guard: namespace kube-system is never mutated")
    )]
    #[case::broken_pod(
        "CREATE",
        "pods",
        "shop",
        json!({"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": "app"}}),
        false,
        Outcome::InternalError,
        Some("jvm-guard: cannot read the pod")
    )]
    #[case::no_object(
        "CREATE",
        "pods",
        "shop",
        Value::Null,
        false,
        Outcome::InternalError,
        Some("jvm-guard: the request has no pod")
    )]
    fn reviews(
        #[case] operation: &str,
        #[case] resource: &str,
        #[case] namespace: &str,
        #[case] object: Value,
        #[case] dry_run: bool,
        #[case] outcome: Outcome,
        #[case] warning: Option<&str>,
    ) {
        let body = body(operation, resource, namespace, object.clone(), dry_run);
        let reviewed = review(&body, &namespaces(), &Settings::default()).unwrap();
        assert_eq!(reviewed.outcome, outcome);
        assert_eq!(reviewed.namespace.as_deref(), Some(namespace));

        let out = wire(&reviewed);
        assert_eq!(out["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(out["kind"], "AdmissionReview");
        let response = &out["response"];
        assert_eq!(response["uid"], UID);
        assert_eq!(response["allowed"], true);
        let warnings = response["warnings"].as_array().cloned().unwrap_or_default();
        match warning {
            Some(w) => assert!(
                warnings.iter().any(|x| x.as_str().unwrap().starts_with(w)),
                "{warnings:?} lacks {w}"
            ),
            None => assert!(warnings.is_empty(), "unexpected {warnings:?}"),
        }

        assert_eq!(outcome == Outcome::Mutated, response.get("patch").is_some());
        assert_eq!(outcome == Outcome::Mutated, !reviewed.applied.is_empty());
        if outcome == Outcome::Mutated {
            let applied: Vec<_> = reviewed.applied.iter().map(|f| f.name()).collect();
            assert_eq!(
                applied,
                ["memory", "heap-dump", "exit-on-oom"],
                "the features of a pod with a memory limit and no tools"
            );
        }
        if outcome == Outcome::Mutated {
            assert_eq!(response["patchType"], "JSONPatch");
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(
                    response["patch"]
                        .as_str()
                        .expect("patch is a base64 string"),
                )
                .unwrap();
            let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
            assert!(!patch.0.is_empty());
            let mut mutated = object;
            json_patch::patch(&mut mutated, &patch).expect("the patch applies to the pod");
            let pod: Pod = serde_json::from_value(mutated).expect("the result is a valid Pod");
            let annotations = pod.metadata.annotations.unwrap();
            assert!(annotations.contains_key("jvm-guard.io/status"));
        }
    }

    #[test]
    fn a_mutated_pod_is_left_unchanged() {
        let body = body("CREATE", "pods", "shop", pod(), false);
        let first = wire(&review(&body, &namespaces(), &Settings::default()).unwrap());
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(first["response"]["patch"].as_str().unwrap())
            .unwrap();
        let mut mutated = pod();
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
        json_patch::patch(&mut mutated, &patch).unwrap();
        let again = self::body("CREATE", "pods", "shop", mutated, false);
        let reviewed = review(&again, &namespaces(), &Settings::default()).unwrap();
        assert_eq!(reviewed.outcome, Outcome::Unchanged);
        assert!(wire(&reviewed)["response"].get("patch").is_none());
    }

    #[test]
    fn a_panic_while_mutating_admits_with_a_warning() {
        fn panics(_: &Pod, _: &NamespaceConfig, _: &Settings, _: &ResolvedImages) -> Mutation {
            panic!("bug")
        }
        let body = body("CREATE", "pods", "shop", pod(), false);
        let parsed = parse(&body).unwrap();
        let images = ResolvedImages::default();
        let reviewed = answer_with(parsed, &namespaces(), &Settings::default(), &images, panics);
        assert_eq!(reviewed.outcome, Outcome::InternalError);
        let out = wire(&reviewed);
        assert_eq!(out["response"]["uid"], UID);
        assert_eq!(out["response"]["allowed"], true);
        assert!(out["response"].get("patch").is_none());
        assert_eq!(
            out["response"]["warnings"],
            json!(["jvm-guard: internal error; nothing injected"])
        );
    }

    #[test]
    fn every_namespace_in_dev_mode() {
        let body = body("CREATE", "pods", "anywhere", pod(), false);
        let dev = StaticNamespaces::every(&Defaults::default());
        let reviewed = review(&body, &dev, &Settings::default()).unwrap();
        assert_eq!(reviewed.outcome, Outcome::Mutated);
    }

    #[rstest]
    #[case::not_json(b"{not json".as_slice(), "request body is not JSON")]
    #[case::empty(b"".as_slice(), "request body is not JSON")]
    #[case::no_request(
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.as_slice(),
        "AdmissionReview has no request"
    )]
    #[case::null_request(br#"{"request":null}"#.as_slice(), "AdmissionReview has no request")]
    #[case::not_an_object(b"[1,2]".as_slice(), "AdmissionReview has no request")]
    #[case::no_uid(
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"operation":"CREATE"}}"#.as_slice(),
        "invalid AdmissionReview request"
    )]
    fn malformed_bodies_are_errors(#[case] body: &[u8], #[case] message: &str) {
        let err = review(body, &namespaces(), &Settings::default()).unwrap_err();
        assert!(err.to_string().starts_with(message), "{err}");
    }
}
