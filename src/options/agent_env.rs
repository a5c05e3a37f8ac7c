//! What the webhook tells the agent, in the container's environment (SPEC §4.4): our JVM
//! options and where they go, the launcher's heap variables, and the dump directory to rotate.
//! Both halves read and write it only through [`AgentEnv`].

use super::tokens::tokens;

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
            env.push((OPTIONS, self.options.join(" ")));
            env.push((OPTIONS_VAR, self.vars.join(",")));
        }
        if let Some((var, flags)) = &self.memory {
            env.push((MEMORY_OPTIONS, flags.join(" ")));
            env.push((MEMORY_VAR, var.clone()));
        }
        if !self.heap_vars.is_empty() {
            env.push((HEAP_VARS, self.heap_vars.join(",")));
        }
        if let Some(d) = &self.dumps {
            env.push((DUMP_DIR, d.dir.clone()));
            env.push((DUMP_KEEP, d.keep.to_string()));
            env.push((CONTAINER, d.container.clone()));
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
        let options = words(OPTIONS);
        let vars = list(OPTIONS_VAR);
        if !options.is_empty() && vars.is_empty() {
            return Err(format!(
                "{} is set but {} names no variable",
                OPTIONS, OPTIONS_VAR
            ));
        }
        let memory = match (get(MEMORY_VAR), words(MEMORY_OPTIONS)) {
            (Some(var), flags) if !var.trim().is_empty() && !flags.is_empty() => {
                Some((var.trim().to_string(), flags))
            }
            (None, flags) if !flags.is_empty() => {
                return Err(format!(
                    "{} is set but {} is not",
                    MEMORY_OPTIONS, MEMORY_VAR
                ))
            }
            _ => None,
        };
        let dumps = match get(DUMP_DIR).filter(|d| !d.trim().is_empty()) {
            None => None,
            Some(dir) => {
                let keep = match get(DUMP_KEEP) {
                    None => 3,
                    Some(k) => k
                        .trim()
                        .parse::<u32>()
                        .ok()
                        .filter(|k| *k >= 1)
                        .ok_or_else(|| {
                            format!("{}={k:?} is not a whole number of at least 1", DUMP_KEEP)
                        })?,
                };
                Some(Dumps {
                    dir,
                    keep,
                    container: get(CONTAINER).unwrap_or_else(|| "app".to_string()),
                })
            }
        };
        Ok(AgentEnv {
            options,
            vars,
            memory,
            heap_vars: list(HEAP_VARS),
            dumps,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let only_options = |n: &str| (n == OPTIONS).then(|| "-Xss1m".to_string());
        let e = AgentEnv::from_env(only_options).unwrap_err();
        assert!(e.contains(OPTIONS_VAR), "{e}");
        let bad_keep = |n: &str| match n {
            DUMP_DIR => Some("/dumps".to_string()),
            DUMP_KEEP => Some("0".to_string()),
            _ => None,
        };
        let e = AgentEnv::from_env(bad_keep).unwrap_err();
        assert!(e.contains(DUMP_KEEP), "{e}");
    }
}
