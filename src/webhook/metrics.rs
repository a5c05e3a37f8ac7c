//! The webhook's Prometheus metrics and their text encoding for `/metrics`. Labels are few and
//! fixed (outcomes, features), never per pod or namespace.

use std::fmt::Debug;
use std::hash::Hash;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::config::Feature;

/// `Content-Type` of [`Metrics::encode`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How a `/mutate` request ended: one of [`RequestOutcome::ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestOutcome {
    Mutated,
    Unchanged,
    Skipped,
    /// Allowed unchanged with a warning after an error on our side.
    InternalError,
    /// 400: not an AdmissionReview.
    BadRequest,
    /// 413: over the body limit.
    TooLarge,
    /// 500: a panic, or a response that could not be encoded.
    Failed,
    /// Any other refusal (wrong method, unreadable body, ...).
    Rejected,
}

impl RequestOutcome {
    pub const ALL: [RequestOutcome; 8] = [
        RequestOutcome::Mutated,
        RequestOutcome::Unchanged,
        RequestOutcome::Skipped,
        RequestOutcome::InternalError,
        RequestOutcome::BadRequest,
        RequestOutcome::TooLarge,
        RequestOutcome::Failed,
        RequestOutcome::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RequestOutcome::Mutated => "mutated",
            RequestOutcome::Unchanged => "unchanged",
            RequestOutcome::Skipped => "skipped",
            RequestOutcome::InternalError => "internal_error",
            RequestOutcome::BadRequest => "bad_request",
            RequestOutcome::TooLarge => "too_large",
            RequestOutcome::Failed => "failed",
            RequestOutcome::Rejected => "rejected",
        }
    }
}

impl From<crate::webhook::admission::Outcome> for RequestOutcome {
    fn from(outcome: crate::webhook::admission::Outcome) -> RequestOutcome {
        use crate::webhook::admission::Outcome;
        match outcome {
            Outcome::Mutated => RequestOutcome::Mutated,
            Outcome::Unchanged => RequestOutcome::Unchanged,
            Outcome::Skipped => RequestOutcome::Skipped,
            Outcome::InternalError => RequestOutcome::InternalError,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FeatureLabels {
    feature: &'static str,
}

/// The `reason` labels of `jvm_guard_container_terminations_total` (the pod watcher's
/// `Reason::label`).
pub const TERMINATION_REASONS: [&str; 3] = ["heap_oom", "kernel_oom", "exited"];

/// Admission latency buckets, in seconds: a review takes well under a millisecond, and the
/// apiserver gives up after the webhook's `timeoutSeconds`.
const DURATION_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];

/// Every metric of the process, registered once; cheap to update from any thread.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `jvm_guard_admission_requests`' counter of each outcome, by `RequestOutcome as usize`:
    /// counted without the family's lock and label hash on every request.
    requests: [Counter; RequestOutcome::ALL.len()],
    duration: Histogram,
    /// `jvm_guard_mutations`' counter of each feature, by `Feature as usize`.
    mutations: [Counter; Feature::ALL.len()],
    internal_errors: Counter,
    tls_cert_expiry: Gauge,
    tls_reload_errors: Counter,
    namespace_cache_ready: Gauge,
    terminations: Family<ReasonLabels, Counter>,
    unguarded_pods: Gauge,
    pod_watcher_leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

// The counters are indexed by `outcome as usize` and `feature as usize`: each `ALL` must list
// its enum in declaration order.
const _: () = {
    let mut i = 0;
    while i < RequestOutcome::ALL.len() {
        assert!(RequestOutcome::ALL[i] as usize == i);
        i += 1;
    }
    let mut i = 0;
    while i < Feature::ALL.len() {
        assert!(Feature::ALL[i] as usize == i);
        i += 1;
    }
};

/// A counter family registered as `name`, with a series for each of `labels` from the start,
/// and the counter of each, in the order of `labels`: counted without the family's lock and
/// label hash.
fn labelled<L, const N: usize>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    labels: [L; N],
) -> [Counter; N]
where
    L: EncodeLabelSet + Clone + Debug + Hash + Eq + Send + Sync + 'static,
{
    let family = Family::<L, Counter>::default();
    let counters = labels.map(|l| family.get_or_create(&l).clone());
    registry.register(name, help, family);
    counters
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("jvm_guard");
        // Every outcome is exported from the start, so rates and alerts see a zero, not nothing.
        let requests = labelled(
            &mut registry,
            "admission_requests",
            "AdmissionReview requests on /mutate, by outcome",
            RequestOutcome::ALL.map(|outcome| OutcomeLabels {
                outcome: outcome.as_str(),
            }),
        );
        let duration = Histogram::new(DURATION_BUCKETS);
        registry.register_with_unit(
            "admission_duration",
            "Time to answer a /mutate request, body read included",
            Unit::Seconds,
            duration.clone(),
        );
        let mutations = labelled(
            &mut registry,
            "mutations",
            "Mutated pods, by feature applied to at least one of their containers",
            Feature::ALL.map(|feature| FeatureLabels {
                feature: feature.name(),
            }),
        );
        let internal_errors = Counter::default();
        registry.register(
            "internal_errors",
            "Requests that met an error on our side (allowed unchanged, or a 500)",
            internal_errors.clone(),
        );
        let tls_cert_expiry = Gauge::default();
        registry.register_with_unit(
            "tls_cert_expiry_timestamp",
            "notAfter of the serving certificate, as a Unix timestamp",
            Unit::Seconds,
            tls_cert_expiry.clone(),
        );
        let tls_reload_errors = Counter::default();
        registry.register(
            "tls_reload_errors",
            "Changed certificate files that could not be loaded (the old pair is kept)",
            tls_reload_errors.clone(),
        );
        let namespace_cache_ready = Gauge::default();
        registry.register(
            "namespace_cache_ready",
            "1 when the namespace configuration is known, else 0",
            namespace_cache_ready.clone(),
        );
        let terminations = Family::<ReasonLabels, Counter>::default();
        for reason in TERMINATION_REASONS {
            drop(terminations.get_or_create(&ReasonLabels { reason }));
        }
        registry.register(
            "container_terminations",
            "Terminations of guarded containers seen by the pod watcher (--watch-pods), by \
             reason: heap_oom, kernel_oom, exited",
            terminations.clone(),
        );
        let unguarded_pods = Gauge::default();
        registry.register(
            "unguarded_pods",
            "Pods of opted-in namespaces without jvm-guard's status annotation (the webhook did \
             not see them), as the pod watcher's leader counts them",
            unguarded_pods.clone(),
        );
        let pod_watcher_leader = Gauge::default();
        registry.register(
            "pod_watcher_leader",
            "1 while this replica holds the pod watcher's Lease and watches, else 0",
            pod_watcher_leader.clone(),
        );
        Metrics {
            registry,
            requests,
            duration,
            mutations,
            internal_errors,
            tls_cert_expiry,
            tls_reload_errors,
            namespace_cache_ready,
            terminations,
            unguarded_pods,
            pod_watcher_leader,
        }
    }

