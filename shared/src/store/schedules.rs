//! Periodic jobs (`[[schedule]]`, see [`crate::schedule`]): the last tick
//! each schedule enqueued is held in Redis (`{ns}:schedule:{name}`), so any
//! number of workers, and workers that restart, enqueue exactly one job per
//! tick: a caller that finds the tick not yet taken (`lua/schedule_tick.lua`)
//! enqueues the job with idempotency key `schedule:{name}:{tick}` and only
//! then moves the tick forward (compare-and-set). Enqueueing first means a
//! failure between the two loses nothing: the next try finds the tick free
//! and its job by the key; callers racing for one tick get one job, by the
//! key, and one of them moves the tick.

use std::sync::LazyLock;

use crate::{
    record::JobRecord,
    schedule::ScheduleConfig,
    store::{lua, Created, JobStore, StoreError},
};

/// The `schedule_tick` script (`lua/schedule_tick.lua`).
static TICK_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| lua::script("schedule_tick"));

/// What [`JobStore::schedule_tick`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tick {
    /// Another caller took the tick (or a later one), or it was only recorded.
    Taken,
    /// This caller took it and enqueued its job (or found it enqueued, by
    /// its key).
    Enqueued(Created),
}

/// A schedule as `agentq schedules` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ScheduleView {
    /// Its name.
    pub name: String,
    /// Its cron expression.
    pub cron: String,
    /// Its time zone.
    pub tz: String,
    /// The next tick (RFC 3339 UTC), if any.
    pub next_tick: Option<String>,
    /// The last tick a job was enqueued for (RFC 3339 UTC), if any.
    pub last_tick: Option<String>,
}

impl JobStore {
    /// Moves schedule `name`'s last tick forward to `tick` (Unix seconds),
    /// if it is earlier (or missing and not `record_only`). True when this
    /// call moved it.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn take_schedule_tick(
        &self,
        name: &str,
        tick: i64,
        record_only: bool,
    ) -> Result<bool, StoreError> {
        self.tick_script(name, tick, record_only, false).await
    }

    /// Whether [`JobStore::take_schedule_tick`] would take `tick`, without
    /// moving it (a missing tick is still recorded when `record_only`).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn schedule_tick_is_free(
        &self,
        name: &str,
        tick: i64,
        record_only: bool,
    ) -> Result<bool, StoreError> {
        self.tick_script(name, tick, record_only, true).await
    }

    async fn tick_script(
        &self,
        name: &str,
        tick: i64,
        record_only: bool,
        look: bool,
    ) -> Result<bool, StoreError> {
        let n: i64 = TICK_SCRIPT
            .prepare_invoke()
            .arg(self.keys().namespace())
            .arg(name)
            .arg(tick)
            .arg(if record_only { "1" } else { "" })
            .arg(if look { "1" } else { "" })
            .invoke_async(&mut self.conn())
            .await?;
        Ok(n == 1)
    }

    /// Tick `tick` of schedule `s`: if it is not taken yet, enqueues `input`
    /// as its job (by the tick's idempotency key: one job however many
    /// callers), then takes it ([`JobStore::take_schedule_tick`]). See the
    /// module docs for why in this order.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn schedule_tick(
        &self,
        s: &ScheduleConfig,
        input: &crate::input::DispatchInput,
        max_attempts: u32,
        tick: i64,
        record_only: bool,
    ) -> Result<Tick, StoreError> {
        if !self
            .schedule_tick_is_free(&s.name, tick, record_only)
            .await?
        {
            return Ok(Tick::Taken);
        }
        let mut rec = JobRecord::new(
            ulid::Ulid::new().to_string(),
            input.clone(),
            max_attempts,
            crate::stamp::Stamp::now(),
        );
        rec.key = s.tick_key(tick);
        let mut created = self.create(std::slice::from_ref(&rec)).await?;
        self.take_schedule_tick(&s.name, tick, false).await?;
        Ok(Tick::Enqueued(
            created.pop().expect("one answer per record"),
        ))
    }

    /// The last tick schedule `name` enqueued a job for (Unix seconds).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn last_schedule_tick(&self, name: &str) -> Result<Option<i64>, StoreError> {
        let v: Option<i64> = redis::cmd("GET")
            .arg(self.keys().schedule_tick(name))
            .query_async(&mut self.conn())
            .await?;
        Ok(v)
    }

    /// The schedules `entries` with their next and last ticks.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn schedule_views(
        &self,
        entries: &[ScheduleConfig],
    ) -> Result<Vec<ScheduleView>, StoreError> {
        let now =
            chrono::DateTime::from_timestamp_millis(crate::clock::now_ms()).unwrap_or_default();
        let mut out = Vec::new();
        for s in entries {
            let last = self.last_schedule_tick(&s.name).await?;
            out.push(ScheduleView {
                name: s.name.clone(),
                cron: s.cron.clone(),
                tz: if s.tz.is_empty() {
                    "UTC".into()
                } else {
                    s.tz.clone()
                },
                next_tick: s.next_tick(now).map(crate::schedule::tick_text),
                last_tick: last.map(crate::schedule::tick_text),
            });
        }
        Ok(out)
    }
}
