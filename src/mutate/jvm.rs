//! JVM options: which flags the container already sets (by flag name), the exit-on-oom flag,
//! and the merge into an options variable (ours first, the user's tokens after, so theirs win).

use std::collections::BTreeSet;

/// Read by every HotSpot and OpenJ9 JVM, whatever launcher starts it.
pub const TOOL_OPTIONS: &str = "JAVA_TOOL_OPTIONS";
/// Other places users put flags; flags found there are not set again.
pub(super) const USER_OPTION_VARS: [&str; 4] = [
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
    /// The flags in `texts`: option variables' values and `command`/`args` words.
    pub fn new<'t>(texts: impl IntoIterator<Item = &'t str>) -> UserFlags {
        UserFlags(
            texts
                .into_iter()
                .flat_map(str::split_whitespace)
                .filter_map(flag_key)
                .collect(),
        )
    }

    pub fn sets(&self, token: &str) -> bool {
        flag_key(token).is_some_and(|k| self.0.contains(&k))
    }
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
