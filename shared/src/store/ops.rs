//! What operators do with jobs: resume, cancel, purge, and which states a
//! bulk retry or cancel refuses.
//!
//! Lists, logs, events and the worker registry live in their own modules
//! ([`super::listing`], [`super::logs`], [`super::events`],
//! [`super::workers`]); their items are named from here too, as before.

pub use super::{
    events::{Event, HistoryEntry},
    listing::{CorruptJob, JobPage, ListFilter, PageCursor, PAGE_SCAN_MAX},
    logs::{LogTailInfo, LOG_CHUNK_BYTES, LOG_TAIL_BYTES, LOG_TAIL_MAX, LOG_TAIL_TTL},
    workers::WorkerInfo,
};

use redis::AsyncCommands;
use serde::Serialize;

use crate::{
    record::JobRecord,
    status::JobState,
    store::{bulk::BulkResult, lua, script_args, JobStore, StoreError},
};

/// The `purge_many` script (`lua/purge_many.lua`).
static PURGE_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| lua::script("purge_many"));

/// What [`JobStore::purge`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Purged {
    /// Jobs deleted.
    pub purged: usize,
    /// Jobs selected but left: no longer in the state purged when the script
    /// reached them (retried, resumed or purged meanwhile).
    pub skipped: Vec<String>,
}

/// Why [`JobStore::resume_job`] did not resume a job.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    /// Refused: no such job, not finished, bad agent, or the job changed
    /// meanwhile.
    #[error("{0}")]
    Refused(String),
    /// The answer is not one (empty, too long, NUL or control characters):
    /// names the field.
    #[error(transparent)]
    Invalid(#[from] crate::input::InvalidInput),
    /// Redis failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a bulk retry of the jobs in `state` is refused: only finished jobs run
/// again.
pub fn retry_state_refusal(state: JobState) -> Option<String> {
    (!state.is_final())
        .then(|| format!("state: {state} jobs are not finished; only finished jobs can be retried"))
}

/// Why a bulk cancel of the jobs in `state` is refused: finished jobs are.
pub fn cancel_state_refusal(state: JobState) -> Option<String> {
    state
        .is_final()
        .then(|| format!("state: {state} jobs are finished already; nothing to cancel"))
}

impl JobStore {
    /// Answers finished job `id` (usually blocked) and runs it again in its
    /// workspace, optionally with another agent: what `agentq resume` does.
    /// An answered job keeps its first place in line: a person is waiting.
    ///
    /// `agent` is checked against `agents`, the configured table.
    ///
    /// # Errors
    /// [`ResumeError`]: refused (with the reason) or Redis.
    pub async fn resume_job(
        &self,
        id: &str,
        answer: &str,
        agent: Option<&str>,
        agents: &crate::agent::AgentTable,
    ) -> Result<JobRecord, ResumeError> {
        crate::input::check_answer(answer)?;
        let rec = self.get(id).await?.ok_or_else(|| {
            ResumeError::Refused(format!("no job with id {id} (see `agentq list`)"))
        })?;
        if !rec.state.is_final() {
            return Err(ResumeError::Refused(format!(
                "job {} is {}; only a finished job (blocked, failed, completed, …) can be resumed",
                rec.id, rec.state
            )));
        }
        let mut input = rec.input.clone();
        if let Some(agent) = agent.map(str::trim).filter(|a| !a.is_empty()) {
            agents
                .parse(agent)
                .map_err(|e| ResumeError::Refused(format!("agent: {e}")))?;
            input.agent = agent.to_string();
        }
        let input_json =
            serde_json::to_string(&input).map_err(|e| ResumeError::Refused(e.to_string()))?;
        let (pool, model) = crate::record::placement(&input);
        let rerun = self
            .rerun(
                &rec.id,
                rec.seq,
                &[
                    ("answer", answer.to_string()),
                    ("input", input_json),
                    ("pool", pool),
                    ("model", model),
                ],
                false,
            )
            .await?;
        if !rerun {
            return Err(ResumeError::Refused(format!(
                "job {} changed while resuming it (retried or resumed by someone else?); look at `agentq inspect {}`",
                rec.id, rec.id
            )));
        }
        Ok(rec)
    }

    /// Asks for job `id` to be cancelled. A queued or waiting job is cancelled at
    /// once; a running one is stopped by its worker within about a second.
    /// Returns the job's state after the request, `None` if there is no such job.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn request_cancel(&self, id: &str) -> Result<Option<JobState>, StoreError> {
        // The bulk script: it re-checks the state where it changes it, so a
        // job that finished or was purged since is left alone (no stray flag).
        let done = self.cancel_many(&[id.to_string()], &mut |_, _| {}).await?;
        Ok(match done.into_iter().next() {
            Some(BulkResult::Done(st) | BulkResult::Left(st)) => Some(st),
            Some(BulkResult::NoSuchJob) | None => None,
        })
    }

    /// Deletes finished jobs in `state` that finished before `before_ms`, with
    /// their history, log tail, cancel request and idempotency key (so the key
    /// can be used again). One Lua call per [`crate::store::bulk::BULK_CHUNK`]
    /// jobs re-checks each job where it deletes it: a job no longer in `state`
    /// since then (retried or resumed by another operator at the same time) is
    /// skipped, never deleted from under its new state.
    ///
    /// # Errors
    /// Redis errors (the chunks before the error were applied).
    pub async fn purge(&self, state: JobState, before_ms: i64) -> Result<Purged, StoreError> {
        let k = self.keys();
        let mut conn = self.conn();
        let ids: Vec<String> = conn
            .zrangebyscore(k.state(state.as_str()), "-inf", before_ms)
            .await?;
        let mut out = Purged::default();
        for chunk in ids.chunks(crate::store::bulk::BULK_CHUNK) {
            let inv = script_args::PurgeArgs {
                keys: k,
                state,
                before_ms,
                ids: chunk,
            }
            .invocation(&PURGE_SCRIPT);
            let done: Vec<i64> = inv.invoke_async(&mut conn).await?;
            for (id, d) in chunk.iter().zip(done) {
                if d == 1 {
                    out.purged += 1;
                } else {
                    out.skipped.push(id.clone());
                }
            }
        }
        Ok(out)
    }
}
