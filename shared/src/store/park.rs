//! Parked waiters: a job that cannot start costs Redis nothing while it waits.
//!
//! A job that waits for its pool (a slot, a model's slot, pacing, a pause) is
//! *parked*: a member of its pool's *lane* (a sorted set per pool and model,
//! scored by the job's enqueue `order`), with no apalis delivery at all. A job
//! that waits for a busy workspace is parked the same way in that workspace's
//! line. Nothing re-checks a parked job; it moves only when something changes:
//!
//! - **wake** ([`JobStore::wake_pool`], one Lua call): frees expired slot leases,
//!   then, while the pool has room and is not paused or paced, takes the oldest
//!   job among the heads of the pool's lanes whose model has room, *grants* it a
//!   slot (the slot lease is taken here, for it; the record's `admitted_ms` says
//!   when, on the clock pacing is measured on) and pushes its delivery. So the
//!   order is exact FIFO within a lane, and a job blocked only by its model's
//!   limit never holds back jobs of other models (no head-of-line blocking).
//! - Every script that frees a slot, parks a job or gives a workspace back
//!   publishes the pool's name on `{ns}:wake`; every worker listens and wakes
//!   that pool. A pause's end and the next pacing start are *timers* (a sorted
//!   set of pool → due time) that workers look at a few times a second; a slow
//!   sweep wakes every pool with parked jobs, for the wake-ups lost with a dead
//!   worker (its slot leases expire; nobody released them).
//! - A delivery that reaches a worker for a job that holds no granted slot (a
//!   retry after its delay, a hand-back) parks the job again, with its original
//!   `order`: it keeps its place in line.
//!
//! Every delivery pushed is also noted in `{ns}:transit` (job → due time) until
//! the job runs, parks or ends, so the lost-job sweep reads only deliveries that
//! are overdue, never the jobs that wait.

use std::{sync::LazyLock, time::Duration};

use redis::AsyncCommands;

use crate::{
    delivery::{new_task_id, queue_keys, PUSH_LUA},
    status::JobState,
    store::create::OPEN_LUA,
    store::limits::AdmissionConfig,
    store::{JobStore, StoreError},
};

/// States a parked job may be in (anything else is skipped and dropped from its
/// lane when it reaches the head: cancelled, purged).
pub const PARKED_STATES: &[JobState] = &[JobState::Queued, JobState::Waiting];

/// Most grants one wake call may make (task ids are passed in): a pool with
/// more room is woken again at once.
const GRANTS_PER_CALL: usize = 64;

/// Lua prelude (needs `NS` and `JOB_PREFIX` locals, and
/// [`OPEN_LUA`](crate::store::create::OPEN_LUA) before it): `park_job(job, id, ws)`
/// puts a job in its lane (`ws` empty) or in workspace `ws`'s line, with its
/// `order`; `unslot(job, id)` gives the job's slot back (and wakes the pool);
/// `unpark(job, id)` takes a job out of wherever it is parked.
pub const PARK_LUA: &str = r#"
local function lane_model(model) if not model or model == '' then return '-' end return model end
local function park_job(job, id, ws)
  open(job)
  local f = redis.call('HMGET', job, 'pool', 'model', 'order')
  local pool, model, order = f[1] or '', lane_model(f[2]), tonumber(f[3] or '0') or 0
  redis.call('ZREM', NS .. ':transit', id)
  if ws ~= '' then
    redis.call('ZADD', NS .. ':wsq:' .. ws, order, id)
    redis.call('SADD', NS .. ':wsqueued', ws)
    redis.call('HSET', job, 'parked', 'ws:' .. ws)
  else
    redis.call('ZADD', NS .. ':lane:' .. pool .. ':' .. model, order, id)
    redis.call('SADD', NS .. ':lanes:' .. pool, model)
    redis.call('SADD', NS .. ':pools', pool)
    redis.call('HSET', job, 'parked', 'lane')
    redis.call('PUBLISH', NS .. ':wake', pool)
  end
