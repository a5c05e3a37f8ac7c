//! Idempotence that can fail: a mutated pod, with our status annotation taken off (which alone
//! makes `mutate` return early), is mutated again, and that second mutation may do nothing but
//! write the status again. Shared by tests/properties.rs, tests/golden.rs and fuzz/checks.rs.
#![allow(dead_code)] // each user takes what it needs

use serde_json::Value;

/// The annotation `mutate` returns early on.
pub const STATUS: &str = "jvm-guard.io/status";

/// `pod` without the status annotation, and without `metadata.annotations` when that was its
/// only entry (as the pod was before the first mutation added it).
pub fn without_status(pod: &Value) -> Value {
    let mut pod = pod.clone();
    if let Some(metadata) = pod.get_mut("metadata").and_then(Value::as_object_mut) {
        if let Some(annotations) = metadata
            .get_mut("annotations")
            .and_then(Value::as_object_mut)
        {
            annotations.remove(STATUS);
            if annotations.is_empty() {
                metadata.remove("annotations");
            }
        }
    }
    pod
}

/// What `patch` (the mutation of `stripped`, a pod without the status annotation) changes
/// apart from the status annotation: `Ok(())` when nothing, else every changed JSON pointer
/// with its value before and after, and the patch.
pub fn only_status_changes(stripped: &Value, patch: &json_patch::Patch) -> Result<(), String> {
    let mut after = stripped.clone();
    json_patch::patch(&mut after, patch).map_err(|e| {
        format!(
            "the second patch does not apply: {e}\npatch: {}",
            show(patch)
        )
    })?;
    let after = without_status(&after);
    let mut changes = Vec::new();
    diff("", stripped, &after, &mut changes);
    if changes.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "mutating the output again (status annotation removed) changes more than the \
             status:\n  {}\nsecond patch: {}",
            changes.join("\n  "),
            show(patch)
        ))
    }
}

fn show(patch: &json_patch::Patch) -> String {
    serde_json::to_string(patch).unwrap_or_default()
}

/// Every pointer where `a` and `b` differ, down to the first difference on each path.
fn diff(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                let p = format!("{path}/{}", k.replace('~', "~0").replace('/', "~1"));
                match y.get(k) {
                    Some(w) => diff(&p, v, w, out),
                    None => out.push(format!("{p}: removed (was {v})")),
                }
            }
            for (k, w) in y {
                if !x.contains_key(k) {
                    let p = format!("{path}/{}", k.replace('~', "~0").replace('/', "~1"));
                    out.push(format!("{p}: added {w}"));
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                diff(&format!("{path}/{i}"), v, w, out);
            }
        }
        _ if a == b => {}
        _ => out.push(format!("{path}: {a} -> {b}")),
    }
}
