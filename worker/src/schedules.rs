//! Periodic jobs (`[[schedule]]`, see [`agentq_shared::schedule`]): one loop
//! per schedule sleeps on this host's clock until the next tick (no Redis
//! until then), and at a tick asks Redis to take it
//! ([`JobStore::schedule_tick`](agentq_shared::store::JobStore::schedule_tick)):
//! a worker that finds the tick free enqueues its job under the tick's
//! idempotency key (one job however many workers race), then moves the
//! schedule's last tick forward. At start each loop takes the latest tick that has passed:
//! a tick missed while no worker ran is enqueued once (the latest one, not
//! one per missed tick); a schedule seen for the first time only records it.

use std::{sync::Arc, time::Duration};

use agentq_shared::{
    clock::now_ms,
    schedule::ScheduleConfig,
    store::{schedules::Tick, Created},
};

use crate::context::WorkerCtx;

/// Starts one loop per `[[schedule]]` entry.
pub fn spawn(ctx: Arc<WorkerCtx>) {
    for s in ctx.cfg.schedule.clone() {
        ctx.services.spawn("schedule", run(ctx.clone(), s));
    }
}

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(now_ms()).unwrap_or_default()
}

async fn run(ctx: Arc<WorkerCtx>, s: ScheduleConfig) {
    // Checked at config load; a table changed since is refused here, once.
    let input = match s.job_input(ctx.cfg.agent_table()) {
        Ok(i) => i,
        Err(e) => {
            tracing::error!(schedule = %s.name, error = %e, "schedule's job refused; it enqueues nothing");
            return;
        }
    };
    let mut starting = true;
    loop {
        if let Some(tick) = s.latest_tick(now()) {
            match ctx
                .store
                .schedule_tick(&s, &input, ctx.cfg.max_attempts, tick, starting)
                .await
            {
                Ok(Tick::Enqueued(Created::New(id))) => {
                    tracing::info!(schedule = %s.name, tick, %id, "periodic job enqueued")
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(schedule = %s.name, error = %e, "cannot take the tick; trying again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
        }
        starting = false;
        let Some(next) = s.next_tick(now()) else {
            tracing::info!(schedule = %s.name, "schedule has no next tick");
            return;
        };
        // A few milliseconds past the tick, so that it is the latest one.
        let wait = (next * 1000 - now_ms()).max(0) as u64 + 5;
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
}
