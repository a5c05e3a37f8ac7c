//! The `jvm-guard mutate` binary as users run it: exit codes, stdout, stderr.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn jvm_guard(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_jvm-guard"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let mut pipe = child.stdin.take().expect("stdin");
    // A command that fails before reading its input closes the pipe: that is its answer.
    match pipe.write_all(stdin.unwrap_or_default().as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        written => written.expect("stdin written"),
    }
    drop(pipe);
    child.wait_with_output().expect("the binary finishes")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn previews_the_example_deployment() {
    let out = jvm_guard(
        &[
            "mutate",
            "-f",
            "examples/deployment.yaml",
            "--namespace",
            "examples/namespace.yaml",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let docs: Vec<Value> = jvm_guard::manifest::parse_documents(&text(&out.stdout)).unwrap();
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["kind"], "Deployment");
    let container = &docs[0]["spec"]["template"]["spec"]["containers"][0];
    let jto = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "JAVA_TOOL_OPTIONS")
        .and_then(|e| e["value"].as_str())
        .unwrap();
    // 2Gi limit, 512Mi reserve from the example namespace: floor(75) = 75. No registry is
    // reachable here: no agent, and no JDK known at admission, so 75% of 2Gi as an -Xmx,
    // which every JDK takes.
    assert!(jto.starts_with("-Xmx1536m "), "{jto}");
    assert!(jto.ends_with(" -Dspring.profiles.active=prod"), "{jto}");
    assert_eq!(
        container["startupProbe"]["httpGet"]["path"],
        "/actuator/health/liveness"
    );
    assert_eq!(
        docs[0]["spec"]["template"]["spec"]["volumes"][0]["emptyDir"]["sizeLimit"],
        "4Gi"
    );
}

#[test]
fn garbage_exits_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.yaml");
    std::fs::write(&file, "kind: Pod\nspec: [unclosed\n").unwrap();
    let out = jvm_guard(&["mutate", "-f", file.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains("broken.yaml"), "{stderr}");
    assert!(stderr.contains("not valid YAML or JSON"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(out.stdout.is_empty());

    let out = jvm_guard(&["mutate", "-f", "-"], Some("just a string\n"));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("<stdin>: document 1"),
        "{}",
        text(&out.stderr)
    );

    let missing = jvm_guard(&["mutate", "-f", "no/such/file.yaml"], None);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("no/such/file.yaml"));

    let bad_pod =
        "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: [{name: 1}]}\n";
    let out = jvm_guard(&["mutate", "-f", "-"], Some(bad_pod));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("Pod/x"), "{}", text(&out.stderr));
}

const POD: &str = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "api"},
  "spec": {"containers": [{"name": "api", "image": "eclipse-temurin:21-jre"}]}}"#;

#[test]
fn patch_output_applies_to_the_pod() {
    let out = jvm_guard(&["mutate", "-f", "-", "-o", "patch"], Some(POD));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let patch: json_patch::Patch = serde_json::from_slice(&out.stdout).expect("a JSONPatch");
    let mut pod: Value = serde_json::from_str(POD).unwrap();
    json_patch::patch(&mut pod, &patch).expect("applies");
    assert!(pod["metadata"]["annotations"]["jvm-guard.io/status"].is_string());
    // No memory limit: one warning line on stderr.
    let stderr = text(&out.stderr);
    assert!(
        stderr
            .lines()
            .all(|l| l.starts_with("warning: Pod/api: jvm-guard: ")),
        "{stderr}"
    );
    assert!(stderr.contains("no memory limit"), "{stderr}");

    let out = jvm_guard(
        &["mutate", "-f", "examples/deployment.yaml", "-o", "patch"],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("-o patch needs exactly one Pod document"));
}

#[test]
fn json_output_of_several_documents_is_a_list() {
    let input = format!("{POD}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\n");
    let out = jvm_guard(&["mutate", "-f", "-", "-o", "json"], Some(&input));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["kind"], "List");
    assert_eq!(
        list["items"][1],
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}})
    );
}

