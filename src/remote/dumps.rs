//! `jvm-guard dumps list|pull|take`: a container's heap dumps and crash logs, brought to the
//! workstation through the binary already in the container (`agent-dumps`, `agent::dumps`).
//!
//! A pull is written to `.<name>.partial-<pid>` next to the destination and only linked to its
//! final name once the whole file arrived and its SHA-256, computed in the container, matches
//! the one computed here; any failure removes the partial file. An existing file is never
//! overwritten.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::agent::dumps::{hex, Listing, SendLine, Sent, Taken};
use crate::agent::inspect::DumpKind;

use super::exec::{self, Target};
use super::{container_state, RemoteError, TOOLS_BINARY};

#[derive(Debug, thiserror::Error)]
pub enum DumpsError {
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error("{0} exists; not overwritten (choose another with -o)")]
    Exists(PathBuf),
    #[error("{what} {path}: {source}")]
    Local {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{target} has no heap dump{}", .dir.as_ref().map(|d| format!(" in {}", d.display())).unwrap_or_default())]
    NoDump {
        target: String,
        dir: Option<PathBuf>,
    },
    #[error(
        "container {container} restarted during the transfer (restarts {before} -> {after}); \
         nothing was written to {dest}"
    )]
    Restarted {
        container: String,
        before: i32,
        after: i32,
        dest: PathBuf,
    },
    #[error("pod {pod} went away during the transfer; nothing was written to {dest}")]
    PodGone { pod: String, dest: PathBuf },
    #[error("the transfer of {name} failed: {why}; nothing was written to {dest}")]
    Transfer {
        name: String,
        why: String,
        dest: PathBuf,
    },
    #[error("in the container: {0}")]
    InContainer(String),
}

/// The container's dump directory, listed in the container.
pub async fn list(target: &Target) -> Result<Listing, DumpsError> {
    let out = collect(target, &[TOOLS_BINARY, "agent-dumps", "list"]).await?;
    serde_json::from_slice(&out).map_err(|e| {
        DumpsError::InContainer(format!(
            "agent-dumps list printed no listing ({e}): {}",
            String::from_utf8_lossy(&out)
        ))
    })
}

/// A live heap dump of the container's JVM, in its dump directory.
pub async fn take(target: &Target, all: bool) -> Result<Taken, DumpsError> {
    let mut command = vec![
        TOOLS_BINARY,
        "agent-dumps",
        "take",
        "--container",
        &target.container,
    ];
    if all {
        command.push("--all");
    }
    let out = collect(target, &command).await?;
    serde_json::from_slice(&out).map_err(|e| {
        DumpsError::InContainer(format!(
            "agent-dumps take printed no result ({e}): {}",
            String::from_utf8_lossy(&out)
        ))
    })
}

/// Runs an `agent-dumps` command whose stdout is small, and returns it when it succeeded.
async fn collect(target: &Target, command: &[&str]) -> Result<Vec<u8>, DumpsError> {
    let (out, ended) = exec::collect(target, command).await?;
    if ended.succeeded() {
        Ok(out)
    } else {
        Err(DumpsError::InContainer(not_guarded_hint(ended.why())))
    }
}

fn not_guarded_hint(why: String) -> String {
    if why.contains(TOOLS_BINARY) && (why.contains("no such file") || why.contains("not found")) {
        format!("{why} (is the container guarded by jvm-guard, with its tools?)")
    } else {
        why
    }
}

/// The newest complete heap dump of a listing.
pub fn newest_heap_dump(listing: &Listing) -> Option<&str> {
    listing
        .files
        .iter()
        .find(|f| f.kind == DumpKind::HeapDump && f.complete != Some(false))
        .map(|f| f.name.as_str())
}

#[derive(Debug)]
pub struct Pulled {
    pub path: PathBuf,
    pub bytes: u64,
    /// On the wire (gzip).
    pub compressed: u64,
    pub sha256: String,
    pub elapsed: Duration,
}

