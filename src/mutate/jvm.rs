//! JVM options: which flags the container already sets, the flags each feature wants, and the
//! merge into `JAVA_TOOL_OPTIONS` (ours first, the user's tokens after, so theirs win).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Container;

use super::container::ContainerMutation;
use crate::config::quantity::Quantity;
use crate::config::{Feature, MaxRam, MemoryConfig, Percent};

/// Read by every HotSpot and OpenJ9 JVM, whatever launcher starts it.
pub const TOOL_OPTIONS: &str = "JAVA_TOOL_OPTIONS";
/// Other places users put flags; flags found there are not set again.
const USER_OPTION_VARS: [&str; 4] = [
    TOOL_OPTIONS,
    "JDK_JAVA_OPTIONS",
    "JAVA_OPTS",
    "_JAVA_OPTIONS",
];

const GC_SELECTORS: [&str; 7] = [
    "UseSerialGC",
    "UseParallelGC",
    "UseG1GC",
    "UseZGC",
    "UseShenandoahGC",
    "UseEpsilonGC",
    "UseConcMarkSweepGC",
];

const REPEATABLE: [&str; 8] = [
    "-javaagent:",
    "-agentlib:",
    "-agentpath:",
    "--add-opens",
    "--add-exports",
    "--add-reads",
    "--add-modules",
    "--patch-module",
];

/// The setting a JVM token controls, so that different spellings of one setting compare
/// equal: `-Xmx1g` and `-XX:MaxHeapSize=1g` both "set the RAM percentage", and two GC
/// selectors conflict (the JVM refuses to start with both).
pub fn flag_key(token: &str) -> Option<String> {
    let t = token.trim_matches(|c| c == '"' || c == '\'');
    if let Some(xx) = t.strip_prefix("-XX:") {
        let name = xx.trim_start_matches(['+', '-']);
        let name = name.split('=').next().unwrap_or(name);
        let key = match name {
            "MaxHeapSize" | "MaxRAMFraction" => "MaxRAMPercentage",
            "InitialHeapSize" | "InitialRAMFraction" => "InitialRAMPercentage",
            n if GC_SELECTORS.contains(&n) => "garbage-collector",
            n => n,
        };
        return (!key.is_empty()).then(|| key.to_string());
    }
    for (prefix, key) in [
        ("-Xmx", "MaxRAMPercentage"),
        ("-Xms", "InitialRAMPercentage"),
        ("-Xss", "ThreadStackSize"),
        ("-Xmn", "NewSize"),
    ] {
        if t.starts_with(prefix) {
            return Some(key.to_string());
        }
    }
    // Options that may repeat with different values (agents, module openings): only the same
    // token twice is the same setting.
    if REPEATABLE.iter().any(|p| t.starts_with(p)) {
        return Some(t.to_string());
    }
    if t.starts_with('-') && t.len() > 1 {
        let end = t.find(['=', ':']).unwrap_or(t.len());
        return Some(t[..end].to_string());
    }
    None
}

/// Flag keys the container's own settings already set: literal option variables, `command`
/// and `args` (split on whitespace, so `sh -c "java -Xmx1g ..."` counts too).
#[derive(Debug, Default, Clone)]
pub struct UserFlags(BTreeSet<String>);

impl UserFlags {
    pub fn of(container: &Container) -> UserFlags {
        let env_values = container
            .env
            .iter()
            .flatten()
            .filter(|e| USER_OPTION_VARS.contains(&e.name.as_str()))
            .filter_map(|e| e.value.as_deref());
        let argv = container
            .command
            .iter()
            .flatten()
            .chain(container.args.iter().flatten());
        UserFlags(
            env_values
                .chain(argv.map(String::as_str))
                .flat_map(str::split_whitespace)
                .filter_map(flag_key)
                .collect(),
        )
    }

    pub fn sets(&self, token: &str) -> bool {
        flag_key(token).is_some_and(|k| self.0.contains(&k))
    }
}

