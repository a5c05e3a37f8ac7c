//! What one feature decides for one container, as data: the JVM flags and env it adds, its
//! mounts, probes and command, each feature's outcome, and the warnings. The driver
//! (`container`) merges the decisions and writes the patch once.

use k8s_openapi::api::core::v1::{EnvVar, Probe, VolumeMount};

use crate::config::Feature;
use crate::options::UserFlags;

/// How a feature ended for a container, as the status reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// Passed on, but whether it takes effect is decided where admission cannot see (the
    /// reason says what).
    Unverified {
        reason: String,
    },
    Skipped {
        reason: String,
    },
}

/// What a container uses of the pod-level parts, so the pod gets the volumes and the init
/// container once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Uses {
    pub dump: bool,
    pub tools: bool,
}

/// The env edits of a container, written in one go.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnvEdits {
    /// Our flags for the options variable, merged before the user's own.
    pub tokens: Vec<String>,
    /// Our memory flags, when they go to a variable of their own (the profile's memory
    /// variable, replacing the launcher's default heap).
    pub memory: Option<(String, Vec<String>)>,
    /// Variables set whole (a launcher's dump-directory variable, the agent's instructions).
    pub set_env: Vec<EnvVar>,
    /// Variables inserted at the front of the env (they must precede their users).
    pub prepend_env: Vec<EnvVar>,
}

impl EnvEdits {
    /// Whether there are JVM flags to merge somewhere.
    pub fn has_flags(&self) -> bool {
        !self.tokens.is_empty() || self.memory.is_some()
    }
}

/// A container's new `command`, and its `args` when they must be set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub command: Vec<String>,
    pub args: Option<Vec<String>>,
}

/// What features decided for a container; several merge into one ([`Decision::merge`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    /// Each feature decided on, in the order they were.
    pub outcomes: Vec<(Feature, Outcome)>,
    pub warnings: Vec<String>,
    pub env: EnvEdits,
    pub mounts: Vec<VolumeMount>,
    /// The probes to add, by container field (`startupProbe`, ...).
    pub probes: Vec<(&'static str, Probe)>,
    /// The command the agent starts the container with.
    pub command: Option<Command>,
    pub uses: Uses,
}

impl Decision {
    /// Nothing but `feature` skipped for `reason`.
    pub fn skipped(feature: Feature, reason: impl Into<String>) -> Decision {
        let mut d = Decision::default();
        d.skip(feature, reason);
        d
    }

    pub fn apply(&mut self, feature: Feature) {
        self.outcomes.push((feature, Outcome::Applied));
    }

    pub fn skip(&mut self, feature: Feature, reason: impl Into<String>) {
        let reason = reason.into();
        self.outcomes.push((feature, Outcome::Skipped { reason }));
    }

    pub fn warn(&mut self, warning: impl Into<String>) {
        self.warnings.push(warning.into());
    }

    /// Whether any feature was skipped.
    pub fn skips_any(&self) -> bool {
        let mut outcomes = self.outcomes.iter();
        outcomes.any(|(_, o)| matches!(o, Outcome::Skipped { .. }))
    }

    /// Keeps the flags the container does not set itself; `feature` is applied if any is left.
    pub fn add_flags(&mut self, feature: Feature, flags: Vec<String>, user: &UserFlags) {
        let new: Vec<String> = flags.into_iter().filter(|t| !user.sets(t)).collect();
        if new.is_empty() {
            self.skip(feature, "already set by the container");
        } else {
            self.apply(feature);
            self.env.tokens.extend(new);
        }
    }

    /// The decisions in order, as one: lists are concatenated (our flags keep the order of the
    /// features), the memory variable and the command are the first given, uses add up.
    pub fn merge(decisions: impl IntoIterator<Item = Decision>) -> Decision {
        // Into the first one's lists: most of a merge is one decision's (no copy, no growth).
        let mut decisions = decisions.into_iter();
        let Some(mut out) = decisions.next() else {
            return Decision::default();
        };
        for d in decisions {
            out.outcomes.extend(d.outcomes);
            out.warnings.extend(d.warnings);
            out.env.tokens.extend(d.env.tokens);
            out.env.memory = out.env.memory.or(d.env.memory);
            out.env.set_env.extend(d.env.set_env);
            out.env.prepend_env.extend(d.env.prepend_env);
            out.mounts.extend(d.mounts);
            out.probes.extend(d.probes);
            out.command = out.command.or(d.command);
            out.uses.dump |= d.uses.dump;
            out.uses.tools |= d.uses.tools;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    fn flags(feature: Feature, tokens: &[&str]) -> Decision {
        let mut d = Decision::default();
        d.apply(feature);
        d.env.tokens = tokens.iter().map(|t| t.to_string()).collect();
        d
    }

    #[test]
    fn merge_keeps_the_order_of_features() {
        let mut memory = flags(Feature::Memory, &["-XX:MaxRAMPercentage=75"]);
        memory.warn("m");
        memory.uses.dump = false;
        let mut dumps = flags(Feature::HeapDump, &["-XX:+HeapDumpOnOutOfMemoryError"]);
        dumps.uses = Uses {
            dump: true,
            tools: true,
        };
        dumps.warn("d");
        let probes = Decision::skipped(Feature::Probes, "own probes");
        let merged = Decision::merge([memory, dumps, probes]);
        assert_eq!(
            merged.env.tokens,
            ["-XX:MaxRAMPercentage=75", "-XX:+HeapDumpOnOutOfMemoryError"]
        );
        assert_eq!(merged.warnings, ["m", "d"]);
        let features: Vec<Feature> = merged.outcomes.iter().map(|(f, _)| *f).collect();
        assert_eq!(
            features,
            [Feature::Memory, Feature::HeapDump, Feature::Probes]
        );
        assert!(merged.skips_any());
        assert_eq!(
            merged.uses,
            Uses {
                dump: true,
                tools: true
            }
        );
    }

    #[rstest]
    #[case::all_new(&[], &["-XX:+ExitOnOutOfMemoryError"], true)]
    #[case::user_sets_it(&["-XX:+ExitOnOutOfMemoryError"], &[], false)]
    #[case::user_sets_the_opposite(&["-XX:-ExitOnOutOfMemoryError"], &[], false)]
    fn flags_the_container_sets_are_left_out(
        #[case] user: &[&str],
        #[case] expected: &[&str],
        #[case] applied: bool,
    ) {
        let user = UserFlags::new([user.join(" ").as_str()]);
        let mut d = Decision::default();
        d.add_flags(
            Feature::ExitOnOom,
            vec!["-XX:+ExitOnOutOfMemoryError".into()],
            &user,
        );
        assert_eq!(d.env.tokens, expected);
        let outcome = match applied {
            true => Outcome::Applied,
            false => Outcome::Skipped {
                reason: "already set by the container".into(),
            },
        };
        assert_eq!(d.outcomes, [(Feature::ExitOnOom, outcome)]);
    }
}