end
local function unpark(job, id)
  open(job)
  local f = redis.call('HMGET', job, 'parked', 'pool', 'model')
  local where = f[1] or ''
  if where == 'lane' then
    redis.call('ZREM', NS .. ':lane:' .. (f[2] or '') .. ':' .. lane_model(f[3]), id)
  elseif string.sub(where, 1, 3) == 'ws:' then
    redis.call('ZREM', NS .. ':wsq:' .. string.sub(where, 4), id)
  end
  if where ~= '' then redis.call('HSET', job, 'parked', '') end
end
local function unslot(job, id)
  open(job)
  local f = redis.call('HMGET', job, 'pool', 'model')
  local pool, model = f[1] or '', f[2] or ''
  if pool == '' then return end
  local freed = redis.call('ZREM', NS .. ':limit:' .. pool, id)
  if model ~= '' then redis.call('ZREM', NS .. ':limit:' .. pool .. ':' .. model, id) end
  if freed == 1 then redis.call('PUBLISH', NS .. ':wake', pool) end
end
"#;

/// KEYS: the five queue keys. ARGV: namespace, job prefix, pool, unused (now
/// is Redis's `TIME`), slot lease (ms), pool limit (0: none), window (room of a pool without a
/// limit), pacing (ms, 0: none), number of task ids n, n task ids, then
/// model/limit pairs. Returns the number of jobs granted a slot.
const WAKE: &str = r#"
local NS, JOB_PREFIX, pool = ARGV[1], ARGV[2], ARGV[3]
local now, lease, plimit, window, rate = redis_now_ms(), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local ntasks = tonumber(ARGV[9])
local mlimit = {}
for i = 10 + ntasks, #ARGV, 2 do mlimit[ARGV[i]] = tonumber(ARGV[i + 1]) end
local slots = NS .. ':limit:' .. pool
local lanes = NS .. ':lanes:' .. pool
redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
local models = redis.call('SMEMBERS', lanes)
if #models == 0 then
  redis.call('SREM', NS .. ':pools', pool)
  return 0
end
for _, m in ipairs(models) do
  if m ~= '-' then redis.call('ZREMRANGEBYSCORE', slots .. ':' .. m, '-inf', now) end
end
-- While workers are live but none can run this pool (its image is missing
-- on every one), its jobs stay parked: a delivery would only come back.
if redis.call('ZCOUNT', NS .. ':servers', now, '+inf') > 0
    and redis.call('ZCOUNT', NS .. ':serves:' .. pool, now, '+inf') == 0 then
  return 0
end
local pttl = redis.call('PTTL', NS .. ':backoff:' .. pool)
if pttl > 0 then
  redis.call('ZADD', NS .. ':timers', now + pttl, pool)
  return 0
