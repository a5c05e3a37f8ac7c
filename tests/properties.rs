//! Property tests over generated pods and configurations: the patch applies to its input, the
//! result is a valid Pod, user settings survive, and mutating the result again changes nothing.

use std::collections::BTreeMap;

use jvm_guard::config::ServerSettings;
use jvm_guard::{mutate, Defaults, NamespaceConfig};
use k8s_openapi::api::core::v1::Pod;
use proptest::prelude::*;
use serde_json::{json, Value};

/// Values per key, valid and invalid, so every branch of parsing is reached.
const KEY_VALUES: &[(&str, &[&str])] = &[
    (
        "containers",
        &["*", "app", "app,worker", "missing", "Bad_Name", ""],
    ),
    (
        "max-ram-percentage",
        &["auto", "50", "62.5", "100", "0", "80%"],
    ),
    ("initial-ram-percentage", &["25", "90", "x"]),
    ("non-heap-reserve", &["256Mi", "1Gi", "lots"]),
    ("heap-dump", &["true", "false", "maybe"]),
    ("exit-on-oom", &["true", "false", "0"]),
    (
        "dump-volume",
        &["emptyDir", "pvc:dumps", "hostPath:/var/dumps", "nfs:x"],
    ),
    ("dump-mount-path", &["/dumps", "/var/log/dumps", "relative"]),
    ("dump-size-limit", &["1Gi", "huge"]),
    (
        "jvm-options",
        &["-XX:+UseG1GC -Dfile.encoding=UTF-8", "-Xss1m", "oops"],
    ),
    (
        "probes",
        &[
            "off",
            "tcp",
            "http",
            "spring-boot",
            "quarkus",
            "micronaut",
            "sometimes",
        ],
    ),
    ("probe-path", &["/health", "health"]),
    ("probe-port", &["8080", "http", "admin", "0"]),
    ("startup-timeout", &["60", "181", "-1"]),
    (
        "ulimits",
        &["nofile=65536", "nofile=1:2,core=0", "nofile=x"],
    ),
    ("tools", &["true", "false"]),
    ("pod-overrides", &["true", "false", "no"]),
    ("max-ram-percentag", &["50"]),
];

fn annotations() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::vec((0..KEY_VALUES.len(), any::<prop::sample::Index>()), 0..6).prop_map(
        |picks| {
            picks
                .into_iter()
                .map(|(k, v)| {
                    let (key, values) = KEY_VALUES[k];
                    (format!("jvm-guard.io/{key}"), v.get(values).to_string())
                })
                .collect()
        },
    )
}

fn tool_options() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        Just(Some(json!({"name": "JAVA_TOOL_OPTIONS", "value": ""}))),
        // The apiserver drops an empty value: the key is absent.
        Just(Some(json!({"name": "JAVA_TOOL_OPTIONS"}))),
        Just(Some(
            json!({"name": "JAVA_TOOL_OPTIONS", "value": "-XX:MaxRAMPercentage=80 -Dx=1"})
        )),
        Just(Some(
            json!({"name": "JAVA_TOOL_OPTIONS", "value": "-Xmx1g -XX:+UseZGC"})
        )),
        Just(Some(
            json!({"name": "JAVA_TOOL_OPTIONS", "value": "-XX:-HeapDumpOnOutOfMemoryError -XX:HeapDumpPath=/tmp"})
        )),
        Just(Some(json!({"name": "JAVA_TOOL_OPTIONS",
            "valueFrom": {"configMapKeyRef": {"name": "jvm", "key": "opts"}}}))),
    ]
}

prop_compose! {
    fn container(name: &'static str)(
        limit in prop::option::of(prop::sample::select(vec!["256Mi", "1Gi", "1536Mi", "2G", "3.5Gi"])),
        jto in tool_options(),
        other_env in any::<bool>(),
        env_present in any::<bool>(),
        env_from in any::<bool>(),
        ports in prop::sample::select(vec![0usize, 1, 2]),
        probes in prop::collection::vec(any::<bool>(), 3),
        mount_dumps in prop::sample::select(vec![0u8, 0, 0, 1, 2]),
        xmx_args in any::<bool>(),
    ) -> Value {
        let mut c = json!({"name": name, "image": "eclipse-temurin:21-jre"});
        let mut env: Vec<Value> = Vec::new();
        if other_env { env.push(json!({"name": "SPRING_PROFILES_ACTIVE", "value": "prod"})); }
        if let Some(j) = jto { env.push(j); }
        if env_present || !env.is_empty() { c["env"] = Value::Array(env); }
        if env_from { c["envFrom"] = json!([{"configMapRef": {"name": "settings"}}]); }
        if let Some(l) = limit { c["resources"] = json!({"limits": {"memory": l}}); }
        let port_list: Vec<Value> = [json!({"name": "admin", "containerPort": 9090}),
            json!({"name": "http", "containerPort": 8080})].into_iter().take(ports).collect();
        if !port_list.is_empty() { c["ports"] = Value::Array(port_list); }
        for (present, field) in probes.iter().zip(["startupProbe", "readinessProbe", "livenessProbe"]) {
            if *present { c[field] = json!({"tcpSocket": {"port": 1234}, "periodSeconds": 7}); }
        }
        match mount_dumps {
            1 => c["volumeMounts"] = json!([{"name": "data", "mountPath": "/dumps"}]),
            2 => c["volumeMounts"] = json!([{"name": "data", "mountPath": "/data"}]),
            _ => {}
        }
        if xmx_args { c["command"] = json!(["java"]); c["args"] = json!(["-Xmx512m", "-jar", "app.jar"]); }
        c
    }
}

