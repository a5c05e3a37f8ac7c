//! Image ENTRYPOINT/CMD lookups (SPEC §7) against a real registry on loopback: Debian's
//! `docker-registry` (the CNCF Distribution registry), started here with a temporary config
//! (tests/support/registry.rs, shared with the e2e suite). The tests push images through the
//! registry's HTTP API, then check the lookup and the mutation it leads to. `scripts/test.sh`
//! installs the registry; without it these tests fail.

#[path = "support/registry.rs"]
mod registry_support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Method, Request};
use base64::Engine as _;
use http_body_util::BodyExt;
use jvm_guard::config::ServerSettings;
use jvm_guard::mutate::tools::TOOLS_BINARY;
use jvm_guard::mutate::ImageCommand;
use jvm_guard::mutate::{images_to_resolve, mutate_with, ImageRequest, Platform};
use jvm_guard::registry::{PodImages, RegistryConfig, Resolver, StaticSecrets};
use jvm_guard::webhook::metrics::Metrics;
use jvm_guard::webhook::namespaces::StaticNamespaces;
use jvm_guard::webhook::router::{router, AppState};
use jvm_guard::{Defaults, NamespaceConfig};
use k8s_openapi::api::core::v1::Pod;
use registry_support::{Registry, PASSWORD, USER};
use serde_json::{json, Value};
use tower::ServiceExt;

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn resolver(registry: &Registry) -> Resolver {
    Resolver::new(RegistryConfig {
        insecure: vec![registry.host()],
        ..RegistryConfig::default()
    })
}

fn settings() -> ServerSettings {
    ServerSettings {
        tools_image: Some("ghcr.io/jvm-guard/jvm-guard:test".into()),
        ..ServerSettings::default()
    }
}

/// A pod asking for ulimits, whose one container runs `image` with these command and args.
fn pod(image: &str, command: Option<&[&str]>, args: Option<&[&str]>, arch: Option<&str>) -> Value {
    let mut container = json!({
        "name": "app",
        "image": image,
        "resources": {"limits": {"memory": "1Gi"}},
    });
    if let Some(command) = command {
        container["command"] = json!(command);
    }
    if let Some(args) = args {
        container["args"] = json!(args);
    }
    let mut spec = json!({"containers": [container]});
    if let Some(arch) = arch {
        spec["nodeSelector"] = json!({"kubernetes.io/arch": arch});
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "app",
            "namespace": "shop",
            "annotations": {"jvm-guard.io/ulimits": "nofile=65536"},
        },
        "spec": spec,
    })
}

fn namespace(name: &str) -> NamespaceConfig {
    NamespaceConfig::new(name, None, &Defaults::default())
}

/// What the webhook would do with the pod: resolve its images in `ns`, mutate, apply the
/// patch. Returns the container as mutated and the warnings.
async fn admit(resolver: &Resolver, pod_value: Value, ns: &str) -> (Value, Vec<String>) {
    let pod: Pod = serde_json::from_value(pod_value.clone()).unwrap();
    let ns_config = namespace(ns);
    let settings = settings();
    let requests = images_to_resolve(&pod, &ns_config, &settings);
    let pull_secrets = pod
        .spec
        .as_ref()
        .and_then(|s| s.image_pull_secrets.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|s| s.name)
        .collect();
    let images = resolver
        .resolve(&PodImages {
            namespace: ns.into(),
            pull_secrets,
            requests,
        })
        .await;
    let mutation = mutate_with(&pod, &ns_config, &settings, &images);
    let mut mutated = pod_value;
    json_patch::patch(&mut mutated, &mutation.patch).expect("the patch applies");
    let _: Pod = serde_json::from_value(mutated.clone()).expect("a valid pod");
    (mutated["spec"]["containers"][0].clone(), mutation.warnings)
}

fn wrapped(tail: &[&str]) -> Value {
    let mut command = vec![TOOLS_BINARY, "exec", "--rlimit", "nofile=65536:65536", "--"];
    command.extend(tail);
    json!(command)
}

