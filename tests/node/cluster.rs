//! The node harness: a whole one-node cluster on this machine, started once per test run and
//! torn down when the process exits, however it exits (tests/node/teardown.sh, also run before
//! the boot to clear what a killed run left).
//!
//! etcd, kube-apiserver (tests/support/control_plane.rs, as for tests/e2e),
//! kube-controller-manager, kube-scheduler, containerd (+ runc, bridge CNI), the kubelet and
//! kube-proxy; the images of tests/node/images.py imported into containerd; the chart installed
//! with `helm install`. Addresses: the node is a /32 on the
//! loopback interface, the pods are on a bridge the harness owns; pod traffic to anything but the
//! node and the pods is dropped and nothing is masqueraded, so nothing leaves the machine.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::Client;
use serde_json::json;

use crate::control_plane::{
    client_from, command, e2e_bin_dir, helm_bin, home, required, start_apiserver, start_etcd, tail,
    ApiServer, Pki, Processes, E2E_HINT, SERVICE_CIDR,
};
use crate::process::run_bounded;
use crate::versions::KUBERNETES_VERSION;

pub const NODE_NAME: &str = "jvm-guard-node";
pub const NODE_IP: &str = "10.255.100.1";
pub const POD_CIDR: &str = "10.244.0.0/24";
pub const BRIDGE: &str = "jgnode0";
pub const APISERVER_PORT: u16 = 6443;
/// Fixed paths (the kubelet's ports and the node address are fixed too): one node run at a
/// time on a machine, which LOCK enforces.
pub const STATE: &str = "/var/lib/jvm-guard-node";
pub const RUN: &str = "/run/jvm-guard-node";
const LOCK: &str = "/run/jvm-guard-node.lock";
pub const KUBELET_ROOT: &str = "/var/lib/jvm-guard-node/kubelet";

pub const JVM_GUARD_IMAGE: &str = "ghcr.io/jvm-guard/jvm-guard:node";
pub const SHELL_IMAGE: &str = "jvm-guard.test/jdk17-shell:node";
pub const DISTROLESS_IMAGE: &str = "jvm-guard.test/jdk17-distroless:node";
/// A JDK 8u151 stand-in (tests/node/images.py): refuses the options 8u151 does not know.
pub const STANDIN_IMAGE: &str = "jvm-guard.test/jdk8-standin:node";
/// The chart's release, in its own namespace.
pub const RELEASE: &str = "jvm-guard";
pub const RELEASE_NAMESPACE: &str = "jvm-guard";

const NODE_HINT: &str = "run scripts/install-node-tools.sh (scripts/test.sh and .ci/run do)";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The node's components: scripts/install-node-tools.sh's directory.
pub fn node_bin_dir() -> PathBuf {
    std::env::var_os("JVM_GUARD_NODE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            home()
                .join(".cache/jvm-guard-e2e")
                .join(format!("node-{KUBERNETES_VERSION}"))
        })
}

/// The static tools binary as shipped (the image's only file of note): scripts/pgo.sh builds it,
/// run by scripts/test.sh.
pub fn musl_binary() -> PathBuf {
    repo().join("target/pgo/x86_64-unknown-linux-musl/jvm-guard")
}

/// A program from a Debian package, on PATH.
fn system(program: &str) -> Result<PathBuf, String> {
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain(["/usr/sbin".into(), "/sbin".into()])
    {
        let path = dir.join(program);
        if path.is_file() {
            return Ok(path);
        }
    }
    Err(format!("{program} not found on PATH: {NODE_HINT}"))
}

/// Every binary the node needs.
pub struct Binaries {
    etcd: PathBuf,
    apiserver: PathBuf,
    controller_manager: PathBuf,
    scheduler: PathBuf,
    kubelet: PathBuf,
    kube_proxy: PathBuf,
    pause: PathBuf,
    containerd: PathBuf,
    ctr: PathBuf,
    helm: PathBuf,
    jvm_guard: PathBuf,
}

