//! The e2e harness: one etcd, one kube-apiserver (tests/support/control_plane.rs) and one
//! `jvm-guard serve` (watching that apiserver through a kubeconfig) per test binary, on loopback,
//! with the chart's webhook configuration registered; torn down when the process exits, however
//! it exits.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::Client;
use serde_json::{json, Value};

use crate::control_plane::{
    b64, client_from, command, e2e_bin_dir, helm_bin, required, start_apiserver, start_etcd,
    ApiServer, Pki, Processes, E2E_HINT,
};
use crate::process::{follow_lines, run_bounded, within};
use crate::registry_support::Registry;

pub const BIN: &str = env!("CARGO_BIN_EXE_jvm-guard");
pub const TOOLS_IMAGE: &str = "ghcr.io/jvm-guard/jvm-guard:e2e";
/// The release namespace the chart excludes; `serve --webhook-namespace`.
pub const WEBHOOK_NAMESPACE: &str = "jvm-guard";
/// Name of the shared webhook configuration, rendered from the chart.
pub const WEBHOOK_CONFIG: &str = "jvm-guard-e2e";
/// Namespaces of tests that register a webhook of their own: the shared one leaves them alone.
pub const OWN_WEBHOOK_NAMESPACES: &[&str] = &[
    "e2e-down-ignore",
    "e2e-down-fail",
    "e2e-hardening-lookups",
    // Opted in and served by no webhook: the pod watcher's unguarded pods.
    "e2e-watch-missed",
];

