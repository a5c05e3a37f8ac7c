//! Probes (docs/design.md#probes): the missing probe kinds, never a change to the container's
//! own. A startup probe reuses a liveness handler, never a readiness one; presets need evidence.

use k8s_openapi::api::core::v1::{HTTPGetAction, Probe, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::decision::Decision;
use super::facts::Facts;
use super::pod::Container;
use crate::config::{Feature, PortRef, ProbeConfig, ProbeMode, Switch};

const PERIOD_STARTUP: i32 = 5;
const PERIOD_READINESS: i32 = 5;
const PERIOD_LIVENESS: i32 = 10;
const FAILURES_READINESS: i32 = 5;
const FAILURES_LIVENESS: i32 = 10;
const TIMEOUT: i32 = 3;

/// A framework preset: its endpoints, and what shows that a container runs that framework's
/// application (its endpoints exist nowhere else: probing them elsewhere is a restart loop).
struct Preset {
    mode: ProbeMode,
    /// The annotation value.
    key: &'static str,
    framework: &'static str,
    /// Startup, readiness and liveness paths.
    paths: [&'static str; 3],
    /// Prefixes of the variables the framework reads its configuration from.
    env: &'static [&'static str],
    /// Prefixes of image labels its build tools set.
    labels: &'static [&'static str],
    /// Text in the command or a JVM options variable: the framework's launcher, packages or
    /// system properties.
    command: &'static [&'static str],
    /// The command markers, as a warning names them.
    command_shown: &'static str,
}

const PRESETS: [Preset; 3] = [
    Preset {
        mode: ProbeMode::SpringBoot,
        key: "spring-boot",
        framework: "Spring Boot",
        paths: [
            "/actuator/health/liveness",
            "/actuator/health/readiness",
            "/actuator/health/liveness",
        ],
        env: &["SPRING_", "MANAGEMENT_ENDPOINT", "MANAGEMENT_HEALTH_"],
        // The Paketo Spring Boot buildpack's `org.springframework.boot.version`.
        labels: &["org.springframework.boot."],
        command: &["org.springframework.boot", "-Dspring.", "--spring."],
        command_shown: "the Spring Boot loader or spring.* properties in the command",
    },
    Preset {
        mode: ProbeMode::Quarkus,
        key: "quarkus",
        framework: "Quarkus",
        paths: ["/q/health/started", "/q/health/ready", "/q/health/live"],
        env: &["QUARKUS_"],
        labels: &[],
        command: &["quarkus-run.jar", "-runner.jar", "io.quarkus", "-Dquarkus."],
        command_shown: "quarkus-run.jar, a *-runner.jar or quarkus.* properties in the command",
    },
    Preset {
        mode: ProbeMode::Micronaut,
        key: "micronaut",
        framework: "Micronaut",
        paths: ["/health/liveness", "/health/readiness", "/health/liveness"],
        env: &["MICRONAUT_"],
        labels: &[],
        command: &["io.micronaut", "-Dmicronaut."],
        command_shown: "io.micronaut classes or micronaut.* properties in the command",
    },
];