fn assert_unwrapped(container: &Value, warnings: &[String], reason: &str) {
    assert!(container.get("command").is_none(), "{container}");
    let warning = warnings
        .iter()
        .find(|w| w.contains("image ENTRYPOINT is unknown"))
        .unwrap_or_else(|| panic!("no unresolved warning in {warnings:?}"));
    assert!(
        warning.contains(reason) && warning.ends_with("ulimits not applied"),
        "{warning:?} lacks {reason:?}"
    );
}

#[tokio::test]
async fn entrypoint_only() {
    let registry = Registry::start(false).await;
    registry
        .push_image(
            "shop/api",
            "1.0",
            Some(&["java", "-jar", "/app.jar"]),
            None,
            false,
            "amd64",
        )
        .await;
    let image = format!("{}/shop/api:1.0", registry.host());
    let (container, warnings) =
        admit(&resolver(&registry), pod(&image, None, None, None), "shop").await;
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(container["command"], wrapped(&["java", "-jar", "/app.jar"]));
    assert!(
        container.get("args").is_none(),
        "no CMD, no args: {container}"
    );
}

#[tokio::test]
async fn entrypoint_and_cmd_docker_media_types() {
    let registry = Registry::start(false).await;
    registry
        .push_image(
            "shop/api",
            "2.0",
            Some(&["/docker-entrypoint.sh"]),
            Some(&["java", "-jar", "/app.jar"]),
            true,
            "amd64",
        )
        .await;
    let image = format!("{}/shop/api:2.0", registry.host());
    let (container, warnings) =
        admit(&resolver(&registry), pod(&image, None, None, None), "shop").await;
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(container["command"], wrapped(&["/docker-entrypoint.sh"]));
    assert_eq!(container["args"], json!(["java", "-jar", "/app.jar"]));
}

#[tokio::test]
async fn cmd_only() {
    let registry = Registry::start(false).await;
    registry
        .push_image(
            "shop/worker",
            "1",
            None,
            Some(&["java", "-cp", "/app/lib/*", "shop.Worker"]),
            false,
            "amd64",
        )
        .await;
    let image = format!("{}/shop/worker:1", registry.host());
    let (container, warnings) =
        admit(&resolver(&registry), pod(&image, None, None, None), "shop").await;
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(container["command"], wrapped(&[]));
    assert_eq!(
        container["args"],
        json!(["java", "-cp", "/app/lib/*", "shop.Worker"])
    );
}

#[tokio::test]
async fn args_present_replace_cmd() {
    let registry = Registry::start(false).await;
    let manifest = registry
        .push_image(
            "shop/api",
            "3.0",
            Some(&["java"]),
            Some(&["-jar", "/app.jar"]),
            false,
            "amd64",
        )
        .await;
    // By digest too: a digest reference resolves like a tag.
    let image = format!(
        "{}/shop/api@{}",
        registry.host(),
        manifest["digest"].as_str().unwrap()
    );
    let user_args = ["-jar", "/other.jar", "--port=9000"];
    let (container, warnings) = admit(
        &resolver(&registry),
        pod(&image, None, Some(&user_args), None),
        "shop",
    )
    .await;
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(container["command"], wrapped(&["java"]));
    assert_eq!(container["args"], json!(user_args), "args untouched");
}

#[tokio::test]
async fn a_command_needs_no_lookup() {
    let pod: Pod = serde_json::from_value(pod(
        "unreachable.invalid/app:1",
        Some(&["java", "-jar", "/app.jar"]),
        None,
        None,
    ))
    .unwrap();
    assert!(images_to_resolve(&pod, &namespace("shop"), &settings()).is_empty());
}

