//! The JDK the application's command runs, found without starting a JVM: the `java` the
//! command names (a path, or a name looked up on `PATH`), else `$JAVA_HOME/bin/java`, else
//! `java` on `PATH` (a launcher script runs one of those); that JVM's `release` file; else the
//! `JAVA_VERSION` the image sets (official, Temurin, Corretto, Zulu and Liberica images do).

use std::path::{Path, PathBuf};

use crate::options::{JavaVersion, Jdk, Vm};

/// A JDK found, and where it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub jdk: Jdk,
    /// The `release` file, or `JAVA_VERSION=...`.
    pub from: String,
}

/// The JDK `argv` runs, as far as the files and `env` say.
pub fn find(argv: &[String], env: &dyn Fn(&str) -> Option<String>) -> Option<Found> {
    let on_path = |name: &str| -> Option<PathBuf> {
        let path = env("PATH")?;
        path.split(':')
            .filter(|d| !d.is_empty())
            .map(|d| Path::new(d).join(name))
            .find(|p| is_executable(p))
    };
    let named = argv.first().and_then(|arg0| {
        let path = Path::new(arg0);
        (path.file_name()? == "java").then(|| match arg0.contains('/') {
            true => Some(path.to_path_buf()),
            false => on_path("java"),
        })?
    });
    let java = named
        .or_else(|| {
            let home = env("JAVA_HOME").filter(|h| !h.trim().is_empty())?;
            Some(Path::new(home.trim()).join("bin/java")).filter(|p| is_executable(p))
        })
        .or_else(|| on_path("java"));
    if let Some(found) = java.as_deref().and_then(release_of) {
        return Some(found);
    }
    let version = env("JAVA_VERSION")?;
    let jdk = Jdk {
        version: JavaVersion::parse(&version)?,
        vm: Vm::HotSpot,
    };
    Some(Found {
        jdk,
        from: format!("JAVA_VERSION={}", version.trim()),
    })
}

/// The `release` file of the JDK a `java` belongs to: `<home>/bin/java` has `<home>/release`; a
/// JDK 8's `<jdk>/jre/bin/java` has `<jdk>/release`. Links are followed (`/usr/bin/java`
/// through the alternatives).
fn release_of(java: &Path) -> Option<Found> {
    let java = std::fs::canonicalize(java).ok()?;
    let home = java.parent()?.parent()?;
    [home.join("release"), home.parent()?.join("release")]
        .into_iter()
        .find_map(|file| {
            let text = read_small(&file)?;
            let jdk = Jdk::from_release(&text)?;
            Some(Found {
                jdk,
                from: file.display().to_string(),
            })
        })
}

/// A `release` file is a few KiB; anything larger is not one.
fn read_small(path: &Path) -> Option<String> {
    use std::io::Read;
    let file = std::fs::File::open(path).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    file.take(64 * 1024).read_to_string(&mut text).ok()?;
    Some(text)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// A JDK home at `dir` with an executable `bin/java` (or `jre/bin/java`) and `release`.
    fn home(dir: &Path, java: &str, release: &str) -> PathBuf {
        let java = dir.join(java);
        std::fs::create_dir_all(java.parent().unwrap()).unwrap();
        std::fs::write(&java, "").unwrap();
        std::fs::set_permissions(&java, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.join("release"), release).unwrap();
        java
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn find_in(argv: &[&str], env: &[(&str, String)]) -> Option<Found> {
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        find(&strings(argv), &|n| env.get(n).cloned())
    }

    #[test]
    fn the_java_the_command_names_and_its_release_file() {
        let dir = tempfile::tempdir().unwrap();
        let jdk8 = dir.path().join("jdk8");
        let java = home(&jdk8, "jre/bin/java", "JAVA_VERSION=\"1.8.0_151\"\n");
        let found = find_in(&[java.to_str().unwrap(), "-jar", "a.jar"], &[]).unwrap();
        assert_eq!(found.jdk.version.to_string(), "8u151");
        assert!(found.from.ends_with("jdk8/release"), "{}", found.from);

        // A link to it (as /usr/bin/java through the alternatives), found on PATH.
        let bin = dir.path().join("usr/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(&java, bin.join("java")).unwrap();
        let path = bin.display().to_string();
        let found = find_in(&["java", "-version"], &[("PATH", path.clone())]).unwrap();
        assert_eq!(found.jdk.version.to_string(), "8u151");

        // A launcher script: JAVA_HOME before PATH.
        let j9 = dir.path().join("j9");
        home(
            &j9,
            "bin/java",
            "JAVA_VERSION=\"11.0.10\"\nJVM_VARIANT=\"Openj9\"\n",
        );
        let env = [("PATH", path), ("JAVA_HOME", j9.display().to_string())];
        let found = find_in(&["/opt/kafka/bin/kafka-server-start.sh"], &env).unwrap();
        assert_eq!(found.jdk.vm, Vm::OpenJ9);
    }

    #[test]
    fn without_a_release_file_the_image_java_version_says() {
        let env = [("JAVA_VERSION", "jdk8u392-b08".to_string())];
        let found = find_in(&["/app/run.sh"], &env).unwrap();
        assert_eq!(found.jdk.version.to_string(), "8u392");
        assert_eq!(found.from, "JAVA_VERSION=jdk8u392-b08");
        assert_eq!(find_in(&["/app/run.sh"], &[]), None);
        let garbage = [("JAVA_VERSION", "latest".to_string())];
        assert_eq!(find_in(&["/app/run.sh"], &garbage), None);
    }
}
