//! `jvm-guard dumps` from a workstation (this process, with the cluster's kubeconfig) against
//! a pod of the image without a shell: `take` has the JVM write a heap dump through the attach
//! protocol and `pull` brings it out through the exec API; a pull cut by a container restart
//! fails and leaves nothing under its name.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::*;

/// The release build the node's image holds (a static binary): the transfer is measured as
/// users run it.
/// The release binary as a user runs it: `jvm-guard <subcommand> <args>` with the cluster's
/// kubeconfig, in `cwd`.
fn cli(subcommand: &str, args: &[&str], cwd: &Path) -> Command {
    let mut command = Command::new(cluster::musl_binary());
    command
        .arg(subcommand)
        .args(args)
        .current_dir(cwd)
        .env("KUBECONFIG", Path::new(cluster::STATE).join("kubeconfig"));
    command
}

fn sha256(bytes: &[u8]) -> String {
    jvm_guard::agent::dumps::hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// `bytes` of xorshift output: what gzip cannot shrink, the worst case of a transfer.
fn incompressible(path: &Path, bytes: usize) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..bytes / block.len() {
        for chunk in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        file.write_all(&block).unwrap();
    }
    file.flush().unwrap();
}

fn partial_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".partial-"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dumps_take_and_pull_bring_a_heap_dump_out_of_an_image_without_a_shell() {
    let _shared = FAULTS.read().await;
    let ns = "node-dumps";
    let client = cluster().client().await;
    injected_namespace(&client, ns).await;
    deploy(&client, ns, app("dumps", DISTROLESS_IMAGE, "512Mi")).await;
    let pod = wait_pod(&client, ns, "dumps", 300, "running", running).await;
    let name = pod.metadata.name.clone().unwrap();
    let ip = pod_ip(&pod);
    get_ok(&ip, "/health", 180).await;
    let on_node = dump_dir_on_node(&pod, "app");
    let here = tempfile::tempdir().unwrap();

    // take, then pull: the file here is the file on the node's disk, and a complete HPROF.
    let out = run_bounded(
        &mut cli(
            "dumps",
            &["take", &name, "-n", ns, "-o", "live.hprof"],
            here.path(),
        ),
        180,
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "dumps take: {stderr}{stdout}");
    let pulled = std::fs::read(here.path().join("live.hprof")).unwrap();
    let taken = hprofs(&on_node);
    assert_eq!(taken.len(), 1, "{taken:?}\n{stderr}");
    let original = std::fs::read(on_node.join(&taken[0])).unwrap();
    assert_eq!(sha256(&pulled), sha256(&original));
    assert!(stdout.contains(&sha256(&original)), "{stdout}");
    let summary = jvm_guard::agent::hprof::check_file(&here.path().join("live.hprof")).unwrap();
    assert!(summary.complete && summary.heap_records > 0, "{summary:?}");
    eprintln!("dumps take: {stderr}{stdout}hprof: {summary:?}");

    // list: the dump, complete.
    let out = run_bounded(
        &mut cli("dumps", &["list", &name, "-n", ns], here.path()),
        60,
    );
    let listed = String::from_utf8_lossy(&out.stdout);
    let row = listed.lines().find(|l| l.starts_with(&taken[0]));
    assert!(
        row.is_some_and(|r| r.contains("heap-dump") && r.ends_with("yes")),
        "{listed}"
    );

    // Never over an existing file.
    let out = run_bounded(
        &mut cli(
            "dumps",
            &["pull", &name, &taken[0], "-n", ns, "-o", "live.hprof"],
            here.path(),
        ),
        60,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists; not overwritten"));

    // Speed, worst case: 512 MiB gzip cannot shrink, through the apiserver and the kubelet.
    incompressible(&on_node.join("big.hprof"), 512 << 20);
    let start = Instant::now();
    let out = run_bounded(
        &mut cli(
            "dumps",
            &["pull", &name, "big.hprof", "-n", ns, "-o", "big"],
            here.path(),
        ),
        600,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "pull of 512 MiB (incompressible): {secs:.1} s, {:.1} MiB/s: {}",
        512.0 / secs,
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        std::fs::metadata(here.path().join("big")).unwrap().len(),
        512 << 20
    );

    // A pull cut by a restart of the container (an OutOfMemoryError: the JVM exits 3): the
    // error says so, and neither the file nor the partial one is left.
    let restarts_before = restarts(&pod);
    let pull = cli(
        "dumps",
        &["pull", &name, "big.hprof", "-n", ns, "-o", "cut"],
        here.path(),
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while partial_files(here.path()).is_empty() {
        assert!(Instant::now() < deadline, "no partial file within 60 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ip2 = ip.clone();
    let _ = tokio::task::spawn_blocking(move || http_get(&ip2, "/oom")).await;
    let out = tokio::task::spawn_blocking(move || pull.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the pull completed before the restart"
    );
    assert!(
        stderr.contains("restarted during the transfer")
            && stderr.contains(&format!("restarts {restarts_before} -> "))
            && stderr.contains("nothing was written to cut"),
        "{stderr}"
    );
    assert!(!here.path().join("cut").exists());
    assert_eq!(partial_files(here.path()), Vec::<String>::new());

    // report: the guarded container with its restart and the agent's verdict of it; a pod
    // created before its namespace opted in, unguarded.
    let late = "node-dumps-late";
    namespace(&client, late, &[]).await;
    let bare: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "before-opt-in"},
        "spec": {"containers": [{"name": "app", "image": SHELL_IMAGE, "imagePullPolicy": "Never",
            "command": ["java", "-cp", "/app", "App"],
            "resources": {"limits": {"memory": "256Mi"}, "requests": {"cpu": "10m"}}}]},
    }))
    .unwrap();
    let api: Api<Pod> = Api::namespaced(client.clone(), late);
    within(30, "create pod", api.create(&PostParams::default(), &bare))
        .await
        .unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let label = json!({"metadata": {"labels": {"jvm-guard.io/inject": "enabled"}}});
    within(
        30,
        "label namespace",
        namespaces.patch(
            late,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&label),
        ),
    )
    .await
    .unwrap();
    wait_pod(&client, ns, "dumps", 300, "restarted once", |p| {
        restarts(p) >= 1
    })
    .await;
    let out = run_bounded(&mut cli("report", &["-A", "-o", "json"], here.path()), 120);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let row = |ns: &str| rows.iter().find(|r| r["namespace"] == ns).cloned();
    let guarded = row(ns).unwrap_or_else(|| panic!("{rows:?}"));
    assert_eq!(guarded["state"], "guarded", "{guarded}");
    assert_eq!(guarded["workload"], "Deployment/dumps", "{guarded}");
    assert_eq!(guarded["restarts"], 1, "{guarded}");
    assert!(
        guarded["last_verdict"]
            .as_str()
            .is_some_and(|v| v.starts_with("heap OutOfMemoryError")),
        "{guarded}"
    );
    assert!(
        guarded["heap_max"].as_u64().is_some_and(|h| h > 0),
        "{guarded}"
    );
    let unguarded = row(late).unwrap_or_else(|| panic!("{rows:?}"));
    assert_eq!(unguarded["state"], "unguarded", "{unguarded}");
    assert_eq!(unguarded["workload"], "Pod/before-opt-in");
    // --live: the running JVM's heap maximum, through inspect.
    let out = run_bounded(
        &mut cli("report", &["-n", ns, "-o", "wide", "--live"], here.path()),
        120,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("report -o wide --live:\n{text}");
    assert!(out.status.success() && text.contains("LIVE HEAP"), "{text}");
    assert!(
        text.lines().nth(1).is_some_and(|l| l.contains("Mi")),
        "{text}"
    );
}
