//! What a pod create costs through a real kube-apiserver, and what `serve`'s caches hold
//! (`scripts/bench.sh apiserver`, `scripts/bench.sh caches`; docs/performance.md). Figures for
//! reading, never pass/fail. The control plane is the e2e suite's (tests/support/control_plane.rs:
//! etcd and kube-apiserver from scripts/install-e2e-tools.sh), the registry the registry
//! suite's (Debian's docker-registry).
//!
//! `creates`: one apiserver, one namespace per configuration, each configuration selected by a
//! namespace label: no webhook; the baseline server (benches/baseline.rs) as a webhook; a
//! MutatingAdmissionPolicy doing the part CEL can do; `jvm-guard serve` offline, and online
//! with a public image name that fails fast (no DNS here) or images of the local registry,
//! cached or a new one every create. The creates rotate over the configurations in blocks, so
//! a neighbour's build that starts midway lands on all of them alike.
//!
//! `caches`: `serve`'s RSS with many namespaces in its reflector, and with many image configs
//! in its lookup cache.

#[allow(dead_code)]
#[path = "../tests/support/control_plane.rs"]
mod control_plane;
#[allow(dead_code)]
#[path = "../tests/support/process.rs"]
mod process;
#[allow(dead_code)]
#[path = "../tests/support/registry.rs"]
mod registry_support;
#[allow(dead_code)]
#[path = "../tests/support/versions.rs"]
mod versions;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use axum::http;
use clap::{Parser, Subcommand};
use futures_util::stream::{self, StreamExt as _};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::Client;
use serde_json::{json, Value};

use control_plane::{
    b64, client_from, command, e2e_bin_dir, required, start_apiserver, start_etcd, tail, ApiServer,
    Pki, Processes, E2E_HINT,
};
use process::free_port;
use registry_support::Registry;

/// The namespace label that picks a configuration (webhooks' and the policy's selector).
const CONFIG_LABEL: &str = "bench.jvm-guard.io/config";
const INJECT_LABEL: &str = "jvm-guard.io/inject";
const STATUS_ANNOTATION: &str = "jvm-guard.io/status";
const TOOLS_IMAGE: &str = "ghcr.io/jvm-guard/jvm-guard:e2e";
/// The e2e load test's pod image: docker.io, which has no DNS name here, so its lookup fails
/// at once (and the failure is cached for 30 s).
const PUBLIC_IMAGE: &str = "eclipse-temurin:21-jre";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// Pod creates through kube-apiserver, per admission configuration.
    Creates(CreatesArgs),
    /// `serve`'s RSS with many namespaces, and with many images in its lookup cache.
    Caches(CachesArgs),
}

#[derive(clap::Args)]
struct CreatesArgs {
    #[arg(long)]
    jvm_guard: PathBuf,
    #[arg(long)]
    baseline: PathBuf,
    /// Measured creates per configuration and mode.
    #[arg(long, default_value_t = 1000)]
    creates: usize,
    /// The creates of a configuration are this many blocks, the configurations taking turns.
    #[arg(long, default_value_t = 10)]
    blocks: usize,
    /// Clients of the concurrent mode.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Sequential creates per configuration before each mode.
    #[arg(long, default_value_t = 50)]
    warmup: usize,
    /// Where the report (Markdown) and every figure (JSON) are written.
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::Args)]
struct CachesArgs {
    #[arg(long)]
    jvm_guard: PathBuf,
    /// Namespaces in all at the first step, of which `--opted-in` opted in.
    #[arg(long, default_value_t = 10_000)]
    namespaces: usize,
    #[arg(long, default_value_t = 200)]
    opted_in: usize,
    /// Distinct images looked up in the typical series (past the cache's 1,024 entries).
    #[arg(long, default_value_t = 1_500)]
    images: usize,
    /// Guarded pods the pod watcher (`--watch-pods`) sees, spread over 50 opted-in namespaces.
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Of those, pods whose container then terminates (two Events each).
    #[arg(long, default_value_t = 1_000)]
    terminations: usize,
    #[arg(long)]
    out: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // reqwest (the registry pushes, the admin port) runs on ring, as the binary does.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match args.what {
        What::Creates(args) => creates(args),
        What::Caches(args) => caches(args),
    }
}

// ---------------------------------------------------------------------------------------------
// Processes

/// The children of this run, their logs in `dir`; killed when dropped. Every child is started
/// by the main thread (PR_SET_PDEATHSIG is per thread), also inside `block_on`.
struct Children {
    dir: PathBuf,
    children: Vec<(String, Child)>,
}

impl Drop for Children {
    fn drop(&mut self) {
        for (_, child) in self.children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Children {
    fn spawn_with(
        &mut self,
        name: &str,
        program: &Path,
        args: &[String],
        envs: &[(&str, &Path)],
    ) -> Result<(), String> {
        let mut cmd = command(program);
        // `serve` logs at its default level (info), as deployed.
        cmd.env_remove("RUST_LOG");
        for (key, value) in envs {
            cmd.env(key, value);
        }
        let child = cmd
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.log(name)).unwrap())
            .spawn()
            .map_err(|e| format!("{name}: {e}"))?;
        self.children.push((name.to_string(), child));
        Ok(())
    }

    fn pid(&self, name: &str) -> u32 {
        self.children
            .iter()
            .find(|(n, _)| n == name || n.starts_with(&format!("{name}-")))
            .map(|(_, c)| c.id())
            .unwrap_or_else(|| panic!("no process {name}"))
    }
}

impl Processes for Children {
    fn spawn(&mut self, name: &str, program: &Path, args: &[String]) -> Result<(), String> {
        self.spawn_with(name, program, args, &[])
    }

    fn exited(&mut self, name: &str) -> Option<String> {
        let (_, child) = self.children.iter_mut().find(|(n, _)| n == name)?;
        let status = child.try_wait().unwrap()?;
        Some(format!("exited ({status})"))
    }

