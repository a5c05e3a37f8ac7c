//! The agent on real JVMs, in a root without a shell (SPEC §4.4): each run is a fresh mount and
//! pid namespace whose root holds only the JDK, the system's shared libraries, the static
//! jvm-guard binary, the test classes and the dump directory — no `/bin/sh`, as in a distroless
//! image — and the JVM is pid 1, as in a container. Each runs under a real cgroup memory limit.
//! The agent's instructions are the webhook's own: `jvm-guard mutate` output for a pod.
//!
//! Needs root (namespaces, mounts, cgroups), the JDKs of `scripts/install-jdks.sh` and the musl
//! build of `scripts/test.sh`; a missing one fails naming the step.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{json, Value};

// Shared with tests/jvm.rs; this suite needs only part of it.
#[allow(dead_code)]
#[path = "support/cgroup.rs"]
mod cgroup;

#[path = "support/jdks.rs"]
mod jdks;
#[path = "support/musl.rs"]
mod musl;
#[allow(dead_code)]
#[path = "support/process.rs"]
mod process;

use jdks::jdk_homes;
use musl::musl_binary;

use cgroup::MemoryCgroup;
use process::run_bounded;

const JVM_GUARD: &str = env!("CARGO_BIN_EXE_jvm-guard");
const MIB: u64 = 1 << 20;
const LIMIT: u64 = 256 * MIB;
const TIMEOUT: Duration = Duration::from_secs(120);

const OOM_JAVA: &str = r#"
import java.util.ArrayList;
import java.util.List;

public class Oom {
    public static void main(String[] args) {
        List<long[]> hold = new ArrayList<>();
        while (true) {
            hold.add(new long[1 << 16]);
        }
    }
}
"#;

fn compile(dir: &Path) {
    jdks::compile(dir, "Oom", OOM_JAVA);
}

/// The container `app` of a pod with `command`, as the webhook mutates it (offline preview,
/// the webhook's engine) in a namespace with `annotations`: its command and its env, the
/// pod-name variable given the value the kubelet would.
fn mutated(command: &[&str], annotations: &[(&str, &str)]) -> (Vec<String>, Vec<(String, String)>) {
    let ns = json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {
            "name": "shop",
            "labels": {"jvm-guard.io/inject": "enabled"},
            "annotations": annotations.iter().map(|(k, v)| (format!("jvm-guard.io/{k}"), json!(v))).collect::<serde_json::Map<_, _>>(),
        }
    });
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "orders-7d9f", "namespace": "shop"},
        "spec": {"containers": [{
            "name": "app", "image": "gcr.io/distroless/java17-debian12",
            "command": command,
            "resources": {"limits": {"memory": "256Mi"}}
        }]}
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ns.yaml"), ns.to_string()).unwrap();
    std::fs::write(dir.path().join("pod.yaml"), pod.to_string()).unwrap();
    let out = Command::new(JVM_GUARD)
        .args(["mutate", "--offline", "-o", "json", "-f"])
        .arg(dir.path().join("pod.yaml"))
        .arg("--namespace")
        .arg(dir.path().join("ns.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let doc = if doc.is_array() { doc[0].clone() } else { doc };
    let status = &doc["metadata"]["annotations"]["jvm-guard.io/status"];
    assert!(
        status
            .as_str()
            .unwrap_or("")
            .contains("\"merge\":\"agent\""),
        "the container is not started by the agent: {status}"
    );
    let app = &doc["spec"]["containers"][0];
    let command = app["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    let env = app["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let name = e["name"].as_str().unwrap().to_string();
            let value = match name.as_str() {
                "JVM_GUARD_POD_NAME" => "orders-7d9f".to_string(),
                _ => e["value"].as_str().unwrap_or_default().to_string(),
            };
            (name, value)
        })
        .collect();
    (command, env)
}

/// A root with the JDK at /jdk and no shell; `dumps` is mounted at /dumps.
struct Root {
    dir: tempfile::TempDir,
}

