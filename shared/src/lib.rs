//! # agentq-shared
//!
//! The services of agentq over its domain ([`agentq_domain`], re-exported here
//! module by module): the Redis job store and its Lua scripts (records, leases
//! and fencing, parked waiters, deliveries, sweeps, bulk operations), and behind
//! features the Forgejo client (`forge`, reqwest) and the container specs
//! (`docker`, bollard). The `agentq` CLI and the `agentq-worker` binary are thin
//! layers over this crate.

#![warn(missing_docs)]

pub use agentq_domain::{
    admission, agent, backoff, clock, config, fsutil, host, input, keys, language, outcome, prompt,
    readable, record, status, summary, templates, text, transition, workspace,
};

pub mod conn;
#[cfg(feature = "docker")]
pub mod container;
pub mod delivery;
#[cfg(feature = "forge")]
pub mod forge;
pub mod server;
pub mod store;
