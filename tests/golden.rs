//! Golden tests: `tests/golden/<case>.yaml` in, `<case>.mutated.yaml` out (warnings as
//! comments). Each case is its own test, named after the file: `cargo test --test golden
//! profile-kafka` runs the cases whose name contains `profile-kafka`. `UPDATE_GOLDEN=1 cargo test
//! --test golden [CASE]` rewrites the outputs: review the diff.
//!
//! Input format: an optional first line `# settings: allow-host-path`; lines
//! `# image: REF {"entrypoint": [...], "cmd": [...], "env": ["K=V", ...], "labels": {...}}` (or
//! `# image: REF unknown: WHY`) stand for
//! the registry's answer about an image; if the first document is a Namespace it configures the
//! case like `mutate --namespace`, and is not output.

use std::path::{Path, PathBuf};

use jvm_guard::config::ServerSettings;
use jvm_guard::manifest::{self, Preview};
use jvm_guard::mutate::{ImageConfig, ResolvedImages};
use jvm_guard::{mutate, Defaults, NamespaceConfig};
use k8s_openapi::api::core::v1::{Namespace, Pod, PodSpec};
use libtest_mimic::{Arguments, Failed, Trial};

#[path = "support/idempotence.rs"]
mod idempotence;
#[path = "support/pod_security.rs"]
mod pod_security;
use pod_security::restricted_violations;
use serde_json::Value;

fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/golden exists")
        .map(|e| e.expect("readable dir").path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name.ends_with(".yaml") && !name.ends_with(".mutated.yaml")
        })
        .collect();
    cases.sort();
    cases
}

fn preview_for(text: &str, docs: &mut Vec<Value>) -> Preview {
    let settings = ServerSettings {
        allow_host_path: text
            .lines()
            .next()
            .is_some_and(|l| l.starts_with("# settings:") && l.contains("allow-host-path")),
        webhook_namespace: None,
        tools_image: Some("ghcr.io/jvm-guard/jvm-guard:test".into()),
        ..ServerSettings::default()
    };
    let namespace = match docs.first() {
        Some(d) if d.get("kind").and_then(Value::as_str) == Some("Namespace") => {
            let ns: Namespace = serde_json::from_value(docs.remove(0)).expect("valid Namespace");
            Some(ns)
        }
        _ => None,
    };
    Preview {
        namespace,
        defaults: Defaults::default(),
        settings,
    }
}

/// Every pod (or pod template) in the output must be a valid Pod; mutating it again must
/// change nothing (our status annotation makes `mutate` return early), and so must mutating it
/// again without that annotation, apart from writing the status again. Returns what failed.
/// `images`: the registry's answers of the case, which a re-mutation sees too (the image
/// config is evidence).
fn check_output(
    case: &str,
    preview: &Preview,
    images: &ResolvedImages,
    doc: &Value,
) -> Vec<String> {
    let object = manifest::describe(doc);
    let Some(template) = pod_value(case, doc) else {
        return Vec::new();
    };
    let _: Pod = serde_json::from_value(template.clone())
        .unwrap_or_else(|e| panic!("{case}: output {object} is not a valid pod: {e}"));
    // Read again as the webhook reads a review's pod.
    let pod: mutate::pod::Pod = serde_json::from_value(template.clone()).expect("a valid pod");
    let ns_name = preview
        .namespace
        .as_ref()
        .and_then(|n| n.metadata.name.clone())
        .or_else(|| {
            doc.pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(String::from)
        })
        .unwrap_or_else(|| "default".into());
    let annotations = preview
        .namespace
        .as_ref()
        .and_then(|n| n.metadata.annotations.as_ref());
    let ns = NamespaceConfig::new(&ns_name, annotations, &preview.defaults);
    let mut problems = Vec::new();
    let again = mutate::mutate_with(&pod, &ns, &preview.settings, images);
    if !again.patch.is_empty() {
        problems.push(format!(
            "{case}: {object}: mutating the output again is not a no-op: {:?}",
            again.patch
        ));
    }
    let stripped = idempotence::without_status(&template);
    let stripped_pod: mutate::pod::Pod = serde_json::from_value(stripped.clone())
        .unwrap_or_else(|e| panic!("{case}: output {object} without status is not a pod: {e}"));
    let remutated = mutate::mutate_with(&stripped_pod, &ns, &preview.settings, images);
    if let Err(changes) = idempotence::only_status_changes(&stripped, &remutated.patch.operations())
    {
        problems.push(format!("{case}: {object}: {changes}"));
    }
    problems
}

fn spec_of(pod: &Pod) -> &PodSpec {
    pod.spec.as_ref().expect("a pod spec")
}

/// The pod a document is or stamps out (manifest's own reading of each kind's template path).
fn pod_value(case: &str, doc: &Value) -> Option<Value> {
    let pod = manifest::pod_of(doc)?;
    Some(pod.unwrap_or_else(|e| panic!("{case}: {}: {e}", manifest::describe(doc))))
}

fn pod_of(case: &str, doc: &Value) -> Option<Pod> {
    let pod = pod_value(case, doc)?;
    Some(serde_json::from_value(pod).unwrap_or_else(|e| panic!("{case}: not a valid pod: {e}")))
}

