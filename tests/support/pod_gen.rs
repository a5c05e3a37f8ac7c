//! Generated pods for the property tests (tests/properties.rs) and the sample the e2e suite
//! validates with the real kube-apiserver (tests/e2e/property_pods.rs): pods with jvm-guard
//! annotations, commands, env, mounts, init containers and security contexts, a namespace's
//! annotations and the server's settings, and the mutation both apply to them.

use std::collections::BTreeMap;

use jvm_guard::config::{Key, ServerSettings};
use jvm_guard::{mutate, Defaults, Mutation, NamespaceConfig};
use k8s_openapi::api::core::v1::Pod;
use proptest::prelude::*;
use serde_json::{json, Value};

/// Values per key, valid and invalid, so every branch of parsing is reached. The match is
/// exhaustive: a new key does not compile until it has values here.
fn key_values(key: Key) -> &'static [&'static str] {
    match key {
        Key::Containers => &["*", "app", "app,worker", "missing", "Bad_Name", ""],
        Key::MaxRamPercentage => &["auto", "50", "62.5", "100", "0", "80%"],
        Key::InitialRamPercentage => &["25", "90", "x"],
        Key::NonHeapReserve => &["256Mi", "1Gi", "lots"],
        Key::HeapDump => &["true", "false", "maybe"],
        Key::ExitOnOom => &["true", "false", "0"],
        Key::DumpVolume => &["emptyDir", "pvc:dumps", "hostPath:/var/dumps", "nfs:x"],
        Key::DumpMountPath => &["/dumps", "/var/log/dumps", "relative"],
        Key::DumpSizeLimit => &["1Gi", "huge"],
        Key::DumpKeep => &["1", "5", "0", "x"],
        Key::JvmOptions => &["-XX:+UseG1GC -Dfile.encoding=UTF-8", "-Xss1m", "oops"],
        Key::Probes => &[
            "off",
            "tcp",
            "http",
            "spring-boot",
            "quarkus",
            "micronaut",
            "sometimes",
        ],
        Key::ProbePath => &["/health", "health"],
        Key::ProbePort => &["8080", "http", "admin", "0"],
        Key::StartupTimeout => &["60", "181", "-1"],
        Key::Ulimits => &["nofile=65536", "nofile=1:2,core=0", "nofile=x"],
        Key::Tools => &["true", "false"],
        Key::Profile => &["auto", "none", "tomcat", "kafka", "no-such-profile", "Bad"],
        Key::Agent => &["supervise", "exec", "init"],
        Key::PodOverrides => &["true", "false", "no"],
    }
}

/// A key and its values: every [`Key`], then a typo of one.
fn key_choices() -> Vec<(String, &'static [&'static str])> {
    let mut keys: Vec<_> = Key::ALL
        .iter()
        .map(|&k| (k.annotation(), key_values(k)))
        .collect();
    keys.push(("jvm-guard.io/max-ram-percentag".to_string(), &["50"]));
    keys
}

