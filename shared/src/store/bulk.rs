//! Bulk operations: cancel or retry many jobs with one Lua call per chunk, so
//! `agentq cancel --state queued` of 10,000 jobs takes a few round trips, not
//! tens of thousands.

use std::sync::LazyLock;

use crate::{
    status::JobState,
    store::{lua, now_rfc3339, script_args::BulkArgs, JobStore, StoreError},
};

/// Ids per bulk call: each call is atomic and short enough not to hold Redis up.
pub const BULK_CHUNK: usize = 500;

/// The `cancel_many` script (`lua/cancel_many.lua`, with the `bulk` snippet;
/// its arguments in [`BulkArgs`]).
static CANCEL_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| lua::script("cancel_many"));
/// The `retry_many` script (`lua/retry_many.lua`, with the `bulk` snippet; its
/// arguments in [`BulkArgs`]).
static RETRY_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| lua::script("retry_many"));

/// What a bulk operation did to one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkResult {
    /// There is no such job.
    NoSuchJob,
    /// Done: the job is in this state now (`cancelled`, `queued`).
    Done(JobState),
    /// Left as it was, in this state (already final for cancel, not final for
    /// retry; for cancel, an active job whose worker was asked to stop it).
    Left(JobState),
}

impl JobStore {
    async fn bulk(
        &self,
        script: &redis::Script,
        ids: &[String],
        selected: Option<JobState>,
        done: JobState,
        progress: &mut (dyn FnMut(usize, usize) + Send),
    ) -> Result<Vec<BulkResult>, StoreError> {
        let k = self.keys();
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(BULK_CHUNK) {
            let inv = BulkArgs {
                keys: k,
                now_ms: crate::clock::now_ms(),
                now: now_rfc3339(),
                selected,
                ids: chunk,
            }
            .invocation(script);
            let states: Vec<String> = inv.invoke_async(&mut self.conn()).await?;
            out.extend(states.into_iter().map(|s| match s.parse::<JobState>() {
                Err(_) => BulkResult::NoSuchJob,
                Ok(st) if st == done => BulkResult::Done(st),
                Ok(st) => BulkResult::Left(st),
            }));
            progress(out.len(), ids.len());
        }
        Ok(out)
    }

    /// Cancels `ids`: queued and waiting jobs at once (taken out of their
    /// lines), running ones by their workers (the cancel flag). One Lua call per
    /// [`BULK_CHUNK`] ids; `progress` is called after each with the number done
    /// and the total.
    ///
    /// # Errors
    /// Redis errors (the chunks before the error were applied).
    pub async fn cancel_many(
        &self,
        ids: &[String],
        progress: &mut (dyn FnMut(usize, usize) + Send),
    ) -> Result<Vec<BulkResult>, StoreError> {
        self.bulk(&CANCEL_SCRIPT, ids, None, JobState::Cancelled, progress)
            .await
    }

    /// Retries the finished jobs among `ids`: outcome cleared, `tries` reset,
    /// parked at the back of their pool's line. One Lua call per [`BULK_CHUNK`];
    /// `progress` is called after each with the number done and the total.
    ///
    /// # Errors
    /// Redis errors (the chunks before the error were applied).
    pub async fn retry_many(
        &self,
        ids: &[String],
        progress: &mut (dyn FnMut(usize, usize) + Send),
    ) -> Result<Vec<BulkResult>, StoreError> {
        self.retry_selected(ids, None, progress).await
    }

    /// [`JobStore::retry_many`] of jobs selected in state `selected`: the
    /// script re-checks each job's state where it retries it, so a job that
    /// left that state since (retried, resumed or purged by another operator)
    /// is left as it is ([`BulkResult::Left`], [`BulkResult::NoSuchJob`]).
    ///
    /// # Errors
    /// Redis errors (the chunks before the error were applied).
    pub async fn retry_selected(
        &self,
        ids: &[String],
        selected: Option<JobState>,
        progress: &mut (dyn FnMut(usize, usize) + Send),
    ) -> Result<Vec<BulkResult>, StoreError> {
        self.bulk(&RETRY_SCRIPT, ids, selected, JobState::Queued, progress)
            .await
    }
}
