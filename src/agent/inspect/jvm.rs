//! What a JVM's performance data says about it: its version, command, arguments, collector and
//! the maximum heap (`MaxHeapSize`), read from the GC's generation counters.

use serde::Serialize;

use super::perfdata::PerfData;

/// The garbage collector, told apart by the names HotSpot gives its counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Gc {
    Serial,
    Parallel,
    G1,
    Shenandoah,
    Z,
    Epsilon,
    /// None of the above; the policy name if there is one.
    Unknown,
}

impl std::fmt::Display for Gc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Gc::Serial => "Serial GC",
            Gc::Parallel => "Parallel GC",
            Gc::G1 => "G1",
            Gc::Shenandoah => "Shenandoah",
            Gc::Z => "ZGC",
            Gc::Epsilon => "Epsilon",
            Gc::Unknown => "an unknown GC",
        })
    }
}

/// The generation counters every collector publishes (`sun.gc.generation.N.maxCapacity`).
const YOUNG_MAX: &str = "sun.gc.generation.0.maxCapacity";
const OLD_MAX: &str = "sun.gc.generation.1.maxCapacity";

pub fn gc(data: &PerfData) -> Gc {
    match data.string("sun.gc.policy.name") {
        Some("Copy:MSC") => return Gc::Serial,
        Some("ParScav:MSC") => return Gc::Parallel,
        Some("GarbageFirst") => return Gc::G1,
        _ => {}
    }
    let collectors: Vec<&str> = (0..4)
        .filter_map(|i| data.string(&format!("sun.gc.collector.{i}.name")))
        .collect();
    if collectors.iter().any(|c| c.starts_with("Shenandoah")) {
        return Gc::Shenandoah;
    }
    if collectors
        .iter()
        .any(|c| c.starts_with("Z ") || c.starts_with("ZGC "))
    {
        return Gc::Z;
    }
    let young = data.string("sun.gc.generation.0.name");
    match (young, data.string("sun.gc.generation.1.name")) {
        // JDK 11's ZGC names no collector: one generation, "old".
        (None, Some("old")) if collectors.is_empty() => Gc::Z,
        (None, Some("Heap")) if collectors.is_empty() => Gc::Epsilon,
        _ => Gc::Unknown,
    }
}

/// `MaxHeapSize` as `-XX:+PrintFlagsFinal` reports it, from the generation counters; `None`
/// when they are missing or do not add up for this collector.
///
/// Checked against `-XX:+PrintFlagsFinal` on JDK 11, 17, 21 and 25 (tests/jvm.rs runs Serial
/// and G1 on each; the others were checked by hand, at 256 MiB and 636 MiB heaps):
/// - Serial and Parallel: the young and old generations are disjoint ranges of the reserved
///   heap: young maximum + old maximum.
/// - G1: either generation may grow to the whole heap, so each maximum is the heap. JDK 11 and
///   17 pad each space's counter by `MinObjAlignmentInBytes` (`G1MonitoringSupport::
///   pad_capacity`, so jstat never divides by zero): young (eden, s0, s1) is heap + 3 pads, old
///   is heap + 1 pad; JDK 21 and later pad nothing. Old − (young − old) / 2 is the heap either
///   way, whatever `-XX:ObjectAlignmentInBytes` is.
/// - Shenandoah, Epsilon and single-generation ZGC (JDK 11 to 21): generation 1 is the whole
///   heap. Generational ZGC (JDK 25's only mode): each generation may span the heap, like G1,
///   unpadded: the old maximum.
pub fn max_heap(data: &PerfData, gc: &Gc) -> Option<u64> {
    let get = |name| data.long(name).and_then(|v| u64::try_from(v).ok());
    match gc {
        Gc::Serial | Gc::Parallel => get(YOUNG_MAX)?.checked_add(get(OLD_MAX)?),
        Gc::G1 => {
            let (young, old) = (get(YOUNG_MAX)?, get(OLD_MAX)?);
            let pads = young.checked_sub(old)?;
            (pads % 2 == 0).then(|| old.checked_sub(pads / 2))?
        }
        Gc::Shenandoah | Gc::Z | Gc::Epsilon => get(OLD_MAX).filter(|&v| v > 0),
        Gc::Unknown => None,
    }
}