    /// One answered `/mutate` request.
    pub fn request(&self, outcome: RequestOutcome, seconds: f64) {
        self.requests[outcome as usize].inc();
        self.duration.observe(seconds);
        if matches!(
            outcome,
            RequestOutcome::InternalError | RequestOutcome::Failed
        ) {
            self.internal_errors.inc();
        }
    }

    /// One mutated pod and the features applied to it.
    pub fn mutated(&self, features: impl IntoIterator<Item = Feature>) {
        for feature in features {
            self.mutations[feature as usize].inc();
        }
    }

    pub fn set_tls_cert_expiry(&self, not_after: i64) {
        self.tls_cert_expiry.set(not_after);
    }

    pub fn tls_reload_error(&self) {
        self.tls_reload_errors.inc();
    }

    pub fn set_namespace_cache_ready(&self, ready: bool) {
        self.namespace_cache_ready.set(i64::from(ready));
    }

    /// One guarded container's termination, as the pod watcher saw it: `reason` is one of
    /// [`TERMINATION_REASONS`].
    pub fn terminated(&self, reason: &'static str) {
        self.terminations
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub fn set_unguarded_pods(&self, pods: usize) {
        self.unguarded_pods
            .set(i64::try_from(pods).unwrap_or(i64::MAX));
    }

    pub fn set_pod_watcher_leader(&self, leader: bool) {
        self.pod_watcher_leader.set(i64::from(leader));
    }

    /// The OpenMetrics text exposition, as Prometheus scrapes it.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample named exactly `series` (name and labels).
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map(|v| v.parse().unwrap())
    }

