//! JSONPatch writing. The patch is written as JSON while it is built: each value goes from its
//! typed form straight to bytes (by [`crate::json`], strings a word at a time), and parts that
//! are the same for every pod are spliced in already encoded ([`Raw`]). No value tree is
//! built, cloned or dropped per request (they were a third of a mutation's CPU,
//! docs/performance.md). Pointers are made from tokens (annotation keys contain `/`), encoded
//! as they are built, and a missing parent is added whole instead of added into.

use std::fmt::{self, Write as _};

use serde::Serialize;
pub use serde_json::value::RawValue as Raw;

/// A pointer from tokens: `pointer(["metadata", "annotations", "jvm-guard.io/status"])`.
pub fn pointer<T: Token>(tokens: impl IntoIterator<Item = T>) -> Pointer {
    let mut p = Pointer(String::with_capacity(48));
    for token in tokens {
        p.push(token);
    }
    p
}

/// A JSON Pointer (RFC 6901), held encoded: `~` as `~0`, `/` as `~1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pointer(String);

/// What a pointer's reference tokens are made of: names and array indices (or `-`).
pub trait Token {
    fn encode_into(&self, out: &mut String);
}

impl Token for &str {
    fn encode_into(&self, out: &mut String) {
        // Most tokens hold neither: copied whole.
        if memchr::memchr2(b'~', b'/', self.as_bytes()).is_none() {
            return out.push_str(self);
        }
        for c in self.chars() {
            match c {
                '~' => out.push_str("~0"),
                '/' => out.push_str("~1"),
                c => out.push(c),
            }
        }
    }
}

impl Token for usize {
    fn encode_into(&self, out: &mut String) {
        // Writing to a String cannot fail.
        let _ = write!(out, "{self}");
    }
}

impl Pointer {
    /// This pointer with one more token.
    pub fn child<T: Token>(&self, token: T) -> Pointer {
        let mut p = Pointer(String::with_capacity(self.0.len() + 24));
        p.0.push_str(&self.0);
        p.push(token);
        p
    }