#[tokio::test]
async fn multi_arch_index_picks_the_node_selector_platform() {
    let registry = Registry::start(false).await;
    let amd64 = registry
        .push_image(
            "shop/multi",
            "amd64-only",
            Some(&["/amd64/java"]),
            Some(&["-version"]),
            false,
            "amd64",
        )
        .await;
    let arm64 = registry
        .push_image(
            "shop/multi",
            "arm64-only",
            Some(&["/arm64/java"]),
            Some(&["-version"]),
            false,
            "arm64",
        )
        .await;
    let with_platform = |mut descriptor: Value, arch: &str| {
        descriptor["platform"] = json!({"os": "linux", "architecture": arch});
        descriptor
    };
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [with_platform(arm64, "arm64"), with_platform(amd64, "amd64")],
    });
    registry
        .push_manifest("shop/multi", "1.0", OCI_INDEX, &index)
        .await;
    let image = format!("{}/shop/multi:1.0", registry.host());
    let resolver = resolver(&registry);

    let (container, warnings) =
        admit(&resolver, pod(&image, None, None, Some("arm64")), "shop").await;
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(container["command"], wrapped(&["/arm64/java"]));

    let (container, warnings) = admit(&resolver, pod(&image, None, None, None), "shop").await;
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        container["command"],
        wrapped(&["/amd64/java"]),
        "no node selector: linux/amd64"
    );

    let (container, warnings) =
        admit(&resolver, pod(&image, None, None, Some("s390x")), "shop").await;
    assert_unwrapped(&container, &warnings, "has no linux/s390x image");
}

#[tokio::test]
async fn missing_tag_admits_with_a_warning() {
    let registry = Registry::start(false).await;
    registry
        .push_image("shop/api", "1.0", Some(&["java"]), None, false, "amd64")
        .await;
    let image = format!("{}/shop/api:9.9", registry.host());
    let (container, warnings) =
        admit(&resolver(&registry), pod(&image, None, None, None), "shop").await;
    assert_unwrapped(&container, &warnings, "shop/api:9.9");
}

fn docker_config_json(host: &str) -> Vec<u8> {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    serde_json::to_vec(&json!({"auths": {host: {"auth": auth}}})).unwrap()
}

#[tokio::test]
async fn basic_auth_registry_with_and_without_a_pull_secret() {
    let registry = Registry::start(true).await;
    registry
        .push_image(
            "private/api",
            "1.0",
            Some(&["java"]),
            Some(&["-jar", "/app.jar"]),
            false,
            "amd64",
        )
        .await;
    let image = format!("{}/private/api:1.0", registry.host());
    let secrets = StaticSecrets(HashMap::from([(
        ("shop".to_string(), "regcred".to_string()),
        docker_config_json(&registry.host()),
    )]));
    let resolver = Resolver::new(RegistryConfig {
        insecure: vec![registry.host()],
        secrets: Some(Arc::new(secrets)),
        ..RegistryConfig::default()
    });
    let with_secret = |ns: &str| {
        let mut pod = pod(&image, None, None, None);
        pod["spec"]["imagePullSecrets"] = json!([{"name": "regcred"}]);
        pod["metadata"]["namespace"] = json!(ns);
        pod
    };

    let (container, warnings) = admit(&resolver, pod(&image, None, None, None), "shop").await;
    assert_unwrapped(&container, &warnings, "Not authorized");

    let (container, warnings) = admit(&resolver, with_secret("shop"), "shop").await;
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(container["command"], wrapped(&["java"]));
    assert_eq!(container["args"], json!(["-jar", "/app.jar"]));

    // The same secret name in a namespace that has no such Secret: no credentials, and the
    // answer cached for the shop namespace's credentials is not shared.
    let (container, warnings) = admit(&resolver, with_secret("other"), "other").await;
    assert_unwrapped(&container, &warnings, "Not authorized");
}

#[tokio::test]
async fn pull_secrets_are_not_read_unless_enabled() {
    let registry = Registry::start(true).await;
    registry
        .push_image("private/api", "1.0", Some(&["java"]), None, false, "amd64")
        .await;
    let image = format!("{}/private/api:1.0", registry.host());
    let mut pod = pod(&image, None, None, None);
    pod["spec"]["imagePullSecrets"] = json!([{"name": "regcred"}]);
    // No secret source configured: the flag is off.
    let (container, warnings) = admit(&resolver(&registry), pod, "shop").await;
    assert_unwrapped(&container, &warnings, "Not authorized");
}

#[tokio::test]
async fn https_is_the_default() {
    let registry = Registry::start(false).await;
    registry
        .push_image("shop/api", "1.0", Some(&["java"]), None, false, "amd64")
        .await;
    let image = format!("{}/shop/api:1.0", registry.host());
    let resolver = Resolver::new(RegistryConfig::default());
    let (container, warnings) = admit(&resolver, pod(&image, None, None, None), "shop").await;
    assert_unwrapped(
        &container,
        &warnings,
        &format!("https://{}", registry.host()),
    );
}

