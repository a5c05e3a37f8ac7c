//! Image ENTRYPOINT/CMD lookups (SPEC §7) against a real registry on loopback: Debian's
//! `docker-registry` (the CNCF Distribution registry), started here with a temporary config
//! (tests/support/registry.rs, shared with the e2e suite). The tests push images through the
//! registry's HTTP API, then check the lookup and the mutation it leads to. `scripts/test.sh`
//! installs the registry; without it these tests fail.

// The registry's port; the rest is for the suites that run jvm-guard as a process.
#[allow(dead_code)]
#[path = "support/process.rs"]
mod process;
#[path = "support/registry.rs"]
mod registry_support;

#[path = "support/hostile.rs"]
mod hostile;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Method, Request};
use base64::Engine as _;
use hostile::{respond, Hostile};
use http_body_util::BodyExt;
use hyper::StatusCode;
use jvm_guard::config::ServerSettings;
use jvm_guard::mutate::tools::TOOLS_BINARY;
use jvm_guard::mutate::ImageConfig;
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
    let (pod, warnings) = admit_pod(resolver, pod_value, ns).await;
    (pod["spec"]["containers"][0].clone(), warnings)
}

/// [`admit`], returning the whole pod as mutated.
async fn admit_pod(resolver: &Resolver, pod_value: Value, ns: &str) -> (Value, Vec<String>) {
    let pod: jvm_guard::mutate::pod::Pod = serde_json::from_value(pod_value.clone()).unwrap();
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
    mutation
        .patch
        .apply(&mut mutated)
        .expect("the patch applies");
    let _: Pod = serde_json::from_value(mutated.clone()).expect("a valid pod");
    (mutated, mutation.warnings)
}

