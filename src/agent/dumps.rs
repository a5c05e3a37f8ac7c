//! The container's side of `jvm-guard dumps` (the workstation's side, `remote::dumps`, runs it
//! through the exec API as `/jvm-guard/bin/jvm-guard agent-dumps ...`): list the dump
//! directory, send one file, take a heap dump of the running JVM. No shell, `tar` or JDK tool
//! is needed in the image. The wire format is in `docs/dumps.md`.
//!
//! `send` writes the file gzip-compressed to its output and, on stderr, one JSON line before
//! (`{"sending": ...}`: name and size) and one after (`{"sent": ...}`: bytes and SHA-256 of the
//! file itself). The receiver checks both.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::attach;
use super::inspect::{self, DumpFile};

/// The version of the JSON lines and listings: raised when a field changes meaning.
pub const FORMAT: u32 = 1;

/// What `agent-dumps list` prints.
#[derive(Debug, Serialize, Deserialize)]
pub struct Listing {
    pub format: u32,
    pub dir: PathBuf,
    /// Newest first.
    pub files: Vec<DumpFile>,
}

/// The first line `send` writes on stderr.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sending {
    pub name: String,
    pub bytes: u64,
}

/// The last line `send` writes on stderr: what was read from the file, uncompressed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    pub bytes: u64,
    pub sha256: String,
}

/// One line of `send`'s stderr.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SendLine {
    Sending(Sending),
    Sent(Sent),
}

/// What `agent-dumps take` prints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Taken {
    pub name: String,
    pub bytes: u64,
    pub pid: u32,
    /// What the JVM said.
    pub output: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DumpsError {
    #[error("{0:?} is not a file name in the dump directory (no `/`, `.` or `..`)")]
    BadName(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0} is not a regular file")]
    NotAFile(PathBuf),
    #[error("{path} changed while it was sent ({was} bytes, then {now})")]
    Changed { path: PathBuf, was: u64, now: u64 },
    #[error("{0}")]
    Jvm(String),
    #[error(transparent)]
    Attach(#[from] attach::AttachError),
    #[error("the JVM did not write a complete heap dump at {path}: {why}; it said: {output}")]
    NotWritten {
        path: PathBuf,
        why: String,
        output: String,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> DumpsError + '_ {
    move |source| DumpsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub fn list(dir: &Path) -> Result<Listing, DumpsError> {
    Ok(Listing {
        format: FORMAT,
        dir: dir.to_path_buf(),
        files: inspect::dump_files(dir).map_err(io_error(dir))?,
    })
}

/// The file `name` of `dir`, opened without following a link and without blocking (a FIFO
/// planted there cannot stall us), if it is a regular file.
fn open_in(dir: &Path, name: &str) -> Result<(PathBuf, File, u64), DumpsError> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(DumpsError::BadName(name.into()));
    }
    let path = dir.join(name);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
        .map_err(io_error(&path))?;
    let meta = file.metadata().map_err(io_error(&path))?;
    if !meta.is_file() {
        return Err(DumpsError::NotAFile(path));
    }
    Ok((path, file, meta.len()))
}

/// Writes `name` of `dir` gzip-compressed to `out` and the two JSON lines to `log`; returns
/// what it sent. Only the bytes the file had when opened are sent: a file that shrinks while
/// it is read is an error.
pub fn send(
    dir: &Path,
    name: &str,
    out: impl Write,
    mut log: impl Write,
) -> Result<Sent, DumpsError> {
    let (path, file, len) = open_in(dir, name)?;
    let line = |log: &mut dyn Write, l: &SendLine| {
        let json = serde_json::to_string(l).expect("plain data serializes");
        writeln!(log, "{json}").and_then(|()| log.flush())
    };
    let stdout = |source| DumpsError::Io {
        path: PathBuf::from("(output)"),
        source,
    };
    line(
        &mut log,
        &SendLine::Sending(Sending {
            name: name.into(),
            bytes: len,
        }),
    )
    .map_err(stdout)?;
    let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
    let mut sha = ring::digest::Context::new(&ring::digest::SHA256);
    let mut reader = file.take(len);
    let mut buf = vec![0u8; 256 * 1024];
    let mut sent = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_error(&path)(e)),
        };
        sha.update(&buf[..n]);
        gz.write_all(&buf[..n]).map_err(stdout)?;
        sent += n as u64;
    }
    if sent != len {
        return Err(DumpsError::Changed {
            path,
            was: len,
            now: sent,
        });
    }
    gz.finish()
        .and_then(|mut out| out.flush())
        .map_err(stdout)?;
    let sent = Sent {
        bytes: sent,
        sha256: hex(sha.finish().as_ref()),
    };
    line(&mut log, &SendLine::Sent(sent.clone())).map_err(stdout)?;
    Ok(sent)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The name a live dump gets: `jvm-guard-<UTC time>-<container>-live.hprof`, so it sorts with