/// The registry's answers the case's `# image:` lines give, for the lookups the preview asks.
fn registry_answers(case: &str, text: &str, preview: &Preview, docs: &[Value]) -> ResolvedImages {
    let mut answers = std::collections::BTreeMap::new();
    for line in text.lines().filter_map(|l| l.strip_prefix("# image: ")) {
        let (image, answer) = line
            .split_once(' ')
            .unwrap_or_else(|| panic!("{case}: `# image: REF ANSWER`: {line}"));
        let answer = match answer.strip_prefix("unknown: ") {
            Some(why) => Err(why.to_string()),
            None => {
                let v: Value = serde_json::from_str(answer)
                    .unwrap_or_else(|e| panic!("{case}: # image: {image}: {e}"));
                let list = |key: &str| -> Vec<String> {
                    v[key]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|s| s.as_str().expect("a string").to_string())
                        .collect()
                };
                let labels = v["labels"].as_object().into_iter().flatten();
                let (env, labels) = ImageConfig::bounded_env(
                    list("env"),
                    labels.map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())),
                );
                Ok(ImageConfig {
                    entrypoint: list("entrypoint"),
                    cmd: list("cmd"),
                    env,
                    labels,
                    ..ImageConfig::default()
                })
            }
        };
        answers.insert(image.to_string(), answer);
    }
    let mut images = ResolvedImages::default();
    for request in preview.images_to_resolve(docs) {
        if let Some(answer) = answers.get(&request.image) {
            images.insert(request, answer.clone());
        }
    }
    images
}

/// The expected output of a case, and what failed in the checks of [`check_output`].
fn render(case: &Path) -> (String, Vec<String>) {
    let text = std::fs::read_to_string(case).expect("readable case");
    let name = case.file_name().unwrap().to_string_lossy().to_string();
    let mut docs = manifest::parse_documents(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let preview = preview_for(&text, &mut docs);
    let restricted = preview.namespace.as_ref().is_some_and(|ns| {
        ns.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("pod-security.kubernetes.io/enforce"))
            == Some(&"restricted".to_string())
    });
    let inputs: Vec<Pod> = docs.iter().filter_map(|d| pod_of(&name, d)).collect();
    let images = registry_answers(&name, &text, &preview, &docs);
    let out = preview
        .run_with(docs, &images)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    if restricted {
        let outputs = out.documents.iter().filter_map(|d| pod_of(&name, d));
        for (before, doc) in inputs.iter().zip(outputs) {
            assert_eq!(
                restricted_violations(spec_of(before)),
                Vec::<String>::new(),
                "{name}: input"
            );
            assert_eq!(
                restricted_violations(spec_of(&doc)),
                Vec::<String>::new(),
                "{name}: output"
            );
        }
    }
    let problems: Vec<String> = out
        .documents
        .iter()
        .flat_map(|doc| check_output(&name, &preview, &images, doc))
        .collect();
    let mut rendered =
        format!("# Generated from {name} by tests/golden.rs (UPDATE_GOLDEN=1 regenerates).\n");
    for (object, warning) in &out.warnings {
        rendered.push_str(&format!("# warning: {object}: {warning}\n"));
    }
    rendered.push_str(&manifest::to_yaml(&out.documents));
    (rendered, problems)
}

/// One case: its checks, then its output against `<case>.mutated.yaml` (rewritten instead under
/// `UPDATE_GOLDEN=1`). A stale or missing output fails the case.
fn golden_case(case: &Path) -> Result<(), Failed> {
    let expected_path = case.with_extension("mutated.yaml");
    let (actual, mut failures) = render(case);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&expected_path, &actual).expect("writable golden file");
    } else {
        match std::fs::read_to_string(&expected_path) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => failures.push(format!(
                "{}: output differs\n--- expected\n{expected}\n--- actual\n{actual}",
                case.display()
            )),
            Err(_) => failures.push(format!(
                "{}: no {} (run UPDATE_GOLDEN=1 cargo test --test golden and review it)",
                case.display(),
                expected_path.display()
            )),
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n\n").into())
    }
}

fn main() {
    let args = Arguments::from_args();
    let cases = cases();
    let found = cases.len();
    let mut trials = vec![
        Trial::test("enough_cases", move || enough_cases(found)),
        Trial::test("no_orphan_outputs", no_orphan_outputs),
        Trial::test(
            "the_restricted_check_finds_violations",
            the_restricted_check_finds_violations,
        ),
    ];
    for case in cases {
        let name = case
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".yaml"))
            .expect("a .yaml case")
            .to_string();
        trials.push(Trial::test(name, move || golden_case(&case)));
    }
    libtest_mimic::run(&args, trials).exit();
}

fn enough_cases(found: usize) -> Result<(), Failed> {
    if found < 20 {
        return Err(format!("expected at least 20 golden cases, found {found}").into());
    }
    Ok(())
}

fn no_orphan_outputs() -> Result<(), Failed> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut orphans = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if let Some(stem) = name.strip_suffix(".mutated.yaml") {
            if !path.with_file_name(format!("{stem}.yaml")).exists() {
                orphans.push(format!("{name} has no input {stem}.yaml"));
            }
        }
    }
    if orphans.is_empty() {
        Ok(())
    } else {
        Err(orphans.join("\n").into())
    }
}

fn the_restricted_check_finds_violations() -> Result<(), Failed> {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "x"},
        "spec": {
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "a", "securityContext": {
                "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN"]}}}],
            "initContainers": [{"name": "b"}],
            "volumes": [{"name": "h", "hostPath": {"path": "/"}}]
        }
    }))
    .unwrap();
    let v = restricted_violations(spec_of(&pod));
    assert!(
        v.contains(&"a: adds capability SYS_ADMIN".to_string()),
        "{v:?}"
    );
    assert!(
        v.contains(&"b: allowPrivilegeEscalation != false".to_string()),
        "{v:?}"
    );
    assert!(
        v.contains(&"b: capabilities do not drop ALL".to_string()),
        "{v:?}"
    );
    assert!(
        v.contains(&"volume h has type hostPath".to_string()),
        "{v:?}"
    );
    Ok(())
}
