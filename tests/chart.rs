//! The Helm chart `charts/jvm-guard`, rendered by a real helm: lint, golden renders for each
//! certificate mode and an every-option values file, Kubernetes OpenAPI validation (1.37 and 1.36),
//! values.schema.json refusals, Pod Security "restricted", and the webhook's wiring.
//!
//! helm and kubernetes-validate, at the versions of `tests/versions.env`, come from
//! `scripts/install-chart-tools.sh` (run by `scripts/test.sh`), cached in `~/.cache/jvm-guard`;
//! `JVM_GUARD_HELM` and `JVM_GUARD_KUBERNETES_VALIDATE_DIR` point elsewhere. A missing tool fails the tests.
//! `UPDATE_GOLDEN=1 cargo test --test chart` rewrites `tests/chart-golden/`: review the diff.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use jvm_guard::config::Key;
use jvm_guard::Defaults;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, PodSpec, Secret, SecurityContext, Service, ServiceAccount,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

#[path = "support/pod_security.rs"]
mod pod_security;
use pod_security::restricted_violations;

// The chart's tools; the others are the clusters'.
#[allow(dead_code)]
#[path = "support/versions.rs"]
mod versions;
use versions::{HELM_VERSION, KUBERNETES_VALIDATE_VERSION};

/// The current and the previous Kubernetes minor.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.37.0", "1.36.0"];
const RELEASE: &str = "jg";
const NAMESPACE: &str = "jvm-guard";
const INSTALL_HINT: &str =
    "run scripts/install-chart-tools.sh (scripts/test.sh runs it before cargo test)";

/// A golden case: `charts/jvm-guard/ci/<name>-values.yaml` in, `tests/chart-golden/<name>.yaml`
/// out.
const CASES: [&str; 4] = ["helm", "cert-manager", "existing", "every-option"];

/// Kinds from CRDs, absent from the Kubernetes OpenAPI schemas: not validated by
/// kubernetes-validate (their wiring is asserted by the tests below instead).
const CRD_KINDS: [(&str, &str); 4] = [
    ("cert-manager.io/v1", "Certificate"),
    ("cert-manager.io/v1", "Issuer"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
];

fn cache_dir() -> PathBuf {
    let home = std::env::var_os("HOME").expect("HOME is set");
    Path::new(&home).join(".cache/jvm-guard")
}

fn helm_binary() -> PathBuf {
    let path = std::env::var_os("JVM_GUARD_HELM")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join(format!("bin/helm-{HELM_VERSION}")));
    assert!(
        path.is_file(),
        "helm {HELM_VERSION} not found at {}: {INSTALL_HINT}",
        path.display()
    );
    path
}

fn kubernetes_validate_dir() -> PathBuf {
    let path = std::env::var_os("JVM_GUARD_KUBERNETES_VALIDATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            cache_dir().join(format!("kubernetes-validate-{KUBERNETES_VALIDATE_VERSION}"))
        });
    assert!(
        path.join("kubernetes_validate").is_dir(),
        "kubernetes-validate {KUBERNETES_VALIDATE_VERSION} not found in {}: {INSTALL_HINT}",
        path.display()
    );
    path
}

fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/jvm-guard")
}

