//! Which JDK a container runs and which of our options it accepts (docs/design.md#jdk): the
//! version in each vendor's spelling, the JDK's `release` file, one table of every option we
//! pass with the release that brought it, and our flags translated for a JDK that lacks one.
//! Both halves use it: admission with what the pod spec and the image name say, the agent with
//! the `release` file of the JVM the command runs.

use std::fmt;

use super::heap::jvm_size;
use super::tokens::tokens;
pub use super::tokens::xx_name;

const MIB: u64 = 1 << 20;

/// A Java version as far as options go: the feature release and, when known, the update
/// (`8u151` is 8 and 151, `17.0.9` is 17 and 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JavaVersion {
    pub feature: u32,
    pub update: Option<u32>,
}

impl JavaVersion {
    /// Reads a version as vendors write it: `8u151`, `jdk8u392-b08`, `1.8.0_151`, `1.8.0_151-b12`,
    /// `17.0.9+9`, `17.0.9_9`, `jdk-21.0.2+13`, `21`. `None` for anything else, and for feature
    /// releases no JVM we size has (below 6, above 99).
    pub fn parse(text: &str) -> Option<JavaVersion> {
        let text = text.trim().trim_matches('"').to_ascii_lowercase();
        let mut rest = text.as_str();
        for prefix in ["openjdk-", "openjdk", "jdk-", "jdk", "jre-", "jre"] {
            if let Some(r) = rest.strip_prefix(prefix) {
                rest = r;
                break;
            }
        }
        let (first, rest) = digits(rest)?;
        let (feature, update) = if first == 1 {
            // The legacy scheme: 1.<feature>.0_<update>.
            let rest = rest.strip_prefix('.')?;
            let (feature, rest) = digits(rest)?;
            let update = rest
                .strip_prefix(".0_")
                .or_else(|| rest.strip_prefix(".0u"))
                .and_then(|r| digits(r).map(|(u, _)| u));
            (feature, update)
        } else if let Some(r) = rest.strip_prefix('u') {
            (first, Some(digits(r)?.0))
        } else if let Some(r) = rest.strip_prefix('.') {
            // <feature>.<interim>.<update>
            let (_, r) = digits(r)?;
            let update = r.strip_prefix('.').and_then(|r| digits(r).map(|(u, _)| u));
            (first, Some(update.unwrap_or(0)))
        } else {
            // A bare feature release: `21`, `21-jre`, `17_35` is not a version.
            match rest.chars().next() {
                None | Some('-' | '+') => (first, None),
                _ => return None,
            }
        };
        (6..=99)
            .contains(&feature)
            .then_some(JavaVersion { feature, update })
    }

    /// Whether this version has what arrived in `since`; `None` when the update is not known
    /// and the answer depends on it.
    fn has(&self, since: &Since) -> Option<bool> {
        if self.feature >= since.from {
            return Some(true);
        }
        match since.lines.iter().find(|(f, _)| *f == self.feature) {
            None => Some(false),
            Some((_, first)) => self.update.map(|u| u >= *first),
        }
    }
}

impl fmt::Display for JavaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.feature, self.update) {
            (v, Some(u)) if v <= 8 => write!(f, "{v}u{u}"),
            (v, Some(u)) => write!(f, "{v}.0.{u}"),
            (v, None) => write!(f, "{v}"),
        }
    }
}

fn digits(text: &str) -> Option<(u32, &str)> {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    if end == 0 || end > 6 {
        return None;
    }
    Some((text[..end].parse().ok()?, &text[end..]))
}

/// The virtual machine: which options it takes differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Vm {
    HotSpot,
    OpenJ9,
}

/// A JDK as far as our options go.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Jdk {
    pub version: JavaVersion,
    pub vm: Vm,
}

impl fmt::Display for Jdk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.vm {
            Vm::HotSpot => write!(f, "JDK {}", self.version),
            Vm::OpenJ9 => write!(f, "OpenJ9 JDK {}", self.version),
        }
    }
}

