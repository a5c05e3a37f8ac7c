//! JVM options at admission: the exit-on-oom and jvm-options features, and the warning when
//! none of our flags can reach the JVM. The token rules themselves (flag names, the merge) are
//! shared with the agent in [`crate::options`].

use super::decision::Decision;
use super::env::VarState;
use super::facts::{Facts, Gate};
use crate::config::Feature;
use crate::options::TOOL_OPTIONS;

/// Exit (code 3) so the kubelet restarts the container instead of leaving a broken JVM.
pub fn exit_on_oom_flags() -> Vec<String> {
    vec!["-XX:+ExitOnOutOfMemoryError".to_string()]
}

/// The exit-on-oom feature: its flag, unless the container sets it.
pub fn exit_on_oom(facts: &Facts<'_>) -> Decision {
    match facts.gate(Feature::ExitOnOom, &facts.config().exit_on_oom) {
        Gate::Closed(d) => *d,
        Gate::On(()) => flags(Feature::ExitOnOom, exit_on_oom_flags(), facts),
    }
}

/// The jvm-options feature: the configured options the container does not set itself.
pub fn jvm_options(facts: &Facts<'_>) -> Decision {
    match facts.gate(Feature::JvmOptions, &facts.config().jvm_options) {
        Gate::Closed(d) => *d,
        Gate::On(tokens) => flags(Feature::JvmOptions, tokens.clone(), facts),
    }
}

fn flags(feature: Feature, tokens: Vec<String>, facts: &Facts<'_>) -> Decision {
    let mut d = Decision::default();
    d.add_flags(feature, tokens, &facts.user);
    d
}

/// The warning when the JVM features (decided in `jvm`) were skipped because their variable
/// cannot be merged into at admission, and the agent does not start the container.
pub fn not_injected(facts: &Facts<'_>, jvm: &Decision) -> Option<String> {
    if !jvm.skips_any() || facts.agent {
        return None;
    }
    let name = facts.name();
    match &facts.options {
        Err(reason) => Some(format!(
            "container {name}: {reason}; JVM flags not injected"
        )),
        Ok(VarState::Opaque(reason)) => {
            let var = facts.options_var.as_deref().unwrap_or(TOOL_OPTIONS);
            Some(format!(
                "container {name}: {reason}; JVM flags not injected (set {var} as a literal env value to let jvm-guard merge into it)"
            ))
        }
        Ok(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;
    use serde_json::{json, Value};

    use super::*;
    use crate::mutate::decision::Outcome;
    use crate::mutate::testing::{pod, with_facts, with_namespace_facts};

    fn skipped(feature: Feature, reason: &str) -> Vec<(Feature, Outcome)> {
        let reason = reason.to_string();
        vec![(feature, Outcome::Skipped { reason })]
    }

    #[rstest]
    #[case::added(json!({}), json!([]), &["-XX:+ExitOnOutOfMemoryError"], vec![(Feature::ExitOnOom, Outcome::Applied)])]
    #[case::off(json!({"jvm-guard.io/exit-on-oom": "false"}), json!([]), &[], vec![])]
    #[case::set_by_the_container(
        json!({}), json!([{"name": "JAVA_OPTS", "value": "-XX:-ExitOnOutOfMemoryError"}]), &[],
        skipped(Feature::ExitOnOom, "already set by the container")
    )]
    fn exit_on_oom_flag(
        #[case] annotations: Value,
        #[case] env: Value,
        #[case] tokens: &[&str],
        #[case] outcomes: Vec<(Feature, Outcome)>,
    ) {
        let c = json!({"name": "a", "image": "corp/app:1", "env": env});
        let d = with_facts(pod(annotations, c), true, exit_on_oom);
        assert_eq!(d.env.tokens, tokens);
        assert_eq!(d.outcomes, outcomes);
    }

    #[rstest]
    #[case::off(json!({}), &[], vec![])]
    #[case::added(
        json!({"jvm-guard.io/jvm-options": "-Xss2m -XX:+UseG1GC"}), &["-XX:+UseG1GC"],
        vec![(Feature::JvmOptions, Outcome::Applied)]
    )]
    #[case::all_set_by_the_container(
        json!({"jvm-guard.io/jvm-options": "-Xss2m"}), &[],
        skipped(Feature::JvmOptions, "already set by the container")
    )]
    fn jvm_options_leave_out_what_the_container_sets(
        #[case] namespace: Value,
        #[case] tokens: &[&str],
        #[case] outcomes: Vec<(Feature, Outcome)>,
    ) {
        let env = json!([{"name": "JAVA_TOOL_OPTIONS", "value": "-Xss1m"}]);
        let c = json!({"name": "a", "image": "corp/app:1", "env": env});
        let d = with_namespace_facts(namespace, pod(json!({}), c), true, jvm_options);
        assert_eq!(d.env.tokens, tokens);
        assert_eq!(d.outcomes, outcomes);
    }

    #[rstest]
    #[case::literal(json!([]), false, None)]
    #[case::opaque(
        json!([{"name": "JAVA_TOOL_OPTIONS", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}]), false,
        Some("container a: JAVA_TOOL_OPTIONS is set from valueFrom; JVM flags not injected (set JAVA_TOOL_OPTIONS as a literal env value to let jvm-guard merge into it)")
    )]
    #[case::the_agent_reads_it(
        json!([{"name": "JAVA_TOOL_OPTIONS", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}]), true, None
    )]
    fn flags_that_cannot_reach_the_jvm_are_reported(
        #[case] env: Value,
        #[case] command: bool,
        #[case] warning: Option<&str>,
    ) {
        let mut c = json!({"name": "a", "image": "corp/app:1", "env": env});
        if command {
            c["command"] = json!(["java", "-jar", "app.jar"]);
        }
        let warned = with_facts(pod(json!({}), c), true, |f| {
            let jvm = Decision::merge([exit_on_oom(f), jvm_options(f)]);
            not_injected(f, &jvm)
        });
        assert_eq!(warned.as_deref(), warning);
    }
}
