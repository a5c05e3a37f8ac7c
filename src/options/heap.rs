//! Which options and launcher variables set the heap, and the maximum they give.

use super::tokens::tokens;

/// A JVM size (`512m`, `4G`, `1073741824`), in bytes.
pub fn jvm_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, ""),
    };
    let n: u64 = digits.parse().ok()?;
    let shift = match unit {
        "" => 0,
        "k" | "K" => 10,
        "m" | "M" => 20,
        "g" | "G" => 30,
        "t" | "T" => 40,
        _ => return None,
    };
    n.checked_mul(1 << shift)
}

/// Whether `token` sets the heap (SPEC §4.1), and the maximum it gives under a memory limit
/// of `limit` bytes, when it says.
pub fn heap_flag(token: &str, limit: Option<u64>) -> Option<Option<u64>> {
    let t = token.trim_matches(|c| c == '"' || c == '\'');
    if let Some(size) = t.strip_prefix("-Xmx") {
        return Some(jvm_size(size));
    }
    if t.starts_with("-Xms") {
        return Some(None);
    }
    let xx = t.strip_prefix("-XX:")?;
    let (name, value) = xx.split_once('=').unwrap_or((xx, ""));
    let percent = |v: &str| v.parse::<f64>().ok();
    match name {
        "MaxHeapSize" => Some(jvm_size(value)),
        "MaxRAMPercentage" => Some(
            limit
                .zip(percent(value))
                .map(|(l, p)| (l as f64 * p / 100.0) as u64),
        ),
        "MaxRAMFraction" => Some(
            limit
                .zip(value.parse::<u64>().ok().filter(|n| *n > 0))
                .map(|(l, n)| l / n),
        ),
        "InitialHeapSize"
        | "MinHeapSize"
        | "MaxRAM"
        | "MinRAMPercentage"
        | "InitialRAMPercentage"
        | "MinRAMFraction"
        | "InitialRAMFraction" => Some(None),
        _ => None,
    }
}

/// The first of `places` (a variable's name, or `the command`, and its text) that sets the
/// heap: who sets it (`KAFKA_HEAP_OPTS=-Xmx512M`) and the maximum it gives, when known.
pub fn heap_in(places: &[(String, String)], limit: Option<u64>) -> Option<(String, Option<u64>)> {
    for (label, text) in places {
        // Every heap option is a `-X` one: values without it are not split.
        if !text.contains("-X") {
            continue;
        }
        let mut found: Option<Option<u64>> = None;
        let mut set: Vec<&str> = Vec::new();
        for token in tokens(text) {
            if let Some(max) = heap_flag(token, limit) {
                found = Some(found.flatten().or(max));
                set.push(token);
            }
        }
        if let Some(max) = found {
            let set = set.join(" ");
            let by = match label.as_str() {
                "the command" => format!("the command ({set})"),
                var => format!("{var}={set}"),
            };
            return Some((by, max));
        }
    }
    None
}

/// The first of `places` that sets the `-XX:` option `name` (`HeapDumpPath`): who sets it, as
/// [`heap_in`] says it (`JAVA_OPTS=-XX:HeapDumpPath=/data`).
pub fn flag_in(places: &[(String, String)], name: &str) -> Option<String> {
    places.iter().find_map(|(label, text)| {
        if !text.contains("-XX:") {
            return None;
        }
        let token = tokens(text)
            .into_iter()
            .find(|t| super::tokens::xx_name(t) == Some(name))?;
        Some(match label.as_str() {
            "the command" => format!("the command ({token})"),
            var => format!("{var}={token}"),
        })
    })
}

/// Whether a launcher's heap variable set to `value` sets the heap: a bare number (MiB when the
/// launcher reads it so, `megabytes`) or a JVM size; and the maximum, when known.
pub fn heap_var_sets(value: &str, megabytes: bool) -> Option<Option<u64>> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(if megabytes {
            value
                .parse::<u64>()
                .ok()
                .and_then(|n| n.checked_mul(1 << 20))
        } else {
            None
        });
    }
    jvm_size(value).map(Some)
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case("-Xmx512m", Some(Some(512 << 20)))]
    #[case("-Xmx1G", Some(Some(1 << 30)))]
    #[case("-XX:MaxHeapSize=2g", Some(Some(2 << 30)))]
    #[case("-XX:MaxRAMPercentage=50.0", Some(Some(512 << 20)))]
    #[case("-XX:MaxRAMFraction=2", Some(Some(512 << 20)))]
    #[case("-Xms256m", Some(None))]
    #[case("-XX:MaxRAM=8g", Some(None))]
    #[case("-XX:InitialRAMPercentage=30", Some(None))]
    #[case("-Xss1m", None)]
    #[case("-XX:MaxRAMPercentageX=1", None)]
    #[case("-XX:+UseG1GC", None)]
    fn heap_flags(#[case] token: &str, #[case] expected: Option<Option<u64>>) {
        assert_eq!(heap_flag(token, Some(1 << 30)), expected);
    }

    #[rstest]
    #[case("1024", true, Some(Some(1 << 30)))]
    #[case("1024", false, Some(None))]
    #[case("2g", false, Some(Some(2 << 30)))]
    #[case(" ", false, None)]
    #[case("-XX:+Foo", false, None)]
    #[case("99999999999999999999", true, Some(None))]
    fn heap_variables(
        #[case] value: &str,
        #[case] megabytes: bool,
        #[case] expected: Option<Option<u64>>,
    ) {
        assert_eq!(heap_var_sets(value, megabytes), expected);
    }
}
