//! Property tests over generated pods and configurations: the patch applies to its input, the
//! result is a valid Pod, user settings survive, and mutating the result again, with the status
//! annotation that makes `mutate` return early taken off, changes nothing (with it, the early
//! return is tested on its own).

use jvm_guard::Mutation;
use proptest::prelude::*;
use serde_json::{json, Value};

#[path = "support/idempotence.rs"]
mod idempotence;
#[path = "support/pod_gen.rs"]
mod pod_gen;

use pod_gen::{case, Case};

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

/// `Case::mutate`, failing the test case on an error: the patch does not apply, or the input
/// or the result is not a Pod.
fn mutated(case: &Case, pod: &Value) -> Result<(Mutation, Value), TestCaseError> {
    case.mutate(pod).map_err(TestCaseError::fail)
}

fn items<'a>(value: &'a Value, pointer: &str) -> &'a [Value] {
    value
        .pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
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
        let (mutation, output) = mutated(&case, input)?;

        prop_assert!(mutation.warnings.iter().all(|w| w.starts_with("jvm-guard: ")));
        // Windows pods are left alone (SPEC §2): no patch, no status; every other pod gets one.
        let windows = input.pointer("/spec/os/name") == Some(&json!("windows"))
            || input.pointer("/spec/nodeSelector/kubernetes.io~1os") == Some(&json!("windows"));
        prop_assert_eq!(mutation.status.is_some(), !windows, "pods in an opted-in namespace get a status, Windows pods none");
        if windows {
            prop_assert!(mutation.patch.is_empty(), "a Windows pod is not patched");
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
        let (first, output) = mutated(&case, &case.input)?;
        // The same input gives the same patch (the property below compares against it).
        let (fresh, _) = mutated(&case, &case.input)?;
        prop_assert_eq!(&fresh.patch, &first.patch);

        let stripped = idempotence::without_status(&output);
        let (again, _) = mutated(&case, &stripped)?;
        if let Err(changes) = idempotence::only_status_changes(&stripped, &again.patch.operations()) {
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
        let (_, output) = mutated(&case, &case.input)?;
        let (again, _) = mutated(&case, &output)?;
        prop_assert!(again.patch.is_empty(), "second mutation: {:?}", again.patch);
        prop_assert!(again.status.is_none());

        let mut marked = case.input.clone();
        marked["metadata"]["annotations"][idempotence::STATUS] = json!(value);
        let (early, _) = mutated(&case, &marked)?;
        prop_assert!(early.patch.is_empty(), "a pod with {}: {:?}", idempotence::STATUS, early.patch);
        prop_assert!(early.status.is_none());
        prop_assert!(early.warnings.is_empty(), "{:?}", early.warnings);
    }
}

/// Where a workload sets what a feature of ours would set: a variable of any name (one a
/// launcher reads that no profile knows), the image's `Env`, or the command line.
#[derive(Debug, Clone)]
enum Place {
    Env(&'static str),
    ImageEnv(&'static str),
    Args,
}

/// What it sets, and the feature that must then not be applied.
const SETTINGS: &[(&str, &str)] = &[
    ("-Xmx700m", "memory"),
    ("-Xms256m -XX:MaxRAMPercentage=40", "memory"),
    ("-XX:MaxRAMFraction=2", "memory"),
    ("-XX:HeapDumpPath=/data/dumps", "heap-dump"),
    (
        "-XX:+HeapDumpOnOutOfMemoryError -XX:HeapDumpPath=/var/log/app.hprof",
        "heap-dump",
    ),
];

fn places() -> impl Strategy<Value = Place> {
    prop_oneof![
        prop::sample::select(vec![
            "JAVA_OPTS",
            "JAVA_TOOL_OPTIONS",
            "APP_JVM_ARGS",
            "SERVER_OPTS",
            "INSTALL4J_ADD_VM_PARAMS"
        ])
        .prop_map(Place::Env),
        prop::sample::select(vec![
            "JAVA_TOOL_OPTIONS",
            "JDK_JAVA_OPTIONS",
            "LAUNCHER_OPTS"
        ])
        .prop_map(Place::ImageEnv),
        Just(Place::Args),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// No feature is applied for a container that sets, anywhere the container can see, what
    /// that feature would set; and mutating the output again changes nothing but the status.
    #[test]
    fn a_feature_is_never_applied_where_the_workload_sets_it(
        place in places(),
        setting in prop::sample::select(SETTINGS.to_vec()),
        command in prop::sample::select(vec![None, Some(vec!["java", "-jar", "/app/app.jar"]), Some(vec!["/opt/app/bin/run.sh"])]),
        tools in any::<bool>(),
    ) {
        use jvm_guard::mutate::{mutate_with, ImageConfig, ImageRequest, Platform, ResolvedImages};
        use jvm_guard::{Defaults, NamespaceConfig, ServerSettings};
        let (value, feature) = setting;
        let mut container = json!({
            "name": "app", "image": "registry.example.com/shop/app:1",
            "resources": {"limits": {"memory": "1Gi"}},
        });
        if let Some(command) = &command {
            container["command"] = json!(command);
        }
        let mut image = ImageConfig {
            entrypoint: vec!["/opt/app/bin/run.sh".into()],
            env: vec![("JAVA_HOME".into(), "/opt/java".into())],
            ..ImageConfig::default()
        };
        match &place {
            Place::Env(var) => container["env"] = json!([{"name": var, "value": value}]),
            Place::ImageEnv(var) => image.env.push((var.to_string(), value.to_string())),
            Place::Args => container["args"] = json!(["-Dx=1"].iter().copied().chain(value.split(' ')).collect::<Vec<_>>()),
        }
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [container]}});
        let typed: jvm_guard::mutate::pod::Pod = serde_json::from_value(pod.clone()).unwrap();
        let ns = NamespaceConfig::new("team", None, &Defaults::default());
        let settings = ServerSettings {
            tools_image: tools.then(|| "ghcr.io/jvm-guard/jvm-guard:test".to_string()),
            ..ServerSettings::default()
        };
        let mut images = ResolvedImages::default();
        images.insert(
            ImageRequest { image: "registry.example.com/shop/app:1".into(), platform: Platform::default() },
            Ok(image),
        );
        let mutation = mutate_with(&typed, &ns, &settings, &images);
        let status = mutation.status.as_ref().unwrap();
        let applied: Vec<&str> = status.containers["app"].applied.iter().map(|f| f.name()).collect();
        prop_assert!(!applied.contains(&feature), "{place:?} {value}: {feature} applied: {status:?}");

        let mut output = pod.clone();
        mutation.patch.apply(&mut output).unwrap();
        let stripped = idempotence::without_status(&output);
        let typed: jvm_guard::mutate::pod::Pod = serde_json::from_value(stripped.clone()).unwrap();
        let again = mutate_with(&typed, &ns, &settings, &images);
        if let Err(changes) = idempotence::only_status_changes(&stripped, &again.patch.operations()) {
            return Err(TestCaseError::fail(changes));
        }
    }
}
