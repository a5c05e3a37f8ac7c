//! `jvm-guard serve`'s flags (SPEC §5.1), each also from a `JVM_GUARD_*` variable, and the
//! registry flags it shares with `mutate`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::DEFAULT_TOOLS_IMAGE;
use crate::config::ServerSettings;
use crate::registry::{RegistryConfig, SecretSource};
use crate::watch::WatchOptions;
use crate::webhook::tls::CertFiles;
use crate::webhook::{LogFormat, NamespaceSource, ServeOptions, DEFAULT_MAX_CONNECTIONS};

/// `jvm-guard serve` (SPEC §5.1). Addresses left unset depend on `--dev`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// HTTPS address of the webhook [default: 0.0.0.0:8443, or 127.0.0.1:8443 with --dev].
    /// Port 0 picks a free port; the bound address is logged in the `listening` line.
    #[arg(long, env = "JVM_GUARD_ADDR", value_name = "IP:PORT")]
    pub addr: Option<SocketAddr>,
    /// Plain-HTTP address of /healthz, /readyz and /metrics [default: 0.0.0.0:8080, or
    /// 127.0.0.1:8080 with --dev].
    #[arg(long, env = "JVM_GUARD_ADMIN_ADDR", value_name = "IP:PORT")]
    pub admin_addr: Option<SocketAddr>,
    /// PEM certificate chain, leaf first; reloaded when it changes. Required without --dev.
    #[arg(long, env = "JVM_GUARD_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the certificate (PKCS#8, SEC1 or PKCS#1); reloaded with it.
    /// Required without --dev.
    #[arg(long, env = "JVM_GUARD_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Namespace objects (multi-document YAML or a List) instead of watching the cluster;
    /// those labelled jvm-guard.io/inject=enabled are opted in, with their annotations.
    #[arg(long, env = "JVM_GUARD_NAMESPACES_FILE", value_name = "FILE")]
    pub namespaces_file: Option<PathBuf>,
    /// Cluster-wide defaults: a YAML map of jvm-guard keys, and launcher `profiles:`.
    #[arg(long, env = "JVM_GUARD_DEFAULTS", value_name = "FILE")]
    pub defaults: Option<PathBuf>,
    /// Image of the injected tools init container (this image). Without it no tools are
    /// injected: no agent, no ulimits, no heap-dump rotation (logged at start-up) [default:
    /// none; with --dev, the published image].
    #[arg(long, env = "JVM_GUARD_TOOLS_IMAGE", value_name = "IMAGE")]
    pub tools_image: Option<String>,
    /// Permit `dump-volume: hostPath:<path>` (refused with a warning otherwise).
    #[arg(long, env = "JVM_GUARD_ALLOW_HOST_PATH")]
    pub allow_host_path: bool,
    /// After SIGTERM, how long to keep accepting requests with /readyz failing, before
    /// draining: seconds, or a duration such as 5s, 1500ms, 1m.
    #[arg(
        long,
        env = "JVM_GUARD_SHUTDOWN_DELAY",
        value_name = "DURATION",
        default_value = "5s",
        value_parser = parse_duration
    )]
    pub shutdown_delay: Duration,
    /// Log lines as text or as JSON objects, on stderr. RUST_LOG sets the level (default
    /// `info`).
    #[arg(long, env = "JVM_GUARD_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// The webhook's own namespace, never mutated.
    #[arg(long, env = "JVM_GUARD_WEBHOOK_NAMESPACE", value_name = "NAMESPACE")]
    pub webhook_namespace: Option<String>,
    /// Try it on a laptop: an in-memory self-signed certificate for localhost and 127.0.0.1,
    /// loopback addresses, the published tools image, and every namespace opted in unless
    /// --namespaces-file is given.
    #[arg(long, env = "JVM_GUARD_DEV")]
    pub dev: bool,
    /// Open webhook connections at most; beyond it new connections wait in the listen queue
    /// until one closes. Slow or idle clients are closed after 10 s (TLS handshake, request
    /// head, an HTTP/2 connection without a request), so they cannot hold the slots for long.
    /// Each costs up to ~200 KiB: the default keeps the worst case near 100 MiB, inside the
    /// chart's 192Mi limit. The admin port has its own limit of 64.
    #[arg(
        long,
        env = "JVM_GUARD_MAX_CONNECTIONS",
        value_name = "N",
        default_value_t = DEFAULT_MAX_CONNECTIONS,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_connections: u32,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Read the pod's imagePullSecrets (kubernetes.io/dockerconfigjson) to look up private
    /// images; needs `get` on Secrets, and --client-ca (a forged review could otherwise name
    /// another namespace's Secret). Answers are cached per credential.
    #[arg(long, env = "JVM_GUARD_IMAGE_PULL_SECRETS")]
    pub image_pull_secrets: bool,
    /// PEM bundle of the CA that issued the kube-apiserver's client certificate (its admission
    /// configuration's kubeconfig for this webhook): connections to the webhook port without a
    /// certificate it issued are refused in the TLS handshake.
    #[arg(long, env = "JVM_GUARD_CLIENT_CA", value_name = "FILE")]
    pub client_ca: Option<PathBuf>,
    /// Watch the pods of opted-in namespaces (one replica at a time, elected by the Lease
    /// jvm-guard-pod-watcher in --webhook-namespace): an Event on the pod and its workload when
    /// a guarded container terminates (JvmHeapOutOfMemory, JvmKilledByKernel, JvmExited) and
    /// for pods the webhook missed (JvmGuardUnguarded), and their metrics. Needs pods
    /// get/list/watch, events create/patch and the Lease (the chart grants them).
    #[arg(long, env = "JVM_GUARD_WATCH_PODS")]
    pub watch_pods: bool,
    /// This replica's name in the Lease and in its Events [default: the host name, in a pod
    /// the pod's name].
    #[arg(long, env = "JVM_GUARD_WATCH_IDENTITY", value_name = "NAME")]
    pub watch_identity: Option<String>,
}

