//! `mutate` on a typical 3-container pod: a Spring Boot app, an Istio sidecar and a log
//! shipper, in a namespace with the spring-boot probe preset. Target: under 20 µs per pod.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use jvm_guard::config::Settings;
use jvm_guard::{mutate, Defaults, NamespaceConfig};
use k8s_openapi::api::core::v1::Pod;
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
    let settings = Settings::default();
    let pod = typical_pod();
    assert!(!mutate(&pod, &ns, &settings).patch.0.is_empty());
    c.bench_function("mutate/3-container-pod", |b| {
        b.iter(|| mutate(black_box(&pod), black_box(&ns), black_box(&settings)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