fn values_file(case: &str) -> PathBuf {
    chart_dir().join(format!("ci/{case}-values.yaml"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn helm(args: &[&str]) -> Output {
    Command::new(helm_binary())
        .args(args)
        .output()
        .expect("helm runs")
}

/// `helm template` of the chart with extra arguments (`-f FILE`, `--set K=V`): stdout, or stderr
/// on failure.
fn template_with(chart: &Path, args: &[&str]) -> Result<String, String> {
    let chart = chart.to_str().expect("UTF-8 path");
    let mut all = vec!["template", RELEASE, chart, "--namespace", NAMESPACE];
    all.extend_from_slice(args);
    let out = helm(&all);
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(text(&out.stderr))
    }
}

fn template(args: &[&str]) -> Result<String, String> {
    template_with(&chart_dir(), args)
}

fn render_case(case: &str) -> String {
    let values = values_file(case);
    template(&["-f", values.to_str().expect("UTF-8 path")])
        .unwrap_or_else(|e| panic!("helm template with {}: {e}", values.display()))
}

fn documents(rendered: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(rendered)
        .map(|d| Value::deserialize(d).expect("helm renders valid YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

fn kind(doc: &Value) -> (&str, &str) {
    (
        doc["apiVersion"].as_str().unwrap_or_default(),
        doc["kind"].as_str().unwrap_or_default(),
    )
}

/// The single document of a kind, as its k8s-openapi type.
fn one<T: DeserializeOwned>(docs: &[Value], wanted: &str) -> T {
    let found: Vec<&Value> = docs.iter().filter(|d| kind(d).1 == wanted).collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {wanted}, found {}",
        found.len()
    );
    serde_json::from_value(found[0].clone())
        .unwrap_or_else(|e| panic!("the {wanted} does not deserialize: {e}"))
}

/// The document of a kind and name, as its k8s-openapi type.
fn named<T: DeserializeOwned>(docs: &[Value], wanted: &str, name: &str) -> T {
    let found = docs
        .iter()
        .find(|d| kind(d).1 == wanted && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {wanted} {name}"));
    serde_json::from_value(found.clone())
        .unwrap_or_else(|e| panic!("the {wanted} does not deserialize: {e}"))
}

fn count(docs: &[Value], wanted: &str) -> usize {
    docs.iter().filter(|d| kind(d).1 == wanted).count()
}

fn render_docs(case: &str) -> Vec<Value> {
    documents(&render_case(case))
}

// ---------------------------------------------------------------------------------------------
// lint and golden renders

#[test]
fn helm_is_the_pinned_version() {
    let out = helm(&["version", "--template", "{{.Version}}"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        HELM_VERSION,
        "stale helm: {INSTALL_HINT}"
    );
}

#[test]
fn lint_strict_passes_for_the_defaults_and_every_ci_values_file() {
    let chart = chart_dir();
    let chart = chart.to_str().expect("UTF-8 path");
    let mut runs = vec![vec!["lint", "--strict", chart]];
    let files: Vec<PathBuf> = CASES.iter().map(|c| values_file(c)).collect();
    for f in &files {
        runs.push(vec![
            "lint",
            "--strict",
            chart,
            "-f",
            f.to_str().expect("UTF-8"),
        ]);
    }
    for args in runs {
        let out = helm(&args);
        let stdout = text(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 chart(s) linted, 0 chart(s) failed"),
            "helm {}:\n{stdout}{}",
            args.join(" "),
            text(&out.stderr)
        );
    }
}

fn golden_path(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/chart-golden/{case}.yaml"))
}

const GENERATED: &str =
    "<generated by the chart: see helm_mode_generates_an_ecdsa_chain_for_the_service>";

/// The certificate mode a case's values file selects.
fn cert_mode(case: &str) -> String {
    let values: Value =
        serde_yaml::from_str(&std::fs::read_to_string(values_file(case)).expect("values file"))
            .expect("YAML values");
    values["certs"]["mode"]
        .as_str()
        .unwrap_or("helm")
        .to_string()
}

/// The `helm` mode generates a new CA and key on every render: the golden file holds a
/// placeholder instead, and the certificates are checked on their own.
fn stable(rendered: &str) -> String {
    let mut out = String::new();
    for line in rendered.lines() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let generated = ["ca.crt: ", "tls.crt: ", "tls.key: ", "caBundle: "]
            .iter()
            .find(|key| trimmed.starts_with(*key));
        match generated {
            // Base64 of "-----BEGIN": PEM data.
            Some(key) if trimmed[key.len()..].starts_with("LS0tLS1CRUdJTi") => {
                out.push_str(&format!("{indent}{key}{GENERATED}\n"));
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

#[test]
fn renders_match_golden_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    for case in CASES {
        let mut actual = format!(
            "# Rendered by tests/chart.rs: helm template {RELEASE} charts/jvm-guard -n {NAMESPACE} \
             -f charts/jvm-guard/ci/{case}-values.yaml\n# (UPDATE_GOLDEN=1 regenerates; generated \
             certificates are replaced by a placeholder).\n"
        );
        let rendered = render_case(case);
        actual.push_str(&if cert_mode(case) == "helm" {
            stable(&rendered)
        } else {
            rendered
        });
        let path = golden_path(case);
        if update {
            std::fs::create_dir_all(path.parent().expect("parent")).expect("golden dir");
            std::fs::write(&path, &actual).expect("writable golden file");
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => failures.push(format!(
                "{case}: render differs from {}\n--- expected\n{expected}\n--- actual\n{actual}",
                path.display()
            )),
            Err(_) => failures.push(format!(
                "{case}: no {} (run UPDATE_GOLDEN=1 cargo test --test chart and review it)",
                path.display()
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn no_orphan_golden_files_or_values_files() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/chart-golden");
    for entry in std::fs::read_dir(&golden).expect("tests/chart-golden exists") {
        let name = entry.expect("entry").file_name();
        let name = name.to_string_lossy();
        let case = name.strip_suffix(".yaml").unwrap_or(&name);
        assert!(
            CASES.contains(&case),
            "{name} in tests/chart-golden belongs to no case"
        );
    }
    for entry in std::fs::read_dir(chart_dir().join("ci")).expect("charts/jvm-guard/ci exists") {
        let name = entry.expect("entry").file_name();
        let name = name.to_string_lossy();
        let case = name.strip_suffix("-values.yaml").unwrap_or(&name);
        assert!(
            CASES.contains(&case),
            "charts/jvm-guard/ci/{name} is not a case of tests/chart.rs"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Kubernetes OpenAPI schemas

/// Runs kubernetes-validate --strict (unknown fields are errors) on the documents, against every
/// version in KUBERNETES_VERSIONS. Returns its report, or the report as the error.
fn kubernetes_validate(docs: &[Value]) -> Result<String, String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("manifests.yaml");
    let yaml: Vec<String> = docs
        .iter()
        .map(|d| serde_yaml::to_string(d).expect("serializable"))
        .collect();
    std::fs::write(&file, yaml.join("---\n")).expect("written");
    let mut cmd = Command::new("python3");
    cmd.env("PYTHONPATH", kubernetes_validate_dir()).args([
        "-m",
        "kubernetes_validate",
        "--strict",
    ]);
    for v in KUBERNETES_VERSIONS {
        cmd.args(["-k", v]);
    }
    let out = cmd.arg(&file).output().expect("python3 runs");
    let report = text(&out.stdout) + &text(&out.stderr);
    // A core kind without a schema is a WARN with exit 0: that must fail too.
    let passed = report
        .lines()
        .filter(|l| l.starts_with("INFO") && l.contains(" passed "))
        .count();
    if out.status.success() && passed == docs.len() * KUBERNETES_VERSIONS.len() {
        Ok(report)
    } else {
        Err(report)
    }
}

#[test]
fn renders_validate_against_the_kubernetes_1_37_and_1_36_schemas() {
    for case in CASES {
        let docs = render_docs(case);
        let (crds, core): (Vec<Value>, Vec<Value>) =
            docs.into_iter().partition(|d| CRD_KINDS.contains(&kind(d)));
        for d in &crds {
            eprintln!(
                "{case}: {} {}: a CRD kind, not in the Kubernetes schemas: not validated",
                kind(d).0,
                kind(d).1
            );
        }
        assert!(
            core.len() >= 6,
            "{case}: only {} core documents",
            core.len()
        );
        if let Err(report) = kubernetes_validate(&core) {
            panic!("{case}: kubernetes-validate failed:\n{report}");
        }
    }
}

#[test]
fn kubernetes_validate_catches_a_broken_deployment() {
    // Proves the validation above is not vacuous.
    let docs = render_docs("helm");
    let deployment = docs
        .iter()
        .find(|d| kind(d).1 == "Deployment")
        .expect("a Deployment");
    let mut wrong_type = deployment.clone();
    wrong_type["spec"]["replicas"] = Value::from("two");
    let mut unknown_field = deployment.clone();
    unknown_field["spec"]["template"]["spec"]["containers"][0]["securityContex"] =
        serde_json::json!({"runAsNonRoot": true});
    for broken in [wrong_type, unknown_field] {
        let result = kubernetes_validate(&[broken]);
        assert!(
            result.as_ref().is_err_and(|r| r.contains("ERROR")),
            "{result:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// values.schema.json

#[test]
fn the_schema_refuses_wrong_values_naming_the_field() {
    let cases: [(&[&str], &str); 8] = [
        (
            &["--set-string", "replicaCount=2"],
            "at '/replicaCount': got string, want integer",
        ),
        (
            &["--set", "certs.mode=vault"],
            "at '/certs/mode': value must be one of",
        ),
        (
            &["--set", "webhook.failurePolicy=Maybe"],
            "at '/webhook/failurePolicy': value must be one of",
        ),
        (
            &["--set", "webhook.timeoutSeconds=5s"],
            "at '/webhook/timeoutSeconds'",
        ),
        (
            &["--set", "replicas=2"],
            "additional properties 'replicas' not allowed",
        ),
        (
            &["--set", "webhook.sideEffect=None"],
            "additional properties 'sideEffect' not allowed",
        ),
        (
            &["--set", "defaults.max-ram=70"],
            "at '/defaults': additional properties 'max-ram' not allowed",
        ),
        (&["--set", "server.logFormat=xml"], "at '/server/logFormat'"),
    ];
    let chart = chart_dir();
    let chart = chart.to_str().expect("UTF-8");
    for (args, expected) in cases {
        let rendered = template(args);
        let err = rendered.expect_err(&format!("helm template {args:?} should fail"));
        assert!(
            err.contains("values don't meet the specifications of the schema")
                && err.contains(expected),
            "helm template {args:?}: expected {expected:?} in:\n{err}"
        );
        let mut lint = vec!["lint", "--strict", chart];
        lint.extend_from_slice(args);
        let out = helm(&lint);
        let report = text(&out.stdout) + &text(&out.stderr);
        assert!(
            !out.status.success() && report.contains(expected),
            "helm lint {args:?}: expected a failure with {expected:?}:\n{report}"
        );
    }
}

#[test]
fn the_schema_accepts_every_key_of_the_defaults_and_only_those() {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(chart_dir().join("values.schema.json")).expect("schema"),
    )
    .expect("JSON");
    let patterns = schema["properties"]["defaults"]["patternProperties"]
        .as_object()
        .expect("defaults has patternProperties");
    let pattern = patterns.keys().next().expect("one pattern");
    let alternatives = pattern
        .strip_prefix("^(jvm-guard\\.io/)?(")
        .and_then(|p| p.strip_suffix(")$"))
        .unwrap_or_else(|| panic!("unexpected pattern {pattern}"));
    let mut in_schema: Vec<&str> = alternatives.split('|').collect();
    let mut keys: Vec<&str> = Key::ALL.iter().map(|k| k.name()).collect();
    in_schema.sort_unstable();
    keys.sort_unstable();
    assert_eq!(
        in_schema, keys,
        "values.schema.json defaults keys vs config::Key"
    );
}

// ---------------------------------------------------------------------------------------------
// Pod Security "restricted"

fn pod_spec(deployment: &Deployment) -> &PodSpec {
    deployment
        .spec
        .template
        .spec
        .as_ref()
        .expect("a pod template spec")
}

fn pod_labels(deployment: &Deployment) -> BTreeMap<String, String> {
    let meta = deployment.spec.template.metadata.as_ref();
    meta.and_then(|m| m.labels.clone()).expect("pod labels")
}

fn pod_annotations(deployment: &Deployment) -> BTreeMap<String, String> {
    let meta = deployment.spec.template.metadata.as_ref();
    meta.and_then(|m| m.annotations.clone()).unwrap_or_default()
}

#[test]
fn the_deployment_passes_the_restricted_pod_security_profile() {
    for case in CASES {
        let deployment: Deployment = one(&render_docs(case), "Deployment");
        let spec = pod_spec(&deployment);
        assert_eq!(restricted_violations(spec), Vec::<String>::new(), "{case}");
        // Beyond "restricted": the webhook writes nothing, so its root filesystem is read-only.
        let sc = spec.containers[0]
            .security_context
            .as_ref()
            .expect("securityContext");
        assert_eq!(sc.read_only_root_filesystem, Some(true), "{case}");
        assert_eq!(
            sc.run_as_user,
            Some(65532),
            "{case}: the distroless nonroot user"
        );
    }
}

#[test]
fn the_restricted_check_sees_violations() {
    let deployment: Deployment = one(&render_docs("helm"), "Deployment");
    let mut spec = pod_spec(&deployment).clone();
    spec.security_context = None;
    let c = &mut spec.containers[0];
    c.security_context = Some(SecurityContext {
        capabilities: None,
        ..c.security_context.clone().expect("securityContext")
    });
    c.security_context.as_mut().expect("sc").seccomp_profile = None;
    spec.volumes.get_or_insert_with(Vec::new).push(
        serde_json::from_value(serde_json::json!({"name": "h", "hostPath": {"path": "/"}}))
            .expect("volume"),
    );
    let v = restricted_violations(&spec);
    assert!(
        v.contains(&"volume h has type hostPath".to_string()),
        "{v:?}"
    );
    assert!(
        v.contains(&"jvm-guard: capabilities do not drop ALL".to_string()),
        "{v:?}"
    );
    assert!(
        v.contains(&"jvm-guard: seccompProfile None".to_string()),
        "{v:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The webhook configuration and the objects it depends on

fn labels_match(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    assert!(
        selector.match_expressions.is_none(),
        "only matchLabels expected"
    );
    selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v))
}

#[test]
fn the_webhook_configuration_has_the_specified_defaults() {
    let docs = render_docs("helm");
    let config: MutatingWebhookConfiguration = one(&docs, "MutatingWebhookConfiguration");
    let webhooks = config.webhooks.expect("webhooks");
    assert_eq!(webhooks.len(), 1);
    let w = &webhooks[0];
    assert_eq!(w.failure_policy.as_deref(), Some("Ignore"));
    assert_eq!(w.timeout_seconds, Some(5));
    assert_eq!(w.side_effects, "None");
    assert_eq!(w.admission_review_versions, vec!["v1".to_string()]);
    assert_eq!(w.reinvocation_policy.as_deref(), Some("IfNeeded"));
    assert_eq!(w.match_policy.as_deref(), Some("Equivalent"));

    let rules = w.rules.as_ref().expect("rules");
    assert_eq!(rules.len(), 1);
    assert_eq!(
        rules[0].operations.as_deref(),
        Some(&["CREATE".to_string()][..])
    );
    assert_eq!(
        rules[0].resources.as_deref(),
        Some(&["pods".to_string()][..])
    );
    assert_eq!(rules[0].api_groups.as_deref(), Some(&[String::new()][..]));

    // Opt-in namespaces, never the system ones nor the release's own.
    let ns = w.namespace_selector.as_ref().expect("namespaceSelector");
    assert_eq!(
        ns.match_labels,
        Some(BTreeMap::from([(
            "jvm-guard.io/inject".to_string(),
            "enabled".to_string()
        )]))
    );
    let exprs = ns.match_expressions.as_ref().expect("matchExpressions");
    assert_eq!(exprs.len(), 1);
    assert_eq!(exprs[0].key, "kubernetes.io/metadata.name");
    assert_eq!(exprs[0].operator, "NotIn");
    assert_eq!(
        exprs[0].values.as_deref(),
        Some(&["kube-system", "kube-public", "kube-node-lease", NAMESPACE].map(String::from)[..])
    );
    // Opt-out pods.
    let obj = w.object_selector.as_ref().expect("objectSelector");
    assert!(obj.match_labels.is_none());
    let exprs = obj.match_expressions.as_ref().expect("matchExpressions");
    assert_eq!(exprs.len(), 1);
    assert_eq!(
        (
            exprs[0].key.as_str(),
            exprs[0].operator.as_str(),
            exprs[0].values.as_deref()
        ),
        (
            "jvm-guard.io/inject",
            "NotIn",
            Some(&["false".to_string()][..])
        )
    );

    // The apiserver reaches the Service on 443, which forwards to the container's https port.
    let svc_ref = w.client_config.service.as_ref().expect("service reference");
    let service: Service = one(&docs, "Service");
    assert_eq!(Some(&svc_ref.name), service.metadata.name.as_ref());
    assert_eq!(svc_ref.namespace, NAMESPACE);
    assert_eq!(svc_ref.path.as_deref(), Some("/mutate"));
    assert_eq!(svc_ref.port, Some(443));
    let spec = service.spec.expect("service spec");
    let https = spec
        .ports
        .iter()
        .flatten()
        .find(|p| p.port == 443)
        .expect("port 443");
    assert_eq!(https.target_port, Some(IntOrString::String("https".into())));
    let deployment: Deployment = one(&docs, "Deployment");
    let pod_labels = pod_labels(&deployment);
    for (k, v) in spec.selector.expect("service selector") {
        assert_eq!(pod_labels.get(&k), Some(&v), "service selector {k}");
    }
    let container = &pod_spec(&deployment).containers[0];
    let port = container
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("https"))
        .expect("https container port");
    assert_eq!(port.container_port, 8443);
}

#[test]
fn every_webhook_option_is_a_value() {
    let config: MutatingWebhookConfiguration =
        one(&render_docs("every-option"), "MutatingWebhookConfiguration");
    let w = &config.webhooks.expect("webhooks")[0];
    assert_eq!(w.failure_policy.as_deref(), Some("Fail"));
    assert_eq!(w.timeout_seconds, Some(10));
    assert_eq!(w.side_effects, "NoneOnDryRun");
    assert_eq!(w.reinvocation_policy.as_deref(), Some("Never"));
    assert_eq!(w.match_policy.as_deref(), Some("Exact"));
    let ns = w.namespace_selector.as_ref().expect("namespaceSelector");
    let exprs = ns.match_expressions.as_ref().expect("matchExpressions");
    // The user's expression, then the exclusion with the extra namespace and ours.
    assert_eq!(exprs.len(), 2);
    assert_eq!(exprs[0].key, "team");
    assert_eq!(
        exprs[1].values.as_deref(),
        Some(
            &[
                "kube-system",
                "kube-public",
                "kube-node-lease",
                "monitoring",
                NAMESPACE
            ]
            .map(String::from)[..]
        )
    );
    assert_eq!(
        w.object_selector
            .as_ref()
            .and_then(|s| s.match_expressions.as_ref())
            .map(Vec::len),
        Some(2)
    );
}

fn arg_value<'a>(container: &'a Container, flag: &str) -> Option<&'a str> {
    let prefix = format!("{flag}=");
    container
        .args
        .iter()
        .flatten()
        .find_map(|a| a.strip_prefix(prefix.as_str()))
}

fn mount_of<'a>(container: &'a Container, volume: &str) -> &'a str {
    &container
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == volume)
        .unwrap_or_else(|| panic!("volume {volume} mounted"))
        .mount_path
}

#[test]
fn the_deployment_runs_serve_with_the_flags_the_chart_promises() {
    let docs = render_docs("helm");
    let deployment: Deployment = one(&docs, "Deployment");
    assert_eq!(deployment.spec.replicas, Some(2));
    let spec = pod_spec(&deployment);
    let c = &spec.containers[0];
    assert_eq!(
        c.args.as_ref().and_then(|a| a.first()).map(String::as_str),
        Some("serve")
    );
    assert_eq!(arg_value(c, "--addr"), Some("0.0.0.0:8443"));
    assert_eq!(arg_value(c, "--admin-addr"), Some("0.0.0.0:8080"));
    assert_eq!(arg_value(c, "--shutdown-delay"), Some("5s"));
    assert_eq!(arg_value(c, "--log-format"), Some("json"));
    // The tools init container is this very image.
    assert_eq!(arg_value(c, "--tools-image"), c.image.as_deref());
    assert_eq!(
        c.image.as_deref(),
        Some("ghcr.io/jvm-guard/jvm-guard:0.1.0")
    );
    assert_eq!(
        arg_value(c, "--defaults"),
        None,
        "no defaults, no ConfigMap"
    );
    assert_eq!(count(&docs, "ConfigMap"), 0);
    assert!(!c.args.iter().flatten().any(|a| a == "--allow-host-path"));

    // The webhook's own namespace comes from the downward API.
    assert_eq!(
        arg_value(c, "--webhook-namespace"),
        Some("$(POD_NAMESPACE)")
    );
    let env = c
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "POD_NAMESPACE")
        .expect("POD_NAMESPACE");
    let field = env
        .value_from
        .as_ref()
        .and_then(|v| v.field_ref.as_ref())
        .expect("fieldRef");
    assert_eq!(field.field_path, "metadata.namespace");
    // The pod watcher, named in its Lease and Events by the pod's name.
    assert!(c.args.iter().flatten().any(|a| a == "--watch-pods"));
    let identity = c
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "JVM_GUARD_WATCH_IDENTITY")
        .and_then(|e| e.value_from.as_ref()?.field_ref.as_ref())
        .expect("JVM_GUARD_WATCH_IDENTITY from a fieldRef");
    assert_eq!(identity.field_path, "metadata.name");

    // The serving pair comes from the TLS Secret, mounted read-only.
    let tls_dir = mount_of(c, "tls");
    assert_eq!(
        arg_value(c, "--tls-cert"),
        Some(&*format!("{tls_dir}/tls.crt"))
    );
    assert_eq!(
        arg_value(c, "--tls-key"),
        Some(&*format!("{tls_dir}/tls.key"))
    );
    let mount = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == "tls")
        .expect("tls");
    assert_eq!(mount.read_only, Some(true));
    let secret_name = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "tls")
        .and_then(|v| v.secret.as_ref())
        .and_then(|s| s.secret_name.clone())
        .expect("tls volume from a Secret");
    let secret: Secret = one(&docs, "Secret");
    assert_eq!(secret.metadata.name, Some(secret_name));

    // Probes on the admin port; resources set.
    let admin = c
        .ports
        .iter()
        .flatten()
        .find(|p| p.container_port == 8080)
        .and_then(|p| p.name.clone())
        .expect("named admin port");
    for (probe, path) in [
        (&c.readiness_probe, "/readyz"),
        (&c.liveness_probe, "/healthz"),
    ] {
        let get = probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .expect("httpGet probe");
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(get.port, IntOrString::String(admin.clone()));
    }
    let resources = c.resources.as_ref().expect("resources");
    assert!(resources
        .requests
        .as_ref()
        .is_some_and(|r| r.contains_key("memory")));
    assert!(resources
        .limits
        .as_ref()
        .is_some_and(|r| r.contains_key("memory")));

    // Availability: a PDB and a spread over nodes and zones, both selecting these pods.
    let pod_labels = pod_labels(&deployment);
    let pdb: PodDisruptionBudget = one(&docs, "PodDisruptionBudget");
    let pdb = pdb.spec.expect("pdb spec");
    assert_eq!(pdb.min_available, Some(IntOrString::Int(1)));
    assert!(labels_match(
        pdb.selector.as_ref().expect("selector"),
        &pod_labels
    ));
    let spread = spec.topology_spread_constraints.as_ref().expect("spread");
    let keys: Vec<&str> = spread.iter().map(|t| t.topology_key.as_str()).collect();
    assert_eq!(
        keys,
        ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]
    );
    for t in spread {
        assert!(labels_match(
            t.label_selector.as_ref().expect("labelSelector"),
            &pod_labels
        ));
    }

    // Least privilege: namespaces get/list/watch; the pod watcher's pods get/list/watch,
    // events create/patch, and its one Lease in the release namespace; bound to the pods'
    // service account.
    let sa: ServiceAccount = one(&docs, "ServiceAccount");
    assert_eq!(spec.service_account_name, sa.metadata.name);
    let role: ClusterRole = one(&docs, "ClusterRole");
    let rules = |rules: Option<Vec<k8s_openapi::api::rbac::v1::PolicyRule>>| -> Vec<String> {
        rules
            .expect("rules")
            .iter()
            .map(|r| {
                format!(
                    "{:?} {:?} {:?} {:?}",
                    r.api_groups.clone().unwrap_or_default(),
                    r.resources.clone().unwrap_or_default(),
                    r.resource_names.clone().unwrap_or_default(),
                    r.verbs
                )
            })
            .collect()
    };
    assert_eq!(
        rules(role.rules.clone()),
        [
            r#"[""] ["namespaces"] [] ["get", "list", "watch"]"#,
            r#"[""] ["pods"] [] ["get", "list", "watch"]"#,
            r#"["events.k8s.io"] ["events"] [] ["create", "patch"]"#,
        ]
    );
    let lease: Role = one(&docs, "Role");
    assert_eq!(lease.metadata.namespace.as_deref(), Some(NAMESPACE));
    assert_eq!(
        rules(lease.rules),
        [
            r#"["coordination.k8s.io"] ["leases"] [] ["create"]"#,
            r#"["coordination.k8s.io"] ["leases"] ["jvm-guard-pod-watcher"] ["get", "patch", "update"]"#,
        ]
    );
    assert_eq!(
        jvm_guard::watch::LEASE_NAME,
        "jvm-guard-pod-watcher",
        "the Role names the Lease serve uses"
    );
    let lease_binding: RoleBinding = one(&docs, "RoleBinding");
    assert_eq!(lease_binding.role_ref.name, lease.metadata.name.unwrap());
    let binding: ClusterRoleBinding = one(&docs, "ClusterRoleBinding");
    assert_eq!(Some(binding.role_ref.name), role.metadata.name);
    let subjects = binding.subjects.expect("subjects");
    assert_eq!(subjects.len(), 1);
    assert_eq!(
        (
            subjects[0].kind.as_str(),
            Some(&subjects[0].name),
            subjects[0].namespace.as_deref()
        ),
        ("ServiceAccount", sa.metadata.name.as_ref(), Some(NAMESPACE))
    );
}

#[test]
fn one_replica_gets_no_pdb_that_would_block_drains() {
    let docs = documents(&template(&["--set", "replicaCount=1"]).expect("renders"));
    assert_eq!(count(&docs, "PodDisruptionBudget"), 0);
    assert_eq!(count(&render_docs("helm"), "PodDisruptionBudget"), 1);
}

#[test]
fn cluster_defaults_are_a_configmap_that_jvm_guard_accepts() {
    let docs = render_docs("every-option");
    let deployment: Deployment = one(&docs, "Deployment");
    let spec = pod_spec(&deployment);
    let c = &spec.containers[0];
    let config_map: ConfigMap = named(&docs, "ConfigMap", "jvm-guard-webhook-defaults");
    let text = config_map
        .data
        .as_ref()
        .and_then(|d| d.get("defaults.yaml"))
        .expect("defaults.yaml");
    // The same parser `serve --defaults` uses at start-up: unknown keys and bad values fail.
    let defaults = Defaults::from_yaml(text).unwrap_or_else(|e| panic!("{e}:\n{text}"));
    assert_ne!(defaults, Defaults::default());
    assert!(text.contains("\"dump-keep\": \"5\""), "{text}");
    let dir = mount_of(c, "defaults");
    assert_eq!(
        arg_value(c, "--defaults"),
        Some(&*format!("{dir}/defaults.yaml"))
    );
    let volume = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "defaults")
        .and_then(|v| v.config_map.as_ref())
        .expect("defaults volume from a ConfigMap");
    assert_eq!(Some(&volume.name), config_map.metadata.name.as_ref());
    // A change of the defaults rolls the pods.
    let annotations = pod_annotations(&deployment);
    let checksum = annotations
        .get("checksum/defaults")
        .expect("checksum/defaults");
    assert_eq!(checksum.len(), 64);
    let other = documents(
        &template(&[
            "-f",
            values_file("every-option").to_str().expect("UTF-8"),
            "--set",
            "defaults.dump-keep=6",
        ])
        .expect("renders"),
    );
    let other: Deployment = one(&other, "Deployment");
    let other_checksum = pod_annotations(&other).get("checksum/defaults").cloned();
    assert_ne!(other_checksum.as_ref(), Some(checksum));
    assert!(c.args.iter().flatten().any(|a| a == "--allow-host-path"));
}

// ---------------------------------------------------------------------------------------------
// Certificates

fn openssl(args: &[&str], dir: &Path) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        text(&out.stderr)
    );
    text(&out.stdout)
}

#[test]
fn helm_mode_generates_an_ecdsa_chain_for_the_service() {
    let docs = render_docs("helm");
    let secret: Secret = one(&docs, "Secret");
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let data = secret.data.expect("data");
    let config: MutatingWebhookConfiguration = one(&docs, "MutatingWebhookConfiguration");
    let ca_bundle = config.webhooks.expect("webhooks")[0]
        .client_config
        .ca_bundle
        .clone()
        .expect("caBundle");
    assert_eq!(
        Some(&ca_bundle),
        data.get("ca.crt"),
        "caBundle is the Secret's CA"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    for name in ["ca.crt", "tls.crt", "tls.key"] {
        let pem = &data.get(name).unwrap_or_else(|| panic!("{name}")).0;
        assert!(pem.starts_with(b"-----BEGIN "), "{name} is PEM");
        std::fs::write(dir.path().join(name), pem).expect("written");
    }
    let dir = dir.path();
    let verified = openssl(
        &[
            "verify",
            "-purpose",
            "sslserver",
            "-CAfile",
            "ca.crt",
            "tls.crt",
        ],
        dir,
    );
    assert_eq!(verified.trim(), "tls.crt: OK");
    let ca = openssl(&["x509", "-in", "ca.crt", "-noout", "-text"], dir);
    for expected in ["CA:TRUE", "id-ecPublicKey", "prime256v1"] {
        assert!(ca.contains(expected), "{expected} in\n{ca}");
    }
    let cert = openssl(&["x509", "-in", "tls.crt", "-noout", "-text"], dir);
    for expected in [
        "id-ecPublicKey",
        "prime256v1",
        "TLS Web Server Authentication",
    ] {
        assert!(cert.contains(expected), "{expected} in\n{cert}");
    }
    let service = format!("{RELEASE}-jvm-guard");
    let sans = openssl(
        &["x509", "-in", "tls.crt", "-noout", "-ext", "subjectAltName"],
        dir,
    );
    for name in [
        format!("DNS:{service}.{NAMESPACE}.svc"),
        format!("DNS:{service}.{NAMESPACE}.svc.cluster.local"),
    ] {
        assert!(sans.contains(&name), "{name} in {sans}");
    }
    // The key is the certificate's.
    assert_eq!(
        openssl(&["pkey", "-in", "tls.key", "-pubout"], dir),
        openssl(&["x509", "-in", "tls.crt", "-noout", "-pubkey"], dir)
    );
}

#[test]
fn cert_manager_mode_issues_the_secret_and_injects_the_ca() {
    let docs = render_docs("cert-manager");
    assert_eq!(count(&docs, "Secret"), 0, "cert-manager writes the Secret");
    let config: MutatingWebhookConfiguration = one(&docs, "MutatingWebhookConfiguration");
    assert!(config.webhooks.as_ref().expect("webhooks")[0]
        .client_config
        .ca_bundle
        .is_none());
    let inject = config
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("cert-manager.io/inject-ca-from"))
        .expect("cert-manager.io/inject-ca-from");
    let deployment: Deployment = one(&docs, "Deployment");
    let secret_name = pod_spec(&deployment)
        .volumes
        .iter()
        .flatten()
        .find_map(|v| v.secret.as_ref().and_then(|s| s.secret_name.clone()))
        .expect("tls secret volume");
    let service = format!("{RELEASE}-jvm-guard");
    let certificates: Vec<&Value> = docs
        .iter()
        .filter(|d| kind(d) == ("cert-manager.io/v1", "Certificate"))
        .collect();
    let serving = certificates
        .iter()
        .find(|c| c["spec"]["secretName"] == secret_name.as_str())
        .expect("a Certificate writing the mounted Secret");
    assert_eq!(
        *inject,
        format!(
            "{NAMESPACE}/{}",
            serving["metadata"]["name"].as_str().expect("name")
        )
    );
    assert_eq!(serving["spec"]["privateKey"]["algorithm"], "ECDSA");
    let dns: Vec<&str> = serving["spec"]["dnsNames"]
        .as_array()
        .expect("dnsNames")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        dns.contains(&format!("{service}.{NAMESPACE}.svc").as_str()),
        "{dns:?}"
    );
    // Its issuer is the chart's CA issuer, itself from a self-signed CA Certificate.
    let issuer = serving["spec"]["issuerRef"]["name"]
        .as_str()
        .expect("issuerRef");
    let ca_issuer = docs
        .iter()
        .find(|d| kind(d) == ("cert-manager.io/v1", "Issuer") && d["metadata"]["name"] == issuer)
        .expect("the issuer is rendered");
    let ca_secret = ca_issuer["spec"]["ca"]["secretName"]
        .as_str()
        .expect("a CA issuer");
    assert!(certificates
        .iter()
        .any(|c| c["spec"]["secretName"] == ca_secret && c["spec"]["isCA"] == true));

    // With an existing issuer, only the serving Certificate is rendered.
    let with_issuer = documents(
        &template(&[
            "--set",
            "certs.mode=cert-manager",
            "--set",
            "certs.certManager.issuerRef.name=platform-ca",
            "--set",
            "certs.certManager.issuerRef.kind=ClusterIssuer",
        ])
        .expect("renders"),
    );
    assert_eq!(count(&with_issuer, "Issuer"), 0);
    assert_eq!(count(&with_issuer, "Certificate"), 1);
    let cert = with_issuer
        .iter()
        .find(|d| kind(d).1 == "Certificate")
        .expect("Certificate");
    assert_eq!(cert["spec"]["issuerRef"]["kind"], "ClusterIssuer");
}

#[test]
fn existing_mode_mounts_the_given_secret_with_the_given_ca() {
    let docs = render_docs("existing");
    assert_eq!(count(&docs, "Secret"), 0);
    assert_eq!(count(&docs, "Certificate"), 0);
    let deployment: Deployment = one(&docs, "Deployment");
    let secret_name = pod_spec(&deployment)
        .volumes
        .iter()
        .flatten()
        .find_map(|v| v.secret.as_ref().and_then(|s| s.secret_name.clone()));
    assert_eq!(secret_name.as_deref(), Some("my-webhook-tls"));
    let config: MutatingWebhookConfiguration = one(&docs, "MutatingWebhookConfiguration");
    let ca = config.webhooks.expect("webhooks")[0]
        .client_config
        .ca_bundle
        .clone()
        .expect("caBundle");
    assert_eq!(ca.0, b"-----BEGIN CERTIFICATE-----\n");

    for (args, expected) in [
        (
            [
                "--set",
                "certs.mode=existing",
                "--set",
                "certs.existing.caBundle=Zm9v",
            ],
            "certs.existing.secretName is required",
        ),
        (
            [
                "--set",
                "certs.mode=existing",
                "--set",
                "certs.existing.secretName=s",
            ],
            "certs.existing.caBundle",
        ),
    ] {
        let err = template(&args).expect_err("a missing value fails the render");
        assert!(err.contains(expected), "{expected} in {err}");
    }
}

// ---------------------------------------------------------------------------------------------
// NOTES.txt

/// NOTES.txt as `helm install` prints it. `helm template` leaves NOTES.txt out and a client
/// dry-run install still needs a cluster, so a copy of the chart renders it into a ConfigMap.
fn render_notes(args: &[&str]) -> String {
    let copy = tempfile::tempdir().expect("temp dir");
    let chart = copy.path().join("jvm-guard");
    copy_dir(&chart_dir(), &chart);
    let notes = std::fs::read_to_string(chart.join("templates/NOTES.txt")).expect("NOTES.txt");
    std::fs::write(
        chart.join("templates/_notes_preview.tpl"),
        format!("{{{{- define \"notes-preview\" -}}}}\n{notes}{{{{- end -}}}}\n"),
    )
    .expect("written");
    std::fs::write(
        chart.join("templates/notes-preview.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  notes: {{ include \"notes-preview\" . | toJson }}\n",
    )
    .expect("written");
    let mut all = vec!["--show-only", "templates/notes-preview.yaml"];
    all.extend_from_slice(args);
    let rendered = template_with(&chart, &all).expect("NOTES.txt renders");
    let config_map: ConfigMap = one(&documents(&rendered), "ConfigMap");
    config_map.data.expect("data")["notes"].clone()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("readable") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copied");
        }
    }
}

