//! Probes for containers that lack them: startup, readiness and liveness by preset or
//! annotation. Existing probes are never changed.

use k8s_openapi::api::core::v1::{Container, HTTPGetAction, Probe, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::container::ContainerMutation;
use super::patch::to_value;
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

/// The missing probes for `container`, or why none can be built.
pub fn plan(container: &Container, cfg: &ProbeConfig) -> Result<ProbePlan, String> {
    let needs_any = container.startup_probe.is_none()
        || container.readiness_probe.is_none()
        || container.liveness_probe.is_none();
    if !needs_any {
        return Ok(ProbePlan::default());
    }
    let port = port(container, cfg.port.as_ref())?;
    let [startup_path, readiness_path, liveness_path] = match paths(&cfg.mode) {
        Some(p) => p.map(Some),
        None => [None; 3],
    };
    let startup_failures = cfg.startup_timeout_seconds.div_ceil(PERIOD_STARTUP as u32) as i32;
    let startup = container
        .startup_probe
        .is_none()
        .then(|| probe(port, startup_path, PERIOD_STARTUP, startup_failures));
    let readiness = container
        .readiness_probe
        .is_none()
        .then(|| probe(port, readiness_path, PERIOD_READINESS, FAILURES_READINESS));
    // Without a startup probe a liveness probe kills slow-starting JVMs (CrashLoopBackOff).
    let has_startup = container.startup_probe.is_some() || startup.is_some();
    let liveness = (container.liveness_probe.is_none() && has_startup)
        .then(|| probe(port, liveness_path, PERIOD_LIVENESS, FAILURES_LIVENESS));
    Ok(ProbePlan {
        startup,
        readiness,
        liveness,
    })
}
impl ContainerMutation<'_> {
    /// The probes feature: the missing probe kinds, never changing the container's own.
    pub(super) fn probes(&mut self) {
        let cfg = match &self.pod.config.probes {
            Switch::Off => return,
            Switch::Invalid => return self.skip(Feature::Probes, "invalid configuration"),
            Switch::On(cfg) => cfg,
        };
        match plan(self.container, cfg) {
            Err(reason) => {
                self.warnings.push(format!("{reason}; probes skipped"));
                self.skip(Feature::Probes, reason);
            }
            Ok(plan) if plan.is_empty() => {
                self.skip(Feature::Probes, "the container has its own probes")
            }
            Ok(plan) => {
                for (field, probe) in [
                    ("startupProbe", plan.startup),
                    ("readinessProbe", plan.readiness),
                    ("livenessProbe", plan.liveness),
                ] {
                    if let Some(probe) = probe {
                        self.patch.add(self.path(field), to_value(&probe));
                    }
                }
                self.status.applied(Feature::Probes);
            }
        }
    }
}