#[tokio::test]
async fn answers_are_cached_and_shared() {
    let mut registry = Registry::start(false).await;
    registry
        .push_image("shop/api", "1.0", Some(&["java"]), None, false, "amd64")
        .await;
    let resolver = resolver(&registry);
    let request = ImageRequest {
        image: format!("{}/shop/api:1.0", registry.host()),
        platform: Platform::default(),
    };
    // Concurrent lookups of one reference: one cache entry, one answer.
    let (a, b) = tokio::join!(
        resolver.lookup(&request, &[]),
        resolver.lookup(&request, &[])
    );
    let expected = ImageCommand {
        entrypoint: vec!["java".into()],
        cmd: vec![],
    };
    assert_eq!(a.as_ref(), Ok(&expected));
    assert_eq!(b.as_ref(), Ok(&expected));
    assert_eq!(resolver.cached(), 1);

    registry.child.kill().unwrap();
    registry.child.wait().unwrap();
    assert_eq!(
        resolver.lookup(&request, &[]).await,
        Ok(expected),
        "a tag within its TTL is answered from the cache"
    );
}

/// Accepts connections and never answers.
async fn silent_registry() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    addr
}

#[tokio::test]
async fn slow_registry_budget_is_respected_through_the_webhook() {
    let addr = silent_registry().await;
    let budget = Duration::from_millis(300);
    let registry = Resolver::new(RegistryConfig {
        insecure: vec![addr.to_string()],
        budget,
        ..RegistryConfig::default()
    });
    let app = router(AppState {
        namespaces: Arc::new(StaticNamespaces::every(&Defaults::default())),
        settings: Arc::new(settings()),
        metrics: Arc::new(Metrics::new()),
        registry: Some(Arc::new(registry)),
    });
    let image = format!("{addr}/shop/api:1.0");
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "b3a5f0d2-0000-4000-8000-000000000001",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop",
            "operation": "CREATE",
            "userInfo": {"username": "admin"},
            "object": pod(&image, None, None, None),
        },
    });
    let request = Request::builder()
        .method(Method::POST)
        .uri("/mutate")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(&review).unwrap()))
        .unwrap();
    let started = Instant::now();
    let response = app.oneshot(request).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let out: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(out["response"]["allowed"], true);
    let warnings = out["response"]["warnings"].to_string();
    assert!(
        warnings.contains("image ENTRYPOINT is unknown (no answer from the registry within 300ms)"),
        "{warnings}"
    );
    assert!(
        elapsed < budget + Duration::from_secs(2),
        "answered after {elapsed:?}"
    );
    assert!(elapsed >= budget, "answered before the budget: {elapsed:?}");
}

/// `jvm-guard mutate` resolves too, unless `--offline`.
#[tokio::test]
async fn mutate_command_resolves_unless_offline() {
    let registry = Registry::start(false).await;
    registry
        .push_image(
            "shop/api",
            "1.0",
            Some(&["java"]),
            Some(&["-jar", "/app.jar"]),
            false,
            "amd64",
        )
        .await;
    let image = format!("{}/shop/api:1.0", registry.host());
    let input = serde_json::to_string(&pod(&image, None, None, None)).unwrap();
    let run = |extra: &[&str]| {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pod.json");
        std::fs::write(&file, &input).unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_jvm-guard"))
            .args(["mutate", "-o", "json", "-f"])
            .arg(&file)
            .args(extra)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let out: Value = serde_json::from_slice(&output.stdout).unwrap();
        (
            out["spec"]["containers"][0].clone(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    // The registry is another process: blocking this test's runtime holds nothing up.
    let host = registry.host();
    let (container, stderr) = run(&["--insecure-registry", &host]);
    assert!(stderr.is_empty(), "{stderr}");
    assert_eq!(container["command"], wrapped(&["java"]));
    assert_eq!(container["args"], json!(["-jar", "/app.jar"]));

    let (container, stderr) = run(&["--offline", "--insecure-registry", &host]);
    assert!(container.get("command").is_none(), "{container}");
    assert!(
        stderr.contains("no command, and the image ENTRYPOINT is unknown; set command to wrap it"),
        "{stderr}"
    );
}
