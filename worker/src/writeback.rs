//! Write-backs done again: a job whose forge write-back ran out of its budget
//! (or met a forge failing for now) finished anyway, with `forge_error` on its
//! record and what was left of the write-back ([`WriteBack`]) queued in Redis.
//! Every `forge.writeback_retry_secs` a worker takes the due ones and does
//! them, within a fresh budget each, holding no slot: the pull request found or
//! opened, the commit status set, the outcome comment posted or edited (found
//! by its marker), so doing one twice changes nothing. Only while the job's
//! record is final with the same run: a job purged or run again drops it.

use std::{sync::Arc, time::Duration};

use agentq_shared::forge::job_marker;

use crate::{
    context::WorkerCtx,
    report::{ForgeErrors, WriteBack},
};

/// Most write-backs one worker takes per round.
const PER_ROUND: usize = 20;

/// Queues `redo` (the job's remaining write-back) for the background task.
pub async fn queue(ctx: &WorkerCtx, redo: &WriteBack) {
    let json = match serde_json::to_string(redo) {
        Ok(j) => j,
        Err(e) => {
            tracing::warn!(job = %redo.job, error = %e, "cannot encode the write-back to do again");
            return;
        }
    };
    // Redis's clock, as every time shared between hosts: a worker whose clock
    // is behind could not claim what one ahead of it queued.
    let due = match ctx.store.redis_now_ms().await {
        Ok(now) => now + retry_every(ctx).as_millis() as i64,
        Err(e) => {
            tracing::warn!(job = %redo.job, error = %e, "cannot queue the write-back to do again");
            return;
        }
    };
    match ctx.store.queue_writeback(&redo.job, &json, due).await {
        Ok(()) => {
            tracing::info!(job = %redo.job, "forge write-back left for later (done in the background)")
        }
        Err(e) => {
            tracing::warn!(job = %redo.job, error = %e, "cannot queue the write-back to do again")
        }
    }
}

fn retry_every(ctx: &WorkerCtx) -> Duration {
    Duration::from_secs(ctx.cfg.forge.writeback_retry_secs.max(1))
}

/// Starts the background task (with a forge configured).
pub fn spawn(ctx: Arc<WorkerCtx>) {
    if ctx.forge.is_none() {
        return;
    }
    ctx.services
        .clone()
        .spawn_loop("writeback", |stop| async move {
            let every = retry_every(&ctx);
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while crate::services::tick(&mut tick, &stop).await {
                round(&ctx, every).await;
            }
        });
}

async fn round(ctx: &WorkerCtx, every: Duration) {
    let Ok(now) = ctx.store.redis_now_ms().await else {
        return;
    };
    // A taken one is due again a round later if this worker dies meanwhile.
    let next = now + 2 * every.as_millis() as i64;
    let due = match ctx.store.take_due_writebacks(now, next, PER_ROUND).await {
        Ok(d) => d,
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the write-backs to do again");
            return;
        }
    };
    for (id, json) in due {
        let Ok(mut wb) = serde_json::from_str::<WriteBack>(&json) else {
            tracing::warn!(job = %id, "unreadable write-back to do again; dropped");
            let _ = ctx.store.writeback_done(&id).await;
            continue;
        };
        // Only the write-back of the job's last run, once it is final: a purged
        // job, or one run again since, has nothing (or its own) to write back.
        match ctx.store.get(&id).await {
            Ok(Some(r)) if r.runs == wb.runs && r.state.is_final() => {}
            Ok(Some(r)) if r.runs == wb.runs => {
                // Its outcome is not recorded yet (or the run is being retried):
                // later (it is due again a round from now).
                continue;
            }
            Ok(_) => {
                tracing::info!(job = %id, "forge write-back dropped: the job was purged or has run again");
                let _ = ctx.store.writeback_done(&id).await;
                continue;
            }
            Err(e) => {
                tracing::debug!(job = %id, error = %e, "cannot read the job of a write-back; later");
                continue;
            }
        }
        if redo(ctx, &mut wb).await {
            tracing::info!(job = %id, "forge write-back done");
            let _ = ctx.store.writeback_done(&id).await;
        } else {
            // What is done stays done: keep only the rest.
            let json = serde_json::to_string(&wb).unwrap_or(json);
            let _ = ctx
                .store
                .queue_writeback(&id, &json, now + every.as_millis() as i64)
                .await;
        }
    }
}

/// Does what is left of `wb`; true when nothing is (done, or refused for good).
async fn redo(ctx: &WorkerCtx, wb: &mut WriteBack) -> bool {
    let Some(forge) = ctx.forge.as_ref() else {
        return false;
    };
    let mut errors =
        ForgeErrors::with_budget(Duration::from_secs(ctx.cfg.forge.timeout_secs.max(1)));
    let (org, repo) = (wb.org.clone(), wb.repo.clone());
    if let Some(pull) = wb.pull.clone() {
        if !redo_pull(forge, wb, &mut errors, pull).await {
            return false;
        }
    }
    if let Some((sha, status)) = wb.status.clone() {
        let fc = errors.client(forge);
        match errors
            .within(
                "set commit status",
                fc.create_status(&org, &repo, &sha, &status),
            )
            .await
        {
            Some(Ok(_)) => wb.status = None,
            Some(Err(e)) if !e.is_transient() => {
                tracing::warn!(job = %wb.job, error = %e, "forge refused the commit status; not tried again");
                wb.status = None;
            }
            _ => return false,
        }
    }
    if let Some(text) = wb.comment.clone() {
        if wb.issue > 0 {
            let body = text.body(wb.pr_url.as_deref());
            let marker = job_marker(&wb.job);
            let fc = errors.client(forge);
            match errors
                .within(
                    "comment on issue",
                    fc.upsert_comment(&org, &repo, wb.issue, &marker, &body),
                )
                .await
            {
                Some(Ok(_)) => {}
                Some(Err(e)) if !e.is_transient() => {
                    tracing::warn!(job = %wb.job, error = %e, "forge refused the outcome comment; not tried again");
                }
                _ => return false,
            }
        }
        wb.comment = None;
    }
    true
}

/// Finds or opens the pull request of `wb` (its base looked up first if
/// unknown); false when the forge should be asked again later.
async fn redo_pull(
    forge: &agentq_shared::forge::ForgeClient,
    wb: &mut WriteBack,
    errors: &mut ForgeErrors,
    mut pull: agentq_shared::forge::CreatePull,
) -> bool {
    let (org, repo) = (wb.org.clone(), wb.repo.clone());
    if pull.base.is_empty() {
        let fc = errors.client(forge);
        match errors
            .within("read repository", fc.get_repo(&org, &repo))
            .await
        {
            Some(Ok(r)) if !r.default_branch.is_empty() => pull.base = r.default_branch,
            Some(Ok(_)) => pull.base = "main".into(),
            Some(Err(e)) if !e.is_transient() => {
                tracing::warn!(job = %wb.job, error = %e, "forge refused the repository; no pull request");
                wb.pull = None;
                return true;
            }
            _ => return false,
        }
        wb.pull = Some(pull.clone());
    }
    let fc = errors.client(forge);
    match errors
        .within(
            "open pull request",
            fc.find_or_create_pull(&org, &repo, &pull),
        )
        .await
    {
        Some(Ok((pr, _))) => {
            wb.pr_url = Some(pr.html_url);
            wb.pull = None;
        }
        Some(Err(e)) if !e.is_transient() => {
            tracing::warn!(job = %wb.job, error = %e, "forge refused the pull request; not tried again");
            wb.pull = None;
        }
        _ => return false,
    }
    true
}