/// The memory flags for a container, or why none apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryFlags {
    pub flags: Vec<String>,
    pub warnings: Vec<String>,
}

/// `p = clamp(floor(100 × (L − R) / L), 25, 75)`.
pub fn auto_percent(limit: u64, reserve: u64) -> Percent {
    let p = if limit == 0 {
        25
    } else {
        (100 * u128::from(limit.saturating_sub(reserve)) / u128::from(limit)) as u16
    };
    Percent::from_tenths(p.clamp(25, 75) * 10).expect("25..=75 is a valid percentage")
}

pub fn memory_flags(
    cfg: &MemoryConfig,
    limit: Option<u64>,
    container: &str,
    user: &UserFlags,
) -> MemoryFlags {
    let mut flags = Vec::new();
    let mut warnings = Vec::new();
    let user_max = user.sets("-XX:MaxRAMPercentage");
    let max = match (&cfg.max, limit) {
        _ if user_max => None,
        (MaxRam::Auto, l) => l.map(|l| auto_percent(l, cfg.reserve.bytes())),
        (MaxRam::Fixed(p), _) => Some(*p),
    };
    if let Some(p) = max {
        flags.push(format!("-XX:MaxRAMPercentage={p}"));
        // Below ~250 MiB of RAM HotSpot sizes the heap from MinRAMPercentage (default 50%)
        // instead, which would silently drop the non-heap reserve in small containers.
        if !user.sets("-XX:MinRAMPercentage") {
            flags.push(format!("-XX:MinRAMPercentage={p}"));
        }
    }
    if let Some(initial) = cfg
        .initial
        .filter(|_| !user.sets("-XX:InitialRAMPercentage"))
    {
        match max {
            Some(m) if initial > m => warnings.push(format!(
                "container {container}: initial-ram-percentage {initial} is above the max {m}; not set"
            )),
            _ => flags.push(format!("-XX:InitialRAMPercentage={initial}")),
        }
    }
    let auto_unset = cfg.max == MaxRam::Auto && !user_max && max.is_none();
    if limit.is_none() && (auto_unset || !flags.is_empty()) {
        let consequence = if auto_unset {
            "MaxRAMPercentage not set (a percentage would apply to node memory)"
        } else {
            "the RAM percentages apply to node memory"
        };
        warnings.push(format!(
            "container {container} has no memory limit: {consequence}; set resources.limits.memory"
        ));
    }
    MemoryFlags { flags, warnings }
}

/// Exit (code 3) so the kubelet restarts the container instead of leaving a broken JVM.
pub fn exit_on_oom_flags() -> Vec<String> {
    vec!["-XX:+ExitOnOutOfMemoryError".to_string()]
}

/// Our tokens before the user's literal value: the JVM takes the last occurrence, so the
/// user's own settings keep winning.
pub fn merge_tool_options(ours: &[String], user: Option<&str>) -> String {
    let ours = ours.join(" ");
    match user.map(str::trim) {
        Some(u) if !u.is_empty() => format!("{ours} {u}"),
        _ => ours,
    }
}

/// Where `JAVA_TOOL_OPTIONS` stands in a container's env.
pub(super) enum ToolOptions<'a> {
    Absent,
    Literal {
        index: usize,
        value: &'a str,
    },
    /// Set from `valueFrom`, or possibly by `envFrom`: we cannot merge, so we do not touch it.
    Opaque(String),
}

pub(super) fn tool_options(container: &Container) -> ToolOptions<'_> {
    let env = container.env.as_deref().unwrap_or_default();
    match env
        .iter()
        .enumerate()
        .rev()
        .find(|(_, e)| e.name == TOOL_OPTIONS)
    {
        Some((index, e)) if e.value_from.is_none() => ToolOptions::Literal {
            index,
            value: e.value.as_deref().unwrap_or(""),
        },
        Some(_) => ToolOptions::Opaque(format!("{TOOL_OPTIONS} is set from valueFrom")),
        None if container.env_from.as_ref().is_some_and(|e| !e.is_empty()) => {
            ToolOptions::Opaque(format!("envFrom may set {TOOL_OPTIONS}"))
        }
        None => ToolOptions::Absent,
    }
}

