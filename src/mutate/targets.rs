//! Which containers of a pod get the features (SPEC §2), by evidence: a container is a JVM, not
//! a JVM, or unknown; known sidecars (meshes, agents, JVM metrics exporters) are never chosen
//! unless named.

use std::cell::OnceCell;

use super::env::{EnvSources, EnvView};
use super::image::ImageConfig;
use super::pod::{Container, Pod};
use super::shell::{self, base};
use super::{image, launcher};
use crate::config::{Key, ProfileChoice, Profiles, Targets, Warnings};

pub const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";

/// Containers that meshes, secret managers and agents inject next to the application.
pub const KNOWN_SIDECARS: &[&str] = &[
    "istio-proxy",
    "linkerd-proxy",
    "vault-agent",
    "consul-dataplane",
    "envoy",
    "envoy-sidecar",
    "kuma-sidecar",
    "daprd",
    "cloud-sql-proxy",
    "cloudsql-proxy",
    "aws-xray-daemon",
    "datadog-agent",
    "otel-collector",
    "jaeger-agent",
    "fluent-bit",
    "oauth2-proxy",
    "config-reload",
];

/// JVM metrics exporters run as sidecars (`java -jar jmx_prometheus_httpserver.jar`, Bitnami's
/// `jmx-exporter`): JVMs, but never the application. Matched in the name or image...
const EXPORTER_MARKS: &[&str] = &[
    "jmx-exporter",
    "jmx_prometheus",
    "prometheus-jmx",
    "jmx-prometheus",
];
/// ... or the standalone exporter's jar in the command (its in-process `-javaagent` jar,
/// `jmx_prometheus_javaagent`, leaves the container the application's).
const EXPORTER_JARS: &[&str] = &["jmx_prometheus_httpserver", "jmx_prometheus_standalone"];

/// Image names (the repository's last segment) that are not JVMs: web servers, proxies, shells,
/// other runtimes, databases (research notes of the 35 public charts, and their Dockerfiles).
const NOT_JVM_IMAGES: &[&str] = &[
    "nginx",
    "envoy",
    "proxyv2",
    "haproxy",
    "traefik",
    "caddy",
    "httpd",
    "busybox",
    "alpine",
    "debian",
    "ubuntu",
    "curl",
    "os-shell",
    "kubectl",
    "git",
    "python",
    "node",
    "golang",
    "ruby",
    "php",
    "redis",
    "postgres",
    "postgresql",
    "mysql",
    "mariadb",
    "mongo",
    "mongodb",
    "memcached",
    "etcd",
    "minio",
    "mc",
    "vault",
    "fluent-bit",
    "k8s-sidecar",
    "kibana",
    "opensearch-dashboards",
    "bats",
    "kafka-exporter",
    "pause",
];

/// Of [`NOT_JVM_IMAGES`], the language runtimes, matched only as the whole image name (their
/// names prefix other products': `node-chrome` is a Selenium node, a JVM).
const RUNTIME_IMAGES: &[&str] = &["python", "node", "golang", "ruby", "php"];

/// Programs that are not JVMs: a command, or a shell script, running only these is not one.
const NOT_JVM_PROGRAMS: &[&str] = &[
    "sh",
    "bash",
    "ash",
    "dash",
    "zsh",
    "curl",
    "wget",
    "nc",
    "ncat",
    "timeout",
    "sleep",
    "echo",
    "printf",
    "cat",
    "cp",
    "mv",
    "rm",
    "ls",
    "find",
    "tar",
    "touch",
    "tee",
    "chown",
    "chmod",
    "mkdir",
    "ln",
    "sysctl",
    "ulimit",
    "openssl",
    "envsubst",
    "sed",
    "awk",
    "grep",
    "jq",
    "yq",
    "kubectl",
    "pg_isready",
    "psql",
    "mysql",
    "redis-cli",
    "mc",
    "bats",
    "python",
    "python3",
    "node",
    "npm",
    "npx",
    "yarn",
    "nginx",
    "openresty",
    "envoy",
    "gunicorn",
    "uwsgi",
    "uvicorn",
    "celery",
    "php-fpm",
    "apache2-foreground",
    "httpd",
    "httpd-foreground",
    "caddy",
    "haproxy",
    "ruby",
    "bundle",
    "rails",
    "puma",
    "dotnet",
    "true",
    "false",
    "test",
    "[",
    "export",
    "set",
    "exit",
    "wait",
    "until",
    "do",
    "done",
    "while",
    "if",
    "then",
    "fi",
    "else",
    "for",
    "in",
    "cd",
    "exec",
    "elif",
    "basename",
    "dirname",
    "date",
    "head",
    "tail",
    "sort",
    "uniq",
    "wc",
    "tr",
    "cut",
    "xargs",
    "read",
    "local",
    "return",
    "source",
    ".",
    "[[",
    "unset",
    "trap",
    "shift",
    "case",
    "esac",
    "base64",
    "sha256sum",
    "id",
    "whoami",
    "hostname",
    "env",
    "stat",
    "df",
    "du",
    "ps",
    "kill",
    "function",
    "IFS",
];

