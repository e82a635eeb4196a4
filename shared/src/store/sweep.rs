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
    delivery::{queue_keys, PUSH_LUA},
    status::{JobState, WaitReason},
    store::create::OPEN_LUA,
    store::park::PARK_LUA,
    store::{
        apalis_config, final_states_lua, now_rfc3339, states_lua, wait_reasons_lua, JobStore,
        StoreError, EVENTS_MAX_LEN,
    },
};

/// KEYS: five queue keys, job, run lease, events, history, apalis workers set,
/// rescued counter. ARGV: state prefix, now (ms), now, events max length, grace
/// (ms), namespace, in-flight prefix.
/// Returns '' (left alone), or the reason it was put back (`WR.Orphaned`,
/// `WR.Lost`). A rescued job gives back any
/// slot it held and is parked in its pool's lane at its first place in line.
const RESCUE: &str = r#"
local job, lease, events, history, workers, rescued = KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11]
local state_prefix, now_ms, now, maxlen, grace = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], tonumber(ARGV[5])
local inflight_prefix = ARGV[7]
open(job)
if redis.call('EXISTS', job) == 0 then return '' end
local id = string.match(job, '[^:]*$')
local state = redis.call('HGET', job, 'state')
if FINAL[state] then
  redis.call('ZREM', NS .. ':transit', id)
  return ''
end
if redis.call('EXISTS', lease) == 1 then return '' end
-- Checked before anything is written: the rescue writes `seq`.
local seq = redis.call('HGET', job, 'seq')
if not tonumber(seq or '0') then
  fail_unreadable(job, id, 'seq', '`' .. seq .. '` is not a number')
  unslot(job, id)
  unpark(job, id)
  return 'unreadable'
end
local reason = WR.Orphaned
if not ACTIVE[state] then
  if (redis.call('HGET', job, 'parked') or '') ~= '' then
    redis.call('ZREM', NS .. ':transit', id)
    return ''
  end
  local cur = redis.call('HGET', job, 'task') or ''
  local at = tonumber(redis.call('HGET', job, 'task_at') or '0') or 0
  if at > now_ms - grace then return '' end
  if cur ~= '' then
    if redis.call('ZSCORE', Q_SCHEDULED, cur) then return '' end
    if redis.call('LPOS', Q_ACTIVE, cur) then return '' end
    for _, w in ipairs(redis.call('ZRANGE', workers, 0, -1)) do
      if redis.call('SISMEMBER', inflight_prefix .. ':' .. w, cur) == 1 then return '' end
    end
  end
  reason = WR.Lost
  redis.call('INCR', rescued)
end
redis.call('HINCRBY', job, 'seq', 1)
redis.call('HSET', job, 'owner', '', 'reason', reason, 'task', '', 'task_at', now_ms,
  'state', ST.Waiting, 'updated_at', now)
redis.call('ZREM', state_prefix .. state, id)
redis.call('ZADD', state_prefix .. ST.Waiting, now_ms, id)
unslot(job, id)
park_job(job, id, '')
local f = redis.call('HMGET', job, 'attempt', 'host', 'worker')
redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'job', id, 'state', ST.Waiting,
  'from', state, 'attempt', f[1] or '0', 'host', f[2] or '', 'at', now)
redis.call('RPUSH', history, cjson.encode({state = ST.Waiting, from = state, at = now,
  attempt = tonumber(f[1] or '0') or 0, host = f[2] or '', worker = f[3] or '', reason = reason}))
redis.call('LTRIM', history, -200, -1)
return reason
"#;

static RESCUE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "{PUSH_LUA}{}{}{}{}local NS = ARGV[6]\n{OPEN_LUA}{PARK_LUA}{RESCUE}",
        states_lua(),
        wait_reasons_lua(),
        final_states_lua(),
        active_states_lua()
    ))
});

/// States in which a job is under a run (the rest wait or are final).
pub const ACTIVE_STATES: &[JobState] = &[
    JobState::Preparing,
    JobState::Running,
    JobState::Qa,
    JobState::Reporting,
];

pub(crate) fn active_states_lua() -> String {
    let names: Vec<String> = ACTIVE_STATES
        .iter()
        .map(|s| format!("['{}'] = true", s.as_str()))
        .collect();
    format!("local ACTIVE = {{{}}}\n", names.join(", "))
}

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
        let mut inv = RESCUE_SCRIPT.prepare_invoke();
        for k in queue_keys(self.keys()) {
            inv.key(k);
        }
        let cfg = apalis_config(self.keys());
        inv.key(self.keys().job(id))
            .key(self.keys().run_lease(id))
            .key(self.keys().events())
            .key(self.keys().history(id))
            .key(cfg.workers_set())
            .key(self.keys().rescued())
            .arg(self.keys().state_prefix())
            .arg(crate::clock::now_ms())
            .arg(now_rfc3339())
            .arg(EVENTS_MAX_LEN)
            .arg(grace.as_millis() as u64)
            .arg(self.keys().namespace())
            .arg(cfg.inflight_jobs_set());
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
