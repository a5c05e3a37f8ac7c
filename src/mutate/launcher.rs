//! The launcher a container starts through (SPEC §4.7): the profile its evidence matches and the
//! variable our flags go to.

use super::decision::{Decision, Outcome};
use super::env::EnvView;
use super::pod::Container;
use super::{image, shell};
use crate::config::profiles::{By, Profile, ToolOptionsUse};
use crate::config::{Feature, ProfileChoice, Profiles};
use crate::options::TOOL_OPTIONS;

/// The profile for a container: the one named, none, or the best evidence (first on a tie).
pub fn select<'p>(
    container: &Container,
    env: &EnvView<'_>,
    choice: &ProfileChoice,
    profiles: &'p Profiles,
) -> Option<&'p Profile> {
    match choice {
        ProfileChoice::None => None,
        ProfileChoice::Named(name) => profiles.get(name),
        ProfileChoice::Auto => {
            let image = container.image.as_deref().unwrap_or_default();
            let programs = shell::programs(env.argv());
            let names = env.names();
            let (best, by) = profiles.matching(image::repository(image), &programs, &names)?;
            // A variable alone (a shared ConfigMap's SPARK_HOME) does not make a container the
            // profile's when its command is another launcher than the profile names.
            let conflicts =
                by == By::Env && !programs.is_empty() && !best.evidence.commands.is_empty();
            (!conflicts).then_some(best)
        }
    }
}

/// Whether a command line runs `java`: as a program it starts (directly, through a wrapper, in
/// a script it gives a shell), or as the command an entrypoint script is handed to `exec`
/// (`docker-entrypoint.sh java -jar app.jar`, the official images' pattern).
pub fn runs_java(argv: &[&String]) -> bool {
    let java = |p: &str| p == "java" || p.ends_with("/java");
    let handed = argv.iter().skip(1).any(|a| java(a));
    handed
        || shell::programs(argv.iter().copied())
            .iter()
            .any(|p| java(p))
}

/// How a container starts its JVM, as far as admission can tell: what decides whether a flag
/// of ours reaches it unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launch {
    /// `java` is the command, directly, through a wrapper or by `exec` in a script we read.
    Java,
    /// A launcher with a profile: it says what the launcher does with our flags.
    Profile,
    /// A program we have no profile for (`/opt/app/bin/start.sh`): it may set its own heap or
    /// dump path on the java command line.
    Script(String),
    /// No command, and the image's is not known.
    Unknown,
}

/// How the container starts (`argv` as [`EnvView::argv`] gives it), under `profile`.
pub fn launch(env: &EnvView<'_>, profile: Option<&Profile>) -> Launch {
    if runs_java(&env.argv()) {
        return Launch::Java;
    }
    let programs = shell::programs(env.argv());
    if profile.is_some() {
        return Launch::Profile;
    }
    if !env.program_known() {
        // `args` alone run under the image's ENTRYPOINT, which nobody looked at.
        return Launch::Unknown;
    }
    // The launcher is what the shells and wrappers start: `bash -c "exec /opt/app/run.sh"` is
    // started by run.sh.
    let launcher = programs
        .iter()
        .find(|p| !shell::is_shell(p))
        .or(programs.first());
    match launcher {
        Some(first) => Launch::Script(first.clone()),
        None => Launch::Unknown,
    }
}

/// Why what our flags set may not be what the JVM gets, for a launch that is neither `java`
/// nor a profiled launcher.
pub fn unverified_reason(launch: &Launch) -> Option<String> {
    match launch {
        Launch::Java | Launch::Profile => None,
        Launch::Script(program) => Some(format!(
            "started by {program}, a launcher jvm-guard has no profile for: it may set its own heap or dump path"
        )),
        Launch::Unknown => Some(
            "no command in the pod, and the image's is not known: its launcher may set its own heap or dump path"
                .to_string(),
        ),
    }
}