impl Jdk {
    /// What a JDK's `release` file says: `JAVA_VERSION`, and OpenJ9 where `JVM_VARIANT` or the
    /// `SOURCE` line names it (AdoptOpenJDK and Semeru builds).
    pub fn from_release(text: &str) -> Option<Jdk> {
        let field = |name: &str| {
            text.lines().find_map(|l| {
                let (key, value) = l.split_once('=')?;
                (key.trim() == name).then(|| value.trim().trim_matches('"').to_string())
            })
        };
        let version = JavaVersion::parse(&field("JAVA_VERSION")?)?;
        let openj9 = field("JVM_VARIANT").is_some_and(|v| v.eq_ignore_ascii_case("openj9"))
            || field("SOURCE").is_some_and(|s| s.contains("OpenJ9:"));
        let vm = if openj9 { Vm::OpenJ9 } else { Vm::HotSpot };
        Some(Jdk { version, vm })
    }

    /// Whether this JDK accepts option `name` (`MaxRAMPercentage`); `None` for an option the
    /// table does not know (passed as given).
    pub fn accepts(&self, name: &str) -> Option<bool> {
        let known = OPTIONS.iter().find(|o| o.name == name)?;
        Some(match self.vm {
            Vm::OpenJ9 => known.openj9,
            // An update not known: only what the line's first update had.
            Vm::HotSpot => self.version.has(&known.hotspot).unwrap_or(false),
        })
    }
}

/// The oldest JDK we assume when none is known: 8u92, the first with every option we pass but
/// the RAM percentages (which become an `-Xmx`).
pub const BASELINE: Jdk = Jdk {
    version: JavaVersion {
        feature: 8,
        update: Some(92),
    },
    vm: Vm::HotSpot,
};

/// When HotSpot got an option: the first update of each older feature line that has it
/// (backports), and the feature release from which every one has it.
struct Since {
    lines: &'static [(u32, u32)],
    from: u32,
}

/// An option we may pass, and which JVMs accept it.
struct Known {
    name: &'static str,
    hotspot: Since,
    /// Listed among the HotSpot options OpenJ9 recognizes (eclipse.dev/openj9/docs). OpenJ9
    /// ignores other `-XX:` options; we leave them out all the same.
    openj9: bool,
}

/// Every JVM option jvm-guard passes. Sources: the JDK bug of each, and the release notes of
/// the update a backport went to.
const OPTIONS: &[Known] = &[
    // JDK-8186248 (10); backported to 8u191 with JDK-8146115. Not in 9.
    Known {
        name: "MaxRAMPercentage",
        hotspot: Since {
            lines: &[(8, 191)],
            from: 10,
        },
        openj9: true,
    },
    Known {
        name: "MinRAMPercentage",
        hotspot: Since {
            lines: &[(8, 191)],
            from: 10,
        },
        openj9: false,
    },
    Known {
        name: "InitialRAMPercentage",
        hotspot: Since {
            lines: &[(8, 191)],
            from: 10,
        },
        openj9: true,
    },
    // JDK-8146115 again: container detection on by default, 8u191 and 10.
    Known {
        name: "UseContainerSupport",
        hotspot: Since {
            lines: &[(8, 191)],
            from: 10,
        },
        openj9: true,
    },
    // JDK-8138745 (9), in 8u92 (its release notes: "New JVM Options added:
    // ExitOnOutOfMemoryError and CrashOnOutOfMemoryError").
    Known {
        name: "ExitOnOutOfMemoryError",
        hotspot: Since {
            lines: &[(8, 92)],
            from: 9,
        },
        openj9: true,
    },
    // 1.4.2_12 and 5.0u7; every JDK from 6 on.
    Known {
        name: "HeapDumpOnOutOfMemoryError",
        hotspot: Since {
            lines: &[],
            from: 6,
        },
        openj9: true,
    },
    Known {
        name: "HeapDumpPath",
        hotspot: Since {
            lines: &[],
            from: 6,
        },
        openj9: true,
    },
    Known {
        name: "OnOutOfMemoryError",
        hotspot: Since {
            lines: &[],
            from: 6,
        },
        openj9: true,
    },
    // HotSpot's fatal error log; OpenJ9 writes javacores instead.
    Known {
        name: "ErrorFile",
        hotspot: Since {
            lines: &[],
            from: 6,
        },
        openj9: false,
    },
];

/// The names of every option in the table.
pub fn known_options() -> impl Iterator<Item = &'static str> {
    OPTIONS.iter().map(|o| o.name)
}

