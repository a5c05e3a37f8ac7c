//! `jvm-guard exec`, the agent's entry (docs/agent.md#the-agent-jvm-guard-exec): rotates the
//! dumps, merges the JVM options ([`super::start`]), sets resource limits, prints one line,
//! then either replaces itself with the application (execvp: no fork, no shell), so the
//! application keeps the pid and receives signals directly, or, supervising, starts it as its
//! child ([`super::supervise`]).

use std::ffi::OsString;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::SystemTime;

use super::cgroup::{self, Roots};
use super::{jdk, start};
use crate::config::rlimit::{Limit, Resource, Rlimit};
use crate::options::{agent_env, AgentEnv, Dumps};

fn raw(limit: Limit) -> libc::rlim_t {
    match limit {
        Limit::Value(v) => v as libc::rlim_t,
        Limit::Unlimited => libc::RLIM_INFINITY,
    }
}

fn shown(v: libc::rlim_t) -> String {
    if v == libc::RLIM_INFINITY {
        "unlimited".into()
    } else {
        v.to_string()
    }
}

macro_rules! with_resource {
    ($r:expr, |$id:ident| $body:expr) => {
        match $r {
            Resource::Nofile => {
                let $id = libc::RLIMIT_NOFILE;
                $body
            }
            Resource::Nproc => {
                let $id = libc::RLIMIT_NPROC;
                $body
            }
            Resource::Core => {
                let $id = libc::RLIMIT_CORE;
                $body
            }
            Resource::Memlock => {
                let $id = libc::RLIMIT_MEMLOCK;
                $body
            }
            Resource::Stack => {
                let $id = libc::RLIMIT_STACK;
                $body
            }
        }
    };
}

/// Current (soft, hard) limits of a resource.
pub fn get(resource: Resource) -> io::Result<(libc::rlim_t, libc::rlim_t)> {
    let mut cur = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `cur` is a valid, writable rlimit.
    let rc = with_resource!(resource, |id| unsafe { libc::getrlimit(id, &mut cur) });
    if rc == 0 {
        Ok((cur.rlim_cur, cur.rlim_max))
    } else {
        Err(io::Error::last_os_error())
    }
}

fn set(resource: Resource, soft: libc::rlim_t, hard: libc::rlim_t) -> io::Result<()> {
    let new = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: `new` is a valid rlimit read by the call.
    let rc = with_resource!(resource, |id| unsafe { libc::setrlimit(id, &new) });
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets a limit; one it may not raise is lowered to what is allowed. Returns what was set, or
/// the problem when the limit could not be set as asked.
pub fn apply(limit: &Rlimit) -> Result<String, String> {
    let name = limit.resource.name();
    let (soft, hard) = (raw(limit.soft), raw(limit.hard));
    let err = match set(limit.resource, soft, hard) {
        Ok(()) => return Ok(format!("{name} {}:{}", limit.soft, limit.hard)),
        Err(e) => e,
    };
    let fallback = get(limit.resource).and_then(|(_, allowed)| {
        let hard = hard.min(allowed);
        let soft = soft.min(hard);
        set(limit.resource, soft, hard).map(|()| (soft, hard))
    });
    Err(match fallback {
        Ok((s, h)) => format!(
            "{name}={}:{} not allowed ({err}); set {name}={}:{}",
            limit.soft,
            limit.hard,
            shown(s),
            shown(h)
        ),
        Err(e) => format!("{name}={}:{} not set: {e}", limit.soft, limit.hard),
    })
}

/// The application's command, ready to run, and what the agent knows of it.
#[derive(Debug)]
pub struct Prepared {
    pub command: Command,
    /// The variables the agent set for it (merged JVM options).
    pub set: Vec<(String, String)>,
    /// The container's dump directory, when the webhook gave one.
    pub dumps: Option<Dumps>,
    /// Whether HotSpot can run the OutOfMemoryError hook (`/bin/sh` exists).
    pub shell: bool,
}

/// Does what the webhook asked for in the environment, applies every limit and reports in one
/// stderr line; the command is left to run (`Err` when there is none).
pub fn prepare(limits: &[Rlimit], command: &[OsString]) -> io::Result<Prepared> {
    let Some((program, args)) = command.split_first() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no command to run",
        ));
    };
    let mut notes: Vec<String> = Vec::new();
    let mut cmd = Command::new(program);
    cmd.args(args);
    let var = |name: &str| std::env::var(name).ok();
    let shell = start::has_shell();
    let mut prepared_dumps = None;
    let mut set = Vec::new();
    match AgentEnv::from_env(var) {
        Err(e) => notes.push(format!("{e}; JVM options not merged")),
        Ok(plan) => {
            if let Some(dumps) = &plan.dumps {
                // Where the directory is on the volume: `<namespace>/<pod>` on a shared one.
                let pod = match (var(agent_env::POD_NAMESPACE), var(agent_env::POD_NAME)) {
                    (Some(ns), Some(pod)) => Some(format!("{ns}/{pod}")),
                    (_, pod) => pod,
                };
                let now = SystemTime::now();
                notes.push(start::rotate_dumps(dumps, pod.as_deref(), now, shell));
            }
            let argv: Vec<String> = command
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            let jvm = start::Jvm {
                jdk: jdk::find(&argv, &var),
                limit: cgroup::memory_limit(&Roots::default())
                    .ok()
                    .and_then(|l| l.limit_bytes),
            };
            let merged = start::merge(&plan, &jvm, &var, &argv, shell);
            for (name, value) in &merged.set {
                cmd.env(name, value);
            }
            set = merged.set;
            notes.splice(0..0, merged.notes);
            prepared_dumps = plan.dumps;
        }
    }
    for limit in limits {
        notes.push(match apply(limit) {
            Ok(set) => set,
            Err(problem) => problem,
        });
    }
    if notes.is_empty() {
        notes.push("nothing to do".to_string());
    }
    eprintln!("jvm-guard: {}", notes.join("; "));
    Ok(Prepared {
        command: cmd,
        set,
        dumps: prepared_dumps,
        shell,
    })
}

/// [`prepare`]s, then executes the command in this process; returns only if that failed.
pub fn run(limits: &[Rlimit], command: &[OsString]) -> io::Error {
    match prepare(limits, command) {
        Ok(mut prepared) => prepared.command.exec(),
        Err(e) => e,
    }
}