/// `d`, one JVM feature's decision for container `name`, with what it sets in the JVM's heap
/// or dump path (`memory`, `heap-dump`) unverified when `launch` may override it: passed on,
/// and the agent's line and `inspect` show what the JVM got (docs/design.md#status).
pub fn fit(launch: &Launch, name: &str, mut d: Decision) -> Decision {
    let Some(reason) = unverified_reason(launch) else {
        return d;
    };
    let mut unverified = Vec::new();
    for (feature, outcome) in &mut d.outcomes {
        if !MAY_BE_OVERRIDDEN.contains(feature) {
            continue;
        }
        // The launcher's doubt comes first: it is what may override the flag whatever the JDK.
        let reason = match outcome {
            Outcome::Applied => reason.clone(),
            Outcome::Unverified { reason: earlier } => format!("{reason}; and {earlier}"),
            Outcome::Skipped { .. } => continue,
        };
        *outcome = Outcome::Unverified { reason };
        unverified.push(feature.name());
    }
    if !unverified.is_empty() {
        d.warn(format!(
            "container {name}: {reason}; {} unverified (the agent's line and `jvm-guard inspect` show what the JVM got)",
            unverified.join(", ")
        ));
    }
    d
}

/// The features a launcher may override with options of its own.
const MAY_BE_OVERRIDDEN: [Feature; 2] = [Feature::Memory, Feature::HeapDump];

/// Where our JVM flags go under `profile`: its options variable, else `JAVA_TOOL_OPTIONS`;
/// `Err` when the launcher drops `JAVA_TOOL_OPTIONS` and offers no variable.
pub fn options_var(profile: Option<&Profile>) -> Result<&str, String> {
    match profile {
        None => Ok(TOOL_OPTIONS),
        Some(p) => match (&p.options, p.java_tool_options) {
            (Some(var), _) => Ok(var),
            (None, ToolOptionsUse::Honoured) => Ok(TOOL_OPTIONS),
            (None, ToolOptionsUse::Dropped) => Err(format!(
                "the {} launcher drops {TOOL_OPTIONS} and reads no other variable",
                p.name
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    /// A table of one profile with `images` and `commands`, compiled as the server's is.
    fn matcher(images: &[&str], commands: &[&str]) -> crate::config::matcher::Matcher {
        let list = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        let evidence = crate::config::profiles::Evidence {
            images: list(images),
            commands: list(commands),
            env: Vec::new(),
        };
        crate::config::matcher::Matcher::new([&evidence])
    }

    fn image_matches(pattern: &str, image: &str) -> bool {
        let m = matcher(&[pattern], &[]);
        m.best(image::repository(image), &[], &[]).is_some()
    }

    fn command_matches(pattern: &str, program: &str) -> bool {
        let m = matcher(&[], &[pattern]);
        m.best("", &[program.to_string()], &[]).is_some()
    }

    #[rstest]
    #[case("bitnami/kafka", "docker.io/bitnami/kafka:3.9.0-debian-12-r4", true)]
    #[case("bitnami/kafka", "bitnami/kafka", true)]
    #[case("bitnami/kafka", "registry.local:5000/bitnami/kafka@sha256:abc", true)]
    #[case("kafka", "bitnami/kafka:3", true)]
    #[case("bitnami/kafka", "bitnami/kafka-exporter:1", false)]
    #[case("confluentinc/cp-kafka", "confluentinc/cp-kafka-connect:7", false)]
    #[case("paketobuildpacks/*", "paketobuildpacks/builder:base", true)]
    #[case(
        "ubi9/openjdk-*",
        "registry.access.redhat.com/ubi9/openjdk-21:1.20",
        true
    )]
    #[case(
        "elasticsearch/elasticsearch",
        "docker.elastic.co/elasticsearch/elasticsearch:8.5.1",
        true
    )]
    fn images(#[case] pattern: &str, #[case] image: &str, #[case] expected: bool) {
        assert_eq!(
            image_matches(pattern, image),
            expected,
            "{pattern} ~ {image}"
        );
    }

    #[test]
    fn commands_match_by_path_or_name() {
        assert!(command_matches(
            "/etc/confluent/docker/run",
            "/etc/confluent/docker/run"
        ));
        assert!(command_matches(
            "kafka-server-start.sh",
            "/opt/kafka/bin/kafka-server-start.sh"
        ));
        assert!(!command_matches("/opt/kafka/bin/x", "x"));
    }
}
