//! Issue 14, item 10, second half: a fixed sample of the pods tests/properties.rs generates,
//! mutated by the engine as there (same namespace annotations and settings, from the same
//! strategy), is accepted by the real kube-apiserver (server-side dry-run create) in a Pod
//! Security "baseline" namespace, and in a "restricted" one when our own restricted check
//! passes. An output with a hostPath dump volume (allowed by the settings) goes to a
//! "privileged" namespace instead: baseline refuses hostPath by design. Each input is sent
//! too, to the same namespace: a generated pod the apiserver refuses as it is says nothing
//! about the mutation, so only an accepted input whose output is refused is a failure.

use std::collections::BTreeMap;
use std::time::Instant;

use kube::Client;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use crate::dry_run::{dry_run, has_host_path, passes_restricted_check, pod_security_namespace};

#[path = "../support/pod_gen.rs"]
mod pod_gen;

/// How many generated pods are sent.
const SAMPLE: usize = 200;

const BASELINE: &str = "e2e-sample-baseline";
const RESTRICTED: &str = "e2e-sample-restricted";
const PRIVILEGED: &str = "e2e-sample-privileged";

/// The same cases on every run: the strategy of tests/properties.rs, drawn with the
/// deterministic ChaCha generator.
fn sample() -> Vec<pod_gen::Case> {
    let config = Config {
        rng_algorithm: RngAlgorithm::ChaCha,
        ..Config::default()
    };
    let rng = TestRng::deterministic_rng(RngAlgorithm::ChaCha);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let strategy = pod_gen::case();
    (0..SAMPLE)
        .map(|_| strategy.new_tree(&mut runner).expect("a case").current())
        .collect()
}

/// Per namespace: inputs accepted and refused, outputs accepted.
#[derive(Default, Debug)]
struct Counts {
    inputs_accepted: usize,
    inputs_refused: usize,
    outputs_accepted: usize,
}

pub async fn generated_pods_mutated_are_pods_the_apiserver_accepts(client: &Client) {
    pod_security_namespace(client, BASELINE, "baseline").await;
    pod_security_namespace(client, RESTRICTED, "restricted").await;
    pod_security_namespace(client, PRIVILEGED, "privileged").await;
    let started = Instant::now();
    let cases = sample();
    let mut counts: BTreeMap<&str, Counts> = BTreeMap::new();
    // Why inputs were refused: the apiserver's message, how many times.
    let mut input_reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut unchanged = 0;
    for (i, case) in cases.iter().enumerate() {
        let input = &case.input;
        let output = match case.mutate(input) {
            Ok((mutation, output)) => {
                if mutation.patch.0.is_empty() {
                    unchanged += 1;
                }
                output
            }
            Err(e) => {
                failures.push(format!("case {i}: {e}\ninput: {input}"));
                continue;
            }
        };
        let first = if has_host_path(&output) {
            PRIVILEGED
        } else {
            BASELINE
        };
        let mut namespaces = vec![first];
        if passes_restricted_check(&output) {
            namespaces.push(RESTRICTED);
        }
        for ns in namespaces {
            let count = counts.entry(ns).or_default();
            if let Err(e) = dry_run(client, ns, input).await {
                count.inputs_refused += 1;
                *input_reasons.entry(e).or_default() += 1;
                continue;
            }
            count.inputs_accepted += 1;
            match dry_run(client, ns, &output).await {
                Ok(()) => count.outputs_accepted += 1,
                Err(e) => failures.push(format!(
                    "case {i} ({ns}): the input is accepted, the output refused: {e}\n\
                     namespace annotations: {:?}\nsettings: {:?}\ninput: {input}\noutput: {output}",
                    case.ns_annotations, case.settings
                )),
            }
        }
    }
    println!(
        "{SAMPLE} generated pods ({unchanged} left unchanged by the engine) in {:?}: {counts:#?}",
        started.elapsed()
    );
    for (reason, n) in &input_reasons {
        println!("input refused {n}x: {reason}");
    }
    assert!(
        failures.is_empty(),
        "{} mutated pods refused by the apiserver whose input it accepts:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    // The sample means something: most inputs are valid pods, and some are restricted ones.
    let baseline = counts.get(BASELINE).map_or(0, |c| c.inputs_accepted);
    assert!(
        baseline >= SAMPLE * 3 / 4,
        "only {baseline} of {SAMPLE} generated pods accepted in {BASELINE}: {input_reasons:#?}"
    );
    assert!(
        counts
            .get(RESTRICTED)
            .is_some_and(|c| c.outputs_accepted > 0),
        "some outputs are restricted-compliant: {counts:?}"
    );
}