/// Processes of the shared cluster, killed (and the directory removed) at process exit.
static TEARDOWN: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static TEARDOWN_DIR: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn teardown() {
    let pids = TEARDOWN.lock().map(|p| p.clone()).unwrap_or_default();
    for pid in pids.iter().rev() {
        unsafe {
            libc::kill(*pid as libc::pid_t, libc::SIGKILL);
            libc::waitpid(*pid as libc::pid_t, std::ptr::null_mut(), 0);
        }
    }
    if let Some(dir) = TEARDOWN_DIR.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Children started while the cluster boots, their logs in its directory: killed if the boot
/// fails.
struct Started {
    dir: PathBuf,
    children: Vec<(String, Child)>,
}

impl Drop for Started {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Started {
    /// Hands the processes to the exit-time teardown.
    fn keep(mut self) {
        let mut pids = TEARDOWN.lock().unwrap();
        for (_, child) in self.children.drain(..) {
            pids.push(child.id());
            // The teardown reaps it by pid.
            std::mem::forget(child);
        }
    }
}

impl Processes for Started {
    fn spawn(&mut self, name: &str, program: &Path, args: &[String]) -> Result<(), String> {
        let child = command(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.log(name)).unwrap())
            .spawn()
            .map_err(|e| format!("{name}: {e}"))?;
        self.children.push((name.to_string(), child));
        Ok(())
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

/// The shared cluster. Tests use their own namespaces, so they run in parallel.
pub struct Cluster {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    kubeconfig_yaml: String,
    /// The serving certificate of the webhooks (`jvm-guard certs`): ca.crt, tls.crt, tls.key.
    pub webhook_certs: PathBuf,
    pub serve: Serve,
    /// A plain `docker-registry` on loopback; `serve` reaches it as an `--insecure-registry`.
    /// Images pushed to it are `127.0.0.1:<port>/<name>:<tag>`.
    pub registry: Registry,
    pub boot_time: Duration,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();

/// The shared cluster, started by the first test that asks. A boot failure fails every test
/// with the same message.
pub fn cluster() -> &'static Cluster {
    match CLUSTER.get_or_init(start) {
        Ok(cluster) => cluster,
        Err(e) => panic!("the e2e cluster did not start: {e}"),
    }
}

fn start() -> Result<Cluster, String> {
    let (tx, rx) = mpsc::channel();
    // PR_SET_PDEATHSIG fires when the *thread* that forked ends, so the cluster is started by
    // a thread that lives as long as the process, not by the test that came first.
    std::thread::Builder::new()
        .name("e2e-cluster".into())
        .spawn(move || {
            let result = std::panic::catch_unwind(boot).unwrap_or_else(|panic| {
                Err(panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".into()))
            });
            let _ = tx.send(result);
            loop {
                std::thread::park();
            }
        })
        .unwrap();
    rx.recv_timeout(Duration::from_secs(300))
        .unwrap_or_else(|_| Err("no cluster within 300 s".into()))
}

fn boot() -> Result<Cluster, String> {
    let started_at = Instant::now();
    let etcd = required(e2e_bin_dir().join("etcd"), "etcd", E2E_HINT)?;
    let apiserver = required(
        e2e_bin_dir().join("kube-apiserver"),
        "kube-apiserver",
        E2E_HINT,
    )?;
    required(helm_bin(), "helm", E2E_HINT)?;

    let dir = std::env::temp_dir().join(format!("jvm-guard-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TEARDOWN_DIR.set(dir.clone()).unwrap();
    unsafe { libc::atexit(teardown) };

    let mut started = Started {
        dir: dir.clone(),
        children: Vec::new(),
    };
    let etcd_url = start_etcd(&mut started, &etcd, "e2e", &dir)?;

    let pki = Pki::new("e2e").apiserver_files(&dir, &[[127, 0, 0, 1]], &["localhost"]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let kubeconfig_yaml = start_apiserver(
        &mut started,
        &runtime,
        &ApiServer {
            binary: &apiserver,
            etcd_url: &etcd_url,
            pki: &pki,
            address: "127.0.0.1",
            port: None,
            // A loopback address may not go into the `kubernetes` Endpoints.
            args: vec!["--endpoint-reconciler-type=none".into()],
        },
    )?;
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, &kubeconfig_yaml).unwrap();

    let webhook_certs = dir.join("webhook-certs");
    let out = run_bounded(
        Command::new(BIN)
            .arg("certs")
            .arg("--out")
            .arg(&webhook_certs),
        30,
    );
    if !out.status.success() {
        return Err(format!(
            "jvm-guard certs: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }

    // Started by this thread, so it dies with it as the others do; killed if the boot fails
    // (its Drop), else at exit (the teardown, by pid). Its directory is the cluster's.
    let registry = runtime.block_on(Registry::start_in(
        tempfile::tempdir_in(&dir).unwrap(),
        false,
        command,
    ));
    let serve = Serve::start(
        &kubeconfig,
        &webhook_certs,
        "shared",
        Some(&registry.host()),
    )?;
    started.children.push(("serve".into(), serve.take_child()));
    let mut cluster = Cluster {
        dir,
        kubeconfig,
        kubeconfig_yaml,
        webhook_certs,
        serve,
        registry,
        boot_time: Duration::ZERO,
    };
    runtime.block_on(cluster.register_shared_webhook())?;
    started.keep();
    // The static cluster is never dropped: the teardown kills the registry with the rest.
    TEARDOWN.lock().unwrap().push(cluster.registry.child.id());
    cluster.boot_time = started_at.elapsed();
    Ok(cluster)
}

impl Cluster {
    /// A client for the current test's runtime (a client's connections belong to a runtime).
    pub async fn client(&self) -> Client {
        client_from(&self.kubeconfig_yaml).await
    }

    pub fn webhook_ca(&self) -> String {
        std::fs::read_to_string(self.webhook_certs.join("ca.crt")).unwrap()
    }

    /// The chart's MutatingWebhookConfiguration (`helm template`, certificate mode `existing`
    /// with our CA as caBundle), its `clientConfig.service` replaced by the URL of a server on
    /// loopback: the chart has no `url` value, and nothing here runs a Service.
    pub fn chart_webhook(
        &self,
        name: &str,
        url: &str,
        values: Value,
    ) -> MutatingWebhookConfiguration {
        let mut all = json!({
            "fullnameOverride": name,
            "certs": {"mode": "existing", "existing": {
                "secretName": "unused-in-e2e",
                "caBundle": b64(self.webhook_ca()),
            }},
        });
        merge(&mut all, values);
        let values_file = self.dir.join(format!("values-{name}.yaml"));
        std::fs::write(&values_file, serde_yaml::to_string(&all).unwrap()).unwrap();
        let out = run_bounded(
            Command::new(helm_bin())
                .args([
                    "template",
                    "e2e",
                    &chart_dir(),
                    "--namespace",
                    WEBHOOK_NAMESPACE,
                ])
                .args(["--show-only", "templates/webhook.yaml", "-f"])
                .arg(&values_file)
                .envs(helm_env(&self.dir)),
            60,
        );
        assert!(
            out.status.success(),
            "helm template: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut config: MutatingWebhookConfiguration = serde_yaml::from_slice(&out.stdout).unwrap();
        for webhook in config.webhooks.iter_mut().flatten() {
            assert!(
                webhook.client_config.service.is_some(),
                "the chart's webhook calls a Service"
            );
            webhook.client_config.service = None;
            webhook.client_config.url = Some(url.to_string());
        }
        config
    }

    async fn register_shared_webhook(&self) -> Result<(), String> {
        let values: Value = serde_yaml::from_str(
            &std::fs::read_to_string(Path::new(&chart_dir()).join("values.yaml")).unwrap(),
        )
        .unwrap();
        let mut exclude: Vec<Value> = values["webhook"]["excludeNamespaces"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        exclude.extend(OWN_WEBHOOK_NAMESPACES.iter().map(|n| json!(n)));
        let config = self.chart_webhook(
            WEBHOOK_CONFIG,
            &self.serve.url(),
            json!({"webhook": {"excludeNamespaces": exclude}}),
        );
        let client = self.client().await;
        let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
        api.create(&PostParams::default(), &config)
            .await
            .map_err(|e| format!("registering the webhook: {e}"))?;
        // The apiserver picks the configuration up from its informer: wait until it calls us.
        let ns = "e2e-webhook-probe";
        create_namespace(&client, ns, &[("jvm-guard.io/inject", "enabled")], &[]).await;
        wait_mutated(&client, ns, 30).await;
        Ok(())
    }
}

fn chart_dir() -> String {
    format!("{}/charts/jvm-guard", env!("CARGO_MANIFEST_DIR"))
}

/// helm keeps its caches and repositories under the cluster's directory.
pub fn helm_env(dir: &Path) -> Vec<(String, PathBuf)> {
    ["HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"]
        .iter()
        .map(|var| (var.to_string(), dir.join("helm").join(var.to_lowercase())))
        .collect()
}

/// Deep-merges `patch` into `base` (objects key by key, anything else replaced).
fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(base), Value::Object(patch)) => {
            for (key, value) in patch {
                merge(base.entry(key).or_insert(Value::Null), value);
            }
        }
        (base, patch) => *base = patch,
    }
}

/// A namespace with labels and annotations, and the `default` ServiceAccount the
/// ServiceAccount admission plugin needs (there is no controller-manager to make it).
pub async fn create_namespace(
    client: &Client,
    name: &str,
    labels: &[(&str, &str)],
    annotations: &[(&str, &str)],
) {
    let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let mut ns = Namespace::default();
    ns.metadata.name = Some(name.into());
    ns.metadata.labels = Some(map(labels));
    ns.metadata.annotations = Some(map(annotations));
    let namespaces: Api<Namespace> = Api::all(client.clone());
    within(
        30,
        "create namespace",
        namespaces.create(&PostParams::default(), &ns),
    )
    .await
    .unwrap_or_else(|e| panic!("namespace {name}: {e}"));
    create_default_service_account(client, name).await;
}

pub async fn create_default_service_account(client: &Client, namespace: &str) {
    let mut sa = ServiceAccount::default();
    sa.metadata.name = Some("default".into());
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    match within(
        30,
        "create service account",
        api.create(&PostParams::default(), &sa),
    )
    .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("default ServiceAccount in {namespace}: {e}"),
    }
}

/// A minimal JVM pod: one container with a command and a memory limit.
pub fn jvm_pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{
            "name": "app",
            "image": "eclipse-temurin:21-jre",
            "command": ["java", "-jar", "/app/app.jar"],
            "resources": {"limits": {"memory": "1Gi"}},
        }]},
    })
}

pub fn is_mutated(pod: &k8s_openapi::api::core::v1::Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("jvm-guard.io/status"))
}

/// Dry-run creates a pod in `ns` until it comes back mutated: a webhook configuration
/// just created takes effect when the apiserver's informer has it.
pub async fn wait_mutated(client: &Client, ns: &str, seconds: u64) {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), ns);
    let pod = serde_json::from_value(jvm_pod("probe")).unwrap();
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let created = within(30, "dry-run create", pods.create(&dry_run, &pod)).await;
        if created.as_ref().is_ok_and(is_mutated) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no webhook mutated a pod in {ns} within {seconds} s (last: {created:?})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A running `jvm-guard serve` with a kubeconfig (the reflector path). A test's own server
