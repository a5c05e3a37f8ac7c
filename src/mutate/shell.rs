//! The programs a container runs, read from its `command` and `args`: the first word (and what
//! a wrapper such as our agent or `tini --` starts), and for a shell given a script
//! (`sh -c SCRIPT`), the first word of each of the script's commands.

use super::parts::TOOLS_BINARY;

const SHELLS: &[&str] = &["sh", "bash", "ash", "dash", "zsh"];

/// Programs that run the rest of their arguments as a program, past their flags (and `env`'s
/// assignments).
const WRAPPERS: &[&str] = &["tini", "dumb-init", "env", "nohup", "setsid"];
/// Wrappers whose first operand is not the program: `timeout 60 cmd`, `gosu user cmd`.
const WRAPPERS_WITH_AN_OPERAND: &[&str] = &["timeout", "gosu", "su-exec", "chroot"];

/// Whether `program` is a POSIX shell (`sh`, `/bin/bash`, ...).
pub fn is_shell(program: &str) -> bool {
    SHELLS.contains(&base(program))
}

/// The last segment of a path: `/opt/java/bin/java` → `java`.
pub fn base(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The programs a shell script runs: the first word of each command, past `exec`, `env` and
/// variable assignments (a word `echo` prints is not a program).
fn script_commands(script: &str) -> Vec<String> {
    let joined = script.replace("\\\n", " ");
    let mut out = Vec::new();
    for line in joined.lines() {
        let line = line.trim_start();
        if line.starts_with('#') {
            continue;
        }
        for segment in line.split([';', '&', '|', '(', ')', '`']) {
            // The first word that can name a program: not a keyword, an assignment, a flag, a
            // quoted string or an expansion.
            let word = segment.split_whitespace().find(|w| {
                !matches!(
                    *w,
                    "exec" | "env" | "!" | "{" | "}" | "then" | "do" | "else"
                ) && w
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_./[]-".contains(&b))
                    && !w.starts_with('-')
            });
            out.extend(word.map(str::to_string));
        }
    }
    out
}

/// What `program` runs of `args` when it is a wrapper: our agent's command after `--`, or a
/// wrapper's first word that is not a flag or an assignment.
fn wrapped<'w>(program: &str, args: &'w [&'w str]) -> Option<&'w [&'w str]> {
    if program == TOOLS_BINARY && args.first() == Some(&"exec") {
        let end = args.iter().position(|w| *w == "--")?;
        return Some(&args[end + 1..]);
    }
    let operand = WRAPPERS_WITH_AN_OPERAND.contains(&base(program));
    if !WRAPPERS.contains(&base(program)) && !operand {
        return None;
    }
    let start = args
        .iter()
        .position(|w| !w.starts_with('-') && !w.contains('='));
    let start = start.unwrap_or(args.len()) + usize::from(operand);
    Some(&args[start.min(args.len())..])
}

/// The programs `argv` (a container's `command` then `args`) runs: its first word, what a
/// wrapper starts, and for a shell with `-c`, its script's commands.
pub fn programs<'a>(argv: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    let argv: Vec<&str> = argv.into_iter().map(String::as_str).collect();
    let mut out = Vec::new();
    let mut rest = argv.as_slice();
    while let Some((first, args)) = rest.split_first() {
        out.push(first.to_string());
        if SHELLS.contains(&base(first)) {
            // `sh -c SCRIPT` / `bash -ec SCRIPT`: the script is the first word after the flags.
            let script = args.iter().find(|w| !w.starts_with('-'));
            out.extend(script.into_iter().flat_map(|s| script_commands(s)));
            break;
        }
        match wrapped(first, args) {
            Some(next) => rest = next,
            None => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case::plain(&["java", "-jar", "app.jar"], &["java"])]
    #[case::script(
        &["sh", "-exc", "export KAFKA_BROKER_ID=${HOSTNAME##*-} && exec /etc/confluent/docker/run"],
        &["sh", "export", "/etc/confluent/docker/run"]
    )]
    #[case::echo_is_not_java(
        &["sh", "-c", "echo waiting for java; exec /app/server"],
        &["sh", "echo", "/app/server"]
    )]
    #[case::continued_lines_and_comments(
        &["/bin/bash", "-c", "# start java\nenv A=1 \\\n  /opt/java/bin/java -jar x.jar | tee log"],
        &["/bin/bash", "/opt/java/bin/java", "tee"]
    )]
    #[case::args_after_the_flags(&["bash", "-e", "-c", "curl -f http://x"], &["bash", "curl"])]
    #[case::through_an_init_shim(&["/usr/bin/tini", "-s", "--", "java", "-jar", "x.jar"], &["/usr/bin/tini", "java"])]
    #[case::through_env(&["env", "-i", "A=1", "sh", "-c", "exec java"], &["env", "sh", "java"])]
    #[case::through_our_agent(
        &[TOOLS_BINARY, "exec", "--rlimit", "nofile=1024:1024", "--", "java", "-jar", "x.jar"],
        &[TOOLS_BINARY, "java"]
    )]
    #[case::not_a_wrapper(&["/app/server", "--", "java"], &["/app/server"])]
    #[case::through_timeout(
        &["timeout", "60", "sh", "-c", "bin/pulsar initialize-cluster-metadata"],
        &["timeout", "sh", "bin/pulsar"]
    )]
    #[case::through_gosu(&["gosu", "app", "java", "-jar", "x.jar"], &["gosu", "java"])]
    #[case::empty(&[], &[])]
    fn first_words(#[case] argv: &[&str], #[case] expected: &[&str]) {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        assert_eq!(programs(&argv), expected);
    }
}
