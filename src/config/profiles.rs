//! Launcher profiles (SPEC §4.7): what a launcher does with JVM options, as data. The built-in
//! table is `profiles.yaml` beside this file, each entry citing the launcher lines it encodes;
//! the defaults file's `profiles:` extends it or overrides entries by name.

use std::sync::{Arc, OnceLock};

use super::matcher::Matcher;
pub use super::matcher::{By, Evidence};

use serde::Deserialize;

/// The built-in table, checked by a unit test and at first use.
const BUILT_IN: &str = include_str!("profiles.yaml");

/// One launcher.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Profile {
    pub name: String,
    /// The launcher behaviour this entry encodes, with its source (required for built-ins).
    #[serde(default)]
    pub cite: String,
    #[serde(rename = "match")]
    pub evidence: Evidence,
    /// The variable our JVM flags go to; `None`: `JAVA_TOOL_OPTIONS`.
    #[serde(default)]
    pub options: Option<String>,
    /// More variables that get the same flags: launchers that start several JVMs, each from
    /// its own variable (SonarQube's web and compute-engine processes).
    #[serde(default)]
    pub also_options: Vec<String>,
    /// What the launcher does with `JAVA_TOOL_OPTIONS`.
    #[serde(default)]
    pub java_tool_options: ToolOptionsUse,
    #[serde(default)]
    pub heap: Heap,
    /// The launcher runs the user's own application (a runtime such as Paketo's, UBI's or
    /// Tomcat), so a framework probe preset may apply given that framework's evidence; else it
    /// is a product with its own endpoints, never probed by a preset.
    #[serde(default)]
    pub generic: bool,
    /// A variable the launcher builds `-XX:HeapDumpPath` from: set to the dump directory
    /// instead of our flag (which the launcher's would override).
    #[serde(default)]
    pub dump_dir_var: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ToolOptionsUse {
    /// The JVM reads it as usual.
    #[default]
    Honoured,
    /// The launcher unsets or strips it before starting the JVM.
    Dropped,
}

/// Who sizes the heap under this launcher.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Heap {
    /// Variables whose non-empty value sets the heap (a bare number is MiB, as the launchers
    /// that take one read it).
    #[serde(default)]
    pub vars: Vec<String>,
    /// The heap the launcher sets when those are empty (e.g. `-Xmx1G -Xms1G`).
    #[serde(default)]
    pub default: Option<String>,
    /// Where our memory flags replace that default (a variable whose emptiness triggers it);
    /// without it the default stands and `memory` is skipped.
    #[serde(default)]
    pub memory_var: Option<String>,
    /// The launcher computes the heap itself whatever is set (skipped, with its reason).
    #[serde(default)]
    pub sized_by_launcher: Option<String>,
    /// Of `vars`, those whose bare number is MiB (`ZOO_HEAP_SIZE=1024`).
    #[serde(default)]
    pub megabytes: Vec<String>,
    /// Memory outside the heap that the launcher gives the product itself (a page cache, a
    /// native data region): added to the non-heap reserve when `max-ram-percentage` is `auto`.
    #[serde(default)]
    pub off_heap: Option<OffHeap>,
}

/// Off-heap memory a launcher sizes: from a variable when the container sets it (a JVM size,
/// `512m`), else its default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OffHeap {
    #[serde(default)]
    pub var: Option<String>,
    /// The launcher's size when `var` is not set (a JVM size).
    #[serde(default)]
    pub default: Option<String>,
}

/// The profiles in matching order: the defaults file's first, then the built-in ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profiles {
    list: Vec<Profile>,
    /// Their evidence, compiled once.
    matcher: Matcher,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("profiles[{index}]{name}: {message}")]
pub struct ProfileError {
    pub index: usize,
    /// ` (NAME)` when the entry has one.
    pub name: String,
    pub message: String,
}

