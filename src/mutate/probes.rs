//! Probes (SPEC §4.3): a container without probes gets startup, readiness and liveness by
//! preset or annotation (tcpSocket where it speaks TLS); one with its own gets only a missing
//! startup probe, with its own handler. Existing probes are never changed.

use k8s_openapi::api::core::v1::{Container, HTTPGetAction, Probe, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::decision::Decision;
use super::facts::Facts;
use crate::config::{Feature, PortRef, ProbeConfig, ProbeMode, Switch};

const PERIOD_STARTUP: i32 = 5;
const PERIOD_READINESS: i32 = 5;
const PERIOD_LIVENESS: i32 = 10;
const FAILURES_READINESS: i32 = 5;
const FAILURES_LIVENESS: i32 = 10;
const TIMEOUT: i32 = 3;

/// The probes to add; `None` where the container has its own.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbePlan {
    pub startup: Option<Probe>,
    pub readiness: Option<Probe>,
    pub liveness: Option<Probe>,
}

impl ProbePlan {
    pub fn is_empty(&self) -> bool {
        self.startup.is_none() && self.readiness.is_none() && self.liveness.is_none()
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

/// Paths for (startup, readiness, liveness), or `None` for TCP probes.
fn paths(mode: &ProbeMode) -> Option<[&str; 3]> {
    match mode {
        ProbeMode::Tcp => None,
        ProbeMode::Http { path } => Some([path, path, path]),
        ProbeMode::SpringBoot => Some([
            "/actuator/health/liveness",
            "/actuator/health/readiness",
            "/actuator/health/liveness",
        ]),
        ProbeMode::Quarkus => Some(["/q/health/started", "/q/health/ready", "/q/health/live"]),
        ProbeMode::Micronaut => Some(["/health/liveness", "/health/readiness", "/health/liveness"]),
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

/// A startup probe with the handler of the container's own probe (liveness preferred) and the
/// startup timing: the slow JVM start is covered, the app's health check kept.
fn derived_startup(container: &Container, failures: i32) -> Option<Probe> {
    let own = container
        .liveness_probe
        .as_ref()
        .or(container.readiness_probe.as_ref())?;
    Some(Probe {
        http_get: own.http_get.clone(),
        tcp_socket: own.tcp_socket.clone(),
        exec: own.exec.clone(),
        grpc: own.grpc.clone(),
        period_seconds: Some(PERIOD_STARTUP),
        timeout_seconds: Some(TIMEOUT),
        failure_threshold: Some(failures),
        success_threshold: Some(1),
        ..Probe::default()
    })
}

/// The missing probes for `container`, or why none can be built, and a note to warn with.
pub fn plan(
    container: &Container,
    cfg: &ProbeConfig,
) -> Result<(ProbePlan, Option<String>), String> {
    let startup_failures = cfg.startup_timeout_seconds.div_ceil(PERIOD_STARTUP as u32) as i32;
    let has_own = container.startup_probe.is_some()
        || container.readiness_probe.is_some()
        || container.liveness_probe.is_some();
    if has_own {
        // The app's own probes stand; only a missing startup probe is added, from them.
        let startup = match &container.startup_probe {
            Some(_) => None,
            None => derived_startup(container, startup_failures),
        };
        return Ok((
            ProbePlan {
                startup,
                ..ProbePlan::default()
            },
            None,
        ));
    }
    let port = port(container, cfg.port.as_ref())?;
    let mut note = None;
    let [startup_path, readiness_path, liveness_path] = match paths(&cfg.mode) {
        Some(_) if speaks_tls(container, port) => {
            note = Some(format!(
                "container {}: port {port} speaks TLS, so the probes are tcpSocket, not plain HTTP",
                container.name
            ));
            [None; 3]
        }
        Some(p) => p.map(Some),
        None => [None; 3],
    };
    let startup = Some(probe(port, startup_path, PERIOD_STARTUP, startup_failures));
    let readiness = Some(probe(
        port,
        readiness_path,
        PERIOD_READINESS,
        FAILURES_READINESS,
    ));
    // With the startup probe above, a liveness probe cannot kill a slow-starting JVM.
    let liveness = Some(probe(
        port,
        liveness_path,
        PERIOD_LIVENESS,
        FAILURES_LIVENESS,
    ));
    Ok((
        ProbePlan {
            startup,
            readiness,
            liveness,
        },
        note,
    ))
}

/// The probes feature: the missing probe kinds, never changing the container's own. A
/// framework preset (Spring Boot, Quarkus, Micronaut) is not applied to the workload of a
/// launcher the container matched, whose endpoints it is not.
pub fn decide(facts: &Facts<'_>) -> Decision {
    let cfg = match &facts.config().probes {
        Switch::Off => return Decision::default(),
        Switch::Invalid => return Decision::skipped(Feature::Probes, "invalid configuration"),
        Switch::On(cfg) => cfg,
    };
    let container = facts.container;
    let mut d = Decision::default();
    let preset = matches!(
        cfg.mode,
        ProbeMode::SpringBoot | ProbeMode::Quarkus | ProbeMode::Micronaut
    );
    let has_own = container.startup_probe.is_some()
        || container.readiness_probe.is_some()
        || container.liveness_probe.is_some();
    let launcher = facts.profile.filter(|p| !p.generic).map(|p| &p.name);
    if let (true, false, Some(name)) = (preset, has_own, launcher) {
        let reason = format!(
            "the {name} launcher does not serve the framework preset's endpoints; set jvm-guard.io/probes: tcp or http on the pod"
        );
        d.warn(format!(
            "container {}: {reason}; probes skipped",
            container.name
        ));
        d.skip(Feature::Probes, reason);
        return d;
    }
    match plan(container, cfg) {
        Err(reason) => {
            d.warn(format!("{reason}; probes skipped"));
            d.skip(Feature::Probes, reason);
        }
        Ok((plan, _)) if plan.is_empty() => {
            d.skip(Feature::Probes, "the container has its own probes")
        }
        Ok((plan, note)) => {
            d.warnings.extend(note);
            for (field, probe) in [
                ("startupProbe", plan.startup),
                ("readinessProbe", plan.readiness),
                ("livenessProbe", plan.liveness),
            ] {
                if let Some(probe) = probe {
                    d.probes.push((field, probe));
                }
            }
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
    use crate::mutate::testing::{pod, with_facts};

    const PROBES: &str = "jvm-guard.io/probes";

    fn handler(probe: &Probe) -> String {
        match (&probe.http_get, &probe.tcp_socket, &probe.exec) {
            (Some(h), _, _) => format!("http {}", h.path.as_deref().unwrap_or_default()),
            (_, Some(_), _) => "tcp".to_string(),
            (_, _, Some(_)) => "exec".to_string(),
            _ => "none".to_string(),
        }
    }

    #[rstest]
    #[case::off(json!({}), json!({"name": "a", "ports": [{"containerPort": 8080}]}), None, &[], 0)]
    #[case::tcp(
        json!({PROBES: "tcp"}), json!({"name": "a", "ports": [{"containerPort": 8080}]}),
        Some(Outcome::Applied),
        &[("startupProbe", "tcp"), ("readinessProbe", "tcp"), ("livenessProbe", "tcp")], 0
    )]
    #[case::spring_boot(
        json!({PROBES: "spring-boot"}), json!({"name": "a", "image": "corp/app:1", "ports": [{"name": "http", "containerPort": 8080}]}),
        Some(Outcome::Applied),
        &[
            ("startupProbe", "http /actuator/health/liveness"),
            ("readinessProbe", "http /actuator/health/readiness"),
            ("livenessProbe", "http /actuator/health/liveness"),
        ],
        0
    )]
    #[case::own_probes_get_a_derived_startup_probe(
        json!({PROBES: "spring-boot"}),
        json!({"name": "a", "ports": [{"containerPort": 8080}], "livenessProbe": {"exec": {"command": ["true"]}}}),
        Some(Outcome::Applied), &[("startupProbe", "exec")], 0
    )]
    #[case::own_startup_probe(
        json!({PROBES: "tcp"}),
        json!({"name": "a", "ports": [{"containerPort": 8080}], "startupProbe": {"exec": {"command": ["true"]}}}),
        Some(Outcome::Skipped { reason: "the container has its own probes".into() }), &[], 0
    )]
    #[case::preset_for_a_launcher_s_workload(
        json!({PROBES: "quarkus"}), json!({"name": "a", "image": "bitnami/kafka:3.9", "ports": [{"containerPort": 9092}]}),
        Some(Outcome::Skipped { reason: "the bitnami-kafka launcher does not serve the framework preset's endpoints; set jvm-guard.io/probes: tcp or http on the pod".into() }),
        &[], 1
    )]
    #[case::preset_for_a_generic_launcher(
        json!({PROBES: "quarkus"}), json!({"name": "a", "image": "tomcat:10", "ports": [{"containerPort": 8080}]}),
        Some(Outcome::Applied),
        &[("startupProbe", "http /q/health/started"), ("readinessProbe", "http /q/health/ready"), ("livenessProbe", "http /q/health/live")],
        0
    )]
    #[case::tls_port_is_probed_over_tcp(
        json!({PROBES: "spring-boot"}), json!({"name": "a", "ports": [{"name": "https", "containerPort": 8443}]}),
        Some(Outcome::Applied),
        &[("startupProbe", "tcp"), ("readinessProbe", "tcp"), ("livenessProbe", "tcp")], 1
    )]
    #[case::no_port(
        json!({PROBES: "tcp"}), json!({"name": "a", "ports": [{"containerPort": 53, "protocol": "UDP"}]}),
        Some(Outcome::Skipped { reason: "container a declares no TCP containerPort; set jvm-guard.io/probe-port".into() }),
        &[], 1
    )]
    fn probes(
        #[case] annotations: Value,
        #[case] container: Value,
        #[case] outcome: Option<Outcome>,
        #[case] added: &[(&str, &str)],
        #[case] warnings: usize,
    ) {
        let d = with_facts(pod(annotations, container), true, decide);
        let outcomes: Vec<(Feature, Outcome)> =
            outcome.map(|o| (Feature::Probes, o)).into_iter().collect();
        assert_eq!(d.outcomes, outcomes);
        let got: Vec<(&str, String)> = d.probes.iter().map(|(f, p)| (*f, handler(p))).collect();
        let want: Vec<(&str, String)> = added.iter().map(|(f, h)| (*f, h.to_string())).collect();
        assert_eq!(got, want);
        assert_eq!(d.warnings.len(), warnings, "{:?}", d.warnings);
    }
}