impl Root {
    fn new(classes: &Path) -> Root {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        for d in [
            "jdk",
            "app",
            "dumps",
            "proc",
            "sys/fs/cgroup",
            "tmp",
            "usr/lib",
            "usr/lib64",
            "jvm-guard/bin",
            "etc",
        ] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        std::os::unix::fs::symlink("usr/lib", r.join("lib")).unwrap();
        std::os::unix::fs::symlink("usr/lib64", r.join("lib64")).unwrap();
        std::fs::copy(musl_binary(), r.join("jvm-guard/bin/jvm-guard")).unwrap();
        for f in std::fs::read_dir(classes).unwrap().flatten() {
            std::fs::copy(f.path(), r.join("app").join(f.file_name())).unwrap();
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(r.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
        Root { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `command` (paths inside the root) with exactly `env`, in new mount and pid
    /// namespaces rooted here, in a fresh memory cgroup of [`LIMIT`].
    fn run(
        &self,
        jdk: &Path,
        dumps: &Path,
        command: &[String],
        env: &[(String, String)],
    ) -> Output {
        self.run_with_release(jdk, None, dumps, command, env)
    }

    /// [`Root::run`], the JDK's `release` file replaced by `release` when given.
    fn run_with_release(
        &self,
        jdk: &Path,
        release: Option<&Path>,
        dumps: &Path,
        command: &[String],
        env: &[(String, String)],
    ) -> Output {
        let r = self.path().display().to_string();
        let mut script = format!(
            "set -e\n\
             mount --rbind /sys/fs/cgroup {r}/sys/fs/cgroup\n\
             mount -t proc proc {r}/proc\n\
             mount --bind -o ro /usr/lib {r}/usr/lib\n\
             mount --bind -o ro /usr/lib64 {r}/usr/lib64\n\
             mount --bind {jdk} {r}/jdk\n\
             mount --bind {dumps} {r}/dumps\n",
            jdk = jdk.display(),
            dumps = dumps.display()
        );
        if let Some(release) = release {
            script.push_str(&format!(
                "mount --bind {} {r}/jdk/release\n",
                release.display()
            ));
        }
        // Debian's JDK links its configuration into /etc.
        for etc in ["/etc/java-17-openjdk", "/etc/ssl/certs/java"] {
            if Path::new(etc).is_dir() {
                script.push_str(&format!("mkdir -p {r}{etc}\nmount --bind {etc} {r}{etc}\n"));
            }
        }
        script.push_str(&format!("test ! -e {r}/bin/sh\nexec chroot {r} \"$@\"\n"));
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--mount",
            "--pid",
            "--fork",
            "--propagation",
            "private",
            "sh",
            "-c",
        ])
        .arg(script)
        .arg("sh")
        .args(command)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(env.iter().map(|(k, v)| (k, v)));
        let cgroup = MemoryCgroup::new("agent", LIMIT).unwrap_or_else(|e| panic!("{e}"));
        cgroup.enter_on_exec(&mut cmd);
        run_bounded(&mut cmd, TIMEOUT.as_secs())
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The dump directory's files, sorted, with their sizes.
fn files(dir: &Path) -> BTreeMap<String, u64> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            let len = e.metadata().map(|m| m.len()).unwrap_or(0);
            (e.file_name().to_string_lossy().into_owned(), len)
        })
        .collect()
}

fn hprofs(dir: &Path) -> Vec<String> {
    files(dir)
        .into_keys()
        .filter(|n| n.ends_with(".hprof"))
        .collect()
}

/// The agent's one line, from the run's stderr.
fn agent_line(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|l| l.starts_with("jvm-guard: "))
        .unwrap_or_else(|| panic!("no agent line on stderr:\n{stderr}"))
}

