//! What a review body holds that the webhook never reads, cut out before parsing: the pod's
//! `metadata.managedFields` (about four JSON objects per env var, in every real review), and
//! the request's identity, read without parsing, for the log line of a refused request.
//!
//! One pass over the bytes, no recursion into the values it skips (a body of nested arrays
//! cannot exhaust the stack); a body it cannot follow is handed on unchanged, for the real
//! parser to refuse.

use std::borrow::Cow;
use std::ops::Range;

#[cfg(target_arch = "x86_64")]
use super::cost::container_end;
use super::cost::string_end;

/// What one pass over a review body found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Lean {
    /// The body without `managedFields` in `request.object` and `request.oldObject`, when it
    /// had any.
    pub body: Option<Vec<u8>>,
    /// `request.namespace`, as far as it could be read.
    pub namespace: Option<String>,
    /// `request.object.metadata.name`, else its `generateName`, else `request.name`.
    pub name: Option<String>,
}

/// Reads `body` as an AdmissionReview far enough to cut out its `managedFields` and name it.
pub fn lean(body: &[u8]) -> Lean {
    let mut scan = Scan {
        b: body,
        i: 0,
        cuts: Vec::new(),
        found: Found::default(),
    };
    if scan.review().is_none() {
        // Not an object we can follow: leave it whole to the parser, and name nothing.
        return Lean::default();
    }
    let Found {
        namespace,
        request_name,
        name,
        generate_name,
    } = scan.found;
    Lean {
        body: (!scan.cuts.is_empty()).then(|| splice(body, &scan.cuts)),
        namespace,
        name: name.or(generate_name).or(request_name),
    }
}

/// [`lean`]'s body, scanned only when the body names the key (a word-at-a-time search): a body
/// without `managedFields` is passed over. An escaped key is not found, and then counted by
/// the parse cost like any other member.
pub fn cut(body: &[u8]) -> Option<Vec<u8>> {
    memchr::memmem::find(body, b"\"managedFields\"")?;
    lean(body).body
}

/// `body` with each range replaced by its text; the ranges are in order and apart.
fn splice(body: &[u8], cuts: &[(Range<usize>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut at = 0;
    for (range, text) in cuts {
        out.extend_from_slice(&body[at..range.start]);
        out.extend_from_slice(text);
        at = range.end;
    }
    out.extend_from_slice(&body[at..]);
    out
}

#[derive(Default)]
struct Found {
    namespace: Option<String>,
    request_name: Option<String>,
    name: Option<String>,
    generate_name: Option<String>,
}

/// Where the scan is: which keys it looks into.
#[derive(Clone, Copy, PartialEq)]
enum At {
    Review,
    Request,
    Object,
    Metadata,
}

struct Scan<'a> {
    b: &'a [u8],
    i: usize,
    cuts: Vec<(Range<usize>, Vec<u8>)>,
    found: Found,
}

impl Scan<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// A string, from its opening quote; returns its raw range (quotes included).
    fn string(&mut self) -> Option<Range<usize>> {
        let start = self.i;
        self.eat(b'"')?;
        let end = string_end(self.b, self.i);
        self.i = (end + 1).min(self.b.len());
        (end < self.b.len()).then_some(start..self.i)
    }

    /// Any value, skipped without recursion; returns its range.
    fn skip(&mut self) -> Option<Range<usize>> {
        let start = match self.peek()? {
            b'"' => return self.string(),
            // An object or array (the pod's spec, the managedFields), a block at a time.
            #[cfg(target_arch = "x86_64")]
            b'{' | b'[' => {
                let start = self.i;
                self.i = container_end(self.b, start)?;
                return Some(start..self.i);
            }
            _ => self.i,
        };
        let mut depth = 0usize;
        while let Some(&c) = self.b.get(self.i) {
            match c {
                b'"' => {
                    self.string()?;
                    continue;
                }
                b'{' | b'[' => depth += 1,
                b'}' | b']' if depth == 0 => break,
                b'}' | b']' => {
                    depth -= 1;
                    if depth == 0 {
                        self.i += 1;
                        break;
                    }
                }
                b',' if depth == 0 => break,
                _ => {}
            }
            self.i += 1;
        }
        (depth == 0 && self.i > start).then_some(start..self.i)
    }

    fn review(&mut self) -> Option<()> {
        self.object(At::Review)?;
        self.ws();
        (self.i == self.b.len()).then_some(())
    }

    /// An object at `at`: descends into the keys that lead to `metadata`, records what names
    /// the request, and cuts `managedFields` out of `metadata`.
    fn object(&mut self, at: At) -> Option<()> {
        let open = self.i;
        self.eat(b'{')?;
        // Members of `metadata` kept, by range, should one be cut.
        let mut kept: Vec<Range<usize>> = Vec::new();
        let mut cut = false;
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            let key_range = self.string()?;
            let key = key(self.b, key_range.clone())?;
            self.eat(b':')?;
            self.ws();
            let next = match (at, key.as_ref()) {
                (At::Review, "request") => Some(At::Request),
                (At::Request, "object" | "oldObject") => Some(At::Object),
                (At::Object, "metadata") => Some(At::Metadata),
                _ => None,
            };
            let value = match next {
                Some(next) if self.peek()? == b'{' => {
                    let start = self.i;
                    self.object(next)?;
                    start..self.i
                }
                _ => self.skip()?,
            };
            let slot = match (at, key.as_ref()) {
                (At::Request, "namespace") => Some(&mut self.found.namespace),
                (At::Request, "name") => Some(&mut self.found.request_name),
                (At::Metadata, "name") => Some(&mut self.found.name),
                (At::Metadata, "generateName") => Some(&mut self.found.generate_name),
                _ => None,
            };
            if let Some(slot) = slot.filter(|s| s.is_none()) {
                if self.b.get(value.start) == Some(&b'"') {
                    *slot = text(self.b, value.clone());
                }
            }
            if at == At::Metadata && key == "managedFields" {
                cut = true;
            } else {
                kept.push(key_range.start..value.end);
            }
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    break;
                }
                _ => return None,
            }
            self.ws();
        }
        if cut {
            let mut text = vec![b'{'];
            for (n, member) in kept.iter().enumerate() {
                if n > 0 {
                    text.push(b',');
                }
                text.extend_from_slice(&self.b[member.clone()]);
            }
            text.push(b'}');
            // Cuts made inside this object (none: metadata is the deepest) would overlap.
            self.cuts.retain(|(r, _)| r.start < open);
            self.cuts.push((open..self.i, text));
        }
        Some(())
    }
}

