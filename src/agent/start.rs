//! What the agent does at start, before it executes the application (SPEC §4.4): rotate the
//! dumps earlier runs left, merge the webhook's JVM options into the launcher's variable as the
//! process really has it, and say what it did in one line. The token rules are the webhook's
//! own ([`crate::options`]): the user's flags win, a heap the environment sets turns our memory
//! flags off.

use std::path::Path;
use std::time::SystemTime;

use super::jdk::Found;
use super::rotate::rotate;
use crate::options::jdk::BASELINE;
use crate::options::{
    self, flag_key, for_jdk, heap_flag, heap_in, heap_var_sets, AgentEnv, Dumps, UserFlags,
    USER_OPTION_VARS,
};

/// Where HotSpot finds the shell it runs `-XX:OnOutOfMemoryError` with.
pub const SHELL: &str = "/bin/sh";

/// The variables to set for the application, and what to report.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Merged {
    pub set: Vec<(String, String)>,
    pub notes: Vec<String>,
}

/// What the agent knows of the JVM it starts: its JDK, when found, and the memory limit of
/// the container's cgroup.
#[derive(Debug, Clone, Default)]
pub struct Jvm {
    pub jdk: Option<Found>,
    pub limit: Option<u64>,
}

/// `plan` with its options as `jvm`'s JDK takes them (an unknown JDK is taken as the oldest we
/// support), and the line that says so; `None` when there is nothing to merge.
fn for_the_jdk(plan: &AgentEnv, jvm: &Jvm) -> Option<(AgentEnv, String)> {
    if plan.options.is_empty() && plan.memory.is_none() {
        return None;
    }
    let (jdk, mut line) = match &jvm.jdk {
        Some(found) => (&found.jdk, format!("{} ({})", found.jdk, found.from)),
        None => (
            &BASELINE,
            "JDK not found (no release file, no JAVA_VERSION): options every JDK since 8u92 takes"
                .to_string(),
        ),
    };
    let mut plan = plan.clone();
    let mut notes = Vec::new();
    let options = for_jdk(jdk, &plan.options, jvm.limit);
    plan.options = options.tokens;
    notes.extend(options.notes);
    if let Some((_, flags)) = &mut plan.memory {
        let memory = for_jdk(jdk, flags, jvm.limit);
        *flags = memory.tokens;
        notes.extend(memory.notes);
    }
    if !notes.is_empty() {
        line = format!("{line}: {}", notes.join(", "));
    }
    Some((plan, line))
}

/// Merges `plan`'s options into the environment `env` reads (the process's own), the
/// application's `argv` counting as a place flags are set too, as `jvm`'s JDK takes them.
/// `has_shell`: whether the OutOfMemoryError hook can run.
pub fn merge(
    plan: &AgentEnv,
    jvm: &Jvm,
    env: &dyn Fn(&str) -> Option<String>,
    argv: &[String],
    has_shell: bool,
) -> Merged {
    let mut merged = Merged::default();
    let translated = for_the_jdk(plan, jvm);
    let plan = match &translated {
        Some((plan, line)) => {
            merged.notes.push(line.clone());
            plan
        }
        None => plan,
    };
    let memory_var = plan.memory.as_ref().map(|(var, _)| var.as_str());
    let mut names: Vec<&str> = USER_OPTION_VARS.to_vec();
    names.extend(plan.vars.iter().map(String::as_str));
    names.extend(plan.heap_vars.iter().map(String::as_str));
    names.extend(memory_var);
    let mut places: Vec<(String, String)> = Vec::new();
    for name in names {
        if places.iter().any(|(n, _)| n == name) {
            continue;
        }
        if let Some(value) = env(name).filter(|v| !v.trim().is_empty()) {
            places.push((name.to_string(), value));
        }
    }
    if !argv.is_empty() {
        places.push(("the command".to_string(), argv.join(" ")));
    }

    // The heap is the workload's when any place sets it, or a launcher heap variable does.
    let heap_by = heap_in(&places, None).map(|(by, _)| by).or_else(|| {
        plan.heap_vars.iter().find_map(|var| {
            let value = env(var)?;
            heap_var_sets(&value, false).map(|_| format!("{var}={}", value.trim()))
        })
    });
    let user = UserFlags::new(places.iter().map(|(_, text)| text.as_str()));

    let mut theirs: Vec<String> = Vec::new();
    let keep = |tokens: &[String], theirs: &mut Vec<String>| -> Vec<String> {
        let mut kept = Vec::new();
        for token in tokens {
            let key = flag_key(token);
            if heap_by.is_some() && heap_flag(token, None).is_some() {
                continue;
            }
            if user.sets(token) {
                theirs.extend(key.map(str::to_string));
                continue;
            }
            if !has_shell && key == Some("OnOutOfMemoryError") {
                continue;
            }
            kept.push(token.clone());
        }
        kept
    };
    let ours = keep(&plan.options, &mut theirs);
    let memory = match (&plan.memory, &heap_by) {
        (Some((var, flags)), None) => Some((var.clone(), keep(flags, &mut theirs))),
        _ => None,
    };

    if let Some((var, flags)) = memory.filter(|(_, flags)| !flags.is_empty()) {
        merged.notes.push(format!("{var} += {}", flags.join(" ")));
        let value = options::merge(&flags, env(&var).as_deref());
        merged.set.push((var, value));
    }
    if !ours.is_empty() {
        for var in &plan.vars {
            let value = options::merge(&ours, env(var).as_deref());
            merged.set.push((var.clone(), value));
        }
        merged
            .notes
            .push(format!("{} += {}", plan.vars.join(","), ours.join(" ")));
    }
    if let Some(by) = heap_by {
        let had_memory =
            plan.memory.is_some() || plan.options.iter().any(|t| heap_flag(t, None).is_some());
        if had_memory {
            merged
                .notes
                .push(format!("heap set by {by}: memory flags left out"));
        }
    }
    theirs.sort();
    theirs.dedup();
    if !theirs.is_empty() {
        merged
            .notes
            .push(format!("the container's own {} kept", theirs.join(", ")));
    }
    let hook = |t: &String| flag_key(t) == Some("OnOutOfMemoryError");
    if !has_shell && plan.options.iter().any(hook) && !user.sets("-XX:OnOutOfMemoryError") {
        merged.notes.push(format!(
            "no {SHELL}: OutOfMemoryError hook left out (dumps are rotated at start)"
        ));
    }
    merged
}