/// Scripts of other languages, by their extension: their interpreter is not a JVM.
const NOT_JVM_SCRIPTS: &[&str] = &[".py", ".rb", ".js", ".mjs", ".pl", ".php"];

/// Whether `program` is known not to be a JVM: by name, or a script of another language.
fn not_a_jvm(program: &str) -> bool {
    let name = base(program);
    NOT_JVM_PROGRAMS.contains(&name) || NOT_JVM_SCRIPTS.iter().any(|ext| name.ends_with(ext))
}

/// Env variables that only a JVM reads.
const JVM_VARS: &[&str] = &[
    "JAVA_TOOL_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "JAVA_OPTS",
    "JAVA_HOME",
    "JAVA_VERSION",
    "_JAVA_OPTIONS",
];

/// Variables the official images of other runtimes and servers set (their Dockerfiles'
/// `ENV`): a container whose environment has one and no JVM variable is not a JVM.
const NOT_JVM_VARS: &[&str] = &[
    "PYTHON_VERSION",
    "NODE_VERSION",
    "NGINX_VERSION",
    "GOLANG_VERSION",
    "RUBY_VERSION",
    "PHP_VERSION",
    "HTTPD_VERSION",
    "CADDY_VERSION",
    "HAPROXY_VERSION",
    "DOTNET_VERSION",
    "ASPNET_VERSION",
    "RUST_VERSION",
    "PERL_VERSION",
    "REDIS_VERSION",
    "PG_VERSION",
    "MYSQL_VERSION",
    "MARIADB_VERSION",
    "MONGO_VERSION",
    "COUCHDB_VERSION",
    "OPENRESTY_VERSION",
    // A Python virtual environment, whatever installed the interpreter.
    "VIRTUAL_ENV",
    "GOPATH",
];

/// What the pod spec (and the image config, when looked up) says about a container being a
/// JVM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    /// Seen: the reason.
    Jvm(String),
    NotJvm(String),
    Unknown,
}

/// Why a container is a target, as the status says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// JVM evidence.
    Seen,
    /// No evidence either way: the namespace opted in, so the default target is guarded.
    Assumed,
    /// Listed in `containers`.
    Named,
}

impl Why {
    pub fn as_str(self) -> &'static str {
        match self {
            Why::Seen => "seen",
            Why::Assumed => "assumed",
            Why::Named => "named",
        }
    }
}

/// A JVM metrics exporter sidecar, by its name, image or command.
pub fn is_exporter(container: &Container) -> bool {
    let named = std::iter::once(container.name.as_str())
        .chain(container.image.as_deref())
        .map(|w| match w.bytes().any(|b| b.is_ascii_uppercase()) {
            true => std::borrow::Cow::Owned(w.to_ascii_lowercase()),
            false => std::borrow::Cow::Borrowed(w),
        })
        .any(|w| EXPORTER_MARKS.iter().any(|m| w.contains(m)));
    let mut argv = container
        .command
        .iter()
        .flatten()
        .chain(container.args.iter().flatten());
    named || argv.any(|w| EXPORTER_JARS.iter().any(|j| w.contains(j)))
}

fn is_sidecar(container: &Container) -> bool {
    KNOWN_SIDECARS.contains(&container.name.as_str()) || is_exporter(container)
}

