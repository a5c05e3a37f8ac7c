//! Resource limits as written in the `ulimits` key and on `jvm-guard exec --rlimit`:
//! `nofile=65536`, `nproc=1024:4096`, `core=unlimited`.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    Nofile,
    Nproc,
    Core,
    Memlock,
    Stack,
}

impl Resource {
    pub const ALL: [Resource; 5] = [
        Resource::Nofile,
        Resource::Nproc,
        Resource::Core,
        Resource::Memlock,
        Resource::Stack,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Resource::Nofile => "nofile",
            Resource::Nproc => "nproc",
            Resource::Core => "core",
            Resource::Memlock => "memlock",
            Resource::Stack => "stack",
        }
    }
}

/// One limit value: a number or `unlimited` (`RLIM_INFINITY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Limit {
    Value(u64),
    Unlimited,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Value(v) => write!(f, "{v}"),
            Limit::Unlimited => f.write_str("unlimited"),
        }
    }
}

/// `name=soft:hard`; `name=N` sets soft and hard to N.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    pub resource: Resource,
    pub soft: Limit,
    pub hard: Limit,
}

impl fmt::Display for Rlimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}:{}", self.resource.name(), self.soft, self.hard)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RlimitError {
    #[error("{0:?}: expected name=N or name=soft:hard")]
    Syntax(String),
    #[error("{0:?}: unknown resource (known: nofile, nproc, core, memlock, stack)")]
    UnknownResource(String),
    #[error("{0:?}: limit must be a non-negative integer or \"unlimited\"")]
    BadValue(String),
    #[error("{0:?}: soft limit is above the hard limit")]
    SoftAboveHard(String),
    #[error("{0:?}: set more than once")]
    Duplicate(String),
}

fn parse_limit(item: &str, v: &str) -> Result<Limit, RlimitError> {
    if v == "unlimited" {
        return Ok(Limit::Unlimited);
    }
    v.parse()
        .map(Limit::Value)
        .map_err(|_| RlimitError::BadValue(item.to_string()))
}

impl FromStr for Rlimit {
    type Err = RlimitError;

    fn from_str(item: &str) -> Result<Self, Self::Err> {
        let (name, value) = item
            .split_once('=')
            .ok_or_else(|| RlimitError::Syntax(item.to_string()))?;
        let resource = Resource::ALL
            .into_iter()
            .find(|r| r.name() == name.trim())
            .ok_or_else(|| RlimitError::UnknownResource(item.to_string()))?;
        let value = value.trim();
        let (soft, hard) = match value.split_once(':') {
            Some((s, h)) => (parse_limit(item, s)?, parse_limit(item, h)?),
            None => {
                let v = parse_limit(item, value)?;
                (v, v)
            }
        };
        if soft > hard {
            return Err(RlimitError::SoftAboveHard(item.to_string()));
        }
        Ok(Rlimit {
            resource,
            soft,
            hard,
        })
    }
}

/// Parses a comma list (`nofile=65536,core=0`), each resource at most once.
pub fn parse_list(text: &str) -> Result<Vec<Rlimit>, RlimitError> {
    let mut out: Vec<Rlimit> = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let limit: Rlimit = item.parse()?;
        if out.iter().any(|l| l.resource == limit.resource) {
            return Err(RlimitError::Duplicate(limit.resource.name().to_string()));
        }
        out.push(limit);
    }
    if out.is_empty() {
        return Err(RlimitError::Syntax(text.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(
        "nofile=65536",
        Resource::Nofile,
        Limit::Value(65536),
        Limit::Value(65536)
    )]
    #[case(
        "nproc=1024:4096",
        Resource::Nproc,
        Limit::Value(1024),
        Limit::Value(4096)
    )]
    #[case("core=unlimited", Resource::Core, Limit::Unlimited, Limit::Unlimited)]
    #[case(
        "stack=8388608:unlimited",
        Resource::Stack,
        Limit::Value(8388608),
        Limit::Unlimited
    )]
    fn parses(#[case] text: &str, #[case] r: Resource, #[case] soft: Limit, #[case] hard: Limit) {
        let l: Rlimit = text.parse().unwrap();
        assert_eq!((l.resource, l.soft, l.hard), (r, soft, hard));
    }

    #[rstest]
    #[case("nofile")]
    #[case("files=10")]
    #[case("nofile=-1")]
    #[case("nofile=10:5")]
    #[case("nofile=unlimited:10")]
    #[case("nofile=1k")]
    fn rejects(#[case] text: &str) {
        assert!(text.parse::<Rlimit>().is_err(), "{text}");
    }

    #[test]
    fn list_rejects_duplicates_and_empty() {
        assert_eq!(parse_list("nofile=1, core=0").unwrap().len(), 2);
        assert!(parse_list("nofile=1,nofile=2").is_err());
        assert!(parse_list(" , ").is_err());
    }
}
