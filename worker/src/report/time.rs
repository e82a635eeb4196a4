//! The agent's run time on the issue: a tracked time or the stopwatch.

use agentq_shared::{
    config::TimeTracking,
    forge::{AddTime, StopwatchOutcome, TimeOutcome, TrackingUnavailable},
    record::JobRecord,
};

use super::{forge_for, ForgeErrors};
use crate::context::WorkerCtx;

/// When the agent's run started, for the time recorded on the issue.
#[derive(Debug, Clone, Copy)]
pub struct RunClock {
    started_at: chrono::DateTime<chrono::Utc>,
    started: std::time::Instant,
}

impl RunClock {
    /// Whole seconds since the start, rounded up (a run always counts at least 1 s:
    /// the forge refuses a zero time).
    fn seconds(&self) -> u64 {
        self.started.elapsed().as_secs_f64().ceil().max(1.0) as u64
    }
}

/// Starts timing the agent's run. With `[forge] time_tracking = "stopwatch"` it
/// also starts the token owner's stopwatch on the issue ("already running" is fine).
pub async fn start_timer(ctx: &WorkerCtx, rec: &JobRecord, errors: &mut ForgeErrors) -> RunClock {
    if ctx.cfg.forge.time_tracking == TimeTracking::Stopwatch {
        if let Some(f) = forge_for(ctx, rec) {
            let i = &rec.input;
            let fc = errors.client(f);
            let started = errors
                .within(
                    "start stopwatch",
                    fc.start_stopwatch(&i.org, &i.repo, i.issue),
                )
                .await;
            match started {
                Some(Ok(StopwatchOutcome::Unavailable { reason, first })) => {
                    tracking_unavailable(rec, reason, first, errors)
                }
                Some(Ok(_)) | None => {}
                Some(Err(e)) => errors.add("start stopwatch", e),
            }
        }
    }
    RunClock {
        started_at: chrono::Utc::now(),
        started: std::time::Instant::now(),
    }
}

/// Records the time of agent run number `run` (the record's `runs`) on the issue,
/// per `[forge] time_tracking`:
///
/// - `times` (default): adds the run's duration as a tracked time of the token's
///   user, created at the run's start. Once per run: the job record's
///   `time_tracked` says which run was added last, and the client checks the forge
///   before retrying a failed request. Any number of jobs can do this at once.
/// - `stopwatch`: stops the issue's stopwatch. A stopwatch that is no longer
///   running (another job with the same token started one) is reported.
/// - `off`: nothing.
///
/// A repository without time tracking is noted once per worker, not on every job.
pub async fn track_time(
    ctx: &WorkerCtx,
    rec: &JobRecord,
    run: u32,
    clock: &RunClock,
    errors: &mut ForgeErrors,
) {
    let Some(f) = forge_for(ctx, rec) else {
        return;
    };
    let i = &rec.input;
    match ctx.cfg.forge.time_tracking {
        TimeTracking::Off => {}
        TimeTracking::Stopwatch => {
            let fc = errors.client(f);
            let stopped = errors
                .within(
                    "stop stopwatch",
                    fc.stop_stopwatch(&i.org, &i.repo, i.issue),
                )
                .await;
            stopped_stopwatch(rec, stopped, errors)
        }
        TimeTracking::Times => {
            match ctx.store.get(&rec.id).await {
                Ok(Some(now)) if now.time_tracked >= run => return,
                Ok(_) => {}
                Err(e) => {
                    errors.add("track time (read the job record)", e);
                    return;
                }
            }
            let time = AddTime {
                seconds: clock.seconds(),
                created: clock.started_at,
            };
            let fc = errors.client(f);
            let added = errors
                .within("track time", fc.add_time(&i.org, &i.repo, i.issue, &time))
                .await;
            match added {
                None => {}
                Some(Ok(TimeOutcome::Added(_) | TimeOutcome::AlreadyAdded(_))) => {
                    if let Err(e) = ctx
                        .store
                        .note(&rec.id, &agentq_shared::transition::Note::time_tracked(run))
                        .await
                    {
                        tracing::warn!(job = %rec.id, error = %e, "cannot record that the run's time was tracked");
                    }
                }
                Some(Ok(TimeOutcome::Unavailable { reason, first })) => {
                    tracking_unavailable(rec, reason, first, errors)
                }
                Some(Err(e)) => errors.add("track time", e),
            }
        }
    }
}

/// What stopping the stopwatch told, noted.
fn stopped_stopwatch(
    rec: &JobRecord,
    stopped: Option<Result<StopwatchOutcome, agentq_shared::forge::ForgeError>>,
    errors: &mut ForgeErrors,
) {
    match stopped {
        None => {}
        Some(Ok(StopwatchOutcome::NotRunning)) => errors.add(
            "stop stopwatch",
            "it was not running: another start with the same token stopped it \
                 (a forge keeps one stopwatch per user), so the time on the issue is short; \
                 use time_tracking = \"times\" when jobs run in parallel",
        ),
        Some(Ok(StopwatchOutcome::Unavailable { reason, first })) => {
            tracking_unavailable(rec, reason, first, errors)
        }
        Some(Ok(_)) => {}
        Some(Err(e)) => errors.add("stop stopwatch", e),
    }
}

fn tracking_unavailable(
    rec: &JobRecord,
    reason: TrackingUnavailable,
    first: bool,
    errors: &mut ForgeErrors,
) {
    if first {
        errors.note(format!(
            "time not tracked on {}/{}: {}; not asking again for a while",
            rec.input.org,
            rec.input.repo,
            reason.describe()
        ));
    }
}
