//! The memory feature: who owns the heap (the workload, its launcher, or us), our RAM
//! percentages for the container's limit (SPEC §4.1), and the warnings when a heap cannot fit.

use super::decision::Decision;
use super::env::VarState;
use super::facts::{Facts, Gate};
use super::pod::Container;
use crate::config::profiles::Profile;
use crate::config::quantity::Quantity;
use crate::config::{Feature, MaxRam, MemoryConfig, Percent};
use crate::options::{heap_flag, heap_in, heap_var_sets, jvm_size};

const MIB: u64 = 1 << 20;

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

/// Our RAM percentages for a container whose heap is ours to size ([`heap_owner`] said so: the
/// container sets none of these flags itself).
/// `reserve`: the non-heap reserve in bytes (the key's, plus what the launcher sizes off the
/// heap).
pub fn memory_flags(
    cfg: &MemoryConfig,
    limit: Option<u64>,
    reserve: u64,
    container: &str,
) -> MemoryFlags {
    let mut flags = Vec::new();
    let mut warnings = Vec::new();
    let max = match (&cfg.max, limit) {
        (MaxRam::Auto, l) => l.map(|l| auto_percent(l, reserve)),
        (MaxRam::Fixed(p), _) => Some(*p),
    };
    if let Some(p) = max {
        flags.push(format!("-XX:MaxRAMPercentage={p}"));
        // Below ~250 MiB of RAM HotSpot sizes the heap from MinRAMPercentage (default 50%)
        // instead, which would silently drop the non-heap reserve in small containers.
        flags.push(format!("-XX:MinRAMPercentage={p}"));
    }
    if let Some(initial) = cfg.initial {
        match max {
            Some(m) if initial > m => warnings.push(format!(
                "container {container}: initial-ram-percentage {initial} is above the max {m}; not set"
            )),
            _ => flags.push(format!("-XX:InitialRAMPercentage={initial}")),
        }
    }
    let auto_unset = cfg.max == MaxRam::Auto && max.is_none();
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

pub(super) fn memory_limit(container: &Container) -> Result<Option<u64>, String> {
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

/// Who sizes the heap of a container.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum HeapOwner {
    /// The workload: a heap flag or size in `by` (`KAFKA_HEAP_OPTS=-Xmx512M`).
    Workload { by: String, max: Option<u64> },
    /// The launcher computes it, whatever is set.
    Launcher { reason: String },
    /// The launcher's default heap stands: no variable of ours can replace it.
    LauncherDefault {
        profile: String,
        default: String,
        max: Option<u64>,
    },
    /// Us: our flags go to `var` (the profile's memory variable) or with the other flags.
    Us { var: Option<String> },
}

/// Decides who owns the heap. `places` are the texts the JVM sees flags from, each with its
/// variable's name (or `the command`); `var` reads a variable as admission knows it.
pub(super) fn heap_owner(
    places: &[(String, String)],
    profile: Option<&Profile>,
    var: &dyn Fn(&str) -> VarState,
    limit: Option<u64>,
) -> HeapOwner {
    match launcher_heap_owner(places, profile, var, limit) {
        HeapOwner::Us { var } => match sized_by_name(places) {
            Some((by, max)) => HeapOwner::Workload { by, max },
            None => HeapOwner::Us { var },
        },
        owner => owner,
    }
}

/// Words of a variable's name (split on `_`) that say it sizes the heap ...
const HEAP_WORDS: [&str; 4] = ["HEAP", "HEAPSIZE", "MAXHEAP", "XMX"];
/// ... or the memory of what it launches, unless a word says it is some other memory.
const MEMORY_WORDS: [&str; 2] = ["MEM", "MEMORY"];
const NOT_HEAP_WORDS: [&str; 6] = ["OFF", "OFFHEAP", "CACHE", "PAGECACHE", "DIRECT", "NATIVE"];

/// A variable whose name says heap or memory and whose value is a size (`NEXUS_HEAP=2g`,
/// `APP_XMX=1024m`, `DRUID_MAX_MEM_MB=2048`): a launcher we have no profile for sizes its
/// heap from it. Who sets it, and the maximum when the value says (a bare number counts only
/// in a heap variable, or one named in MB). Heap names first, then memory names.
fn sized_by_name(places: &[(String, String)]) -> Option<(String, Option<u64>)> {
    let words = |name: &str| -> Vec<String> {
        name.to_ascii_uppercase()
            .split('_')
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect()
    };
    let sized = |(name, value): &(String, String), said: &[&str]| {
        // Most names say neither: passed over before their words are copied.
        let says = |w: &[u8]| said.iter().any(|s| w.eq_ignore_ascii_case(s.as_bytes()));
        if !name.as_bytes().split(|b| *b == b'_').any(says) {
            return None;
        }
        let words = words(name);
        let has = |list: &[&str]| words.iter().any(|w| list.contains(&w.as_str()));
        let ours = name.to_ascii_uppercase().starts_with("JVM_GUARD_") || name == "the command";
        if ours || !has(said) || has(&NOT_HEAP_WORDS) {
            return None;
        }
        let value = value.trim();
        let megabytes = words.last().is_some_and(|w| w == "MB") || has(&["MB"]);
        let max = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
            if !megabytes && !has(&HEAP_WORDS) {
                return None;
            }
            megabytes
                .then(|| value.parse::<u64>().ok()?.checked_mul(MIB))
                .flatten()
        } else {
            // Only a size with a JVM unit: `512m`, `2G`.
            let unit = value.chars().last().filter(|c| "kKmMgGtT".contains(*c));
            Some(unit.and(jvm_size(value))?)
        };
        Some((format!("{name}={value}"), max))
    };
    let heap = places.iter().find_map(|p| sized(p, &HEAP_WORDS));
    heap.or_else(|| places.iter().find_map(|p| sized(p, &MEMORY_WORDS)))
}

