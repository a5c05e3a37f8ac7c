//! YAML read as kubectl and Helm read it: YAML 1.1 scalars (go-yaml v2, under sigs.k8s.io/yaml),
//! a duplicate key refused, and numbers as their JSON encoding writes them.
//!
//! go-yaml v2 resolves `0755` to the octal 493, `0x1F` to 31, `1_000` to 1000, and the plain
//! words `y`, `yes`, `on` (and `n`, `no`, `off`, any case form it lists) to booleans; the JSON
//! kubectl sends is built from those values, so a string field written `yes` is a boolean there
//! and the API server refuses it. serde-saphyr with `legacy_octal_numbers` resolves the same way.

use std::io::Cursor;

use serde_json::{Number, Value};
use serde_saphyr::{DuplicateKeyPolicy, MessageFormatter, UserMessageFormatter};

/// Where in the stream a problem is, and what it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum YamlError {
    #[error("document {index}{}: duplicate key {key}", at_line(*line))]
    DuplicateKey {
        index: usize,
        line: Option<u64>,
        key: String,
    },
    #[error("document {index}{}: not valid YAML or JSON: {message}", at_line(*line))]
    Syntax {
        index: usize,
        line: Option<u64>,
        message: String,
    },
}

fn at_line(line: Option<u64>) -> String {
    line.map(|l| format!(", line {l}")).unwrap_or_default()
}

/// Reads every document of a YAML stream (JSON is YAML too), skipping empty ones; `index` in
/// errors counts the documents that are not empty, as the preview's other messages do.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, YamlError> {
    let options = serde_saphyr::options! {
        legacy_octal_numbers: true,
        duplicate_keys: DuplicateKeyPolicy::Error,
        with_snippet: false,
        budget: serde_saphyr::budget! { max_reader_input_bytes: None },
    };
    let mut input = Cursor::new(text.as_bytes());
    let mut docs = Vec::new();
    for result in serde_saphyr::read_with_options::<_, Value>(&mut input, options) {
        match result {
            Ok(mut doc) => {
                as_json_numbers(&mut doc);
                if !doc.is_null() {
                    docs.push(doc);
                }
            }
            Err(e) => return Err(located(docs.len() + 1, &e)),
        }
    }
    Ok(docs)
}

fn located(index: usize, error: &serde_saphyr::Error) -> YamlError {
    let error = error.without_snippet();
    let line = error.location().map(|l| l.line()).filter(|&l| l > 0);
    if let serde_saphyr::Error::DuplicateMappingKey { key, .. } = error {
        return YamlError::DuplicateKey {
            index,
            line,
            key: key.clone().unwrap_or_else(|| "(a complex key)".into()),
        };
    }
    let message = UserMessageFormatter.format_message(error);
    YamlError::Syntax {
        index,
        line,
        message: message.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

/// go-yaml reads `08` or `1e3` as floats and Go's JSON encoder writes a whole float without a
/// fraction (`8`, `1000`), which integer fields then accept: the same here.
fn as_json_numbers(value: &mut Value) {
    match value {
        Value::Number(n) if !n.is_i64() && !n.is_u64() => {
            if let Some(f) = n.as_f64() {
                // Beyond 2^53 a float no longer names one integer.
                if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
                    *n = Number::from(f as i64);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(as_json_numbers),
        Value::Object(map) => map.values_mut().for_each(as_json_numbers),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::json;

    fn one(text: &str) -> Value {
        let mut docs = parse_documents(text).unwrap();
        assert_eq!(docs.len(), 1, "{docs:?}");
        docs.remove(0)
    }

    #[rstest]
    #[case::octal("0755", json!(493))]
    #[case::octal_zero("0", json!(0))]
    #[case::negative_octal("-0644", json!(-420))]
    #[case::hex("0x1F", json!(31))]
    #[case::underscores("1_000", json!(1000))]
    #[case::not_octal_is_a_whole_float("08", json!(8))]
    #[case::exponent("1e3", json!(1000))]
    #[case::fraction("0.5", json!(0.5))]
    #[case::quoted_octal("'0755'", json!("0755"))]
    #[case::yes("yes", json!(true))]
    #[case::on("On", json!(true))]
    #[case::off("OFF", json!(false))]
    #[case::y("y", json!(true))]
    #[case::n("n", json!(false))]
    #[case::quoted_yes("\"yes\"", json!("yes"))]
    #[case::tilde("~", json!(null))]
    #[case::nothing("", json!(null))]
    #[case::sexagesimal_is_a_string("1:30", json!("1:30"))]
    #[case::timestamp_is_a_string("2024-01-01", json!("2024-01-01"))]
    fn scalars_as_go_yaml_v2_reads_them(#[case] scalar: &str, #[case] expected: Value) {
        assert_eq!(one(&format!("kind: X\nv: {scalar}\n"))["v"], expected);
    }

    #[test]
    fn empty_documents_are_skipped() {
        let text =
            "---\n# Source: chart/templates/a.yaml\n---\nkind: A\n---\n---\n\n---\nkind: B\n";
        let docs = parse_documents(text).unwrap();
        assert_eq!(docs, vec![json!({"kind": "A"}), json!({"kind": "B"})]);
    }

    #[test]
    fn json_is_read_too() {
        let doc = one("{\n  \"kind\": \"Pod\",\n\t\"spec\": {\"containers\": []}\n}\n");
        assert_eq!(doc, json!({"kind": "Pod", "spec": {"containers": []}}));
    }

    #[test]
    fn anchors_and_merge_keys_are_expanded() {
        let doc = one("kind: X\nbase: &b {a: 1}\nother:\n  <<: *b\n  c: 2\n");
        assert_eq!(doc["other"], json!({"a": 1, "c": 2}));
    }

    #[test]
    fn a_duplicate_key_names_the_key_document_and_line() {
        let text = "kind: A\n---\n\n---\nkind: Pod\nmetadata:\n  name: a\n  name: b\n";
        let err = parse_documents(text).unwrap_err();
        assert_eq!(
            err,
            YamlError::DuplicateKey {
                index: 2,
                line: Some(8),
                key: "name".into()
            }
        );
        assert_eq!(err.to_string(), "document 2, line 8: duplicate key name");
    }

    #[test]
    fn a_syntax_error_is_one_line() {
        let err = parse_documents("kind: A\n---\nkind: Pod\nspec: [unclosed\n").unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("document 2, line "), "{message}");
        assert!(message.contains("not valid YAML or JSON: "), "{message}");
        assert_eq!(message.lines().count(), 1, "{message}");
    }
}
