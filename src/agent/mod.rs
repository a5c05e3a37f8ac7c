//! The agent half: what runs inside app containers, from the tools directory the init container
//! fills. It never depends on the webhook half.

pub mod attach;
pub mod cgroup;
pub mod dumps;
pub mod exec;
pub mod hprof;
pub mod inspect;
pub mod install;
pub mod jdk;
pub mod rotate;
pub mod start;
pub mod supervise;