/// [`heap_owner`] as the heap flags and the launcher profile say.
fn launcher_heap_owner(
    places: &[(String, String)],
    profile: Option<&Profile>,
    var: &dyn Fn(&str) -> VarState,
    limit: Option<u64>,
) -> HeapOwner {
    if let Some((by, max)) = heap_in(places, limit) {
        return HeapOwner::Workload { by, max };
    }
    let Some(profile) = profile else {
        return HeapOwner::Us { var: None };
    };
    let heap = &profile.heap;
    let mut set: Vec<(&String, String)> = Vec::new();
    for name in &heap.vars {
        match var(name) {
            // Admission cannot read it: whatever it holds, the heap is not ours to claim.
            VarState::Opaque(reason) => {
                return HeapOwner::Workload {
                    by: reason,
                    max: None,
                }
            }
            state => match state.value() {
                Some(value) if !value.trim().is_empty() => set.push((name, value.to_string())),
                _ => {}
            },
        }
    }
    for (name, value) in &set {
        if let Some(max) = heap_var_sets(value, heap.megabytes.contains(name)) {
            return HeapOwner::Workload {
                by: format!("{name}={}", value.trim()),
                max,
            };
        }
    }
    if let Some(reason) = &heap.sized_by_launcher {
        return HeapOwner::Launcher {
            reason: reason.clone(),
        };
    }
    match (&heap.default, &heap.memory_var) {
        // A heap variable is set (without a heap): the launcher's default does not apply.
        (Some(_), _) if !set.is_empty() => HeapOwner::Us { var: None },
        (Some(_), Some(var)) => HeapOwner::Us {
            var: Some(var.clone()),
        },
        (Some(default), None) => HeapOwner::LauncherDefault {
            profile: profile.name.clone(),
            default: default.clone(),
            max: default
                .split_whitespace()
                .find_map(|t| heap_flag(t, limit).flatten()),
        },
        (None, _) => HeapOwner::Us { var: None },
    }
}

fn mib(bytes: u64) -> u64 {
    bytes / MIB
}

/// What the memory feature decided, and the heap maximum as far as it is known (what a heap
/// dump can reach).
pub struct Memory {
    pub decision: Decision,
    pub heap_max: Option<u64>,
}

