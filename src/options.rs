//! JVM option tokens, shared by both halves: how a value splits into options, the setting each
//! option controls, which options set the heap, and the merge rule (ours first, the user's after,
//! so theirs win). The webhook merges with it at admission; the agent at start, from the
//! environment the process really has. Also the agent's environment: what the webhook tells it.

use std::collections::BTreeSet;

/// Read by every HotSpot and OpenJ9 JVM, whatever launcher starts it.
pub const TOOL_OPTIONS: &str = "JAVA_TOOL_OPTIONS";
/// Other places users put flags; flags found there are not set again.
pub const USER_OPTION_VARS: [&str; 4] = [
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

/// The options of a value as HotSpot splits `JAVA_TOOL_OPTIONS`: on whitespace, except inside
/// single or double quotes (kept in the token, as the JVM sees them before it strips them).
pub fn tokens(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut quote: Option<char> = None;
    for (i, c) in text.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c.is_whitespace() => {
                if let Some(s) = start.take() {
                    out.push(&text[s..i]);
                }
            }
            None => {
                start.get_or_insert(i);
                if c == '"' || c == '\'' {
                    quote = Some(c);
                }
            }
        }
    }
    if let Some(s) = start {
        out.push(&text[s..]);
    }
    out
}

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

/// Flag keys the container's own settings already set: option variables' values, `command`
/// and `args` (so `sh -c "java -Xmx1g ..."` counts too).
#[derive(Debug, Default, Clone)]
pub struct UserFlags(BTreeSet<String>);

impl UserFlags {
    /// The flags in `texts`: option variables' values and `command`/`args` words.
    pub fn new<'t>(texts: impl IntoIterator<Item = &'t str>) -> UserFlags {
        UserFlags(
            texts
                .into_iter()
                .flat_map(tokens)
                .filter_map(flag_key)
                .collect(),
        )
    }

    pub fn sets(&self, token: &str) -> bool {
        flag_key(token).is_some_and(|k| self.0.contains(&k))
    }
}

/// Our tokens before the user's value: the JVM takes the last occurrence, so the user's own
/// settings keep winning. Never a self-reference: the user's value is written out.
pub fn merge(ours: &[String], user: Option<&str>) -> String {
    let ours = ours.join(" ");
    match user.map(str::trim) {
        Some(u) if !u.is_empty() && !ours.is_empty() => format!("{ours} {u}"),
        Some(u) if !u.is_empty() => u.to_string(),
        _ => ours,
    }
}

/// A JVM size (`512m`, `4G`, `1073741824`), in bytes.
pub fn jvm_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, ""),
    };
    let n: u64 = digits.parse().ok()?;
    let shift = match unit {
        "" => 0,
        "k" | "K" => 10,
        "m" | "M" => 20,
        "g" | "G" => 30,
        "t" | "T" => 40,
        _ => return None,
    };
    n.checked_mul(1 << shift)
}

/// Whether `token` sets the heap (SPEC §4.1), and the maximum it gives under a memory limit
/// of `limit` bytes, when it says.
pub fn heap_flag(token: &str, limit: Option<u64>) -> Option<Option<u64>> {
    let t = token.trim_matches(|c| c == '"' || c == '\'');
    if let Some(size) = t.strip_prefix("-Xmx") {
        return Some(jvm_size(size));
    }
    if t.starts_with("-Xms") {
        return Some(None);
    }
    let xx = t.strip_prefix("-XX:")?;
    let (name, value) = xx.split_once('=').unwrap_or((xx, ""));
    let percent = |v: &str| v.parse::<f64>().ok();
    match name {
        "MaxHeapSize" => Some(jvm_size(value)),
        "MaxRAMPercentage" => Some(
            limit
                .zip(percent(value))
                .map(|(l, p)| (l as f64 * p / 100.0) as u64),
        ),
        "MaxRAMFraction" => Some(
            limit
                .zip(value.parse::<u64>().ok().filter(|n| *n > 0))
                .map(|(l, n)| l / n),
        ),
        "InitialHeapSize"
        | "MinHeapSize"
        | "MaxRAM"
        | "MinRAMPercentage"
        | "InitialRAMPercentage"
        | "MinRAMFraction"
        | "InitialRAMFraction" => Some(None),
        _ => None,
    }
}

