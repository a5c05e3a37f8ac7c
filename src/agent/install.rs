//! `jvm-guard install-tools DIR`, run by the injected init container: this binary into the
//! tools emptyDir, atomically.

use std::path::{Path, PathBuf};

/// Copies the running binary into `dir` atomically: a half-copied tool is never visible.
pub fn install_tools(dir: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let exe = std::env::current_exe()?;
    let target = dir.join("jvm-guard");
    let tmp = dir.join(format!(".jvm-guard.{}.tmp", std::process::id()));
    std::fs::copy(&exe, &tmp)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&tmp, &target)?;
    Ok(target)
}