fn is_env_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl Profile {
    /// Field checks serde cannot make; `Err` names the field.
    fn check(&self, built_in: bool) -> Result<(), String> {
        let name_ok = !self.name.is_empty()
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok || matches!(self.name.as_str(), "auto" | "none") {
            return Err(
                "name: expected lowercase letters, digits and '-', not auto or none".into(),
            );
        }
        if built_in && self.cite.trim().is_empty() {
            return Err("cite: a built-in profile cites the launcher behaviour it encodes".into());
        }
        let e = &self.evidence;
        if e.images.is_empty() && e.env.is_empty() && e.commands.is_empty() {
            return Err("match: needs images, env or commands".into());
        }
        for (field, values) in [("match.images", &e.images), ("match.commands", &e.commands)] {
            if let Some(v) = values
                .iter()
                .find(|v| v.trim().is_empty() || v.contains(' '))
            {
                return Err(format!("{field}: {v:?} is empty or has a space"));
            }
        }
        if let Some(v) = e
            .env
            .iter()
            .find(|v| !is_env_name(v.strip_suffix('*').unwrap_or(v)))
        {
            return Err(format!("match.env: {v:?} is not a variable name"));
        }
        let vars = [
            ("options", &self.options),
            ("heap.memory-var", &self.heap.memory_var),
            ("dump-dir-var", &self.dump_dir_var),
        ];
        for (field, var) in vars {
            if let Some(v) = var.as_deref().filter(|v| !is_env_name(v)) {
                return Err(format!("{field}: {v:?} is not a variable name"));
            }
        }
        if let Some(v) = self.also_options.iter().find(|v| !is_env_name(v)) {
            return Err(format!("also-options: {v:?} is not a variable name"));
        }
        if !self.also_options.is_empty() && self.options.is_none() {
            return Err("also-options: needs options".into());
        }
        if let Some(v) = self.heap.vars.iter().find(|v| !is_env_name(v)) {
            return Err(format!("heap.vars: {v:?} is not a variable name"));
        }
        if let Some(v) = self
            .heap
            .megabytes
            .iter()
            .find(|v| !self.heap.vars.contains(v))
        {
            return Err(format!("heap.megabytes: {v:?} is not in heap.vars"));
        }
        if let Some(off) = &self.heap.off_heap {
            if let Some(v) = off.var.as_deref().filter(|v| !is_env_name(v)) {
                return Err(format!("heap.off-heap.var: {v:?} is not a variable name"));
            }
            let size = off.default.as_deref();
            if let Some(d) = size.filter(|d| crate::options::jvm_size(d).is_none()) {
                return Err(format!(
                    "heap.off-heap.default: {d:?} is not a size like 512m"
                ));
            }
            if off.var.is_none() && off.default.is_none() {
                return Err("heap.off-heap: needs var or default".into());
            }
        }
        Ok(())
    }
}

fn parse_list(text: &str, built_in: bool) -> Result<Vec<Profile>, ProfileError> {
    let entries: Vec<serde_yaml::Value> = serde_yaml::from_str(text).map_err(|e| ProfileError {
        index: 0,
        name: String::new(),
        message: format!("not a list of profiles: {e}"),
    })?;
    let mut out: Vec<Profile> = Vec::new();
    for (index, entry) in entries.into_iter().enumerate() {
        let name = entry
            .get("name")
            .and_then(serde_yaml::Value::as_str)
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        let error = |message: String| ProfileError {
            index,
            name: name.clone(),
            message,
        };
        // The path names the field: `heap.memory-var: invalid type ...`.
        let profile: Profile = serde_path_to_error::deserialize(entry).map_err(|e| {
            let path = e.path().to_string();
            match path.as_str() {
                "." | "" => error(e.into_inner().to_string()),
                _ => error(format!("{path}: {}", e.into_inner())),
            }
        })?;
        profile.check(built_in).map_err(&error)?;
        if out.iter().any(|p| p.name == profile.name) {
            return Err(error("name: defined twice".into()));
        }
        out.push(profile);
    }
    Ok(out)
}

