//! # agentq-shared
//!
//! The services of agentq over its domain ([`agentq_domain`], re-exported here
//! module by module): the Redis job store and its Lua scripts (records, leases
//! and fencing, parked waiters, deliveries, sweeps, bulk operations), and behind
//! features the Forgejo client (`forge`, reqwest) and the container specs
//! (`docker`, bollard). The file system is here too: [`fsutil`], [`host`], and
//! the domain modules `config`, `language`, `status`, `summary` and
//! `templates` re-exported whole with the reads and writes of their files
//! added (some as traits: [`config::ConfigFile`], [`config::AgentRunIds`],
//! [`language::DetectLanguage`], [`status::StatusFile`]). The `agentq` CLI and the `agentq-worker` binary are thin
//! layers over this crate.

#![warn(missing_docs)]

pub use agentq_domain::flow;
pub use agentq_domain::{
    admission, agent, backoff, clock, input, keys, notify, outcome, pacing, priority, prompt,
    quota, readable, record, schedule, stamp, text, transition, tree_bounds, untrusted, verify,
    workspace,
};

pub mod config;
pub mod conn;
#[cfg(feature = "docker")]
pub mod container;
pub mod delivery;
pub mod flight;
#[cfg(feature = "forge")]
pub mod forge;
pub mod fsutil;
pub mod host;
pub mod language;
pub mod server;
pub mod status;
pub mod store;
pub mod summary;
pub mod templates;
pub mod webhook;
