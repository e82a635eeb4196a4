//! `agentq verify ID`: the verify stage again, by hand, for a `completed` job
//! with a pull request (after a person fixed its checks, say). The command
//! queues the job in `{ns}:verify`; a worker's background task takes it and
//! runs the same steps as [`super::after_pull`] with auto-merge on. A merge
//! that may have gone through already is looked up first (the forge client's
//! merge reads the pull request before it merges). Merged: the job moves to
//! `merged` (only if its record did not change meanwhile); else the pull
//! request is flagged again and the record's `verify_reason` says why.

use std::{sync::Arc, time::Duration};

use agentq_shared::{status::JobState, verify::Verify, workspace::Workspace};

use super::{conclude, pr_number, settings_for, Target};
use crate::context::WorkerCtx;

/// How often a worker looks for requests though none was published: a
/// safety net for a lost publish (a request wakes the workers at once, on
/// `{ns}:verify-wake`, see [`crate::waker`]).
const EVERY: Duration = Duration::from_secs(60);

/// Starts the background task (with a forge configured).
pub fn spawn(ctx: Arc<WorkerCtx>) {
    if ctx.forge.is_none() {
        return;
    }
    ctx.services
        .clone()
        .spawn_loop("verify", |stop| async move {
            let mut tick = tokio::time::interval(EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {}
                    _ = ctx.wakes.verify.notified() => {}
                }
                let ids = match ctx.store.take_verify_requests(4).await {
                    Ok(ids) => ids,
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot read verify requests");
                        continue;
                    }
                };
                let full = ids.len() == 4;
                for id in ids {
                    once(&ctx, &id).await;
                }
                let branches = ctx.store.take_branch_cleanups(8).await.unwrap_or_default();
                if full || branches.len() == 8 {
                    // More may wait: the next round at once.
                    ctx.wakes.verify.notify_one();
                }
                for entry in branches {
                    clean_branch(&ctx, &entry).await;
                }
            }
        });
}

/// Verifies job `id` again.
async fn once(ctx: &WorkerCtx, id: &str) {
    let rec = match ctx.store.get(id).await {
        Ok(Some(r)) if r.state == JobState::Completed && !r.pr_url.is_empty() => r,
        Ok(_) => {
            tracing::info!(job = %id, "verify request dropped: not a completed job with a pull request");
            return;
        }
        Err(e) => {
            tracing::warn!(job = %id, error = %e, "cannot read the job to verify");
            return;
        }
    };
    let Some(index) = pr_number(&rec.pr_url) else {
        return;
    };
    let repo_dir = Workspace::for_input(&crate::prep::workspace_root(&ctx.cfg, &rec), &rec.input)
        .ok()
        .map(|ws| ws.worker_repo())
        .filter(|d| d.is_dir());
    let mut settings = settings_for(ctx, &rec);
    settings.auto_merge = true;
    let target = Target {
        rec: &rec,
        index,
        repo_dir,
        branch: rec.branch.clone(),
        settings,
    };
    let (verify, reason) = conclude(ctx, &target).await;
    let state = match verify {
        Verify::Merged => JobState::Merged,
        Verify::NeedsReview => JobState::Completed,
    };
    let fields = [("verify", verify.to_string()), ("verify_reason", reason)];
    match ctx
        .store
        .transition(id, state, Some(rec.seq), &fields)
        .await
    {
        Ok(true) => tracing::info!(job = %id, %state, "verified again"),
        Ok(false) => {
            tracing::info!(job = %id, "the job changed while it was verified; not recorded")
        }
        Err(e) => tracing::warn!(job = %id, error = %e, "cannot record the verify"),
    }
}

/// Deletes a purged job's agent branch if its pull request was closed
/// without a merge (see `agentq purge`); an open or merged one's is left.
async fn clean_branch(ctx: &WorkerCtx, entry: &str) {
    #[derive(serde::Deserialize)]
    struct Entry {
        org: String,
        repo: String,
        branch: String,
        pr_url: String,
    }
    let Ok(e) = serde_json::from_str::<Entry>(entry) else {
        return;
    };
    let (Some(forge), Some(index)) = (ctx.forge.as_ref(), pr_number(&e.pr_url)) else {
        return;
    };
    match forge.get_pull(&e.org, &e.repo, index).await {
        Ok(pr) if pr.state == agentq_shared::forge::IssueState::Closed && !pr.merged => {
            match forge.delete_branch(&e.org, &e.repo, &e.branch).await {
                Ok(_) => {
                    tracing::info!(branch = %e.branch, "purged job's branch deleted (pull request closed without a merge)")
                }
                Err(err) => {
                    tracing::warn!(branch = %e.branch, error = %err, "cannot delete a purged job's branch")
                }
            }
        }
        Ok(_) => {}
        Err(err) => {
            tracing::warn!(branch = %e.branch, error = %err, "cannot read a purged job's pull request")
        }
    }
}
