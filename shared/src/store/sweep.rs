//! The safety sweep: no accepted job is ever left without a way to go on.
//!
//! A non-final job must always be in one of four places: held by a live run
//! (its run lease exists), parked in a line (see [`crate::store::park`]), or waiting
//! as a delivery apalis will hand out (active list, scheduled set, or a
//! registered worker's in-flight set). The sweep finds the two ways out of that
//! and parks the job again at its first place in line, as `waiting`:
//!
//! - **orphaned**: the record says a run is under way (preparing, running, QA,
//!   reporting) but the run lease expired (its worker died or was cut off). The
//!   new `seq` and the cleared `owner` fence the old run out.
//! - **lost**: the record waits, not parked, but its delivery is nowhere (a
//!   write that Redis refused mid-way, a failed acknowledgement). Counted in
//!   `{ns}:rescued`, which should stay 0. Only deliveries overdue in
//!   `{ns}:transit` are looked at.
//!
//! Each rescue re-checks everything in one Lua call, so a job a worker picks up
//! meanwhile is left alone. One worker sweeps at a time (a lock key).

use std::{sync::LazyLock, time::Duration};

use redis::AsyncCommands;

use crate::{
    status::WaitReason,
    store::{apalis_config, lua, now_rfc3339, script_args::RescueArgs, JobStore, StoreError},
};

/// The `rescue` script (`lua/rescue.lua`, its arguments in
/// [`RescueArgs`](crate::store::script_args::RescueArgs)): re-checks a job and,
/// if it is orphaned or lost, gives back any slot it held and parks it in its
/// pool's lane at its first place in line, as `waiting`.
static RESCUE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| lua::script("rescue"));

pub use crate::status::ACTIVE_STATES;

/// What one sweep put back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Swept {
    /// Jobs whose run lease had expired mid-run.
    pub orphaned: Vec<String>,
    /// Waiting jobs whose delivery was nowhere.
    pub lost: Vec<String>,
}

impl JobStore {
    /// Takes the sweep lock for `ttl` unless another worker holds it.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn try_sweep_lock(&self, worker: &str, ttl: Duration) -> Result<bool, StoreError> {
        let ok: Option<String> = redis::cmd("SET")
            .arg(self.keys().sweep_lock())
            .arg(worker)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async(&mut self.conn())
            .await?;
        Ok(ok.is_some())
    }

    async fn rescue(&self, id: &str, grace: Duration) -> Result<Option<WaitReason>, StoreError> {
        let cfg = apalis_config(self.keys());
        let inv = RescueArgs {
            keys: self.keys(),
            id,
            workers: cfg.workers_set(),
            inflight_prefix: cfg.inflight_jobs_set(),
            now_ms: crate::clock::now_ms(),
            now: now_rfc3339(),
            grace_ms: grace.as_millis() as u64,
        }
        .invocation(&RESCUE_SCRIPT);
        let reason: String = inv.invoke_async(&mut self.conn()).await?;
        if reason == "unreadable" {
            tracing::warn!(
                job = id,
                "job record unreadable (seq is not a number): job failed, its record kept"
            );
        }
        Ok(reason.parse().ok())
    }

    /// Puts back jobs under a run whose run lease expired (first in line,
    /// `waiting`, reason `orphaned`).
    ///
    /// # Errors
    /// Redis errors (nothing is assumed from them).
    pub async fn sweep_orphans(&self) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn();
        let mut out = Vec::new();
        for st in ACTIVE_STATES {
            let ids: Vec<String> = conn.zrange(self.keys().state(st.as_str()), 0, -1).await?;
            if ids.is_empty() {
                continue;
            }
            let mut pipe = redis::pipe();
            for id in &ids {
                pipe.exists(self.keys().run_lease(id));
            }
            let held: Vec<bool> = pipe.query_async(&mut conn).await?;
            for (id, held) in ids.iter().zip(held) {
                if !held && self.rescue(id, Duration::ZERO).await? == Some(WaitReason::Orphaned) {
                    tracing::warn!(job = %id, "run lease expired mid-run: job put back first in line");
                    out.push(id.clone());
                }
            }
        }
        Ok(out)
    }

    /// Puts back queued or waiting jobs whose delivery is nowhere and was due
    /// more than `grace` ago. Reads only overdue deliveries (`{ns}:transit`),
    /// never the jobs parked in lanes: its cost does not grow with what waits.
    ///
    /// # Errors
    /// Redis errors (nothing is assumed from them).
    pub async fn sweep_lost(&self, grace: Duration) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn();
        let before = crate::clock::now_ms() - grace.as_millis() as i64;
        let ids: Vec<String> = conn
            .zrangebyscore_limit(self.keys().transit(), "-inf", before, 0, 1000)
            .await?;
        let mut out = Vec::new();
        for id in ids {
            if self.rescue(&id, grace).await? == Some(WaitReason::Lost) {
                tracing::error!(job = %id, "job had no delivery: put back first in line");
                out.push(id);
            }
        }
        Ok(out)
    }

    /// Jobs the sweep found lost since the namespace began (should stay 0).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn rescued_total(&self) -> Result<u64, StoreError> {
        let n: Option<u64> = self.conn().get(self.keys().rescued()).await?;
        Ok(n.unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::ALL_STATES;

    #[test]
    fn active_and_final_states_do_not_overlap() {
        for s in ALL_STATES {
            assert!(!(s.is_final() && ACTIVE_STATES.contains(s)), "{s}");
        }
    }
}
