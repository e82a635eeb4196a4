//! # agentq-shared
//!
//! The domain of agentq, a Redis job queue that dispatches AI coding agents to
//! repositories on a Forgejo forge: the job input and its validation, the agent
//! table, the container spec, workspace layout, final-status rules, the Redis key
//! layout and job store, and configuration. The `agentq` CLI and the
//! `agentq-worker` binary are thin layers over this crate.

#![warn(missing_docs)]

pub mod agent;
pub mod bulk;
pub mod config;
#[cfg(feature = "docker")]
pub mod container;
pub mod delivery;
#[cfg(feature = "forge")]
pub mod forge;
pub mod fsutil;
pub mod input;
pub mod keys;
pub mod language;
pub mod lease;
pub mod limits;
pub mod ops;
pub mod park;
pub mod prompt;
pub mod record;
pub mod status;
pub mod store;
pub mod sweep;
pub mod templates;
pub mod workspace;
pub mod wslease;