#[test]
fn defaults_file_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let defaults = dir.path().join("defaults.yaml");
    std::fs::write(&defaults, "probes: sometimes\n").unwrap();
    let out = jvm_guard(
        &[
            "mutate",
            "-f",
            "-",
            "--defaults",
            defaults.to_str().unwrap(),
        ],
        Some(POD),
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("defaults.yaml") && stderr.contains("probes"),
        "{stderr}"
    );
    assert!(Path::new(&defaults).exists());
}

#[test]
fn a_duplicate_key_exits_2_naming_the_file_document_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("twice.yaml");
    let input = "---\n# Source: app/templates/cm.yaml\napiVersion: v1\nkind: ConfigMap\n\
                 metadata: {name: c}\n---\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n\
                 spec:\n  containers:\n  - name: a\n    image: eclipse-temurin:21-jre\n\
                 \x20   image: eclipse-temurin:17-jre\n";
    std::fs::write(&file, input).unwrap();
    let out = jvm_guard(&["mutate", "-f", file.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    let expected = format!(
        "error: {}: document 2, line 16: duplicate key image\n",
        file.display()
    );
    assert_eq!(stderr, expected);
    assert!(out.stdout.is_empty());
}

/// What `helm template` prints: a leading `---`, empty documents, `envFrom:` and `value:` with
/// nothing after them, an octal mode, the ConfigMap and Secret after the workload.
const RENDERED: &str = r#"---
# Source: app/templates/deployment.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
spec:
  selector:
    matchLabels: {app: app}
  template:
    metadata:
      labels: {app: app}
    spec:
      containers:
        - name: app
          image: ghcr.io/acme/app:1.0.0
          envFrom:
          env:
            - name: EXTRA
              value:
          resources:
            limits: {memory: 1Gi}
      volumes:
        - name: scripts
          configMap:
            name: app-scripts
            defaultMode: 0755
---
# Source: app/templates/empty.yaml
---
# Source: app/templates/configmap.yaml
apiVersion: v1
kind: ConfigMap
metadata:
  name: app-env
data:
  MODE: "0644"
  ENABLED: "yes"
---
apiVersion: v1
kind: Secret
metadata:
  name: app-secret
data:
  PASSWORD: c2VjcmV0
stringData:
  USER: admin
"#;

#[test]
fn rendered_chart_shapes_are_read_and_configmaps_pass_through() {
    let out = jvm_guard(&["mutate", "--offline", "-f", "-"], Some(RENDERED));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let docs = jvm_guard::manifest::parse_documents(&text(&out.stdout)).unwrap();
    let input = jvm_guard::manifest::parse_documents(RENDERED).unwrap();
    assert_eq!(docs.len(), 3);
    let volume = &docs[0]["spec"]["template"]["spec"]["volumes"][0];
    assert_eq!(volume["configMap"]["defaultMode"], 493);
    assert_eq!(docs[1], input[1], "the ConfigMap is unchanged");
    assert_eq!(docs[2], input[2], "the Secret is unchanged");
    assert_eq!(docs[1]["data"]["ENABLED"], "yes");
}

#[test]
fn an_unquoted_yes_in_a_string_field_is_a_boolean_as_for_kubectl() {
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n\
               \x20 - name: a\n    image: eclipse-temurin:21-jre\n    env:\n\
               \x20   - {name: DEBUG, value: yes}\n";
    let out = jvm_guard(&["mutate", "-f", "-"], Some(pod));
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("error: <stdin>: document 1 (Pod/p): not a valid pod: "),
        "{stderr}"
    );
    assert!(stderr.contains("quote a string value"), "{stderr}");
}

#[test]
fn serve_refuses_to_read_pull_secrets_without_client_authentication() {
    // Without --client-ca, any client reaching the port could forge a review naming another
    // namespace's Secret: refused before anything listens.
    let out = jvm_guard(&["serve", "--dev", "--image-pull-secrets"], None);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("--image-pull-secrets needs --client-ca"),
        "{stderr}"
    );
    // A client CA that is not a certificate bundle is an error naming the file.
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("client-ca.crt");
    std::fs::write(&bogus, "not a certificate").unwrap();
    let out = jvm_guard(
        &[
            "serve",
            "--dev",
            "--addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
            "--client-ca",
            bogus.to_str().unwrap(),
        ],
        None,
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("--client-ca"), "{stderr}");
    assert!(stderr.contains("client-ca.crt"), "{stderr}");
}