    fn stop(&mut self, name: &str) {
        if let Some(i) = self.children.iter().position(|(n, _)| n == name) {
            let (_, mut child) = self.children.remove(i);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which may hold spaces: state is the first,
    // utime the 12th, stime the 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

/// VmRSS and VmHWM (the peak) of a process, in MiB.
fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The control plane: etcd and kube-apiserver, as the e2e suite starts them.
struct Plane {
    kubeconfig: PathBuf,
    kubeconfig_yaml: String,
}

fn start_plane(
    children: &mut Children,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<Plane> {
    let dir = children.dir.clone();
    let etcd =
        required(e2e_bin_dir().join("etcd"), "etcd", E2E_HINT).map_err(anyhow::Error::msg)?;
    let apiserver = required(
        e2e_bin_dir().join("kube-apiserver"),
        "kube-apiserver",
        E2E_HINT,
    )
    .map_err(anyhow::Error::msg)?;
    let etcd_url = start_etcd(children, &etcd, "bench", &dir).map_err(anyhow::Error::msg)?;
    let pki = Pki::new("bench").apiserver_files(&dir, &[[127, 0, 0, 1]], &["localhost"]);
    let kubeconfig_yaml = start_apiserver(
        children,
        runtime,
        &ApiServer {
            binary: &apiserver,
            etcd_url: &etcd_url,
            pki: &pki,
            address: "127.0.0.1",
            port: None,
            args: vec!["--endpoint-reconciler-type=none".into()],
        },
    )
    .map_err(anyhow::Error::msg)?;
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, &kubeconfig_yaml)?;
    Ok(Plane {
        kubeconfig,
        kubeconfig_yaml,
    })
}

/// A server of this run: `serve` or the baseline, on loopback.
struct Server {
    name: String,
    pid: u32,
    url: String,
    /// `serve`'s admin port (/readyz, /metrics).
    admin: Option<String>,
}

/// `jvm-guard serve` with the e2e suite's flags, `extra` besides; ready once /readyz says so.
async fn start_serve(
    children: &mut Children,
    name: &str,
    binary: &Path,
    certs: &Path,
    kubeconfig: Option<&Path>,
    extra: &[String],
) -> anyhow::Result<Server> {
    let (port, admin_port) = (free_port(), free_port());
    let mut args: Vec<String> = vec![
        "serve".into(),
        "--addr".into(),
        format!("127.0.0.1:{port}"),
        "--admin-addr".into(),
        format!("127.0.0.1:{admin_port}"),
        "--tls-cert".into(),
        certs.join("tls.crt").display().to_string(),
        "--tls-key".into(),
        certs.join("tls.key").display().to_string(),
        "--tools-image".into(),
        TOOLS_IMAGE.into(),
        "--webhook-namespace".into(),
        "jvm-guard".into(),
        "--log-format".into(),
        "json".into(),
        "--shutdown-delay".into(),
        "0".into(),
    ];
    args.extend(extra.iter().cloned());
    let envs: Vec<(&str, &Path)> = kubeconfig.map(|k| ("KUBECONFIG", k)).into_iter().collect();
    children
        .spawn_with(name, binary, &args, &envs)
        .map_err(anyhow::Error::msg)?;
    let server = Server {
        name: name.into(),
        pid: children.pid(name),
        url: format!("https://127.0.0.1:{port}/mutate"),
        admin: Some(format!("http://127.0.0.1:{admin_port}")),
    };
    let http = plain_http();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(exit) = children.exited(name) {
            bail!("{name} {exit}:\n{}", tail(&children.log(name), 20));
        }
        let ready = http
            .get(format!("{}/readyz", server.admin.as_ref().unwrap()))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            return Ok(server);
        }
        if Instant::now() > deadline {
            bail!(
                "{name} not ready in 60 s:\n{}",
                tail(&children.log(name), 20)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The baseline server as `name`, answering every review with `patch` (its `--patch` file,
/// `NAME-patch.json` beside the children's logs).
async fn start_answering(
    children: &mut Children,
    name: &str,
    binary: &Path,
    certs: &Path,
    patch: &[u8],
) -> anyhow::Result<Server> {
    let file = children.dir.join(format!("{name}-patch.json"));
    std::fs::write(&file, patch)?;
    let args = ["--patch".to_string(), file.display().to_string()];
    start_baseline(children, name, binary, certs, &args).await
}

/// The baseline server as `name`, `extra` besides its address and certificate.
async fn start_baseline(
    children: &mut Children,
    name: &str,
    binary: &Path,
    certs: &Path,
    extra: &[String],
) -> anyhow::Result<Server> {
    let port = free_port();
    let mut args = vec![
        "--addr".into(),
        format!("127.0.0.1:{port}"),
        "--tls-cert".into(),
        certs.join("tls.crt").display().to_string(),
        "--tls-key".into(),
        certs.join("tls.key").display().to_string(),
    ];
    args.extend(extra.iter().cloned());
    children
        .spawn(name, binary, &args)
        .map_err(anyhow::Error::msg)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if let Some(exit) = children.exited(name) {
            bail!("{name} {exit}");
        }
        if Instant::now() > deadline {
            bail!("{name} did not listen in 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Server {
        name: name.into(),
        pid: children.pid(name),
        url: format!("https://127.0.0.1:{port}/mutate"),
        admin: None,
    })
}

fn plain_http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// `jvm_guard_admission_requests_total`, all outcomes.
async fn serve_reviews(server: &Server) -> f64 {
    let Some(admin) = &server.admin else {
        return 0.0;
    };
    let text = plain_http()
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metric_sum(&text, "jvm_guard_admission_requests_total", &[])
}

/// The sum of a metric's samples whose labels contain all of `labels`.
fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn apiserver_metrics(client: &Client) -> String {
    let request = http::Request::get("/metrics").body(Vec::new()).unwrap();
    client.request_text(request).await.unwrap()
}

/// POSTs an object to an API path (kinds the typed client does not know, e.g. the v1
/// MutatingAdmissionPolicy).
async fn post(client: &Client, path: &str, body: &Value) -> anyhow::Result<Value> {
    let request = http::Request::post(path)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body)?)
        .unwrap();
    client
        .request::<Value>(request)
        .await
        .with_context(|| format!("POST {path}"))
}

/// A namespace and its `default` ServiceAccount (the ServiceAccount admission plugin needs it;
/// there is no controller-manager to make it).
async fn create_namespace(
    client: &Client,
    name: &str,
    labels: &[(&str, &str)],
    annotations: &[(&str, &str)],
    service_account: bool,
) -> anyhow::Result<()> {
    let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": name, "labels": map(labels), "annotations": map(annotations)}});
    post(client, "/api/v1/namespaces", &ns).await?;
    if service_account {
        let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount",
                        "metadata": {"name": "default"}});
        post(
            client,
            &format!("/api/v1/namespaces/{name}/serviceaccounts"),
            &sa,
        )
        .await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Registry

/// Pushes one image per tag to `repo` (one shared layer, a config blob each), 8 at a time.
async fn push_images(
    registry: &Registry,
    repo: &str,
    tags: Vec<String>,
    fields: impl Fn(&str) -> Value,
) {
    let layer = registry
        .push_blob(repo, OCI_LAYER, format!("layer of {repo}").as_bytes())
        .await;
    let pushes = tags.into_iter().map(|tag| {
        let (layer, fields) = (layer.clone(), fields(&tag));
        async move {
            let config = json!({
                "architecture": "amd64",
                "os": "linux",
                "config": fields,
                "rootfs": {"type": "layers", "diff_ids": [registry_support::sha256(repo.as_bytes())]},
            });
            let config = registry
                .push_blob(repo, OCI_CONFIG, &serde_json::to_vec(&config).unwrap())
                .await;
            let manifest = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                  "config": config, "layers": [layer]});
            registry
                .push_manifest(repo, &tag, OCI_MANIFEST, &manifest)
                .await;
        }
    });
    stream::iter(pushes)
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
}

/// The config fields of a typical JDK image (eclipse-temurin's, give or take), marked with
/// `tag` so every config blob is its own.
fn typical_config(tag: &str) -> Value {
    json!({
        "Entrypoint": ["/__cacert_entrypoint.sh"],
        "Cmd": ["jshell"],
        "Env": [
            "PATH=/opt/java/openjdk/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "JAVA_HOME=/opt/java/openjdk",
            "LANG=en_US.UTF-8",
            "LANGUAGE=en_US:en",
            "LC_ALL=en_US.UTF-8",
            "JAVA_VERSION=jdk-21.0.5+11",
        ],
        "Labels": {
            "org.opencontainers.image.ref.name": "ubuntu",
            "org.opencontainers.image.version": "24.04",
            "bench.jvm-guard.io/tag": tag,
        },
    })
}

// ---------------------------------------------------------------------------------------------
// creates

/// How each create of a configuration names its image.
#[derive(Clone)]
enum Image {
    Fixed(String),
    /// A new reference every create: `{prefix}{n}`.
    Fresh(String, Arc<AtomicUsize>),
}

impl Image {
    fn next(&self) -> String {
        match self {
            Image::Fixed(image) => image.clone(),
            Image::Fresh(prefix, n) => format!("{prefix}{}", n.fetch_add(1, Ordering::Relaxed)),
        }
    }
}

struct Config {
    label: &'static str,
    what: String,
    namespace: String,
    image: Image,
    /// The admission webhook's name in the apiserver's metrics.
    webhook: Option<String>,
    /// The process answering its reviews, for its CPU and metrics.
    server: Option<usize>,
}

#[derive(Default, Clone, serde::Serialize)]
struct Figures {
    latencies_ms: Vec<f64>,
    seconds: f64,
    reviews: f64,
    serve_reviews: f64,
    server_cpu: f64,
    plane_cpu: f64,
}

#[derive(serde::Serialize)]
struct Stats {
    p50: f64,
    p99: f64,
    mean: f64,
}

impl Figures {
    fn stats(&self) -> Stats {
        let mut v = self.latencies_ms.clone();
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
        Stats {
            p50: at(0.50),
            p99: at(0.99),
            mean: v.iter().sum::<f64>() / v.len() as f64,
        }
    }
}

fn jvm_pod(image: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "bench-"},
        "spec": {"containers": [{
            "name": "app",
            "image": image,
            "command": ["java", "-jar", "/app/app.jar"],
            "resources": {"limits": {"memory": "1Gi"}},
        }]},
    }))
    .unwrap()
}

