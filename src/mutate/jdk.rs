//! The JDK at admission (docs/design.md#jdk): what the pod spec and the image name say of the
//! JDK a container runs, and each JVM feature's flags fitted to it where admission merges them.
//! With the agent they go as decided: it reads the `release` file of the JVM it starts and
//! fits them there, for certain.

use super::decision::{Decision, Outcome};
use super::env::EnvView;
use super::facts::Facts;
use super::pod::Container;
use crate::options::jdk::{self, BASELINE};
use crate::options::{for_jdk, JavaVersion, Jdk, Vm};

/// The JDK a container runs as the pod spec says it (a literal `JAVA_VERSION`), else as the
/// image name does; with the evidence, for the status and warnings.
pub fn known(container: &Container, env: &EnvView<'_>) -> Option<(Jdk, String)> {
    let from_env = env.var("JAVA_VERSION").value().and_then(|v| {
        let version = JavaVersion::parse(v)?;
        let jdk = Jdk {
            version,
            vm: Vm::HotSpot,
        };
        Some((jdk, format!("JAVA_VERSION={}", v.trim())))
    });
    from_env.or_else(|| {
        let image = container.image.as_deref()?;
        Some((jdk::from_image(image)?, format!("the image {image}")))
    })
}

/// `d`, one feature's decision, with its flags as the container's JVM takes them when admission
/// merges them: for the JDK admission knows, else for the oldest we support (8u92: the RAM
/// percentages become an `-Xmx` of the memory limit). A feature whose every flag the JDK lacks
/// is skipped; one whose flags were translated for a JDK nobody knows is unverified.
pub fn fit(facts: &Facts<'_>, mut d: Decision) -> Decision {
    if facts.agent || !d.env.has_flags() {
        return d;
    }
    let (jdk, who) = match &facts.jdk {
        Some((jdk, from)) => (jdk, format!("{jdk} ({from})")),
        None => (&BASELINE, "the JDK".to_string()),
    };
    let tokens = for_jdk(jdk, &d.env.tokens, facts.limit);
    let mut notes = tokens.notes;
    let mut left_out = tokens.left_out;
    d.env.tokens = tokens.tokens;
    if let Some((var, flags)) = d.env.memory.take() {
        let memory = for_jdk(jdk, &flags, facts.limit);
        notes.extend(memory.notes);
        left_out.extend(memory.left_out);
        d.env.memory = Some((var, memory.tokens)).filter(|(_, f)| !f.is_empty());
    }
    if notes.is_empty() {
        return d;
    }
    let name = facts.name();
    let notes = notes.join(", ");
    let reason = if !d.env.has_flags() {
        let lacks = left_out
            .iter()
            .map(|o| format!("-XX:{o}"))
            .collect::<Vec<_>>()
            .join(", ");
        let reason = match &facts.jdk {
            Some(_) => format!("{who} has no {lacks}"),
            None => format!("{notes} (the JDK is not known at admission)"),
        };
        let features = d.outcomes.iter().filter(|(_, o)| *o == Outcome::Applied);
        let features: Vec<&str> = features.map(|(f, _)| f.name()).collect();
        d.warn(format!(
            "container {name}: {reason}; {} skipped",
            features.join(", ")
        ));
        reason
    } else if facts.jdk.is_none() {
        let reason =
            format!("the JDK is not known at admission and no agent starts the container: {notes}");
        d.warn(format!(
            "container {name}: {reason}; give the image's JAVA_VERSION in the container's env, or let the agent start it, to be sure"
        ));
        reason
    } else {
        d.warn(format!("container {name}: {who}: {notes}"));
        return d;
    };
    let everything = !d.env.has_flags();
    for (_, outcome) in &mut d.outcomes {
        if *outcome == Outcome::Applied {
            *outcome = match everything {
                true => Outcome::Skipped {
                    reason: reason.clone(),
                },
                false => Outcome::Unverified {
                    reason: reason.clone(),
                },
            };
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use rstest::rstest;
    use serde_json::{json, Value};

    use super::*;
    use crate::config::Feature;
    use crate::mutate::testing::{pod, with_facts};

    fn decision(feature: Feature, tokens: &[&str]) -> Decision {
        let mut d = Decision::default();
        d.apply(feature);
        d.env.tokens = tokens.iter().map(|t| t.to_string()).collect();
        d
    }

    fn container(image: &str, env: Value) -> Value {
        json!({
            "name": "a", "image": image, "env": env,
            "resources": {"limits": {"memory": "1Gi"}},
        })
    }

    #[rstest]
    #[case::the_image_tag_says_8u151(
        container("openjdk:8u151-jre", json!([])),
        Feature::Memory, &["-XX:MaxRAMPercentage=62.0", "-XX:MinRAMPercentage=62.0"],
        &["-Xmx634m"], Outcome::Applied
    )]
    #[case::the_env_says_8u77(
        container("corp/app:1", json!([{"name": "JAVA_VERSION", "value": "1.8.0_77"}])),
        Feature::ExitOnOom, &["-XX:+ExitOnOutOfMemoryError"],
        &[], Outcome::Skipped { reason: "JDK 8u77 (JAVA_VERSION=1.8.0_77) has no -XX:ExitOnOutOfMemoryError".into() }
    )]
    #[case::unknown(
        container("corp/app:1", json!([])),
        Feature::Memory, &["-XX:MaxRAMPercentage=62.0", "-XX:MinRAMPercentage=62.0"],
        &["-Xmx634m"], Outcome::Unverified { reason: "the JDK is not known at admission and no agent starts the container: memory as -Xmx634m from the 1024 MiB limit".into() }
    )]
    #[case::unknown_takes_exit_on_oom(
        container("corp/app:1", json!([])),
        Feature::ExitOnOom, &["-XX:+ExitOnOutOfMemoryError"],
        &["-XX:+ExitOnOutOfMemoryError"], Outcome::Applied
    )]
    #[case::modern(
        container("eclipse-temurin:21-jre", json!([])),
        Feature::Memory, &["-XX:MaxRAMPercentage=62.0", "-XX:MinRAMPercentage=62.0"],
        &["-XX:MaxRAMPercentage=62.0", "-XX:MinRAMPercentage=62.0"], Outcome::Applied
    )]
    fn flags_fitted_at_admission(
        #[case] container: Value,
        #[case] feature: Feature,
        #[case] ours: &[&str],
        #[case] fitted: &[&str],
        #[case] outcome: Outcome,
    ) {
        with_facts(pod(json!({}), container), false, |facts| {
            assert!(!facts.agent);
            let d = fit(facts, decision(feature, ours));
            assert_eq!(d.env.tokens, fitted);
            assert_eq!(d.outcomes, [(feature, outcome.clone())]);
        });
    }

    #[test]
    fn with_the_agent_the_flags_go_as_decided() {
        let container = json!({
            "name": "a", "image": "openjdk:8u151-jre", "command": ["java", "-jar", "a.jar"],
            "resources": {"limits": {"memory": "1Gi"}},
        });
        with_facts(pod(json!({}), container), true, |facts| {
            assert!(facts.agent);
            let ours = ["-XX:MaxRAMPercentage=62.0"];
            let d = fit(facts, decision(Feature::Memory, &ours));
            assert_eq!(d.env.tokens, ours);
        });
    }
}
