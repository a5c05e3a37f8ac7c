//! What reading a review body may allocate, counted before it is read (docs/design.md#bounds):
//! a 4 MiB body of `[0,0,...]` becomes 300 MiB as a JSON tree, one of `{"name":"v"},` volumes
//! a gigabyte of typed Pod. One pass over the bytes, outside strings: on x86_64 a block of 64
//! bytes at a time (`blocks`), elsewhere byte by byte between strings.
//!
//! An object in an array becomes an element of a `Vec` of the type its key names in a Pod
//! (`env` → `EnvVar`), charged twice its size (a `Vec` grows by doubling); under a key that
//! names no list of a Pod it is charged as the largest (a `Volume`). An object that is a
//! field's value is stored inline in its parent, already charged, or skipped unread.

use std::mem::size_of;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;

/// The most one object of a Pod can take as an element of a growing `Vec`: a `Volume`
/// (3,280 bytes), twice over, rounded up.
pub const PARSE_COST_PER_OBJECT: usize = 8 * 1024;
/// What any other object may take: a map of the JSON tree the body is read into when the
/// typed pass fails (an `IndexMap` and its first slots).
pub const PARSE_COST_PER_FIELD_OBJECT: usize = 256;
/// ... and per other JSON value: a node of the JSON tree the body is read into when the typed
/// pass fails: as a member of an object, a bucket of its `IndexMap` (hash, key and a 72-byte
/// `Value`: 104 bytes) and its index slot, twice over as the map grows by doubling.
pub const PARSE_COST_PER_VALUE: usize = 240;

/// Nesting past this is refused by serde_json anyway; charged as the worst case.
const MAX_DEPTH: usize = 128;

/// The lists of a Pod (and of its review) by key, each with the largest element type the key
/// names anywhere in a Pod.
fn element_size(key: &[u8]) -> Option<usize> {
    let size = match key {
        b"containers" | b"initContainers" => size_of::<core::Container>(),
        b"ephemeralContainers" => size_of::<core::EphemeralContainer>(),
        b"env" => size_of::<core::EnvVar>(),
        b"envFrom" => size_of::<core::EnvFromSource>(),
        b"ports" => size_of::<core::ContainerPort>(),
        b"volumeMounts" => size_of::<core::VolumeMount>(),
        b"volumeDevices" => size_of::<core::VolumeDevice>(),
        b"resizePolicy" => size_of::<core::ContainerResizePolicy>(),
        b"tolerations" => size_of::<core::Toleration>(),
        b"imagePullSecrets" => size_of::<core::LocalObjectReference>(),
        b"hostAliases" => size_of::<core::HostAlias>(),
        b"ownerReferences" => size_of::<meta::OwnerReference>(),
        b"managedFields" => size_of::<meta::ManagedFieldsEntry>(),
        b"readinessGates" => size_of::<core::PodReadinessGate>(),
        b"httpHeaders" => size_of::<core::HTTPHeader>(),
        b"sysctls" => size_of::<core::Sysctl>(),
        b"options" => size_of::<core::PodDNSConfigOption>(),
        b"matchExpressions" | b"matchFields" => size_of::<meta::LabelSelectorRequirement>()
            .max(size_of::<core::NodeSelectorRequirement>()),
        _ => return None,
    };
    Some(2 * size)
}

/// An upper bound of what reading `body` as an AdmissionReview may allocate besides the body.
#[cfg(target_arch = "x86_64")]
pub fn parse_cost(body: &[u8]) -> usize {
    blocks::parse_cost(body)
}

/// An upper bound of what reading `body` as an AdmissionReview may allocate besides the body.
#[cfg(not(target_arch = "x86_64"))]
pub fn parse_cost(body: &[u8]) -> usize {
    by_strings(body)
}

/// On x86_64, a block of 64 bytes at a time.
#[cfg(target_arch = "x86_64")]
mod blocks;
#[cfg(target_arch = "x86_64")]
pub(super) use blocks::container_end;