impl Binaries {
    pub fn find() -> Result<Binaries, String> {
        let e2e = e2e_bin_dir();
        let node = node_bin_dir();
        system("runc")?;
        system("iptables")?;
        required(
            "/usr/lib/cni/bridge".into(),
            "the bridge CNI plugin",
            NODE_HINT,
        )?;
        required(
            "/usr/lib/cni/host-local".into(),
            "the host-local CNI plugin",
            NODE_HINT,
        )?;
        required("/bin/busybox".into(), "busybox (busybox-static)", NODE_HINT)?;
        Ok(Binaries {
            etcd: required(e2e.join("etcd"), "etcd", E2E_HINT)?,
            apiserver: required(e2e.join("kube-apiserver"), "kube-apiserver", E2E_HINT)?,
            controller_manager: required(
                node.join("kube-controller-manager"),
                "kube-controller-manager",
                NODE_HINT,
            )?,
            scheduler: required(node.join("kube-scheduler"), "kube-scheduler", NODE_HINT)?,
            kubelet: required(node.join("kubelet"), "kubelet", NODE_HINT)?,
            kube_proxy: required(node.join("kube-proxy"), "kube-proxy", NODE_HINT)?,
            pause: required(node.join("pause"), "pause", NODE_HINT)?,
            containerd: system("containerd")?,
            ctr: system("ctr")?,
            helm: required(helm_bin(), "helm", E2E_HINT)?,
            jvm_guard: required(
                musl_binary(),
                "the static jvm-guard",
                "scripts/pgo.sh, the profile-guided static build (scripts/test.sh runs it)",
            )?,
        })
    }
}

