//! Fleet control: an operator's pause with no end (`agentq pause`,
//! `agentq unpause`), stop-now (`agentq stop --now`) and `start_paused`.
//!
//! - **Pause**: a pool's name in `{ns}:fleet:paused`, or the flag
//!   `{ns}:fleet:paused_all` for every pool. Neither expires, so the pause
//!   outlives every worker's restart. The wake script (`lua/wake.lua`) looks
//!   at both where it looks at the timed pause (`{ns}:backoff:{pool}`): a paused
//!   pool grants no slot, so no job of it starts on any host; running jobs go
//!   on. Its waiting jobs stay parked, costing nothing; the unpause publishes
//!   the pool's wake-up, which every worker's waker listens to.
//! - **Stop now**: the pause, plus the Redis time of the stop in
//!   `{ns}:fleet:stop` (pool, or `*` for all). Each running job's guard reads
//!   that with its cancel flag every second ([`JobStore::asks`]); a run admitted
//!   before the stop stops its agent and hands the job back, first in line.
//! - **First start**: the first worker ever to start in a namespace sets
//!   `{ns}:fleet:started`; with `start_paused` it also pauses the fleet, in the
//!   same call, so a fresh fleet runs nothing until `agentq unpause --all`.
//!   Later starts find the marker and pause nothing.
//!
//! Timed pauses (`agentq pool pause --for`, the fast-failure backoff) are a
//! different key and go on as before; a pool can have both.

use std::{collections::BTreeSet, sync::LazyLock};

use redis::AsyncCommands;

use crate::store::{lua, now_rfc3339, JobStore, StoreError, EVENTS_MAX_LEN};

/// The `fleet` script (`lua/fleet.lua`).
static FLEET_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| lua::script("fleet"));

/// Which pools an operator command names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pools {
    /// Every pool, now and later (`--all`).
    All,
    /// These pools.
    Named(Vec<String>),
}

/// Who paused the fleet or a pool (the events' `cause`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseCause {
    /// `agentq pause`, `agentq stop --now`, `agentq unpause`.
    Operator,
    /// The fleet's first start with `start_paused = true`.
    StartPaused,
}

impl PauseCause {
    /// The events' name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::StartPaused => "start_paused",
        }
    }
}

/// What the operator's pauses are now.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FleetPause {
    /// The whole fleet is paused.
    pub all: bool,
    /// Pools paused one by one.
    pub pools: BTreeSet<String>,
}

impl FleetPause {
    /// Whether `pool` is paused by an operator (itself, or the whole fleet).
    pub fn covers(&self, pool: &str) -> bool {
        self.all || self.pools.contains(pool)
    }
}

/// What a running job's guard reads every second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Asks {
    /// A person cancelled the job.
    pub cancel: bool,
    /// The latest operator stop of its pool (or of all), Redis ms.
    pub stopped_at: Option<i64>,
}

enum Op {
    Pause,
    Stop,
    Unpause,
    FirstStart,
}

impl Op {
    fn as_str(&self) -> &'static str {
        match self {
            Op::Pause => "pause",
            Op::Stop => "stop",
            Op::Unpause => "unpause",
            Op::FirstStart => "first_start",
        }
    }
}

impl JobStore {
    async fn fleet_op(
        &self,
        op: Op,
        all: bool,
        cause: PauseCause,
        pools: &[String],
    ) -> Result<u64, StoreError> {
        let k = self.keys();
        let mut inv = FLEET_SCRIPT.prepare_invoke();
        inv.key(k.fleet_paused())
            .key(k.fleet_paused_all())
            .key(k.fleet_stop())
            .key(k.events())
            .key(k.fleet_started())
            .arg(op.as_str())
            .arg(if all { "1" } else { "0" })
            .arg(EVENTS_MAX_LEN)
            .arg(now_rfc3339())
            .arg(cause.as_str())
            .arg(k.wake());
        for p in pools {
            inv.arg(p);
        }
        Ok(inv.invoke_async(&mut self.conn()).await?)
    }

    /// Pauses `pools` on every host until [`JobStore::unpause`]: no new
    /// starts; running jobs go on. Returns how many were not paused yet.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn pause(&self, pools: &Pools) -> Result<u64, StoreError> {
        let (all, names) = split(pools);
        self.fleet_op(Op::Pause, all, PauseCause::Operator, names)
            .await
    }

    /// Pauses `pools` as [`JobStore::pause`] does and stops every agent of
    /// theirs running now, on every host: their runs hand their jobs back to
    /// `queued`, first in line, spending no attempt. Returns how many pauses
    /// are new.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn stop_now(&self, pools: &Pools) -> Result<u64, StoreError> {
        let (all, names) = split(pools);
        self.fleet_op(Op::Stop, all, PauseCause::Operator, names)
            .await
    }

    /// Lifts the operator's pause of `pools` (`All`: of the fleet and of every
    /// pool) and wakes their waiting jobs; `wake` names the pools to wake
    /// for `All` (the known ones; the paused ones are woken anyway). A timed
    /// pause (`agentq pool pause`, the backoff) stays. Returns how many pauses
    /// were lifted.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn unpause(&self, pools: &Pools, wake: &[String]) -> Result<u64, StoreError> {
        match pools {
            Pools::All => {
                self.fleet_op(Op::Unpause, true, PauseCause::Operator, wake)
                    .await
            }
            Pools::Named(names) => {
                self.fleet_op(Op::Unpause, false, PauseCause::Operator, names)
                    .await
            }
        }
    }

    /// A worker's start: the first one ever in this namespace marks the
    /// fleet started and, with `start_paused`, pauses the whole fleet (in
    /// the same call). Returns whether this start paused it.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn first_start(&self, start_paused: bool) -> Result<bool, StoreError> {
        Ok(self
            .fleet_op(Op::FirstStart, start_paused, PauseCause::StartPaused, &[])
            .await?
            == 1)
    }

    /// The operator's pauses now.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn fleet_pause(&self) -> Result<FleetPause, StoreError> {
        let (all, pools): (bool, BTreeSet<String>) = redis::pipe()
            .exists(self.keys().fleet_paused_all())
            .smembers(self.keys().fleet_paused())
            .query_async(&mut self.conn())
            .await?;
        Ok(FleetPause { all, pools })
    }

    /// A running job's asks, in one round trip: its cancel flag and the
    /// latest operator stop of `pool`.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn asks(&self, id: &str, pool: &str) -> Result<Asks, StoreError> {
        let (cancel, (one, every)): (bool, (Option<i64>, Option<i64>)) = redis::pipe()
            .exists(self.keys().cancel(id))
            .cmd("HMGET")
            .arg(self.keys().fleet_stop())
            .arg(pool)
            .arg("*")
            .query_async(&mut self.conn())
            .await?;
        Ok(Asks {
            cancel,
            stopped_at: one.max(every),
        })
    }

    /// Whether the fleet has been started before (the marker exists).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn fleet_started(&self) -> Result<bool, StoreError> {
        Ok(self.conn().exists(self.keys().fleet_started()).await?)
    }
}

fn split(pools: &Pools) -> (bool, &[String]) {
    match pools {
        Pools::All => (true, &[]),
        Pools::Named(n) => (false, n),
    }
}