/// Where each part of the JVM's arguments came from, as far as the environment tells: HotSpot
/// records one string (`java.rt.vmArgs`), `JAVA_TOOL_OPTIONS` first, then the launcher's
/// arguments (`JDK_JAVA_OPTIONS` first among them), then `_JAVA_OPTIONS`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgSource {
    /// `JAVA_TOOL_OPTIONS`, `JDK_JAVA_OPTIONS`, `_JAVA_OPTIONS` or `command line`.
    pub source: String,
    pub args: Vec<String>,
}

/// The variables the JVM and its launcher read options from, in the order their options
/// appear in `java.rt.vmArgs`.
pub const OPTION_VARS: [&str; 3] = ["JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS", "_JAVA_OPTIONS"];

/// Splits `vm_args` by source, given the values of [`OPTION_VARS`] in the JVM's environment.
/// `None` when the record does not start and end as those values say (a launcher other than
/// `java`, quoting): then no source is claimed.
pub fn arg_sources(vm_args: &str, env: &[(&str, Option<&str>)]) -> Option<Vec<ArgSource>> {
    let words = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    let var = |name: &str| {
        env.iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| *v)
            .map(words)
            .unwrap_or_default()
    };
    let mut rest = words(vm_args);
    let mut out = Vec::new();
    let tool = var("JAVA_TOOL_OPTIONS");
    if !tool.is_empty() {
        rest.strip_prefix(tool.as_slice())?;
        rest.drain(..tool.len());
        out.push(ArgSource {
            source: "JAVA_TOOL_OPTIONS".into(),
            args: tool,
        });
    }
    let trailing = var("_JAVA_OPTIONS");
    if !trailing.is_empty() {
        rest.strip_suffix(trailing.as_slice())?;
        rest.truncate(rest.len() - trailing.len());
    }
    let launcher = var("JDK_JAVA_OPTIONS");
    if !launcher.is_empty() && rest.starts_with(&launcher) {
        rest.drain(..launcher.len());
        out.push(ArgSource {
            source: "JDK_JAVA_OPTIONS".into(),
            args: launcher,
        });
    }
    if !rest.is_empty() {
        out.push(ArgSource {
            source: "command line".into(),
            args: rest,
        });
    }
    if !trailing.is_empty() {
        out.push(ArgSource {
            source: "_JAVA_OPTIONS".into(),
            args: trailing,
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::super::perfdata::{self, tests::Builder, ByteOrder};
    use super::*;

    fn data(b: Builder) -> PerfData {
        perfdata::parse(&b.build()).unwrap()
    }

    fn generations(policy: Option<&str>, young: Option<i64>, old: i64) -> Builder {
        let mut b = Builder::new(ByteOrder::Little);
        if let Some(p) = policy {
            b = b.string("sun.gc.policy.name", p);
        }
        if let Some(y) = young {
            b = b.long(YOUNG_MAX, y);
        }
        b.long(OLD_MAX, old)
    }

    // Values seen on real JVMs (see `max_heap`).
    #[rstest]
    #[case::serial("Copy:MSC", 89_456_640, 178_978_816, Gc::Serial, Some(268_435_456))]
    #[case::parallel(
        "ParScav:MSC",
        222_298_112,
        444_596_224,
        Gc::Parallel,
        Some(666_894_336)
    )]
    #[case::g1_jdk17("GarbageFirst", 268_435_480, 268_435_464, Gc::G1, Some(268_435_456))]
    #[case::g1_jdk17_align16("GarbageFirst", 268_435_504, 268_435_472, Gc::G1, Some(268_435_456))]
    #[case::g1_jdk21("GarbageFirst", 666_894_336, 666_894_336, Gc::G1, Some(666_894_336))]
    #[case::g1_odd_padding("GarbageFirst", 101, 100, Gc::G1, None)]
    #[case::g1_young_below_old("GarbageFirst", 99, 100, Gc::G1, None)]
    #[case::unknown_policy("Something:New", 1, 2, Gc::Unknown, None)]
    fn heap_by_policy(
        #[case] policy: &str,
        #[case] young: i64,
        #[case] old: i64,
        #[case] want_gc: Gc,
        #[case] want_heap: Option<u64>,
    ) {
        let d = data(generations(Some(policy), Some(young), old));
        assert_eq!(gc(&d), want_gc);
        assert_eq!(max_heap(&d, &want_gc), want_heap);
    }

    #[test]
    fn heap_without_a_policy_name() {
        let shenandoah = generations(None, Some(0), 665_845_760)
            .string("sun.gc.collector.0.name", "Shenandoah partial")
            .string("sun.gc.generation.1.name", "Heap");
        let d = data(shenandoah);
        assert_eq!(gc(&d), Gc::Shenandoah);
        assert_eq!(max_heap(&d, &Gc::Shenandoah), Some(665_845_760));

        let zgc21 = generations(None, None, 268_435_456)
            .string("sun.gc.collector.2.name", "Z concurrent cycle pauses")
            .string("sun.gc.generation.1.name", "old");
        assert_eq!(gc(&data(zgc21)), Gc::Z);
        let zgc11 = generations(None, None, 268_435_456).string("sun.gc.generation.1.name", "old");
        assert_eq!(gc(&data(zgc11)), Gc::Z);
        let zgc25 = generations(None, Some(268_435_456), 268_435_456)
            .string("sun.gc.collector.0.name", "ZGC minor collection pauses")
            .string("sun.gc.generation.0.name", "young")
            .string("sun.gc.generation.1.name", "old");
        let d = data(zgc25);
        assert_eq!(gc(&d), Gc::Z);
        assert_eq!(max_heap(&d, &Gc::Z), Some(268_435_456));

        let epsilon = generations(None, None, 1 << 28).string("sun.gc.generation.1.name", "Heap");
        assert_eq!(gc(&data(epsilon)), Gc::Epsilon);

        let nothing = data(Builder::new(ByteOrder::Big));
        assert_eq!(gc(&nothing), Gc::Unknown);
        assert_eq!(max_heap(&nothing, &Gc::Serial), None);
        let negative = data(generations(Some("Copy:MSC"), Some(-1), 5));
        assert_eq!(max_heap(&negative, &Gc::Serial), None);
    }

    fn sources(vm_args: &str, env: &[(&str, Option<&str>)]) -> Option<Vec<(String, String)>> {
        arg_sources(vm_args, env).map(|v| {
            v.into_iter()
                .map(|s| (s.source, s.args.join(" ")))
                .collect()
        })
    }

    #[test]
    fn splits_the_arguments_by_source() {
        let recorded = "-XX:MaxRAMPercentage=62 -XX:+HeapDumpOnOutOfMemoryError -Xss2m -Xss1m \
                        -XX:+UseSerialGC -Dx=1";
        let env = [
            (
                "JAVA_TOOL_OPTIONS",
                Some(" -XX:MaxRAMPercentage=62  -XX:+HeapDumpOnOutOfMemoryError"),
            ),
            ("JDK_JAVA_OPTIONS", Some("-Xss2m")),
            ("_JAVA_OPTIONS", Some("-Dx=1")),
        ];
        assert_eq!(
            sources(recorded, &env).unwrap(),
            [
                (
                    "JAVA_TOOL_OPTIONS".into(),
                    "-XX:MaxRAMPercentage=62 -XX:+HeapDumpOnOutOfMemoryError".into()
                ),
                ("JDK_JAVA_OPTIONS".into(), "-Xss2m".into()),
                ("command line".into(), "-Xss1m -XX:+UseSerialGC".into()),
                ("_JAVA_OPTIONS".into(), "-Dx=1".into()),
            ]
        );
        assert_eq!(
            sources("-Xmx1g", &[]).unwrap(),
            [("command line".into(), "-Xmx1g".into())]
        );
        assert_eq!(sources("", &[]).unwrap(), []);
        // The record does not start with the variable: no claim is made.
        assert_eq!(
            sources("-Xmx1g", &[("JAVA_TOOL_OPTIONS", Some("-Xss1m"))]),
            None
        );
        assert_eq!(
            sources("-Xmx1g", &[("_JAVA_OPTIONS", Some("-Xss1m"))]),
            None
        );
    }
}
