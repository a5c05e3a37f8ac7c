//! The control plane of both cluster suites (tests/e2e on loopback, tests/node on the node's
//! address): etcd and kube-apiserver, started and waited for, the PKI they and the clients use,
//! the admin kubeconfig, and where the install scripts put the binaries.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use serde_json::json;

use crate::process::free_port;
use crate::versions::{ETCD_VERSION, HELM_VERSION, KUBERNETES_VERSION};

/// What a missing etcd, kube-apiserver or helm fails with.
pub const E2E_HINT: &str = "run scripts/install-e2e-tools.sh (scripts/test.sh and .ci/run do)";
/// The Services' range: the apiserver's, the controller-manager's, the node's firewall.
pub const SERVICE_CIDR: &str = "10.96.0.0/16";
/// etcd's health, and kube-apiserver's readiness once etcd is up.
const ETCD_HEALTHY_WITHIN: Duration = Duration::from_secs(60);
const APISERVER_READY_WITHIN: Duration = Duration::from_secs(180);

pub fn home() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
}

/// etcd and kube-apiserver: scripts/install-e2e-tools.sh's directory.
pub fn e2e_bin_dir() -> PathBuf {
    std::env::var_os("JVM_GUARD_E2E_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            home().join(".cache/jvm-guard-e2e").join(format!(
                "{KUBERNETES_VERSION}-etcd{}",
                ETCD_VERSION.trim_start_matches('v')
            ))
        })
}

/// helm, from scripts/install-chart-tools.sh (which the e2e script runs).
pub fn helm_bin() -> PathBuf {
    std::env::var_os("JVM_GUARD_HELM")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(format!(".cache/jvm-guard/bin/helm-{HELM_VERSION}")))
}

/// A required file, or an error naming what makes it. Never a skip.
pub fn required(path: PathBuf, what: &str, hint: &str) -> Result<PathBuf, String> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!("{what} not found at {}: {hint}", path.display()))
    }
}

/// A command whose process gets SIGKILL when the thread that started it ends (and so when the
/// test process dies without unwinding), with no proxy between loopback peers.
pub fn command(program: &Path) -> Command {
    let mut command = Command::new(program);
    for var in [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        command.env_remove(var);
    }
    command
        .env("NO_PROXY", "127.0.0.1,localhost")
        .stdin(Stdio::null());
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    command
}

pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

pub fn b64(data: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// How a suite keeps the processes it starts: the e2e suite as children of its boot thread,
/// killed if the boot fails; the node suite with pid files tests/node/teardown.sh ends them by.
pub trait Processes {
    /// Starts `name`, its output in its log.
    fn spawn(&mut self, name: &str, program: &Path, args: &[String]) -> Result<(), String>;
    /// How `name` ended (`exited (exit status: 1)`), once it has.
    fn exited(&mut self, name: &str) -> Option<String>;
    /// Gives up on `name`, which did not come up.
    fn stop(&mut self, name: &str);
    fn log(&self, name: &str) -> PathBuf;
}

/// The cluster's PKI: one CA that signs the serving certificates and the admin client
/// certificate (the apiserver's --client-ca-file).
pub struct Pki {
    /// `e2e`, `node`: in the names of the CA and the admin.
    name: String,
    pub ca: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(&[(DnType::CommonName, &format!("jvm-guard {name} CA"))]);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&key).unwrap().pem();
        Pki {
            name: name.to_string(),
            ca,
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate and its key, in PEM.
    fn issue(&self, params: CertificateParams) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    pub fn serving(&self, cn: &str, ips: &[[u8; 4]], names: &[&str]) -> (String, String) {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(&[(DnType::CommonName, cn)]);
        params.subject_alt_names = ips
            .iter()
            .map(|ip| SanType::IpAddress((*ip).into()))
            .chain(
                names
                    .iter()
                    .map(|n| SanType::DnsName((*n).try_into().unwrap())),
            )
            .collect();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params)
    }

    /// `system:masters`: every permission under RBAC (the tests' and the node components').
    pub fn admin(&self) -> (String, String) {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(&[
            (DnType::CommonName, &format!("{}-admin", self.name)),
            (DnType::OrganizationName, "system:masters"),
        ]);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params)
    }

    /// kube-apiserver's files, written into `dir`: the CA, its serving certificate for `ips`
    /// and `names`, the service-account key pair; and the admin's client certificate.
    pub fn apiserver_files(&self, dir: &Path, ips: &[[u8; 4]], names: &[&str]) -> ApiServerPki {
        std::fs::create_dir_all(dir).unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let (cert, key) = self.serving("kube-apiserver", ips, names);
        let (admin_cert, admin_key) = self.admin();
        let sa = KeyPair::generate().unwrap();
        ApiServerPki {
            dir: dir.to_path_buf(),
            ca: write("ca.crt", &self.ca),
            cert: write("apiserver.crt", &cert),
            key: write("apiserver.key", &key),
            sa_key: write("sa.key", &sa.serialize_pem()),
            sa_pub: write("sa.pub", &sa.public_key_pem()),
            ca_pem: self.ca.clone(),
            admin_cert,
            admin_key,
            name: self.name.clone(),
        }
    }
}