/// The evidence a container gives of being a JVM.
pub fn evidence(container: &Container, env: &EnvView<'_>, profiles: &Profiles) -> Evidence {
    let argv = env.argv();
    let programs = shell::programs(argv.iter().copied());
    if launcher::runs_java(&argv) {
        let java = argv
            .iter()
            .map(|a| a.as_str())
            .chain(programs.iter().map(String::as_str))
            .find(|p| *p == "java" || p.ends_with("/java"))
            .unwrap_or("java");
        return Evidence::Jvm(format!("runs {java}"));
    }
    if let Some(p) = launcher::select(container, env, &ProfileChoice::Auto, profiles) {
        return Evidence::Jvm(format!("the {} launcher", p.name));
    }
    // What the command runs outweighs what the environment is ready for: a toolbox in a JVM
    // image (JAVA_HOME set) that runs only Python scripts and `sleep` is not a JVM.
    if !programs.is_empty() && programs.iter().all(|c| not_a_jvm(c)) {
        return Evidence::NotJvm(format!("runs {}", programs.join(", ")));
    }
    let names = env.names();
    // Looked up for each of some thirty table entries: a set, not a scan of every name each.
    let names: foldhash::HashSet<&str> = names.iter().map(String::as_str).collect();
    let set = |v: &str| names.contains(v);
    if let Some(var) = JVM_VARS.iter().find(|v| set(v)) {
        return Evidence::Jvm(format!("sets {var}"));
    }
    if let Some(var) = NOT_JVM_VARS.iter().find(|v| set(v)) {
        return Evidence::NotJvm(format!("sets {var}"));
    }
    let name = image::name(container.image.as_deref().unwrap_or_default());
    // An image known not to be a JVM stays one whatever script it runs (java was looked for).
    // A language runtime's name only as the whole name: `selenium/node-chrome` is a JVM.
    let known = |n: &&str| {
        let dashed = name
            .strip_prefix(*n)
            .is_some_and(|rest| rest.starts_with('-'));
        name == *n || (!RUNTIME_IMAGES.contains(n) && dashed)
    };
    if NOT_JVM_IMAGES.iter().any(known) {
        return Evidence::NotJvm(format!("image {name}"));
    }
    Evidence::Unknown
}

/// The containers that may turn out to be targets once their image's config is known: those
/// named in `containers`, and every other that is neither a known sidecar nor, by the pod
/// spec alone, not a JVM. Their images are the ones worth looking up.
pub fn may_be_targets(
    pod: &Pod,
    targets: &Targets,
    profiles: &Profiles,
    sources: &EnvSources,
) -> Vec<usize> {
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    let named = |c: &Container| match targets {
        Targets::Named(names) => names.contains(&c.name),
        _ => false,
    };
    (0..containers.len())
        .filter(|&i| {
            let c = &containers[i];
            let env = EnvView::new(c, sources);
            named(c)
                || !(is_sidecar(c) || matches!(evidence(c, &env, profiles), Evidence::NotJvm(_)))
        })
        .collect()
}