/// The chart's webhook (charts/jvm-guard/templates/webhook.yaml, its default values) calling
/// `url`, for the namespaces labelled `config`.
fn webhook_config(config: &str, url: &str, ca: &str) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": format!("bench-{config}")},
        "webhooks": [{
            "name": format!("{config}.bench.jvm-guard.io"),
            "admissionReviewVersions": ["v1"],
            "clientConfig": {"url": url, "caBundle": b64(ca)},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                       "resources": ["pods"], "scope": "Namespaced"}],
            "failurePolicy": "Ignore",
            "matchPolicy": "Equivalent",
            "sideEffects": "None",
            "timeoutSeconds": 5,
            "reinvocationPolicy": "IfNeeded",
            "namespaceSelector": {"matchLabels": {CONFIG_LABEL: config}},
        }],
    })
}

/// What CEL can do of jvm-guard's memory and dump features, for containers with a memory
/// limit and no JAVA_TOOL_OPTIONS of their own: `max-ram-percentage: auto` with the default
/// 384Mi reserve (docs/design.md#memory), a heap dump into an emptyDir, exit on OOM.
const MAP_EXPRESSION: &str = r#"Object{
  spec: Object.spec{
    containers: object.spec.containers.filter(c,
        has(c.resources) && has(c.resources.limits) && 'memory' in c.resources.limits &&
        !(has(c.env) && c.env.exists(e, e.name == 'JAVA_TOOL_OPTIONS'))
      ).map(c, Object.spec.containers{
        name: c.name,
        env: [Object.spec.containers.env{
          name: 'JAVA_TOOL_OPTIONS',
          value: '-XX:MaxRAMPercentage=' + PERCENT + '.0 -XX:MinRAMPercentage=' + PERCENT +
            '.0 -XX:+HeapDumpOnOutOfMemoryError -XX:HeapDumpPath=/dumps ' +
            '-XX:ErrorFile=/dumps/hs_err_pid%p.log -XX:+ExitOnOutOfMemoryError'
        }],
        volumeMounts: [Object.spec.containers.volumeMounts{
          name: 'jvm-guard-dumps', mountPath: '/dumps'
        }]
      }),
    volumes: [Object.spec.volumes{name: 'jvm-guard-dumps', emptyDir: Object.spec.volumes.emptyDir{}}]
  }
}"#;

fn mutating_policy() -> (Value, Value) {
    // No `cel.bind` in this environment (1.37): the percentage is written out twice.
    let limit = "quantity(string(c.resources.limits['memory'])).asInteger()";
    let percent =
        format!("string([25, [75, (100 * ({limit} - 402653184)) / {limit}].min()].max())");
    let expression = MAP_EXPRESSION.replace("PERCENT", &percent);
    let policy = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingAdmissionPolicy",
        "metadata": {"name": "bench-jvm-memory"},
        "spec": {
            "failurePolicy": "Ignore",
            "reinvocationPolicy": "IfNeeded",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                "resources": ["pods"]}]},
            "matchConditions": [{
                "name": "has-memory-limit",
                "expression": "object.spec.containers.exists(c, has(c.resources) && \
                               has(c.resources.limits) && 'memory' in c.resources.limits)",
            }],
            "mutations": [{"patchType": "ApplyConfiguration",
                           "applyConfiguration": {"expression": expression}}],
        },
    });
    let binding = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingAdmissionPolicyBinding",
        "metadata": {"name": "bench-jvm-memory"},
        "spec": {
            "policyName": "bench-jvm-memory",
            "matchResources": {"namespaceSelector": {"matchLabels": {CONFIG_LABEL: "map"}}},
        },
    });
    (policy, binding)
}

fn has_java_tool_options(pod: &Pod) -> bool {
    pod.spec.as_ref().is_some_and(|s| {
        s.containers.iter().any(|c| {
            c.env
                .iter()
                .flatten()
                .any(|e| e.name == "JAVA_TOOL_OPTIONS")
        })
    })
}

/// The operations of a JSON patch that touch `/metadata/annotations` (jvm-guard's status).
fn annotation_only(patch: &[u8]) -> anyhow::Result<Vec<u8>> {
    let ops: Vec<Value> = serde_json::from_slice(patch)?;
    let kept: Vec<Value> = ops
        .into_iter()
        .filter(|op| {
            op["path"]
                .as_str()
                .is_some_and(|p| p.starts_with("/metadata/annotations"))
        })
        .collect();
    if kept.is_empty() {
        bail!("jvm-guard's patch for the bench pod sets no annotation");
    }
    Ok(serde_json::to_vec(&kept)?)
}

fn is_mutated(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("jvm-guard.io/status"))
}

/// Dry-run creates until `ready` says the configuration took effect (the apiserver picks up
/// webhook configurations and policies from its informers).
async fn wait_effective(
    client: &Client,
    config: &Config,
    ready: impl Fn(&Pod, &str) -> bool,
) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &config.namespace);
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pod = pods
            .create(&dry_run, &jvm_pod(&config.image.next()))
            .await?;
        let metrics = apiserver_metrics(client).await;
        if ready(&pod, &metrics) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{} did not take effect in 60 s: {pod:?}", config.what);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// jvm-guard's patch for the bench pod as the apiserver sends it (a dry-run create in a
