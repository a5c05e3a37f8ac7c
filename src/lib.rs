//! jvm-guard: a Kubernetes mutating admission webhook that makes JVM pods safe to run and easy
//! to debug. The mutation is a pure function ([`mutate::mutate`]); everything else feeds it.
//!
//! Two halves, kept apart: the admission half ([`config`] → [`mutate`], served by [`webhook`],
//! with [`registry`] lookups and the [`manifest`] preview) decides and patches; the [`agent`]
//! half runs inside app containers at start. [`remote`] is what users run from a workstation
//! against guarded pods (through the exec API and the agent). `ARCHITECTURE.md` walks the paths.

pub mod agent;
pub mod cli;
pub mod config;
pub mod escape;
pub mod json;
pub mod manifest;
pub mod mutate;
pub mod options;
pub mod registry;
pub mod remote;
pub mod watch;
pub mod webhook;

pub use config::{Defaults, NamespaceConfig, ServerSettings};
pub use mutate::{mutate, Mutation};

// The global allocator of every binary linking this crate (jvm-guard, the benchmark baseline,
// the tests), chosen by feature; without one, the system allocator (musl's in the image).
#[cfg(all(feature = "mimalloc", feature = "jemalloc"))]
compile_error!("features `mimalloc` and `jemalloc` each choose the allocator: pick one");

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its start: a background thread gives freed pages back to the
/// system within a second, also when no request comes to trigger it, so a burst of
/// connections does not leave the pod at its peak RSS (`MALLOC_CONF` can still override).
#[cfg(feature = "jemalloc")]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static JEMALLOC_CONF: &[u8; 60] =
    b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";