/// Runs a setup command to its end; its output goes into the error.
fn sh(program: &str, args: &[&str], seconds: u64) -> Result<String, String> {
    let out = run_bounded(Command::new(program).args(args), seconds);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {}: {}\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

static TEARDOWN_PIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static KUBE_PROXY: OnceLock<PathBuf> = OnceLock::new();
static LOCK_FD: OnceLock<i32> = OnceLock::new();

/// The directory the logs of a run are kept in (not removed by the teardown).
pub fn log_dir() -> PathBuf {
    std::env::temp_dir().join("jvm-guard-node-logs")
}

fn run_teardown() -> Result<(), String> {
    // Traced: its log says what it found and did.
    let mut cmd = Command::new("bash");
    cmd.arg("-x").arg(repo().join("tests/node/teardown.sh"));
    cmd.env("JVM_GUARD_NODE_LOGS", log_dir());
    if let Some(proxy) = KUBE_PROXY.get() {
        cmd.env("JVM_GUARD_NODE_KUBE_PROXY", proxy);
    }
    let out = run_bounded(&mut cmd, 180);
    let _ = std::fs::create_dir_all(log_dir());
    let _ = std::fs::write(
        log_dir().join("teardown.log"),
        [out.stdout.as_slice(), out.stderr.as_slice()].concat(),
    );
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "tests/node/teardown.sh: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

extern "C" fn teardown() {
    // The components are stopped by the script (by their pid files); this reaps them.
    if let Err(e) = run_teardown() {
        eprintln!("node teardown: {e}");
    }
    let pids = TEARDOWN_PIDS.lock().map(|p| p.clone()).unwrap_or_default();
    for pid in pids.iter().rev() {
        unsafe {
            libc::kill(*pid as libc::pid_t, libc::SIGKILL);
            libc::waitpid(*pid as libc::pid_t, std::ptr::null_mut(), 0);
        }
    }
}

pub struct Cluster {
    kubeconfig_yaml: String,
    pub boot_time: Duration,
    /// How long each step of the boot took, in order.
    pub steps: Vec<(String, Duration)>,
    /// `helm install` output.
    pub helm_output: String,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();

/// The shared cluster, booted by the first test that asks. A boot failure fails every test
/// with the same message.
pub fn cluster() -> &'static Cluster {
    match CLUSTER.get_or_init(start) {
        Ok(cluster) => cluster,
        Err(e) => panic!(
            "the node cluster did not start: {e}\n(logs in {})",
            log_dir().display()
        ),
    }
}

fn start() -> Result<Cluster, String> {
    let (tx, rx) = mpsc::channel();
    // PR_SET_PDEATHSIG fires when the *thread* that forked ends: the cluster is started by a
    // thread that lives as long as the process.
    std::thread::Builder::new()
        .name("node-cluster".into())
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
    // The lock may wait for another run on this machine; the boot itself is a few minutes.
    rx.recv_timeout(Duration::from_secs(3600))
        .unwrap_or_else(|_| Err("no cluster within 60 min".into()))
}

/// One node run at a time on this machine: fixed address, ports and paths.
fn lock() -> Result<(), String> {
    let path = std::ffi::CString::new(LOCK).unwrap();
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_CREAT | libc::O_RDWR, 0o644) };
    if fd < 0 {
        return Err(format!("{LOCK}: {}", std::io::Error::last_os_error()));
    }
    let started = Instant::now();
    let mut said = false;
    while unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        if !said {
            eprintln!("tests/node: another node run holds {LOCK}; waiting for it");
            said = true;
        }
        if started.elapsed() > Duration::from_secs(45 * 60) {
            return Err(format!("{LOCK} still held after 45 min"));
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    // Held until the process exits (the fd is never closed).
    let _ = LOCK_FD.set(fd);
    Ok(())
}

struct Steps {
    last: Instant,
    done: Vec<(String, Duration)>,
}

impl Steps {
    fn step(&mut self, what: &str) {
        let now = Instant::now();
        self.done.push((what.to_string(), now - self.last));
        eprintln!(
            "tests/node: {what} ({:.1} s)",
            (now - self.last).as_secs_f64()
        );
        self.last = now;
    }
}

fn boot() -> Result<Cluster, String> {
    let started_at = Instant::now();
    if unsafe { libc::geteuid() } != 0 {
        return Err(
            "tests/node runs a real node and needs root (containerd, the kubelet, \
             iptables); run it as root, as scripts/test.sh in CI does"
                .into(),
        );
    }
    let binaries = Binaries::find()?;
    let mut steps = Steps {
        last: Instant::now(),
        done: Vec::new(),
    };
    lock()?;
    run_teardown()?;
    let _ = KUBE_PROXY.set(binaries.kube_proxy.clone());
    unsafe { libc::atexit(teardown) };
    steps.step("lock and cleanup");

    let logs = log_dir();
    let _ = std::fs::remove_dir_all(&logs);
    std::fs::create_dir_all(&logs).unwrap();
    for dir in [STATE, RUN, &format!("{RUN}/pids")] {
        std::fs::create_dir_all(dir).map_err(|e| format!("{dir}: {e}"))?;
    }
    let state = Path::new(STATE);
    let write = |name: &str, text: &str| {
        let path = state.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    };

    // Images first: the slow part on a cold cache, before anything runs.
    let images = images(&binaries)?;
    steps.step("images");

    // The network: the node's address, the rules that keep pod traffic on the machine.
    write(
        "ip_forward",
        &std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap_or("0".into()),
    );
    network()?;
    steps.step("network");

    let pki = Pki::new("node");
    let api_pki = pki.apiserver_files(
        &state.join("pki"),
        &[[10, 255, 100, 1], [10, 96, 0, 1], [127, 0, 0, 1]],
        &[
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ],
    );
    let ca = api_pki.ca.clone();
    let sa_key = api_pki.sa_key.clone();
    let (kubelet_cert, kubelet_key) = pki.serving("kubelet", &[[10, 255, 100, 1]], &[NODE_NAME]);
    let kubelet_crt = write("pki/kubelet.crt", &kubelet_cert);
    let kubelet_key = write("pki/kubelet.key", &kubelet_key);
    let admin_crt = write("pki/admin.crt", &api_pki.admin_cert);
    let admin_key = write("pki/admin.key", &api_pki.admin_key);

    let etcd_url = start_etcd(&mut Components, &binaries.etcd, "node", state)?;
    steps.step("etcd");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let kubeconfig_yaml = start_apiserver(
        &mut Components,
        &runtime,
        &ApiServer {
            binary: &binaries.apiserver,
            etcd_url: &etcd_url,
            pki: &api_pki,
            address: NODE_IP,
            port: Some(APISERVER_PORT),
            args: vec![
                format!("--kubelet-client-certificate={}", admin_crt.display()),
                format!("--kubelet-client-key={}", admin_key.display()),
                "--kubelet-preferred-address-types=InternalIP".into(),
            ],
        },
    )?;
    let kubeconfig = write("kubeconfig", &kubeconfig_yaml);
    steps.step("kube-apiserver");

    start_containerd(&binaries)?;
    for (name, archive) in &images {
        sh(
            binaries.ctr.to_str().unwrap(),
            &[
                "-a",
                &format!("{RUN}/containerd.sock"),
                "-n",
                "k8s.io",
                "images",
                "import",
                archive,
            ],
            300,
        )
        .map_err(|e| format!("importing {name}: {e}"))?;
    }
    steps.step("containerd and image import");

    let kc = kubeconfig.display().to_string();
    spawn(
        "kube-controller-manager",
        &binaries.controller_manager,
        &[
            format!("--kubeconfig={kc}"),
            format!("--authentication-kubeconfig={kc}"),
            format!("--authorization-kubeconfig={kc}"),
            "--leader-elect=false".into(),
            "--bind-address=127.0.0.1".into(),
            format!("--root-ca-file={}", ca.display()),
            format!("--service-account-private-key-file={}", sa_key.display()),
            "--use-service-account-credentials=false".into(),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            "--profiling=false".into(),
        ],
    )?;
    spawn(
        "kube-scheduler",
        &binaries.scheduler,
        &[
            format!("--kubeconfig={kc}"),
            format!("--authentication-kubeconfig={kc}"),
            format!("--authorization-kubeconfig={kc}"),
            "--leader-elect=false".into(),
            "--bind-address=127.0.0.1".into(),
            "--profiling=false".into(),
        ],
    )?;

    let kubelet_config = write(
        "kubelet-config.yaml",
        &kubelet_config(&ca, &kubelet_crt, &kubelet_key),
    );
    spawn(
        "kubelet",
        &binaries.kubelet,
        &[
            format!("--config={}", kubelet_config.display()),
            format!("--kubeconfig={kc}"),
            format!("--root-dir={KUBELET_ROOT}"),
            format!("--hostname-override={NODE_NAME}"),
            format!("--node-ip={NODE_IP}"),
            "-v=1".into(),
        ],
    )?;
    runtime.block_on(wait_node_ready(&kubeconfig_yaml))?;
    steps.step("controller-manager, scheduler, kubelet: node Ready");

    let proxy_config = write("kube-proxy.yaml", &kube_proxy_config(&kubeconfig));
    spawn(
        "kube-proxy",
        &binaries.kube_proxy,
        &[
            format!("--config={}", proxy_config.display()),
            "-v=1".into(),
        ],
    )?;
    wait_proxy()?;
    steps.step("kube-proxy");

    let helm_output = helm_install(&binaries, &kubeconfig)?;
    steps.step("helm install --wait");

    Ok(Cluster {
        kubeconfig_yaml,
        boot_time: started_at.elapsed(),
        steps: steps.done,
        helm_output,
    })
}

/// `images.py build`: NAME<TAB>ARCHIVE lines, archives cached by content.
fn images(binaries: &Binaries) -> Result<Vec<(String, String)>, String> {
    let cache = home().join(".cache/jvm-guard-e2e/node-images");
    let script = repo().join("tests/node/images.py");
    let out = sh(
        "python3",
        &[
            script.to_str().unwrap(),
            "build",
            "--cache",
            cache.to_str().unwrap(),
            "--pause",
            binaries.pause.to_str().unwrap(),
            "--jvm-guard",
            binaries.jvm_guard.to_str().unwrap(),
        ],
        900,
    )?;
    Ok(out
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .map(|(name, path)| (name.to_string(), path.to_string()))
        .collect())
}

fn network() -> Result<(), String> {
    sh(
        "ip",
        &["addr", "add", &format!("{NODE_IP}/32"), "dev", "lo"],
        30,
    )?;
    let chain = "JVM-GUARD-NODE";
    sh("iptables", &["-w", "-N", chain], 30)?;
    // Pod traffic may reach other pods (and, through INPUT, the node); nothing else.
    sh(
        "iptables",
        &["-w", "-A", chain, "-d", POD_CIDR, "-j", "RETURN"],
        30,
    )?;
    sh("iptables", &["-w", "-A", chain, "-j", "DROP"], 30)?;
    sh(
        "iptables",
        &["-w", "-I", "FORWARD", "1", "-i", BRIDGE, "-j", chain],
        30,
    )?;
    // A Service address kube-proxy has not translated (yet) goes nowhere, not to the default
    // route (filter OUTPUT sees the address after kube-proxy's DNAT).
    sh(
        "iptables",
        &["-w", "-I", "OUTPUT", "1", "-d", SERVICE_CIDR, "-j", "DROP"],
        30,
    )?;
    std::fs::create_dir_all(format!("{STATE}/cni/net.d")).unwrap();
    let conflist = json!({
        "cniVersion": "0.4.0",
        "name": "jvm-guard-pods",
        "plugins": [{
            "type": "bridge", "bridge": BRIDGE, "isGateway": true, "ipMasq": false,
            "hairpinMode": true,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_CIDR}]],
                     "routes": [{"dst": "0.0.0.0/0"}], "dataDir": format!("{STATE}/cni/ipam")},
        }],
    });
    std::fs::write(
        format!("{STATE}/cni/net.d/10-jvm-guard.conflist"),
        serde_json::to_string_pretty(&conflist).unwrap(),
    )
    .unwrap();
    Ok(())
}