impl Profiles {
    /// The built-in table alone.
    pub fn built_in() -> Arc<Profiles> {
        static TABLE: OnceLock<Arc<Profiles>> = OnceLock::new();
        TABLE
            .get_or_init(|| {
                let list = parse_list(BUILT_IN, true).expect("the built-in profiles are valid");
                Arc::new(Profiles::new(list))
            })
            .clone()
    }

    /// The built-in table with the defaults file's `profiles:` (a YAML list): an entry named
    /// like a built-in one replaces it, the others are tried first.
    pub fn with_overrides(text: &str) -> Result<Profiles, ProfileError> {
        let mut own = parse_list(text, false)?;
        let built_in = Profiles::built_in();
        let mut rest: Vec<Profile> = Vec::new();
        for profile in &built_in.list {
            match own.iter().position(|p| p.name == profile.name) {
                Some(i) => rest.push(own.remove(i)),
                None => rest.push(profile.clone()),
            }
        }
        own.extend(rest);
        Ok(Profiles::new(own))
    }

    fn new(list: Vec<Profile>) -> Profiles {
        let matcher = Matcher::new(list.iter().map(|p| &p.evidence));
        Profiles { list, matcher }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Profile> {
        self.list.iter()
    }

    pub fn get(&self, name: &str) -> Option<&Profile> {
        self.list.iter().find(|p| p.name == name)
    }

    /// The profile a container's evidence points at (see [`Matcher::best`]): its image
    /// repository, the programs it runs, the variables it sets; and by what.
    pub fn matching(
        &self,
        repository: &str,
        programs: &[String],
        env: &[String],
    ) -> Option<(&Profile, By)> {
        let (i, by) = self.matcher.best(repository, programs, env)?;
        Some((self.list.get(i)?, by))
    }
}

impl Default for Profiles {
    fn default() -> Self {
        Profiles::built_in().as_ref().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_table_is_valid_and_cites_every_entry() {
        let table = Profiles::built_in();
        assert!(table.iter().count() >= 20);
        for p in table.iter() {
            assert!(p.cite.len() > 40, "{} cites its launcher", p.name);
        }
    }

    #[test]
    fn overrides_replace_by_name_and_new_entries_come_first() {
        let text = "- name: kafka\n  match: {images: [mycorp/kafka]}\n- name: inhouse\n  match: {commands: [/opt/run-app]}\n  options: APP_JVM_OPTS\n";
        let p = Profiles::with_overrides(text).unwrap();
        let names: Vec<&str> = p.iter().map(|p| p.name.as_str()).take(1).collect();
        assert_eq!(names, ["inhouse"]);
        assert_eq!(p.get("kafka").unwrap().evidence.images, ["mycorp/kafka"]);
        assert_eq!(p.iter().count(), Profiles::built_in().iter().count() + 1);
    }

    #[test]
    fn errors_name_the_entry_and_the_field() {
        let cases = [
            ("- name: a\n  match: {images: [x]}\n  optins: X\n", "profiles[0] (a): optins: unknown field `optins`"),
            ("- name: a\n  match: {}\n", "profiles[0] (a): match: needs images, env or commands"),
            ("- name: a\n  match: {env: [A]}\n- name: b\n  match: {env: [B]}\n  options: 'X Y'\n", "profiles[1] (b): options: \"X Y\" is not a variable name"),
            ("- name: a\n  match: {env: [A]}\n- name: a\n  match: {env: [B]}\n", "profiles[1] (a): name: defined twice"),
            ("- name: Auto\n  match: {env: [A]}\n", "profiles[0] (Auto): name: expected"),
            ("- name: a\n  match: {env: [A]}\n  java-tool-options: maybe\n", "profiles[0] (a): java-tool-options: unknown variant `maybe`"),
        ];
        for (text, expected) in cases {
            let err = Profiles::with_overrides(text).unwrap_err().to_string();
            assert!(err.starts_with(expected), "{err}\n  expected {expected}");
        }
    }
}
