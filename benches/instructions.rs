//! `scripts/bench.sh instructions`: one part of the handler run N times on one review body, for
//! callgrind to count the instructions. Counts do not move with the machine's load as times do
//! (docs/performance.md), so a change's cost reads the same on a busy shared machine.
//!
//!     cargo run --release --example bench-instructions -- benches/reviews/2kb.json 1000 review

use std::hint::black_box;

use anyhow::{bail, Context as _};
use jvm_guard::config::ServerSettings;
use jvm_guard::webhook::namespaces::StaticNamespaces;
use jvm_guard::webhook::{admission, cost, lean};
use jvm_guard::Defaults;
use kube_core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube_core::DynamicObject;

/// The parts, as `benches/mutate.rs` names them.
const PARTS: &str = "review (all of the handler), parse, answer (plan, mutate and encode a parsed \
                     review), guard (the router's passes over the body before the handler: \
                     lean::cut and parse_cost), baseline (benches/baseline.rs's handler)";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [body, n, part] = args.as_slice() else {
        bail!("usage: bench-instructions BODY.json N PART; PART: {PARTS}");
    };
    let body = std::fs::read(body).with_context(|| format!("cannot read {body}"))?;
    let n: usize = n.parse().context("N: a count of reviews")?;
    let defaults = Defaults::from_yaml(include_str!("defaults.yaml")).context("defaults")?;
    let namespaces = StaticNamespaces::every(&defaults);
    let settings = ServerSettings {
        tools_image: Some("ghcr.io/jvm-guard/jvm-guard:bench".into()),
        ..ServerSettings::default()
    };
    let answer = |parsed: &admission::Parsed| {
        let reviewed = parsed
            .plan(&namespaces, &settings)
            .answer(&Default::default());
        admission::to_json(reviewed.review).expect("encodes").len()
    };
    let parsed = admission::parse(&body).context("not a review")?;
    // Once outside the count's difference (N and a smaller N are run): first-use work such as
    // the built-in profiles' table is in both.
    let mut bytes = answer(&parsed);
    for _ in 0..n {
        bytes += match part.as_str() {
            "review" => answer(&admission::parse(black_box(&body)).expect("a review")),
            "parse" => {
                black_box(admission::parse(black_box(&body)).expect("a review"));
                1
            }
            "answer" => answer(black_box(&parsed)),
            "guard" => guard(black_box(&body)),
            "baseline" => baseline(black_box(&body)),
            _ => bail!("unknown part {part}; PART: {PARTS}"),
        };
    }
    println!("{bytes}");
    Ok(())
}

/// What `router::budgeted` does to a body before the handler sees it.
fn guard(body: &[u8]) -> usize {
    let leaner = lean::cut(body);
    cost::parse_cost(leaner.as_deref().unwrap_or(body))
}

fn baseline(body: &[u8]) -> usize {
    let review: AdmissionReview<DynamicObject> = serde_json::from_slice(body).expect("a review");
    let request: AdmissionRequest<DynamicObject> = review.try_into().expect("a request");
    let answer = AdmissionResponse::from(&request).into_review();
    serde_json::to_vec(&answer).expect("encodes").len()
}
