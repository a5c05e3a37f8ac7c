//! jvm-guard: a Kubernetes mutating admission webhook that makes JVM pods safe to run and easy
//! to debug. The mutation is a pure function ([`mutate::mutate`]); everything else feeds it.

pub mod admission;
pub mod certs;
pub mod cli;
pub mod config;
pub mod dumps;
pub mod exec;
pub mod jvm;
pub mod manifest;
pub mod metrics;
pub mod mutate;
pub mod namespace_cache;
pub mod namespaces;
pub mod patch;
pub mod probes;
pub mod quantity;
pub mod registry;
pub mod rlimit;
pub mod rotate;
pub mod serve;
pub mod server;
pub mod status;
pub mod targets;
pub mod tls;
pub mod tools;
pub mod warnings;

pub use config::{Defaults, NamespaceConfig, Settings};
pub use mutate::{mutate, Mutation};
