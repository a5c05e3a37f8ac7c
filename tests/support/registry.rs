//! A real registry on loopback for the registry and e2e suites: Debian's `docker-registry` (the
//! CNCF Distribution registry), started with a temporary config on a free port, and images
//! pushed through its HTTP API (config blob, one layer, manifest). Without the binary the
//! suites that use it fail, naming the package; `scripts/test.sh` installs it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::process::free_port;

const REGISTRY_BINARY: &str = "docker-registry";
/// The basic credentials of a registry started with `basic_auth`.
pub const USER: &str = "puller";
pub const PASSWORD: &str = "pull-s3cret";

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

pub fn find_registry() -> PathBuf {
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

/// A `docker-registry` process on loopback, killed when dropped.
pub struct Registry {
    pub child: Child,
    pub addr: SocketAddr,
    /// Basic credentials it requires, if any.
    auth: Option<(String, String)>,
    dir: tempfile::TempDir,
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
    /// A registry in a temporary directory of its own, started with `Command::new`.
    pub async fn start(basic_auth: bool) -> Registry {
        let plain = |binary: &Path| Command::new(binary);
        Registry::start_in(tempfile::tempdir().unwrap(), basic_auth, plain).await
    }

    /// A registry keeping its config, data and log in `dir`, its process made by `command`
    /// from the binary's path (the e2e cluster's children die with the thread that started
    /// them).
    pub async fn start_in(
        dir: tempfile::TempDir,
        basic_auth: bool,
        command: impl FnOnce(&Path) -> Command,
    ) -> Registry {
        let binary = find_registry();
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
        let child = command(&binary)
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
            dir,
            http: {
                // reqwest here runs on the binary's rustls provider, as the resolver does.
                let _ = rustls::crypto::ring::default_provider().install_default();
                // Loopback only, and no idle connections: the e2e cluster starts its registry
                // on a runtime that ends with the boot, and tests push from their own.
                reqwest::Client::builder()
                    .no_proxy()
                    .pool_max_idle_per_host(0)
                    .build()
                    .unwrap()
            },
        };
        registry.wait_ready().await;
        registry
    }

    pub fn host(&self) -> String {
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
                let log = std::fs::read_to_string(self.dir.path().join("registry.log"));
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
    pub async fn push_blob(&self, repo: &str, media_type: &str, bytes: &[u8]) -> Value {
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
    pub async fn push_manifest(
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
    pub async fn push_image(
        &self,
        repo: &str,
        tag: &str,
        entrypoint: Option<&[&str]>,
        cmd: Option<&[&str]>,
        docker_media_types: bool,
        arch: &str,
    ) -> Value {
        let fields = json!({"Entrypoint": entrypoint, "Cmd": cmd, "Env": ["PATH=/usr/bin"]});
        self.push_config(repo, tag, fields, docker_media_types, arch)
            .await
    }

    /// An OCI image (amd64) whose config has this ENTRYPOINT and `Env` (`NAME=value`).
    pub async fn push_image_with_env(
        &self,
        repo: &str,
        tag: &str,
        entrypoint: &[&str],
        env: &[&str],
    ) -> Value {
        let fields = json!({"Entrypoint": entrypoint, "Env": env});
        self.push_config(repo, tag, fields, false, "amd64").await
    }

    /// An image whose config's `config` object is `fields`, one layer.
    pub async fn push_config(
        &self,
        repo: &str,
        tag: &str,
        fields: Value,
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
            "config": fields,
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

pub fn sha256(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}