#[test]
fn the_preview_never_copies_a_secret_value_into_a_workload() {
    let out = jvm_guard(
        &[
            "mutate",
            "-f",
            "tests/golden/secret-tool-options-never-copied.yaml",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let workloads: Vec<&str> = stdout
        .split("\n---\n")
        .filter(|doc| !doc.contains("kind: Secret"))
        .collect();
    assert!(workloads.iter().any(|d| d.contains("kind: Deployment")));
    for doc in workloads {
        for secret in ["hunter2", "correct-horse"] {
            assert!(!doc.contains(secret), "{secret} copied into:\n{doc}");
        }
    }
}

/// Installed as `kubectl-jvm_guard` on PATH, the binary is `kubectl jvm-guard`: its help and
/// its errors say so (the Krew manifest, `.krew.yaml`, installs it under that name).
#[test]
fn as_a_kubectl_plugin_it_names_itself_kubectl_jvm_guard() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("kubectl-jvm_guard");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_jvm-guard"), &plugin).unwrap();
    let out = Command::new(&plugin)
        .args(["dumps", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = text(&out.stdout);
    assert!(help.contains("Usage: kubectl jvm-guard dumps"), "{help}");
    let out = Command::new(&plugin)
        .arg("no-such-command")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("kubectl jvm-guard"),
        "{}",
        text(&out.stderr)
    );
    // Under its own name it is `jvm-guard`.
    let out = jvm_guard(&["dumps", "--help"], None);
    assert!(text(&out.stdout).contains("Usage: jvm-guard dumps"));
}

/// Without a cluster to talk to, `dumps` fails with the configuration it looked for.
#[test]
fn dumps_without_a_kubeconfig_says_what_it_looked_for() {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_jvm-guard"))
        .args(["dumps", "list", "api-0"])
        .env("HOME", home.path())
        .env("KUBECONFIG", home.path().join("nothing"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("error: no Kubernetes client configuration"),
        "{stderr}"
    );
}

/// The container's side refuses names outside its dump directory, whatever the caller sends.
#[test]
fn agent_dumps_send_refuses_a_path_outside_the_dump_directory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = jvm_guard(
        &["agent-dumps", "--dir", d, "send", "../../etc/passwd"],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(text(&out.stderr).contains("is not a file name in the dump directory"));
    let out = Command::new(env!("CARGO_BIN_EXE_jvm-guard"))
        .args(["agent-dumps", "list"])
        .env_remove("JVM_GUARD_DUMP_DIR")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("JVM_GUARD_DUMP_DIR"));
}

/// The Krew manifest installs the binary under the plugin name the binary answers to, for
/// each platform the static build has.
#[test]
fn the_krew_manifest_installs_the_plugin_name() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(".krew.yaml")).unwrap();
    // krew-release-bot's template lines (`{{addURIAndSha ...}}`) are not YAML until rendered.
    let yaml: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("{{"))
        .map(|l| format!("{l}\n"))
        .collect();
    let manifest: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(manifest["kind"], "Plugin");
    assert_eq!(manifest["metadata"]["name"], "jvm-guard");
    let platforms = manifest["spec"]["platforms"].as_sequence().unwrap();
    let arches: Vec<&str> = platforms
        .iter()
        .map(|p| p["selector"]["matchLabels"]["arch"].as_str().unwrap())
        .collect();
    assert_eq!(arches, ["amd64", "arm64"]);
    for p in platforms {
        assert_eq!(p["bin"], jvm_guard::cli::KUBECTL_PLUGIN);
        assert_eq!(p["files"][0]["to"], jvm_guard::cli::KUBECTL_PLUGIN);
        assert_eq!(p["files"][0]["from"], "jvm-guard");
    }
    assert_eq!(text.matches("{{addURIAndSha").count(), platforms.len());
}
