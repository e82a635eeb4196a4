//! Test harness for agentq's end-to-end tests: a real `redis-server` per test on a
//! loopback port, the real Docker engine, real git remotes (bare repositories in a
//! temp directory), and the built `agentq` and `agentq-worker` binaries.
//!
//! Anything missing (redis-server, Docker, the test image, the binaries) fails the
//! test at once with a message that says how to fix it; nothing is skipped.
//!
//! Modules by concern; everything public is re-exported here, so tests use
//! `agentq_tests::*`.

pub mod forge_sim;
pub mod llm_stub;

mod agent_log;
mod arrange;
mod cli;
mod docker;
mod env;
mod hooks;
mod net;
mod netns;
mod records;
mod redis_server;
mod remotes;
mod wait;
mod web;
mod worker;

pub use agent_log::*;
pub use arrange::*;
pub use cli::*;
pub use docker::*;
pub use env::*;
pub use hooks::*;
pub use net::*;
pub use netns::*;
pub use records::*;
pub use redis_server::*;
pub use remotes::*;
pub use wait::*;
pub use web::*;
pub use worker::*;