/// How image configs (ENTRYPOINT, CMD, Env, labels) are looked up, for `serve` and `mutate`.
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryArgs {
    /// Never contact a registry: containers without `command` are not wrapped by the agent
    /// (their JVM flags are merged at admission), and what image configs would say is not
    /// known (features it decides are unverified), with a warning.
    #[arg(long, env = "JVM_GUARD_OFFLINE")]
    pub offline: bool,
    /// A registry reached over plain HTTP instead of HTTPS; repeatable (comma-separated in
    /// the variable).
    #[arg(
        long = "insecure-registry",
        env = "JVM_GUARD_INSECURE_REGISTRY",
        value_name = "HOST:PORT",
        value_delimiter = ','
    )]
    pub insecure_registries: Vec<String>,
    /// A host that token realms and redirects named by registries may reach although it is on
    /// a private, loopback or link-local address (still over HTTPS); repeatable
    /// (comma-separated in the variable). Registries' own hosts need no listing.
    #[arg(
        long = "allow-registry",
        env = "JVM_GUARD_ALLOW_REGISTRY",
        value_name = "HOST:PORT",
        value_delimiter = ','
    )]
    pub allowed_registries: Vec<String>,
    /// The time all image lookups of one pod may take together (keep it well under the
    /// webhook's timeoutSeconds); after it the pod is admitted with its unresolved containers
    /// unwrapped, and a warning.
    #[arg(
        long,
        env = "JVM_GUARD_REGISTRY_TIMEOUT",
        value_name = "DURATION",
        default_value = "1.5s",
        value_parser = parse_duration
    )]
    pub registry_timeout: Duration,
}

impl RegistryArgs {
    /// The resolver's configuration, `None` when offline.
    pub fn config(
        &self,
        secrets: Option<std::sync::Arc<dyn SecretSource>>,
    ) -> Option<RegistryConfig> {
        (!self.offline).then(|| RegistryConfig {
            insecure: self.insecure_registries.clone(),
            allowed: self.allowed_registries.clone(),
            budget: self.registry_timeout,
            secrets,
        })
    }
}

pub const DEFAULT_ADDR: &str = "0.0.0.0:8443";
pub const DEFAULT_ADMIN_ADDR: &str = "0.0.0.0:8080";
pub const DEV_ADDR: &str = "127.0.0.1:8443";
pub const DEV_ADMIN_ADDR: &str = "127.0.0.1:8080";