/// [`parse_cost`] elsewhere, and what the x86_64 reading is checked against: byte by byte
/// between strings, each string skipped with `memchr`; an array's key is the string before
/// the `:` it follows (a `,` or a closing bracket ends a member: a later array has none).
#[cfg(any(test, not(target_arch = "x86_64")))]
fn by_strings(body: &[u8]) -> usize {
    // Per open container: `Some(key)` for an array (the key it is the value of), `None` for
    // an object.
    let mut open: Vec<Option<Option<(usize, usize)>>> = Vec::new();
    let (mut objects, mut values) = (0usize, 0usize);
    let mut last_string = (0usize, 0usize);
    let mut key: Option<(usize, usize)> = None;
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'"' => {
                let start = i + 1;
                i = string_end(body, start);
                last_string = (start, i);
            }
            b':' => {
                key = Some(last_string);
                values += 1;
            }
            b'[' => {
                values += 1;
                if open.len() < MAX_DEPTH {
                    open.push(Some(key.take()));
                } else {
                    return body.len().saturating_mul(PARSE_COST_PER_OBJECT);
                }
            }
            b'{' => {
                objects += match open.last() {
                    Some(Some(array_key)) => array_key
                        .and_then(|(s, e)| element_size(&body[s..e]))
                        .unwrap_or(PARSE_COST_PER_OBJECT),
                    _ => PARSE_COST_PER_FIELD_OBJECT,
                };
                key = None;
                if open.len() < MAX_DEPTH {
                    open.push(None);
                } else {
                    return body.len().saturating_mul(PARSE_COST_PER_OBJECT);
                }
            }
            b']' | b'}' => {
                open.pop();
                key = None;
            }
            b',' => {
                values += 1;
                key = None;
            }
            _ => {}
        }
        i += 1;
    }
    // Strings are copied once more out of the body.
    body.len() + objects + values * PARSE_COST_PER_VALUE
}