fn wrapped(tail: &[&str]) -> Value {
    let mut command = vec![
        TOOLS_BINARY,
        "exec",
        "--supervise",
        "--termination-log",
        "/dev/termination-log",
        "--rlimit",
        "nofile=65536:65536",
        "--",
    ];
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
async fn a_command_is_looked_up_for_evidence_and_wrapped_whatever_the_answer() {
    let value = pod(
        "unreachable.invalid/app:1",
        Some(&["java", "-jar", "/app.jar"]),
        None,
        None,
    );
    let typed: jvm_guard::mutate::pod::Pod = serde_json::from_value(value.clone()).unwrap();
    let requests = images_to_resolve(&typed, &namespace("shop"), &settings());
    assert_eq!(requests.len(), 1, "the image config is evidence");
    let registry = Registry::start(false).await;
    let (container, _) = admit(&resolver(&registry), value, "shop").await;
    assert_eq!(container["command"], wrapped(&["java", "-jar", "/app.jar"]));
}

/// The status of container 0 of a mutated pod.
fn status_of(pod: &Value) -> Value {
    let status = pod["metadata"]["annotations"]["jvm-guard.io/status"]
        .as_str()
        .unwrap_or_else(|| panic!("no status: {pod}"));
    let status: Value = serde_json::from_str(status).unwrap();
    let name = pod["spec"]["containers"][0]["name"].as_str().unwrap();
    status["containers"][name].clone()
}

/// The image config as evidence, from a real registry: what an image's `Env` and ENTRYPOINT
/// say decides the status of each container, with no command in the pod.
#[tokio::test]
async fn the_image_config_decides_the_status() {
    let registry = Registry::start(false).await;
    let java = ["JAVA_HOME=/opt/java/openjdk", "JAVA_VERSION=jdk-21.0.5+11"];
    let heap_in_tool_options = [java[0], java[1], "JAVA_TOOL_OPTIONS=-Xmx600m -Dapp=1"];
    registry
        .push_image_with_env(
            "shop/heap",
            "1",
            &["java", "-jar", "/app.jar"],
            &heap_in_tool_options,
        )
        .await;
    let heap_variable = [java[0], "REPO_MAX_HEAP=2g"];
    registry
        .push_image_with_env(
            "shop/repo",
            "1",
            &["/opt/repo/bin/repo", "run"],
            &heap_variable,
        )
        .await;
    registry
        .push_image_with_env("shop/script", "1", &["/opt/app/bin/start.sh"], &java)
        .await;
    let nginx = ["NGINX_VERSION=1.27.3", "PKG_RELEASE=1"];
    registry
        .push_image_with_env("shop/web", "1", &["/docker-entrypoint.sh", "nginx"], &nginx)
        .await;
    let resolver = resolver(&registry);
    let host = registry.host();
    let admitted = |repo: &str| {
        let value = pod(&format!("{host}/shop/{repo}:1"), None, None, None);
        let resolver = &resolver;
        async move { admit_pod(resolver, value, "shop").await }
    };

    let (heap, _) = admitted("heap").await;
    let status = status_of(&heap);
    assert_eq!(
        status["skipped"]["memory"], "heap set by JAVA_TOOL_OPTIONS=-Xmx600m",
        "{status}"
    );
    assert_eq!(status["jvm"], "seen", "{status}");
    assert!(
        status["applied"]
            .as_array()
            .unwrap()
            .contains(&json!("heap-dump")),
        "{status}"
    );

    let (repo, _) = admitted("repo").await;
    let status = status_of(&repo);
    assert_eq!(
        status["skipped"]["memory"], "heap set by REPO_MAX_HEAP=2g",
        "{status}"
    );

    let (script, warnings) = admitted("script").await;
    let status = status_of(&script);
    for feature in ["memory", "heap-dump"] {
        let reason = status["unverified"][feature].as_str().unwrap_or_default();
        assert!(
            reason.starts_with("started by /opt/app/bin/start.sh"),
            "{status}"
        );
    }
    assert_eq!(status["jvm"], "seen", "JAVA_HOME in the image: {status}");
    assert_eq!(
        warnings.iter().filter(|w| w.contains("unverified")).count(),
        1,
        "{warnings:?}"
    );

    let (web, warnings) = admitted("web").await;
    assert!(
        web["metadata"]["annotations"]["jvm-guard.io/status"]
            .as_str()
            .is_none_or(|s| !s.contains("\"applied\"")),
        "a server image is not guarded: {web}"
    );
    assert!(web["spec"]["initContainers"].is_null(), "{web}");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("no container looks like a JVM")),
        "{warnings:?}"
    );
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
    let expected = ImageConfig {
        entrypoint: vec!["java".into()],
        env: vec![("PATH".into(), "/usr/bin".into())],
        ..ImageConfig::default()
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
        stderr.contains(
            "no command, and the image ENTRYPOINT is unknown (not looked up: --offline); set command to wrap it"
        ),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------------
// Hostile registries (SPEC §7): a pod author picks the image reference, so the registry, and
// what it names, may be anyone's. Each is a small server on loopback (tests/support/hostile.rs).

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// An image manifest and its config blob, ENTRYPOINT `entrypoint`: (manifest, config, digest
/// of the config).
fn image_parts(entrypoint: &[&str]) -> (Vec<u8>, Vec<u8>, String) {
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": entrypoint},
    }))
    .unwrap();
    let digest = registry_support::sha256(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest, "size": config.len()},
        "layers": [],
    }))
    .unwrap();
    (manifest, config, digest)
}

fn insecure(hosts: &[&Hostile]) -> Resolver {
    Resolver::new(RegistryConfig {
        insecure: hosts.iter().map(|h| h.host()).collect(),
        ..RegistryConfig::default()
    })
}

fn image_on(registry: &Hostile, tag: &str) -> Value {
    pod(
        &format!("{}/shop/api:{tag}", registry.host()),
        None,
        None,
        None,
    )
}

const SECRET: &str = "internal-secret: what only the cluster network should see";