/// Rotates the dump directory; the note to report. `pod` names the directory on the volume.
/// Without a shell no hook prunes after the next dump, so room is left for it here: at most
/// `keep` dumps are ever in the directory (with `keep` 1, two: the last one is never deleted
/// before anybody could look at it).
pub fn rotate_dumps(dumps: &Dumps, pod: Option<&str>, now: SystemTime, has_shell: bool) -> String {
    let dir = Path::new(&dumps.dir);
    let keep = match has_shell {
        true => dumps.keep,
        false => dumps.keep.saturating_sub(1).max(1),
    };
    let on_volume = pod
        .map(|p| format!(", {p}/{} on the volume", dumps.container))
        .unwrap_or_default();
    match rotate(dir, keep as usize, &dumps.container, now) {
        Ok(r) => {
            let deleted = match r.deleted.len() {
                0 => String::new(),
                n => format!(", {n} deleted"),
            };
            format!("dumps {}{on_volume} ({} kept{deleted})", dumps.dir, r.kept)
        }
        Err(e) => format!("dumps {}{on_volume}: not rotated: {e}", dumps.dir),
    }
}

/// Whether HotSpot can run a shell command here.
pub fn has_shell() -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(SHELL).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    const HOOK: &str =
        "-XX:OnOutOfMemoryError=\"/jvm-guard/bin/jvm-guard rotate-dumps --dir /dumps\"";

    fn plan() -> AgentEnv {
        AgentEnv {
            options: strings(&[
                "-XX:MaxRAMPercentage=62.0",
                "-XX:MinRAMPercentage=62.0",
                "-XX:+HeapDumpOnOutOfMemoryError",
                HOOK,
                "-XX:+ExitOnOutOfMemoryError",
            ]),
            vars: strings(&["JAVA_TOOL_OPTIONS"]),
            ..AgentEnv::default()
        }
    }

    /// A JDK 17 found at /jdk, in a 1 GiB cgroup.
    fn modern() -> Jvm {
        jvm("17.0.9")
    }

    fn jvm(version: &str) -> Jvm {
        Jvm {
            jdk: Some(Found {
                jdk: crate::options::Jdk {
                    version: crate::options::JavaVersion::parse(version).unwrap(),
                    vm: crate::options::Vm::HotSpot,
                },
                from: "/jdk/release".into(),
            }),
            limit: Some(1 << 30),
        }
    }

    fn run(plan: &AgentEnv, env: &[(&str, &str)], shell: bool) -> Merged {
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        merge(
            plan,
            &modern(),
            &|n| env.get(n).cloned(),
            &strings(&["java", "-jar", "app.jar"]),
            shell,
        )
    }

    fn value<'m>(m: &'m Merged, var: &str) -> Option<&'m str> {
        m.set
            .iter()
            .find(|(v, _)| v == var)
            .map(|(_, value)| value.as_str())
    }

    #[test]
    fn ours_go_before_the_image_value_and_theirs_win() {
        let m = run(
            &plan(),
            &[("JAVA_TOOL_OPTIONS", "-Dapp=1 -XX:-ExitOnOutOfMemoryError")],
            true,
        );
        assert_eq!(
            value(&m, "JAVA_TOOL_OPTIONS"),
            Some(
                format!(
                    "-XX:MaxRAMPercentage=62.0 -XX:MinRAMPercentage=62.0 -XX:+HeapDumpOnOutOfMemoryError {HOOK} -Dapp=1 -XX:-ExitOnOutOfMemoryError"
                )
                .as_str()
            )
        );
        assert!(
            m.notes
                .iter()
                .any(|n| n.contains("own ExitOnOutOfMemoryError kept")),
            "{:?}",
            m.notes
        );
    }

    #[test]
    fn a_heap_in_the_environment_turns_our_memory_flags_off() {
        for env in [
            ("JAVA_TOOL_OPTIONS", "-Xmx300m"),
            ("JAVA_OPTS", "-XX:MaxRAMPercentage=80"),
            ("_JAVA_OPTIONS", "-Xms1g"),
        ] {
            let m = run(&plan(), &[env], true);
            let v = value(&m, "JAVA_TOOL_OPTIONS").unwrap();
            assert!(!v.contains("RAMPercentage=62"), "{env:?}: {v}");
            assert!(v.contains("-XX:+HeapDumpOnOutOfMemoryError"), "{v}");
            assert!(
                m.notes.iter().any(|n| n.starts_with("heap set by")),
                "{:?}",
                m.notes
            );
        }
    }

    #[test]
    fn the_command_line_counts_as_a_place() {
        let env = BTreeMap::<String, String>::new();
        let argv = strings(&["java", "-Xmx1g", "-jar", "app.jar"]);
        let m = merge(&plan(), &modern(), &|n| env.get(n).cloned(), &argv, true);
        assert!(!value(&m, "JAVA_TOOL_OPTIONS").unwrap().contains("MaxRAM"));
    }

    #[test]
    fn without_a_shell_the_hook_is_left_out() {
        let m = run(&plan(), &[], false);
        let v = value(&m, "JAVA_TOOL_OPTIONS").unwrap();
        assert!(!v.contains("-XX:OnOutOfMemoryError"), "{v}");
        assert!(v.contains("-XX:+ExitOnOutOfMemoryError"));
        assert!(
            m.notes.iter().any(|n| n.starts_with("no /bin/sh")),
            "{:?}",
            m.notes
        );
        assert!(value(&run(&plan(), &[], true), "JAVA_TOOL_OPTIONS")
            .unwrap()
            .contains(HOOK));
    }

    #[test]
    fn a_launcher_heap_variable_set_at_start_keeps_its_heap() {
        let mut plan = plan();
        plan.options.drain(0..2);
        plan.vars = strings(&["KAFKA_OPTS"]);
        plan.memory = Some((
            "KAFKA_HEAP_OPTS".into(),
            strings(&["-XX:MaxRAMPercentage=75.0"]),
        ));
        plan.heap_vars = strings(&["KAFKA_HEAP_OPTS"]);
        let m = run(&plan, &[], true);
        assert_eq!(
            value(&m, "KAFKA_HEAP_OPTS"),
            Some("-XX:MaxRAMPercentage=75.0")
        );
        let m = run(&plan, &[("KAFKA_HEAP_OPTS", "-Xmx2g -Xms2g")], true);
        assert_eq!(
            value(&m, "KAFKA_HEAP_OPTS"),
            None,
            "the image's heap stands"
        );
        assert!(value(&m, "KAFKA_OPTS")
            .unwrap()
            .contains("HeapDumpOnOutOfMemoryError"));
        // A bare size in a heap variable (ZooKeeper's ZOO_HEAP_SIZE=1024) sets the heap too.
        plan.heap_vars = strings(&["ZOO_HEAP_SIZE"]);
        plan.memory = None;
        plan.options.insert(0, "-XX:MaxRAMPercentage=75.0".into());
        let m = run(&plan, &[("ZOO_HEAP_SIZE", "1024")], true);
        assert!(!value(&m, "KAFKA_OPTS").unwrap().contains("MaxRAM"));
    }

    #[test]
    fn every_variable_of_a_multi_jvm_launcher_gets_the_flags() {
        let mut plan = plan();
        plan.vars = strings(&["SONAR_WEB_JAVAOPTS", "SONAR_CE_JAVAOPTS"]);
        let m = run(&plan, &[("SONAR_CE_JAVAOPTS", "-Xmx512m")], true);
        assert!(value(&m, "SONAR_WEB_JAVAOPTS").is_some());
        assert!(value(&m, "SONAR_CE_JAVAOPTS")
            .unwrap()
            .ends_with("-Xmx512m"));
    }

    #[test]
    fn an_old_jdk_gets_an_xmx_from_the_cgroup_limit_and_nothing_it_lacks() {
        let env = BTreeMap::<String, String>::new();
        let argv = strings(&["java", "-jar", "app.jar"]);
        let m = merge(
            &plan(),
            &jvm("1.8.0_77"),
            &|n| env.get(n).cloned(),
            &argv,
            true,
        );
        let v = value(&m, "JAVA_TOOL_OPTIONS").unwrap();
        assert_eq!(
            v,
            format!("-Xmx634m -XX:+HeapDumpOnOutOfMemoryError {HOOK}"),
            "{:?}",
            m.notes
        );
        assert_eq!(
            m.notes[0],
            "JDK 8u77 (/jdk/release): memory as -Xmx634m from the 1024 MiB limit, -XX:ExitOnOutOfMemoryError left out (not in this JDK)"
        );
        // The workload's own heap still wins over ours.
        let argv = strings(&["java", "-Xmx300m", "-jar", "app.jar"]);
        let m = merge(
            &plan(),
            &jvm("8u151"),
            &|n| env.get(n).cloned(),
            &argv,
            true,
        );
        let v = value(&m, "JAVA_TOOL_OPTIONS").unwrap();
        assert!(!v.contains("-Xmx"), "{v}");
        assert!(v.contains("-XX:+ExitOnOutOfMemoryError"), "{v}");
    }

    #[test]
    fn an_unknown_jdk_gets_what_every_jdk_since_8u92_takes() {
        let env = BTreeMap::<String, String>::new();
        let argv = strings(&["/app/run.sh"]);
        let unknown = Jvm {
            jdk: None,
            limit: Some(1 << 30),
        };
        let m = merge(&plan(), &unknown, &|n| env.get(n).cloned(), &argv, true);
        let v = value(&m, "JAVA_TOOL_OPTIONS").unwrap();
        assert!(
            v.starts_with("-Xmx634m -XX:+HeapDumpOnOutOfMemoryError"),
            "{v}"
        );
        assert!(v.ends_with("-XX:+ExitOnOutOfMemoryError"), "{v}");
        assert!(m.notes[0].starts_with("JDK not found"), "{:?}", m.notes);
        // A memory variable of its own (a launcher's heap variable) is translated too.
        let mut plan = plan();
        plan.options.drain(0..2);
        plan.memory = Some((
            "KAFKA_HEAP_OPTS".into(),
            strings(&["-XX:MaxRAMPercentage=50.0"]),
        ));
        let m = merge(&plan, &jvm("8u151"), &|n| env.get(n).cloned(), &argv, true);
        assert_eq!(value(&m, "KAFKA_HEAP_OPTS"), Some("-Xmx512m"));
    }

    #[test]
    fn nothing_to_merge_sets_nothing() {
        let m = run(
            &AgentEnv::default(),
            &[("JAVA_TOOL_OPTIONS", "-Dx=1")],
            true,
        );
        assert_eq!(m, Merged::default());
    }

    #[test]
    fn rotation_reports_what_it_kept_and_failures() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("java_pid1.hprof"), "x").unwrap();
        let dumps = Dumps {
            dir: dir.path().display().to_string(),
            keep: 2,
            container: "app".into(),
        };
        let note = rotate_dumps(&dumps, Some("orders-7d9f"), SystemTime::now(), true);
        assert!(
            note.ends_with(", orders-7d9f/app on the volume (1 kept)"),
            "{note}"
        );
        // Without a shell, room is left for the next dump: one kept of two.
        std::fs::write(dir.path().join("java_pid1.hprof"), "y").unwrap();
        let note = rotate_dumps(&dumps, None, SystemTime::now(), false);
        assert!(note.ends_with("(1 kept, 1 deleted)"), "{note}");
        let missing = Dumps {
            dir: "/nonexistent/jvm-guard".into(),
            ..dumps
        };
        let note = rotate_dumps(&missing, None, SystemTime::now(), true);
        assert!(note.contains("not rotated"), "{note}");
    }
}