/// The first of `places` (a variable's name, or `the command`, and its text) that sets the
/// heap: who sets it (`KAFKA_HEAP_OPTS=-Xmx512M`) and the maximum it gives, when known.
pub fn heap_in(places: &[(String, String)], limit: Option<u64>) -> Option<(String, Option<u64>)> {
    for (label, text) in places {
        let mut found: Option<Option<u64>> = None;
        let mut set: Vec<&str> = Vec::new();
        for token in tokens(text) {
            if let Some(max) = heap_flag(token, limit) {
                found = Some(found.flatten().or(max));
                set.push(token);
            }
        }
        if let Some(max) = found {
            let set = set.join(" ");
            let by = match label.as_str() {
                "the command" => format!("the command ({set})"),
                var => format!("{var}={set}"),
            };
            return Some((by, max));
        }
    }
    None
}

/// Whether a launcher's heap variable set to `value` sets the heap: a bare number (MiB when the
/// launcher reads it so, `megabytes`) or a JVM size; and the maximum, when known.
pub fn heap_var_sets(value: &str, megabytes: bool) -> Option<Option<u64>> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(if megabytes {
            value
                .parse::<u64>()
                .ok()
                .and_then(|n| n.checked_mul(1 << 20))
        } else {
            None
        });
    }
    jvm_size(value).map(Some)
}

/// What the webhook tells the agent, in the container's environment (SPEC §4.4): our JVM
/// options and where they go, the launcher's heap variables, and the dump directory to rotate.
/// Both halves read and write it only through [`AgentEnv`].
pub mod agent_env {
    /// Our JVM options, for the options variables.
    pub const OPTIONS: &str = "JVM_GUARD_JAVA_OPTIONS";
    /// The variables they are merged into, comma-separated (the profile's, else
    /// `JAVA_TOOL_OPTIONS`; a launcher with several JVMs has several).
    pub const OPTIONS_VAR: &str = "JVM_GUARD_OPTIONS_VAR";
    /// Our memory options, when they go to a variable of their own ...
    pub const MEMORY_OPTIONS: &str = "JVM_GUARD_MEMORY_OPTIONS";
    /// ... this one (a launcher's heap variable, replacing its default heap).
    pub const MEMORY_VAR: &str = "JVM_GUARD_MEMORY_VAR";
    /// The launcher's heap variables, comma-separated: set at start, the heap is the workload's.
    pub const HEAP_VARS: &str = "JVM_GUARD_HEAP_VARS";
    /// The container's dump directory (also what `inspect` lists).
    pub const DUMP_DIR: &str = "JVM_GUARD_DUMP_DIR";
    /// How many rotated dumps to keep.
    pub const DUMP_KEEP: &str = "JVM_GUARD_DUMP_KEEP";
    /// The container's name, part of rotated dump names.
    pub const CONTAINER: &str = "JVM_GUARD_CONTAINER";
    /// The pod's name, from `metadata.name` (pods from a controller have none at admission):
    /// the dump directory on the volume is `<pod>/<container>`.
    pub const POD_NAME: &str = "JVM_GUARD_POD_NAME";
    /// The pod's namespace, from `metadata.namespace`, where a dump volume is shared across
    /// namespaces (a hostPath): the directory is then `<namespace>/<pod>/<container>`.
    pub const POD_NAMESPACE: &str = "JVM_GUARD_POD_NAMESPACE";
}

/// The dump directory the agent rotates at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dumps {
    pub dir: String,
    pub keep: u32,
    pub container: String,
}

/// The agent's instructions, as the webhook writes them into the container's environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentEnv {
    /// Our options for `vars`, in order.
    pub options: Vec<String>,
    pub vars: Vec<String>,
    /// Our memory options and the variable they go to, when not with the others.
    pub memory: Option<(String, Vec<String>)>,
    pub heap_vars: Vec<String>,
    pub dumps: Option<Dumps>,
}