/// A key's text (`range` with its quotes), borrowed when it holds no escape: no key a review's
/// keys are compared with does.
fn key(b: &[u8], range: Range<usize>) -> Option<Cow<'_, str>> {
    let raw = &b[range.start + 1..range.end - 1];
    match raw.contains(&b'\\') {
        false => std::str::from_utf8(raw).ok().map(Cow::Borrowed),
        true => text(b, range).map(Cow::Owned),
    }
}

/// A JSON string's text, its escapes decoded.
fn text(b: &[u8], range: Range<usize>) -> Option<String> {
    serde_json::from_slice(&b[range]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn cut_scans_only_a_body_that_names_the_key() {
        let with =
            serde_json::to_vec(&review(json!({"name": "a", "managedFields": [{}]}))).unwrap();
        assert_eq!(cut(&with), lean(&with).body);
        assert!(cut(&with).is_some());
        let without = serde_json::to_vec(&review(json!({"name": "a"}))).unwrap();
        assert_eq!(cut(&without), None);
        // Escaped, the key is not found: the body is parsed (and its cost counted) whole.
        let escaped = br#"{"request":{"object":{"metadata":{"managed\u0046ields":[{}]}}}}"#;
        assert_eq!(cut(escaped), None);
    }

    fn review(metadata: Value) -> Value {
        json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "u", "namespace": "shop", "name": "",
                "object": {"metadata": metadata, "spec": {"containers": [{"name": "a"}]}},
                "oldObject": null,
            }
        })
    }

    fn managed() -> Value {
        json!([{"manager": "kubectl", "fieldsV1": {"f:spec": {"f:containers": {"k:{\"name\":\"a\"}": {".": {}}}}}}])
    }

    #[test]
    fn cuts_managed_fields_and_keeps_the_rest() {
        for metadata in [
            json!({"name": "p", "managedFields": managed(), "labels": {"a": "b"}}),
            json!({"managedFields": managed(), "name": "p", "labels": {"a": "b"}}),
            json!({"name": "p", "labels": {"a": "b"}, "managedFields": managed()}),
        ] {
            let body = serde_json::to_vec_pretty(&review(metadata.clone())).unwrap();
            let lean = lean(&body);
            let out: Value = serde_json::from_slice(lean.body.as_ref().unwrap()).unwrap();
            let mut expected = review(metadata);
            let meta = expected["request"]["object"]["metadata"]
                .as_object_mut()
                .unwrap();
            meta.remove("managedFields");
            assert_eq!(out, expected);
            assert_eq!(lean.namespace.as_deref(), Some("shop"));
            assert_eq!(lean.name.as_deref(), Some("p"));
        }
    }

    #[test]
    fn only_metadata_is_cut() {
        // An annotation or env var named managedFields is the pod's own.
        let metadata = json!({"generateName": "web-", "annotations": {"managedFields": "x"}, "managedFields": [], "only": {"managedFields": 1}});
        let body = serde_json::to_vec(&review(metadata)).unwrap();
        let lean = lean(&body);
        let out: Value = serde_json::from_slice(&lean.body.unwrap()).unwrap();
        let meta = &out["request"]["object"]["metadata"];
        assert_eq!(meta["annotations"]["managedFields"], "x");
        assert_eq!(meta["only"]["managedFields"], 1);
        assert!(meta.get("managedFields").is_none());
        assert_eq!(lean.name.as_deref(), Some("web-"));
    }

    #[test]
    fn a_body_without_managed_fields_is_not_copied() {
        let body = serde_json::to_vec(&review(json!({"name": "p"}))).unwrap();
        assert_eq!(lean(&body).body, None);
    }

    #[test]
    fn what_it_cannot_follow_is_left_whole() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        for body in [
            b"".as_slice(),
            b"{".as_slice(),
            b"{\"request\": {\"object\": {\"metadata\": {\"managedFields\": [}}}}".as_slice(),
            b"[1,2]".as_slice(),
            b"{\"request\": 1} trailing".as_slice(),
            deep.as_bytes(),
        ] {
            assert_eq!(
                lean(body),
                Lean::default(),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        let nested = format!(
            "{{\"request\": {{\"object\": {{\"metadata\": {{\"managedFields\": {}{}}}}}}}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let out = lean(nested.as_bytes()).body.unwrap();
        assert_eq!(out, b"{\"request\": {\"object\": {\"metadata\": {}}}}");
    }
}
