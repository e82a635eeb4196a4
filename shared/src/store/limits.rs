//! Admission: per-pool concurrency limits that hold across every host, pacing
//! between starts, and pool backoff after fast failures.
//!
//! Running jobs hold *slot leases*: members of a sorted set per pool (and per
//! pool+model) scored by lease expiry, renewed while the job runs, so a crashed
//! host's slots free themselves. Slots are granted to parked jobs, oldest first,
//! by the wake script of [`crate::store::park`], which also applies pacing and pauses;
//! a job's run ends by giving its slot back in the same Lua call that records
//! how it ended ([`crate::store::Move`]).

use std::{sync::LazyLock, time::Duration};

pub use crate::admission::{AdmissionConfig, BackoffConfig, LimitSpec};
use crate::{
    agent::AgentSpec,
    store::{lua, now_rfc3339, script_args, JobStore, StoreError, EVENTS_MAX_LEN},
};

/// A pool's numbers for `agentq stats`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PoolStats {
    /// Pool name.
    pub pool: String,
    /// Jobs holding a slot.
    pub running: u64,
    /// The pool's limit (0: unlimited).
    pub limit: u32,
    /// Jobs parked in the pool's lanes (for a slot, pacing or the pause to end).
    pub waiting: u64,
    /// When the pause ends (RFC 3339), if paused.
    pub paused_until: Option<String>,
    /// The pool's pacing today, when it has `[pacing.POOL]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pacing: Option<PacingStats>,
    /// Paused by an operator, with no end (`agentq pause`, `stop --now`,
    /// `start_paused`; the pool's own pause or the whole fleet's) until
    /// `agentq unpause`.
    pub operator_paused: bool,
    /// Why it is paused, when the pause says (`quota`: the provider's usage
    /// limit); `None` for a fast-failure backoff or a pause by hand.
    pub pause_cause: Option<crate::quota::PauseCause>,
}

/// A paced pool's day (see [`crate::pacing`]), on Redis's clock.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PacingStats {
    /// Starts granted since the day began (the last `reset_utc`).
    pub starts_today: u64,
    /// Most starts a day (0: no limit).
    pub daily_limit: u32,
    /// Starts left today (`None`: no limit).
    pub starts_left: Option<u64>,
    /// The least gap between two starts now (upstream's `delayForAgent`), seconds.
    pub gap_secs: f64,
    /// The earliest the pool may start a job (RFC 3339): the gap after the
    /// last start, or the next reset when the day's starts are used up; now
    /// or earlier when it may start now.
    pub next_start: String,
    /// Whether it may start a job now (pacing alone: slots and pauses aside).
    pub may_start_now: bool,
    /// When the day ends: the next `reset_utc` (RFC 3339).
    pub day_ends: String,
}

/// The `slot_holds` script (`lua/slot_holds.lua`). Every slot, pacing
/// window, timer and registry entry is scored by Redis's clock (the
/// `redis_now` snippet), never by a host's, so one host's skewed clock cannot
/// break a limit.
static HOLDS_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| lua::script("slot_holds"));
/// The `slot_renew` script (`lua/slot_renew.lua`).
static RENEW_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| lua::script("slot_renew"));
/// The `pool_outcome` script (`lua/pool_outcome.lua`).
static OUTCOME_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| lua::script("pool_outcome"));
/// The `quota_pause` script (`lua/quota_pause.lua`).
static QUOTA_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| lua::script("quota_pause"));

/// Checks a pool name as `agentq pool` takes it: a pool of `agents` (the
/// configured table), no model.
///
/// # Errors
/// Why the name is refused.
pub fn check_pool_name(agents: &crate::agent::AgentTable, pool: &str) -> Result<(), String> {
    if pool.contains(':') {
        return Err("pool: give the pool without a model (e.g. claude)".into());
    }
    if agents.get(pool).is_none() {
        return Err(format!(
            "pool: {}",
            crate::agent::AgentError::Unknown(pool.into())
        ));
    }
    Ok(())
}

fn model_key(store: &JobStore, agent: &AgentSpec) -> String {
    match &agent.model {
        Some(m) => store.keys().limit_model(agent.pool(), m),
        None => store.keys().limit(agent.pool()),
    }
}