end
local cap = window
if plimit > 0 then cap = plimit end
local running = redis.call('ZCARD', slots)
local mcount = {}
local granted = 0
while running < cap and granted < ntasks do
  local best, best_score, best_m = nil, nil, nil
  for _, m in ipairs(models) do
    local lim = mlimit[m] or 0
    local room = true
    if lim > 0 and m ~= '-' then
      if mcount[m] == nil then mcount[m] = redis.call('ZCARD', slots .. ':' .. m) end
      room = mcount[m] < lim
    end
    if room then
      local lane = NS .. ':lane:' .. pool .. ':' .. m
      while true do
        local h = redis.call('ZRANGE', lane, 0, 0, 'WITHSCORES')
        if #h == 0 then
          if redis.call('EXISTS', lane) == 0 then redis.call('SREM', lanes, m) end
          break
        end
        open(JOB_PREFIX .. h[1])
        local st, seq = unpack(redis.call('HMGET', JOB_PREFIX .. h[1], 'state', 'seq'))
        if st and PARKED[st] and not tonumber(seq or '0') then
          -- Its grant would write `seq`: fail it (kept) instead, and go on.
          fail_unreadable(JOB_PREFIX .. h[1], h[1], 'seq', '`' .. seq .. '` is not a number')
          st = nil
        end
        if st and PARKED[st] then
          local s = tonumber(h[2])
          if best_score == nil or s < best_score then best, best_score, best_m = h[1], s, m end
          break
        end
        redis.call('ZREM', lane, h[1])
      end
    end
  end
  if best == nil then break end
  if rate > 0 then
    local last = tonumber(redis.call('GET', NS .. ':rate:' .. pool) or '0')
    if now - last < rate then
      redis.call('ZADD', NS .. ':timers', last + rate, pool)
      break
    end
    redis.call('SET', NS .. ':rate:' .. pool, now, 'PX', rate * 2 + 1000)
  end
  redis.call('ZREM', NS .. ':lane:' .. pool .. ':' .. best_m, best)
  redis.call('ZADD', slots, now + lease, best)
  if best_m ~= '-' then
    redis.call('ZADD', slots .. ':' .. best_m, now + lease, best)
    if mcount[best_m] then mcount[best_m] = mcount[best_m] + 1 end
  end
  running = running + 1
  granted = granted + 1
  local job = JOB_PREFIX .. best
  local task = ARGV[9 + granted]
  local seq = redis.call('HINCRBY', job, 'seq', 1)
  redis.call('HSET', job, 'task', task, 'task_at', now, 'parked', '', 'admitted_ms', now)
  redis.call('ZADD', NS .. ':transit', now, best)
  push_delivery(task, best, seq, 0, now, false)
end
wake()
if granted > 0 then redis.call('PUBLISH', NS .. ':deliver', granted) end
return granted
"#;

/// KEYS: none. ARGV: namespace, unused. Takes the timers due by Redis's clock;
/// returns their pools.
const DUE: &str = r#"
local t = ARGV[1] .. ':timers'
local due = redis.call('ZRANGEBYSCORE', t, '-inf', redis_now_ms(), 'LIMIT', 0, 100)
if #due > 0 then redis.call('ZREM', t, unpack(due)) end
return due
"#;

/// KEYS: none. ARGV: namespace, job prefix. For each workspace with a line
/// whose lease is gone (its holder died): the first in line goes to its lane.
/// Returns how many moved.
const FREE_WORKSPACES: &str = r#"
local moved = 0
for _, ws in ipairs(redis.call('SMEMBERS', NS .. ':wsqueued')) do
  if redis.call('EXISTS', NS .. ':ws:' .. ws) == 0 then
    local line = NS .. ':wsq:' .. ws
    local head = redis.call('ZRANGE', line, 0, 0)[1]
    if head then
      redis.call('ZREM', line, head)
      park_job(JOB_PREFIX .. head, head, '')
      moved = moved + 1
    end
  end
  if redis.call('EXISTS', NS .. ':wsq:' .. ws) == 0 then redis.call('SREM', NS .. ':wsqueued', ws) end
end
return moved
"#;

/// `local PARKED = {...}` for Lua, from [`PARKED_STATES`].
pub(crate) fn parked_states_lua() -> String {
    let names: Vec<String> = PARKED_STATES
        .iter()
        .map(|s| format!("['{}'] = true", s.as_str()))
        .collect();
    format!("local PARKED = {{{}}}\n", names.join(", "))
}

static WAKE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "{PUSH_LUA}{OPEN_LUA}{}{}{WAKE}",
        parked_states_lua(),
        crate::store::limits::REDIS_NOW_LUA
    ))
});
static DUE_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(&format!("{}{DUE}", crate::store::limits::REDIS_NOW_LUA)));
static FREE_WORKSPACES_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "local NS, JOB_PREFIX = ARGV[1], ARGV[2]\n{OPEN_LUA}{PARK_LUA}{FREE_WORKSPACES}"
    ))
});

