//! What each fuzz target asserts, shared by the targets (fuzz/fuzz_targets) and by
//! tests/fuzz_regressions.rs, which replays every input kept in fuzz/regressions/TARGET/.
//! A check panics on a violation; returning means the input is fine.
#![allow(dead_code)] // each target uses one check

use std::collections::BTreeMap;
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use clap::Parser as _;
use jvm_guard::cli::{Cli, Command};
use jvm_guard::config::quantity::Quantity;
use jvm_guard::config::rlimit::{self, Rlimit};
use jvm_guard::config::{Key, ServerSettings, STATUS_ANNOTATION};
use jvm_guard::webhook::namespaces::StaticNamespaces;
use jvm_guard::webhook::{admission, cost, lean};
use jvm_guard::{mutate, Defaults, NamespaceConfig};
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

#[path = "../tests/support/idempotence.rs"]
mod idempotence;

/// Probes, dumps and ulimits on, so every part of the mutation runs.
const DEFAULTS: &str = "
heap-dump: \"true\"
probes: spring-boot
ulimits: nofile=65536,core=0
startup-timeout: \"180\"
";

fn defaults() -> &'static Defaults {
    static PARSED: OnceLock<Defaults> = OnceLock::new();
    PARSED.get_or_init(|| Defaults::from_yaml(DEFAULTS).expect("the fuzz defaults are valid"))
}

fn settings(allow_host_path: bool) -> ServerSettings {
    ServerSettings {
        allow_host_path,
        webhook_namespace: Some("jvm-guard".into()),
        tools_image: Some("ghcr.io/jvm-guard/jvm-guard:fuzz".into()),
        ..ServerSettings::default()
    }
}

/// (a) Any bytes POSTed to /mutate: never a panic; a patch applies to the object it was made
/// for, gives a valid Pod, and mutating that pod again changes nothing (the apiserver may
/// reinvoke us), nor does mutating it again without our status annotation (which alone makes
/// the mutation return early) beyond writing the status again.
pub fn admission_review(body: &[u8]) {
    before_the_parse(body);
    let namespaces = StaticNamespaces::every(defaults());
    let settings = settings(body.first().is_some_and(|b| b & 1 == 1));
    let Ok(reviewed) = admission::review(body, &namespaces, &settings) else {
        return;
    };
    let wire = admission::to_json(reviewed.review.clone()).expect("every answer encodes");
    let wire: Value = serde_json::from_slice(&wire).expect("the answer is JSON");
    let response = reviewed.review.response.expect("an answer has a response");
    // On the wire a patch is base64 and present exactly when there is one.
    assert_eq!(
        wire["response"].get("patch").map(|p| {
            let p = p.as_str().expect("the patch is a base64 string");
            BASE64.decode(p).expect("base64")
        }),
        response.patch.clone(),
        "the patch on the wire"
    );
    let Some(patch) = response.patch else {
        return;
    };
    let patch: json_patch::Patch = serde_json::from_slice(&patch).expect("the patch is JSON");
    let mut review: Value = serde_json::from_slice(body).expect("a reviewed body is JSON");
    let object = review
        .pointer_mut("/request/object")
        .expect("a patched request has an object");
    // The engine reads only the fields it uses (mutate::pod), so a pod with another field of
    // the wrong type is mutated too; the apiserver never sends one (it decodes the pod into
    // its own types before any webhook sees it). A valid pod must stay valid.
    let valid = serde_json::from_value::<Pod>(object.clone()).is_ok();
    json_patch::patch(object, &patch).unwrap_or_else(|e| panic!("patch does not apply: {e}"));
    if valid {
        serde_json::from_value::<Pod>(object.clone()).expect("the patched object is a Pod");
    }

    let stripped = idempotence::without_status(object);

    let again = serde_json::to_vec(&review).expect("encodes");
    let second = admission::review(&again, &namespaces, &settings).expect("still a review");
    let second = second.review.response.expect("a response");
    assert!(
        second.patch.is_none(),
        "the mutated pod is mutated again: {}",
        String::from_utf8_lossy(&second.patch.unwrap_or_default())
    );

    review["request"]["object"] = stripped.clone();
    let again = serde_json::to_vec(&review).expect("encodes");
    let third = admission::review(&again, &namespaces, &settings).expect("still a review");
    let third = third.review.response.expect("a response");
    let patch: json_patch::Patch = match third.patch {
        Some(p) => serde_json::from_slice(&p).expect("the patch is JSON"),
        None => json_patch::Patch(Vec::new()),
    };
    if let Err(changes) = idempotence::only_status_changes(&stripped, &patch) {
        panic!("{changes}");
    }
}