fn dn(entries: &[(DnType, &str)]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for (kind, value) in entries {
        dn.push(kind.clone(), *value);
    }
    dn
}

/// What [`Pki::apiserver_files`] wrote, and the admin's credentials for the kubeconfig.
pub struct ApiServerPki {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub sa_key: PathBuf,
    pub sa_pub: PathBuf,
    ca_pem: String,
    /// `system:masters`, in PEM.
    pub admin_cert: String,
    pub admin_key: String,
    name: String,
}

impl ApiServerPki {
    /// The admin's kubeconfig for the apiserver at `server` (`https://HOST:PORT`).
    pub fn kubeconfig(&self, server: &str) -> String {
        let name = &self.name;
        let config = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": name, "cluster": {
                "server": server,
                "certificate-authority-data": b64(&self.ca_pem),
            }}],
            "users": [{"name": format!("{name}-admin"), "user": {
                "client-certificate-data": b64(&self.admin_cert),
                "client-key-data": b64(&self.admin_key),
            }}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": format!("{name}-admin")}}],
            "current-context": name,
        });
        serde_yaml::to_string(&config).unwrap()
    }
}

/// A one-member etcd on loopback, named `member`, its data in `data`/etcd-N (N the attempt:
/// its ports were free a moment ago, another pair is tried when one was taken meanwhile).
/// Its client URL, once /health says so.
pub fn start_etcd(
    processes: &mut impl Processes,
    etcd: &Path,
    member: &str,
    data: &Path,
) -> Result<String, String> {
    for attempt in 1..=3 {
        let (client, peer) = (free_port(), free_port());
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let name = format!("etcd-{attempt}");
        processes.spawn(
            &name,
            etcd,
            &[
                format!("--name={member}"),
                format!("--data-dir={}", data.join(&name).display()),
                format!("--listen-client-urls={client_url}"),
                format!("--advertise-client-urls={client_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster={member}={peer_url}"),
                // Test data: durability is not worth an fsync per write.
                "--unsafe-no-fsync".into(),
                "--log-level=warn".into(),
            ],
        )?;
        let deadline = Instant::now() + ETCD_HEALTHY_WITHIN;
        loop {
            if let Some(exit) = processes.exited(&name) {
                processes.stop(&name);
                let log_tail = tail(&processes.log(&name), 20);
                if attempt < 3 && log_tail.contains("address already in use") {
                    break;
                }
                return Err(format!("{name} {exit}:\n{log_tail}"));
            }
            if etcd_healthy(client) {
                return Ok(client_url);
            }
            if Instant::now() > deadline {
                processes.stop(&name);
                return Err(format!(
                    "etcd not healthy within {} s:\n{}",
                    ETCD_HEALTHY_WITHIN.as_secs(),
                    tail(&processes.log(&name), 20)
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Err("etcd: no free ports after 3 attempts".into())
}

fn etcd_healthy(port: u16) -> bool {
    let Ok(mut tcp) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(2)));
    if tcp
        .write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut response = String::new();
    let _ = tcp.read_to_string(&mut response);
    response.contains("\"health\":\"true\"")
}

/// How a suite runs kube-apiserver; the flags both need are [`start_apiserver`]'s.
pub struct ApiServer<'a> {
    pub binary: &'a Path,
    pub etcd_url: &'a str,
    pub pki: &'a ApiServerPki,
    /// Where it listens, and the kubeconfig's server.
    pub address: &'a str,
    /// `None`: a free port, another one when it was taken meanwhile.
    pub port: Option<u16>,
    /// The suite's own flags.
    pub args: Vec<String>,
}

/// Starts kube-apiserver and waits until /readyz says ok; the admin kubeconfig for it.
pub fn start_apiserver(
    processes: &mut impl Processes,
    runtime: &tokio::runtime::Runtime,
    spec: &ApiServer,
) -> Result<String, String> {
    const NAME: &str = "kube-apiserver";
    let pki = spec.pki;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let port = spec.port.unwrap_or_else(free_port);
        let mut args = vec![
            format!("--etcd-servers={}", spec.etcd_url),
            format!("--bind-address={}", spec.address),
            format!("--advertise-address={}", spec.address),
            format!("--secure-port={port}"),
            format!("--cert-dir={}", pki.dir.join("apiserver-certs").display()),
            format!("--tls-cert-file={}", pki.cert.display()),
            format!("--tls-private-key-file={}", pki.key.display()),
            format!("--client-ca-file={}", pki.ca.display()),
            "--authorization-mode=RBAC".into(),
            "--service-account-issuer=https://kubernetes.default.svc".into(),
            format!("--service-account-key-file={}", pki.sa_pub.display()),
            format!(
                "--service-account-signing-key-file={}",
                pki.sa_key.display()
            ),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            // ServiceAccount looks up each namespace's default ServiceAccount (the e2e suite,
            // without a controller-manager, makes them); PodSecurity checks the mutated pod.
            "--enable-admission-plugins=ServiceAccount,MutatingAdmissionWebhook,PodSecurity".into(),
            "--profiling=false".into(),
        ];
        args.extend(spec.args.iter().cloned());
        processes.spawn(NAME, spec.binary, &args)?;
        let kubeconfig = pki.kubeconfig(&format!("https://{}:{port}", spec.address));
        match runtime.block_on(wait_ready(&kubeconfig, || processes.exited(NAME))) {
            Ok(()) => return Ok(kubeconfig),
            Err(e) => {
                processes.stop(NAME);
                let log_tail = tail(&processes.log(NAME), 30);
                if spec.port.is_none() && attempt < 3 && log_tail.contains("address already in use")
                {
                    continue;
                }
                return Err(format!(
                    "{NAME} on {}:{port}: {e}\n{log_tail}",
                    spec.address
                ));
            }
        }
    }
}

pub async fn client_from(kubeconfig: &str) -> Client {
    let kubeconfig = Kubeconfig::from_yaml(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

/// Until /readyz says ok, the process exits, or the time is up.
async fn wait_ready(
    kubeconfig: &str,
    mut exited: impl FnMut() -> Option<String>,
) -> Result<(), String> {
    let client = client_from(kubeconfig).await;
    let deadline = Instant::now() + APISERVER_READY_WITHIN;
    let mut last;
    loop {
        if let Some(exit) = exited() {
            return Err(exit);
        }
        let request = axum::http::Request::get("/readyz")
            .body(Vec::new())
            .unwrap();
        match tokio::time::timeout(Duration::from_secs(5), client.request_text(request)).await {
            Ok(Ok(text)) if text.trim() == "ok" => return Ok(()),
            Ok(Ok(text)) => last = text,
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "timeout".into(),
        }
        if Instant::now() > deadline {
            return Err(format!(
                "not ready within {} s (last: {last})",
                APISERVER_READY_WITHIN.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