impl Preset {
    fn of(mode: &ProbeMode) -> Option<&'static Preset> {
        PRESETS.iter().find(|p| &p.mode == mode)
    }

    /// Whether the container shows this framework, else why not: its variables (the image's
    /// Env included), its image's labels, or its command (the image's when the pod sets none)
    /// or JVM options. A product's launcher is evidence against: it serves its own endpoints,
    /// whatever framework it is built on.
    fn evidence(&self, facts: &Facts<'_>) -> Result<(), String> {
        if let Some(profile) = facts.profile.filter(|p| !p.generic) {
            return Err(format!(
                "the {} launcher runs a product with its own endpoints, not a {} application",
                profile.name, self.framework
            ));
        }
        let prefixed = |name: &str, prefixes: &[&str]| prefixes.iter().any(|p| name.starts_with(p));
        // Cheapest first: the command's search looks into every variable's value.
        let by_env = || facts.env.names().iter().any(|n| prefixed(n, self.env));
        let mut labels = facts.env.image().into_iter().flat_map(|i| i.labels.keys());
        let mut by_label = || labels.any(|l| prefixed(l, self.labels));
        let by_command = || {
            let argv = facts.env.argv();
            let options = facts.places.iter().map(|(_, text)| text.as_str());
            options
                .chain(argv.iter().map(|a| a.as_str()))
                .any(|text| self.command.iter().any(|m| text.contains(m)))
        };
        if by_env() || by_label() || by_command() {
            return Ok(());
        }
        let star = |prefixes: &[&str]| {
            let names: Vec<String> = prefixes.iter().map(|p| format!("{p}*")).collect();
            names.join(", ")
        };
        let mut shown = vec![format!("{} variables", star(self.env))];
        if !self.labels.is_empty() {
            shown.push(format!("{} image labels", star(self.labels)));
        }
        shown.push(self.command_shown.to_string());
        Err(format!(
            "no {} evidence ({})",
            self.framework,
            shown.join(", ")
        ))
    }
}

/// The port to probe, or why there is none.
fn port(container: &Container, wanted: Option<&PortRef>) -> Result<i32, String> {
    let ports = container.ports.iter().flatten();
    let tcp = |p: &&k8s_openapi::api::core::v1::ContainerPort| {
        p.protocol.as_deref().is_none_or(|proto| proto == "TCP")
    };
    match wanted {
        Some(PortRef::Number(n)) => Ok(i32::from(*n)),
        Some(PortRef::Name(name)) => ports
            .clone()
            .find(|p| p.name.as_deref() == Some(name))
            .map(|p| p.container_port)
            .ok_or_else(|| format!("container {} has no port named {name}", container.name)),
        None => ports
            .clone()
            .find(|p| p.name.as_deref() == Some("http") && tcp(p))
            .or_else(|| ports.clone().find(tcp))
            .map(|p| p.container_port)
            .ok_or_else(|| {
                format!(
                    "container {} declares no TCP containerPort; set jvm-guard.io/probe-port",
                    container.name
                )
            }),
    }
}

fn probe(port: i32, path: Option<&str>, period: i32, failures: i32) -> Probe {
    let port = IntOrString::Int(port);
    let (http_get, tcp_socket) = match path {
        Some(path) => (
            Some(HTTPGetAction {
                path: Some(path.to_string()),
                port,
                ..HTTPGetAction::default()
            }),
            None,
        ),
        None => (None, Some(TCPSocketAction { port, host: None })),
    };
    Probe {
        http_get,
        tcp_socket,
        period_seconds: Some(period),
        timeout_seconds: Some(TIMEOUT),
        failure_threshold: Some(failures),
        success_threshold: Some(1),
        ..Probe::default()
    }
}

/// Whether the container speaks TLS on `port`: its own probe there uses HTTPS, or the port is
/// named `https` or `*-tls`. A plain-HTTP probe could never pass there.
fn speaks_tls(container: &Container, port: i32) -> bool {
    let own = [
        &container.liveness_probe,
        &container.readiness_probe,
        &container.startup_probe,
    ];
    let https = own
        .iter()
        .filter_map(|p| p.as_ref()?.http_get.as_ref())
        .any(|h| {
            h.scheme.as_deref() == Some("HTTPS")
                && match &h.port {
                    IntOrString::Int(n) => *n == port,
                    IntOrString::String(name) => container
                        .ports
                        .iter()
                        .flatten()
                        .any(|p| p.name.as_deref() == Some(name) && p.container_port == port),
                }
        });
    let named = container.ports.iter().flatten().any(|p| {
        p.container_port == port
            && p.name
                .as_deref()
                .is_some_and(|n| n == "https" || n.ends_with("-tls") || n == "tls")
    });
    https || named
}