/// namespace of its own, where no webhook runs, for its defaults and token volume), mutated in
/// process as `serve --offline` with the chart's defaults would.
async fn jvm_guard_patch(client: &Client) -> anyhow::Result<Vec<u8>> {
    create_namespace(client, "bench-patch-source", &[], &[], true).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "bench-patch-source");
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let mut pod = pods.create(&dry_run, &jvm_pod(PUBLIC_IMAGE)).await?;
    pod.metadata.namespace = Some("bench-floor".into());
    let ns = jvm_guard::NamespaceConfig::new("bench-floor", None, &jvm_guard::Defaults::default());
    let settings = jvm_guard::ServerSettings {
        tools_image: Some(TOOLS_IMAGE.into()),
        ..Default::default()
    };
    let mutation = jvm_guard::mutate(&(&pod).into(), &ns, &settings);
    if mutation.patch.is_empty() {
        bail!(
            "jvm-guard does not patch the bench pod: {:?}",
            mutation.status
        );
    }
    Ok(mutation.patch.into_bytes())
}

/// `count` creates in `config`'s namespace by `clients` clients, each create timed.
async fn run_creates(clients: &[Client], config: &Config, count: usize) -> Vec<f64> {
    let next = Arc::new(AtomicUsize::new(0));
    let workers = clients.iter().map(|client| {
        let (next, image) = (next.clone(), config.image.clone());
        let pods: Api<Pod> = Api::namespaced(client.clone(), &config.namespace);
        tokio::spawn(async move {
            let mut times = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let pod = jvm_pod(&image.next());
                let started = Instant::now();
                pods.create(&PostParams::default(), &pod)
                    .await
                    .unwrap_or_else(|e| panic!("create: {e}"));
                times.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            times
        })
    });
    let mut all = Vec::new();
    for worker in futures_util::future::join_all(workers).await {
        all.extend(worker.unwrap());
    }
    all
}

async fn delete_pods(client: &Client, namespace: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let _ = pods
        .delete_collection(&DeleteParams::background(), &ListParams::default())
        .await;
}

