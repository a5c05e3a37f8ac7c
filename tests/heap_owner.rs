//! Property (issue 13): a pod that sets its heap in any place SPEC §4.1 lists never gets
//! `memory` reported applied, and no second heap flag is added anywhere.
//!
//! The places: `JAVA_TOOL_OPTIONS`, `JDK_JAVA_OPTIONS`, `JAVA_OPTS`, `_JAVA_OPTIONS`, a
//! profile's options and heap variables, and `command`/`args` (plain or inside `sh -c`). Each
//! generated pod is mutated fresh (no status annotation), so the early return for mutated pods
//! plays no part.

use jvm_guard::config::ServerSettings;
use jvm_guard::mutate::pod::Pod;
use jvm_guard::{mutate, Defaults, NamespaceConfig};
use proptest::prelude::*;
use serde_json::{json, Value};

/// Heap settings as users write them.
const HEAP_TOKENS: &[&str] = &[
    "-Xmx512m",
    "-Xms1g",
    "-XX:MaxRAMPercentage=75",
    "-XX:MaxRAMPercentage=62.5",
    "-XX:InitialRAMPercentage=30",
    "-XX:MinRAMPercentage=50",
    "-XX:MaxRAMFraction=2",
    "-XX:MaxHeapSize=1g",
    "-XX:MaxRAM=4g",
];

/// Where the heap goes: a variable (with a profile-matching image, when the variable is a
/// launcher's), or the command.
#[derive(Debug, Clone)]
enum Place {
    Var {
        name: &'static str,
        image: &'static str,
    },
    /// A launcher variable holding a bare size (`ZOO_HEAP_SIZE=1024`, `MAX_HEAP_SIZE=4G`).
    Size {
        name: &'static str,
        value: &'static str,
        image: &'static str,
    },
    Command {
        shell: bool,
    },
}

fn place() -> impl Strategy<Value = Place> {
    let var = |name, image| Just(Place::Var { name, image });
    prop_oneof![
        var("JAVA_TOOL_OPTIONS", "eclipse-temurin:21-jre"),
        var("JDK_JAVA_OPTIONS", "eclipse-temurin:21-jre"),
        var("JAVA_OPTS", "corp/app:1"),
        var("_JAVA_OPTIONS", "corp/app:1"),
        var("KAFKA_HEAP_OPTS", "confluentinc/cp-kafka:7.6.0"),
        var("KAFKA_OPTS", "bitnami/kafka:3.9"),
        var(
            "ES_JAVA_OPTS",
            "docker.elastic.co/elasticsearch/elasticsearch:8.15.0"
        ),
        var("JVMFLAGS", "zookeeper:3.9"),
        var("CATALINA_OPTS", "tomcat:10"),
        var(
            "JAVA_OPTS_APPEND",
            "registry.access.redhat.com/ubi9/openjdk-21:1.20"
        ),
        var("SOLR_JAVA_MEM", "solr:9"),
        var("JAVA_OPTS_KC_HEAP", "quay.io/keycloak/keycloak:26.0"),
        var(
            "SCHEMA_REGISTRY_HEAP_OPTS",
            "confluentinc/cp-schema-registry:7.6.0"
        ),
        Just(Place::Size {
            name: "ZOO_HEAP_SIZE",
            value: "1024",
            image: "bitnami/zookeeper:3.9"
        }),
        Just(Place::Size {
            name: "MAX_HEAP_SIZE",
            value: "4G",
            image: "cassandra:5"
        }),
        Just(Place::Size {
            name: "SOLR_HEAP",
            value: "2g",
            image: "solr:9"
        }),
        Just(Place::Size {
            name: "LOGSTASH_HEAP_SIZE",
            value: "768m",
            image: "bitnami/logstash:8"
        }),
        any::<bool>().prop_map(|shell| Place::Command { shell }),
    ]
}

fn pod(place: &Place, token: &str, limit: &str, extra: &str) -> Value {
    let mut container = json!({
        "name": "app",
        "image": "corp/app:1",
        "resources": {"limits": {"memory": limit}},
    });
    match place {
        Place::Var { name, image } => {
            container["image"] = json!(image);
            container["env"] = json!([{"name": name, "value": format!("{extra} {token}").trim()}]);
        }
        Place::Size { name, value, image } => {
            container["image"] = json!(image);
            container["env"] = json!([{"name": name, "value": value}]);
        }
        Place::Command { shell: false } => {
            container["command"] = json!(["java", token, "-jar", "/app.jar"]);
        }
        Place::Command { shell: true } => {
            container["command"] = json!(["sh", "-c", format!("exec java {token} -jar /app.jar")]);
        }
    }
    json!({
        "metadata": {"name": "p", "namespace": "shop"},
        "spec": {"containers": [container]},
    })
}

/// Every heap token anywhere in the patched pod's env values and command.
fn heap_tokens(doc: &Value) -> Vec<String> {
    let c = &doc["spec"]["containers"][0];
    let mut texts: Vec<String> = Vec::new();
    for e in c["env"].as_array().into_iter().flatten() {
        texts.extend(e["value"].as_str().map(str::to_string));
    }
    for key in ["command", "args"] {
        for w in c[key].as_array().into_iter().flatten() {
            texts.extend(w.as_str().map(str::to_string));
        }
    }
    texts
        .iter()
        .flat_map(|t| t.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .filter(|t| {
            t.starts_with("-Xmx")
                || t.starts_with("-Xms")
                || t.starts_with("-XX:MaxRAM")
                || t.starts_with("-XX:MinRAM")
                || t.starts_with("-XX:InitialRAM")
                || t.starts_with("-XX:MaxHeapSize")
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_heap_set_by_the_workload_is_never_ours(
        place in place(),
        token in prop::sample::select(HEAP_TOKENS),
        limit in prop::sample::select(&["256Mi", "512Mi", "1Gi", "4Gi"][..]),
        extra in prop::sample::select(&["", "-Dfile.encoding=UTF-8", "-XX:+UseG1GC -Duser.timezone=UTC"][..]),
    ) {
        let pod = pod(&place, token, limit, extra);
        let ns = NamespaceConfig::new("shop", None, &Defaults::default());
        let settings = ServerSettings {
            tools_image: Some("tools:1".into()),
            ..ServerSettings::default()
        };
        let before = heap_tokens(&pod);
        let typed: Pod = serde_json::from_value(pod.clone()).unwrap();
        let m = mutate(&typed, &ns, &settings);
        let status = m.status.expect("the pod is a target");
        let app = &status.containers["app"];
        prop_assert!(
            !app.applied.iter().any(|f| f.name() == "memory"),
            "memory reported applied for {place:?} {token}: {app:?}"
        );
        let mut doc = pod;
        m.patch.apply(&mut doc).unwrap();
        prop_assert_eq!(heap_tokens(&doc), before, "a heap flag was added for {:?} {}", place, token);
    }
}