#[test]
fn notes_tell_how_to_opt_in_and_preview() {
    let notes = render_notes(&[]);
    for expected in [
        "kubectl label namespace my-apps jvm-guard.io/inject=enabled",
        "jvm-guard mutate -f deployment.yaml --namespace ns.yaml",
        "jvm-guard.io/inject: \"false\"",
        "Never mutated: kube-system, kube-public, kube-node-lease, jvm-guard.",
        &format!("rollout status deployment/{RELEASE}-jvm-guard"),
        "reused on upgrade",
    ] {
        assert!(notes.contains(expected), "{expected:?} in NOTES:\n{notes}");
    }
    assert!(!notes.contains("--defaults"), "{notes}");
    let notes = render_notes(&[
        "--set",
        "defaults.probes=tcp",
        "--set",
        "certs.mode=cert-manager",
    ]);
    assert!(notes.contains("--defaults defaults.yaml"), "{notes}");
    assert!(notes.contains("get certificate"), "{notes}");
    assert!(!notes.contains("reused on upgrade"), "{notes}");
}

// ---------------------------------------------------------------------------------------------
// The image the chart runs (built from the Dockerfile where Docker exists)

#[test]
fn the_image_holds_the_binary_where_the_chart_and_the_init_container_expect_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).expect("Dockerfile");
    let builder = dockerfile
        .lines()
        .find_map(|l| {
            // The build stage runs on the builder's platform and cross-builds (SPEC §10).
            l.strip_prefix("FROM --platform=$BUILDPLATFORM rust:")
                .or_else(|| l.strip_prefix("FROM rust:"))
        })
        .and_then(|l| l.split_once("-bookworm AS build"))
        .map(|(version, _)| version)
        .expect("a rust:<version>-bookworm builder stage");
    let parse =
        |v: &str| -> Vec<u32> { v.split('.').map(|n| n.parse().expect("number")).collect() };
    assert!(
        parse(builder) >= parse(env!("CARGO_PKG_RUST_VERSION")),
        "the builder's Rust {builder} is older than Cargo.toml's rust-version"
    );
    // Both platforms, each with the static build scripts/test.sh makes (tests/musl.rs).
    for expected in [
        "amd64) target=x86_64-unknown-linux-musl",
        "arm64) target=aarch64-unknown-linux-musl",
        "--release --locked --target \"$target\" --bin jvm-guard",
    ] {
        assert!(
            dockerfile.contains(expected),
            "{expected:?} in the Dockerfile"
        );
    }
    let (_, final_stage) = dockerfile.rsplit_once("\nFROM ").expect("two stages");
    let binary = jvm_guard::mutate::tools::IMAGE_BINARY;
    for expected in [
        "gcr.io/distroless/static-debian12:nonroot\n".to_string(),
        format!("COPY --from=build /jvm-guard {binary}\n"),
        "USER 65532:65532\n".to_string(),
        format!("ENTRYPOINT [\"{binary}\"]\n"),
        "CMD [\"serve\"]\n".to_string(),
    ] {
        assert!(
            final_stage.contains(&expected),
            "{expected:?} in the final stage"
        );
    }
    let ignore = std::fs::read_to_string(root.join(".dockerignore")).expect(".dockerignore");
    for expected in ["target/", ".git", "certs/*.key"] {
        assert!(
            ignore.lines().any(|l| l == expected),
            "{expected} in .dockerignore"
        );
    }

    // The chart's default image is the one this version publishes, and the binary's default
    // tools image.
    let chart: Value = serde_yaml::from_str(
        &std::fs::read_to_string(chart_dir().join("Chart.yaml")).expect("Chart.yaml"),
    )
    .expect("YAML");
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"));
    let deployment: Deployment = one(&render_docs("helm"), "Deployment");
    assert_eq!(
        pod_spec(&deployment).containers[0].image.as_deref(),
        Some(jvm_guard::cli::DEFAULT_TOOLS_IMAGE)
    );
}

