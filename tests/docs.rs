//! The flag tables of the docs are generated from the clap definitions (`Cli::command()`), so
//! they cannot drift from `--help`: each table sits between `<!-- flags:COMMAND -->` and
//! `<!-- /flags:COMMAND -->` in a file of docs/, and this test fails when one differs from what
//! the command's flags render to. `UPDATE_DOCS=1 cargo test --test docs` rewrites them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, CommandFactory};
use jvm_guard::cli::Cli;

/// The docs files that may hold flag tables.
fn doc_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("docs/ exists")
        .map(|e| e.expect("readable dir").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.sort();
    files
}

/// A cell of a Markdown table: one line, `|` escaped.
fn cell(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    words.join(" ").replace('|', "\\|")
}

/// `--flag VALUE`, `-o, --output yaml|json`, or a positional `DIR`.
fn flag(arg: &Arg) -> String {
    let values = arg.get_possible_values();
    let value = if !values.is_empty() {
        let names: Vec<&str> = values
            .iter()
            .filter(|v| !v.is_hide_set())
            .map(|v| v.get_name())
            .collect();
        names.join("|")
    } else {
        let names = arg.get_value_names().unwrap_or_default();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        match names.as_slice() {
            [] => arg.get_id().as_str().to_uppercase(),
            names => names.join(" "),
        }
    };
    if arg.is_positional() {
        let dots = if arg.get_num_args().is_some_and(|n| n.max_values() > 1) {
            "..."
        } else {
            ""
        };
        let dashes = if arg.is_last_set() { "-- " } else { "" };
        return format!("`{dashes}{value}{dots}`").replace('|', "\\|");
    }
    let mut names = Vec::new();
    if let Some(short) = arg.get_short() {
        names.push(format!("-{short}"));
    }
    if let Some(long) = arg.get_long() {
        names.push(format!("--{long}"));
    }
    let takes_value = !matches!(
        arg.get_action(),
        ArgAction::SetTrue | ArgAction::SetFalse | ArgAction::Count
    );
    let names = names.join(", ");
    let flag = if takes_value {
        format!("`{names} {value}`")
    } else {
        format!("`{names}`")
    };
    flag.replace('|', "\\|")
}

/// The help text, and the default: clap's, or a `[default: ...]` the help spells out (for a
/// default that depends on another flag).
fn help_and_default(arg: &Arg) -> (String, String) {
    let help = arg
        .get_long_help()
        .or(arg.get_help())
        .map(|h| h.to_string())
        .unwrap_or_default();
    let mut help = cell(&help);
    let defaults: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    let default = if matches!(arg.get_action(), ArgAction::SetTrue) {
        "off".to_string()
    } else if !defaults.is_empty() {
        format!("`{}`", defaults.join(","))
    } else if let Some(start) = help.find("[default") {
        let end = start + help[start..].find(']').expect("a closed [default ...]");
        let inner = help[start + 1..end].to_string();
        help = cell(&format!("{}{}", &help[..start], &help[end + 1..]));
        help = help.replace(" .", ".").replace(" ;", ";");
        inner
            .strip_prefix("default:")
            .unwrap_or(&inner)
            .trim()
            .to_string()
    } else {
        String::new()
    };
    (help, default)
}

/// The Markdown table of a command's flags.
fn table(command: &clap::Command) -> String {
    let mut out = String::from("| flag | env var | default | |\n|---|---|---|---|\n");
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        if arg.is_hide_set() || id == "help" || id == "version" {
            continue;
        }
        let env = arg
            .get_env()
            .map(|e| format!("`{}`", e.to_string_lossy()))
            .unwrap_or_default();
        let (help, default) = help_and_default(arg);
        out.push_str(&format!("| {} | {env} | {default} | {help} |\n", flag(arg)));
    }
    out
}

/// The file's text with every table brought up to date, and the commands it has tables of. A
/// marker is a line of its own.
fn updated(text: &str, file: &Path) -> (String, Vec<String>) {
    let cli = Cli::command();
    let mut out = String::new();
    let mut commands = Vec::new();
    let mut lines = text.split_inclusive('\n');
    while let Some(line) = lines.next() {
        out.push_str(line);
        let Some(name) = line
            .trim_end()
            .strip_prefix("<!-- flags:")
            .and_then(|l| l.strip_suffix(" -->"))
        else {
            continue;
        };
        let close = format!("<!-- /flags:{name} -->");
        if !lines.any(|l| l.trim_end() == close) {
            panic!("{}: no {close}", file.display());
        }
        // `dumps pull`: a subcommand's own table.
        let mut command = &cli;
        for word in name.split(' ') {
            command = command
                .find_subcommand(word)
                .unwrap_or_else(|| panic!("{}: no command `{name}`", file.display()));
        }
        out.push_str(&table(command));
        out.push_str(&close);
        out.push('\n');
        commands.push(name.split(' ').next().unwrap_or(name).to_string());
    }
    (out, commands)
}

#[test]
fn flag_tables_match_the_clap_definitions() {
    let update = std::env::var_os("UPDATE_DOCS").is_some();
    let mut stale = Vec::new();
    let mut documented = BTreeSet::new();
    for file in doc_files() {
        let text = std::fs::read_to_string(&file).expect("readable doc");
        let (new, commands) = updated(&text, &file);
        documented.extend(commands);
        if new == text {
            continue;
        }
        if update {
            std::fs::write(&file, new).expect("writable doc");
        } else {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            stale.push(
                file.strip_prefix(root)
                    .unwrap_or(&file)
                    .display()
                    .to_string(),
            );
        }
    }
    assert!(
        stale.is_empty(),
        "flag tables differ from the clap definitions in {} (UPDATE_DOCS=1 cargo test --test docs \
         rewrites them: review the diff)",
        stale.join(", ")
    );
    let missing: Vec<String> = Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .filter(|name| !documented.contains(name))
        .collect();
    assert!(
        missing.is_empty(),
        "commands without a flag table in docs/: {missing:?}"
    );
}

#[test]
fn a_table_lists_every_flag_with_its_variable_and_default() {
    let cli = Cli::command();
    let serve = table(cli.find_subcommand("serve").unwrap());
    assert!(
        serve.contains("| `--shutdown-delay DURATION` | `JVM_GUARD_SHUTDOWN_DELAY` | `5s` |"),
        "{serve}"
    );
    assert!(
        serve.contains("| `--log-format text\\|json` | `JVM_GUARD_LOG_FORMAT` | `text` |"),
        "{serve}"
    );
    assert!(
        serve.contains("| `--dev` | `JVM_GUARD_DEV` | off |"),
        "{serve}"
    );
    let exec = table(cli.find_subcommand("exec").unwrap());
    assert!(exec.contains("| `-- COMMAND...` |"), "{exec}");
}
