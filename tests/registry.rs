//! Image ENTRYPOINT/CMD lookups (SPEC §7) against a real registry on loopback: Debian's
//! `docker-registry` (the CNCF Distribution registry), started here with a temporary config.
//! The tests push images through the registry's HTTP API, then check the lookup and the
//! mutation it leads to. `scripts/test.sh` installs the registry; without it these tests fail.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Method, Request};
use base64::Engine as _;
use http_body_util::BodyExt;
use jvm_guard::config::Settings;
use jvm_guard::metrics::Metrics;
use jvm_guard::mutate::{images_to_resolve, mutate_with, ImageRequest, Platform};
use jvm_guard::namespaces::StaticNamespaces;
use jvm_guard::registry::{PodImages, RegistryConfig, Resolver, StaticSecrets};
use jvm_guard::server::{router, AppState};
use jvm_guard::tools::{ImageCommand, TOOLS_BINARY};
use jvm_guard::{Defaults, NamespaceConfig};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};
use tower::ServiceExt;

const REGISTRY_BINARY: &str = "docker-registry";
const USER: &str = "puller";
const PASSWORD: &str = "pull-s3cret";

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

fn find_registry() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(REGISTRY_BINARY))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{REGISTRY_BINARY} not found on PATH: these tests need Debian's docker-registry \
                 package (scripts/test.sh installs it; by hand: apt-get install docker-registry)"
            )
        })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `docker-registry` process on loopback, killed when dropped.
struct Registry {
    child: Child,
    addr: SocketAddr,
    /// Basic credentials it requires, if any.
    auth: Option<(String, String)>,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn htpasswd_line(user: &str, password: &str) -> String {
    let hash = bcrypt::hash_with_result(password, 4)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY);
    format!("{user}:{hash}\n")
}

impl Registry {
    async fn start(basic_auth: bool) -> Registry {
        let binary = find_registry();
        let dir = tempfile::tempdir().unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            dir.path().join("data").display()
        );
        let auth = basic_auth.then(|| (USER.to_string(), PASSWORD.to_string()));
        if basic_auth {
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, htpasswd_line(USER, PASSWORD)).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: jvm-guard-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new(&binary)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let registry = Registry {
            child,
            addr,
            auth,
            _dir: dir,
            http: {
                // reqwest here runs on the binary's rustls provider, as the resolver does.
                let _ = rustls::crypto::ring::default_provider().install_default();
                reqwest::Client::new()
            },
        };
        registry.wait_ready().await;
        registry
    }

    fn host(&self) -> String {
        self.addr.to_string()
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let url = format!("http://{}/v2/", self.addr);
        loop {
            if let Ok(response) = self.http.get(&url).send().await {
                let status = response.status().as_u16();
                assert!(matches!(status, 200 | 401), "GET /v2/ answered {status}");
                return;
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self._dir.path().join("registry.log"));
                panic!("docker-registry did not start on {}: {log:?}", self.addr);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, url);
        match &self.auth {
            Some((user, password)) => request.basic_auth(user, Some(password)),
            None => request,
        }
    }

    /// Uploads a blob (POST then PUT with the digest); returns its descriptor.
    async fn push_blob(&self, repo: &str, media_type: &str, bytes: &[u8]) -> Value {
        let digest = sha256(bytes);
        let start = format!("http://{}/v2/{repo}/blobs/uploads/", self.addr);
        let response = self
            .request(reqwest::Method::POST, &start)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 202, "upload start");
        let location = response.headers()[reqwest::header::LOCATION]
            .to_str()
            .unwrap()
            .to_string();
        let location = if location.starts_with('/') {
            format!("http://{}{location}", self.addr)
        } else {
            location
        };
        let separator = if location.contains('?') { '&' } else { '?' };
        let response = self
            .request(
                reqwest::Method::PUT,
                &format!("{location}{separator}digest={digest}"),
            )
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201, "upload {digest}");
        json!({"mediaType": media_type, "digest": digest, "size": bytes.len()})
    }

    /// Puts a manifest or index under `reference`; returns its descriptor.
    async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        manifest: &Value,
    ) -> Value {
        let bytes = serde_json::to_vec(manifest).unwrap();
        let url = format!("http://{}/v2/{repo}/manifests/{reference}", self.addr);
        let response = self
            .request(reqwest::Method::PUT, &url)
            .header(reqwest::header::CONTENT_TYPE, media_type)
            .body(bytes.clone())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        assert_eq!(status, 201, "manifest {repo}:{reference}: {text}");
        json!({"mediaType": media_type, "digest": sha256(&bytes), "size": bytes.len()})
    }

    /// An image whose config has this ENTRYPOINT and CMD (`None`: not set), one layer.
    async fn push_image(
        &self,
        repo: &str,
        tag: &str,
        entrypoint: Option<&[&str]>,
        cmd: Option<&[&str]>,
        docker_media_types: bool,
        arch: &str,
    ) -> Value {
        let (manifest_type, config_type, layer_type) = if docker_media_types {
            (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER)
        } else {
            (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER)
        };
        let config = json!({
            "architecture": arch,
            "os": "linux",
            "config": {"Entrypoint": entrypoint, "Cmd": cmd, "Env": ["PATH=/usr/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [sha256(repo.as_bytes())]},
        });
        let config = self
            .push_blob(repo, config_type, &serde_json::to_vec(&config).unwrap())
            .await;
        let layer = self
            .push_blob(
                repo,
                layer_type,
                format!("layer of {repo} {arch}").as_bytes(),
            )
            .await;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": config,
            "layers": [layer],
        });
        self.push_manifest(repo, tag, manifest_type, &manifest)
            .await
    }
}

fn sha256(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn resolver(registry: &Registry) -> Resolver {
    Resolver::new(RegistryConfig {
        insecure: vec![registry.host()],
        ..RegistryConfig::default()
    })
}

fn settings() -> Settings {
    Settings {
        tools_image: Some("ghcr.io/jvm-guard/jvm-guard:test".into()),
        ..Settings::default()
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
        secrets: None,
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
