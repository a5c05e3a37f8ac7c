//! How a JVM option value splits into options, the setting each option controls, and the
//! merge rule (ours first, the user's after, so theirs win).

use std::collections::BTreeSet;

const GC_SELECTORS: [&str; 7] = [
    "UseSerialGC",
    "UseParallelGC",
    "UseG1GC",
    "UseZGC",
    "UseShenandoahGC",
    "UseEpsilonGC",
    "UseConcMarkSweepGC",
];

const REPEATABLE: [&str; 8] = [
    "-javaagent:",
    "-agentlib:",
    "-agentpath:",
    "--add-opens",
    "--add-exports",
    "--add-reads",
    "--add-modules",
    "--patch-module",
];

/// The options of a value as HotSpot splits `JAVA_TOOL_OPTIONS`: on whitespace, except inside
/// single or double quotes (kept in the token, as the JVM sees them before it strips them).
pub fn tokens(text: &str) -> Vec<&str> {
    // Most values are ASCII: read as bytes, without decoding characters (a quarter of the
    // instructions, docs/performance.md); the same split.
    if text.is_ascii() {
        split(
            text,
            text.bytes().enumerate().map(|(i, b)| (i, char::from(b))),
        )
    } else {
        split(text, text.char_indices())
    }
}

fn split(text: &str, chars: impl Iterator<Item = (usize, char)>) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut quote: Option<char> = None;
    for (i, c) in chars {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c.is_whitespace() => {
                if let Some(s) = start.take() {
                    out.push(&text[s..i]);
                }
            }
            None => {
                start.get_or_insert(i);
                if c == '"' || c == '\'' {
                    quote = Some(c);
                }
            }
        }
    }
    if let Some(s) = start {
        out.push(&text[s..]);
    }
    out
}

/// The `-XX:` option a token sets (`-XX:+ExitOnOutOfMemoryError` sets `ExitOnOutOfMemoryError`).
pub fn xx_name(token: &str) -> Option<&str> {
    let xx = token
        .trim_matches(|c| c == '"' || c == '\'')
        .strip_prefix("-XX:")?;
    let name = xx.trim_start_matches(['+', '-']);
    let name = name.split('=').next().unwrap_or(name);
    (!name.is_empty()).then_some(name)
}

/// The setting a JVM token controls, so that different spellings of one setting compare
/// equal: `-Xmx1g` and `-XX:MaxHeapSize=1g` both "set the RAM percentage", and two GC
/// selectors conflict (the JVM refuses to start with both).
pub fn flag_key(token: &str) -> Option<&str> {
    let t = token.trim_matches(|c| c == '"' || c == '\'');
    if let Some(xx) = t.strip_prefix("-XX:") {
        let name = xx.trim_start_matches(['+', '-']);
        let name = name.split('=').next().unwrap_or(name);
        let key = match name {
            "MaxHeapSize" | "MaxRAMFraction" => "MaxRAMPercentage",
            "InitialHeapSize" | "InitialRAMFraction" => "InitialRAMPercentage",
            n if GC_SELECTORS.contains(&n) => "garbage-collector",
            n => n,
        };
        return (!key.is_empty()).then_some(key);
    }
    for (prefix, key) in [
        ("-Xmx", "MaxRAMPercentage"),
        ("-Xms", "InitialRAMPercentage"),
        ("-Xss", "ThreadStackSize"),
        ("-Xmn", "NewSize"),
    ] {
        if t.starts_with(prefix) {
            return Some(key);
        }
    }
    // Options that may repeat with different values (agents, module openings): only the same
    // token twice is the same setting.
    if REPEATABLE.iter().any(|p| t.starts_with(p)) {
        return Some(t);
    }
    if t.starts_with('-') && t.len() > 1 {
        let end = t.find(['=', ':']).unwrap_or(t.len());
        return Some(&t[..end]);
    }
    None
}

/// Flag keys the container's own settings already set: option variables' values, `command`
/// and `args` (so `sh -c "java -Xmx1g ..."` counts too).
#[derive(Debug, Default, Clone)]
pub struct UserFlags(BTreeSet<String>);

impl UserFlags {
    /// The flags in `texts`: option variables' values and `command`/`args` words.
    pub fn new<'t>(texts: impl IntoIterator<Item = &'t str>) -> UserFlags {
        UserFlags(
            texts
                .into_iter()
                // Most values (names, URLs, numbers) hold no flag: passed over unsplit.
                .filter(|t| may_hold_flag(t))
                .flat_map(tokens)
                .filter_map(flag_key)
                .map(str::to_string)
                .collect(),
        )
    }

    pub fn sets(&self, token: &str) -> bool {
        flag_key(token).is_some_and(|k| self.0.contains(k))
    }
}

/// Whether a token of `text` may start with `-`, quotes aside: a `-` at the start or after
/// whitespace, maybe behind quotes. Never false when one does (`tokens` splits on whitespace
/// only); cheap where splitting is not (`payments-api.svc:8080` holds no flag).
pub fn may_hold_flag(text: &str) -> bool {
    memchr::memchr_iter(b'-', text.as_bytes()).any(|at| {
        let before = text[..at].trim_end_matches(['"', '\'']);
        before.chars().next_back().is_none_or(char::is_whitespace)
    })
}

