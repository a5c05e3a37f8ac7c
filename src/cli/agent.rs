//! The agent commands' flags: `exec`, `install-tools`, `rotate-dumps`.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::config::rlimit::{Rlimit, RlimitError};

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// A limit: NAME=N or NAME=SOFT:HARD, NAME one of nofile, nproc, core, memlock, stack;
    /// `unlimited` allowed. Repeatable.
    #[arg(long = "rlimit", value_name = "NAME=SOFT[:HARD]", value_parser = parse_rlimit)]
    pub rlimits: Vec<Rlimit>,
    /// The program and its arguments, after `--`; found on PATH like a shell does.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

fn parse_rlimit(s: &str) -> Result<Rlimit, String> {
    s.parse().map_err(|e: RlimitError| e.to_string())
}

#[derive(Debug, clap::Args)]
pub struct InstallToolsArgs {
    /// Target directory (an emptyDir shared with the application containers).
    pub dir: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct RotateDumpsArgs {
    /// The pod's dump directory.
    #[arg(long)]
    pub dir: PathBuf,
    /// How many rotated dumps to keep.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub keep: u32,
    /// The container name, part of the rotated file name.
    #[arg(long)]
    pub container: String,
}