/// (b) Namespace and pod annotations with any values, keys mostly real ones, configuring the
/// mutation of a realistic pod; and a quantity.
#[derive(Debug, Arbitrary)]
pub struct Annotations {
    namespace: Vec<(KeyChoice, String)>,
    pod: Vec<(KeyChoice, String)>,
    quantity: String,
    allow_host_path: bool,
}

/// A real key most of the time, sometimes any name under the prefix or outside it.
#[derive(Debug, Arbitrary)]
enum KeyChoice {
    Known(u8),
    Prefixed(String),
    Other(String),
}

impl KeyChoice {
    fn annotation(&self) -> String {
        match self {
            KeyChoice::Known(i) => Key::ALL[*i as usize % Key::ALL.len()].annotation(),
            KeyChoice::Prefixed(name) => format!("jvm-guard.io/{name}"),
            KeyChoice::Other(name) => name.clone(),
        }
    }
}

fn annotation_map(pairs: &[(KeyChoice, String)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.annotation(), v.clone()))
        .collect()
}

fn example_pod() -> &'static Pod {
    static POD: OnceLock<Pod> = OnceLock::new();
    POD.get_or_init(|| {
        let review: Value = serde_json::from_str(include_str!("../examples/admission-review.json"))
            .expect("the example review is JSON");
        serde_json::from_value(review["request"]["object"].clone()).expect("the example pod")
    })
}

/// The server's passes over a body before it is parsed: no panic on any bytes, and the leaned
/// body is the body without its pod's `managedFields`.
fn before_the_parse(body: &[u8]) {
    let cost = cost::parse_cost(body);
    assert!(cost >= body.len(), "the body itself is charged");
    let (Some(leaner), Ok(mut whole)) = (lean::cut(body), serde_json::from_slice::<Value>(body))
    else {
        return;
    };
    for at in ["/request/object/metadata", "/request/oldObject/metadata"] {
        if let Some(metadata) = whole.pointer_mut(at).and_then(Value::as_object_mut) {
            metadata.remove("managedFields");
        }
    }
    let leaned: Value = serde_json::from_slice(&leaner).expect("a leaned JSON body is JSON");
    assert_eq!(leaned, whole, "lean cuts managedFields and nothing else");
}

/// Never a panic; quantities read back to what they parsed to; the patch applies, gives a
/// valid Pod, and a second mutation changes nothing, with or without the status annotation
/// (without it, the status may be written again).
pub fn annotations(input: &Annotations) {
    if let Ok(q) = input.quantity.parse::<Quantity>() {
        let again: Quantity = q.as_str().parse().expect("a parsed quantity parses again");
        assert_eq!(again.bytes(), q.bytes(), "{:?}", input.quantity);
    }
    let ns = NamespaceConfig::new("fuzz", Some(&annotation_map(&input.namespace)), defaults());
    let mut pod = example_pod().clone();
    pod.metadata.annotations = Some(annotation_map(&input.pod));
    let settings = settings(input.allow_host_path);
    let mutation = mutate(&(&pod).into(), &ns, &settings);

    let mut value = serde_json::to_value(&pod).expect("a pod encodes");
    mutation
        .patch
        .apply(&mut value)
        .unwrap_or_else(|e| panic!("patch does not apply: {e}"));
    let mutated: Pod = serde_json::from_value(value.clone()).expect("the patched object is a Pod");
    let again = mutate(&(&mutated).into(), &ns, &settings);
    assert!(again.patch.is_empty(), "mutated twice: {:?}", again.patch);

    // A pod that came with a status annotation of its own was left alone (the early return for
    // mutated pods): stripping that annotation gives back the unmutated pod, which a mutation
    // rightly changes. The property is about pods the mutation wrote.
    if (pod.metadata.annotations.as_ref()).is_some_and(|a| a.contains_key(STATUS_ANNOTATION)) {
        return;
    }
    let stripped = idempotence::without_status(&value);
    let stripped_pod: Pod = serde_json::from_value(stripped.clone()).expect("still a Pod");
    let again = mutate(&(&stripped_pod).into(), &ns, &settings);
    if let Err(changes) = idempotence::only_status_changes(&stripped, &again.patch.operations()) {
        panic!("{changes}");
    }
}

