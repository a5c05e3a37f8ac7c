//! The launcher profiles' evidence, compiled once per configuration: exact image repositories,
//! program paths and names and variable names in hash maps, the few patterns with `*` in lists.
//! Matching a container then costs a lookup per image suffix, program and variable, not a
//! comparison with every pattern of every profile.

use serde::Deserialize;

/// What a container must show for the profile to match (any one of them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    /// Image repositories, registry optional (`bitnami/kafka` matches
    /// `docker.io/bitnami/kafka:3.9`); `*` matches within a path segment.
    #[serde(default)]
    pub images: Vec<String>,
    /// Env variable names (`KC_*`: a prefix).
    #[serde(default)]
    pub env: Vec<String>,
    /// Programs in `command`/`args` or in a shell script they run: a full path, or a name
    /// matched against a path's last component.
    #[serde(default)]
    pub commands: Vec<String>,
}

/// `*` matches within one path segment.
pub fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            text.starts_with(head)
                && text.len() >= head.len() + tail.len()
                && !text[head.len()..text.len() - tail.len()].contains('/')
                && text.ends_with(tail)
        }
    }
}

/// The last segment of a path: `/opt/java/bin/java` → `java`.
fn base(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Patterns of one kind: exact ones by key, the first profile (in matching order) that has
/// each; the ones with `*`, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Patterns {
    exact: foldhash::HashMap<String, usize>,
    globs: Vec<(String, usize)>,
}

impl Patterns {
    fn add(&mut self, pattern: &str, profile: usize) {
        if pattern.contains('*') {
            self.globs.push((pattern.to_string(), profile));
        } else {
            self.exact.entry(pattern.to_string()).or_insert(profile);
        }
    }

    /// The first profile whose pattern matches `text` (`matches` for the globs).
    fn first(&self, text: &str, matches: impl Fn(&str, &str) -> bool) -> Option<usize> {
        let exact = self.exact.get(text).copied();
        let globbed = self.globs.iter().filter(|(p, _)| matches(p, text));
        exact.into_iter().chain(globbed.map(|(_, i)| *i)).min()
    }
}

/// What a profile was matched by, strongest last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum By {
    Env,
    Command,
    Image,
}

/// Every profile's evidence, compiled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matcher {
    /// Image repositories, by their pattern (one or more trailing path segments).
    images: Patterns,
    /// The most segments an image pattern has.
    image_segments: usize,
    /// Programs named by a path (`/opt/kafka/bin/kafka-server-start.sh`) ...
    command_paths: Patterns,
    /// ... or by a name, matched against a path's last component.
    command_names: Patterns,
    /// Variable names, and prefixes (`KC_*`).
    env: Patterns,
}

impl Matcher {
    /// The evidence of each profile, in matching order.
    pub fn new<'e>(profiles: impl IntoIterator<Item = &'e Evidence>) -> Matcher {
        let mut m = Matcher::default();
        for (i, evidence) in profiles.into_iter().enumerate() {
            for image in &evidence.images {
                m.images.add(image, i);
                m.image_segments = m.image_segments.max(image.split('/').count());
            }
            for command in &evidence.commands {
                match command.contains('/') {
                    true => m.command_paths.add(command, i),
                    false => m.command_names.add(command, i),
                }
            }
            for var in &evidence.env {
                m.env.add(var, i);
            }
        }
        m
    }

    /// The profile a container's evidence points at, by index: the first with an image
    /// match (its repository, registry optional), else the first a program it runs names,
    /// else the first one of its variables names.
    pub fn best(
        &self,
        repository: &str,
        programs: &[String],
        env: &[String],
    ) -> Option<(usize, By)> {
        // The repository's last n segments, n = 1, 2, ...: suffixes of it, no copies.
        let starts = std::iter::once(repository.len() + 1)
            .chain(repository.rmatch_indices('/').map(|(i, _)| i + 1))
            .skip(1)
            .chain(std::iter::once(0));
        let by_image = (starts.take(self.image_segments).enumerate())
            .filter_map(|(i, start)| {
                let n = i + 1;
                self.images.first(&repository[start..], |pattern, text| {
                    pattern.split('/').count() == n && glob(pattern, text)
                })
            })
            .min();
        if let Some(i) = by_image {
            return Some((i, By::Image));
        }
        let by_command = programs
            .iter()
            .filter_map(|program| {
                let path = self.command_paths.first(program, glob);
                let name = self.command_names.first(base(program), glob);
                path.into_iter().chain(name).min()
            })
            .min();
        if let Some(i) = by_command {
            return Some((i, By::Command));
        }
        let prefix = |pattern: &str, name: &str| {
            pattern
                .strip_suffix('*')
                .is_some_and(|prefix| name.starts_with(prefix))
        };
        let by_env = env.iter().filter_map(|n| self.env.first(n, prefix)).min();
        by_env.map(|i| (i, By::Env))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(images: &[&str], commands: &[&str], env: &[&str]) -> Evidence {
        let list = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        Evidence {
            images: list(images),
            commands: list(commands),
            env: list(env),
        }
    }

    fn strings(l: &[&str]) -> Vec<String> {
        l.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn image_beats_command_beats_env_and_the_first_wins_a_tie() {
        let m = Matcher::new(&[
            profile(
                &["bitnami/kafka"],
                &["/opt/bitnami/scripts/kafka/run.sh"],
                &["KAFKA_CFG_*"],
            ),
            profile(
                &["kafka", "apache/kafka"],
                &["kafka-server-start.sh"],
                &["KAFKA_HEAP_OPTS"],
            ),
            profile(&["confluentinc/cp-*"], &[], &["KAFKA_HEAP_OPTS"]),
        ]);
        let none: &[String] = &[];
        let image = |i| Some((i, By::Image));
        assert_eq!(m.best("docker.io/bitnami/kafka", none, none), image(0));
        assert_eq!(
            m.best("registry.local:5000/apache/kafka", none, none),
            image(1)
        );
        assert_eq!(m.best("kafka", none, none), image(1));
        assert_eq!(m.best("confluentinc/cp-kafka", none, none), image(2));
        assert_eq!(
            m.best("confluentinc/cp-kafka/x", none, none),
            None,
            "* stays in a segment"
        );
        let programs = strings(&["/bin/sh", "/opt/kafka/bin/kafka-server-start.sh"]);
        assert_eq!(
            m.best("corp/broker", &programs, none),
            Some((1, By::Command))
        );
        let env = strings(&["KAFKA_HEAP_OPTS", "KAFKA_CFG_NODE_ID"]);
        assert_eq!(
            m.best("corp/broker", none, &env),
            Some((0, By::Env)),
            "the first profile's prefix"
        );
        let heap = strings(&["KAFKA_HEAP_OPTS"]);
        assert_eq!(m.best("corp/broker", none, &heap), Some((1, By::Env)));
        assert_eq!(
            m.best("corp/app", &strings(&["java"]), &strings(&["X"])),
            None
        );
    }
}