prop_compose! {
    fn pod()(
        names in prop::sample::subsequence(vec!["istio-proxy", "app", "worker", "api"], 1..=4),
        seed_containers in prop::collection::vec(container("x"), 4),
        pod_annotations in prop::option::of(annotations()),
        default_container in prop::option::of(prop::sample::select(vec!["app", "worker", "nope"])),
        volumes in prop::sample::select(vec![0u8, 0, 1, 2]),
        generate_name in any::<bool>(),
    ) -> Value {
        let containers: Vec<Value> = names.iter().zip(seed_containers).map(|(n, mut c)| {
            c["name"] = json!(n);
            c
        }).collect();
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {},
            "spec": {"containers": containers}});
        if generate_name { pod["metadata"]["generateName"] = json!("app-"); }
        else { pod["metadata"]["name"] = json!("app-0"); }
        let mut ann = pod_annotations.unwrap_or_default();
        if let Some(d) = default_container {
            ann.insert("kubectl.kubernetes.io/default-container".into(), d.into());
        }
        if !ann.is_empty() { pod["metadata"]["annotations"] = json!(ann); }
        match volumes {
            1 => pod["spec"]["volumes"] = json!([{"name": "data", "emptyDir": {}}]),
            2 => pod["spec"]["volumes"] = json!([{"name": "jvm-guard-dumps", "emptyDir": {}}]),
            _ => {}
        }
        pod
    }
}

fn env_names(pod: &Value, container: usize) -> Vec<String> {
    pod["spec"]["containers"][container]["env"]
        .as_array()
        .map(|env| {
            env.iter()
                .map(|e| e["name"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn patch_applies_and_is_idempotent(
        input in pod(),
        ns_annotations in annotations(),
        allow_host_path in any::<bool>(),
        tools_image in prop::option::of(Just("ghcr.io/jvm-guard/jvm-guard:test".to_string())),
    ) {
        let settings = ServerSettings { allow_host_path, webhook_namespace: None, tools_image, ..ServerSettings::default() };
        let ns = NamespaceConfig::new("team", Some(&ns_annotations), &Defaults::default());
        let typed: Pod = serde_json::from_value(input.clone()).expect("generated pods are valid");
        let mutation = mutate(&typed, &ns, &settings);

        let mut output = input.clone();
        json_patch::patch(&mut output, &mutation.patch)
            .map_err(|e| TestCaseError::fail(format!("patch does not apply: {e}\n{:?}", mutation.patch)))?;
        let mutated: Pod = serde_json::from_value(output.clone())
            .map_err(|e| TestCaseError::fail(format!("result is not a Pod: {e}")))?;

        prop_assert!(mutation.warnings.iter().all(|w| w.starts_with("jvm-guard: ")));
        prop_assert!(mutation.status.is_some(), "pods in an opted-in namespace get a status");

        // User env entries survive, in order; ours are only ever added, each at most once.
        for (i, _) in input["spec"]["containers"].as_array().unwrap().iter().enumerate() {
            let before = env_names(&input, i);
            let after = env_names(&output, i);
            let kept: Vec<&String> = after.iter().filter(|n| before.contains(n)).collect();
            prop_assert_eq!(kept, before.iter().collect::<Vec<_>>());
            for added in after.iter().filter(|n| !before.contains(n)) {
                prop_assert_eq!(after.iter().filter(|n| *n == added).count(), 1);
            }
            let old_jto = input["spec"]["containers"][i]["env"].as_array().and_then(|env| {
                env.iter().find(|e| e["name"] == "JAVA_TOOL_OPTIONS").and_then(|e| e["value"].as_str())
            });
            let new_jto = output["spec"]["containers"][i]["env"].as_array().and_then(|env| {
                env.iter().find(|e| e["name"] == "JAVA_TOOL_OPTIONS").and_then(|e| e["value"].as_str())
            });
            if let (Some(old), Some(new)) = (old_jto, new_jto) {
                prop_assert!(new.ends_with(old.trim()), "user tokens must stay last: {old:?} -> {new:?}");
            }
        }

        let again = mutate(&mutated, &ns, &settings);
        prop_assert!(again.patch.0.is_empty(), "second mutation: {:?}", again.patch);
    }
}
