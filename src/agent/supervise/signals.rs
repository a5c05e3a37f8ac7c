//! Signals and children, with libc alone: every catchable signal is blocked and collected with
//! `sigtimedwait` between samples (no handler runs, no thread), forwarded to the child, and
//! every child that exits is reaped.
//!
//! As pid 1 of a pid namespace the kernel drops a signal whose action is the default; a blocked
//! one is never dropped (it stays pending until taken), and each also gets a handler that does
//! nothing, so none is lost before it is blocked or after. The child starts with an empty mask
//! and default actions: the standard library resets the mask before exec, and exec resets
//! handled signals.

use std::io;
use std::time::Duration;

/// Signals about this process itself (faults, its own writes to a closed pipe, its terminal),
/// never forwarded: a fault here is the agent's, and the container has no terminal.
const OWN: [libc::c_int; 11] = [
    libc::SIGPIPE,
    libc::SIGKILL,
    libc::SIGSTOP,
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGFPE,
    libc::SIGILL,
    libc::SIGTRAP,
    libc::SIGSYS,
    libc::SIGTTIN,
    libc::SIGTTOU,
];

/// Every signal the agent passes on: the standard ones but [`OWN`] and `SIGCHLD` (SIGTERM,
/// SIGINT, SIGHUP, SIGQUIT for thread dumps, SIGUSR1, SIGUSR2, SIGWINCH, ...), and the
/// real-time ones the C library leaves to programs.
pub fn forwarded() -> Vec<libc::c_int> {
    let standard = (1..32).filter(|s| !OWN.contains(s) && *s != libc::SIGCHLD);
    standard
        .chain(libc::SIGRTMIN()..=libc::SIGRTMAX())
        .collect()
}

extern "C" fn ignore(_: libc::c_int) {}

/// The signals blocked for [`wait`]: the forwarded ones and `SIGCHLD`.
pub struct Blocked {
    set: libc::sigset_t,
}

/// Blocks every forwarded signal and `SIGCHLD` in this (single-threaded) process and gives
/// each a handler that does nothing.
pub fn block() -> io::Result<Blocked> {
    // SAFETY: the set is initialised by sigemptyset before use; sigaction gets a valid struct
    // whose handler is an `extern "C" fn(c_int)`; the agent has no other thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in forwarded().into_iter().chain([libc::SIGCHLD]) {
            libc::sigaddset(&mut set, sig);
        }
        if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
        for sig in forwarded().into_iter().chain([libc::SIGCHLD]) {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = ignore as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            action.sa_flags = libc::SA_RESTART;
            // A signal the C library keeps for itself refuses a handler: it stays blocked.
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
        Ok(Blocked { set })
    }
}

impl Blocked {
    /// The next blocked signal, waiting at most `timeout`; `None` when none came.
    pub fn wait(&self, timeout: Duration) -> Option<libc::c_int> {
        let ts = libc::timespec {
            tv_sec: timeout.as_secs().min(i32::MAX as u64) as _,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `set` is initialised, `ts` valid, and a null info pointer is allowed.
        let sig = unsafe { libc::sigtimedwait(&self.set, std::ptr::null_mut(), &ts) };
        (sig > 0).then_some(sig)
    }
}

/// Sends `sig` to `pid`; a child already gone is no error worth reporting.
pub fn send(pid: u32, sig: libc::c_int) {
    // SAFETY: kill has no memory preconditions.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Makes orphans of the child's tree this process's children, also when it is not pid 1 (pid
/// 1 gets them anyway), so that they are reaped.
pub fn become_subreaper() {
    // SAFETY: prctl with an integer argument.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0);
    }
}

/// Reaps every child that has exited; the wait status of `child`, if it is among them.
pub fn reap(child: u32) -> Option<i32> {
    let mut found = None;
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid int to write to.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return found;
        }
        if pid as u32 == child {
            found = Some(status);
        }
    }
}

/// How a wait status ends: an exit code, or the signal that killed the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Exited(i32),
    Killed(i32),
}

impl Ended {
    pub fn from_wait_status(status: i32) -> Ended {
        if libc::WIFSIGNALED(status) {
            Ended::Killed(libc::WTERMSIG(status))
        } else {
            Ended::Exited(libc::WEXITSTATUS(status))
        }
    }

    /// The agent's own exit code for it: the code, or 128 + the signal, as a shell says it.
    pub fn exit_code(self) -> i32 {
        match self {
            Ended::Exited(code) => code,
            Ended::Killed(sig) => 128 + sig,
        }
    }
}

/// `SIGKILL`, `SIGTERM`, or `signal 40`.
pub fn name(sig: i32) -> String {
    let known = [
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGQUIT, "SIGQUIT"),
        (libc::SIGILL, "SIGILL"),
        (libc::SIGTRAP, "SIGTRAP"),
        (libc::SIGABRT, "SIGABRT"),
        (libc::SIGBUS, "SIGBUS"),
        (libc::SIGFPE, "SIGFPE"),
        (libc::SIGKILL, "SIGKILL"),
        (libc::SIGUSR1, "SIGUSR1"),
        (libc::SIGSEGV, "SIGSEGV"),
        (libc::SIGUSR2, "SIGUSR2"),
        (libc::SIGPIPE, "SIGPIPE"),
        (libc::SIGALRM, "SIGALRM"),
        (libc::SIGTERM, "SIGTERM"),
    ];
    match known.iter().find(|(s, _)| *s == sig) {
        Some((_, n)) => n.to_string(),
        None => format!("signal {sig}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_exit_codes_as_a_shell_says_them() {
        // Wait statuses as the kernel encodes them: code << 8, or the signal number.
        assert_eq!(Ended::from_wait_status(3 << 8), Ended::Exited(3));
        assert_eq!(Ended::from_wait_status(0), Ended::Exited(0));
        assert_eq!(Ended::from_wait_status(9), Ended::Killed(9));
        // A core dump sets bit 7; the signal is still the low bits.
        assert_eq!(Ended::from_wait_status(6 | 0x80), Ended::Killed(6));
        assert_eq!(Ended::Exited(3).exit_code(), 3);
        assert_eq!(Ended::Killed(libc::SIGKILL).exit_code(), 137);
        assert_eq!(Ended::Killed(libc::SIGTERM).exit_code(), 143);
        assert_eq!(name(libc::SIGKILL), "SIGKILL");
        assert_eq!(name(40), "signal 40");
    }

    #[test]
    fn every_catchable_signal_but_faults_is_forwarded() {
        let f = forwarded();
        for sig in [
            libc::SIGTERM,
            libc::SIGINT,
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGUSR1,
            libc::SIGUSR2,
            libc::SIGWINCH,
            libc::SIGCONT,
            libc::SIGTSTP,
            libc::SIGRTMIN(),
            libc::SIGRTMAX(),
        ] {
            assert!(f.contains(&sig), "{sig}");
        }
        for sig in [
            libc::SIGKILL,
            libc::SIGSTOP,
            libc::SIGCHLD,
            libc::SIGSEGV,
            libc::SIGPIPE,
        ] {
            assert!(!f.contains(&sig), "{sig}");
        }
    }
}
