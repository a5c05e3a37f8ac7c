//! The dump directory's heap dumps and crash logs, newest first.

use std::path::Path;
use std::time::UNIX_EPOCH;

use super::{DumpFile, DumpKind};

pub(super) fn list(dir: &Path) -> std::io::Result<Vec<DumpFile>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let kind = if name.ends_with(".hprof") {
            DumpKind::HeapDump
        } else if (name.starts_with("hs_err_pid") && name.ends_with(".log"))
            || name.ends_with(".hs_err.log")
        {
            DumpKind::ErrorLog
        } else {
            continue;
        };
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs());
        let complete = (kind == DumpKind::HeapDump)
            .then(|| crate::agent::hprof::check_file(&entry.path()).is_ok_and(|s| s.complete));
        files.push(DumpFile {
            name,
            kind,
            bytes: meta.len(),
            modified,
            complete,
        });
    }
    files.sort_by(|a, b| b.modified.cmp(&a.modified).then(a.name.cmp(&b.name)));
    Ok(files)
}
