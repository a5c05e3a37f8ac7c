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
use serde_json::Value;

use crate::dry_run::{dry_run, has_host_path, passes_restricted_check, pod_security_namespace};

#[path = "../support/pod_gen.rs"]
mod pod_gen;

/// How many generated pods are sent.
const SAMPLE: usize = 200;
/// How many restricted-compliant ones are sent after them, drawn from at most MAX_DRAWS.
const RESTRICTED_EXTRA: usize = 20;
const MAX_DRAWS: usize = 20_000;

const BASELINE: &str = "e2e-sample-baseline";
const RESTRICTED: &str = "e2e-sample-restricted";
const PRIVILEGED: &str = "e2e-sample-privileged";

/// The same cases on every run: the strategy of tests/properties.rs, drawn with the
/// deterministic ChaCha generator.
fn runner() -> TestRunner {
    let config = Config {
        rng_algorithm: RngAlgorithm::ChaCha,
        ..Config::default()
    };
    TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
}

/// Per namespace: inputs accepted and refused, outputs accepted.
#[derive(Default, Debug)]
struct Counts {
    inputs_accepted: usize,
    inputs_refused: usize,
    outputs_accepted: usize,
}

#[derive(Default)]
struct Tally {
    counts: BTreeMap<&'static str, Counts>,
    /// Why inputs were refused: the apiserver's message, how many times.
    input_reasons: BTreeMap<String, usize>,
    failures: Vec<String>,
}

impl Tally {
    /// Sends case `i`'s input, then its output (`mutated`, as `Case::mutate` returned it), to
    /// the baseline namespace (privileged for a hostPath volume) and, when our own restricted
    /// check passes for the output, the restricted one.
    async fn check(
        &mut self,
        client: &Client,
        i: usize,
        case: &pod_gen::Case,
        mutated: Result<Value, String>,
    ) {
        let input = &case.input;
        let output = match mutated {
            Ok(output) => output,
            Err(e) => {
                self.failures.push(format!("case {i}: {e}\ninput: {input}"));
                return;
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
            let count = self.counts.entry(ns).or_default();
            if let Err(e) = dry_run(client, ns, input).await {
                count.inputs_refused += 1;
                *self.input_reasons.entry(e).or_default() += 1;
                continue;
            }
            count.inputs_accepted += 1;
            match dry_run(client, ns, &output).await {
                Ok(()) => count.outputs_accepted += 1,
                Err(e) => self.failures.push(format!(
                    "case {i} ({ns}): the input is accepted, the output refused: {e}\n\
                     namespace annotations: {:?}\nsettings: {:?}\ninput: {input}\noutput: {output}",
                    case.ns_annotations, case.settings
                )),
            }
        }
    }
}

pub async fn generated_pods_mutated_are_pods_the_apiserver_accepts(client: &Client) {
    pod_security_namespace(client, BASELINE, "baseline").await;
    pod_security_namespace(client, RESTRICTED, "restricted").await;
    pod_security_namespace(client, PRIVILEGED, "privileged").await;
    let started = Instant::now();
    let strategy = pod_gen::case();
    let mut runner = runner();
    let mut draw = || strategy.new_tree(&mut runner).expect("a case").current();
    let mut tally = Tally::default();
    let mut unchanged = 0;
    for i in 0..SAMPLE {
        let case = draw();
        let mutated = case.mutate(&case.input).map(|(mutation, output)| {
            if mutation.patch.is_empty() {
                unchanged += 1;
            }
            output
        });
        tally.check(client, i, &case, mutated).await;
    }
    // Few generated pods are restricted-compliant (every container hardened): the cases
    // drawn next whose output passes our restricted check, up to RESTRICTED_EXTRA of them.
    let mut extra = 0;
    let mut drawn = SAMPLE;
    while extra < RESTRICTED_EXTRA && drawn < MAX_DRAWS {
        let case = draw();
        drawn += 1;
        let mutated = case.mutate(&case.input).map(|(_, output)| output);
        if mutated.as_ref().is_ok_and(passes_restricted_check) {
            extra += 1;
            tally.check(client, drawn - 1, &case, mutated).await;
        }
    }
    let Tally {
        counts,
        input_reasons,
        failures,
    } = tally;
    println!(
        "{SAMPLE} generated pods ({unchanged} left unchanged by the engine), then {extra} \
         restricted-compliant ones of {} more drawn, in {:?}: {counts:#?}",
        drawn - SAMPLE,
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
    let restricted = counts.get(RESTRICTED).map_or(0, |c| c.outputs_accepted);
    assert!(
        restricted >= RESTRICTED_EXTRA,
        "only {restricted} restricted-compliant outputs: {counts:?}"
    );
}
