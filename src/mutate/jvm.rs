//! JVM options at admission: the exit-on-oom flag; the token rules themselves (flag names, the
//! merge) are shared with the agent in [`crate::options`].

/// Exit (code 3) so the kubelet restarts the container instead of leaving a broken JVM.
pub fn exit_on_oom_flags() -> Vec<String> {
    vec!["-XX:+ExitOnOutOfMemoryError".to_string()]
}
