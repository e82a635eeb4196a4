//! Delayed jobs (`agentq enqueue --at/--in`): state `scheduled` until due,
//! costing Redis nothing while they wait.
//!
//! Enqueue puts a delayed job in no lane: it goes into `{ns}:scheduled` (job
//! → due time, ms) and into the `scheduled` state's index, in the same
//! transaction as the rest of the chunk ([`add_to_create`]), and lowers the
//! one timer [`SCHEDULED_TIMER`] in `{ns}:timers` (the pools' timers) to the
//! earliest due time (`ZADD LT`). Nothing looks at a waiting delayed job: the
//! worker that takes the timer when it is due ([`JobStore::due_timers`]) runs
//! `release_scheduled` (one Lua call, at most [`RELEASE_BATCH`] jobs), which
//! moves the due jobs to the back of their lanes as `queued` (their pools'
//! wake-ups published) and sets the timer to the next due time. A cancel takes
//! a scheduled job out of `{ns}:scheduled` at once (`unpark`, `lua/park.lua`).

use std::sync::LazyLock;

use crate::{
    keys::{Keys, SCHEDULED_TIMER},
    record::JobRecord,
    status::JobState,
    store::{lua, now_rfc3339, script_args::ReleaseScheduledArgs, JobStore, StoreError},
};

/// The record's `parked` while the job waits in `{ns}:scheduled`.
pub const PARKED_SCHEDULED: &str = "scheduled";

/// Most delayed jobs one `release_scheduled` call moves; more due at once
/// take more calls.
pub const RELEASE_BATCH: usize = 500;

/// The `release_scheduled` script (`lua/release_scheduled.lua`).
static RELEASE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| lua::script("release_scheduled"));

/// A new record's due time (ms), when it is a delayed job.
pub fn due_ms(rec: &JobRecord) -> Option<i64> {
    if rec.state != JobState::Scheduled {
        return None;
    }
    rec.input.at.map(|t| t.ms())
}

/// Adds to an enqueue transaction the delayed jobs `due` (due ms, id): into
/// `{ns}:scheduled` and the `scheduled` state's index (at `now`), and the
/// timer lowered to the earliest.
pub fn add_to_create(pipe: &mut redis::Pipeline, k: &Keys, now: i64, due: &[(i64, &str)]) {
    let Some(first) = due.iter().map(|(at, _)| *at).min() else {
        return;
    };
    pipe.zadd_multiple(k.scheduled(), due).ignore();
    let index: Vec<(i64, &str)> = due.iter().map(|(_, id)| (now, *id)).collect();
    pipe.zadd_multiple(k.state(JobState::Scheduled.as_str()), &index)
        .ignore();
    pipe.cmd("ZADD")
        .arg(k.timers())
        .arg("LT")
        .arg(first)
        .arg(SCHEDULED_TIMER)
        .ignore();
    // The workers wait for the first due timer only: they look again (one
    // publish per chunk; the timer_add snippet's rule, in a transaction).
    pipe.cmd("PUBLISH").arg(k.timer_wake()).arg(first).ignore();
}

impl JobStore {
    /// Moves the delayed jobs that are due to their lanes (see the module),
    /// batch after batch. Returns how many were due.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn release_scheduled(&self) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let n: usize = ReleaseScheduledArgs {
                keys: self.keys(),
                most: RELEASE_BATCH,
                now: now_rfc3339(),
            }
            .invocation(&RELEASE_SCRIPT)
            .invoke_async(&mut self.conn())
            .await?;
            total += n;
            if n < RELEASE_BATCH {
                return Ok(total);
            }
        }
    }

    /// Sets the timer to the earliest due time again, unless it is earlier
    /// already (`ZADD LT`): for a timer taken by a worker whose release then
    /// failed, and by the sweep. Three commands, whatever the number waiting;
    /// a publish (workers look at their timers) only when it moved.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn rearm_scheduled_timer(&self) -> Result<(), StoreError> {
        if let (_, Some(first)) = self.scheduled_count().await? {
            // The sweep calls this every few seconds: publish (every worker
            // then looks at its timers) only when the timer really moves.
            let set: Option<f64> = redis::cmd("ZSCORE")
                .arg(self.keys().timers())
                .arg(SCHEDULED_TIMER)
                .query_async(&mut self.conn())
                .await?;
            if set.is_some_and(|at| at as i64 <= first) {
                return Ok(());
            }
            redis::pipe()
                .cmd("ZADD")
                .arg(self.keys().timers())
                .arg("LT")
                .arg(first)
                .arg(SCHEDULED_TIMER)
                .ignore()
                .cmd("PUBLISH")
                .arg(self.keys().timer_wake())
                .arg(first)
                .ignore()
                .exec_async(&mut self.conn())
                .await?;
        }
        Ok(())
    }

    /// Delayed jobs waiting, and the earliest due time (ms), if any.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn scheduled_count(&self) -> Result<(u64, Option<i64>), StoreError> {
        let (n, first): (u64, Vec<(String, i64)>) = redis::pipe()
            .zcard(self.keys().scheduled())
            .zrange_withscores(self.keys().scheduled(), 0, 0)
            .query_async(&mut self.conn())
            .await?;
        Ok((n, first.first().map(|(_, at)| *at)))
    }
}