/// The memory feature: our RAM percentages, with the other flags or in the profile's memory
/// variable, or none when the heap is not ours to size (skipped, with the reason).
pub fn decide(facts: &Facts<'_>) -> Memory {
    let cfg = match facts.gate(Feature::Memory, &facts.config().memory) {
        Gate::On(cfg) => cfg,
        Gate::Closed(decision) => {
            return Memory {
                decision: *decision,
                heap_max: None,
            }
        }
    };
    let mut d = Decision::default();
    let (flags, heap_max) = size(facts, cfg, &mut d);
    match flags {
        None => {}
        Some((flags, None)) => d.add_flags(Feature::Memory, flags, &facts.user),
        Some((flags, Some(var))) => match facts.env.var(&var) {
            VarState::Opaque(reason) if !facts.agent => d.skip(Feature::Memory, reason),
            _ => {
                d.apply(Feature::Memory);
                d.env.memory = Some((var, flags));
            }
        },
    }
    Memory {
        decision: d,
        heap_max,
    }
}

/// Our memory flags and the variable they go to (`None`: with the other flags).
type Ours = (Vec<String>, Option<String>);

/// Our flags when the heap is ours, and the heap maximum; what keeps the flags out is recorded
/// in `d`.
fn size(facts: &Facts<'_>, cfg: &MemoryConfig, d: &mut Decision) -> (Option<Ours>, Option<u64>) {
    let name = facts.name();
    let limit = memory_limit(facts.container).unwrap_or_else(|e| {
        d.warn(format!("container {name}: memory limit {e}"));
        None
    });
    let (off_heap, off_heap_by) = off_heap(facts);
    let reserve = cfg.reserve.bytes() + off_heap;
    if facts.user.sets("-XX:-UseContainerSupport") {
        d.warn(format!(
            "container {name} sets -XX:-UseContainerSupport: the JVM sizes its heap from the node's memory, not the container's; memory skipped"
        ));
        d.skip(Feature::Memory, "-XX:-UseContainerSupport is set");
        return (None, None);
    }
    // What admission cannot read, the agent checks at start (it drops our memory flags when
    // the environment sets the heap).
    let read = |v: &str| match facts.env.var(v) {
        VarState::Opaque(_) if facts.agent => VarState::Absent,
        state => state,
    };
    let fit = |d: &mut Decision, by: &str, max: Option<u64>| {
        d.warnings.extend(misfit(name, by, max, limit, reserve));
    };
    let var = match heap_owner(&facts.places, facts.profile, &read, limit) {
        HeapOwner::Workload { by, max } => {
            fit(d, &by, max);
            d.skip(Feature::Memory, format!("heap set by {by}"));
            return (None, max);
        }
        HeapOwner::Launcher { reason } => {
            d.skip(Feature::Memory, reason);
            return (None, None);
        }
        HeapOwner::LauncherDefault {
            profile,
            default,
            max,
        } => {
            fit(
                d,
                &format!("the {profile} launcher's default ({default})"),
                max,
            );
            d.skip(
                Feature::Memory,
                format!("the {profile} launcher sets its default heap {default}"),
            );
            return (None, max);
        }
        HeapOwner::Us { var } => var,
    };
    if let (MaxRam::Auto, Some(l)) = (&cfg.max, limit) {
        if l <= reserve {
            d.warn(format!(
                "container {name}: the memory limit of {} MiB leaves no heap after the non-heap reserve of {} MiB; MaxRAMPercentage takes the 25% floor",
                mib(l),
                mib(reserve)
            ));
        }
    }
    let out = memory_flags(cfg, limit, reserve, name);
    if let (Some(by), MaxRam::Auto) = (off_heap_by, &cfg.max) {
        d.warn(format!(
            "container {name}: the launcher's off-heap memory ({by}) is added to the non-heap reserve: {} MiB in all",
            mib(reserve)
        ));
    }
    d.warnings.extend(out.warnings);
    if out.flags.is_empty() {
        d.skip(Feature::Memory, "no memory limit");
        return (None, None);
    }
    let heap_max = out.flags.iter().find_map(|t| heap_flag(t, limit).flatten());
    (Some((out.flags, var)), heap_max)
}