#[tokio::test]
async fn redirects_to_another_host_are_not_followed() {
    let internal =
        Hostile::start(|_, _| respond(StatusCode::INTERNAL_SERVER_ERROR, &[], SECRET)).await;
    let plain = format!("http://{}/latest/meta-data/", internal.host());
    let tls = format!("https://{}/admin", internal.host());
    let registry = Hostile::start(move |request, _| match request.uri().path() {
        "/v2/shop/api/manifests/plain" => respond(StatusCode::FOUND, &[("location", &plain)], ""),
        "/v2/shop/api/manifests/tls" => {
            respond(StatusCode::TEMPORARY_REDIRECT, &[("location", &tls)], "")
        }
        _ => respond(StatusCode::NOT_FOUND, &[], ""),
    })
    .await;
    let resolver = insecure(&[&registry]);
    for (tag, reason) in [
        ("plain", "is not HTTPS"),
        ("tls", "is a private, loopback or link-local address"),
    ] {
        let (container, warnings) = admit(&resolver, image_on(&registry, tag), "shop").await;
        assert_unwrapped(&container, &warnings, reason);
        assert!(
            !format!("{warnings:?}").contains("internal-secret"),
            "{warnings:?}"
        );
    }
    assert_eq!(
        internal.connections(),
        0,
        "the internal service was reached: {:?}",
        internal.requests()
    );
}

#[tokio::test]
async fn redirects_on_the_registry_and_to_listed_hosts_are_followed() {
    let (manifest, config, digest) = image_parts(&["java", "-jar", "/app.jar"]);
    let cdn = Hostile::start(move |request, _| match request.uri().path() {
        "/blobs/config" => respond(StatusCode::OK, &[], config.clone()),
        _ => respond(StatusCode::NOT_FOUND, &[], ""),
    })
    .await;
    let blob_path = format!("/v2/shop/api/blobs/{digest}");
    let cdn_url = format!("http://{}/blobs/config", cdn.host());
    let registry = Hostile::start(move |request, _| match request.uri().path() {
        "/v2/shop/api/manifests/1.0" => respond(
            StatusCode::MOVED_PERMANENTLY,
            &[("location", "/v2/shop/api/manifests/moved")],
            "",
        ),
        "/v2/shop/api/manifests/moved" => respond(
            StatusCode::OK,
            &[("content-type", OCI_MANIFEST)],
            manifest.clone(),
        ),
        path if path == blob_path => respond(
            StatusCode::TEMPORARY_REDIRECT,
            &[("location", &cdn_url)],
            "",
        ),
        _ => respond(StatusCode::NOT_FOUND, &[], ""),
    })
    .await;
    // The blob store on another host is listed, as a local one would be.
    let (container, warnings) = admit(
        &insecure(&[&registry, &cdn]),
        image_on(&registry, "1.0"),
        "shop",
    )
    .await;
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(container["command"], wrapped(&["java", "-jar", "/app.jar"]));
    assert_eq!(cdn.requests(), ["GET /blobs/config"]);
}