/// A startup probe with the liveness probe's handler and the startup timing: the slow JVM
/// start is covered, the app's own health check kept.
fn startup_from(liveness: &Probe, failures: i32) -> Probe {
    Probe {
        http_get: liveness.http_get.clone(),
        tcp_socket: liveness.tcp_socket.clone(),
        exec: liveness.exec.clone(),
        grpc: liveness.grpc.clone(),
        period_seconds: Some(PERIOD_STARTUP),
        timeout_seconds: Some(TIMEOUT),
        failure_threshold: Some(failures),
        success_threshold: Some(1),
        ..Probe::default()
    }
}

/// The paths for the startup, readiness and liveness probes of a container without probes,
/// or `None` for tcpSocket ones; and why tcpSocket where HTTP was asked for.
fn paths<'c>(
    facts: &Facts<'_>,
    mode: &'c ProbeMode,
    port: i32,
) -> (Option<[&'c str; 3]>, Option<String>) {
    let name = facts.name();
    let paths = match (mode, Preset::of(mode)) {
        (ProbeMode::Http { path }, _) => [path.as_str(); 3],
        (_, Some(preset)) => match preset.evidence(facts) {
            Ok(()) => preset.paths,
            Err(why) => {
                let note = format!(
                    "container {name}: probes {} not applied, {why}; tcpSocket probes instead",
                    preset.key
                );
                return (None, Some(note));
            }
        },
        _ => return (None, None),
    };
    if speaks_tls(facts.container, port) {
        let note = format!(
            "container {name}: port {port} speaks TLS, so the probes are tcpSocket, not plain HTTP"
        );
        return (None, Some(note));
    }
    (Some(paths), None)
}

/// Probes to add, by container field (`startupProbe`, ...).
type Added = Vec<(&'static str, Probe)>;

/// The probes to add, by container field (none when the container has its own startup
/// probe), and a note to warn with; or why none can be built.
fn plan(facts: &Facts<'_>, cfg: &ProbeConfig) -> Result<(Added, Option<String>), String> {
    let container = facts.container;
    let startup_failures = cfg.startup_timeout_seconds.div_ceil(PERIOD_STARTUP as u32) as i32;
    let own = (
        &container.startup_probe,
        &container.liveness_probe,
        &container.readiness_probe,
    );
    match own {
        (Some(_), _, _) => Ok((Vec::new(), None)),
        (None, Some(liveness), _) => {
            let startup = startup_from(liveness, startup_failures);
            Ok((vec![("startupProbe", startup)], None))
        }
        // "Not ready" is not "dead": the readiness handler as a startup or liveness probe would
        // kill a container that is only not ready. Alive is the port open.
        (None, None, Some(_)) => {
            let port = port(container, cfg.port.as_ref())?;
            let probes = vec![
                (
                    "startupProbe",
                    probe(port, None, PERIOD_STARTUP, startup_failures),
                ),
                (
                    "livenessProbe",
                    probe(port, None, PERIOD_LIVENESS, FAILURES_LIVENESS),
                ),
            ];
            Ok((probes, None))
        }
        (None, None, None) => {
            let port = port(container, cfg.port.as_ref())?;
            let (paths, note) = paths(facts, &cfg.mode, port);
            let [startup, readiness, liveness] = paths.map_or([None; 3], |p| p.map(Some));
            // With the startup probe, a liveness probe cannot kill a slow-starting JVM.
            let probes = vec![
                (
                    "startupProbe",
                    probe(port, startup, PERIOD_STARTUP, startup_failures),
                ),
                (
                    "readinessProbe",
                    probe(port, readiness, PERIOD_READINESS, FAILURES_READINESS),
                ),
                (
                    "livenessProbe",
                    probe(port, liveness, PERIOD_LIVENESS, FAILURES_LIVENESS),
                ),
            ];
            Ok((probes, note))
        }
    }
}

/// The probes feature: the missing probe kinds, never changing the container's own.
pub fn decide(facts: &Facts<'_>) -> Decision {
    let cfg = match &facts.config().probes {
        Switch::Off => return Decision::default(),
        Switch::Invalid => return Decision::skipped(Feature::Probes, "invalid configuration"),
        Switch::On(cfg) => cfg,
    };
    let mut d = Decision::default();
    match plan(facts, cfg) {
        Err(reason) => {
            d.warn(format!("{reason}; probes skipped"));
            d.skip(Feature::Probes, reason);
        }
        Ok((probes, _)) if probes.is_empty() => {
            d.skip(Feature::Probes, "the container has its own probes")
        }
        Ok((probes, note)) => {
            d.warnings.extend(note);
            d.probes = probes;
            d.apply(Feature::Probes);
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use rstest::rstest;
    use serde_json::{json, Value};

    use super::*;
    use crate::mutate::decision::Outcome;
    use crate::mutate::image::ImageConfig;
    use crate::mutate::testing::{pod, with_facts, with_image_facts};

    const PROBES: &str = "jvm-guard.io/probes";

    fn handler(probe: &Probe) -> String {
        let port = |p: &IntOrString| match p {
            IntOrString::Int(n) => n.to_string(),
            IntOrString::String(name) => name.clone(),
        };
        match probe {
            Probe {
                http_get: Some(h), ..
            } => {
                let scheme = h.scheme.as_deref().unwrap_or("HTTP").to_lowercase();
                format!("{scheme} {}", h.path.as_deref().unwrap_or_default())
            }
            Probe {
                tcp_socket: Some(t),
                ..
            } => format!("tcp {}", port(&t.port)),
            Probe { exec: Some(_), .. } => "exec".to_string(),
            Probe { grpc: Some(g), .. } => format!("grpc {}", g.port),
            _ => "none".to_string(),
        }
    }

    fn tcp_all(port: &str) -> [(&'static str, String); 3] {
        ["startupProbe", "readinessProbe", "livenessProbe"].map(|f| (f, format!("tcp {port}")))
    }

    const ACTUATOR: [(&str, &str); 3] = [
        ("startupProbe", "http /actuator/health/liveness"),
        ("readinessProbe", "http /actuator/health/readiness"),
        ("livenessProbe", "http /actuator/health/liveness"),
    ];
    const QUARKUS: [(&str, &str); 3] = [
        ("startupProbe", "http /q/health/started"),
        ("readinessProbe", "http /q/health/ready"),
        ("livenessProbe", "http /q/health/live"),
    ];

    fn owned(added: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
        added.iter().map(|(f, h)| (*f, h.to_string())).collect()
    }

    #[rstest]
    #[case::off(json!({}), json!({"name": "a", "ports": [{"containerPort": 8080}]}), None, vec![], 0)]
    #[case::tcp(
        json!({PROBES: "tcp"}), json!({"name": "a", "ports": [{"containerPort": 8080}]}),
        Some(Outcome::Applied), tcp_all("8080").to_vec(), 0
    )]
    #[case::http_on_probe_path_needs_no_evidence(
        json!({PROBES: "http", "jvm-guard.io/probe-path": "/health"}),
        json!({"name": "a", "ports": [{"containerPort": 8080}]}),
        Some(Outcome::Applied),
        owned(&[("startupProbe", "http /health"), ("readinessProbe", "http /health"), ("livenessProbe", "http /health")]), 0
    )]
    #[case::spring_boot_by_its_variables(
        json!({PROBES: "spring-boot"}),
        json!({"name": "a", "image": "corp/app:1", "env": [{"name": "SPRING_PROFILES_ACTIVE", "value": "prod"}], "ports": [{"name": "http", "containerPort": 8080}]}),
        Some(Outcome::Applied), owned(&ACTUATOR), 0
    )]
    #[case::spring_boot_by_its_loader(
        json!({PROBES: "spring-boot"}),
        json!({"name": "a", "image": "corp/app:1", "command": ["java", "-cp", "/app", "org.springframework.boot.loader.launch.JarLauncher"], "ports": [{"containerPort": 8080}]}),
        Some(Outcome::Applied), owned(&ACTUATOR), 0
    )]
    #[case::spring_boot_by_a_property_in_java_opts(
        json!({PROBES: "spring-boot"}),
        json!({"name": "a", "image": "corp/app:1", "env": [{"name": "JAVA_OPTS", "value": "-Dspring.profiles.active=prod"}], "ports": [{"containerPort": 8080}]}),
        Some(Outcome::Applied), owned(&ACTUATOR), 0
    )]
    #[case::quarkus_by_its_runner_jar(
        json!({PROBES: "quarkus"}),
        json!({"name": "a", "image": "corp/app:1", "command": ["java", "-jar", "/app/shop-1.0-runner.jar"], "ports": [{"containerPort": 8080}]}),
        Some(Outcome::Applied), owned(&QUARKUS), 0
    )]
    #[case::micronaut_by_its_variables(
        json!({PROBES: "micronaut"}),
        json!({"name": "a", "image": "corp/app:1", "env": [{"name": "MICRONAUT_ENVIRONMENTS", "value": "k8s"}], "ports": [{"containerPort": 8080}]}),
        Some(Outcome::Applied),
        owned(&[("startupProbe", "http /health/liveness"), ("readinessProbe", "http /health/readiness"), ("livenessProbe", "http /health/liveness")]), 0
    )]
    #[case::preset_without_evidence_on_a_python_container(
        json!({PROBES: "spring-boot"}),
        json!({"name": "a", "image": "python:3.12", "command": ["python", "-m", "app"], "ports": [{"containerPort": 8000}]}),
        Some(Outcome::Applied), tcp_all("8000").to_vec(), 1
    )]
    #[case::preset_for_a_launcher_s_workload(
        json!({PROBES: "quarkus"}), json!({"name": "a", "image": "bitnami/kafka:3.9", "ports": [{"containerPort": 9092}]}),
        Some(Outcome::Applied), tcp_all("9092").to_vec(), 1
    )]
    #[case::a_product_launcher_beats_framework_variables(
        json!({PROBES: "quarkus"}),
        json!({"name": "a", "image": "keycloak/keycloak:26.0", "env": [{"name": "QUARKUS_HTTP_HOST", "value": "0.0.0.0"}], "ports": [{"containerPort": 8080}]}),
        Some(Outcome::Applied), tcp_all("8080").to_vec(), 1
    )]
    #[case::a_generic_launcher_is_no_evidence(
        json!({PROBES: "quarkus"}), json!({"name": "a", "image": "tomcat:10", "ports": [{"containerPort": 8080}]}),
        Some(Outcome::Applied), tcp_all("8080").to_vec(), 1
    )]
    #[case::a_generic_launcher_with_evidence(
        json!({PROBES: "spring-boot"}),
        json!({"name": "a", "image": "tomcat:10", "env": [{"name": "SPRING_PROFILES_ACTIVE", "value": "prod"}], "ports": [{"containerPort": 8080}]}),
        Some(Outcome::Applied), owned(&ACTUATOR), 0
    )]
    #[case::own_liveness_gives_the_startup_probe_its_handler(
        json!({PROBES: "spring-boot"}),
        json!({"name": "a", "ports": [{"containerPort": 8080}], "livenessProbe": {"exec": {"command": ["true"]}}}),
        Some(Outcome::Applied), owned(&[("startupProbe", "exec")]), 0
    )]
    #[case::own_liveness_over_https_keeps_its_scheme(
        json!({PROBES: "tcp"}),
        json!({"name": "a", "ports": [{"containerPort": 8443}],
               "readinessProbe": {"httpGet": {"path": "/ready", "port": 8443, "scheme": "HTTPS"}},
               "livenessProbe": {"httpGet": {"path": "/live", "port": 8443, "scheme": "HTTPS"}}}),
        Some(Outcome::Applied), owned(&[("startupProbe", "https /live")]), 0
    )]
    #[case::own_grpc_liveness(
        json!({PROBES: "tcp"}),
        json!({"name": "a", "ports": [{"containerPort": 9090}], "livenessProbe": {"grpc": {"port": 9090}}}),
        Some(Outcome::Applied), owned(&[("startupProbe", "grpc 9090")]), 0
    )]
    #[case::readiness_only_gets_tcp_startup_and_liveness(
        json!({PROBES: "spring-boot"}),
        json!({"name": "a", "env": [{"name": "SPRING_PROFILES_ACTIVE", "value": "prod"}],
               "ports": [{"name": "metrics", "containerPort": 9404}, {"name": "http", "containerPort": 8081}],
               "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}}}),
        Some(Outcome::Applied), owned(&[("startupProbe", "tcp 8081"), ("livenessProbe", "tcp 8081")]), 0
    )]
    #[case::readiness_only_on_probe_port(
        json!({PROBES: "tcp", "jvm-guard.io/probe-port": "admin"}),
        json!({"name": "a", "ports": [{"name": "http", "containerPort": 8080}, {"name": "admin", "containerPort": 9000}],
               "readinessProbe": {"exec": {"command": ["ready"]}}}),
        Some(Outcome::Applied), owned(&[("startupProbe", "tcp 9000"), ("livenessProbe", "tcp 9000")]), 0
    )]
    #[case::readiness_only_without_a_port(
        json!({PROBES: "tcp"}),
        json!({"name": "a", "readinessProbe": {"exec": {"command": ["ready"]}}}),
        Some(Outcome::Skipped { reason: "container a declares no TCP containerPort; set jvm-guard.io/probe-port".into() }),
        vec![], 1
    )]
    #[case::own_startup_probe(
        json!({PROBES: "tcp"}),
        json!({"name": "a", "ports": [{"containerPort": 8080}], "startupProbe": {"exec": {"command": ["true"]}}}),
        Some(Outcome::Skipped { reason: "the container has its own probes".into() }), vec![], 0
    )]
    #[case::tls_port_is_probed_over_tcp(
        json!({PROBES: "spring-boot"}),
        json!({"name": "a", "env": [{"name": "SPRING_PROFILES_ACTIVE", "value": "prod"}], "ports": [{"name": "https", "containerPort": 8443}]}),
        Some(Outcome::Applied), tcp_all("8443").to_vec(), 1
    )]
    #[case::no_port(
        json!({PROBES: "tcp"}), json!({"name": "a", "ports": [{"containerPort": 53, "protocol": "UDP"}]}),
        Some(Outcome::Skipped { reason: "container a declares no TCP containerPort; set jvm-guard.io/probe-port".into() }),
        vec![], 1
    )]
    fn probes(
        #[case] annotations: Value,
        #[case] container: Value,
        #[case] outcome: Option<Outcome>,
        #[case] added: Vec<(&'static str, String)>,
        #[case] warnings: usize,
    ) {
        let d = with_facts(pod(annotations, container), true, decide);
        let outcomes: Vec<(Feature, Outcome)> =
            outcome.map(|o| (Feature::Probes, o)).into_iter().collect();
        assert_eq!(d.outcomes, outcomes);
        let got: Vec<(&str, String)> = d.probes.iter().map(|(f, p)| (*f, handler(p))).collect();
        assert_eq!(got, added);
        assert_eq!(d.warnings.len(), warnings, "{:?}", d.warnings);
    }

    /// The warning names the preset asked for and the evidence it lacked.
    #[rstest]
    #[case::no_evidence(
        json!({"name": "tool", "image": "python:3.12", "ports": [{"containerPort": 8000}]}),
        "container tool: probes spring-boot not applied, no Spring Boot evidence (SPRING_*, MANAGEMENT_ENDPOINT*, MANAGEMENT_HEALTH_* variables, org.springframework.boot.* image labels, the Spring Boot loader or spring.* properties in the command); tcpSocket probes instead"
    )]
    #[case::a_product_launcher(
        json!({"name": "kafka", "image": "bitnami/kafka:3.9", "ports": [{"containerPort": 9092}]}),
        "container kafka: probes spring-boot not applied, the bitnami-kafka launcher runs a product with its own endpoints, not a Spring Boot application; tcpSocket probes instead"
    )]
    fn preset_warning(#[case] container: Value, #[case] warning: &str) {
        let d = with_facts(pod(json!({PROBES: "spring-boot"}), container), true, decide);
        assert_eq!(d.warnings, [warning]);
    }

    fn image(entrypoint: &[&str], env: &[&str], labels: &[(&str, &str)]) -> ImageConfig {
        let owned = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let (env, labels) = ImageConfig::bounded_env(owned(env), labels);
        ImageConfig {
            entrypoint: owned(entrypoint),
            env,
            labels,
            ..ImageConfig::default()
        }
    }

    /// The image's config is evidence too: its Env, its labels, its ENTRYPOINT.
    #[rstest]
    #[case::paketo_spring_boot_label(
        "spring-boot",
        image(&["/cnb/process/web"], &["JAVA_HOME=/layers/jre"], &[("org.springframework.boot.version", "3.3.0")]),
        "http /actuator/health/liveness"
    )]
    #[case::quarkus_variable_in_the_image_env(
        "quarkus", image(&["/opt/jboss/container/java/run/run-java.sh"], &["QUARKUS_PROFILE=prod"], &[]),
        "http /q/health/started"
    )]
    #[case::quarkus_runner_jar_in_the_entrypoint(
        "quarkus", image(&["java", "-jar", "/work/orders-1.0-runner.jar"], &[], &[]),
        "http /q/health/started"
    )]
    #[case::a_python_image(
        "spring-boot", image(&["python3", "/app/main.py"], &["PYTHON_VERSION=3.12.4"], &[]),
        "tcp 8080"
    )]
    #[case::another_framework_s_label(
        "quarkus", image(&["/cnb/process/web"], &[], &[("org.springframework.boot.version", "3.3.0")]),
        "tcp 8080"
    )]
    fn image_evidence(#[case] preset: &str, #[case] image: ImageConfig, #[case] startup: &str) {
        let container =
            json!({"name": "a", "image": "corp/app:1", "ports": [{"containerPort": 8080}]});
        let pod = pod(json!({PROBES: preset}), container);
        let d = with_image_facts(pod, &image, decide);
        let got = d.probes.first().map(|(f, p)| (*f, handler(p)));
        assert_eq!(got, Some(("startupProbe", startup.to_string())));
        let tcp = startup.starts_with("tcp");
        assert_eq!(d.warnings.len(), usize::from(tcp), "{:?}", d.warnings);
    }

    /// Added probes carry our timing, never the timing of the probe whose handler they reuse.
    #[test]
    fn timing() {
        let container = json!({
            "name": "a",
            "ports": [{"containerPort": 8080}],
            "livenessProbe": {"httpGet": {"path": "/live", "port": 8080}, "periodSeconds": 30, "initialDelaySeconds": 60, "failureThreshold": 2},
        });
        let annotations = json!({PROBES: "tcp", "jvm-guard.io/startup-timeout": "300"});
        let d = with_facts(pod(annotations, container), true, decide);
        let [(field, startup)] = d.probes.as_slice() else {
            panic!("one probe: {:?}", d.probes);
        };
        assert_eq!(*field, "startupProbe");
        let timing = |p: &Probe| {
            (
                p.period_seconds,
                p.timeout_seconds,
                p.failure_threshold,
                p.success_threshold,
                p.initial_delay_seconds,
            )
        };
        assert_eq!(timing(startup), (Some(5), Some(3), Some(60), Some(1), None));

        let readiness_only = json!({
            "name": "a",
            "ports": [{"containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 15},
        });
        let d = with_facts(pod(json!({PROBES: "tcp"}), readiness_only), true, decide);
        let got: Vec<(&str, _)> = d.probes.iter().map(|(f, p)| (*f, timing(p))).collect();
        assert_eq!(
            got,
            [
                ("startupProbe", (Some(5), Some(3), Some(36), Some(1), None)),
                (
                    "livenessProbe",
                    (Some(10), Some(3), Some(10), Some(1), None)
                ),
            ]
        );
    }
}