// ---------------------------------------------------------------------------------------------
// Image resolution (SPEC §7)

/// The container's args as `jvm-guard serve` reads them.
fn serve_args(docs: &[Value]) -> jvm_guard::cli::ServeArgs {
    use clap::Parser as _;
    let deployment: Deployment = one(docs, "Deployment");
    let c = &pod_spec(&deployment).containers[0];
    let args = c.args.clone().unwrap_or_default();
    // $(POD_NAMESPACE) is expanded by the kubelet.
    let argv = std::iter::once("jvm-guard".to_string()).chain(
        args.into_iter()
            .map(|a| a.replace("$(POD_NAMESPACE)", "jvm-guard")),
    );
    match jvm_guard::cli::Cli::try_parse_from(argv) {
        Ok(jvm_guard::cli::Cli {
            command: jvm_guard::cli::Command::Serve(args),
        }) => args,
        other => panic!("the chart's args are not a serve command line: {other:?}"),
    }
}

fn grants_secrets(docs: &[Value]) -> bool {
    let role: ClusterRole = one(docs, "ClusterRole");
    role.rules
        .iter()
        .flatten()
        .any(|r| r.resources.iter().flatten().any(|res| res == "secrets"))
}

#[test]
fn image_resolution_values_become_flags_and_pull_secrets_get_on_secrets() {
    // Default: lookups on, anonymous, no secrets read or granted.
    let docs = render_docs("helm");
    let args = serve_args(&docs);
    assert!(!args.registry.offline);
    assert!(!args.image_pull_secrets);
    assert!(args.registry.insecure_registries.is_empty());
    assert!(!grants_secrets(&docs), "no access to Secrets by default");

    let docs = render_docs("every-option");
    let args = serve_args(&docs);
    assert!(args.image_pull_secrets);
    assert_eq!(
        args.registry.insecure_registries,
        ["registry.example.com:5000", "registry.local:5000"]
    );
    assert_eq!(
        args.registry.registry_timeout,
        std::time::Duration::from_secs(2)
    );
    assert!(grants_secrets(&docs));
    let role: ClusterRole = one(&docs, "ClusterRole");
    let secrets = role
        .rules
        .iter()
        .flatten()
        .find(|r| r.resources.iter().flatten().any(|res| res == "secrets"))
        .expect("secrets rule");
    assert_eq!(secrets.verbs, ["get"], "get only: no list, no watch");
    assert_eq!(
        secrets.resources.as_deref(),
        Some(&["secrets".to_string()][..])
    );

    // Off: never contact a registry, and no Secrets whatever pullSecrets says.
    let off = documents(
        &template(&[
            "--set",
            "imageResolution.enabled=false",
            "--set",
            "imageResolution.pullSecrets.enabled=true",
        ])
        .expect("renders"),
    );
    let args = serve_args(&off);
    assert!(args.registry.offline);
    assert!(!args.image_pull_secrets);
    assert!(!grants_secrets(&off));

    for (set, expected) in [
        (
            "imageResolution.timeout=soon",
            "at '/imageResolution/timeout'",
        ),
        (
            "imageResolution.insecureRegistries={http://registry.local:5000}",
            "at '/imageResolution/insecureRegistries/0'",
        ),
        (
            "imageResolution.pullSecret.enabled=true",
            "additional properties 'pullSecret' not allowed",
        ),
    ] {
        let err = template(&["--set", set]).expect_err(set);
        assert!(
            err.contains(expected),
            "{set}: expected {expected:?} in:\n{err}"
        );
    }
}