/// The off-heap memory the container's launcher sizes (its profile says where), in bytes, and
/// what says so (`NEO4J_PAGECACHE=1g`, or the launcher's default).
fn off_heap(facts: &Facts<'_>) -> (u64, Option<String>) {
    let Some(off) = facts.profile.and_then(|p| p.heap.off_heap.as_ref()) else {
        return (0, None);
    };
    let set = off.var.as_deref().and_then(|var| {
        let value = facts.env.var(var).value()?.trim().to_string();
        Some((jvm_size(&value)?, format!("{var}={value}")))
    });
    let default = || {
        let d = off.default.as_deref()?;
        Some((jvm_size(d)?, format!("the launcher's default {d}")))
    };
    match set.or_else(default) {
        Some((bytes, by)) => (bytes, Some(by)),
        None => (0, None),
    }
}

/// The warning when a heap of `max` bytes set by `by` does not fit the limit minus the reserve.
fn misfit(
    container: &str,
    by: &str,
    max: Option<u64>,
    limit: Option<u64>,
    reserve: u64,
) -> Option<String> {
    let (Some(max), Some(limit)) = (max, limit) else {
        return None;
    };
    (max > limit.saturating_sub(reserve)).then(|| format!(
        "container {container}: the heap of {} MiB set by {by} does not fit the memory limit of {} MiB minus the non-heap reserve of {} MiB; the kernel may OOM-kill the container before the JVM writes a heap dump",
        mib(max),
        mib(limit),
        mib(reserve)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mutate::decision::Outcome;
    use crate::mutate::testing::{pod, with_facts};
    use rstest::rstest;
    use serde_json::{json, Value};

    fn container(image: &str, limit: Option<&str>, env: Value) -> Value {
        json!({
            "name": "a",
            "image": image,
            "env": env,
            "resources": limit.map(|l| json!({"limits": {"memory": l}})),
        })
    }

    fn applied() -> Outcome {
        Outcome::Applied
    }

    fn skipped(reason: &str) -> Outcome {
        Outcome::Skipped {
            reason: reason.into(),
        }
    }

    fn places(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[rstest]
    #[case::heap_with_a_unit(&[("NEXUS_HEAP", "2g")], Some(("NEXUS_HEAP=2g", Some(2 << 30))))]
    #[case::xmx_bare(&[("APP_XMX", "1024")], Some(("APP_XMX=1024", None)))]
    #[case::memory_in_mb(&[("DRUID_MAX_MEM_MB", "2048")], Some(("DRUID_MAX_MEM_MB=2048", Some(2048 << 20))))]
    #[case::memory_bare_is_no_size(&[("MEMORY_NODES", "3")], None)]
    #[case::member_is_not_mem(&[("CLUSTER_MEMBER_ID", "3g")], None)]
    #[case::a_page_cache_is_not_the_heap(&[("NEO4J_dbms_memory_pagecache_size", "512M")], None)]
    #[case::off_heap(&[("IGNITE_OFF_HEAP_SIZE", "1g")], None)]
    #[case::not_a_size(&[("JAVA_HEAP_OPTS_FILE", "/etc/heap.conf")], None)]
    #[case::heap_before_memory(
        &[("NEO4J_dbms_memory_transaction_total_max", "1g"), ("NEO4J_dbms_memory_heap_max__size", "2G")],
        Some(("NEO4J_dbms_memory_heap_max__size=2G", Some(2 << 30)))
    )]
    #[case::ours(&[("JVM_GUARD_MEMORY_OPTIONS", "1g")], None)]
    fn variables_whose_name_says_heap(
        #[case] vars: &[(&str, &str)],
        #[case] expected: Option<(&str, Option<u64>)>,
    ) {
        let got = sized_by_name(&places(vars));
        assert_eq!(got.as_ref().map(|(by, max)| (by.as_str(), *max)), expected);
    }

    #[test]
    fn off_heap_memory_the_launcher_sizes_is_reserved() {
        let profiles = crate::config::Profiles::with_overrides(
            "- name: graphdb\n  cite: a test launcher with a page cache\n  match:\n    images: [corp/graphdb]\n  heap:\n    off-heap:\n      var: GRAPH_PAGECACHE\n      default: 512m\n",
        )
        .unwrap();
        let settings = crate::config::ServerSettings {
            tools_image: Some("tools:1".into()),
            profiles: std::sync::Arc::new(profiles),
            ..Default::default()
        };
        let run = |env: Value| {
            let c = json!({
                "name": "a", "image": "corp/graphdb:5", "command": ["java", "-jar", "g.jar"], "env": env,
                "resources": {"limits": {"memory": "2Gi"}},
            });
            crate::mutate::testing::with_settings_facts(
                &settings,
                json!({}),
                pod(json!({}), c),
                decide,
            )
        };
        // 2 GiB, 384 MiB reserve + the 512 MiB default cache: floor(100 * 1152 / 2048) = 56.
        let m = run(json!([]));
        assert_eq!(m.decision.env.tokens[0], "-XX:MaxRAMPercentage=56.0");
        assert!(
            m.decision.warnings[0].contains("the launcher's default 512m"),
            "{:?}",
            m.decision.warnings
        );
        // Set by the container: 1 GiB more, floor(100 * 640 / 2048) = 31.
        let m = run(json!([{"name": "GRAPH_PAGECACHE", "value": "1g"}]));
        assert_eq!(m.decision.env.tokens[0], "-XX:MaxRAMPercentage=31.0");
        assert!(m.decision.warnings[0].contains("GRAPH_PAGECACHE=1g"));
        assert!(crate::config::Profiles::with_overrides(
            "- name: x\n  match:\n    images: [x]\n  heap:\n    off-heap:\n      default: lots\n"
        )
        .unwrap_err()
        .to_string()
        .contains("heap.off-heap.default"));
    }

    const MAX: &str = "jvm-guard.io/max-ram-percentage";

    #[rstest]
    #[case::auto_from_the_limit(
        json!({}), container("corp/app:1", Some("1Gi"), json!([])),
        applied(), &["-XX:MaxRAMPercentage=62.0", "-XX:MinRAMPercentage=62.0"], None, &[]
    )]
    #[case::no_limit(
        json!({}), container("corp/app:1", None, json!([])),
        skipped("no memory limit"), &[], None,
        &["container a has no memory limit: MaxRAMPercentage not set (a percentage would apply to node memory)"]
    )]
    #[case::fixed_percentage_without_limit(
        json!({MAX: "60"}), container("corp/app:1", None, json!([])),
        applied(), &["-XX:MaxRAMPercentage=60.0", "-XX:MinRAMPercentage=60.0"], None,
        &["container a has no memory limit: the RAM percentages apply to node memory"]
    )]
    #[case::initial_above_max(
        json!({MAX: "60", "jvm-guard.io/initial-ram-percentage": "70"}),
        container("corp/app:1", Some("1Gi"), json!([])),
        applied(), &["-XX:MaxRAMPercentage=60.0", "-XX:MinRAMPercentage=60.0"], None,
        &["container a: initial-ram-percentage 70.0 is above the max 60.0; not set"]
    )]
    #[case::initial_below_max(
        json!({MAX: "60", "jvm-guard.io/initial-ram-percentage": "30"}),
        container("corp/app:1", Some("1Gi"), json!([])),
        applied(),
        &["-XX:MaxRAMPercentage=60.0", "-XX:MinRAMPercentage=60.0", "-XX:InitialRAMPercentage=30.0"],
        None, &[]
    )]
    #[case::container_support_off(
        json!({}),
        container("corp/app:1", Some("1Gi"), json!([{"name": "JAVA_TOOL_OPTIONS", "value": "-XX:-UseContainerSupport"}])),
        skipped("-XX:-UseContainerSupport is set"), &[], None,
        &["container a sets -XX:-UseContainerSupport: the JVM sizes its heap from the node's memory"]
    )]
    #[case::workload_heap_that_fits(
        json!({}),
        container("corp/app:1", Some("1Gi"), json!([{"name": "JAVA_OPTS", "value": "-Xmx512m"}])),
        skipped("heap set by JAVA_OPTS=-Xmx512m"), &[], None, &[]
    )]
    #[case::workload_heap_too_big(
        json!({}),
        container("corp/app:1", Some("1Gi"), json!([{"name": "JAVA_OPTS", "value": "-Xmx2g"}])),
        skipped("heap set by JAVA_OPTS=-Xmx2g"), &[], None,
        &["container a: the heap of 2048 MiB set by JAVA_OPTS=-Xmx2g does not fit the memory limit of 1024 MiB minus the non-heap reserve of 384 MiB"]
    )]
    #[case::heap_in_a_launcher_variable(
        json!({}),
        container("bitnami/zookeeper:3.9", Some("2Gi"), json!([{"name": "ZOO_HEAP_SIZE", "value": "512"}])),
        skipped("heap set by ZOO_HEAP_SIZE=512"), &[], None, &[]
    )]
    #[case::launcher_sizes_it(
        json!({}), container("elasticsearch:8.15.0", Some("2Gi"), json!([])),
        skipped("Elasticsearch sets -Xmx from the memory limit unless ES_JAVA_OPTS sets -Xmx"),
        &[], None, &[]
    )]
    #[case::launcher_default_stands(
        json!({}), container("zookeeper:3.9", Some("1Gi"), json!([])),
        skipped("the zookeeper launcher sets its default heap -Xmx1000m"), &[], None,
        &["container a: the heap of 1000 MiB set by the zookeeper launcher's default (-Xmx1000m) does not fit"]
    )]
    #[case::profile_memory_variable(
        json!({}), container("confluentinc/cp-schema-registry:7.6.0", Some("1Gi"), json!([])),
        applied(), &[], Some(("SCHEMA_REGISTRY_HEAP_OPTS", &["-XX:MaxRAMPercentage=62.0", "-XX:MinRAMPercentage=62.0"][..])),
        &[]
    )]
    #[case::invalid(
        json!({MAX: "150"}), container("corp/app:1", Some("1Gi"), json!([])),
        skipped("invalid configuration"), &[], None, &[]
    )]
    #[case::opaque_variable(
        json!({}),
        container("corp/app:1", Some("1Gi"), json!([{"name": "JAVA_TOOL_OPTIONS", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}])),
        skipped("JAVA_TOOL_OPTIONS is set from valueFrom"), &[], None, &[]
    )]
    fn who_owns_the_heap(
        #[case] annotations: Value,
        #[case] container: Value,
        #[case] outcome: Outcome,
        #[case] tokens: &[&str],
        #[case] memory_var: Option<(&str, &[&str])>,
        #[case] warnings: &[&str],
    ) {
        let memory = with_facts(pod(annotations, container), true, decide);
        let d = memory.decision;
        let outcomes: Vec<Outcome> = d.outcomes.iter().map(|(_, o)| o.clone()).collect();
        assert_eq!(outcomes, [outcome]);
        assert!(d.outcomes.iter().all(|(f, _)| *f == Feature::Memory));
        assert_eq!(d.env.tokens, tokens);
        let var = d.env.memory.as_ref();
        let var = var.map(|(v, flags)| (v.as_str(), flags.iter().map(String::as_str).collect()));
        assert_eq!(var, memory_var.map(|(v, f)| (v, f.to_vec())));
        assert_eq!(d.warnings.len(), warnings.len(), "{:?}", d.warnings);
        for (got, want) in d.warnings.iter().zip(warnings) {
            assert!(got.starts_with(want), "{got:?} should start with {want:?}");
        }
    }

    #[test]
    fn the_heap_maximum_is_what_a_dump_can_reach() {
        let limit = |l| container("corp/app:1", Some(l), json!([]));
        let ours = with_facts(pod(json!({MAX: "50"}), limit("2Gi")), true, decide);
        assert_eq!(ours.heap_max, Some(1 << 30));
        let env = json!([{"name": "JAVA_OPTS", "value": "-Xmx512m"}]);
        let theirs = container("corp/app:1", Some("2Gi"), env);
        let theirs = with_facts(pod(json!({}), theirs), true, decide);
        assert_eq!(theirs.heap_max, Some(512 << 20));
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
}
