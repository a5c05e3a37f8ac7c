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
        Gate::Closed(d) => d,
        Gate::On(()) => flags(Feature::ExitOnOom, exit_on_oom_flags(), facts),
    }
}

/// The jvm-options feature: the configured options the container does not set itself.
pub fn jvm_options(facts: &Facts<'_>) -> Decision {
    match facts.gate(Feature::JvmOptions, &facts.config().jvm_options) {
        Gate::Closed(d) => d,
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
