//! apalis-redis's task layout, as agentq writes it: the leaf every writer of
//! deliveries depends on. It knows apalis's queue (its configuration and key
//! names), what a delivery carries ([`Delivery`]) and how one is written
//! ([`PUSH_LUA`]); it uses nothing from the store.
//!
//! apalis-redis carries deliveries (a job id and the record's `seq`), but its own
//! push is a separate Redis call: a record change followed by a push can be cut
//! in two by a Redis fault, leaving a record that waits for a delivery that was
//! never written (a ghost) or a delivery for a change that never happened. So
//! agentq's scripts write the delivery themselves, in apalis-redis 1.0's layout
//! (the same keys and fields as its `batch_push.lua`), inside the script that
//! changes the record: both happen or neither does.
//!
//! The apalis crates are pinned (`=`) in the workspace's Cargo.toml, and
//! `tests/tests/queue_contract.rs` compares what [`PUSH_LUA`] writes with what
//! apalis-redis's own push writes, key by key. When apalis is upgraded and that
//! test fails, this file and `store/lua/push.lua` (the text of [`PUSH_LUA`])
//! are the ones to update.
//!
//! [`PUSH_LUA`] is the `push` snippet (scripts take it with `--- @include
//! "push"`); a script that uses it takes the five queue keys of
//! [`queue_keys`] as its *first* five `KEYS`.

use serde::{Deserialize, Serialize};

use crate::keys::Keys;

/// What apalis carries for one run of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The job's id.
    pub job_id: String,
    /// The record's `seq` when this delivery was pushed.
    pub seq: u64,
}

/// The apalis-redis configuration for a namespace.
pub fn apalis_config(keys: &Keys) -> apalis_redis::Config {
    apalis_redis::Config::default().queue(keys.apalis_queue())
}

/// Number of `KEYS` [`PUSH_LUA`] takes, first in the script's key list.
pub const QUEUE_KEYS: usize = 5;

/// The queue keys scripts using [`PUSH_LUA`] take first, in order: task data
/// hash, active list, signal list, task metadata prefix, scheduled set.
pub fn queue_keys(keys: &Keys) -> [String; QUEUE_KEYS] {
    let c = apalis_config(keys);
    [
        c.job_data_hash(),
        c.active_jobs_list(),
        c.signal_list(),
        c.job_meta_hash(),
        c.scheduled_jobs_set(),
    ]
}

/// A fresh apalis task id (apalis parses them as ULIDs).
pub fn new_task_id() -> String {
    ulid::Ulid::new().to_string()
}

/// The `push` snippet (`store/lua/push.lua`; scripts take it with
/// `--- @include "push"`): `push_delivery(task_id, job_id, seq, run_at_ms, now_ms, front)`
/// writes one delivery as apalis-redis 1.0 would (task data is the JSON of
/// [`Delivery`]); `front` puts it at the head of the active list
/// (orphans and lost deliveries go first). `wake()` signals idle workers once a
/// script pushed something due now.
///
/// One difference from apalis-redis's own push, on purpose: apalis puts even a
/// task due now in the scheduled set (its next fetch moves it to the active
/// list); this puts a delivery due now on the active list. apalis's fetch reads
/// both the same way.
pub const PUSH_LUA: &str = include_str!("store/lua/push.lua");
