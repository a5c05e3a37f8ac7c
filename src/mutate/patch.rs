//! JSONPatch building from typed operations. Pointers are made from tokens (annotation keys
//! contain `/`), and a missing parent is added whole instead of added into.

use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation};
use jsonptr::{PointerBuf, Token};
use serde::Serialize;
use serde_json::Value;

/// A pointer from tokens: `pointer(["metadata", "annotations", "jvm-guard.io/status"])`.
pub fn pointer<'t, T: Into<Token<'t>>>(tokens: impl IntoIterator<Item = T>) -> PointerBuf {
    PointerBuf::from_tokens(tokens)
}

pub fn to_value<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("Kubernetes types serialize to JSON")
}

#[derive(Debug, Default)]
pub struct PatchBuilder(Vec<PatchOperation>);

impl PatchBuilder {
    pub fn add(&mut self, path: PointerBuf, value: Value) {
        self.0
            .push(PatchOperation::Add(AddOperation { path, value }));
    }

    pub fn replace(&mut self, path: PointerBuf, value: Value) {
        self.0
            .push(PatchOperation::Replace(ReplaceOperation { path, value }));
    }

    /// Appends to an array, creating it when absent.
    pub fn append(&mut self, array: PointerBuf, exists: bool, items: Vec<Value>) {
        if items.is_empty() {
            return;
        }
        if !exists {
            return self.add(array, Value::Array(items));
        }
        for item in items {
            self.add(array.with_trailing_token("-"), item);
        }
    }

    /// Inserts at the front of an existing array, keeping `items` in order.
    pub fn prepend_existing(&mut self, array: &PointerBuf, items: Vec<Value>) {
        for item in items.into_iter().rev() {
            self.add(array.with_trailing_token(0usize), item);
        }
    }

    /// Sets `key` in an object, creating the object when absent.
    pub fn insert_key(&mut self, map: PointerBuf, exists: bool, key: &str, value: Value) {
        if exists {
            self.add(map.with_trailing_token(key), value);
        } else {
            self.add(
                map,
                Value::Object([(key.to_string(), value)].into_iter().collect()),
            );
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn build(self) -> Patch {
        Patch(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_with_slashes_are_escaped() {
        let p = pointer(["metadata", "annotations", "jvm-guard.io/status"]);
        assert_eq!(p.as_str(), "/metadata/annotations/jvm-guard.io~1status");
    }

    #[test]
    fn missing_parents_are_created() {
        let mut doc = json!({"metadata": {}, "spec": {"volumes": [{"name": "a"}]}});
        let mut b = PatchBuilder::default();
        b.insert_key(
            pointer(["metadata", "annotations"]),
            false,
            "a/b",
            json!("x"),
        );
        b.append(
            pointer(["spec", "volumes"]),
            true,
            vec![json!({"name": "b"})],
        );
        b.append(
            pointer(["spec", "initContainers"]),
            false,
            vec![json!({"name": "c"})],
        );
        b.prepend_existing(&pointer(["spec", "volumes"]), vec![json!(1), json!(2)]);
        json_patch::patch(&mut doc, &b.build()).unwrap();
        assert_eq!(
            doc,
            json!({"metadata": {"annotations": {"a/b": "x"}},
                   "spec": {"volumes": [1, 2, {"name": "a"}, {"name": "b"}],
                            "initContainers": [{"name": "c"}]}})
        );
    }
}