impl AgentEnv {
    /// The variables to set, in a stable order.
    pub fn to_env(&self) -> Vec<(&'static str, String)> {
        let mut env = Vec::new();
        if !self.options.is_empty() {
            env.push((agent_env::OPTIONS, self.options.join(" ")));
            env.push((agent_env::OPTIONS_VAR, self.vars.join(",")));
        }
        if let Some((var, flags)) = &self.memory {
            env.push((agent_env::MEMORY_OPTIONS, flags.join(" ")));
            env.push((agent_env::MEMORY_VAR, var.clone()));
        }
        if !self.heap_vars.is_empty() {
            env.push((agent_env::HEAP_VARS, self.heap_vars.join(",")));
        }
        if let Some(d) = &self.dumps {
            env.push((agent_env::DUMP_DIR, d.dir.clone()));
            env.push((agent_env::DUMP_KEEP, d.keep.to_string()));
            env.push((agent_env::CONTAINER, d.container.clone()));
        }
        env
    }

    /// Reads the instructions back; `Err` names the variable that makes no sense.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<AgentEnv, String> {
        let list = |name: &str| -> Vec<String> {
            get(name)
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        let words = |name: &str| -> Vec<String> {
            get(name)
                .map(|v| tokens(&v).into_iter().map(str::to_string).collect())
                .unwrap_or_default()
        };
        let options = words(agent_env::OPTIONS);
        let vars = list(agent_env::OPTIONS_VAR);
        if !options.is_empty() && vars.is_empty() {
            return Err(format!(
                "{} is set but {} names no variable",
                agent_env::OPTIONS,
                agent_env::OPTIONS_VAR
            ));
        }
        let memory = match (get(agent_env::MEMORY_VAR), words(agent_env::MEMORY_OPTIONS)) {
            (Some(var), flags) if !var.trim().is_empty() && !flags.is_empty() => {
                Some((var.trim().to_string(), flags))
            }
            (None, flags) if !flags.is_empty() => {
                return Err(format!(
                    "{} is set but {} is not",
                    agent_env::MEMORY_OPTIONS,
                    agent_env::MEMORY_VAR
                ))
            }
            _ => None,
        };
        let dumps = match get(agent_env::DUMP_DIR).filter(|d| !d.trim().is_empty()) {
            None => None,
            Some(dir) => {
                let keep = match get(agent_env::DUMP_KEEP) {
                    None => 3,
                    Some(k) => k
                        .trim()
                        .parse::<u32>()
                        .ok()
                        .filter(|k| *k >= 1)
                        .ok_or_else(|| {
                            format!(
                                "{}={k:?} is not a whole number of at least 1",
                                agent_env::DUMP_KEEP
                            )
                        })?,
                };
                Some(Dumps {
                    dir,
                    keep,
                    container: get(agent_env::CONTAINER).unwrap_or_else(|| "app".to_string()),
                })
            }
        };
        Ok(AgentEnv {
            options,
            vars,
            memory,
            heap_vars: list(agent_env::HEAP_VARS),
            dumps,
        })
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
    #[case("-XX:OnOutOfMemoryError=\"kill -9 %p\"", Some("OnOutOfMemoryError"))]
    #[case("java", None)]
    #[case("-", None)]
    fn keys(#[case] token: &str, #[case] key: Option<&str>) {
        assert_eq!(flag_key(token).as_deref(), key);
    }

    #[rstest]
    #[case("", &[])]
    #[case("  -Xmx1g   -Dx=1 ", &["-Xmx1g", "-Dx=1"])]
    #[case(
        "-XX:OnOutOfMemoryError=\"/bin/x rotate --dir /d\" -Da=b",
        &["-XX:OnOutOfMemoryError=\"/bin/x rotate --dir /d\"", "-Da=b"]
    )]
    #[case("-Dmsg='a b' -Dy", &["-Dmsg='a b'", "-Dy"])]
    #[case("-Dq=\"unterminated rest", &["-Dq=\"unterminated rest"])]
    #[case("-Dü=é\t-X", &["-Dü=é", "-X"])]
    fn splits_as_hotspot_does(#[case] text: &str, #[case] expected: &[&str]) {
        assert_eq!(tokens(text), expected);
    }

    #[test]
    fn a_quoted_option_is_one_flag() {
        let user = UserFlags::new(["-XX:OnOutOfMemoryError=\"kill -9 %p\" -Xss1m"]);
        assert!(user.sets("-XX:OnOutOfMemoryError=x"));
        assert!(user.sets("-Xss2m"));
        assert!(
            !user.sets("-9"),
            "the quoted words are not flags of their own"
        );
    }

    #[test]
    fn merge_keeps_user_value_last() {
        let ours = vec!["-XX:A".to_string(), "-XX:B".to_string()];
        assert_eq!(merge(&ours, Some(" -Dx=1 ")), "-XX:A -XX:B -Dx=1");
        assert_eq!(merge(&ours, Some("")), "-XX:A -XX:B");
        assert_eq!(merge(&ours, None), "-XX:A -XX:B");
        assert_eq!(merge(&[], Some(" -Dx=1")), "-Dx=1");
    }

    #[rstest]
    #[case("-Xmx512m", Some(Some(512 << 20)))]
    #[case("-Xmx1G", Some(Some(1 << 30)))]
    #[case("-XX:MaxHeapSize=2g", Some(Some(2 << 30)))]
    #[case("-XX:MaxRAMPercentage=50.0", Some(Some(512 << 20)))]
    #[case("-XX:MaxRAMFraction=2", Some(Some(512 << 20)))]
    #[case("-Xms256m", Some(None))]
    #[case("-XX:MaxRAM=8g", Some(None))]
    #[case("-XX:InitialRAMPercentage=30", Some(None))]
    #[case("-Xss1m", None)]
    #[case("-XX:MaxRAMPercentageX=1", None)]
    #[case("-XX:+UseG1GC", None)]
    fn heap_flags(#[case] token: &str, #[case] expected: Option<Option<u64>>) {
        assert_eq!(heap_flag(token, Some(1 << 30)), expected);
    }

    #[rstest]
    #[case("1024", true, Some(Some(1 << 30)))]
    #[case("1024", false, Some(None))]
    #[case("2g", false, Some(Some(2 << 30)))]
    #[case(" ", false, None)]
    #[case("-XX:+Foo", false, None)]
    #[case("99999999999999999999", true, Some(None))]
    fn heap_variables(
        #[case] value: &str,
        #[case] megabytes: bool,
        #[case] expected: Option<Option<u64>>,
    ) {
        assert_eq!(heap_var_sets(value, megabytes), expected);
    }

    #[test]
    fn the_agent_env_reads_back_what_the_webhook_writes() {
        let env = AgentEnv {
            options: vec![
                "-XX:MaxRAMPercentage=62.0".into(),
                "-XX:OnOutOfMemoryError=\"/jvm-guard/bin/jvm-guard rotate-dumps --dir /dumps\""
                    .into(),
            ],
            vars: vec!["SONAR_WEB_JAVAOPTS".into(), "SONAR_CE_JAVAOPTS".into()],
            memory: Some((
                "KAFKA_HEAP_OPTS".into(),
                vec!["-XX:MaxRAMPercentage=62.0".into()],
            )),
            heap_vars: vec!["KAFKA_HEAP_OPTS".into()],
            dumps: Some(Dumps {
                dir: "/dumps".into(),
                keep: 2,
                container: "app".into(),
            }),
        };
        let written: std::collections::BTreeMap<&str, String> = env.to_env().into_iter().collect();
        let back = AgentEnv::from_env(|n| written.get(n).cloned()).unwrap();
        assert_eq!(back, env);
        assert_eq!(AgentEnv::from_env(|_| None).unwrap(), AgentEnv::default());
    }

    #[test]
    fn nonsense_in_the_agent_env_names_the_variable() {
        let only_options = |n: &str| (n == agent_env::OPTIONS).then(|| "-Xss1m".to_string());
        let e = AgentEnv::from_env(only_options).unwrap_err();
        assert!(e.contains(agent_env::OPTIONS_VAR), "{e}");
        let bad_keep = |n: &str| match n {
            agent_env::DUMP_DIR => Some("/dumps".to_string()),
            agent_env::DUMP_KEEP => Some("0".to_string()),
            _ => None,
        };
        let e = AgentEnv::from_env(bad_keep).unwrap_err();
        assert!(e.contains(agent_env::DUMP_KEEP), "{e}");
    }
}