/// A registry that wants a bearer token from `realm` and serves the image only with
/// `Bearer good-token`.
async fn token_registry(realm: String) -> Hostile {
    let (manifest, config, digest) = image_parts(&["java"]);
    let challenge = format!(r#"Bearer realm="{realm}",service="test-registry""#);
    let blob_path = format!("/v2/shop/api/blobs/{digest}");
    Hostile::start(move |request, _| {
        let authorized = request
            .headers()
            .get("authorization")
            .is_some_and(|v| v == "Bearer good-token");
        if !authorized {
            return respond(
                StatusCode::UNAUTHORIZED,
                &[("www-authenticate", &challenge)],
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
            );
        }
        match request.uri().path() {
            "/v2/shop/api/manifests/1.0" => respond(
                StatusCode::OK,
                &[("content-type", OCI_MANIFEST)],
                manifest.clone(),
            ),
            path if path == blob_path => respond(StatusCode::OK, &[], config.clone()),
            _ => respond(StatusCode::NOT_FOUND, &[], ""),
        }
    })
    .await
}

async fn token_server() -> Hostile {
    Hostile::start(|_, _| {
        respond(
            StatusCode::OK,
            &[("content-type", "application/json")],
            r#"{"token":"good-token","expires_in":300}"#,
        )
    })
    .await
}

#[tokio::test]
async fn token_realms_on_private_addresses_or_plain_http_are_not_fetched() {
    let auth = token_server().await;
    let port = auth.addr.port();
    for (realm, reason) in [
        (format!("http://{}/token", auth.host()), "is not HTTPS"),
        (
            format!("https://{}/token", auth.host()),
            "is a private, loopback",
        ),
        (
            format!("https://localhost:{port}/token"),
            "is a private, loopback",
        ),
        (
            format!("https://[::1]:{port}/token"),
            "is a private, loopback",
        ),
        (
            "https://169.254.169.254/latest/api/token".into(),
            "is a private, loopback",
        ),
        ("https://10.0.0.1/token".into(), "is a private, loopback"),
    ] {
        let registry = token_registry(realm.clone()).await;
        let (container, warnings) =
            admit(&insecure(&[&registry]), image_on(&registry, "1.0"), "shop").await;
        assert_unwrapped(&container, &warnings, reason);
        assert!(
            warnings.iter().any(|w| w.contains("token realm")),
            "{realm}: {warnings:?}"
        );
    }
    assert_eq!(
        auth.connections(),
        0,
        "a realm was fetched: {:?}",
        auth.requests()
    );
}

#[tokio::test]
async fn a_listed_token_realm_is_fetched_with_the_credentials_and_its_token_used() {
    let auth = token_server().await;
    let registry = token_registry(format!("http://{}/token", auth.host())).await;
    let (container, warnings) = admit(
        &insecure(&[&registry, &auth]),
        image_on(&registry, "1.0"),
        "shop",
    )
    .await;
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(container["command"], wrapped(&["java"]));
    assert_eq!(
        auth.requests(),
        ["GET /token?scope=repository%3Ashop%2Fapi%3Apull&service=test-registry"]
    );
    assert!(
        registry
            .requests()
            .iter()
            .any(|r| r.ends_with("[Bearer good-token]")),
        "{:?}",
        registry.requests()
    );

    // With a pull secret, the realm gets its basic credentials.
    let secrets = StaticSecrets(HashMap::from([(
        ("shop".to_string(), "regcred".to_string()),
        docker_config_json(&registry.host()),
    )]));
    let resolver = Resolver::new(RegistryConfig {
        insecure: vec![registry.host(), auth.host()],
        secrets: Some(Arc::new(secrets)),
        ..RegistryConfig::default()
    });
    let mut pod = image_on(&registry, "1.0");
    pod["spec"]["imagePullSecrets"] = json!([{"name": "regcred"}]);
    let (_, warnings) = admit(&resolver, pod, "shop").await;
    assert!(warnings.is_empty(), "{warnings:?}");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    assert!(
        auth.requests()
            .last()
            .unwrap()
            .ends_with(&format!("[Basic {basic}]")),
        "{:?}",
        auth.requests()
    );
}

/// `--allow-registry` (here from its variable, through `jvm-guard mutate`): a realm on
/// loopback over HTTPS is fetched once listed. The test server speaks no TLS, so the lookup
/// still fails, but after connecting, not before.
#[tokio::test]
async fn allow_registry_lets_a_realm_on_a_private_address_be_reached() {
    let auth = token_server().await;
    let registry = token_registry(format!("https://{}/token", auth.host())).await;
    let input = serde_json::to_string(&image_on(&registry, "1.0")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pod.json");
    std::fs::write(&file, &input).unwrap();
    let registry_host = registry.host();
    let run = move |allow: Option<String>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_jvm-guard"));
        command
            .args([
                "mutate",
                "-o",
                "json",
                "--insecure-registry",
                &registry_host,
                "-f",
            ])
            .arg(&file);
        if let Some(allow) = allow {
            command.env("JVM_GUARD_ALLOW_REGISTRY", allow);
        }
        let output = command.output().unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let auth_host = auth.host();
    let (refused, listed) = tokio::task::spawn_blocking(move || {
        (
            run(None),
            run(Some(format!("other.example:443,{auth_host}"))),
        )
    })
    .await
    .unwrap();
    assert!(refused.contains("is a private, loopback"), "{refused}");
    assert!(!listed.contains("is a private, loopback"), "{listed}");
    assert!(listed.contains("token realm"), "{listed}");
    assert_eq!(auth.connections(), 1, "listed: the realm is connected to");
}

const HUGE: usize = 64 * 1024 * 1024;

/// What a server may have produced of a body the client stopped reading early: the cap and
/// what the loopback socket buffers and the HTTP stacks hold.
const READ_AT_MOST: usize = 16 * 1024 * 1024;

#[tokio::test]
async fn huge_manifests_and_configs_are_not_read() {
    for (case, reason) in [
        ("manifest-chunked", "more than the 1048576 bytes read"),
        (
            "manifest-declared",
            "is 67108864 bytes, more than the 1048576 read",
        ),
        ("config-chunked", "more than the 1048576 bytes read"),
        (
            "config-declared",
            "is 67108864 bytes, more than the 1048576 read",
        ),
    ] {
        // The manifest says the config is small; the blob is not.
        let (manifest, _, digest) = image_parts(&["java"]);
        let blob_path = format!("/v2/shop/api/blobs/{digest}");
        let registry = Hostile::start(move |request, seen| {
            let path = request.uri().path();
            let chunked = !case.ends_with("declared");
            if path.starts_with("/v2/shop/api/manifests/") {
                if case.starts_with("manifest") {
                    return Hostile::huge(seen, StatusCode::OK, HUGE, b' ', !chunked);
                }
                return respond(
                    StatusCode::OK,
                    &[("content-type", OCI_MANIFEST)],
                    manifest.clone(),
                );
            }
            if path == blob_path {
                return Hostile::huge(seen, StatusCode::OK, HUGE, b' ', !chunked);
            }
            respond(StatusCode::NOT_FOUND, &[], "")
        })
        .await;
        let (container, warnings) =
            admit(&insecure(&[&registry]), image_on(&registry, case), "shop").await;
        assert_unwrapped(&container, &warnings, reason);
        assert!(
            registry.produced() < READ_AT_MOST,
            "{case}: {} bytes sent before the lookup let go",
            registry.produced()
        );
    }
}

#[tokio::test]
async fn huge_errors_are_cut_before_the_warning_and_the_status_annotation() {
    let long_message = "m".repeat(8 * 1024);
    let envelope = format!(r#"{{"errors":[{{"code":"DENIED","message":"{long_message}"}}]}}"#);
    let registry = Hostile::start(move |request, seen| match request.uri().path() {
        "/v2/shop/api/manifests/text" => {
            Hostile::huge(seen, StatusCode::NOT_FOUND, HUGE, b'e', false)
        }
        "/v2/shop/api/manifests/envelope" => respond(
            StatusCode::FORBIDDEN,
            &[("content-type", "application/json")],
            envelope.clone(),
        ),
        _ => respond(StatusCode::NOT_FOUND, &[], ""),
    })
    .await;
    let resolver = insecure(&[&registry]);
    for (tag, reason) in [
        ("text", "404 Not Found"),
        ("envelope", "403 Forbidden: DENIED (mmm"),
    ] {
        let (pod, warnings) = admit_pod(&resolver, image_on(&registry, tag), "shop").await;
        assert_unwrapped(&pod["spec"]["containers"][0], &warnings, reason);
        let warning = warnings.iter().find(|w| w.contains(reason)).unwrap();
        assert!(
            warning.chars().count() < 400,
            "{tag}: a warning of {} chars",
            warning.chars().count()
        );
        if tag == "envelope" {
            assert!(warning.contains("..."), "the cut is marked: {warning}");
        }
        let status = pod["metadata"]["annotations"]["jvm-guard.io/status"]
            .as_str()
            .unwrap_or_default();
        assert!(
            status.len() < 2048,
            "{tag}: a status annotation of {} bytes",
            status.len()
        );
        assert!(
            !status.contains("eeee"),
            "{tag}: the body reached the annotation"
        );
    }
    assert!(
        registry.produced() < READ_AT_MOST,
        "{} bytes of error sent",
        registry.produced()
    );
}
