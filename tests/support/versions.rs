//! The versions of the tools the suites run against, read at compile time from
//! tests/versions.env, the file the install scripts source: each version is written once.

/// The file itself (tests/versions.rs checks its lines are plain `KEY=value`).
pub const FILE: &str = include_str!("../versions.env");

/// kube-apiserver, and the node's kubelet, controller-manager, scheduler and kube-proxy.
pub const KUBERNETES_VERSION: &str = value("KUBERNETES_VERSION");
pub const ETCD_VERSION: &str = value("ETCD_VERSION");
pub const HELM_VERSION: &str = value("HELM_VERSION");
pub const KUBERNETES_VALIDATE_VERSION: &str = value("KUBERNETES_VALIDATE_VERSION");

/// The value of the line `KEY=value`; a missing key fails the build.
const fn value(key: &str) -> &'static str {
    let file = FILE.as_bytes();
    let key = key.as_bytes();
    let mut start = 0;
    while start < file.len() {
        let mut end = start;
        while end < file.len() && file[end] != b'\n' {
            end += 1;
        }
        if end - start > key.len() && file[start + key.len()] == b'=' && at(file, start, key) {
            let (_, rest) = file.split_at(start + key.len() + 1);
            let (value, _) = rest.split_at(end - start - key.len() - 1);
            return match std::str::from_utf8(value) {
                Ok(value) => value,
                Err(_) => panic!("tests/versions.env is not UTF-8"),
            };
        }
        start = end + 1;
    }
    panic!("a key is missing from tests/versions.env")
}

/// Whether `file` has `key` at `start`.
const fn at(file: &[u8], start: usize, key: &[u8]) -> bool {
    let mut i = 0;
    while i < key.len() {
        if file[start + i] != key[i] {
            return false;
        }
        i += 1;
    }
    true
}
