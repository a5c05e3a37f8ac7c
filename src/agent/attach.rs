//! The HotSpot attach protocol on Linux, as the JDK's `jcmd` and jattach speak it, so a running
//! JVM can be asked for a heap dump in an image with no JDK tools (distroless included).
//!
//! 1. The JVM listens on `/tmp/.java_pid<pid>` once its attach listener runs. To start it, a
//!    caller creates `.attach_pid<pid>` in the JVM's working directory (or `/tmp`) and sends
//!    `SIGQUIT`; the JVM sees the file and opens the socket.
//! 2. A request is `1\0`, the command `\0`, then three arguments, each `\0`-terminated.
//! 3. The reply is the result code on the first line, then the command's output.
//!
//! The JVM only answers a caller with its own effective uid and gid (or root), checked on the
//! file and on the socket's peer credentials: `kubectl exec` runs as the container's user.
//! Paths go through `/proc/<pid>/root` and `<pid>` is the JVM's pid in its own namespace
//! (`NSpid`), so this also works from another pid namespace.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("no process {0}")]
    NoProcess(u32),
    #[error(
        "cannot signal the JVM (pid {pid}): {source}; the attach protocol needs the JVM's own user"
    )]
    Signal { pid: u32, source: io::Error },
    #[error(
        "the JVM (pid {pid}) did not open its attach socket {socket} within {waited:?}: it may \
         run with -XX:+DisableAttachMechanism or -Xrs, or not be a HotSpot JVM"
    )]
    NoListener {
        pid: u32,
        socket: PathBuf,
        waited: Duration,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("the JVM answered {command:?} with code {code}: {output}")]
    Refused {
        command: String,
        code: i32,
        output: String,
    },
}

/// How long the JVM may take to open its socket after `SIGQUIT`.
pub const LISTENER_WAIT: Duration = Duration::from_secs(10);

/// Sends `command` with up to three `args` to the JVM `pid` and returns its output when the
/// result code is 0. `reply_timeout` bounds the wait for the reply (a heap dump of a large heap
/// takes a while).
pub fn execute(
    proc: &Path,
    pid: u32,
    command: &str,
    args: &[&str],
    reply_timeout: Duration,
) -> Result<String, AttachError> {
    assert!(args.len() <= 3, "the protocol carries three arguments");
    let dir = proc.join(pid.to_string());
    let ns_pid = ns_pid(&dir).ok_or(AttachError::NoProcess(pid))?;
    let socket = dir.join("root/tmp").join(format!(".java_pid{ns_pid}"));
    if !is_socket(&socket) {
        start_listener(&dir, pid, ns_pid, &socket)?;
    }
    let io = |what: &str| {
        let what = format!("{what} {}", socket.display());
        move |source| AttachError::Io { what, source }
    };
    let mut stream = UnixStream::connect(&socket).map_err(io("connecting to"))?;
    stream
        .set_read_timeout(Some(reply_timeout))
        .map_err(io("setting a timeout on"))?;
    let mut request = b"1\0".to_vec();
    for part in std::iter::once(command).chain(args.iter().copied()) {
        request.extend_from_slice(part.as_bytes());
        request.push(0);
    }
    request.resize(request.len() + 3 - args.len(), 0);
    stream.write_all(&request).map_err(io("writing to"))?;
    let mut reply = Vec::new();
    stream
        .take(1 << 20)
        .read_to_end(&mut reply)
        .map_err(io("reading the reply from"))?;
    let reply = String::from_utf8_lossy(&reply);
    let (code, output) = reply.split_once('\n').unwrap_or((&reply, ""));
    let code: i32 = code.trim().parse().map_err(|_| AttachError::Refused {
        command: command.into(),
        code: -1,
        output: reply.trim().to_string(),
    })?;
    // Some commands (dumpheap among them) print their own status line after the code.
    if code != 0 {
        return Err(AttachError::Refused {
            command: command.into(),
            code,
            output: output.trim().to_string(),
        });
    }
    Ok(output.to_string())
}

/// The pid in the process's own namespace: the last `NSpid` field (`Pid` on kernels before 4.1).
fn ns_pid(dir: &Path) -> Option<u32> {
    let status = std::fs::read_to_string(dir.join("status")).ok()?;
    let line = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().last()?.parse().ok())
    };
    line("NSpid:").or_else(|| line("Pid:"))
}

fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// Creates the trigger file, sends `SIGQUIT` and waits for the socket; removes the file.
fn start_listener(dir: &Path, pid: u32, ns_pid: u32, socket: &Path) -> Result<(), AttachError> {
    let name = format!(".attach_pid{ns_pid}");
    let candidates = [
        dir.join("cwd").join(&name),
        dir.join("root/tmp").join(&name),
    ];
    let mut last = None;
    let trigger = candidates.iter().find(|path| {
        match std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
        {
            Ok(_) => true,
            Err(e) => {
                last = Some(e);
                false
            }
        }
    });
    let Some(trigger) = trigger else {
        return Err(AttachError::Io {
            what: format!(
                "creating {} (and {})",
                candidates[0].display(),
                candidates[1].display()
            ),
            source: last.expect("an error for each candidate"),
        });
    };
    let result = signal_and_wait(pid, socket);
    let _ = std::fs::remove_file(trigger);
    result
}

fn signal_and_wait(pid: u32, socket: &Path) -> Result<(), AttachError> {
    // SAFETY: kill(2) with a pid and a signal number has no memory effects.
    if unsafe { libc::kill(pid as libc::pid_t, libc::SIGQUIT) } != 0 {
        return Err(AttachError::Signal {
            pid,
            source: io::Error::last_os_error(),
        });
    }
    let start = Instant::now();
    let mut pause = Duration::from_millis(20);
    while start.elapsed() < LISTENER_WAIT {
        std::thread::sleep(pause);
        if is_socket(socket) {
            return Ok(());
        }
        pause = (pause * 2).min(Duration::from_millis(500));
    }
    Err(AttachError::NoListener {
        pid,
        socket: socket.to_path_buf(),
        waited: LISTENER_WAIT,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pid_is_read_in_the_processs_own_namespace() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("status"),
            "Name:\tjava\nPid:\t4242\nNSpid:\t4242\t1\n",
        )
        .unwrap();
        assert_eq!(ns_pid(dir.path()), Some(1));
        std::fs::write(dir.path().join("status"), "Name:\tjava\nPid:\t77\n").unwrap();
        assert_eq!(ns_pid(dir.path()), Some(77));
    }

    #[test]
    fn a_process_that_is_gone_is_named() {
        let proc = tempfile::tempdir().unwrap();
        let e = execute(proc.path(), 99, "properties", &[], Duration::from_secs(1)).unwrap_err();
        assert!(matches!(e, AttachError::NoProcess(99)), "{e}");
    }
}