/// Starts a component with its log in the log directory and its pid where the teardown finds
/// it.
fn spawn(name: &str, program: &Path, args: &[String]) -> Result<Child, String> {
    let log = log_dir().join(format!("{name}.log"));
    let child = command(program)
        .env("NO_PROXY", format!("127.0.0.1,localhost,{NODE_IP}"))
        .args(args)
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::options().append(true).open(&log).unwrap())
        .spawn()
        .map_err(|e| format!("{name}: {e}"))?;
    std::fs::write(format!("{RUN}/pids/{name}"), child.id().to_string()).unwrap();
    TEARDOWN_PIDS.lock().unwrap().push(child.id());
    Ok(child)
}

/// Whether the component named has exited. Not reaped until the test process exits: its pid
/// stays its own for the teardown, which ends the components by pid.
fn exited(name: &str) -> bool {
    let pid = std::fs::read_to_string(format!("{RUN}/pids/{name}")).unwrap_or_default();
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim()));
    status.map(|s| s.contains("State:\tZ")).unwrap_or(true)
}

/// Fails with the log's tail when the process named exited.
fn check_alive(name: &str) -> Result<(), String> {
    if exited(name) {
        return Err(format!(
            "{name} exited:\n{}",
            tail(&log_dir().join(format!("{name}.log")), 30)
        ));
    }
    Ok(())
}