/// (c) Any argument list after `jvm-guard exec`: clap errors are answers, not crashes; every
/// accepted limit is consistent and prints back to itself, and so does a comma list.
pub fn exec_args(args: &[String]) {
    let argv = ["jvm-guard", "exec"]
        .into_iter()
        .map(String::from)
        .chain(args.iter().cloned());
    if let Ok(Cli {
        command: Command::Exec(exec),
    }) = Cli::try_parse_from(argv)
    {
        assert!(!exec.command.is_empty(), "exec accepted without a command");
        for limit in &exec.rlimits {
            assert!(limit.soft <= limit.hard, "{limit}");
            let printed: Rlimit = limit.to_string().parse().expect("a limit prints back");
            assert_eq!(&printed, limit);
        }
    }
    for arg in args {
        if let Ok(list) = rlimit::parse_list(arg) {
            let joined = list
                .iter()
                .map(Rlimit::to_string)
                .collect::<Vec<_>>()
                .join(",");
            assert_eq!(rlimit::parse_list(&joined).as_ref(), Ok(&list), "{arg:?}");
        }
    }
}

/// (d) What a registry sends back, through each parser of a lookup (the first byte picks
/// which): never a panic, and what is accepted holds what the lookup relies on.
pub fn registry_responses(data: &[u8]) {
    use jvm_guard::registry::{self as r, Challenge, Manifest};
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match which % 7 {
        0 => {
            if let Some(Challenge::Bearer { realm, .. }) = r::parse_challenge(&text) {
                let access = r::Access {
                    insecure: vec!["127.0.0.1:5000".into()],
                    allowed: vec!["auth.internal".into()],
                };
                if let Ok(url) = realm.parse() {
                    let url: r::Url = url;
                    // Not listed: only HTTPS, and then to a name or a public address.
                    if let Ok(false) = access.outside(&url) {
                        assert_eq!(url.scheme(), "https", "{realm}");
                    }
                }
            }
        }
        1 => {
            if let Ok(token) = r::parse_token(rest) {
                assert!(!token.is_empty());
                assert!(token
                    .bytes()
                    .all(|b| b == b'\t' || (b' '..0x7f).contains(&b) || b >= 0x80));
            }
        }
        2 => {
            if let Ok(Manifest::Index { manifests }) = r::parse_manifest(rest) {
                let platform = mutate::Platform::default();
                if let Some(entry) = r::pick(&manifests, &platform) {
                    assert!(entry.platform.as_ref().is_some_and(|p| p.os == platform.os));
                }
            }
        }
        3 => {
            let _ = r::parse_image_config(rest);
        }
        4 => {
            if let Some(text) = r::parse_error_envelope(rest) {
                check_truncated(&text);
            }
        }
        5 => check_truncated(&text),
        _ => {
            if rest.len() >= 16 {
                let v6: [u8; 16] = rest[..16].try_into().expect("16 bytes");
                let _ = r::is_public(std::net::IpAddr::from(v6));
            }
            if rest.len() >= 4 {
                let v4: [u8; 4] = rest[..4].try_into().expect("4 bytes");
                let _ = r::is_public(std::net::IpAddr::from(v4));
            }
            let _ = r::verify_digest(&text, rest);
        }
    }
}

/// What reaches a warning: at most the cap, on one line, a prefix of the input when short.
fn check_truncated(text: &str) {
    let cut = jvm_guard::registry::truncate_error(text);
    assert!(
        cut.chars().count() <= jvm_guard::registry::MAX_ERROR_CHARS,
        "{cut:?}"
    );
    assert!(!cut.chars().any(char::is_control), "{cut:?}");
    if text.chars().count() <= jvm_guard::registry::MAX_ERROR_CHARS
        && !text.chars().any(char::is_control)
    {
        assert_eq!(cut, text);
    }
}

/// (e) Any bytes as a HotSpot performance-data file (`jvm-guard inspect`): never a panic; a
/// file that parses has at most one entry per 20 bytes after the prologue (each takes its
/// header from the buffer), and the heap and GC read from it never panic either.
pub fn perfdata(bytes: &[u8]) {
    use jvm_guard::agent::inspect::{jvm, perfdata};
    let Ok(data) = perfdata::parse(bytes) else {
        return;
    };
    assert!(
        data.entries.len() <= bytes.len().saturating_sub(32) / 20,
        "{} entries from {} bytes",
        data.entries.len(),
        bytes.len()
    );
    let gc = jvm::gc(&data);
    let _ = jvm::max_heap(&data, &gc);
}