/// Our flags as a JDK takes them, and what was changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForJdk {
    pub tokens: Vec<String>,
    /// What was translated or left out, for the agent's line and the status.
    pub notes: Vec<String>,
    /// The options left out, by name.
    pub left_out: Vec<String>,
}

/// `tokens` for `jdk`: an option it accepts (or one the table does not know) as given; a RAM
/// percentage it lacks as the `-Xmx`/`-Xms` that percentage gives of `limit` (the memory limit
/// in bytes), `MinRAMPercentage` then needed no more; any other option it lacks left out.
pub fn for_jdk(jdk: &Jdk, tokens: &[String], limit: Option<u64>) -> ForJdk {
    let mut out = ForJdk::default();
    for token in tokens {
        let Some(name) = xx_name(token) else {
            out.tokens.push(token.clone());
            continue;
        };
        if jdk.accepts(name) != Some(false) {
            out.tokens.push(token.clone());
            continue;
        }
        let size = match name {
            "MaxRAMPercentage" => Some("-Xmx"),
            "InitialRAMPercentage" => Some("-Xms"),
            _ => None,
        };
        let percent = token
            .split_once('=')
            .and_then(|(_, p)| p.trim_matches('"').parse::<f64>().ok());
        match (size, percent, limit) {
            (Some(option), Some(p), Some(limit)) => {
                let bytes = (limit as f64 * p / 100.0) as u64;
                let flag = format!("{option}{}m", (bytes / MIB).max(1));
                out.notes.push(format!(
                    "memory as {flag} from the {} MiB limit",
                    limit / MIB
                ));
                out.tokens.push(flag);
            }
            (Some(_), _, None) => {
                out.notes.push(format!(
                    "-XX:{name} left out (not in this JDK, and no memory limit to size an -Xmx from)"
                ));
                out.left_out.push(name.to_string());
            }
            // Only meaningful with the maximum percentage, which became an -Xmx above.
            _ if name == "MinRAMPercentage" => {}
            _ => {
                out.notes
                    .push(format!("-XX:{name} left out (not in this JDK)"));
                out.left_out.push(name.to_string());
            }
        }
    }
    out
}

/// The JDK an image name says, where its words do: a JDK image's version tag
/// (`eclipse-temurin:8u151-jre`, `openjdk:17.0.2`, `amazoncorretto:21`), or a word naming a
/// Java release in the tag or the last path part (`tomcat:9.0-jre17-temurin`,
/// `jenkins/jenkins:2.479-jdk17`, `ubi9/openjdk-21-runtime`). The update is known only where
/// it is written; OpenJ9 where the name says `openj9` or `semeru`.
pub fn from_image(image: &str) -> Option<Jdk> {
    let image = &image[..image.find('@').unwrap_or(image.len())];
    let last = image.rsplit('/').next().unwrap_or(image);
    let (repository, tag) = last.split_once(':').unwrap_or((last, ""));
    // `8u151-jre`, `17.0.9_9-jre-jammy`, Semeru's `open-17-jre`.
    let tagged = || tag.split('-').find_map(JavaVersion::parse);
    let named = || {
        [tag, repository].into_iter().find_map(|words| {
            let mut parts = words.split(['-', '_', '.']).peekable();
            while let Some(word) = parts.next() {
                let next = parts.peek().copied().unwrap_or("");
                if let Some(v) = named_release(word, next) {
                    return Some(v);
                }
            }
            None
        })
    };
    let version = JDK_IMAGES
        .contains(&repository)
        .then(tagged)
        .flatten()
        .or_else(named)?;
    let lower = last.to_ascii_lowercase();
    let vm = match lower.contains("openj9") || lower.contains("semeru") {
        true => Vm::OpenJ9,
        false => Vm::HotSpot,
    };
    Some(Jdk { version, vm })
}

/// `jdk17`, `jre8`, `java21`, `openjdk11`, or such a word followed by the number (`openjdk-21`).
fn named_release(word: &str, next: &str) -> Option<JavaVersion> {
    let word = word.to_ascii_lowercase();
    for prefix in ["openjdk", "jdk", "jre", "java"] {
        if let Some(rest) = word.strip_prefix(prefix) {
            let number = if rest.is_empty() { next } else { rest };
            if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) {
                return JavaVersion::parse(number).filter(|v| v.feature >= 7);
            }
        }
    }
    None
}