/// the rotated ones and counts against `dump-keep` like them.
pub fn live_name(container: &str, now: SystemTime) -> String {
    format!(
        "jvm-guard-{}-{container}-live.hprof",
        super::rotate::timestamp(now)
    )
}

/// Asks the JVM `options` choose for a heap dump into `dir` through the attach protocol and
/// checks the file it wrote. `all`: unreachable objects too (no full GC first).
pub fn take(
    options: &inspect::Options,
    dir: &Path,
    container: &str,
    all: bool,
    reply_timeout: Duration,
) -> Result<Taken, DumpsError> {
    let (pid, _) = inspect::perf_data(options).map_err(|e| DumpsError::Jvm(e.message))?;
    let name = live_name(container, SystemTime::now());
    let path = dir.join(&name);
    let target = path
        .to_str()
        .ok_or_else(|| DumpsError::BadName(name.clone()))?;
    let mode = if all { "-all" } else { "-live" };
    let output = attach::execute(
        &options.proc,
        pid,
        "dumpheap",
        &[target, mode],
        reply_timeout,
    )?;
    // HotSpot answers 0 even when the dump failed (the reason is in its output).
    let summary = super::hprof::check_file(&path).map_err(|e| DumpsError::NotWritten {
        path: path.clone(),
        why: e.to_string(),
        output: output.trim().to_string(),
    })?;
    if let Some(why) = summary.incomplete {
        return Err(DumpsError::NotWritten {
            path,
            why,
            output: output.trim().to_string(),
        });
    }
    let bytes = std::fs::metadata(&path).map_err(io_error(&path))?.len();
    Ok(Taken {
        name,
        bytes,
        pid,
        output: output.trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn a_file_is_sent_compressed_with_its_digest_between_two_lines() {
        let dir = tempfile::tempdir().unwrap();
        let body: Vec<u8> = (0..300_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        std::fs::write(dir.path().join("a.hprof"), &body).unwrap();
        let (mut out, mut log) = (Vec::new(), Vec::new());
        let sent = send(dir.path(), "a.hprof", &mut out, &mut log).unwrap();
        assert_eq!(sent.bytes, body.len() as u64);
        let expected = hex(ring::digest::digest(&ring::digest::SHA256, &body).as_ref());
        assert_eq!(sent.sha256, expected);
        assert!(out.len() < body.len() / 4, "compressed: {}", out.len());
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&out[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, body);
        let lines: Vec<SendLine> = String::from_utf8(log)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines,
            [
                SendLine::Sending(Sending {
                    name: "a.hprof".into(),
                    bytes: body.len() as u64
                }),
                SendLine::Sent(sent)
            ]
        );
    }

    #[test]
    fn only_plain_files_of_the_directory_are_sent() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "x").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("link.hprof"))
            .unwrap();
        std::fs::create_dir(dir.path().join("sub.hprof")).unwrap();
        let fifo = std::ffi::CString::new(dir.path().join("fifo.hprof").to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        for name in ["../x", "/etc/passwd", "..", "", "a/b"] {
            let e = send(dir.path(), name, io::sink(), io::sink()).unwrap_err();
            assert!(matches!(e, DumpsError::BadName(_)), "{name}: {e}");
        }
        // A link is not followed (ELOOP); a directory and a FIFO are not files (and the FIFO
        // does not block).
        let e = send(dir.path(), "link.hprof", io::sink(), io::sink()).unwrap_err();
        assert!(matches!(e, DumpsError::Io { .. }), "{e}");
        for name in ["sub.hprof", "fifo.hprof"] {
            let e = send(dir.path(), name, io::sink(), io::sink()).unwrap_err();
            assert!(matches!(e, DumpsError::NotAFile(_)), "{name}: {e}");
        }
    }

    #[test]
    fn a_live_dump_is_named_like_a_rotated_one() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_000_000_123);
        let name = live_name("app", t);
        assert!(name.starts_with("jvm-guard-20"), "{name}");
        assert!(name.ends_with("-app-live.hprof"), "{name}");
    }
}