impl JobStore {
    /// Whether job `id` holds a slot of its pool (granted to it by a wake, see
    /// [`crate::store::park`]); if so its lease is renewed for `lease`. A job without
    /// one parks in its pool's lane.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn holds_slot(
        &self,
        agent: &AgentSpec,
        id: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let k = self.keys();
        let held: i64 = HOLDS_SCRIPT
            .key(k.limit(agent.pool()))
            .key(model_key(self, agent))
            .arg("")
            .arg(lease.as_millis() as u64)
            .arg(id)
            .arg(if agent.model.is_some() { "1" } else { "0" })
            .invoke_async(&mut self.conn())
            .await?;
        Ok(held == 1)
    }

    /// Extends job `id`'s slot lease, if it still holds one.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn renew_slot(
        &self,
        agent: &AgentSpec,
        id: &str,
        lease: Duration,
    ) -> Result<(), StoreError> {
        let _: i64 = RENEW_SCRIPT
            .key(self.keys().limit(agent.pool()))
            .key(model_key(self, agent))
            .arg(lease.as_millis() as u64)
            .arg(id)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Feeds an agent outcome to the pool's backoff counter: a fast failure counts,
    /// anything else resets it. Returns whether this outcome paused the pool.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn record_outcome(
        &self,
        cfg: &BackoffConfig,
        pool: &str,
        failed: bool,
        ran_for: Duration,
    ) -> Result<bool, StoreError> {
        let fast_failure = failed && ran_for < cfg.window();
        let until = crate::clock::rfc3339_after(cfg.pause());
        let args = script_args::PoolOutcomeArgs {
            keys: self.keys(),
            pool,
            fast_failure,
            failures_to_pause: cfg.failures_to_pause(),
            pause_ms: cfg.pause().as_millis() as u64,
            until,
            now: now_rfc3339(),
        };
        let paused: i64 = args
            .invocation(&OUTCOME_SCRIPT)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(paused == 1)
    }

    /// Pauses a pool by hand for `dur` on every host, as a backoff pause does
    /// (jobs wait; running ones go on): `agentq pool pause`. Returns until when
    /// (RFC 3339).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn pause_pool(&self, pool: &str, dur: Duration) -> Result<String, StoreError> {
        let until = crate::clock::rfc3339_after(dur.max(Duration::from_secs(1)));
        let _: () = redis::pipe()
            .set_options(
                self.keys().backoff(pool),
                &until,
                redis::SetOptions::default()
                    .with_expiration(redis::SetExpiry::PX(dur.as_millis().max(1000) as u64)),
            )
            .ignore()
            .query_async(&mut self.conn())
            .await?;
        self.pool_event("pool_paused", pool, &[("until", &until)])
            .await?;
        Ok(until)
    }

    /// Pauses `pool` on every host until `resume_at` (its provider's usage
    /// limit resets then), unless a longer pause is already there, with the
    /// cause `quota` in the pause's value, and adds a `quota` event (`line`:
    /// the agent's output line that said so, shown as people see it). The
    /// pool's timer wakes it when the pause ends. Returns the pause left.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn pause_for_quota(
        &self,
        pool: &str,
        resume_at: chrono::DateTime<chrono::Utc>,
        line: &str,
        job: &str,
    ) -> Result<Duration, StoreError> {
        let ms = (resume_at - chrono::Utc::now())
            .num_milliseconds()
            .max(1000) as u64;
        // Written as the record's `resume_at` is (a `Stamp`): the event and
        // the record say the same moment in the same words.
        let until = crate::stamp::Stamp::from(resume_at).to_string();
        let left: i64 = QUOTA_SCRIPT
            .key(self.keys().backoff(pool))
            .key(self.keys().events())
            .arg(ms)
            .arg(crate::quota::PauseCause::Quota.pause_value(&until))
            .arg(pool)
            .arg(&until)
            .arg(crate::quota::shown_line(line))
            .arg(job)
            .arg(EVENTS_MAX_LEN)
            .arg(now_rfc3339())
            .arg(self.keys().namespace())
            .invoke_async(&mut self.conn())
            .await?;
        Ok(Duration::from_millis(left.max(0) as u64))
    }

    /// Lifts a pool's pause by hand. Returns whether it was paused.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn resume_pool(&self, pool: &str) -> Result<bool, StoreError> {
        let (n, _): (i64, i64) = redis::pipe()
            .del(self.keys().backoff(pool))
            .del(self.keys().fails(pool))
            .query_async(&mut self.conn())
            .await?;
        self.pool_event("pool_resumed", pool, &[]).await?;
        Ok(n == 1)
    }

    /// Numbers for each of `pools`.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn pool_stats(
        &self,
        cfg: &AdmissionConfig,
        pools: &[String],
    ) -> Result<Vec<PoolStats>, StoreError> {
        let now = self.redis_now_ms().await?;
        let mut pipe = redis::pipe();
        for pool in pools {
            pipe.zcount(self.keys().limit(pool), now, "+inf")
                .pttl(self.keys().backoff(pool));
        }
        let raw: Vec<i64> = pipe.query_async(&mut self.conn()).await?;
        let fleet = self.fleet_pause().await?;
        let mut pipe = redis::pipe();
        for pool in pools {
            pipe.get(self.keys().backoff(pool));
        }
        let values: Vec<Option<String>> = pipe.query_async(&mut self.conn()).await?;
        let mut out = Vec::new();
        for ((pool, c), value) in pools.iter().zip(raw.chunks(2)).zip(values) {
            let pacing = match cfg.pacing(pool) {
                Some(p) => Some(self.pacing_stats(pool, p, now).await?),
                None => None,
            };
            out.push(PoolStats {
                pool: pool.clone(),
                running: c[0].max(0) as u64,
                limit: cfg.pool_limit(pool),
                waiting: self.parked(pool).await?.total(),
                paused_until: (c[1] > 0)
                    .then(|| crate::clock::rfc3339_after(Duration::from_millis(c[1] as u64))),
                pacing,
                operator_paused: fleet.covers(pool),
                pause_cause: value
                    .filter(|_| c[1] > 0)
                    .and_then(|v| crate::quota::PauseCause::of_pause_value(&v)),
            });
        }
        Ok(out)
    }

    /// A paced pool's day at `now` (Redis's ms): its start counter and last
    /// start, as the wake script reads them.
    async fn pacing_stats(
        &self,
        pool: &str,
        p: &crate::pacing::Pacing,
        now: i64,
    ) -> Result<PacingStats, StoreError> {
        let (day, day_end) = p.day_window(now);
        let (starts, last): (Option<u64>, Option<i64>) = redis::pipe()
            .get(self.keys().starts(pool, day))
            .get(self.keys().rate(pool))
            .query_async(&mut self.conn())
            .await?;
        let starts = starts.unwrap_or(0);
        let left = (p.daily_limit > 0).then(|| u64::from(p.daily_limit).saturating_sub(starts));
        let mut next = last.map_or(now, |last| p.next_start_ms(last, now));
        if left == Some(0) {
            next = next.max(day_end);
        }
        let rfc =
            |ms: i64| crate::pacing::utc_ms(ms).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        Ok(PacingStats {
            starts_today: starts,
            daily_limit: p.daily_limit,
            starts_left: left,
            gap_secs: p.delay_ms(now) as f64 / 1000.0,
            next_start: rfc(next.max(now)),
            may_start_now: next <= now,
            day_ends: rfc(day_end),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_as_number_or_table() {
        let cfg: AdmissionConfig = toml::from_str(
            "[limits]\nclaude = { total = 3, opus = 1 }\ncodex = 2\n[rates]\ngemini = 1.5\n[backoff]\npause_secs = 5\n",
        )
        .unwrap();
        assert_eq!(cfg.pool_limit("claude"), 3);
        assert_eq!(cfg.pool_limit("codex"), 2);
        assert_eq!(cfg.pool_limit("gemini"), 0);
        assert_eq!(cfg.limits["claude"].model("opus"), 1);
        assert_eq!(cfg.limits["claude"].model("haiku"), 0);
        assert_eq!(cfg.rate_ms("gemini"), 1500);
        assert_eq!(cfg.backoff.pause_secs, 5);
        assert_eq!(cfg.backoff.failures, 3);
    }
}
