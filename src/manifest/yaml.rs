//! YAML read as kubectl and Helm read it: YAML 1.1 scalars (go-yaml v2, under sigs.k8s.io/yaml),
//! a duplicate key refused, and numbers as their JSON encoding writes them; and written so that
//! kubectl reads every string back as a string.
//!
//! go-yaml v2 resolves `0755` to the octal 493, `0x1F` to 31, `1_000` to 1000, and the plain
//! words `y`, `yes`, `on` (and `n`, `no`, `off`, any case form it lists) to booleans; the JSON
//! kubectl sends is built from those values, so a string field written `yes` is a boolean there
//! and the API server refuses it. serde-saphyr with `legacy_octal_numbers` resolves the same way.

use std::io::Cursor;

use serde_json::{Map, Number, Value};
use serde_saphyr::{DuplicateKeyPolicy, MessageFormatter, Options, UserMessageFormatter};

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
    let mut input = Cursor::new(text.as_bytes());
    let mut docs = Vec::new();
    for result in serde_saphyr::read_with_options::<_, Value>(&mut input, yaml_1_1(text.len())) {
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

/// go-yaml's resolution, and serde-saphyr's budget scaled to the input: a node or an event
/// takes at least one byte of it (`kubectl get -A -o yaml` is one `List` of every object), and
/// alias replay keeps its own limits. The depth is serde_yaml's, which the preview had before.
fn yaml_1_1(input_len: usize) -> Options {
    let size = input_len.saturating_add(1024);
    serde_saphyr::options! {
        legacy_octal_numbers: true,
        duplicate_keys: DuplicateKeyPolicy::Error,
        with_snippet: false,
        budget: serde_saphyr::budget! {
            max_reader_input_bytes: None,
            max_depth: 128,
            max_documents: size,
            max_nodes: size.max(250_000),
            max_events: size.saturating_mul(2).max(1_000_000),
            max_total_scalar_bytes: size.max(64 << 20),
        },
    }
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

/// What to say after a typed read refused a boolean: in YAML 1.1 a plain `yes` is one.
pub fn hint(error: &serde_json::Error) -> &'static str {
    if error.to_string().contains("invalid type: boolean") {
        " (kubectl reads unquoted yes/no/on/off/y/n as booleans too: quote a string value)"
    } else {
        ""
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

// Private-use characters around a string that must be single-quoted.
const OPEN: char = '\u{E000}';
const CLOSE: char = '\u{E001}';

/// One document as YAML that kubectl reads back to the same JSON. serde_yaml 0.9 quotes a
/// string only when YAML 1.2 would read it as something else, so it writes `yes`, `on` or
/// `1_000` plain, which go-yaml v2 reads as a boolean or a number: such strings (values and
/// keys) are marked before writing and single-quoted after.
pub fn to_yaml(doc: &Value) -> String {
    let write = |v: &Value| serde_yaml::to_string(v).expect("JSON values serialize to YAML");
    if has_marker(doc) {
        return write(doc);
    }
    let marked = write(&marked(doc));
    let mut out = String::with_capacity(marked.len());
    let mut rest = marked.as_str();
    while let Some(start) = rest.find(OPEN) {
        out.push_str(&rest[..start]);
        let inner = &rest[start + OPEN.len_utf8()..];
        let end = inner.find(CLOSE).expect("a marked string is written whole");
        out.push('\'');
        out.push_str(&inner[..end].replace('\'', "''"));
        out.push('\'');
        rest = &inner[end + CLOSE.len_utf8()..];
    }
    out.push_str(rest);
    out
}

/// Whether YAML 1.1 reads `s`, written plain, as something other than the string `s`. Such
/// scalars are short runs of ASCII without spaces; anything else is left to serde_yaml.
fn misread_plain(s: &str) -> bool {
    if s.is_empty() || s.len() > 64 || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return false;
    }
    match serde_saphyr::from_str_with_options::<Value>(s, yaml_1_1(s.len())) {
        Ok(Value::String(read)) => read != s,
        Ok(_) => true,
        Err(_) => false,
    }
}

fn marked(value: &Value) -> Value {
    let mark = |s: &str| {
        if misread_plain(s) {
            format!("{OPEN}{s}{CLOSE}")
        } else {
            s.to_string()
        }
    };
    match value {
        Value::String(s) => Value::String(mark(s)),
        Value::Array(items) => Value::Array(items.iter().map(marked).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (mark(k), marked(v)))
                .collect::<Map<String, Value>>(),
        ),
        other => other.clone(),
    }
}

fn has_marker(value: &Value) -> bool {
    let marker = |s: &str| s.contains(OPEN) || s.contains(CLOSE);
    match value {
        Value::String(s) => marker(s),
        Value::Array(items) => items.iter().any(has_marker),
        Value::Object(map) => map.iter().any(|(k, v)| marker(k) || has_marker(v)),
        _ => false,
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
    fn strings_yaml_1_1_would_misread_are_written_quoted() {
        let words = [
            "yes",
            "No",
            "ON",
            "off",
            "y",
            "N",
            "true",
            "0755",
            "0x1F",
            "1_000",
            "012_3",
            "08",
            "1e3",
            "~",
            "null",
            "",
            "1:30",
            "2024-01-01",
            "plain",
            "-XX:+UseG1GC",
            "it's",
            "a\nb",
        ];
        let doc = Value::Object(
            words
                .iter()
                .map(|w| (w.to_string(), Value::String(w.to_string())))
                .collect(),
        );
        let text = to_yaml(&doc);
        assert!(text.contains("'yes': 'yes'\n"), "{text}");
        assert!(text.contains("'1_000': '1_000'\n"), "{text}");
        assert!(text.contains("plain: plain\n"), "{text}");
        assert_eq!(one(&format!("{text}kind: X\n"))["yes"], "yes");
        assert_eq!(one(&text), doc, "{text}");

        let odd = serde_json::json!({"a": "\u{E000}x\u{E001}", "b": "plain"});
        assert_eq!(one(&to_yaml(&odd)), odd);
    }

    #[test]
    fn large_and_deep_documents_are_read() {
        // serde-saphyr's default is 250 000 nodes a document; reading that many unoptimized takes
        // seconds, so the budget is checked here (a 15 MB List of 3000 Deployments was read).
        let budget = yaml_1_1(50 << 20).budget.expect("a budget");
        assert!(budget.max_nodes >= 50 << 20 && budget.max_events >= 50 << 20);
        assert!(budget.max_total_scalar_bytes >= 50 << 20 && budget.max_documents >= 1 << 20);

        // Unoptimized, each level takes ~20 KiB of stack: more than a test thread's 2 MiB.
        let deep = std::thread::Builder::new().stack_size(32 << 20).spawn(|| {
            let nested = |d: usize| format!("kind: X\nv: {}{}\n", "[".repeat(d), "]".repeat(d));
            assert!(one(&nested(120))["v"].is_array());
            let err = parse_documents(&nested(200)).unwrap_err().to_string();
            assert!(err.contains("Depth"), "{err}");
        });
        deep.unwrap().join().unwrap();
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