/// Removes the partial file unless the pull completed.
struct Partial {
    path: PathBuf,
    done: bool,
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Writes what it is given to the file and hashes it.
struct Hashing {
    file: std::io::BufWriter<std::fs::File>,
    sha: ring::digest::Context,
    bytes: u64,
}

impl Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.sha.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Brings `name` (of `bytes`, for the progress line) to `dest`.
pub async fn pull(
    target: &Target,
    name: &str,
    bytes: u64,
    dest: &Path,
    progress: bool,
) -> Result<Pulled, DumpsError> {
    if dest.symlink_metadata().is_ok() {
        return Err(DumpsError::Exists(dest.to_path_buf()));
    }
    let before = super::get(&target.pods, &target.namespace, &target.pod).await?;
    let before = container_state(&before, &target.container);
    let file_name = dest
        .file_name()
        .map_or_else(|| name.to_string(), |n| n.to_string_lossy().into_owned());
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let partial = Partial {
        path: dir.join(format!(".{file_name}.partial-{}", std::process::id())),
        done: false,
    };
    let local = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| DumpsError::Local { what, path, source }
    };
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&partial.path)
        .map_err(local("creating", &partial.path))?;
    let mut gz = flate2::write::GzDecoder::new(Hashing {
        file: std::io::BufWriter::with_capacity(1 << 20, file),
        sha: ring::digest::Context::new(&ring::digest::SHA256),
        bytes: 0,
    });
    let start = Instant::now();
    let mut compressed = 0u64;
    let mut shown = Instant::now();
    let show = progress && std::io::stderr().is_terminal();
    let command = [TOOLS_BINARY, "agent-dumps", "send", name];
    let ran = exec::run(target, &command, |chunk| {
        compressed += chunk.len() as u64;
        gz.write_all(chunk)?;
        if show && shown.elapsed() >= Duration::from_millis(200) {
            shown = Instant::now();
            progress_line(name, gz.get_ref().bytes, bytes, start.elapsed());
        }
        Ok(())
    })
    .await;
    if show {
        eprint!("\r\x1b[K");
    }
    let ended = match ran {
        Ok(ended) => ended,
        Err(RemoteError::Sink(e)) => {
            return Err(local("writing", &partial.path)(e));
        }
        Err(e) => return Err(explain(target, before, dest, name, e.to_string(), true).await),
    };
    let sent = ended
        .stderr
        .lines()
        .rev()
        .find_map(|l| match serde_json::from_str(l) {
            Ok(SendLine::Sent(sent)) => Some(sent),
            _ => None,
        });
    let Some(Sent {
        bytes: sent_bytes,
        sha256,
    }) = sent.filter(|_| ended.succeeded())
    else {
        let why = not_guarded_hint(ended.why());
        return Err(explain(target, before, dest, name, why, ended.killed()).await);
    };
    let mut hashing = gz
        .finish()
        .map_err(local("decompressing into", &partial.path))?;
    hashing.flush().map_err(local("writing", &partial.path))?;
    let here = hex(hashing.sha.finish().as_ref());
    if hashing.bytes != sent_bytes || here != sha256 {
        return Err(DumpsError::Transfer {
            name: name.into(),
            why: format!(
                "the container sent {sent_bytes} bytes with SHA-256 {sha256}, {} bytes with \
                 SHA-256 {here} arrived",
                hashing.bytes
            ),
            dest: dest.to_path_buf(),
        });
    }
    let file = hashing
        .file
        .into_inner()
        .map_err(|e| local("writing", &partial.path)(e.into_error()))?;
    file.sync_all().map_err(local("syncing", &partial.path))?;
    // A link, not a rename: it fails rather than replace a file that appeared meanwhile.
    std::fs::hard_link(&partial.path, dest).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            DumpsError::Exists(dest.to_path_buf())
        } else {
            local("linking to", dest)(e)
        }
    })?;
    drop(partial);
    Ok(Pulled {
        path: dest.to_path_buf(),
        bytes: sent_bytes,
        compressed,
        sha256,
        elapsed: start.elapsed(),
    })
}

/// How long a failed transfer waits for the kubelet to report a restart: the exec stream
/// breaks as the container dies, the pod's status says so a moment later.
const STATUS_LAG: Duration = Duration::from_secs(15);

/// Why a transfer stopped: the pod went away, the container restarted (or stopped), or what the
/// stream said.
async fn explain(
    target: &Target,
    before: Option<(i32, Option<String>)>,
    dest: &Path,
    name: &str,
    why: String,
    killed: bool,
) -> DumpsError {
    let dest = dest.to_path_buf();
    // A command that ended by itself (say, no such file) has said why; one that was killed or
    // lost its stream may have died with the container: give the status time to show it.
    let deadline = Instant::now() + if killed { STATUS_LAG } else { Duration::ZERO };
    loop {
        match super::get(&target.pods, &target.namespace, &target.pod).await {
            Err(RemoteError::PodGone(pod)) => return DumpsError::PodGone { pod, dest },
            Ok(pod) => {
                if let (Some((b, bid)), Some((a, aid))) =
                    (&before, container_state(&pod, &target.container))
                {
                    if a != *b || aid != *bid {
                        return DumpsError::Restarted {
                            container: target.container.clone(),
                            before: *b,
                            after: a,
                            dest,
                        };
                    }
                }
            }
            Err(_) => {}
        }
        if Instant::now() >= deadline {
            return DumpsError::Transfer {
                name: name.into(),
                why,
                dest,
            };
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn progress_line(name: &str, done: u64, total: u64, elapsed: Duration) {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let rate = mib(done) / elapsed.as_secs_f64().max(0.001);
    let pct = (done * 100).checked_div(total).unwrap_or(0);
    eprint!(
        "\r\x1b[K{name}: {:.1} of {:.1} MiB ({pct}%), {rate:.1} MiB/s",
        mib(done),
        mib(total)
    );
    let _ = std::io::stderr().flush();
}

/// The listing as a table, newest first.
pub fn render(listing: &Listing, target: &Target) -> String {
    let mut out = format!("{target}: {}\n", listing.dir.display());
    if listing.files.is_empty() {
        out.push_str("no heap dumps or crash logs\n");
        return out;
    }
    let width = listing
        .files
        .iter()
        .map(|f| f.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    out.push_str(&format!(
        "{:<width$}  {:<9}  {:>10}  {:<20}  COMPLETE\n",
        "NAME", "KIND", "SIZE", "MODIFIED (UTC)"
    ));
    for f in &listing.files {
        let kind = match f.kind {
            DumpKind::HeapDump => "heap-dump",
            DumpKind::ErrorLog => "crash-log",
        };
        let modified = f.modified.map_or_else(
            || "-".into(),
            |s| crate::agent::rotate::timestamp(std::time::UNIX_EPOCH + Duration::from_secs(s)),
        );
        let complete = match f.complete {
            Some(true) => "yes",
            Some(false) => "no",
            None => "-",
        };
        out.push_str(&format!(
            "{:<width$}  {kind:<9}  {:>10}  {modified:<20}  {complete}\n",
            crate::escape::escape(&f.name),
            crate::agent::inspect::bytes(f.bytes),
        ));
    }
    out
}