fn memory_limit(container: &Container) -> Result<Option<u64>, String> {
    let limit = container
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .and_then(|l| l.get("memory"));
    match limit {
        None => Ok(None),
        Some(q) => {
            q.0.parse::<Quantity>()
                .map(|q| Some(q.bytes()))
                .map_err(|e| e.to_string())
        }
    }
}

impl ContainerMutation<'_> {
    /// The memory feature: the RAM percentages for the container's limit, or `None` when
    /// there is nothing to size from (skipped).
    pub(super) fn memory(&mut self, cfg: &MemoryConfig, user: &UserFlags) -> Option<Vec<String>> {
        let name = &self.container.name;
        let limit = memory_limit(self.container).unwrap_or_else(|e| {
            self.warnings
                .push(format!("container {name}: memory limit {e}"));
            None
        });
        let out = memory_flags(cfg, limit, name, user);
        for w in out.warnings {
            self.warnings.push(w);
        }
        if out.flags.is_empty() && !user.sets("-XX:MaxRAMPercentage") {
            self.skip(Feature::Memory, "no memory limit");
            return None;
        }
        Some(out.flags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("-Xmx512m", Some("MaxRAMPercentage"))]
    #[case("-XX:MaxHeapSize=1g", Some("MaxRAMPercentage"))]
    #[case("-XX:MaxRAMPercentage=80", Some("MaxRAMPercentage"))]
    #[case("-Xms256m", Some("InitialRAMPercentage"))]
    #[case("-XX:+HeapDumpOnOutOfMemoryError", Some("HeapDumpOnOutOfMemoryError"))]
    #[case("-XX:-HeapDumpOnOutOfMemoryError", Some("HeapDumpOnOutOfMemoryError"))]
    #[case("-XX:+UseZGC", Some("garbage-collector"))]
    #[case("-Dfoo=bar", Some("-Dfoo"))]
    #[case("-javaagent:/a.jar=x", Some("-javaagent:/a.jar=x"))]
    #[case(
        "--add-opens=java.base/java.lang=ALL-UNNAMED",
        Some("--add-opens=java.base/java.lang=ALL-UNNAMED")
    )]
    #[case("-verbose:gc", Some("-verbose"))]
    #[case("\"-Xmx1g\"", Some("MaxRAMPercentage"))]
    #[case("java", None)]
    #[case("-", None)]
    fn keys(#[case] token: &str, #[case] key: Option<&str>) {
        assert_eq!(flag_key(token).as_deref(), key);
    }

    #[rstest]
    #[case(1 << 30, 62)] // 1Gi: floor(100 * 640 / 1024) = 62
    #[case(512 << 20, 25)] // floor(25) = 25
    #[case(256 << 20, 25)] // reserve above limit: clamped up
    #[case(4 << 30, 75)] // 90 clamped down
    #[case(2 << 30, 75)] // floor(81.25) clamped to 75
    #[case(1536 << 20, 75)]
    #[case(1024 << 20 | 1, 62)]
    #[case(0, 25)]
    fn auto(#[case] limit: u64, #[case] percent: u16) {
        assert_eq!(auto_percent(limit, 384 << 20).tenths(), percent * 10);
    }

    #[test]
    fn merge_keeps_user_value_last() {
        let ours = vec!["-XX:A".to_string(), "-XX:B".to_string()];
        assert_eq!(
            merge_tool_options(&ours, Some(" -Dx=1 ")),
            "-XX:A -XX:B -Dx=1"
        );
        assert_eq!(merge_tool_options(&ours, Some("")), "-XX:A -XX:B");
        assert_eq!(merge_tool_options(&ours, None), "-XX:A -XX:B");
    }
}