/// The targets, in the pod's order, each at most once, with why. `image` gives a container's
/// image config, when it was looked up.
pub fn select<'a>(
    pod: &'a Pod,
    targets: &Targets,
    profiles: &Profiles,
    sources: &EnvSources,
    image: &dyn Fn(&Container) -> Option<&'a ImageConfig>,
    warnings: &mut Warnings,
) -> Vec<(usize, Why)> {
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    // Gathered when first asked for: a known sidecar's is asked for only when it is named.
    let gathered: Vec<OnceCell<Evidence>> = containers.iter().map(|_| OnceCell::new()).collect();
    let evidence = |i: usize| {
        gathered[i].get_or_init(|| {
            let c = &containers[i];
            evidence(c, &EnvView::with_image(c, sources, image(c)), profiles)
        })
    };
    let why = |i: usize| match evidence(i) {
        Evidence::Jvm(_) => Why::Seen,
        _ => Why::Assumed,
    };
    let candidate =
        |i: &usize| !is_sidecar(&containers[*i]) && !matches!(evidence(*i), Evidence::NotJvm(_));
    let index_of = |name: &str| containers.iter().position(|c| c.name == name);
    let mut out: Vec<(usize, Why)> = match targets {
        Targets::Invalid => Vec::new(),
        Targets::All => (0..containers.len())
            .filter(candidate)
            .map(|i| (i, why(i)))
            .collect(),
        Targets::Named(names) => names
            .iter()
            .filter_map(|name| {
                let i = index_of(name);
                if i.is_none() {
                    warnings.push(format!(
                        "container {name} named in {} does not exist; skipped",
                        Key::Containers.annotation()
                    ));
                }
                i.map(|i| {
                    (
                        i,
                        if why(i) == Why::Seen {
                            Why::Seen
                        } else {
                            Why::Named
                        },
                    )
                })
            })
            .collect(),
        Targets::Default => {
            let named = pod
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DEFAULT_CONTAINER_ANNOTATION));
            match named {
                Some(name) => match index_of(name) {
                    Some(i) => vec![(i, why(i))],
                    None => {
                        warnings.push(format!(
                            "container {name} named in {DEFAULT_CONTAINER_ANNOTATION} does not exist; nothing injected"
                        ));
                        Vec::new()
                    }
                },
                None => {
                    let seen = (0..containers.len())
                        .filter(candidate)
                        .find(|i| matches!(evidence(*i), Evidence::Jvm(_)));
                    match seen.or_else(|| (0..containers.len()).find(candidate)) {
                        Some(i) => vec![(i, why(i))],
                        None => {
                            if !containers.is_empty() {
                                warnings.push(format!(
                                    "no container looks like a JVM (every one is a known sidecar or not a JVM); name the JVM container in {}",
                                    Key::Containers.annotation()
                                ));
                            }
                            Vec::new()
                        }
                    }
                }
            }
        }
    };
    out.sort_unstable_by_key(|(i, _)| *i);
    out.dedup_by_key(|(i, _)| *i);
    if !out.is_empty() {
        for (i, c) in containers.iter().enumerate() {
            let targeted = out.iter().any(|(t, _)| *t == i);
            if targeted || is_sidecar(c) {
                continue;
            }
            if let Evidence::Jvm(reason) = evidence(i) {
                warnings.push(format!(
                    "container {} looks like a JVM ({reason}) but is not guarded; name it in {}",
                    c.name,
                    Key::Containers.annotation()
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use rstest::rstest;
    use serde_json::json;

    use super::*;

    fn container(value: serde_json::Value) -> Container {
        serde_json::from_value(value).unwrap()
    }

    #[rstest]
    #[case::java(json!({"name": "a", "command": ["java", "-jar", "app.jar"]}), "jvm")]
    #[case::java_in_script(json!({"name": "a", "command": ["sh", "-c", "exec /opt/java/bin/java -jar x.jar"]}), "jvm")]
    #[case::profile(json!({"name": "a", "image": "bitnami/kafka:3.9"}), "jvm")]
    #[case::env(json!({"name": "a", "image": "corp/app:1", "env": [{"name": "JAVA_OPTS", "value": "-Dx"}]}), "jvm")]
    #[case::curl_job(json!({"name": "a", "image": "bitnami/os-shell", "command": ["/bin/bash", "-ec", "curl -f http://x; echo done"]}), "not")]
    #[case::nginx(json!({"name": "a", "image": "nginx:1.27"}), "not")]
    #[case::plain(json!({"name": "a", "image": "corp/orders:1"}), "unknown")]
    #[case::script(json!({"name": "a", "image": "corp/orders:1", "command": ["/opt/start.sh"]}), "unknown")]
    #[case::a_toolbox_that_sleeps(
        json!({"name": "a", "image": "corp/toolset:1", "command": ["sh", "-c"], "args": ["bin/apply-config.py conf/client.conf;\nsleep 100000"]}),
        "not"
    )]
    #[case::gunicorn(json!({"name": "a", "image": "corp/frontend:1", "command": ["gunicorn", "app:app"]}), "not")]
    #[case::selenium_node(json!({"name": "a", "image": "selenium/node-chrome:4.27"}), "unknown")]
    #[case::a_launcher_under_timeout(
        json!({"name": "a", "image": "corp/broker:1", "command": ["timeout", "60", "sh", "-c"], "args": ["bin/broker init"]}),
        "unknown"
    )]
    #[case::a_toolbox_in_a_jvm_image(
        json!({"name": "a", "image": "corp/broker:1", "command": ["sh", "-c", "bin/apply.py conf/x.conf; sleep 1000"], "env": [{"name": "JAVA_HOME", "value": "/opt/jvm"}]}),
        "not"
    )]
    #[case::python_by_its_image_env(json!({"name": "a", "image": "corp/frontend:1", "env": [{"name": "PYTHON_VERSION", "value": "3.12.1"}]}), "not")]
    fn classifies(#[case] c: serde_json::Value, #[case] expected: &str) {
        let c = container(c);
        let sources = EnvSources::default();
        let got = match evidence(&c, &EnvView::new(&c, &sources), &Profiles::default()) {
            Evidence::Jvm(_) => "jvm",
            Evidence::NotJvm(_) => "not",
            Evidence::Unknown => "unknown",
        };
        assert_eq!(got, expected);
    }

    #[test]
    fn exporters_are_sidecars() {
        let confluent = container(json!({
            "name": "prometheus-jmx-exporter",
            "image": "solsson/kafka-prometheus-jmx-exporter@sha256:6f82",
            "command": ["java", "-jar", "jmx_prometheus_httpserver.jar", "5556"],
        }));
        assert!(is_exporter(&confluent));
        let bitnami = container(
            json!({"name": "metrics", "image": "bitnami/jmx-exporter:1", "args": ["-jar", "jmx_prometheus_standalone.jar"]}),
        );
        assert!(is_exporter(&bitnami));
        let app = container(
            json!({"name": "app", "image": "corp/app", "args": ["-javaagent:/jmx_prometheus_javaagent.jar=9404:/c.yml"]}),
        );
        assert!(
            !is_exporter(&app),
            "the in-process agent leaves the container the app's"
        );
    }
}