fn creates(args: CreatesArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)?;
    let dir = tempfile::Builder::new()
        .prefix("jvm-guard-bench-apiserver-")
        .tempdir()?;
    let mut children = Children {
        dir: dir.path().to_path_buf(),
        children: Vec::new(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let plane = start_plane(&mut children, &runtime)?;
    let report = runtime.block_on(creates_on(&args, &mut children, &plane));
    if report.is_err() || std::env::var_os("BENCH_KEEP").is_some() {
        eprintln!("logs: {}", dir.path().display());
        // Kept for reading.
        let _ = dir.keep();
    }
    report
}

async fn creates_on(
    args: &CreatesArgs,
    children: &mut Children,
    plane: &Plane,
) -> anyhow::Result<()> {
    let client = client_from(&plane.kubeconfig_yaml).await;
    let certs = children.dir.join("certs");
    let out = std::process::Command::new(&args.jvm_guard)
        .arg("certs")
        .arg("--out")
        .arg(&certs)
        .output()?;
    if !out.status.success() {
        bail!("jvm-guard certs: {}", String::from_utf8_lossy(&out.stderr));
    }
    let ca = std::fs::read_to_string(certs.join("ca.crt"))?;

    eprintln!("pushing images to the local registry");
    let registry = Registry::start_in(tempfile::tempdir_in(&children.dir)?, false, command).await;
    let host = registry.host();
    // Every cold create and its warm-ups name an image of their own.
    let cold_tags: Vec<String> = (0..2 * (args.creates + 2 * args.warmup) + 100)
        .map(|n| format!("cold-{n}"))
        .collect();
    push_images(&registry, "bench/app", cold_tags, typical_config).await;
    push_images(&registry, "bench/app", vec!["21".into()], typical_config).await;

    let mut servers =
        vec![start_baseline(children, "baseline", &args.baseline, &certs, &[]).await?];
    // The floor of a webhook that mutates as much: the baseline answering with jvm-guard's own
    // patch for the bench pod, so what jvm-guard adds over it is its own work, and what the
    // floor adds over the no-op is the apiserver's for a patch of that size.
    let patch = jvm_guard_patch(&client).await?;
    servers.push(start_answering(children, "floor", &args.baseline, &certs, &patch).await?);
    // And answering only the status annotation of that patch: what any mutation costs the
    // apiserver, against what a patch of jvm-guard's size adds.
    let annotation = annotation_only(&patch)?;
    servers.push(
        start_answering(
            children,
            "floor-annotation",
            &args.baseline,
            &certs,
            &annotation,
        )
        .await?,
    );
    let online = ["--insecure-registry".to_string(), host.clone()];
    let offline = ["--offline".to_string()];
    let kubeconfig = Some(plane.kubeconfig.as_path());
    for (name, extra) in [
        ("serve-offline", &offline[..]),
        ("serve-public", &online[..]),
        ("serve-public-cold", &online[..]),
        ("serve-registry", &online[..]),
        ("serve-registry-cold", &online[..]),
    ] {
        servers
            .push(start_serve(children, name, &args.jvm_guard, &certs, kubeconfig, extra).await?);
    }
    let server = |name: &str| servers.iter().position(|s| s.name == name);
    let fresh = |prefix: String| Image::Fresh(prefix, Arc::new(AtomicUsize::new(0)));
    let configs = vec![
        Config {
            label: "none",
            what: "no webhook".into(),
            namespace: "bench-none".into(),
            image: Image::Fixed(PUBLIC_IMAGE.into()),
            webhook: None,
            server: None,
        },
        Config {
            label: "baseline",
            what: "no-op webhook (benches/baseline.rs)".into(),
            namespace: "bench-baseline".into(),
            image: Image::Fixed(PUBLIC_IMAGE.into()),
            webhook: Some("baseline.bench.jvm-guard.io".into()),
            server: server("baseline"),
        },
        Config {
            label: "floor",
            what: "the no-op webhook answering jvm-guard's patch".into(),
            namespace: "bench-floor".into(),
            image: Image::Fixed(PUBLIC_IMAGE.into()),
            webhook: Some("floor.bench.jvm-guard.io".into()),
            server: server("floor"),
        },
        Config {
            label: "floor-annotation",
            what: "the no-op webhook answering only jvm-guard's status annotation".into(),
            namespace: "bench-floor-annotation".into(),
            image: Image::Fixed(PUBLIC_IMAGE.into()),
            webhook: Some("floor-annotation.bench.jvm-guard.io".into()),
            server: server("floor-annotation"),
        },
        Config {
            label: "map",
            what: "MutatingAdmissionPolicy (CEL, in process)".into(),
            namespace: "bench-map".into(),
            image: Image::Fixed(PUBLIC_IMAGE.into()),
            webhook: None,
            server: None,
        },
        Config {
            label: "offline",
            what: "jvm-guard `serve --offline`".into(),
            namespace: "bench-offline".into(),
            image: Image::Fixed(PUBLIC_IMAGE.into()),
            webhook: Some("offline.bench.jvm-guard.io".into()),
            server: server("serve-offline"),
        },
        Config {
            label: "public",
            what: format!(
                "jvm-guard, `{PUBLIC_IMAGE}` (lookup fails: no DNS; failure cached 30 s)"
            ),
            namespace: "bench-public".into(),
            image: Image::Fixed(PUBLIC_IMAGE.into()),
            webhook: Some("public.bench.jvm-guard.io".into()),
            server: server("serve-public"),
        },
        Config {
            label: "public-cold",
            what: "jvm-guard, a new docker.io name every create (each lookup fails: no DNS)".into(),
            namespace: "bench-public-cold".into(),
            image: fresh(format!("{PUBLIC_IMAGE}-b")),
            webhook: Some("public-cold.bench.jvm-guard.io".into()),
            server: server("serve-public-cold"),
        },
        Config {
            label: "registry",
            what: "jvm-guard, local registry image, cached".into(),
            namespace: "bench-registry".into(),
            image: Image::Fixed(format!("{host}/bench/app:21")),
            webhook: Some("registry.bench.jvm-guard.io".into()),
            server: server("serve-registry"),
        },
        Config {
            label: "registry-cold",
            what: "jvm-guard, local registry, a new image every create (cold lookup)".into(),
            namespace: "bench-registry-cold".into(),
            image: fresh(format!("{host}/bench/app:cold-")),
            webhook: Some("registry-cold.bench.jvm-guard.io".into()),
            server: server("serve-registry-cold"),
        },
    ];

    eprintln!("namespaces, webhooks and the policy");
    for config in &configs {
        let mut labels = vec![(CONFIG_LABEL, config.label)];
        if config.server.is_some_and(|s| servers[s].admin.is_some()) {
            labels.push((INJECT_LABEL, "enabled"));
        }
        create_namespace(&client, &config.namespace, &labels, &[], true).await?;
        if let Some(index) = config.server {
            let webhook = webhook_config(config.label, &servers[index].url, &ca);
            post(
                &client,
                "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
                &webhook,
            )
            .await?;
        }
    }
    let (policy, binding) = mutating_policy();
    post(
        &client,
        "/apis/admissionregistration.k8s.io/v1/mutatingadmissionpolicies",
        &policy,
    )
    .await?;
    post(
        &client,
        "/apis/admissionregistration.k8s.io/v1/mutatingadmissionpolicybindings",
        &binding,
    )
    .await?;
    for config in &configs {
        match config.label {
            "none" => {}
            "map" => wait_effective(&client, config, |pod, _| has_java_tool_options(pod)).await?,
            "baseline" => {
                let name = format!("name=\"{}\"", config.webhook.as_ref().unwrap());
                wait_effective(&client, config, |_, metrics| {
                    metric_sum(
                        metrics,
                        "apiserver_admission_webhook_admission_duration_seconds_count",
                        &[&name],
                    ) > 0.0
                })
                .await?
            }
            _ => wait_effective(&client, config, |pod, _| is_mutated(pod)).await?,
        }
    }

    let map_pods: Api<Pod> = Api::namespaced(client.clone(), "bench-map");
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let sample = serde_json::to_value(map_pods.create(&dry_run, &jvm_pod(PUBLIC_IMAGE)).await?)?;
    let mut report = format!(
        "\nThe policy's work on the pod (one container, memory limit 1Gi): env {}, volumeMounts {}, \
         volumes {}\n",
        sample["spec"]["containers"][0]["env"],
        sample["spec"]["containers"][0]["volumeMounts"],
        sample["spec"]["volumes"],
    );
    let mut all = BTreeMap::new();
    for clients in [1, args.concurrency] {
        let mode = if clients == 1 {
            "sequential".to_string()
        } else {
            format!("{clients} concurrent clients")
        };
        let load_before = loadavg();
        let figures = measure(args, &client, plane, children, &servers, &configs, clients).await?;
        let load_after = loadavg();
        writeln!(
            report,
            "\n### {mode}: {} creates per configuration in {} blocks, after {} warm-up\n\n\
             load average (1, 5, 15 min) {load_before} before, {load_after} after\n",
            args.creates, args.blocks, args.warmup
        )?;
        report.push_str(&table(&configs, &figures, clients));
        all.insert(mode, figures);
    }
    let text = format!(
        "## Pod creates through kube-apiserver {}, release binaries, {} cores\n{report}",
        versions::KUBERNETES_VERSION,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    println!("{text}");
    std::fs::write(args.out.join("apiserver.md"), &text)?;
    std::fs::write(
        args.out.join("apiserver.json"),
        serde_json::to_string_pretty(&all)?,
    )?;
    Ok(())
}

/// The creates of every configuration: a warm-up, then the blocks, the configurations taking
/// turns (each block starting with the next one), the pods deleted between turns.
async fn measure(
    args: &CreatesArgs,
    client: &Client,
    plane: &Plane,
    children: &Children,
    servers: &[Server],
    configs: &[Config],
    concurrency: usize,
) -> anyhow::Result<Vec<Figures>> {
    let mut clients = Vec::new();
    for _ in 0..concurrency {
        clients.push(client_from(&plane.kubeconfig_yaml).await);
    }
    for config in configs {
        run_creates(&clients[..1], config, args.warmup).await;
        delete_pods(client, &config.namespace).await;
    }
    let plane_pids = [children.pid("etcd"), children.pid("kube-apiserver")];
    let plane_cpu = || plane_pids.iter().map(|p| cpu_seconds(*p)).sum::<f64>();
    let mut figures = vec![Figures::default(); configs.len()];
    let per_block = args.creates.div_ceil(args.blocks);
    for block in 0..args.blocks {
        let count = per_block.min(args.creates - block * per_block);
        for turn in 0..configs.len() {
            let i = (turn + block) % configs.len();
            let config = &configs[i];
            let webhook_label = config.webhook.as_ref().map(|w| format!("name=\"{w}\""));
            let reviews = |metrics: &str| {
                webhook_label.as_ref().map_or(0.0, |label| {
                    metric_sum(
                        metrics,
                        "apiserver_admission_webhook_admission_duration_seconds_count",
                        &[label, "operation=\"CREATE\""],
                    )
                })
            };
            let server = config.server.map(|s| &servers[s]);
            let reviews_before = reviews(&apiserver_metrics(client).await);
            let serve_before = match server {
                Some(s) => serve_reviews(s).await,
                None => 0.0,
            };
            let (server_cpu, plane_before) =
                (server.map_or(0.0, |s| cpu_seconds(s.pid)), plane_cpu());
            let started = Instant::now();
            let times = run_creates(&clients, config, count).await;
            let seconds = started.elapsed().as_secs_f64();
            let f = &mut figures[i];
            f.seconds += seconds;
            f.plane_cpu += plane_cpu() - plane_before;
            f.server_cpu += server.map_or(0.0, |s| cpu_seconds(s.pid)) - server_cpu;
            f.reviews += reviews(&apiserver_metrics(client).await) - reviews_before;
            if let Some(s) = server {
                f.serve_reviews += serve_reviews(s).await - serve_before;
            }
            f.latencies_ms.extend(times);
        }
        for config in configs {
            delete_pods(client, &config.namespace).await;
        }
        eprintln!(
            "block {}/{} done (load {})",
            block + 1,
            args.blocks,
            loadavg()
        );
    }
    Ok(figures)
}

fn table(configs: &[Config], figures: &[Figures], clients: usize) -> String {
    let none = figures[0].stats();
    let baseline = figures[1].stats();
    let mut out = String::from(
        "| configuration | p50 ms | p99 ms | mean ms | added p50 | added p99 | added mean \
         | added p50 ÷ no-op's | creates/s | reviews per create | its server's CPU s per 1,000 \
         | apiserver + etcd CPU s per 1,000 |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for (config, f) in configs.iter().zip(figures) {
        let s = f.stats();
        let n = f.latencies_ms.len() as f64;
        let added = |a: f64, b: f64| format!("{:+.2}", a - b);
        let ratio = if config.server.is_some() && config.label != "baseline" {
            format!("{:.2}", (s.p50 - none.p50) / (baseline.p50 - none.p50))
        } else {
            "".into()
        };
        let reviews = match (&config.webhook, config.server) {
            (Some(_), _) => format!("{:.2}", f.reviews / n),
            _ => "".into(),
        };
        let cpu = if config.server.is_some() {
            format!("{:.2}", f.server_cpu * 1000.0 / n)
        } else {
            "".into()
        };
        let _ = writeln!(
            out,
            "| {} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {ratio} | {:.0} | {reviews} | {cpu} | {:.2} |",
            config.what,
            s.p50,
            s.p99,
            s.mean,
            added(s.p50, none.p50),
            added(s.p99, none.p99),
            added(s.mean, none.mean),
            n / f.seconds,
            f.plane_cpu * 1000.0 / n,
        );
    }
    let serve: Vec<String> = configs
        .iter()
        .zip(figures)
        .filter(|(c, f)| c.server.is_some() && f.serve_reviews > 0.0)
        .map(|(c, f)| {
            format!(
                "{} {:.2}",
                c.label,
                f.serve_reviews / f.latencies_ms.len() as f64
            )
        })
        .collect();
    let _ = writeln!(
        out,
        "\nreviews per create by serve's own count (jvm_guard_admission_requests_total): {}; \
         clients: {clients}",
        serve.join(", ")
    );
    out
}

// ---------------------------------------------------------------------------------------------
// caches

fn caches(args: CachesArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)?;
    let dir = tempfile::Builder::new()
        .prefix("jvm-guard-bench-caches-")
        .tempdir()?;
    let mut children = Children {
        dir: dir.path().to_path_buf(),
        children: Vec::new(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let plane = start_plane(&mut children, &runtime)?;
    let report = runtime.block_on(caches_on(&args, &mut children, &plane));
    if report.is_err() || std::env::var_os("BENCH_KEEP").is_some() {
        eprintln!("logs: {}", dir.path().display());
        let _ = dir.keep();
    }
    report
}

/// The annotations of an opted-in namespace: a few keys, as a team would set them.
const NAMESPACE_ANNOTATIONS: &[(&str, &str)] = &[
    ("jvm-guard.io/max-ram-percentage", "70"),
    ("jvm-guard.io/heap-dump", "true"),
    ("jvm-guard.io/probes", "spring-boot"),
    ("jvm-guard.io/ulimits", "nofile=65536"),
    (
        "jvm-guard.io/jvm-options",
        "-XX:+UseG1GC -Dfile.encoding=UTF-8",
    ),
];

type Pairs = &'static [(&'static str, &'static str)];

async fn create_namespaces(client: &Client, names: Vec<String>, opted_in: bool) {
    let creates = names.into_iter().map(|name| async move {
        let (labels, annotations): (Pairs, Pairs) = if opted_in {
            (&[(INJECT_LABEL, "enabled")], NAMESPACE_ANNOTATIONS)
        } else {
            (&[("team", "bench")], &[])
        };
        create_namespace(client, &name, labels, annotations, false)
            .await
            .unwrap_or_else(|e| panic!("namespace {name}: {e}"));
    });
    stream::iter(creates)
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
}

/// Lets the allocator settle, then the RSS.
async fn settled_rss(pid: u32) -> (f64, f64) {
    tokio::time::sleep(Duration::from_secs(2)).await;
    rss_mib(pid)
}

async fn caches_on(
    args: &CachesArgs,
    children: &mut Children,
    plane: &Plane,
) -> anyhow::Result<()> {
    let client = client_from(&plane.kubeconfig_yaml).await;
    let certs = children.dir.join("certs");
    let out = std::process::Command::new(&args.jvm_guard)
        .arg("certs")
        .arg("--out")
        .arg(&certs)
        .output()?;
    if !out.status.success() {
        bail!("jvm-guard certs: {}", String::from_utf8_lossy(&out.stderr));
    }
    let mut report = format!(
        "## serve's caches, release binary, kube-apiserver {}; load average {} at the start\n",
        versions::KUBERNETES_VERSION,
        loadavg()
    );

    if args.namespaces > 0 {
        namespaces(args, children, plane, &client, &certs, &mut report).await?;
    }
    if args.pods > 0 {
        pods(args, children, plane, &client, &certs, &mut report).await?;
    }
    if args.images > 0 {
        images(args, children, &certs, &mut report).await?;
    }
    println!("{report}");
    std::fs::write(args.out.join("caches.md"), &report)?;
    Ok(())
}

async fn namespaces(
    args: &CachesArgs,
    children: &mut Children,
    plane: &Plane,
    client: &Client,
    certs: &Path,
    report: &mut String,
) -> anyhow::Result<()> {
    // Namespaces: one serve running from the start (its watch), and a fresh one at each step
    // (its first list).
    let kubeconfig = Some(plane.kubeconfig.as_path());
    let offline = ["--offline".to_string()];
    let long = start_serve(
        children,
        "serve-watching",
        &args.jvm_guard,
        certs,
        kubeconfig,
        &offline,
    )
    .await?;
    let mut rows = vec![(
        "none (the apiserver's own)".to_string(),
        settled_rss(long.pid).await,
        None,
    )];
    let (mut plain, mut opted) = (0, 0);
    let plain_total = args.namespaces - args.opted_in;
    let steps = [
        (args.opted_in, plain_total),
        (1_000, plain_total),
        (5_000, plain_total),
        (10_000, plain_total),
    ];
    for (step, (opted_target, plain_target)) in steps.into_iter().enumerate() {
        let started = Instant::now();
        create_namespaces(
            client,
            (opted..opted_target).map(|n| format!("team-{n}")).collect(),
            true,
        )
        .await;
        create_namespaces(
            client,
            (plain..plain_target)
                .map(|n| format!("plain-{n}"))
                .collect(),
            false,
        )
        .await;
        eprintln!(
            "{} namespaces ({opted_target} opted in) in {:.0} s",
            opted_target + plain_target,
            started.elapsed().as_secs_f64()
        );
        (opted, plain) = (opted_target, plain_target);
        let watching = settled_rss(long.pid).await;
        let name = format!("serve-listing-{step}");
        let fresh = start_serve(
            children,
            &name,
            &args.jvm_guard,
            certs,
            kubeconfig,
            &offline,
        )
        .await?;
        let listing = settled_rss(fresh.pid).await;
        children.stop(&name);
        rows.push((
            format!(
                "{} ({opted} opted in, with 5 annotations each)",
                opted + plain
            ),
            watching,
            Some(listing),
        ));
    }
    report.push_str(
        "\n### Namespaces\n\n| namespaces | serve watching since the start: RSS MiB | its peak \
         | a serve started now: RSS MiB | its peak |\n|---|---|---|---|---|\n",
    );
    for (what, (rss, hwm), listing) in &rows {
        let (lr, lh) = listing.map_or((String::new(), String::new()), |(r, h)| {
            (format!("{r:.1}"), format!("{h:.1}"))
        });
        writeln!(report, "| {what} | {rss:.1} | {hwm:.1} | {lr} | {lh} |")?;
    }
    children.stop("serve-watching");
    Ok(())
}

/// Namespaces the watched pods live in.
const WATCHED_NAMESPACES: usize = 50;

/// The pod watcher's memory: a replica watching since before the pods were created, one
/// that became the leader after them (its first list), each against a `serve` without the
/// watcher started at the same moment; then after terminations of some of the pods.
async fn pods(
    args: &CachesArgs,
    children: &mut Children,
    plane: &Plane,
    client: &Client,
    certs: &Path,
    report: &mut String,
) -> anyhow::Result<()> {
    create_namespace(client, "jvm-guard", &[], &[], false).await?;
    let namespaces: Vec<String> = (0..WATCHED_NAMESPACES)
        .map(|n| format!("watched-{n}"))
        .collect();
    for ns in &namespaces {
        create_namespace(client, ns, &[(INJECT_LABEL, "enabled")], &[], true).await?;
    }
    let kubeconfig = Some(plane.kubeconfig.as_path());
    let watcher = |identity: &str| -> Vec<String> {
        ["--offline", "--watch-pods", "--watch-identity", identity]
            .map(String::from)
            .to_vec()
    };
    let offline = ["--offline".to_string()];
    let first = start_serve(
        children,
        "watcher-1",
        &args.jvm_guard,
        certs,
        kubeconfig,
        &watcher("one"),
    )
    .await?;
    let plain = start_serve(
        children,
        "plain-1",
        &args.jvm_guard,
        certs,
        kubeconfig,
        &offline,
    )
    .await?;
    wait_leader(&first).await?;
    let mut rows = vec![(
        "no pods".to_string(),
        settled_rss(first.pid).await,
        settled_rss(plain.pid).await,
    )];

    let started = Instant::now();
    let status = r#"{"version":"bench","containers":{"app":{"jvm":"seen"}}}"#;
    let creates = (0..args.pods).map(|n| {
        let ns = &namespaces[n % namespaces.len()];
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("api-{n}"), "annotations": {STATUS_ANNOTATION: status},
                         "labels": {"app": "api", "team": "bench"}},
            "spec": {"containers": [{"name": "app", "image": PUBLIC_IMAGE,
                "command": ["java", "-jar", "/app/app.jar"],
                "env": [{"name": "JAVA_TOOL_OPTIONS", "value": "-XX:MaxRAMPercentage=62"}],
                "resources": {"limits": {"memory": "1Gi"}}}]}});
        async move { post(client, &format!("/api/v1/namespaces/{ns}/pods"), &pod).await }
    });
    let created: Vec<anyhow::Result<Value>> =
        stream::iter(creates).buffer_unordered(16).collect().await;
    if let Some(Err(e)) = created.into_iter().find(Result::is_err) {
        return Err(e);
    }
    eprintln!(
        "{} pods in {:.0} s",
        args.pods,
        started.elapsed().as_secs_f64()
    );
    rows.push((
        format!("{} guarded pods, watched since before", args.pods),
        settled_rss(first.pid).await,
        settled_rss(plain.pid).await,
    ));

    // A new leader lists them all.
    children.stop("watcher-1");
    children.stop("plain-1");
    let second = start_serve(
        children,
        "watcher-2",
        &args.jvm_guard,
        certs,
        kubeconfig,
        &watcher("two"),
    )
    .await?;
    let plain = start_serve(
        children,
        "plain-2",
        &args.jvm_guard,
        certs,
        kubeconfig,
        &offline,
    )
    .await?;
    wait_leader(&second).await?;
    rows.push((
        format!("{} guarded pods, listed by a new leader", args.pods),
        settled_rss(second.pid).await,
        settled_rss(plain.pid).await,
    ));

    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let patches = (0..args.terminations.min(args.pods)).map(|n| {
        let ns = namespaces[n % namespaces.len()].clone();
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let body = json!({"status": {"containerStatuses": [{
            "name": "app", "image": PUBLIC_IMAGE, "imageID": "", "ready": false, "restartCount": 1,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"containerID": format!("containerd://{n}"), "exitCode": 137,
                "reason": "OOMKilled", "finishedAt": now, "message": "jvm-guard: no verdict"}}}]}});
        async move {
            api.patch_status(&format!("api-{n}"), &kube::api::PatchParams::default(), &kube::api::Patch::Strategic(body))
                .await
                .map(|_| ())
        }
    });
    let patched: Vec<Result<(), kube::Error>> =
        stream::iter(patches).buffer_unordered(16).collect().await;
    if let Some(Err(e)) = patched.into_iter().find(Result::is_err) {
        bail!("patching a pod's status: {e}");
    }
    // Until the watcher has counted them all.
    let deadline = Instant::now() + Duration::from_secs(600);
    let http = plain_http();
    let admin = second.admin.clone().unwrap();
    loop {
        let text = http
            .get(format!("{admin}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        let seen = metric_sum(&text, "jvm_guard_container_terminations_total", &[]);
        if seen >= args.terminations.min(args.pods) as f64 {
            break;
        }
        if Instant::now() > deadline {
            bail!("the watcher counted {seen} terminations in 600 s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    rows.push((
        format!("… after {} terminations (2 Events each)", args.terminations),
        settled_rss(second.pid).await,
        settled_rss(plain.pid).await,
    ));
    children.stop("watcher-2");
    children.stop("plain-2");

    report.push_str(
        "\n### The pod watcher\n\n| pods | serve --watch-pods (leader): RSS MiB | its peak \
         | serve without the watcher, started with it: RSS MiB | its peak |\n|---|---|---|---|---|\n",
    );
    for (what, (rss, hwm), (plain_rss, plain_hwm)) in &rows {
        writeln!(
            report,
            "| {what} | {rss:.1} | {hwm:.1} | {plain_rss:.1} | {plain_hwm:.1} |"
        )?;
    }
    Ok(())
}

/// Until `server` says it holds the pod watcher's Lease.
async fn wait_leader(server: &Server) -> anyhow::Result<()> {
    let http = plain_http();
    let admin = server.admin.clone().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let text = http
            .get(format!("{admin}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        if metric_sum(&text, "jvm_guard_pod_watcher_leader", &[]) >= 1.0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{} did not take the pod watcher's Lease in 120 s",
                server.name
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A series of image configs for `images`: `count` images whose config `fields` makes from a
/// tag, RSS read at each checkpoint.
struct Series {
    name: &'static str,
    what: &'static str,
    count: usize,
    fields: Box<dyn Fn(&str) -> Value>,
    checkpoints: Vec<usize>,
    /// Whether the lookup must be refused: a config past a bound that is not cut but refused
    /// (a command cut short would be another command).
    refused: bool,
}

async fn images(
    args: &CachesArgs,
    children: &mut Children,
    certs: &Path,
    report: &mut String,
) -> anyhow::Result<()> {
    // Images: a serve with the namespaces of a file (no apiserver in the way), reviews posted
    // to it directly, each naming an image of its own.
    let registry = Registry::start_in(tempfile::tempdir_in(&children.dir)?, false, command).await;
    let host = registry.host();
    let namespaces = children.dir.join("namespaces.yaml");
    std::fs::write(
        &namespaces,
        format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: bench\n  labels:\n    \
             {INJECT_LABEL}: enabled\n"
        ),
    )?;
    let serve_args = |extra: &[&str]| -> Vec<String> {
        let mut args = vec![
            "--insecure-registry".to_string(),
            host.clone(),
            "--namespaces-file".into(),
            namespaces.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let ca = reqwest::Certificate::from_pem(&std::fs::read(certs.join("ca.crt"))?)?;
    let https = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(ca)
        .build()?;

    // Env and Labels at their bounds with realistic entries (~100 bytes); entries as small as
    // they can be (the bound counts each entry's Strings besides its text, so fewer are kept);
    // an Entrypoint past its bound (256 strings, 16 KiB), which is refused, not cut.
    let env_entry = |i: usize| format!("SETTING_{i:05}={}", "v".repeat(84));
    let at_bounds = move |tag: &str| {
        let env: Vec<String> = (0..16 * 1024 / 100).map(env_entry).collect();
        let labels: BTreeMap<String, String> = (0..4 * 1024 / 100 - 1)
            .map(|i| (format!("org.example.label-{i:03}"), "l".repeat(74)))
            .chain([("bench.jvm-guard.io/tag".to_string(), tag.to_string())])
            .collect();
        json!({"Entrypoint": ["java"], "Env": env, "Labels": labels})
    };
    let tiny_env = |tag: &str| {
        let env: Vec<String> = std::iter::repeat_n("A=".to_string(), 8 * 1024).collect();
        json!({"Entrypoint": ["java"], "Env": env, "Labels": {"bench.jvm-guard.io/tag": tag}})
    };
    let huge_entrypoint = |tag: &str| {
        let entrypoint: Vec<&str> = std::iter::repeat_n("a", 258_000).collect();
        json!({"Entrypoint": entrypoint, "Labels": {"bench.jvm-guard.io/tag": tag}})
    };
    let series = [
        Series {
            name: "typical",
            what: "a JDK image's config (6 Env entries, 3 labels; ~600 bytes)",
            count: args.images,
            fields: Box::new(typical_config),
            checkpoints: vec![100, 250, 500, 1000, 1500],
            refused: false,
        },
        Series {
            name: "bounds",
            what: "Env and Labels at their bounds (163 entries of 100 bytes, 16 KiB; 40 labels, 4 KiB)",
            count: 1_100,
            fields: Box::new(at_bounds),
            checkpoints: vec![100, 250, 500, 1000, 1100],
            refused: false,
        },
        Series {
            name: "tiny-env",
            what: "Env of 8,192 entries `A=` (16 KiB of text)",
            count: 256,
            fields: Box::new(tiny_env),
            checkpoints: vec![64, 128, 256],
            refused: false,
        },
        Series {
            name: "entrypoint",
            what: "Entrypoint of 258,000 one-letter strings (a 1 MiB config; refused, the failure cached)",
            count: 16,
            fields: Box::new(huge_entrypoint),
            checkpoints: vec![4, 8, 16],
            refused: true,
        },
    ];
    report.push_str(
        "\n### Image configs in the lookup cache\n\nRSS MiB of a serve that has looked up N \
         distinct images (each named by one review posted to it), 2 s after the last one.\n\n\
         | image configs | N = 0 | N: RSS MiB | peak | MiB per image (slope) |\n|---|---|---|---|---|\n",
    );
    for Series {
        name,
        what,
        count,
        fields,
        checkpoints,
        refused,
    } in series
    {
        let started = Instant::now();
        let tags: Vec<String> = (0..count).map(|n| format!("{name}-{n}")).collect();
        push_images(&registry, &format!("bench/{name}"), tags, fields).await;
        eprintln!(
            "{count} {name} images pushed in {:.0} s",
            started.elapsed().as_secs_f64()
        );
        let serve_name = format!("serve-images-{name}");
        let server = start_serve(
            children,
            &serve_name,
            &args.jvm_guard,
            certs,
            None,
            &serve_args(&[]),
        )
        .await?;
        // The lookups happen: a missing image's fails, the first pushed one's does not (or is
        // refused, for a series past a bound that refuses).
        let missing = format!("{host}/bench/{name}:missing");
        post_review(&https, &server.url, &missing).await?;
        let (idle, _) = settled_rss(server.pid).await;
        let mut points = Vec::new();
        let mut done = 0;
        for checkpoint in checkpoints.into_iter().filter(|n| *n <= count) {
            while done < checkpoint {
                let image = format!("{host}/bench/{name}:{name}-{done}");
                post_review(&https, &server.url, &image).await?;
                if done == 0 {
                    let log = children.log(&serve_name);
                    if !lookup_failed(&log, &missing) || lookup_failed(&log, &image) != refused {
                        bail!("{serve_name} did not look {image} up as expected: see {log:?}");
                    }
                }
                done += 1;
            }
            let (rss, hwm) = settled_rss(server.pid).await;
            points.push((checkpoint, rss, hwm));
        }
        children.stop(&serve_name);
        let cells: Vec<String> = points
            .iter()
            .map(|(n, rss, _)| format!("{n}: {rss:.1}"))
            .collect();
        let (_, _, peak) = *points.last().unwrap();
        // The slope from the first checkpoint to the last one the cache holds (1,024 entries):
        // the idle figure still has the start-up's transient memory in it.
        let held: Vec<_> = points.iter().filter(|(n, _, _)| *n <= 1024).collect();
        let per_image = match (held.first(), held.last()) {
            (Some((n0, r0, _)), Some((n1, r1, _))) if n1 > n0 => (r1 - r0) / (n1 - n0) as f64,
            _ => 0.0,
        };
        writeln!(
            report,
            "| {what} | {idle:.1} | {} | {peak:.1} | {per_image:.3} |",
            cells.join(", ")
        )?;
    }
    Ok(())
}

/// One pod CREATE review naming `image`, posted to `url`; the answer.
async fn post_review(https: &reqwest::Client, url: &str, image: &str) -> anyhow::Result<()> {
    let pod = serde_json::to_value(jvm_pod(image))?;
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "3f6c2b1e-8d4a-4c2f-9b7e-5a1d0e9c4b21",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "bench",
            "operation": "CREATE",
            "userInfo": {"username": "bench"},
            "object": pod,
        },
    });
    let response = https
        .post(url)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&review)?)
        .send()
        .await?;
    let status = response.status();
    let answer: Value = serde_json::from_str(&response.text().await?)?;
    if !status.is_success() || answer["response"]["allowed"] != true {
        bail!("{url} answered {status}: {answer}");
    }
    Ok(())
}

/// Whether `serve` logged a failed lookup of `image` (its log, at info).
fn lookup_failed(log: &Path, image: &str) -> bool {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .any(|l| l.contains("image ENTRYPOINT unresolved") && l.contains(image))
}