/// Official and vendor JDK image repositories, whose tag is the Java version.
const JDK_IMAGES: [&str; 12] = [
    "openjdk",
    "eclipse-temurin",
    "adoptopenjdk",
    "amazoncorretto",
    "zulu-openjdk",
    "liberica-openjdk-debian",
    "liberica-openjdk-alpine",
    "liberica-openjre-alpine",
    "ibm-semeru-runtimes",
    "sapmachine",
    "microsoft-openjdk",
    "java",
];

/// The heap size an `-Xmx` option gives, if `token` is one (for notes and tests).
pub fn xmx(token: &str) -> Option<u64> {
    token.strip_prefix("-Xmx").and_then(jvm_size)
}

/// Every token of a variable's value that names an option the table knows and `jdk` refuses.
pub fn refused_in(jdk: &Jdk, value: &str) -> Vec<String> {
    tokens(value)
        .into_iter()
        .filter_map(xx_name)
        .filter(|n| jdk.accepts(n) == Some(false))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    fn v(feature: u32, update: Option<u32>) -> Option<JavaVersion> {
        Some(JavaVersion { feature, update })
    }

    #[rstest]
    #[case("8u151", v(8, Some(151)))]
    #[case("jdk8u392-b08", v(8, Some(392)))]
    #[case("1.8.0_151", v(8, Some(151)))]
    #[case("1.8.0_151-b12", v(8, Some(151)))]
    #[case("\"1.7.0_80\"", v(7, Some(80)))]
    #[case("17.0.9+9", v(17, Some(9)))]
    #[case("17.0.9_9", v(17, Some(9)))]
    #[case("jdk-21.0.2+13", v(21, Some(2)))]
    #[case("11.0.13", v(11, Some(13)))]
    #[case("21", v(21, None))]
    #[case("8", v(8, None))]
    #[case("1.8", v(8, None))]
    #[case("25.0.2", v(25, Some(2)))]
    #[case("", None)]
    #[case("latest", None)]
    #[case("2024.1", None)]
    #[case("1.4.2_12", None)]
    #[case("17_35", None)]
    fn versions_in_each_vendors_spelling(
        #[case] text: &str,
        #[case] expected: Option<JavaVersion>,
    ) {
        assert_eq!(JavaVersion::parse(text), expected, "{text}");
    }

    #[rstest]
    #[case("openjdk:8u151-jre", v(8, Some(151)))]
    #[case("eclipse-temurin:21-jre", v(21, None))]
    #[case("eclipse-temurin:17.0.9_9-jre-jammy", v(17, Some(9)))]
    #[case("docker.io/library/openjdk:8-jdk-alpine", v(8, None))]
    #[case("amazoncorretto:11", v(11, None))]
    #[case("tomcat:9.0-jre17-temurin", v(17, None))]
    #[case("jenkins/jenkins:2.479.1-jdk17", v(17, None))]
    #[case("quay.io/wildfly/wildfly:33.0.0.Final-jdk21", v(21, None))]
    #[case("registry.access.redhat.com/ubi9/openjdk-21-runtime:1.20", v(21, None))]
    #[case("registry.example.com/shop/orders:1.4", None)]
    #[case("nginx:1.27", None)]
    #[case("eclipse-temurin", None)]
    #[case("corp/java-tools:3", None)]
    fn versions_an_image_name_says(#[case] image: &str, #[case] expected: Option<JavaVersion>) {
        assert_eq!(from_image(image).map(|j| j.version), expected, "{image}");
    }

    #[test]
    fn openj9_images_say_so() {
        for image in [
            "ibm-semeru-runtimes:open-17-jre",
            "adoptopenjdk:11-jre-openj9",
        ] {
            assert_eq!(from_image(image).map(|j| j.vm), Some(Vm::OpenJ9), "{image}");
        }
    }

    fn hotspot(text: &str) -> Jdk {
        Jdk {
            version: JavaVersion::parse(text).unwrap(),
            vm: Vm::HotSpot,
        }
    }

    fn strings(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| s.to_string()).collect()
    }

    const OURS: [&str; 6] = [
        "-XX:MaxRAMPercentage=62.5",
        "-XX:MinRAMPercentage=62.5",
        "-XX:+HeapDumpOnOutOfMemoryError",
        "-XX:ErrorFile=/dumps/hs_err_pid%p.log",
        "-XX:+ExitOnOutOfMemoryError",
        "-XX:+UseG1GC",
    ];

    #[test]
    fn a_jdk_that_knows_every_option_gets_them_as_given() {
        for jdk in ["8u191", "10", "11.0.2", "17.0.9", "25"] {
            let out = for_jdk(&hotspot(jdk), &strings(&OURS), Some(1 << 30));
            assert_eq!(out.tokens, OURS, "{jdk}");
            assert!(out.notes.is_empty(), "{jdk}: {:?}", out.notes);
        }
    }

    #[test]
    fn before_8u191_memory_is_an_xmx_from_the_limit() {
        let out = for_jdk(&hotspot("1.8.0_151"), &strings(&OURS), Some(1 << 30));
        assert_eq!(
            out.tokens,
            [
                "-Xmx640m",
                "-XX:+HeapDumpOnOutOfMemoryError",
                "-XX:ErrorFile=/dumps/hs_err_pid%p.log",
                "-XX:+ExitOnOutOfMemoryError",
                "-XX:+UseG1GC"
            ]
        );
        assert_eq!(out.notes, ["memory as -Xmx640m from the 1024 MiB limit"]);
        // 9 never had the percentages.
        assert_eq!(
            for_jdk(&hotspot("9.0.4"), &strings(&OURS[..1]), Some(1 << 30)).tokens,
            ["-Xmx640m"]
        );
    }

    #[test]
    fn what_a_jdk_lacks_is_left_out_and_said() {
        let out = for_jdk(&hotspot("1.8.0_77"), &strings(&OURS), None);
        assert_eq!(
            out.tokens,
            [
                "-XX:+HeapDumpOnOutOfMemoryError",
                "-XX:ErrorFile=/dumps/hs_err_pid%p.log",
                "-XX:+UseG1GC"
            ]
        );
        assert_eq!(out.left_out, ["MaxRAMPercentage", "ExitOnOutOfMemoryError"]);
        assert!(out.notes.iter().any(|n| n.contains("no memory limit")));
    }

    #[test]
    fn an_8_of_unknown_update_is_taken_as_the_oldest_of_its_line() {
        let jdk = Jdk {
            version: JavaVersion {
                feature: 8,
                update: None,
            },
            vm: Vm::HotSpot,
        };
        assert_eq!(jdk.accepts("MaxRAMPercentage"), Some(false));
        assert_eq!(jdk.accepts("HeapDumpPath"), Some(true));
        assert_eq!(jdk.accepts("UseG1GC"), None);
    }

    #[test]
    fn openj9_gets_only_what_it_recognizes() {
        let jdk = Jdk {
            version: JavaVersion::parse("11.0.10").unwrap(),
            vm: Vm::OpenJ9,
        };
        let out = for_jdk(&jdk, &strings(&OURS), Some(1 << 30));
        assert_eq!(
            out.tokens,
            [
                "-XX:MaxRAMPercentage=62.5",
                "-XX:+HeapDumpOnOutOfMemoryError",
                "-XX:+ExitOnOutOfMemoryError",
                "-XX:+UseG1GC"
            ]
        );
        assert_eq!(out.left_out, ["ErrorFile"]);
    }

    #[test]
    fn the_release_file_says_the_version_and_the_vm() {
        let j9 = "IMPLEMENTOR=\"AdoptOpenJDK\"\nJAVA_VERSION=\"11.0.10\"\nJVM_VARIANT=\"Openj9\"\n";
        assert_eq!(
            Jdk::from_release(j9),
            Some(Jdk {
                version: JavaVersion::parse("11.0.10").unwrap(),
                vm: Vm::OpenJ9
            })
        );
        assert_eq!(
            Jdk::from_release("JAVA_VERSION=\"1.8.0_151\"\nOS_NAME=\"Linux\"\n"),
            Some(hotspot("8u151"))
        );
        assert_eq!(Jdk::from_release("OS_NAME=\"Linux\"\n"), None);
        assert_eq!(xx_name("\"-XX:+UseG1GC\""), Some("UseG1GC"));
        assert_eq!(xmx("-Xmx640m"), Some(640 << 20));
        assert_eq!(
            refused_in(&hotspot("8u151"), "-Xss1m -XX:MaxRAMPercentage=50"),
            ["MaxRAMPercentage"]
        );
    }
}