/// Where the string whose text starts at `start` ends: its closing quote, or the body's end.
/// Found a word at a time (`memchr`): strings are most of a review's bytes. Shared with
/// `lean`'s pass.
pub(super) fn string_end(body: &[u8], mut i: usize) -> usize {
    while let Some(at) = body
        .get(i..)
        .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
    {
        i += at;
        if body[i] == b'"' {
            return i;
        }
        i += 2; // an escape: the quote or backslash after it is text
    }
    body.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_largest_element_is_within_the_worst_case() {
        for key in [
            "containers",
            "initContainers",
            "ephemeralContainers",
            "env",
            "envFrom",
            "ports",
            "volumeMounts",
            "volumeDevices",
            "resizePolicy",
            "tolerations",
            "imagePullSecrets",
            "hostAliases",
            "ownerReferences",
            "managedFields",
            "readinessGates",
            "httpHeaders",
            "sysctls",
            "options",
            "matchExpressions",
        ] {
            let size = element_size(key.as_bytes()).unwrap();
            assert!(size <= PARSE_COST_PER_OBJECT, "{key}: {size}");
        }
        assert!(2 * size_of::<core::Volume>() <= PARSE_COST_PER_OBJECT);
        assert!(2 * size_of::<core::EnvVar>() < PARSE_COST_PER_OBJECT / 4);
    }

    #[test]
    fn objects_are_charged_by_the_list_they_are_in() {
        let volumes = br#"{"volumes":[{"name":"v"},{"name":"w"}]}"#;
        let env = br#"{"env":[{"name":"v"},{"name":"w"}]}"#;
        let fields = br#"{"a":{"name":"v"},"b":{"name":"w"}}"#;
        let unknown = br#"{"x":[{"name":"v"},{"name":"w"}]}"#;
        let of = |b: &[u8]| parse_cost(b) - b.len();
        assert!(of(volumes) >= 2 * PARSE_COST_PER_OBJECT);
        assert_eq!(of(volumes), of(unknown));
        assert!(of(env) < of(volumes) / 4);
        assert!(of(fields) < of(env));
        // A key inside a string is no key; a string that looks like a list key is no list.
        let quoted = br#"{"a":"\"env\":[{}]","env":"x","v":[{"name":"v"}]}"#;
        assert!(of(quoted) >= PARSE_COST_PER_OBJECT);
        // A key that ends like a list's after an escaped quote is no list's key either.
        assert!(of(br#"{"x\"env" : [{"name":"v"}]}"#) >= PARSE_COST_PER_OBJECT);
        // Nor is the key of a member whose value was no list, in either reading (the
        // reading by strings charged this array's objects as variables).
        let stale = br#"{"env":[{"env":null},[{"name":"v"}]]}"#;
        for cost in [parse_cost, by_strings] {
            assert!(cost(stale) - stale.len() >= PARSE_COST_PER_OBJECT);
        }
    }

    #[test]
    fn strings_end_where_a_byte_by_byte_reading_ends_them() {
        let naive = |body: &[u8], mut i: usize| {
            while i < body.len() && body[i] != b'"' {
                i += if body[i] == b'\\' { 2 } else { 1 };
            }
            i.min(body.len())
        };
        for body in [
            &br#"abc" rest"#[..],
            br#"a\"b" c"#,
            br#"a\\" b"#,
            br#"\\\"x\\\\"y"#,
            br#"no end"#,
            br#"ends in \"#,
            br#"\"#,
            br#"""#,
            b"",
            r#"caf\u00e9 é\" 😀" x"#.as_bytes(),
        ] {
            assert_eq!(
                string_end(body, 0),
                naive(body, 0),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        // A review of any size: the passes agree on every string of it.
        let long = format!(
            r#"{{"a":"{}","b":"x\"{}"}}"#,
            "y".repeat(5000),
            "z\\".repeat(700)
        );
        let b = long.as_bytes();
        for start in (0..b.len()).step_by(97) {
            assert_eq!(string_end(b, start), naive(b, start), "from {start}");
        }
    }

    /// Pod-like JSON: the list keys the count knows and others, strings with quotes,
    /// backslashes and non-ASCII text, nesting both ways.
    fn json() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let key = proptest::sample::select(vec![
            "env",
            "containers",
            "volumes",
            "ports",
            "options",
            "name",
            "x",
            "a\"env",
            "é\\",
        ]);
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(Value::from),
            "[a-z\"\\\\é:,{}\\[\\] ]{0,40}".prop_map(Value::String),
        ];
        leaf.prop_recursive(5, 96, 8, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                proptest::collection::vec((key.clone(), inner), 0..8).prop_map(|members| {
                    Value::Object(
                        members
                            .into_iter()
                            .map(|(k, v)| (k.to_string(), v))
                            .collect(),
                    )
                }),
            ]
        })
    }

    /// Bytes that are mostly JSON's own, with backslashes rare enough that some blocks
    /// have none: both readings of a block, and the moves between them.
    fn soup() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            8 => proptest::sample::select(b"\"[]{}:, \n".to_vec()),
            8 => proptest::sample::select(b"envamt".to_vec()),
            1 => Just(b'\\'),
        ];
        proptest::collection::vec(byte, 0..400)
    }

    proptest::proptest! {
        /// Of any JSON, the count is what reading it by strings gives, spaced or not.
        #[test]
        fn a_document_costs_what_reading_it_by_strings_gives(value in json()) {
            for text in [serde_json::to_vec(&value), serde_json::to_vec_pretty(&value)] {
                let text = text.unwrap();
                proptest::prop_assert_eq!(parse_cost(&text), by_strings(&text));
            }
        }

        /// `lean` skips a container, from anywhere in a body, where it ends as written: just
        /// after its closing bracket, whatever follows.
        #[cfg(target_arch = "x86_64")]
        #[test]
        fn a_container_ends_after_its_closing_bracket(
            value in json().prop_filter("a container", |v| v.is_array() || v.is_object()),
            before in "[ a-z\"]{0,90}",
            after in "[],}{\" ]{0,8}",
        ) {
            for text in [serde_json::to_vec(&value), serde_json::to_vec_pretty(&value)] {
                let text = text.unwrap();
                let body = [before.as_bytes(), &text, after.as_bytes()].concat();
                let end = container_end(&body, before.len());
                proptest::prop_assert_eq!(end, Some(before.len() + text.len()));
                // Cut short, it has no end.
                proptest::prop_assert_eq!(container_end(&body[..end.unwrap() - 1], before.len()), None);
            }
        }

        /// Of any bytes, never less: a key is only taken right before its array.
        #[test]
        fn any_bytes_cost_at_least_what_reading_them_by_strings_gives(body in soup()) {
            proptest::prop_assert!(parse_cost(&body) >= by_strings(&body));
        }
    }

    #[test]
    fn a_nested_array_of_objects_is_the_worst_case() {
        // `[[{..}]]`: the inner array is no Pod list.
        let nested = br#"{"env":[[{"name":"v"}]]}"#;
        assert!(parse_cost(nested) >= PARSE_COST_PER_OBJECT);
        let deep = "[".repeat(10_000);
        assert!(parse_cost(deep.as_bytes()) >= deep.len() * PARSE_COST_PER_OBJECT);
    }
}
