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
//!   job among the heads of the pool's lanes whose model has room (of the
//!   highest priority waiting: a lane per model and priority, see
//!   [`crate::priority`]), *grants* it a
//!   slot (the slot lease is taken here, for it; the record's `admitted_at` says
//!   when, on the clock pacing is measured on) and pushes its delivery. So the
//!   order is exact FIFO within a lane, and a job blocked only by its model's
//!   limit never holds back jobs of other models (no head-of-line blocking).
//! - Every script that frees a slot, parks a job or gives a workspace back
//!   publishes the pool's name on `{ns}:wake`; every worker listens and wakes
//!   that pool. A pause's end and the next pacing start are *timers* (a sorted
//!   set of pool → due time) that workers wait for (one wait on the first due time, looked at again
//!   when a script publishes on `{ns}:timer` that it added an earlier one); a slow
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
    delivery::new_task_id,
    status::JobState,
    store::limits::AdmissionConfig,
    store::{lua, script_args::WakeArgs, JobStore, StoreError},
};

pub use crate::status::PARKED_STATES;

/// Most grants one wake call may make (task ids are passed in): a pool with
/// more room is woken again at once.
const GRANTS_PER_CALL: usize = 64;

/// The `park` snippet (`lua/park.lua`, which includes `open`; it needs a local
/// `NS` before it, and scripts take it with `--- @include "park"`): `park_job(job, id, ws)`
/// puts a job in its lane (`ws` empty) or in workspace `ws`'s line, with its
/// `order`; `unslot(job, id)` gives the job's slot back (and wakes the pool);
/// `unpark(job, id)` takes a job out of wherever it is parked.
pub const PARK_LUA: &str = include_str!("lua/park.lua");

/// The `wake` script (`lua/wake.lua`, its arguments in
/// [`WakeArgs`](crate::store::script_args::WakeArgs)): grants free slots to
/// the oldest parked jobs that can start. Returns how many it granted.
static WAKE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| lua::script("wake"));
/// The `due` script (`lua/due.lua`): takes the pool timers due.
/// The member of `{ns}:timers` that stands for apalis's scheduled set: due
/// when the first delayed delivery is (see `lua/due.lua`, `lua/timer_add.lua`).
pub const DELIVERIES_TIMER: &str = "@deliveries";

/// What [`JobStore::due_timers`] took.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DueTimers {
    /// The members that were due: pools, or `@`-names ([`DELIVERIES_TIMER`]).
    pub due: Vec<String>,
    /// When the first timer left is due (from now, Redis's clock); `None`: no
    /// timer.
    pub next: Option<Duration>,
}

static DUE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| lua::script("due"));
/// The `free_workspaces` script (`lua/free_workspaces.lua`): the first in
/// line of each workspace whose holder is gone goes to its lane.
static FREE_WORKSPACES_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| lua::script("free_workspaces"));

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
            let model_limits = match cfg.limits.get(pool) {
                Some(crate::store::limits::LimitSpec::Detailed(m)) => m
                    .iter()
                    .filter(|(k, _)| k.as_str() != "total")
                    .map(|(k, n)| (k.as_str(), *n))
                    .collect(),
                _ => Vec::new(),
            };
            let inv = WakeArgs {
                keys: self.keys(),
                pool,
                pacing: cfg.pacing(pool).map(|p| p.lua_arg()).unwrap_or_default(),
                lease_ms: lease.as_millis() as u64,
                pool_limit: cfg.pool_limit(pool),
                window: window.max(1),
                rate_ms: cfg.rate_ms(pool),
                tasks: (0..GRANTS_PER_CALL).map(|_| new_task_id()).collect(),
                model_limits,
                priority_age_ms: cfg.priority_age_secs.saturating_mul(1000),
            }
            .invocation(&WAKE_SCRIPT);
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
    /// passed: pools to wake; [`DELIVERIES_TIMER`]: delayed deliveries, moved
    /// to the active list here) and says when the first timer left is due.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn due_timers(&self) -> Result<DueTimers, StoreError> {
        let mut inv = DUE_SCRIPT.prepare_invoke();
        for k in crate::delivery::queue_keys(self.keys()) {
            inv.key(k);
        }
        let mut out: Vec<String> = inv
            .arg(self.keys().namespace())
            .arg(now_ms())
            .invoke_async(&mut self.conn())
            .await?;
        let next = (!out.is_empty())
            .then(|| out.remove(0))
            .and_then(|ms| ms.parse::<u64>().ok())
            .map(Duration::from_millis);
        let mut due = out;
        // Delayed jobs' timer (not a pool): they go to their lanes, whose
        // pools are woken by the wake-ups the move publishes. The release sets
        // the timer again through `add_timer`, which publishes when it is the
        // first due, so `next` needs no correction here.
        if let Some(i) = due.iter().position(|p| p == crate::keys::SCHEDULED_TIMER) {
            due.swap_remove(i);
            if let Err(e) = self.release_scheduled().await {
                // The timer is taken: set it again, or no one looks.
                let _ = self.rearm_scheduled_timer().await;
                return Err(e);
            }
        }
        Ok(DueTimers { due, next })
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
    crate::keys::Keys::new(ns).deliver()
}