use crate::clock::now_ms;

/// Jobs parked in one pool, per model lane (`-`: jobs without a model).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Parked {
    /// Model → jobs parked in that lane.
    pub lanes: Vec<(String, u64)>,
}

/// Jobs parked in one pool by why they wait ([`JobStore::parked_by_reason`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ParkedReasons {
    /// All jobs in the pool's lanes.
    pub total: u64,
    /// (reason, jobs), nonzero only; they add up to `total`.
    pub reasons: Vec<(String, u64)>,
}

impl Parked {
    /// All jobs parked in the pool.
    pub fn total(&self) -> u64 {
        self.lanes.iter().map(|(_, n)| n).sum()
    }
}

impl JobStore {
    /// Wakes pool `pool`: grants free slots to the oldest parked jobs that can
    /// start and pushes their deliveries. `window`: how many jobs of a pool
    /// without a limit may hold slots at once (the pool's room is the workers'
    /// room). Returns how many jobs were granted a slot.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn wake_pool(
        &self,
        cfg: &AdmissionConfig,
        pool: &str,
        lease: Duration,
        window: u32,
    ) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let mut inv = WAKE_SCRIPT.prepare_invoke();
            for k in queue_keys(self.keys()) {
                inv.key(k);
            }
            inv.arg(self.keys().namespace())
                .arg(self.keys().job_prefix())
                .arg(pool)
                .arg(now_ms())
                .arg(lease.as_millis() as u64)
                .arg(cfg.pool_limit(pool))
                .arg(window.max(1))
                .arg(cfg.rate_ms(pool))
                .arg(GRANTS_PER_CALL);
            for _ in 0..GRANTS_PER_CALL {
                inv.arg(new_task_id());
            }
            if let Some(crate::store::limits::LimitSpec::Detailed(m)) = cfg.limits.get(pool) {
                for (model, n) in m.iter().filter(|(k, _)| k.as_str() != "total") {
                    inv.arg(model).arg(*n);
                }
            }
            let n: usize = inv.invoke_async(&mut self.conn()).await?;
            total += n;
            if n < GRANTS_PER_CALL {
                return Ok(total);
            }
        }
    }

    /// Pools that have parked jobs (or had, until their next wake).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn parked_pools(&self) -> Result<Vec<String>, StoreError> {
        let mut pools: Vec<String> = self.conn().smembers(self.keys().pools()).await?;
        pools.sort();
        Ok(pools)
    }

    /// Takes the timers that are due (a pause that ended, a pacing interval that
    /// passed) and returns their pools, to be woken.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn due_timers(&self) -> Result<Vec<String>, StoreError> {
        Ok(DUE_SCRIPT
            .prepare_invoke()
            .arg(self.keys().namespace())
            .arg(now_ms())
            .invoke_async(&mut self.conn())
            .await?)
    }

    /// Moves the first in line of every workspace whose holder is gone (its
    /// lease expired) to its pool's lane. Returns how many moved.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn free_dead_workspaces(&self) -> Result<usize, StoreError> {
        Ok(FREE_WORKSPACES_SCRIPT
            .prepare_invoke()
            .arg(self.keys().namespace())
            .arg(self.keys().job_prefix())
            .invoke_async(&mut self.conn())
            .await?)
    }

    /// Jobs parked in `pool`, per lane.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn parked(&self, pool: &str) -> Result<Parked, StoreError> {
        let mut models: Vec<String> = self.conn().smembers(self.keys().lanes(pool)).await?;
        models.sort();
        if models.is_empty() {
            return Ok(Parked::default());
        }
        let mut pipe = redis::pipe();
        for m in &models {
            pipe.zcard(self.keys().lane(pool, m));
        }
        let counts: Vec<u64> = pipe.query_async(&mut self.conn()).await?;
        Ok(Parked {
            lanes: models.into_iter().zip(counts).collect(),
        })
    }

    /// Jobs parked in `pool`'s lanes by why they wait, read at once with the
    /// lanes' sizes so that the counts add up to the total: each job's
    /// `reason` (`queued`: enqueued, not yet tried), `stale` for an entry whose
    /// job is no longer parked (dropped when it reaches the head), and
    /// `not read` for those past the first `cap` of each lane. Reads each
    /// job's state and reason only (never its record), nonzero counts only.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn parked_by_reason(
        &self,
        pool: &str,
        cap: usize,
    ) -> Result<ParkedReasons, StoreError> {
        let mut conn = self.conn();
        let mut models: Vec<String> = conn.smembers(self.keys().lanes(pool)).await?;
        models.sort();
        if models.is_empty() {
            return Ok(ParkedReasons::default());
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for m in &models {
            let lane = self.keys().lane(pool, m);
            pipe.zcard(&lane).zrange(&lane, 0, cap.max(1) as isize - 1);
        }
        let lanes: Vec<(u64, Vec<String>)> = pipe.query_async(&mut conn).await?;
        let total: u64 = lanes.iter().map(|(n, _)| n).sum();
        let ids: Vec<String> = lanes.into_iter().flat_map(|(_, ids)| ids).collect();
        let mut counts: Vec<(String, u64)> = Vec::new();
        let mut add = |reason: &str, n: u64| {
            if n == 0 {
                return;
            }
            match counts.iter_mut().find(|(r, _)| r == reason) {
                Some((_, c)) => *c += n,
                None => counts.push((reason.to_string(), n)),
            }
        };
        for chunk in ids.chunks(1_000) {
            let mut pipe = redis::pipe();
            for id in chunk {
                // Still new first, then the job's own hash (see
                // `JobStore::read_records`).
                pipe.hexists(self.keys().fresh(), id);
                pipe.cmd("HMGET")
                    .arg(self.keys().job(id))
                    .arg("state")
                    .arg("reason");
            }
            let fields: Vec<redis::Value> = pipe.query_async(&mut conn).await?;
            for pair in fields.chunks(2) {
                let (state, reason): (Option<String>, Option<String>) =
                    redis::from_redis_value(pair[1].clone()).map_err(redis::RedisError::from)?;
                // Untouched since enqueue: queued, with no reason yet.
                let fresh: bool =
                    redis::from_redis_value(pair[0].clone()).map_err(redis::RedisError::from)?;
                let parked = fresh
                    || state
                        .and_then(|s| s.parse::<JobState>().ok())
                        .is_some_and(|s| PARKED_STATES.contains(&s));
                match reason.filter(|r| !r.is_empty()) {
                    _ if !parked => add("stale", 1),
                    Some(r) => add(&r, 1),
                    None => add("queued", 1),
                }
            }
        }
        add("not read", total.saturating_sub(ids.len() as u64));
        // The usual reasons first, in one order everywhere.
        let rank = |r: &str| {
            std::iter::once("queued")
                .chain(crate::status::WAIT_REASONS.iter().map(|w| w.as_str()))
                .position(|k| k == r)
                .unwrap_or(usize::MAX)
        };
        counts.sort_by(|a, b| rank(&a.0).cmp(&rank(&b.0)).then(a.0.cmp(&b.0)));
        Ok(ParkedReasons {
            total,
            reasons: counts,
        })
    }

    /// Publishes a wake-up for `pool` (after a pause is lifted by hand).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn publish_wake(&self, pool: &str) -> Result<(), StoreError> {
        let _: i64 = self
            .conn()
            .publish(format!("{}:wake", self.keys().namespace()), pool)
            .await?;
        Ok(())
    }
}

/// The pub/sub channel on which pools to wake are published.
pub fn wake_channel(ns: &str) -> String {
    crate::keys::Keys::new(ns).wake()
}

/// The pub/sub channel on which "deliveries were pushed" is published.
pub fn deliver_channel(ns: &str) -> String {
    format!("{ns}:deliver")
}
