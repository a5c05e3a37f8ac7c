//! The protocol, request by request: what is answered, patched, refused.
use base64::Engine as _;
use rstest::rstest;
use serde_json::json;

use std::cell::Cell;

use super::*;
use crate::config::{Defaults, RESOLVED};
use crate::mutate::ImageConfig;
use crate::webhook::namespaces::StaticNamespaces;

const UID: &str = "0c9a8d74-9cb7-44dd-b98e-09fd62def2f4";

fn pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "shop-", "namespace": "shop"},
        "spec": {"containers": [{
            "name": "app",
            "image": "eclipse-temurin:21-jre",
            "command": ["java", "-jar", "/app/app.jar"],
            "resources": {"limits": {"memory": "1Gi"}},
        }]},
    })
}

fn body(operation: &str, resource: &str, namespace: &str, object: Value, dry_run: bool) -> Vec<u8> {
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
#[case::another_api_version(
    "CREATE",
    "pods",
    "shop",
    { let mut p = pod(); p["apiVersion"] = json!("apps/v1"); p },
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
    let reviewed = review(&body, &namespaces(), &ServerSettings::default()).unwrap();
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
    let first = wire(&review(&body, &namespaces(), &ServerSettings::default()).unwrap());
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(first["response"]["patch"].as_str().unwrap())
        .unwrap();
    let mut mutated = pod();
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
    json_patch::patch(&mut mutated, &patch).unwrap();
    let again = self::body("CREATE", "pods", "shop", mutated, false);
    let reviewed = review(&again, &namespaces(), &ServerSettings::default()).unwrap();
    assert_eq!(reviewed.outcome, Outcome::Unchanged);
    assert!(wire(&reviewed)["response"].get("patch").is_none());
}

#[test]
fn a_panic_while_mutating_admits_with_a_warning() {
    fn panics(_: Plan<'_>, _: &ResolvedImages) -> Mutation {
        panic!("bug")
    }
    let body = body("CREATE", "pods", "shop", pod(), false);
    let parsed = parse(&body).unwrap();
    let images = ResolvedImages::default();
    let namespaces = namespaces();
    let planned = parsed.plan(&namespaces, &ServerSettings::default());
    let reviewed = planned.answer_with(&images, panics);
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
fn the_configuration_is_resolved_once_per_admission() {
    let mut object = pod();
    object["metadata"]["annotations"] = json!({"jvm-guard.io/ulimits": "nofile=1024"});
    let body = body("CREATE", "pods", "shop", object, false);
    let settings = ServerSettings {
        tools_image: Some("tools:1".into()),
        ..ServerSettings::default()
    };
    let parsed = parse(&body).unwrap();
    let namespaces = namespaces();
    let before = RESOLVED.with(Cell::get);
    let planned = parsed.plan(&namespaces, &settings);
    let lookup = planned
        .images()
        .expect("the image has no command: it is looked up");
    let mut images = ResolvedImages::default();
    let command = ImageConfig {
        entrypoint: vec!["java".into()],
        cmd: vec![],
        ..ImageConfig::default()
    };
    images.insert(lookup.requests[0].clone(), Ok(command));
    let reviewed = planned.answer(&images);
    assert_eq!(reviewed.outcome, Outcome::Mutated);
    assert_eq!(
        RESOLVED.with(Cell::get) - before,
        1,
        "one resolution for lookup and answer"
    );
}

#[test]
fn every_namespace_in_dev_mode() {
    let body = body("CREATE", "pods", "anywhere", pod(), false);
    let dev = StaticNamespaces::every(&Defaults::default());
    let reviewed = review(&body, &dev, &ServerSettings::default()).unwrap();
    assert_eq!(reviewed.outcome, Outcome::Mutated);
    // Each namespace's configuration is built once and kept, as a cluster's is.
    let first = dev.get("anywhere").unwrap();
    assert!(Arc::ptr_eq(&first, &dev.get("anywhere").unwrap()));
    assert!(!Arc::ptr_eq(&first, &dev.get("elsewhere").unwrap()));
    assert_eq!(dev.get("elsewhere").unwrap().name, "elsewhere");
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
    let err = review(body, &namespaces(), &ServerSettings::default()).unwrap_err();
    assert!(err.to_string().starts_with(message), "{err}");
}

#[tokio::test]
async fn a_namespace_the_cache_does_not_know_yet_is_a_warning() {
    use crate::webhook::namespaces::KubeNamespaces;
    use kube::runtime::reflector;
    use kube::runtime::watcher::Event;

    let (store, mut writer) = reflector::store();
    let lookup = KubeNamespaces::from_store(store, Defaults::default());
    writer.apply_watcher_event(&Event::Init);
    writer.apply_watcher_event(&Event::InitDone);
    // The label arrived at the apiserver, not yet in the watch: the pod goes through unchanged,
    // and says so.
    let reviewed = review(
        &body("CREATE", "pods", "shop", pod(), false),
        &lookup,
        &ServerSettings::default(),
    )
    .unwrap();
    assert_eq!(reviewed.outcome, Outcome::Skipped);
    let out = wire(&reviewed);
    assert!(out["response"].get("patch").is_none());
    let warnings = out["response"]["warnings"].to_string();
    assert!(
        warnings.contains("namespace shop is not known as opted in yet"),
        "{warnings}"
    );
    // The static sources know every namespace they serve: no warning there.
    let reviewed = review(
        &body("CREATE", "pods", "elsewhere", pod(), false),
        &namespaces(),
        &ServerSettings::default(),
    )
    .unwrap();
    assert!(wire(&reviewed)["response"].get("warnings").is_none());
}