    #[test]
    fn a_fresh_registry_exports_every_series_at_zero() {
        let text = Metrics::new().encode();
        for outcome in RequestOutcome::ALL {
            let series = format!(
                "jvm_guard_admission_requests_total{{outcome=\"{}\"}}",
                outcome.as_str()
            );
            assert_eq!(sample(&text, &series), Some(0.0), "{series} in\n{text}");
        }
        for feature in Feature::ALL {
            let series = format!(
                "jvm_guard_mutations_total{{feature=\"{}\"}}",
                feature.name()
            );
            assert_eq!(sample(&text, &series), Some(0.0), "{series}");
        }
        for series in [
            "jvm_guard_admission_duration_seconds_count",
            "jvm_guard_internal_errors_total",
            "jvm_guard_tls_cert_expiry_timestamp_seconds",
            "jvm_guard_tls_reload_errors_total",
            "jvm_guard_namespace_cache_ready",
            "jvm_guard_container_terminations_total{reason=\"heap_oom\"}",
            "jvm_guard_container_terminations_total{reason=\"kernel_oom\"}",
            "jvm_guard_container_terminations_total{reason=\"exited\"}",
            "jvm_guard_unguarded_pods",
            "jvm_guard_pod_watcher_leader",
        ] {
            assert_eq!(sample(&text, series), Some(0.0), "{series} in\n{text}");
        }
        assert!(text.contains("# TYPE jvm_guard_admission_duration_seconds histogram"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn updates_show_in_the_text() {
        let m = Metrics::new();
        m.request(RequestOutcome::Mutated, 0.0003);
        m.request(RequestOutcome::Mutated, 0.002);
        m.request(RequestOutcome::InternalError, 0.001);
        m.request(RequestOutcome::Failed, 0.001);
        m.request(RequestOutcome::BadRequest, 0.00001);
        m.mutated([Feature::Memory, Feature::HeapDump]);
        m.mutated([Feature::Memory]);
        m.set_tls_cert_expiry(1_900_000_000);
        m.tls_reload_error();
        m.set_namespace_cache_ready(true);
        m.terminated("kernel_oom");
        m.terminated("kernel_oom");
        m.set_unguarded_pods(3);
        m.set_pod_watcher_leader(true);
        let text = m.encode();
        let value = |series: &str| sample(&text, series).unwrap_or_else(|| panic!("{series}"));
        assert_eq!(
            value("jvm_guard_admission_requests_total{outcome=\"mutated\"}"),
            2.0
        );
        assert_eq!(
            value("jvm_guard_admission_requests_total{outcome=\"bad_request\"}"),
            1.0
        );
        assert_eq!(value("jvm_guard_internal_errors_total"), 2.0);
        assert_eq!(value("jvm_guard_admission_duration_seconds_count"), 5.0);
        assert_eq!(
            value("jvm_guard_admission_duration_seconds_bucket{le=\"0.0005\"}"),
            2.0
        );
        assert_eq!(value("jvm_guard_mutations_total{feature=\"memory\"}"), 2.0);
        assert_eq!(
            value("jvm_guard_mutations_total{feature=\"heap-dump\"}"),
            1.0
        );
        assert_eq!(
            value("jvm_guard_tls_cert_expiry_timestamp_seconds"),
            1_900_000_000.0
        );
        assert_eq!(value("jvm_guard_tls_reload_errors_total"), 1.0);
        assert_eq!(value("jvm_guard_namespace_cache_ready"), 1.0);
        assert_eq!(
            value("jvm_guard_container_terminations_total{reason=\"kernel_oom\"}"),
            2.0
        );
        assert_eq!(value("jvm_guard_unguarded_pods"), 3.0);
        assert_eq!(value("jvm_guard_pod_watcher_leader"), 1.0);
    }

    /// Each outcome and each feature is counted under its own label, whatever its place in
    /// the enum: the counters are kept in arrays indexed by it.
    #[test]
    fn every_outcome_and_feature_counts_under_its_own_label() {
        for (i, outcome) in RequestOutcome::ALL.into_iter().enumerate() {
            let m = Metrics::new();
            for _ in 0..=i {
                m.request(outcome, 0.001);
            }
            let text = m.encode();
            for other in RequestOutcome::ALL {
                let series = format!(
                    "jvm_guard_admission_requests_total{{outcome=\"{}\"}}",
                    other.as_str()
                );
                let want = if other == outcome {
                    i as f64 + 1.0
                } else {
                    0.0
                };
                assert_eq!(sample(&text, &series), Some(want), "{series} in\n{text}");
            }
        }
        for (i, feature) in Feature::ALL.into_iter().enumerate() {
            let m = Metrics::new();
            for _ in 0..=i {
                m.mutated([feature]);
            }
            let text = m.encode();
            for other in Feature::ALL {
                let series = format!("jvm_guard_mutations_total{{feature=\"{}\"}}", other.name());
                let want = if other == feature {
                    i as f64 + 1.0
                } else {
                    0.0
                };
                assert_eq!(sample(&text, &series), Some(want), "{series} in\n{text}");
            }
        }
    }
}
