//! The termination-message file, written in place (the kubelet bind-mounts it: no rename) and
//! left alone for good once its content is not what the agent last wrote: the application
//! writes there itself.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::message::MAX_BYTES;

pub struct TerminationLog {
    path: PathBuf,
    file: File,
    /// What the agent wrote last; the file holds it unless someone else wrote.
    last: String,
    given_up: bool,
}

impl TerminationLog {
    /// The file, if it exists, can be written and is empty (the kubelet makes a fresh one
    /// for each container start); else why not, on stderr.
    pub fn open(path: &Path) -> Option<TerminationLog> {
        let opened = File::options().read(true).write(true).open(path);
        let file = match opened {
            Ok(f) => f,
            Err(e) => {
                eprintln!("jvm-guard: no termination message: {}: {e}", path.display());
                return None;
            }
        };
        let content = read(&file);
        if !content.is_empty() {
            eprintln!(
                "jvm-guard: no termination message: {} is not empty (the application's)",
                path.display()
            );
            return None;
        }
        Some(TerminationLog {
            path: path.to_path_buf(),
            file,
            last: String::new(),
            given_up: false,
        })
    }

    /// Replaces the content with `text`, unless someone else wrote since the last time.
    pub fn write(&mut self, text: &str) {
        if self.given_up {
            return;
        }
        if read(&self.file) != self.last {
            self.given_up = true;
            eprintln!(
                "jvm-guard: {} was written by the application: left to it",
                self.path.display()
            );
            return;
        }
        // Content first, then the length: a kill in between leaves the new text, followed
        // at worst by the old text's tail.
        let bytes = text.as_bytes();
        let done = self
            .file
            .write_all_at(bytes, 0)
            .and_then(|()| self.file.set_len(bytes.len() as u64));
        match done {
            Ok(()) => self.last = text.to_string(),
            Err(e) => {
                self.given_up = true;
                eprintln!("jvm-guard: cannot write {}: {e}", self.path.display());
            }
        }
    }
}

/// The file's content (as much as the kubelet reads, and one byte more, so that a longer
/// text differs from ours).
fn read(file: &File) -> String {
    let mut bytes = Vec::new();
    let mut at = 0u64;
    let mut buf = [0u8; 1024];
    while bytes.len() <= MAX_BYTES {
        match file.read_at(&mut buf, at) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                bytes.extend_from_slice(&buf[..n]);
                at += n as u64;
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_in_place_and_leaves_the_application_s_text_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("termination-log");
        assert!(TerminationLog::open(&path).is_none(), "no file, no message");
        std::fs::write(&path, "").unwrap();
        let mut log = TerminationLog::open(&path).unwrap();
        log.write("a longer first sample\n");
        log.write("second\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "second\n");
        // The application writes: from then on, the file is its own.
        std::fs::write(&path, "app: done\n").unwrap();
        log.write("verdict\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "app: done\n");
        log.write("again\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "app: done\n");
        // A file with content at start is the application's.
        assert!(TerminationLog::open(&path).is_none());
    }
}
