//! What the features know, gathered before any decides: the pod-level facts every target shares
//! (from the plan), and one container's (its env, launcher, flags, whether the agent starts it).

use std::sync::Arc;

use super::decision::{Command, Decision};
use super::env::{EnvView, VarState};
use super::launcher::Launch;
use super::pod::{Container, PodSpec};
use crate::config::profiles::Profile;
use crate::config::{Config, DumpConfig, Feature, Profiles, Switch};
use crate::options::{Jdk, UserFlags};

/// Pod-level facts every target shares, decided once by the plan.
pub struct PodFacts<'a> {
    pub spec: &'a PodSpec,
    /// Shared by the pods of a namespace that set none of our annotations.
    pub config: Arc<Config>,
    /// The dump configuration when the pod can take the dump volume, else why not (empty when
    /// the feature is off).
    pub dump: Result<DumpConfig, String>,
    /// The tools image when the pod can take the tools, else why not.
    pub tools: Result<String, String>,
    /// The launcher profiles (the server's).
    pub profiles: Arc<Profiles>,
}

/// What the features know of one target container.
pub struct Facts<'a> {
    pub container: &'a Container,
    pub pod: &'a PodFacts<'a>,
    /// The container's env, with the ConfigMaps and Secrets the caller knows.
    pub env: EnvView<'a>,
    /// The launcher profile the container matched.
    pub profile: Option<&'a Profile>,
    /// The variable our JVM flags go to, or why there is none.
    pub options_var: Result<&'a str, String>,
    /// What that variable holds, as admission sees it.
    pub options: Result<VarState, String>,
    /// Each place the JVM reads flags from: a variable's name and value, or `the command`.
    pub places: Vec<(String, String)>,
    /// The flags the container sets itself, wherever the JVM sees them.
    pub user: UserFlags,
    /// Whether the tools can reach this container, else why not.
    pub tools: Result<(), String>,
    /// The command the agent would start the container with, or why there is none (what
    /// ulimits then report).
    pub command: Result<Command, String>,
    /// Whether the agent starts the container: then our flags are merged at start, into the
    /// environment the process really has, and what admission cannot read is no reason to skip.
    pub agent: bool,
    /// How the container starts its JVM, as far as admission can tell.
    pub launch: Launch,
    /// The JDK the pod spec or the image name says the container runs, and what says so.
    pub jdk: Option<(Jdk, String)>,
    /// The container's memory limit in bytes, when it has a valid one.
    pub limit: Option<u64>,
}

/// A feature's switch, as far as its flags can reach the JVM.
pub enum Gate<'c, T> {
    On(&'c T),
    /// Off (an empty decision) or skipped, with the reason.
    Closed(Box<Decision>),
}

impl Facts<'_> {
    pub fn config(&self) -> &Config {
        &self.pod.config
    }

    pub fn name(&self) -> &str {
        &self.container.name
    }

    /// The feature's configuration when it is on and its flags can reach the JVM; else the
    /// decision that says why not.
    pub fn gate<'c, T>(&self, feature: Feature, switch: &'c Switch<T>) -> Gate<'c, T> {
        match (switch, &self.options) {
            (Switch::Off, _) => Gate::Closed(Box::default()),
            (Switch::Invalid, _) => Gate::Closed(Box::new(Decision::skipped(
                feature,
                "invalid configuration",
            ))),
            // The agent reads the variable at start, whatever its source.
            (Switch::On(cfg), Ok(VarState::Opaque(_))) if self.agent => Gate::On(cfg),
            (Switch::On(_), Err(reason) | Ok(VarState::Opaque(reason))) => {
                Gate::Closed(Box::new(Decision::skipped(feature, reason.clone())))
            }
            (Switch::On(cfg), _) => Gate::On(cfg),
        }
    }
}