#[test]
fn out_of_memory_twice_and_thrice_keeps_the_newest_dumps_without_a_shell_on_every_jdk() {
    let classes = tempfile::tempdir().unwrap();
    compile(classes.path());
    // The JVM as pid 1 (`agent: exec`): its dump is java_pid1.hprof until the next start
    // renames it. Supervised, the agent renames it at exit (tests/supervise.rs).
    let (command, env) = mutated(
        &["/jdk/bin/java", "-cp", "/app", "Oom"],
        &[("dump-keep", "2"), ("agent", "exec")],
    );
    assert_eq!(command[..3], ["/jvm-guard/bin/jvm-guard", "exec", "--"]);
    let mut failures = Vec::new();
    for (name, jdk) in jdk_homes() {
        let root = Root::new(classes.path());
        let dumps = tempfile::tempdir().unwrap();
        let mut written: Vec<String> = Vec::new();
        for round in 1..=3 {
            let out = root.run(&jdk, dumps.path(), &command, &env);
            let stderr = text(&out.stderr);
            let line = agent_line(&stderr).to_string();
            if out.status.code() != Some(3) {
                failures.push(format!(
                    "{name} round {round}: exit {:?}\n{stderr}",
                    out.status
                ));
                break;
            }
            if !line.contains("no /bin/sh: OutOfMemoryError hook left out") {
                failures.push(format!("{name}: the hook was not left out: {line}"));
            }
            if !line.contains("dumps /dumps, orders-7d9f/app on the volume") {
                failures.push(format!("{name}: {line}"));
            }
            // The fresh dump of this round, by its modification time, for the names below.
            let fresh = dumps.path().join("java_pid1.hprof");
            match std::fs::metadata(&fresh).and_then(|m| m.modified()) {
                Ok(t) => written.push(jvm_guard::agent::rotate::timestamp(t)),
                Err(e) => failures.push(format!(
                    "{name} round {round}: no java_pid1.hprof ({e}): {:?}",
                    files(dumps.path())
                )),
            }
            let now = hprofs(dumps.path());
            println!("{name} round {round}: {line}\n  dumps: {now:?}");
            if round == 2 && now.len() != 2 {
                failures.push(format!("{name}: two OOMs left {now:?}, not two dumps"));
            }
        }
        // Three OOMs with dump-keep 2: the second (rotated at the third start) and the third.
        let now = hprofs(dumps.path());
        if written.len() == 3 {
            let expected = vec![
                format!("java_pid1.hprof"),
                format!("jvm-guard-{}-app.hprof", written[1]),
            ];
            let mut sorted = now.clone();
            sorted.sort();
            let mut expected_sorted = expected.clone();
            expected_sorted.sort();
            if sorted != expected_sorted {
                failures.push(format!(
                    "{name}: three OOMs left {now:?}, expected {expected:?}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// `-XX:+PrintFlagsFinal`'s value of `flag`.
fn flag(stdout: &str, flag: &str) -> Option<String> {
    stdout.lines().find_map(|l| {
        let mut words = l.split_whitespace();
        let _type = words.next()?;
        (words.next()? == flag).then_some(())?;
        (words.next()? == "=").then_some(())?;
        words.next().map(str::to_string)
    })
}

#[test]
fn tool_options_from_the_image_are_merged_at_start_on_every_jdk() {
    let classes = tempfile::tempdir().unwrap();
    compile(classes.path());
    let (command, env) = mutated(&["/jdk/bin/java", "-XX:+PrintFlagsFinal", "-version"], &[]);
    let with = |image_env: &str| {
        let mut env = env.clone();
        // As an image ENV: in the process environment, not in the pod spec.
        env.push(("JAVA_TOOL_OPTIONS".to_string(), image_env.to_string()));
        env
    };
    let mut failures = Vec::new();
    for (name, jdk) in jdk_homes() {
        let root = Root::new(classes.path());
        let dumps = tempfile::tempdir().unwrap();

        let out = root.run(&jdk, dumps.path(), &command, &with("-Dimage.setting=kept"));
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        let picked = stderr
            .lines()
            .find(|l| l.starts_with("Picked up JAVA_TOOL_OPTIONS:"))
            .unwrap_or_default()
            .to_string();
        println!("{name}: {}\n  {picked}", agent_line(&stderr));
        // 256Mi: floor(100 * (256 - 384 reserve) / 256) is below the floor: 25%.
        if !picked.starts_with("Picked up JAVA_TOOL_OPTIONS: -XX:MaxRAMPercentage=25.0")
            || !picked.ends_with(" -Dimage.setting=kept")
        {
            failures.push(format!(
                "{name}: ours first, the image's last: {picked}\n{stderr}"
            ));
        }
        if flag(&stdout, "MaxRAMPercentage").as_deref() != Some("25.000000") {
            failures.push(format!(
                "{name}: MaxRAMPercentage {:?}",
                flag(&stdout, "MaxRAMPercentage")
            ));
        }
        if flag(&stdout, "HeapDumpOnOutOfMemoryError").as_deref() != Some("true") {
            failures.push(format!("{name}: no heap dump flag"));
        }

        let out = root.run(&jdk, dumps.path(), &command, &with("-Xmx200m"));
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        let line = agent_line(&stderr).to_string();
        println!("{name} with -Xmx200m: {line}");
        if flag(&stdout, "MaxHeapSize").as_deref() != Some(&(200 * MIB).to_string()) {
            failures.push(format!(
                "{name}: the image's -Xmx200m did not stand: MaxHeapSize {:?}",
                flag(&stdout, "MaxHeapSize")
            ));
        }
        if stderr.contains("MaxRAMPercentage=25.0") {
            failures.push(format!(
                "{name}: our memory flags were merged next to a user -Xmx:\n{stderr}"
            ));
        }
        if !line.contains("heap set by JAVA_TOOL_OPTIONS=-Xmx200m: memory flags left out") {
            failures.push(format!("{name}: {line}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A JDK 8 cannot be installed here: each real JDK, its `release` file replaced by 8u151's,
/// stands in for one. The agent reads the file, not the JVM, so it must pass what 8u151 takes
/// (no RAM percentages: it would refuse them) and size the heap itself from the real cgroup
/// limit; the real JVM then shows the heap it got.
#[test]
fn a_jdk_8u151_gets_its_heap_as_an_xmx_from_the_cgroup_limit() {
    let classes = tempfile::tempdir().unwrap();
    compile(classes.path());
    let release = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        release.path(),
        "JAVA_VERSION=\"1.8.0_151\"\nOS_NAME=\"Linux\"\nOS_VERSION=\"2.6\"\nOS_ARCH=\"amd64\"\nSOURCE=\"\"\n",
    )
    .unwrap();
    let (command, env) = mutated(&["/jdk/bin/java", "-XX:+PrintFlagsFinal", "-version"], &[]);
    // 256Mi with the 384Mi reserve: the 25% floor, 64 MiB.
    let heap = LIMIT / 4;
    let mut failures = Vec::new();
    for (name, jdk) in jdk_homes() {
        let root = Root::new(classes.path());
        let dumps = tempfile::tempdir().unwrap();
        let out = root.run_with_release(&jdk, Some(release.path()), dumps.path(), &command, &env);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        let line = agent_line(&stderr).to_string();
        println!("{name} as 8u151: {line}");
        let expected = format!(
            "jvm-guard: JDK 8u151 (/jdk/release): memory as -Xmx{}m from the {} MiB limit",
            heap / MIB,
            LIMIT / MIB
        );
        if !line.starts_with(&expected) {
            failures.push(format!("{name}: {line}\nnot: {expected}"));
        }
        let picked = stderr
            .lines()
            .find(|l| l.starts_with("Picked up JAVA_TOOL_OPTIONS:"))
            .unwrap_or_default();
        if picked.contains("RAMPercentage") || !picked.contains("-XX:+ExitOnOutOfMemoryError") {
            failures.push(format!(
                "{name}: what 8u151 would refuse, or too little: {picked}"
            ));
        }
        if flag(&stdout, "MaxHeapSize").as_deref() != Some(&heap.to_string()) {
            failures.push(format!(
                "{name}: MaxHeapSize {:?}, not {heap}",
                flag(&stdout, "MaxHeapSize")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