/// The node's etcd and kube-apiserver are components like the others: their pid files and the
/// exit-time teardown end them, a failed boot's too.
struct Components;

impl Processes for Components {
    fn spawn(&mut self, name: &str, program: &Path, args: &[String]) -> Result<(), String> {
        spawn(name, program, args).map(drop)
    }

    fn exited(&mut self, name: &str) -> Option<String> {
        exited(name).then(|| "exited".to_string())
    }

    fn stop(&mut self, _: &str) {}

    fn log(&self, name: &str) -> PathBuf {
        log_dir().join(format!("{name}.log"))
    }
}

fn start_containerd(binaries: &Binaries) -> Result<(), String> {
    let config = format!(
        r#"version = 2
root = "{STATE}/containerd"
state = "{RUN}/containerd-state"
[grpc]
  address = "{RUN}/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  # This machine's root lacks CAP_SYS_RESOURCE: no negative oom_score_adj.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{STATE}/cni/net.d"
"#
    );
    let path = Path::new(STATE).join("containerd.toml");
    std::fs::write(&path, config).unwrap();
    spawn(
        "containerd",
        &binaries.containerd,
        &[format!("--config={}", path.display())],
    )?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        check_alive("containerd")?;
        let out = run_bounded(
            Command::new(&binaries.ctr).args(["-a", &format!("{RUN}/containerd.sock"), "version"]),
            30,
        );
        if out.status.success() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "containerd not answering within 60 s:\n{}",
                tail(&log_dir().join("containerd.log"), 20)
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn kubelet_config(ca: &Path, cert: &Path, key: &Path) -> String {
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://{RUN}/containerd.sock
address: {NODE_IP}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: {cert}
tlsPrivateKeyFile: {key}
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: false}}
  x509: {{clientCAFile: {ca}}}
