//! Typed configuration values and the parsers of raw strings: the one place that knows what a
//! valid value is. Which key uses which parser is declared in `keys.rs`.

use std::fmt;

use super::quantity::Quantity;
use super::rlimit::{self, Rlimit};

/// A RAM percentage in tenths of a percent: (0, 100] with at most one decimal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Percent(pub(super) u16);

impl Percent {
    pub fn from_tenths(tenths: u16) -> Option<Percent> {
        (1..=1000).contains(&tenths).then_some(Percent(tenths))
    }

    pub fn tenths(self) -> u16 {
        self.0
    }
}

impl fmt::Display for Percent {
    // Always with a decimal point: every HotSpot release parses `62.0` for a double flag.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0 / 10, self.0 % 10)
    }
}

pub(super) fn parse_percent(v: &str) -> Result<Percent, String> {
    let bad = || "expected a number in (0, 100] with at most one decimal".to_string();
    let (int, frac) = v.split_once('.').unwrap_or((v, "0"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || !digits(frac) || frac.len() != 1 || int.len() > 3 {
        return Err(bad());
    }
    let tenths =
        int.parse::<u16>().map_err(|_| bad())? * 10 + frac.parse::<u16>().map_err(|_| bad())?;
    Percent::from_tenths(tenths).ok_or_else(bad)
}

#[derive(Debug, Clone, PartialEq)]
pub enum MaxRam {
    /// Sized from the container's memory limit and the non-heap reserve.
    Auto,
    Fixed(Percent),
}

#[derive(Debug, Clone, PartialEq)]
pub struct MemoryConfig {
    pub max: MaxRam,
    pub initial: Option<Percent>,
    pub reserve: Quantity,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DumpVolume {
    EmptyDir { size_limit: Option<Quantity> },
    Pvc(String),
    HostPath(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct DumpConfig {
    pub volume: DumpVolume,
    pub mount_path: String,
    /// Newest dumps kept per pod directory by the rotation hook.
    pub keep: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ProbeMode {
    Tcp,
    Http { path: String },
    SpringBoot,
    Quarkus,
    Micronaut,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PortRef {
    Number(u16),
    Name(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProbeConfig {
    pub mode: ProbeMode,
    /// `None`: the port named `http`, else the first TCP containerPort.
    pub port: Option<PortRef>,
    pub startup_timeout_seconds: u32,
}

/// Which containers get the features.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// The default-container annotation, else the first non-sidecar container.
    Default,
    All,
    Named(Vec<String>),
    /// `containers` was invalid: nothing is targeted.
    Invalid,
}

pub(super) const DEFAULT_RESERVE: &str = "384Mi";
pub(super) const DEFAULT_MOUNT_PATH: &str = "/dumps";
pub(super) const DEFAULT_DUMP_KEEP: u32 = 3;
pub(super) const DEFAULT_STARTUP_TIMEOUT: u32 = 180;

pub(super) fn parse_bool(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

pub(super) fn parse_quantity(v: &str) -> Result<Quantity, String> {
    v.parse()
        .map_err(|e: crate::config::quantity::QuantityError| e.to_string())
}

pub(super) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

pub(super) fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// An absolute path that is safe in a shell command and a JVM options string (SPEC §3): only
/// `[A-Za-z0-9._/-]`, no empty, `.` or `..` component; a trailing `/` is dropped.
pub(super) fn parse_abs_path(v: &str) -> Result<String, String> {
    let bad = || {
        "expected an absolute path of [A-Za-z0-9._/-], without empty, '.' or '..' parts".to_string()
    };
    let path = v.strip_suffix('/').unwrap_or(v);
    let safe = path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._/-".contains(&b));
    let mut parts = path.split('/');
    let rooted = parts.next() == Some("");
    let parts_ok = path.len() > 1 && parts.all(|p| !matches!(p, "" | "." | ".."));
    if safe && rooted && parts_ok {
        Ok(path.to_string())
    } else {
        Err(bad())
    }
}

pub(super) fn parse_targets(v: &str) -> Result<Targets, String> {
    if v == "*" {
        return Ok(Targets::All);
    }
    let names: Vec<String> = v.split(',').map(|s| s.trim().to_string()).collect();
    if names.iter().all(|n| is_dns_label(n)) {
        Ok(Targets::Named(names))
    } else {
        Err("expected a comma list of container names, or *".into())
    }
}

pub(super) fn parse_dump_volume(v: &str, allow_host_path: bool) -> Result<DumpVolume, String> {
    if v == "emptyDir" {
        Ok(DumpVolume::EmptyDir { size_limit: None })
    } else if let Some(claim) = v.strip_prefix("pvc:") {
        if is_dns_subdomain(claim) {
            Ok(DumpVolume::Pvc(claim.to_string()))
        } else {
            Err("pvc: needs a valid claim name".into())
        }
    } else if let Some(path) = v.strip_prefix("hostPath:") {
        if !allow_host_path {
            return Err("hostPath volumes need the server flag --allow-host-path".into());
        }
        parse_abs_path(path).map(DumpVolume::HostPath)
    } else {
        Err("expected emptyDir, pvc:<claim> or hostPath:<absolute path>".into())
    }
}

pub(super) fn parse_jvm_options(v: &str) -> Result<Vec<String>, String> {
    let tokens: Vec<String> = v.split_whitespace().map(str::to_string).collect();
    if let Some(t) = tokens.iter().find(|t| !t.starts_with('-')) {
        return Err(format!("{t:?} does not start with '-'"));
    }
    // A lone `-` is no option: the JVM refuses to start on it (found by fuzzing: it was also
    // never recognised as already set, so a re-mutation added it again).
    if let Some(t) = tokens.iter().find(|t| t.as_str() == "-") {
        return Err(format!("{t:?} is not a JVM option"));
    }
    // Quotes and backslashes change how the JVM splits JAVA_TOOL_OPTIONS (a stray quote stops
    // it from starting), and `;` splits an OnOutOfMemoryError command.
    match tokens.iter().find(|t| t.contains(['"', '\'', '\\', ';'])) {
        Some(t) => Err(format!("{t:?} has a quote, a backslash or ';'")),
        None => Ok(tokens),
    }
}

pub(super) fn parse_probe_mode(v: &str) -> Result<Option<ProbeMode>, String> {
    Ok(Some(match v {
        "off" => return Ok(None),
        "tcp" => ProbeMode::Tcp,
        "http" => ProbeMode::Http {
            path: String::new(),
        },
        "spring-boot" => ProbeMode::SpringBoot,
        "quarkus" => ProbeMode::Quarkus,
        "micronaut" => ProbeMode::Micronaut,
        _ => return Err("expected off, tcp, http, spring-boot, quarkus or micronaut".into()),
    }))
}

pub(super) fn parse_http_path(v: &str) -> Result<String, String> {
    if v.starts_with('/') && !v.contains(|c: char| c.is_whitespace() || c.is_control()) {
        Ok(v.to_string())
    } else {
        Err("expected an absolute HTTP path such as /health".into())
    }
}

pub(super) fn parse_port(v: &str) -> Result<PortRef, String> {
    if v.bytes().all(|b| b.is_ascii_digit()) {
        return match v.parse::<u16>() {
            Ok(n) if n > 0 => Ok(PortRef::Number(n)),
            _ => Err("port number must be in 1..65535".into()),
        };
    }
    // IANA_SVC_NAME, as Kubernetes validates containerPort names.
    let ok = v.len() <= 15
        && is_dns_label(v)
        && v.bytes().any(|b| b.is_ascii_lowercase())
        && !v.contains("--");
    if ok {
        Ok(PortRef::Name(v.to_string()))
    } else {
        Err("expected a port number or a container port name".into())
    }
}

pub(super) fn parse_seconds(v: &str) -> Result<u32, String> {
    match v.parse::<u32>() {
        Ok(n) if (1..=86_400).contains(&n) => Ok(n),
        _ => Err("expected whole seconds between 1 and 86400".into()),
    }
}

pub(super) fn parse_keep(v: &str) -> Result<u32, String> {
    match v.parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("expected an integer >= 1".into()),
    }
}

/// Which launcher profile a container gets (SPEC §4.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProfileChoice {
    /// Matched on evidence.
    Auto,
    /// None: plain `JAVA_TOOL_OPTIONS`.
    None,
    Named(String),
}

/// How the agent runs the container's command (docs/agent.md#the-agent-jvm-guard-exec).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AgentMode {
    /// The agent stays as the container's init: the command is its child, whose signals it
    /// forwards and whose exit it reports in the termination message.
    #[default]
    Supervise,
    /// The agent replaces itself with the command (it keeps pid 1).
    Exec,
}

impl AgentMode {
    pub fn name(self) -> &'static str {
        match self {
            AgentMode::Supervise => "supervise",
            AgentMode::Exec => "exec",
        }
    }
}

pub(super) fn parse_agent_mode(v: &str) -> Result<AgentMode, String> {
    match v {
        "supervise" => Ok(AgentMode::Supervise),
        "exec" => Ok(AgentMode::Exec),
        _ => Err("expected supervise or exec".into()),
    }
}

pub(super) fn parse_profile(v: &str) -> Result<ProfileChoice, String> {
    match v {
        "auto" => Ok(ProfileChoice::Auto),
        "none" => Ok(ProfileChoice::None),
        name if is_dns_label(name) => Ok(ProfileChoice::Named(name.to_string())),
        _ => Err("expected auto, none or a profile name".into()),
    }
}

/// `max-ram-percentage`: `auto` or a percentage.
pub(super) fn parse_max_ram(v: &str) -> Result<MaxRam, String> {
    if v == "auto" {
        Ok(MaxRam::Auto)
    } else {
        parse_percent(v).map(MaxRam::Fixed)
    }
}

pub(super) fn parse_ulimits(v: &str) -> Result<Vec<Rlimit>, String> {
    rlimit::parse_list(v).map_err(|e| e.to_string())
}

/// The longest value a key takes: the longest real one (a `jvm-options` list) is far below, and
/// a pod author must not make every review parse and echo half a megabyte
/// (docs/design.md#bounds).
pub const MAX_VALUE_BYTES: usize = 4096;

/// `value` if it is within [`MAX_VALUE_BYTES`], else why not.
pub(super) fn bounded(value: &str) -> Result<&str, String> {
    if value.len() > MAX_VALUE_BYTES {
        Err(format!(
            "the value is {} bytes, more than the {MAX_VALUE_BYTES} a key takes",
            value.len()
        ))
    } else {
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jvm_options_are_options_the_jvm_takes() {
        assert_eq!(
            parse_jvm_options(" -Xss1m  -Dx=1 "),
            Ok(vec!["-Xss1m".to_string(), "-Dx=1".to_string()])
        );
        for bad in [
            "-Xss1m x",
            "-",
            "-Xss1m - -Dx",
            "-Da='b'",
            "-XX:OnError=a;b",
        ] {
            assert!(parse_jvm_options(bad).is_err(), "{bad:?}");
        }
    }
}
