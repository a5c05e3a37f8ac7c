//! JVM option tokens, shared by both halves: how a value splits into options, the setting each
//! option controls, which options set the heap, and the merge rule (ours first, the user's after,
//! so theirs win). The webhook merges with it at admission; the agent at start, from the
//! environment the process really has. Also the agent's environment: what the webhook tells it.

pub mod agent_env;
mod heap;
pub mod jdk;
mod tokens;

pub use agent_env::{AgentEnv, Dumps};
pub use heap::{flag_in, heap_flag, heap_in, heap_var_sets, jvm_size};
pub use jdk::{for_jdk, ForJdk, JavaVersion, Jdk, Vm};
pub use tokens::{flag_key, merge, tokens, UserFlags};

/// Read by every HotSpot and OpenJ9 JVM, whatever launcher starts it.
pub const TOOL_OPTIONS: &str = "JAVA_TOOL_OPTIONS";
/// Other places users put flags; flags found there are not set again.
pub const USER_OPTION_VARS: [&str; 4] = [
    TOOL_OPTIONS,
    "JDK_JAVA_OPTIONS",
    "JAVA_OPTS",
    "_JAVA_OPTIONS",
];
