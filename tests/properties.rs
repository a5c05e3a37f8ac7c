//! Property tests over generated pods and configurations: the patch applies to its input, the
//! result is a valid Pod, user settings survive, and mutating the result again, with the status
//! annotation that makes `mutate` return early taken off, changes nothing (with it, the early
//! return is tested on its own).

use std::collections::BTreeMap;

use jvm_guard::config::ServerSettings;
use jvm_guard::{mutate, Defaults, Mutation, NamespaceConfig};
use k8s_openapi::api::core::v1::Pod;
use proptest::prelude::*;
use serde_json::{json, Value};

#[path = "support/idempotence.rs"]
mod idempotence;

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
/// of KEY_VALUES), the tools directory, our volume names at other paths.
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

fn items<'a>(value: &'a Value, pointer: &str) -> &'a [Value] {
    value
        .pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// A generated pod, its namespace's annotations and the server's settings.
#[derive(Debug, Clone)]
struct Case {
    input: Value,
    ns_annotations: BTreeMap<String, String>,
    settings: ServerSettings,
}

prop_compose! {
    fn case()(
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
    fn mutate(&self, pod: &Value) -> Result<(Mutation, Value), TestCaseError> {
        let ns = NamespaceConfig::new("team", Some(&self.ns_annotations), &Defaults::default());
        let typed: Pod = serde_json::from_value(pod.clone())
            .map_err(|e| TestCaseError::fail(format!("not a Pod: {e}")))?;
        let mutation = mutate(&typed, &ns, &self.settings);
        let mut output = pod.clone();
        json_patch::patch(&mut output, &mutation.patch).map_err(|e| {
            TestCaseError::fail(format!("patch does not apply: {e}\n{:?}", mutation.patch))
        })?;
        serde_json::from_value::<Pod>(output.clone())
            .map_err(|e| TestCaseError::fail(format!("result is not a Pod: {e}")))?;
        Ok((mutation, output))
    }
}

/// What the apiserver would refuse and deserialising into a Pod does not check: a name or a
/// mount path twice, an empty mount path, a mount of a volume that does not exist.
fn structural_problems(pod: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let volumes: Vec<&str> = items(pod, "/spec/volumes")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    for (i, v) in volumes.iter().enumerate() {
        if volumes[..i].contains(v) {
            problems.push(format!("volume {v} twice"));
        }
    }
    let containers: Vec<&Value> = items(pod, "/spec/initContainers")
        .iter()
        .chain(items(pod, "/spec/containers"))
        .collect();
    let mut names: Vec<&str> = Vec::new();
    for c in containers {
        let name = c["name"].as_str().unwrap_or_default();
        if names.contains(&name) {
            problems.push(format!("container name {name} twice"));
        }
        names.push(name);
        let mut paths: Vec<&str> = Vec::new();
        for m in items(c, "/volumeMounts") {
            let path = m["mountPath"].as_str().unwrap_or_default();
            let mounted = m["name"].as_str().unwrap_or_default();
            let trimmed = path.trim_end_matches('/');
            if path.is_empty() {
                problems.push(format!("{name}: empty mountPath"));
            } else if paths.contains(&trimmed) {
                problems.push(format!("{name}: mountPath {path} twice"));
            }
            paths.push(trimmed);
            if !volumes.contains(&mounted) {
                problems.push(format!("{name}: mounts {mounted}, not a volume of the pod"));
            }
        }
    }
    problems
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn patch_applies_and_keeps_what_the_user_set(case in case()) {
        let input = &case.input;
        let (mutation, output) = case.mutate(input)?;

        prop_assert!(mutation.warnings.iter().all(|w| w.starts_with("jvm-guard: ")));
        // Windows pods are left alone (SPEC §2): no patch, no status; every other pod gets one.
        let windows = input.pointer("/spec/os/name") == Some(&json!("windows"))
            || input.pointer("/spec/nodeSelector/kubernetes.io~1os") == Some(&json!("windows"));
        prop_assert_eq!(mutation.status.is_some(), !windows, "pods in an opted-in namespace get a status, Windows pods none");
        if windows {
            prop_assert!(mutation.patch.0.is_empty(), "a Windows pod is not patched");
        }
        prop_assert_eq!(structural_problems(input), Vec::<String>::new(), "the generator");
        prop_assert_eq!(structural_problems(&output), Vec::<String>::new(), "output: {}", output);

        // User env entries survive, in order; ours are only ever added, each at most once.
        for (i, _) in items(input, "/spec/containers").iter().enumerate() {
            let before = env_names(input, i);
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
            // Mounts: the user's first, unchanged, in order; ours after them.
            let mounts = items(input, &format!("/spec/containers/{i}/volumeMounts"));
            let out_mounts = items(&output, &format!("/spec/containers/{i}/volumeMounts"));
            prop_assert_eq!(&out_mounts[..mounts.len().min(out_mounts.len())], mounts);
            let c = &input["spec"]["containers"][i];
            let out = &output["spec"]["containers"][i];
            prop_assert_eq!(&out["securityContext"], &c["securityContext"], "container {} securityContext", i);
            // The wrapper goes in front of the command; the command itself and `args` stay.
            if !c["args"].is_null() {
                prop_assert_eq!(&out["args"], &c["args"], "container {} args", i);
            }
            if out["command"] != c["command"] {
                let command: Vec<&str> = items(out, "/command").iter().filter_map(Value::as_str).collect();
                let original: Vec<&str> = items(c, "/command").iter().filter_map(Value::as_str).collect();
                let tail = command.iter().position(|t| *t == "--").map(|i| &command[i + 1..]);
                prop_assert_eq!(command.first(), Some(&"/jvm-guard/bin/jvm-guard"), "container {} command", i);
                prop_assert_eq!(tail, Some(original.as_slice()), "container {} command", i);
            }
        }
        // Init containers, native sidecars included, are never targets: left exactly as they
        // were, ours (the tools) only ever appended.
        let init = items(input, "/spec/initContainers");
        let out_init = items(&output, "/spec/initContainers");
        prop_assert!(out_init.len() >= init.len());
        prop_assert_eq!(&out_init[..init.len()], init);
        for added in &out_init[init.len()..] {
            prop_assert_eq!(&added["name"], &json!("jvm-guard-tools"));
        }
        // Pod-level settings are not ours to change; volumes are only appended to.
        for field in ["securityContext", "os", "nodeSelector"] {
            prop_assert_eq!(&output["spec"][field], &input["spec"][field], "spec.{}", field);
        }
        let volumes = items(input, "/spec/volumes");
        let out_volumes = items(&output, "/spec/volumes");
        prop_assert_eq!(&out_volumes[..volumes.len()], volumes);
    }

    /// The real idempotence property: the mutated pod, without the status annotation that
    /// makes `mutate` return early, mutated again gets nothing more: no env, flags, volumes,
    /// mounts, init containers, probes or command (the status may be written again).
    #[test]
    fn mutating_the_output_again_without_the_status_changes_nothing(case in case()) {
        let (first, output) = case.mutate(&case.input)?;
        // The same input gives the same patch (the property below compares against it).
        let (fresh, _) = case.mutate(&case.input)?;
        prop_assert_eq!(&fresh.patch, &first.patch);

        let stripped = idempotence::without_status(&output);
        let (again, _) = case.mutate(&stripped)?;
        if let Err(changes) = idempotence::only_status_changes(&stripped, &again.patch) {
            return Err(TestCaseError::fail(format!(
                "{changes}\nfirst warnings: {:?}\nsecond warnings: {:?}",
                first.warnings, again.warnings
            )));
        }
    }

    /// Reinvocation (the apiserver calls us again after another webhook changed the pod):
    /// our status annotation alone makes the mutation a no-op, whatever else the pod has.
    #[test]
    fn the_status_annotation_makes_mutation_a_no_op(case in case(), value in prop::sample::select(vec!["{}", "", "not json"])) {
        let (_, output) = case.mutate(&case.input)?;
        let (again, _) = case.mutate(&output)?;
        prop_assert!(again.patch.0.is_empty(), "second mutation: {:?}", again.patch);
        prop_assert!(again.status.is_none());

        let mut marked = case.input.clone();
        marked["metadata"]["annotations"][idempotence::STATUS] = json!(value);
        let (early, _) = case.mutate(&marked)?;
        prop_assert!(early.patch.0.is_empty(), "a pod with {}: {:?}", idempotence::STATUS, early.patch);
        prop_assert!(early.status.is_none());
        prop_assert!(early.warnings.is_empty(), "{:?}", early.warnings);
    }
}