    fn push<T: Token>(&mut self, token: T) {
        self.0.push('/');
        token.encode_into(&mut self.0);
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A value encoded once, to be spliced into many patches.
pub fn raw<T: Serialize + ?Sized>(value: &T) -> Box<Raw> {
    serde_json::value::to_raw_value(value).expect("Kubernetes types serialize to JSON")
}

/// A JSONPatch document (RFC 6902), as the bytes the admission response carries.
#[derive(Clone, PartialEq, Eq)]
pub struct Patch {
    json: Vec<u8>,
    len: usize,
}

impl Patch {
    /// The patch that changes nothing.
    pub fn empty() -> Patch {
        Patch {
            json: b"[]".to_vec(),
            len: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many operations it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The JSON array of operations.
    pub fn as_bytes(&self) -> &[u8] {
        &self.json
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.json
    }

    /// The operations, read back (the preview applies them; tests inspect them).
    pub fn operations(&self) -> json_patch::Patch {
        serde_json::from_slice(&self.json).expect("a patch we wrote reads back")
    }

    /// Applies the patch to `doc`.
    pub fn apply(&self, doc: &mut serde_json::Value) -> Result<(), json_patch::PatchError> {
        json_patch::patch(doc, &self.operations())
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.json).expect("serde_json writes UTF-8")
    }
}

impl fmt::Debug for Patch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// As its operations, so that a pretty printer indents them (the preview's `--output patch`).
impl Serialize for Patch {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.operations().serialize(serializer)
    }
}

/// Writes operations in the order they are given.
#[derive(Debug)]
pub struct PatchBuilder {
    json: Vec<u8>,
    len: usize,
}

impl Default for PatchBuilder {
    fn default() -> Self {
        PatchBuilder {
            json: Vec::with_capacity(4096),
            len: 0,
        }
    }
}

impl PatchBuilder {
    pub fn add<T: Serialize + ?Sized>(&mut self, path: &Pointer, value: &T) {
        self.operation("add", path, |out| write(out, value));
    }

    pub fn replace<T: Serialize + ?Sized>(&mut self, path: &Pointer, value: &T) {
        self.operation("replace", path, |out| write(out, value));
    }

    /// Appends to an array, creating it when absent.
    pub fn append<T: Serialize>(&mut self, array: &Pointer, exists: bool, items: &[T]) {
        if items.is_empty() {
            return;
        }
        if !exists {
            return self.add(array, items);
        }
        let end = array.child("-");
        for item in items {
            self.add(&end, item);
        }
    }

    /// Inserts at the front of an existing array, keeping `items` in order.
    pub fn prepend_existing<T: Serialize>(&mut self, array: &Pointer, items: &[T]) {
        let front = array.child(0usize);
        for item in items.iter().rev() {
            self.add(&front, item);
        }
    }

    /// Sets `key` in an object, creating the object when absent.
    pub fn insert_key<T: Serialize + ?Sized>(
        &mut self,
        map: &Pointer,
        exists: bool,
        key: &str,
        value: &T,
    ) {
        if exists {
            self.add(&map.child(key), value);
        } else {
            self.operation("add", map, |out| {
                out.push(b'{');
                write(out, key);
                out.push(b':');
                write(out, value);
                out.push(b'}');
            });
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn build(mut self) -> Patch {
        if self.len == 0 {
            return Patch::empty();
        }
        self.json.push(b']');
        Patch {
            json: self.json,
            len: self.len,
        }
    }

    /// `{"op":<op>,"path":<path>,"value":<written by value>}`, after a `[` or a `,`.
    fn operation(&mut self, op: &str, path: &Pointer, value: impl FnOnce(&mut Vec<u8>)) {
        let out = &mut self.json;
        out.push(if self.len == 0 { b'[' } else { b',' });
        out.extend_from_slice(b"{\"op\":\"");
        out.extend_from_slice(op.as_bytes());
        out.extend_from_slice(b"\",\"path\":");
        write(out, path.as_str());
        out.extend_from_slice(b",\"value\":");
        value(out);
        out.push(b'}');
        self.len += 1;
    }
}

fn write<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    crate::json::to_writer(out, value).expect("Kubernetes types serialize to JSON");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_with_slashes_are_escaped() {
        let p = pointer(["metadata", "annotations", "jvm-guard.io/status"]);
        assert_eq!(p.as_str(), "/metadata/annotations/jvm-guard.io~1status");
        let mut b = PatchBuilder::default();
        b.add(&p, "a\"b");
        let patch = b.build();
        assert_eq!(
            patch.as_bytes(),
            br#"[{"op":"add","path":"/metadata/annotations/jvm-guard.io~1status","value":"a\"b"}]"#
        );
    }

    #[test]
    fn tokens_are_encoded_as_rfc_6901_says() {
        let p = pointer(["a~b/c", ""]).child(3usize).child("-");
        assert_eq!(p.as_str(), "/a~0b~1c//3/-");
        let doc = json!({"a~b/c": {"": [0, 1, 2, 3]}});
        assert_eq!(
            doc.pointer(pointer(["a~b/c", ""]).child(3usize).as_str()),
            Some(&json!(3))
        );
    }

    #[test]
    fn missing_parents_are_created() {
        let mut doc = json!({"metadata": {}, "spec": {"volumes": [{"name": "a"}]}});
        let mut b = PatchBuilder::default();
        b.insert_key(&pointer(["metadata", "annotations"]), false, "a/b", "x");
        b.append(&pointer(["spec", "volumes"]), true, &[json!({"name": "b"})]);
        let encoded = raw(&json!({"name": "c"}));
        b.append(&pointer(["spec", "initContainers"]), false, &[&*encoded]);
        b.prepend_existing(&pointer(["spec", "volumes"]), &[1, 2]);
        b.replace(&pointer(["metadata", "annotations", "a/b"]), "y");
        let patch = b.build();
        assert_eq!(patch.len(), 6);
        patch.apply(&mut doc).unwrap();
        assert_eq!(
            doc,
            json!({"metadata": {"annotations": {"a/b": "y"}},
                   "spec": {"volumes": [1, 2, {"name": "a"}, {"name": "b"}],
                            "initContainers": [{"name": "c"}]}})
        );
        // What is written is what reads back, and what serializes.
        assert_eq!(
            serde_json::to_value(&patch).unwrap(),
            serde_json::to_value(patch.operations()).unwrap()
        );
    }

    #[test]
    fn nothing_written_is_the_empty_patch() {
        let mut b = PatchBuilder::default();
        b.append::<u8>(&pointer(["spec", "volumes"]), false, &[]);
        b.prepend_existing::<u8>(&pointer(["spec", "volumes"]), &[]);
        assert!(b.is_empty());
        let patch = b.build();
        assert!(patch.is_empty());
        assert_eq!(patch, Patch::empty());
        assert_eq!(patch.as_bytes(), b"[]");
        assert!(patch.operations().0.is_empty());
    }
}