impl ServeArgs {
    pub fn addr(&self) -> SocketAddr {
        let default = if self.dev { DEV_ADDR } else { DEFAULT_ADDR };
        self.addr
            .unwrap_or_else(|| default.parse().expect("valid default"))
    }

    pub fn admin_addr(&self) -> SocketAddr {
        let default = if self.dev {
            DEV_ADMIN_ADDR
        } else {
            DEFAULT_ADMIN_ADDR
        };
        self.admin_addr
            .unwrap_or_else(|| default.parse().expect("valid default"))
    }

    /// The certificate files, `None` for the in-memory `--dev` certificate, or what is missing.
    pub fn tls_files(&self) -> Result<Option<CertFiles>, String> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Some(CertFiles {
                cert: cert.clone(),
                key: key.clone(),
            })),
            (None, None) if self.dev => Ok(None),
            (None, None) => Err(
                "--tls-cert and --tls-key are required (or JVM_GUARD_TLS_CERT \
                 and JVM_GUARD_TLS_KEY); for a try-out without certificates use --dev"
                    .into(),
            ),
            (Some(_), None) => Err("--tls-cert is given without --tls-key".into()),
            (None, Some(_)) => Err("--tls-key is given without --tls-cert".into()),
        }
    }

    /// What `serve` runs with, or what is missing (the certificate files) or unsafe.
    pub fn options(&self) -> Result<ServeOptions, String> {
        let image_pull_secrets = self.image_pull_secrets && !self.registry.offline;
        if image_pull_secrets && self.client_ca.is_none() {
            return Err(
                "--image-pull-secrets needs --client-ca (JVM_GUARD_CLIENT_CA): without client \
                 authentication any client that reaches the webhook can forge a review naming \
                 another namespace's Secret"
                    .into(),
            );
        }
        let namespaces = match (&self.namespaces_file, self.dev) {
            (Some(path), _) => NamespaceSource::File(path.clone()),
            (None, true) => NamespaceSource::Every,
            (None, false) => NamespaceSource::Cluster,
        };
        let watch = self.watch_options(&namespaces)?;
        Ok(ServeOptions {
            addr: self.addr(),
            admin_addr: self.admin_addr(),
            tls: self.tls_files()?,
            namespaces,
            defaults: self.defaults.clone(),
            settings: self.settings(),
            shutdown_delay: self.shutdown_delay,
            log_format: self.log_format,
            max_connections: self.max_connections,
            registry: self.registry.config(None),
            image_pull_secrets,
            client_ca: self.client_ca.clone(),
            watch,
            dev: self.dev,
        })
    }

    /// The pod watcher's options with `--watch-pods`, or why it cannot run.
    fn watch_options(&self, namespaces: &NamespaceSource) -> Result<Option<WatchOptions>, String> {
        if !self.watch_pods {
            return Ok(None);
        }
        if *namespaces != NamespaceSource::Cluster {
            return Err("--watch-pods watches the cluster: it cannot run with \
                        --namespaces-file or --dev"
                .into());
        }
        let Some(namespace) = self.webhook_namespace.clone() else {
            return Err(
                "--watch-pods needs --webhook-namespace (JVM_GUARD_WEBHOOK_NAMESPACE): \
                        its Lease lives there"
                    .into(),
            );
        };
        let identity = match &self.watch_identity {
            Some(identity) => identity.clone(),
            None => std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .ok()
                .filter(|h| !h.is_empty())
                .ok_or("--watch-pods: no host name to name this replica; give --watch-identity")?,
        };
        Ok(Some(WatchOptions {
            namespace,
            identity,
        }))
    }

    /// The server-side settings every mutation gets.
    pub fn settings(&self) -> ServerSettings {
        let dev_image = self.dev.then(|| DEFAULT_TOOLS_IMAGE.to_string());
        ServerSettings {
            allow_host_path: self.allow_host_path,
            webhook_namespace: self.webhook_namespace.clone(),
            tools_image: self.tools_image.clone().or(dev_image),
            ..ServerSettings::default()
        }
    }
}

/// Seconds (`5`, `0.5`) or a humantime duration (`5s`, `1500ms`, `1m 30s`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(seconds) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds)
            .map_err(|_| format!("{s:?} is not a number of seconds >= 0"));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?}: {e}; give seconds or a duration such as 5s, 1500ms, 1m"))
}