/// Our tokens before the user's value: the JVM takes the last occurrence, so the user's own
/// settings keep winning. Never a self-reference: the user's value is written out.
pub fn merge(ours: &[String], user: Option<&str>) -> String {
    let ours = ours.join(" ");
    match user.map(str::trim) {
        Some(u) if !u.is_empty() && !ours.is_empty() => format!("{ours} {u}"),
        Some(u) if !u.is_empty() => u.to_string(),
        _ => ours,
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    /// Exact where it says no: every text whose tokens hold a flag is one it says may.
    #[rstest]
    #[case("-Xmx1g", true)]
    #[case("a -Xmx1g", true)]
    #[case("a\t'-Dx=1'", true)]
    #[case("a\u{2003}-Dx", true)]
    #[case("\"'-Dx'\"", true)]
    #[case("\"a -Dx\"", true)]
    #[case("payments-api.svc:8080", false)]
    #[case("a--b c-d", false)]
    #[case("", false)]
    fn a_flag_is_never_passed_over(#[case] text: &str, #[case] may: bool) {
        assert_eq!(may_hold_flag(text), may);
        let holds = tokens(text)
            .into_iter()
            .filter_map(flag_key)
            .next()
            .is_some();
        assert!(may || !holds, "{text:?}");
    }

    proptest::proptest! {
        /// The byte reading of ASCII text splits as the character reading does.
        #[test]
        fn ascii_splits_as_characters_do(text in "[a \t\n\x0b\x0c\r\x1c-\"'=X]{0,24}") {
            let by_chars = split(&text, text.char_indices());
            proptest::prop_assert_eq!(tokens(&text), by_chars);
        }

        #[test]
        fn no_text_with_a_flag_is_passed_over(text in "[a -\"'\t\u{2003}=X]{0,12}") {
            let holds = tokens(&text).into_iter().filter_map(flag_key).next().is_some();
            proptest::prop_assert!(may_hold_flag(&text) || !holds, "{:?}", text);
        }
    }

    #[rstest]
    #[case("-Xmx512m", Some("MaxRAMPercentage"))]
    #[case("-XX:MaxHeapSize=1g", Some("MaxRAMPercentage"))]
    #[case("-XX:MaxRAMPercentage=80", Some("MaxRAMPercentage"))]
    #[case("-Xms256m", Some("InitialRAMPercentage"))]
    #[case("-XX:+HeapDumpOnOutOfMemoryError", Some("HeapDumpOnOutOfMemoryError"))]
    #[case("-XX:-HeapDumpOnOutOfMemoryError", Some("HeapDumpOnOutOfMemoryError"))]
    #[case("-XX:+UseZGC", Some("garbage-collector"))]
    #[case("-Dfoo=bar", Some("-Dfoo"))]
    #[case("-javaagent:/a.jar=x", Some("-javaagent:/a.jar=x"))]
    #[case(
        "--add-opens=java.base/java.lang=ALL-UNNAMED",
        Some("--add-opens=java.base/java.lang=ALL-UNNAMED")
    )]
    #[case("-verbose:gc", Some("-verbose"))]
    #[case("\"-Xmx1g\"", Some("MaxRAMPercentage"))]
    #[case("-XX:OnOutOfMemoryError=\"kill -9 %p\"", Some("OnOutOfMemoryError"))]
    #[case("java", None)]
    #[case("-", None)]
    fn keys(#[case] token: &str, #[case] key: Option<&str>) {
        assert_eq!(flag_key(token), key);
    }

    #[rstest]
    #[case("", &[])]
    #[case("  -Xmx1g   -Dx=1 ", &["-Xmx1g", "-Dx=1"])]
    #[case(
        "-XX:OnOutOfMemoryError=\"/bin/x rotate --dir /d\" -Da=b",
        &["-XX:OnOutOfMemoryError=\"/bin/x rotate --dir /d\"", "-Da=b"]
    )]
    #[case("-Dmsg='a b' -Dy", &["-Dmsg='a b'", "-Dy"])]
    #[case("-Dq=\"unterminated rest", &["-Dq=\"unterminated rest"])]
    #[case("-Dü=é\t-X", &["-Dü=é", "-X"])]
    fn splits_as_hotspot_does(#[case] text: &str, #[case] expected: &[&str]) {
        assert_eq!(tokens(text), expected);
    }

    #[test]
    fn a_quoted_option_is_one_flag() {
        let user = UserFlags::new(["-XX:OnOutOfMemoryError=\"kill -9 %p\" -Xss1m"]);
        assert!(user.sets("-XX:OnOutOfMemoryError=x"));
        assert!(user.sets("-Xss2m"));
        assert!(
            !user.sets("-9"),
            "the quoted words are not flags of their own"
        );
    }

    #[test]
    fn merge_keeps_user_value_last() {
        let ours = vec!["-XX:A".to_string(), "-XX:B".to_string()];
        assert_eq!(merge(&ours, Some(" -Dx=1 ")), "-XX:A -XX:B -Dx=1");
        assert_eq!(merge(&ours, Some("")), "-XX:A -XX:B");
        assert_eq!(merge(&ours, None), "-XX:A -XX:B");
        assert_eq!(merge(&[], Some(" -Dx=1")), "-Dx=1");
    }
}