fn annotations() -> impl Strategy<Value = BTreeMap<String, String>> {
    let keys = key_choices();
    prop::collection::vec((0..keys.len(), any::<prop::sample::Index>()), 0..6).prop_map(
        move |picks| {
            picks
                .into_iter()
                .map(|(k, v)| {
                    let (key, values) = &keys[k];
                    (key.clone(), v.get(values).to_string())
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

/// `command` and `args`: none (the image's ENTRYPOINT), `java` in its forms, shells running
/// a JVM or not, launcher scripts, other programs.
fn command() -> impl Strategy<Value = (Option<Value>, Option<Value>)> {
    prop::sample::select(vec![
        (None, None),
        (None, Some(json!(["--server.port=8080"]))),
        (
            Some(json!(["java"])),
            Some(json!(["-Xmx512m", "-jar", "app.jar"])),
        ),
        (Some(json!(["java", "-jar", "/app/app.jar"])), None),
        (
            Some(json!([
                "/opt/java/openjdk/bin/java",
                "-XX:MaxRAMPercentage=50",
                "-cp",
                "/app",
                "Main"
            ])),
            None,
        ),
        (
            Some(json!(["sh", "-c", "exec java $JAVA_OPTS -jar /app.jar"])),
            None,
        ),
        (
            Some(json!(["/bin/sh", "-c"])),
            Some(json!(["java -Xms256m -jar /app.jar"])),
        ),
        (
            Some(json!([
                "bash",
                "-c",
                "curl -sf http://config:8888/app > /tmp/app.yaml && exec /opt/app/bin/start.sh"
            ])),
            None,
        ),
        (
            Some(json!(["/opt/app/bin/start.sh"])),
            Some(json!(["--port", "8080"])),
        ),
        (Some(json!(["/cnb/process/web"])), None),
        (Some(json!(["nginx", "-g", "daemon off;"])), None),
        (Some(json!([])), Some(json!(["run"]))),
    ])
}

/// Mounts an app commonly has; any number of them, up to all seven.
const MOUNTS: &[(&str, &str)] = &[
    ("data", "/data"),
    ("config", "/etc/app"),
    ("tmp", "/tmp"),
    ("logs", "/var/log/app"),
    ("cache", "/home/app/.cache"),
    ("certs", "/etc/ssl/app"),
    ("data", "/var/lib/app/state"),
];

/// Mounts that meet ours: the dump path (default, with a trailing slash, the alternative one
/// of `key_values`), the tools directory, our volume names at other paths.
const COLLIDING_MOUNTS: &[(&str, &str)] = &[
    ("data", "/dumps"),
    ("scratch", "/dumps/"),
    ("data", "/var/log/dumps"),
    ("tools", "/jvm-guard/bin"),
    ("jvm-guard-dumps", "/var/dumps"),
    ("jvm-guard-tools", "/opt/tools"),
];

fn volume_mounts() -> impl Strategy<Value = Vec<Value>> {
    (
        prop::sample::subsequence(MOUNTS.to_vec(), 0..=MOUNTS.len()),
        prop::sample::select(vec![
            None,
            None,
            None,
            Some(0usize),
            Some(1),
            Some(2),
            Some(3),
            Some(4),
            Some(5),
        ]),
        any::<bool>(),
    )
        .prop_map(|(mounts, colliding, read_only)| {
            let mut out: Vec<Value> = mounts
                .into_iter()
                .map(|(name, path)| {
                    let mut m = json!({"name": name, "mountPath": path});
                    if read_only && name == "config" {
                        m["readOnly"] = json!(true);
                    }
                    m
                })
                .collect();
            if let Some(i) = colliding {
                let (name, path) = COLLIDING_MOUNTS[i];
                out.push(json!({"name": name, "mountPath": path}));
            }
            out
        })
}

fn container_security_context() -> impl Strategy<Value = Option<Value>> {
    prop::sample::select(vec![
        None,
        Some(
            json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": true, "runAsNonRoot": true,
            "seccompProfile": {"type": "RuntimeDefault"}}),
        ),
        Some(json!({"runAsUser": 1001, "runAsGroup": 1001})),
        Some(json!({"runAsUser": 0, "capabilities": {"add": ["NET_BIND_SERVICE"]}})),
    ])
}

prop_compose! {
    fn container(name: &'static str)(
        image in prop::sample::select(vec![
            "eclipse-temurin:21-jre",
            "registry.example.com/team/orders:1.4.2",
            "gcr.io/distroless/java21-debian12:nonroot",
            "docker.elastic.co/elasticsearch/elasticsearch:8.15.0",
            "bitnami/kafka:3.7",
            "nginx:1.27",
        ]),
        limit in prop::option::of(prop::sample::select(vec!["256Mi", "1Gi", "1536Mi", "2G", "3.5Gi"])),
        jto in tool_options(),
        other_env in any::<bool>(),
        env_present in any::<bool>(),
        env_from in any::<bool>(),
        ports in prop::sample::select(vec![0usize, 1, 2]),
        probes in prop::collection::vec(any::<bool>(), 3),
        mounts in volume_mounts(),
        (command, args) in command(),
        security_context in container_security_context(),
    ) -> Value {
        let mut c = json!({"name": name, "image": image});
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
        if !mounts.is_empty() { c["volumeMounts"] = Value::Array(mounts); }
        if let Some(command) = command { c["command"] = command; }
        if let Some(args) = args { c["args"] = args; }
        if let Some(sc) = security_context { c["securityContext"] = sc; }
        c
    }
}

/// Init containers, never targets: plain ones (one a JVM), native sidecars
/// (`restartPolicy: Always`, one a JVM metrics exporter), and one that takes our name.
fn init_containers() -> impl Strategy<Value = Vec<Value>> {
    prop::sample::subsequence(
        vec![
            json!({"name": "migrate", "image": "flyway/flyway:10", "command": ["flyway", "migrate"],
                "env": [{"name": "JAVA_TOOL_OPTIONS", "value": "-Xmx128m"}],
                "resources": {"limits": {"memory": "512Mi"}}}),
            json!({"name": "wait-for-db", "image": "busybox:1.36",
                "command": ["sh", "-c", "until nc -z db 5432; do sleep 1; done"]}),
            json!({"name": "linkerd-proxy", "image": "cr.l5d.io/linkerd/proxy:stable-2.14",
                "restartPolicy": "Always", "ports": [{"name": "linkerd-admin", "containerPort": 4191}]}),
            json!({"name": "jmx-exporter", "image": "bitnami/jmx-exporter:1.0", "restartPolicy": "Always",
                "command": ["java", "-jar", "/opt/jmx_prometheus_httpserver.jar", "5556", "/etc/jmx/config.yaml"],
                "resources": {"limits": {"memory": "256Mi"}},
                "volumeMounts": [{"name": "config", "mountPath": "/etc/jmx"}]}),
            json!({"name": "log-shipper", "image": "fluent/fluent-bit:3.1", "restartPolicy": "Always",
                "volumeMounts": [{"name": "logs", "mountPath": "/var/log/app", "readOnly": true}]}),
            json!({"name": "jvm-guard-tools", "image": "example.com/other-tools:1",
                "command": ["cp", "/tools/run", "/shared/run"]}),
        ],
        0..=3,
    )
}

/// Where the pod runs: `spec.os` and the `kubernetes.io/os` / `arch` node selector.
fn platform() -> impl Strategy<Value = (Option<&'static str>, Option<(&'static str, &'static str)>)>
{
    (
        // Windows one time in ten each way: SPEC §2 leaves those pods alone, so they test less.
        prop::sample::select(vec![
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            Some("linux"),
            Some("linux"),
            Some("windows"),
        ]),
        prop::sample::select(vec![
            None,
            None,
            None,
            None,
            None,
            None,
            Some(("kubernetes.io/os", "linux")),
            Some(("kubernetes.io/os", "linux")),
            Some(("kubernetes.io/arch", "arm64")),
            Some(("kubernetes.io/os", "windows")),
        ]),
    )
}

fn pod_security_context() -> impl Strategy<Value = Option<Value>> {
    prop::sample::select(vec![
        None,
        Some(json!({"runAsNonRoot": true, "runAsUser": 1000, "fsGroup": 2000})),
        Some(json!({"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}})),
        Some(json!({"runAsUser": 0})),
    ])
}

prop_compose! {
    fn pod()(
        names in prop::sample::subsequence(vec!["istio-proxy", "app", "worker", "api"], 1..=4),
        seed_containers in prop::collection::vec(container("x"), 4),
        init in init_containers(),
        pod_annotations in prop::option::of(annotations()),
        default_container in prop::option::of(prop::sample::select(vec!["app", "worker", "nope"])),
        extra_volume in prop::sample::select(vec![None, None, Some("data"), Some("jvm-guard-dumps"), Some("jvm-guard-tools")]),
        generate_name in any::<bool>(),
        (os, node_selector) in platform(),
        security_context in pod_security_context(),
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
        if !init.is_empty() { pod["spec"]["initContainers"] = Value::Array(init); }
        // Every mounted volume exists, once; sometimes one more, possibly with our names.
        let mut volumes: Vec<String> = Vec::new();
        for c in pod["spec"]["containers"].as_array().into_iter().flatten()
            .chain(pod["spec"]["initContainers"].as_array().into_iter().flatten())
        {
            for m in c["volumeMounts"].as_array().into_iter().flatten() {
                let name = m["name"].as_str().unwrap_or_default().to_string();
                if !volumes.contains(&name) { volumes.push(name); }
            }
        }
        if let Some(v) = extra_volume {
            if !volumes.iter().any(|n| n == v) { volumes.push(v.to_string()); }
        }
        if !volumes.is_empty() {
            pod["spec"]["volumes"] = volumes.iter().map(|n| json!({"name": n, "emptyDir": {}})).collect();
        }
        if let Some(os) = os { pod["spec"]["os"] = json!({"name": os}); }
        if let Some((k, v)) = node_selector { pod["spec"]["nodeSelector"] = json!({k: v}); }
        if let Some(sc) = security_context { pod["spec"]["securityContext"] = sc; }
        if os == Some("windows") {
            // The apiserver refuses Linux security settings in a pod for Windows.
            for c in pod["spec"]["containers"].as_array_mut().into_iter().flatten() {
                if let Some(c) = c.as_object_mut() { c.remove("securityContext"); }
            }
            if pod["spec"].get("securityContext").is_some() {
                pod["spec"]["securityContext"] = json!({"windowsOptions": {"runAsUserName": "ContainerUser"}});
            }
        }
        pod
    }
}

/// A generated pod, its namespace's annotations and the server's settings.
#[derive(Debug, Clone)]
pub struct Case {
    pub input: Value,
    pub ns_annotations: BTreeMap<String, String>,
    pub settings: ServerSettings,
}

prop_compose! {
    pub fn case()(
        input in pod(),
        ns_annotations in annotations(),
        allow_host_path in any::<bool>(),
        tools_image in prop::option::of(Just("ghcr.io/jvm-guard/jvm-guard:test".to_string())),
    ) -> Case {
        let settings = ServerSettings { allow_host_path, webhook_namespace: None, tools_image, ..ServerSettings::default() };
        Case { input, ns_annotations, settings }
    }
}

impl Case {
    /// The engine's patch for `pod`, in namespace `team` with the case's annotations and
    /// settings, applied to it: the mutation and the resulting pod, which must be a Pod.
    pub fn mutate(&self, pod: &Value) -> Result<(Mutation, Value), String> {
        let ns = NamespaceConfig::new("team", Some(&self.ns_annotations), &Defaults::default());
        serde_json::from_value::<Pod>(pod.clone()).map_err(|e| format!("not a Pod: {e}"))?;
        // Read as the webhook reads a review's pod.
        let typed: jvm_guard::mutate::pod::Pod =
            serde_json::from_value(pod.clone()).map_err(|e| format!("not a Pod: {e}"))?;
        let mutation = mutate(&typed, &ns, &self.settings);
        let mut output = pod.clone();
        mutation
            .patch
            .apply(&mut output)
            .map_err(|e| format!("patch does not apply: {e}\n{:?}", mutation.patch))?;
        serde_json::from_value::<Pod>(output.clone())
            .map_err(|e| format!("result is not a Pod: {e}"))?;
        Ok((mutation, output))
    }
}
