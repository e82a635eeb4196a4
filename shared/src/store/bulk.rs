//! Bulk operations: cancel or retry many jobs with one Lua call per chunk, so
//! `agentq cancel --state queued` of 10,000 jobs takes a few round trips, not
//! tens of thousands.

use std::sync::LazyLock;

use crate::{
    status::JobState,
    store::create::OPEN_LUA,
    store::park::{parked_states_lua, PARK_LUA},
    store::{
        final_states_lua, now_rfc3339, rerun_cleared_lua, states_lua, JobStore, StoreError,
        EVENTS_MAX_LEN,
    },
};

/// Ids per bulk call: each call is atomic and short enough not to hold Redis up.
pub const BULK_CHUNK: usize = 500;

/// Common prelude: ARGV[1..10] are namespace, job prefix, state prefix, now
/// (ms), now, run-lease prefix, cancel prefix, history prefix, events max
/// length, and the state the jobs were selected in ('' when named by id).
const PRELUDE: &str = r#"
local NS, JOB_PREFIX, STATE_PREFIX = ARGV[1], ARGV[2], ARGV[3]
local NOW_MS, NOW, RUN_PREFIX, CANCEL_PREFIX, HISTORY_PREFIX, MAXLEN = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local SELECTED = ARGV[10]
local function history(id, state, from)
  local h = HISTORY_PREFIX .. id
  redis.call('RPUSH', h, cjson.encode({state = state, from = from, at = NOW, attempt = 0, host = '', worker = '', reason = ''}))
  redis.call('LTRIM', h, -200, -1)
end
local function set_state(job, id, from, to)
  redis.call('ZREM', STATE_PREFIX .. from, id)
  redis.call('ZADD', STATE_PREFIX .. to, NOW_MS, id)
  redis.call('HSET', job, 'state', to, 'updated_at', NOW)
  history(id, to, from)
end
-- Runs act(job, id, state) on each job named in ARGV from 11 on; act returns
-- the state it moved the job to, or nil to leave it. Answers per id: '' (no
-- such job), else the job's state after; one `event` for all moved jobs.
local function each_job(event, act)
  local out, n = {}, 0
  for i = 11, #ARGV do
    local id = ARGV[i]
    local job = JOB_PREFIX .. id
    open(job)
    local st = redis.call('HGET', job, 'state')
    if not st then
      table.insert(out, '')
    else
      local to = act(job, id, st)
      if to then n = n + 1 end
      table.insert(out, to or st)
    end
  end
  if n > 0 then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', MAXLEN, '*', 'event', event, 'jobs', n, 'at', NOW)
  end
  return out
end
"#;

/// KEYS: events. ARGV: the prelude's, then ids. Per id: '' (no such job), the
/// final state it already had, `cancelled`, or the active state it is in (its
/// worker stops it: the cancel flag is set).
const CANCEL_MANY: &str = r#"
return each_job('cancelled', function(job, id, st)
  if FINAL[st] then return nil end
  redis.call('SET', CANCEL_PREFIX .. id, NOW, 'EX', 604800)
  if not PARKED[st] then return nil end
  set_state(job, id, st, ST.Cancelled)
  redis.call('HSET', job, 'finished_at', NOW, 'owner', '')
  redis.call('DEL', RUN_PREFIX .. id)
  unpark(job, id)
  unslot(job, id)
  redis.call('ZREM', NS .. ':transit', id)
  return ST.Cancelled
end)
"#;

/// KEYS: events. ARGV: the prelude's, then ids. Per id: '' (no such job),
/// `queued` (retried: parked at the back of its lane), or the state it is in
/// (left alone: not finished, or no longer in the state it was selected in).
const RETRY_MANY: &str = r#"
return each_job('retried', function(job, id, st)
  if not FINAL[st] then return nil end
  if SELECTED ~= '' and st ~= SELECTED then return nil end
  -- Validate before writing: a job whose seq does not parse (a corrupt
  -- record, failed as such) is left alone, not half-retried.
  if not tonumber(redis.call('HGET', job, 'seq') or '0') then return nil end
  redis.call('DEL', CANCEL_PREFIX .. id)
  redis.call('HINCRBY', job, 'seq', 1)
  redis.call('HSET', job, 'tries', 0, 'owner', '', 'order', redis.call('INCR', NS .. ':order'),
    unpack(RERUN_CLEARED))
  set_state(job, id, st, ST.Queued)
  park_job(job, id, '')
  return ST.Queued
end)
"#;

fn script(body: &str) -> redis::Script {
    redis::Script::new(&format!(
        "{OPEN_LUA}{PRELUDE}{}{}{}{}{PARK_LUA}{body}",
        states_lua(),
        rerun_cleared_lua(),
        final_states_lua(),
        parked_states_lua()
    ))
}

static CANCEL_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| script(CANCEL_MANY));
static RETRY_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| script(RETRY_MANY));

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
            let mut inv = script.prepare_invoke();
            inv.key(k.events())
                .arg(k.namespace())
                .arg(k.job_prefix())
                .arg(k.state_prefix())
                .arg(crate::clock::now_ms())
                .arg(now_rfc3339())
                .arg(k.run_lease(""))
                .arg(k.cancel(""))
                .arg(k.history(""))
                .arg(EVENTS_MAX_LEN)
                .arg(selected.map_or("", JobState::as_str));
            for id in chunk {
                inv.arg(id);
            }
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
