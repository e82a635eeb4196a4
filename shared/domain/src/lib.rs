//! # agentq-domain
//!
//! What a dispatch job *is*, with no Redis, Docker or HTTP: the job input and
//! its validation, the agent table, job states and the typed transitions
//! between them, the rules that decide what an agent's run means, the record,
//! the Redis key names, prompts and templates, the workspace layout and the
//! configuration with every value derived from it. The store
//! (`agentq-shared`), the CLI and the worker build on it; its tests need
//! neither Redis nor Docker.
//!
//! It does no file-system I/O: reading and writing files (the workspace's
//! `status.json`, `BLOCKED.md`, the summary, user templates, the config file)
//! is `agentq-shared`'s, on the types and rules here. `tests/no_io.rs` checks
//! it.

#![warn(missing_docs)]

pub mod admission;
pub mod agent;
pub mod backoff;
pub mod clock;
pub mod config;
pub mod container_paths;
pub mod flat;
pub mod flow;
pub mod input;
pub mod json_text;
pub mod keys;
pub mod language;
pub mod notify;
pub mod outcome;
pub mod pacing;
pub mod priority;
pub mod prompt;
pub mod quota;
pub mod readable;
pub mod record;
pub mod schedule;
pub mod stamp;
pub mod status;
pub mod summary;
pub mod templates;
pub mod text;
pub mod transition;
pub mod tree_bounds;
pub mod untrusted;
pub mod verify;
pub mod workspace;
