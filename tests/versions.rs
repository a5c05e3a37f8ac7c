//! tests/versions.env, the versions of the tools the suites run against: bash and the suites
//! read it alike, the Go modules that build the tools pin the same versions, and no script or
//! suite writes a version of its own. Fast: no tool is needed.

#[path = "support/versions.rs"]
mod versions;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use versions::{ETCD_VERSION, FILE, HELM_VERSION, KUBERNETES_VALIDATE_VERSION, KUBERNETES_VERSION};

const CONSTANTS: [(&str, &str); 4] = [
    ("KUBERNETES_VERSION", KUBERNETES_VERSION),
    ("ETCD_VERSION", ETCD_VERSION),
    ("HELM_VERSION", HELM_VERSION),
    ("KUBERNETES_VALIDATE_VERSION", KUBERNETES_VALIDATE_VERSION),
];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The `KEY=value` lines, in order.
fn entries() -> Vec<(&'static str, &'static str)> {
    FILE.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            line.split_once('=')
                .unwrap_or_else(|| panic!("tests/versions.env: not KEY=value: {line:?}"))
        })
        .collect()
}

/// Plain lines, so that `source` in bash and the compile-time reader agree without quoting
/// rules; every key is one of the suites' constants.
#[test]
fn the_file_is_plain_key_value_lines_that_bash_reads_as_the_suites_do() {
    let entries = entries();
    let mut keys = BTreeSet::new();
    for (key, value) in &entries {
        assert!(
            !key.is_empty() && key.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'),
            "tests/versions.env: key {key:?}"
        );
        assert!(
            !value.is_empty()
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b)),
            "tests/versions.env: {key}={value:?} is not a plain version"
        );
        assert!(keys.insert(*key), "tests/versions.env: {key} twice");
    }
    let constants: BTreeSet<&str> = CONSTANTS.iter().map(|(key, _)| *key).collect();
    assert_eq!(keys, constants, "tests/support/versions.rs reads every key");

    let script = CONSTANTS
        .iter()
        .map(|(key, _)| format!("echo \"{key}=${key}\""))
        .collect::<Vec<_>>()
        .join("; ");
    let out = Command::new("bash")
        .arg("-euc")
        .arg(format!("source tests/versions.env; {script}"))
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected: String = CONSTANTS
        .iter()
        .map(|(key, value)| format!("{key}={value}\n"))
        .collect();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), expected);
}

/// The install scripts label what they build with these versions (`-ldflags -X
/// ...gitVersion=`, then cache it by that label): a module pinning another version would build
/// a binary that lies about its version, and stays cached.
#[test]
fn the_go_modules_pin_the_versions_of_the_file() {
    // Kubernetes' staging modules (k8s.io/api, client-go, ...) are v0.MINOR.PATCH of v1.MINOR.PATCH.
    let staging = KUBERNETES_VERSION.replacen("v1.", "v0.", 1);
    for module in ["tests/e2e/apiserver", "tests/node/k8s"] {
        let go_mod = read(&format!("{module}/go.mod"));
        let require = format!("require k8s.io/kubernetes {KUBERNETES_VERSION}");
        assert!(
            go_mod.lines().any(|line| line == require),
            "{module}/go.mod: no `{require}` (tests/versions.env)"
        );
        let replaced: Vec<&str> = go_mod
            .lines()
            .filter_map(|line| line.trim().split_once(" => "))
            .filter(|(from, _)| from.starts_with("k8s.io/"))
            .map(|(_, to)| to)
            .collect();
        assert!(
            !replaced.is_empty(),
            "{module}/go.mod replaces the staging modules"
        );
        for to in replaced {
            assert!(
                to.ends_with(&format!(" {staging}")),
                "{module}/go.mod: `=> {to}`, not {staging} (KUBERNETES_VERSION={KUBERNETES_VERSION})"
            );
        }
    }

    let go_mod = read("tests/e2e/etcd/go.mod");
    let require = format!("require go.etcd.io/etcd/server/v3 {ETCD_VERSION}");
    assert!(
        go_mod.lines().any(|line| line == require),
        "tests/e2e/etcd/go.mod: no `{require}` (tests/versions.env)"
    );
    // etcd's own modules move together.
    for line in go_mod.lines().map(str::trim) {
        if line.starts_with("go.etcd.io/etcd/") {
            assert!(
                line.contains(&format!(" {ETCD_VERSION}")),
                "tests/e2e/etcd/go.mod: `{line}`, not {ETCD_VERSION}"
            );
        }
    }
}

fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, found);
        } else if path
            .extension()
            .is_some_and(|ext| ext == "rs" || ext == "sh" || ext == "py")
        {
            found.push(path);
        }
    }
}

/// A version written into a script or a suite would drift from the file; the scripts that
/// use one source the file instead.
#[test]
fn no_script_or_suite_writes_a_version_of_its_own() {
    let mut files = Vec::new();
    sources(&repo().join("scripts"), &mut files);
    sources(&repo().join("tests"), &mut files);
    assert!(files.len() > 10, "{files:?}");
    // KUBERNETES_VALIDATE_VERSION reads like a schema version (tests/chart.rs validates 1.37.0
    // and 1.36.0): only the tools' versions are looked for.
    let pinned = [KUBERNETES_VERSION, ETCD_VERSION, HELM_VERSION];
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for version in pinned {
            assert!(
                !text.contains(version),
                "{} writes {version}: read it from tests/versions.env",
                file.display()
            );
        }
    }
    for script in [
        "scripts/install-chart-tools.sh",
        "scripts/install-e2e-tools.sh",
        "scripts/install-node-tools.sh",
        "tests/node/teardown.sh",
    ] {
        assert!(
            read(script).contains("tests/versions.env"),
            "{script} does not source tests/versions.env"
        );
    }
}