authorization: {{mode: AlwaysAllow}}
oomScoreAdj: 0
resolvConf: /etc/resolv.conf
podLogsDir: {STATE}/pod-logs
evictionHard: {{memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}}
# No iptables chains of its own on this machine (kube-proxy's are undone by its --cleanup).
makeIPTablesUtilChains: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
syncFrequency: 10s
fileCheckFrequency: 5s
"#,
        cert = cert.display(),
        key = key.display(),
        ca = ca.display(),
    )
}

async fn wait_node_ready(kubeconfig: &str) -> Result<(), String> {
    let client = client_from(kubeconfig).await;
    let nodes: Api<Node> = Api::all(client);
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        for name in ["kubelet", "kube-controller-manager", "kube-scheduler"] {
            check_alive(name)?;
        }
        if let Ok(Some(node)) = nodes.get_opt(NODE_NAME).await {
            let ready = node
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if ready {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "node {NODE_NAME} not Ready within 180 s:\n{}",
                tail(&log_dir().join("kubelet.log"), 30)
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn kube_proxy_config(kubeconfig: &Path) -> String {
    format!(
        r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: {kubeconfig}
mode: iptables
hostnameOverride: {NODE_NAME}
bindAddress: {NODE_IP}
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["{NODE_IP}/32"]
conntrack:
  maxPerCore: 0
  min: 0
iptables:
  localhostNodePorts: false
"#,
        kubeconfig = kubeconfig.display()
    )
}

/// kube-proxy is serving once its healthz says so (it has synced the Services).
fn wait_proxy() -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        check_alive("kube-proxy")?;
        if let Ok(mut tcp) = TcpStream::connect(("127.0.0.1", 10256)) {
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = tcp.write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n");
            let mut response = String::new();
            let _ = tcp.read_to_string(&mut response);
            if response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200") {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "kube-proxy not healthy within 120 s:\n{}",
                tail(&log_dir().join("kube-proxy.log"), 30)
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

pub fn helm_env() -> Vec<(String, PathBuf)> {
    ["HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"]
        .iter()
        .map(|var| {
            (
                var.to_string(),
                Path::new(STATE).join("helm").join(var.to_lowercase()),
            )
        })
        .collect()
}

/// The real chart, the local image, `certs.mode=helm`; `--wait` for both replicas.
fn helm_install(binaries: &Binaries, kubeconfig: &Path) -> Result<String, String> {
    let (repository, tag) = JVM_GUARD_IMAGE.rsplit_once(':').unwrap();
    let out = run_bounded(
        Command::new(&binaries.helm)
            .args(["install", RELEASE])
            .arg(repo().join("charts/jvm-guard"))
            .args(["--namespace", RELEASE_NAMESPACE, "--create-namespace"])
            .args(["--set", &format!("image.repository={repository}")])
            .args(["--set", &format!("image.tag={tag}")])
            .args(["--set", "image.pullPolicy=Never"])
            .args(["--set", "certs.mode=helm"])
            // No registry is reachable from here: images are not looked up (`serve --offline`).
            .args(["--set", "imageResolution.enabled=false"])
            .args(["--wait", "--timeout", "5m"])
            .env("KUBECONFIG", kubeconfig)
            .envs(helm_env()),
        400,
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("helm install: {}\n{text}", out.status))
    }
}

impl Cluster {
    pub async fn client(&self) -> Client {
        client_from(&self.kubeconfig_yaml).await
    }
}

/// Labels as a map.
pub fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