/// is killed when dropped; the shared one at process exit.
pub struct Serve {
    child: Mutex<Option<Child>>,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Serve {
    /// `insecure_registry`: a `HOST:PORT` reached over plain HTTP (`--insecure-registry`).
    pub fn start(
        kubeconfig: &Path,
        certs: &Path,
        what: &str,
        insecure_registry: Option<&str>,
    ) -> Result<Serve, String> {
        let args: Vec<&str> = insecure_registry
            .map(|host| ["--insecure-registry", host])
            .into_iter()
            .flatten()
            .collect();
        Serve::start_with(kubeconfig, certs, what, &args)
    }

    /// A server with `args` besides the ones every e2e server has.
    pub fn start_with(
        kubeconfig: &Path,
        certs: &Path,
        what: &str,
        args: &[&str],
    ) -> Result<Serve, String> {
        let mut child = command(Path::new(BIN))
            .arg("serve")
            .args(args)
            .args(["--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
            .arg("--tls-cert")
            .arg(certs.join("tls.crt"))
            .arg("--tls-key")
            .arg(certs.join("tls.key"))
            .args(["--tools-image", TOOLS_IMAGE])
            .args(["--webhook-namespace", WEBHOOK_NAMESPACE])
            .args(["--log-format", "json", "--shutdown-delay", "0"])
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,jvm_guard::webhook::router=debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("jvm-guard serve: {e}"))?;
        let (logs, lines) = follow_lines(child.stderr.take().unwrap());
        let failed = |child: &mut Child, why: &str| {
            let _ = child.kill();
            let _ = child.wait();
            format!(
                "jvm-guard serve ({what}) {why}:\n{}",
                logs.lock().unwrap().join("\n")
            )
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let listening = loop {
            match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    let Ok(entry) = serde_json::from_str::<Value>(&line) else {
                        continue;
                    };
                    if entry["message"] == "listening" {
                        break entry;
                    }
                }
                Err(_) => return Err(failed(&mut child, "did not start")),
            }
        };
        let address = |field: &str| listening[field].as_str().unwrap().parse().unwrap();
        let serve = Serve {
            addr: address("addr"),
            admin: address("admin_addr"),
            child: Mutex::new(None),
            logs: logs.clone(),
        };
        // Ready once the reflector has listed the namespaces.
        let deadline = Instant::now() + Duration::from_secs(30);
        while admin_status(serve.admin, "/readyz") != Some(200) {
            if Instant::now() > deadline {
                return Err(failed(&mut child, "not ready within 30 s"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        *serve.child.lock().unwrap() = Some(child);
        Ok(serve)
    }

    /// The process id while it runs (for its `/proc/<pid>/status`).
    pub fn pid(&self) -> Option<u32> {
        self.child.lock().unwrap().as_ref().map(Child::id)
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/mutate", self.addr.port())
    }

    fn take_child(&self) -> Child {
        self.child.lock().unwrap().take().unwrap()
    }

    /// Kills the process (the webhook goes away without a goodbye).
    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The `admission reviewed` log entries of requests for `namespace`: their outcomes.
    pub fn outcomes(&self, namespace: &str) -> Vec<String> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|entry| entry["message"] == "admission reviewed")
            .filter_map(|entry| {
                let span = entry.get("span")?;
                (span["namespace"] == namespace)
                    .then(|| span["outcome"].as_str().unwrap_or("").to_string())
            })
            .collect()
    }
}

/// Status of a plain-HTTP GET on the admin port.
fn admin_status(admin: SocketAddr, path: &str) -> Option<u16> {
    admin_get(admin, path).map(|(status, _)| status)
}

/// Status and body of a plain-HTTP GET on the admin port (`/metrics`).
pub fn admin_get(admin: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut tcp = TcpStream::connect_timeout(&admin, Duration::from_secs(2)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    tcp.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}
