//! Job flows (issue 33): jobs that run after others, batches, and the reads
//! `agentq show` and `agentq batch status` make of them.
//!
//! A job enqueued `--after` parents is written `waiting` (reason
//! `dependency`) in no lane and with no delivery: it costs Redis nothing
//! while it waits. The enqueue transaction's [`FLOW_ADD`] (`lua/flow_add.lua`)
//! puts it in each unfinished parent's set of dependants
//! ([`Keys::dependants`](crate::keys::Keys::dependants)) and counts them on
//! the job (`deps_pending`). Every script that ends a job (`move`,
//! `cancel_many`, a record the `open` prelude fails) includes the snippet
//! `lua/flow_end.lua`, which, in that same call, counts the dependants down
//! and parks each in its lane at zero, or cancels them (naming the parent)
//! when a parent did not complete; and notes a batch member done, adding the
//! batch's one `batch_done` event when the last one ends.
//!
//! A batch's jobs are a set ([`Keys::batch_jobs`](crate::keys::Keys::batch_jobs));
//! an enqueue seals the batch when it is over ([`JobStore::seal_batch`]), so a
//! batch going in over several chunks does not complete between two of them.

use std::{collections::HashMap, sync::LazyLock};

use crate::{
    record::JobRecord,
    status::JobState,
    store::{lua, script_args::FlowAddArgs, JobStore, StoreError, EVENTS_MAX_LEN},
};

/// The `flow_add` script, sent as `EVAL` inside the enqueue transaction.
static FLOW_ADD: LazyLock<String> = LazyLock::new(|| lua::source("flow_add"));

static SEAL_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| lua::script("batch_seal"));

/// Whether a record takes part in a flow (has parents or a batch).
fn in_flow(r: &JobRecord) -> bool {
    !r.after.is_empty() || !r.batch.is_empty()
}

/// A batch as `agentq batch status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchStatus {
    /// Its jobs by state (their ids), in lifecycle order, states with jobs only.
    pub by_state: Vec<(JobState, Vec<String>)>,
    /// Jobs in it.
    pub total: usize,
    /// Jobs in a final state.
    pub done: usize,
    /// Every enqueue of it is over.
    pub sealed: bool,
    /// Its `batch_done` event was added.
    pub fired: bool,
}

impl BatchStatus {
    /// Every job is final and completed (or merged).
    pub fn all_completed(&self) -> bool {
        self.done == self.total
            && self
                .by_state
                .iter()
                .all(|(s, _)| matches!(s, JobState::Completed | JobState::Merged))
    }
}

impl JobStore {
    /// The enqueue transaction's hook: adds [`FLOW_ADD`] for the records
    /// with parents or a batch (nothing when none has).
    pub(crate) fn add_flow_eval(&self, pipe: &mut redis::Pipeline, records: &[JobRecord]) {
        if !records.iter().any(in_flow) {
            return;
        }
        FlowAddArgs {
            keys: self.keys(),
            jobs: records
                .iter()
                .filter(|r| in_flow(r))
                .map(|r| {
                    (
                        r.id.as_str(),
                        r.after.as_str(),
                        r.after_any,
                        r.batch.as_str(),
                    )
                })
                .collect(),
        }
        .add_eval(pipe, &FLOW_ADD);
    }

    /// The first of `ids` that names no job, if any (checked at enqueue, so
    /// `--after` with a wrong id is refused).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn first_missing(&self, ids: &[String]) -> Result<Option<String>, StoreError> {
        if ids.is_empty() {
            return Ok(None);
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.hexists(self.keys().fresh(), id)
                .exists(self.keys().job(id));
        }
        let found: Vec<bool> = pipe.query_async(&mut self.conn()).await?;
        Ok(ids
            .iter()
            .zip(found.chunks(2))
            .find(|(_, f)| !f[0] && !f[1])
            .map(|(id, _)| id.clone()))
    }

    /// Seals batch `name` (an enqueue of it is over): from now on it completes
    /// when all its jobs are final. Returns (jobs, final jobs).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn seal_batch(&self, name: &str) -> Result<(u64, u64), StoreError> {
        Ok(SEAL_SCRIPT
            .prepare_invoke()
            .arg(self.keys().namespace())
            .arg(EVENTS_MAX_LEN)
            .arg(name)
            .invoke_async(&mut self.conn())
            .await?)
    }

    /// Batch `name`'s jobs and their states; `None` when it has none.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn batch_status(&self, name: &str) -> Result<Option<BatchStatus>, StoreError> {
        let k = self.keys();
        let (mut ids, flags): (Vec<String>, Vec<Option<String>>) = redis::pipe()
            .smembers(k.batch_jobs(name))
            .cmd("HMGET")
            .arg(k.batch(name))
            .arg("sealed")
            .arg("fired")
            .query_async(&mut self.conn())
            .await?;
        if ids.is_empty() {
            return Ok(None);
        }
        ids.sort();
        let mut found: HashMap<JobState, Vec<String>> = HashMap::new();
        for chunk in ids.chunks(1000) {
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.hget(k.fresh(), id).hget(k.job(id), "state");
            }
            let got: Vec<Option<String>> = pipe.query_async(&mut self.conn()).await?;
            for (id, pair) in chunk.iter().zip(got.chunks(2)) {
                let state = match (&pair[1], &pair[0]) {
                    (Some(s), _) => s.parse::<JobState>().ok(),
                    (None, Some(packed)) => JobRecord::from_packed(packed).ok().map(|r| r.state),
                    (None, None) => None,
                };
                // A purged job counts as it ended: the batch's note of it.
                let state = match state {
                    Some(s) => Some(s),
                    None => {
                        let noted: Option<String> = redis::cmd("HGET")
                            .arg(k.batch_done(name))
                            .arg(id)
                            .query_async(&mut self.conn())
                            .await?;
                        noted.and_then(|s| s.parse().ok())
                    }
                };
                if let Some(s) = state {
                    found.entry(s).or_default().push(id.clone());
                }
            }
        }
        let by_state: Vec<(JobState, Vec<String>)> = crate::status::ALL_STATES
            .iter()
            .filter_map(|s| Some((*s, found.remove(s)?)))
            .collect();
        let done = by_state
            .iter()
            .filter(|(s, _)| s.is_final())
            .map(|(_, v)| v.len())
            .sum();
        let flag = |i: usize| flags.get(i).cloned().flatten().as_deref() == Some("1");
        Ok(Some(BatchStatus {
            total: ids.len(),
            done,
            sealed: flag(0),
            fired: flag(1),
            by_state,
        }))
    }

    /// The jobs still waiting for job `id` (its dependants that have not
    /// started yet: each parent's set is deleted when the parent ends).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn dependants_of(&self, id: &str) -> Result<Vec<String>, StoreError> {
        let mut ids: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.keys().dependants(id))
            .query_async(&mut self.conn())
            .await?;
        ids.sort();
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_preludes_hook_trims_the_events_stream_as_every_script_does() {
        let src = lua::file("flow_end").unwrap();
        assert!(
            src.contains(&format!("ST.Failed, {EVENTS_MAX_LEN})")),
            "flow_hook's events max length is EVENTS_MAX_LEN"
        );
    }
}
