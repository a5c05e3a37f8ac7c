//! `mutate` on a typical 3-container pod: a Spring Boot app, an Istio sidecar and a log
//! shipper, in a namespace with the spring-boot probe preset. Target: under 20 µs per pod.
//!
//! `review/*`: a whole AdmissionReview body of the load benchmark (benches/reviews) through
//! decode, mutation and encode, as the handler does it, next to `baseline/*`: what the
//! baseline server (benches/baseline.rs) does with the same body. The difference is the
//! webhook's own work per request, without TLS and HTTP.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use jvm_guard::config::ServerSettings;
use jvm_guard::mutate::pod::Pod;
use jvm_guard::webhook::admission;
use jvm_guard::webhook::namespaces::StaticNamespaces;
use jvm_guard::{mutate, Defaults, NamespaceConfig};
use kube_core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube_core::DynamicObject;
use serde_json::json;

fn typical_pod() -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "orders-7d9f8c6b5-",
            "labels": {"app": "orders", "pod-template-hash": "7d9f8c6b5"},
            "annotations": {"prometheus.io/scrape": "true", "jvm-guard.io/startup-timeout": "240"}
        },
        "spec": {
            "containers": [
                {
                    "name": "istio-proxy",
                    "image": "istio/proxyv2:1.24.0",
                    "args": ["proxy", "sidecar", "--domain", "$(POD_NAMESPACE).svc.cluster.local"],
                    "ports": [{"name": "http-envoy-prom", "containerPort": 15090}],
                    "resources": {"limits": {"cpu": "2", "memory": "1Gi"}}
                },
                {
                    "name": "orders",
                    "image": "registry.example.com/orders:1.42.0",
                    "ports": [{"name": "http", "containerPort": 8080}, {"name": "mgmt", "containerPort": 8081}],
                    "env": [
                        {"name": "SPRING_PROFILES_ACTIVE", "value": "prod"},
                        {"name": "JAVA_TOOL_OPTIONS", "value": "-Dfile.encoding=UTF-8 -XX:+UseG1GC"},
                        {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}
                    ],
                    "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
                    "volumeMounts": [{"name": "config", "mountPath": "/config"}]
                },
                {
                    "name": "fluent-bit",
                    "image": "fluent/fluent-bit:3.1",
                    "resources": {"limits": {"memory": "128Mi"}}
                }
            ],
            "volumes": [{"name": "config", "configMap": {"name": "orders"}}]
        }
    }))
    .expect("valid pod")
}

fn bench(c: &mut Criterion) {
    let annotations: BTreeMap<String, String> = [
        ("jvm-guard.io/probes", "spring-boot"),
        ("jvm-guard.io/dump-size-limit", "4Gi"),
        ("jvm-guard.io/containers", "orders"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let ns = NamespaceConfig::new("orders", Some(&annotations), &Defaults::default());
    let settings = ServerSettings::default();
    let pod = typical_pod();
    assert!(!mutate(&pod, &ns, &settings).patch.is_empty());
    c.bench_function("mutate/3-container-pod", |b| {
        b.iter(|| mutate(black_box(&pod), black_box(&ns), black_box(&settings)))
    });
}

/// The load benchmark's cluster defaults, as scripts/bench.py gives them to `serve`.
const DEFAULTS: &str = include_str!("defaults.yaml");

fn baseline(body: &[u8]) -> Vec<u8> {
    let review: AdmissionReview<DynamicObject> = serde_json::from_slice(body).expect("a review");
    let request: AdmissionRequest<DynamicObject> = review.try_into().expect("a request");
    serde_json::to_vec(&AdmissionResponse::from(&request).into_review()).expect("encodes")
}

fn bench_review(c: &mut Criterion) {
    let defaults = Defaults::from_yaml(DEFAULTS).expect("valid defaults");
    let namespaces = StaticNamespaces::every(&defaults);
    let settings = ServerSettings {
        tools_image: Some("ghcr.io/jvm-guard/jvm-guard:bench".into()),
        ..ServerSettings::default()
    };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/reviews");
    for size in ["2kb", "10kb", "20kb"] {
        let body = std::fs::read(dir.join(format!("{size}.json"))).expect("generated reviews");
        let review = |body: &[u8]| {
            let reviewed = admission::review(body, &namespaces, &settings).expect("a review");
            admission::to_json(reviewed.review).expect("encodes")
        };
        let answer = review(&body);
        assert!(
            answer.windows(7).any(|w| w == b"\"patch\""),
            "{size}: not patched"
        );
        c.bench_function(&format!("review/{size}"), |b| {
            b.iter(|| review(black_box(&body)))
        });
        c.bench_function(&format!("review-parse/{size}"), |b| {
            b.iter(|| admission::parse(black_box(&body)).expect("a review"))
        });
        let parsed = admission::parse(&body).expect("a review");
        c.bench_function(&format!("review-mutate/{size}"), |b| {
            b.iter(|| {
                let planned = black_box(&parsed).plan(&namespaces, &settings);
                planned.answer(&Default::default())
            })
        });
        c.bench_function(&format!("review-encode/{size}"), |b| {
            b.iter_batched(
                || {
                    parsed
                        .plan(&namespaces, &settings)
                        .answer(&Default::default())
                },
                |reviewed| admission::to_json(reviewed.review).expect("encodes"),
                criterion::BatchSize::SmallInput,
            )
        });
        c.bench_function(&format!("baseline/{size}"), |b| {
            b.iter(|| baseline(black_box(&body)))
        });
    }
}

criterion_group!(benches, bench, bench_review);
criterion_main!(benches);