#[test]
fn pull_secrets_need_client_authentication_and_a_network_policy_limits_the_ports() {
    // Reading pull secrets without authenticating the caller is refused at render time.
    let refused = template(&["--set", "imageResolution.pullSecrets.enabled=true"])
        .expect_err("pull secrets without clientAuth must not render");
    assert!(
        refused.contains("imageResolution.pullSecrets.enabled needs clientAuth.caConfigMap"),
        "{refused}"
    );

    // Default: no client authentication, no NetworkPolicy.
    let docs = render_docs("helm");
    assert_eq!(serve_args(&docs).client_ca, None);
    assert_eq!(count(&docs, "NetworkPolicy"), 0);

    let docs = render_docs("every-option");
    let args = serve_args(&docs);
    assert_eq!(
        args.client_ca.as_deref(),
        Some(Path::new("/etc/jvm-guard/client-ca/ca.crt"))
    );
    let deployment: Deployment = one(&docs, "Deployment");
    let pod = deployment.spec.template.spec.unwrap();
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "client-ca")
        .expect("client-ca volume");
    assert_eq!(
        volume.config_map.as_ref().map(|c| c.name.as_str()),
        Some("apiserver-client-ca")
    );
    let mounted = pod.containers[0]
        .volume_mounts
        .iter()
        .flatten()
        .any(|m| m.name == "client-ca" && m.mount_path == "/etc/jvm-guard/client-ca");
    assert!(mounted, "client-ca mounted where --client-ca points");

    let policy: k8s_openapi::api::networking::v1::NetworkPolicy = one(&docs, "NetworkPolicy");
    let spec = policy.spec.unwrap();
    assert_eq!(
        spec.pod_selector
            .as_ref()
            .and_then(|s| s.match_labels.clone()),
        pod_selector_labels(&docs)
    );
    assert!(pod_selector_labels(&docs).is_some_and(|l| !l.is_empty()));
    let ingress = spec.ingress.unwrap();
    let port = |rule: &k8s_openapi::api::networking::v1::NetworkPolicyIngressRule| {
        rule.ports.as_ref().unwrap()[0].port.clone()
    };
    assert_eq!(port(&ingress[0]), Some(IntOrString::String("https".into())));
    assert_eq!(
        ingress[0].from.as_ref().unwrap()[0]
            .ip_block
            .as_ref()
            .unwrap()
            .cidr,
        "192.0.2.10/32"
    );
    assert_eq!(
        port(&ingress[1]),
        Some(IntOrString::String("metrics".into()))
    );
    assert!(ingress[1].from.as_ref().unwrap()[0]
        .namespace_selector
        .is_some());
}

/// The webhook pods' labels as the Deployment selects them.
fn pod_selector_labels(docs: &[Value]) -> Option<BTreeMap<String, String>> {
    let deployment: Deployment = one(docs, "Deployment");
    deployment.spec.selector.match_labels
}

#[test]
fn the_alerts_and_the_dashboard_are_the_files_promtool_and_grafana_read() {
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/jvm-guard/files");
    let docs = render_docs("every-option");
    // The PrometheusRule's spec is the rules file verbatim (promtool tests that file).
    let rule = docs
        .iter()
        .find(|d| kind(d) == ("monitoring.coreos.com/v1", "PrometheusRule"))
        .expect("a PrometheusRule");
    let file: Value = serde_yaml::from_str(
        &std::fs::read_to_string(chart.join("prometheus-rules.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(rule["spec"], file);
    assert_eq!(rule["metadata"]["labels"]["release"], "prometheus");
    let alerts: Vec<&str> = file["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["alert"].as_str())
        .collect();
    assert_eq!(
        alerts,
        [
            "JvmGuardCertificateExpiring",
            "JvmGuardAdmissionErrors",
            "JvmGuardUnguardedPods",
            "JvmHeapOutOfMemory",
            "JvmKilledByKernel"
        ]
    );
    // The dashboard's ConfigMap, where the Grafana chart's sidecar finds it.
    let dashboard: ConfigMap = named(&docs, "ConfigMap", "jvm-guard-webhook-dashboard");
    assert_eq!(dashboard.metadata.namespace.as_deref(), Some("monitoring"));
    let labels = dashboard.metadata.labels.unwrap();
    assert_eq!(
        labels.get("grafana_dashboard").map(String::as_str),
        Some("1")
    );
    let annotations = dashboard.metadata.annotations.unwrap();
    assert_eq!(
        annotations.get("grafana_folder").map(String::as_str),
        Some("jvm-guard")
    );
    let json = &dashboard.data.unwrap()["jvm-guard.json"];
    let rendered: Value = serde_json::from_str(json).expect("the dashboard is JSON");
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(chart.join("grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(rendered, file);
    // Off by default.
    let defaults = render_docs("helm");
    assert_eq!(count(&defaults, "PrometheusRule"), 0);
    assert_eq!(count(&defaults, "ConfigMap"), 0);
}
