//! The verify stage, after the pull request is open and QA passed (upstream
//! `pkg/agentic/verify.go`, `autoVerifyAndMerge`): wait for the head's
//! combined commit status (agentq's own `agentq/qa` and any CI the forge
//! runs) for at most `verify_timeout_secs`; when auto-merge is on, merge
//! through the forge's merge API; if the forge refuses because the base
//! moved, rebase the agent branch once in the worker-owned repository, push
//! it with the compare-and-swap, wait for the checks again and merge. Merged:
//! the job ends `merged` and its branch is deleted. Anything else: the pull
//! request is labelled `needs-review` with a comment saying why, and the job
//! ends `completed` with `verify = needs_review`.
//!
//! [`after_pull`] is the stage inside a run; [`again`] runs it by hand
//! (`agentq verify ID`). What to do at each answer is decided in [`decide`].

pub mod again;
pub mod decide;
pub mod harvest;
pub mod rebase;
pub mod review;

use std::{path::PathBuf, time::Duration};

use agentq_shared::{
    forge::{MergePull, MergeStyle},
    record::JobRecord,
    transition::Outcome,
    verify::{MergeStyleConf, Verify, VerifyFor},
};

use self::decide::{after_checks, after_merge, after_rebase, read_checks, Review, Step};
use crate::{context::WorkerCtx, prep::Prepared};

/// What a run records of the verify stage: `None` when it did not run.
pub type Verified = Option<(Verify, String)>;

/// The verify stage of a run: after harvest refused the branch (`harvest`:
/// why), or after the pull request `pr_url` of a completed job whose pool
/// merges automatically.
pub(crate) async fn after_pull(
    ctx: &WorkerCtx,
    rec: &JobRecord,
    prepared: &Prepared,
    outcome: &Outcome,
    pr_url: Option<&str>,
    harvest: Option<String>,
) -> Verified {
    if let Some(why) = harvest {
        let why = Review::Harvest(why);
        review::event(ctx, &rec.id, &why).await;
        return Some((Verify::NeedsReview, why.reason()));
    }
    let settings = settings_for(ctx, rec);
    let (Outcome::Completed, Some(url), true) = (outcome, pr_url, settings.auto_merge) else {
        return None;
    };
    let index = pr_number(url)?;
    let target = Target {
        rec,
        index,
        repo_dir: Some(prepared.workspace.worker_repo()),
        branch: prepared.branch.clone(),
        settings,
    };
    // Boxed: a run's future stays small.
    Some(Box::pin(conclude(ctx, &target)).await)
}

/// Verifies and merges, or flags: the record's `verify` and its reason.
pub(crate) async fn conclude(ctx: &WorkerCtx, t: &Target<'_>) -> (Verify, String) {
    match verify_pull(ctx, t).await {
        Ok(()) => {
            tracing::info!(job = %t.rec.id, pull = t.index, "pull request merged");
            (Verify::Merged, String::new())
        }
        Err(why) => {
            tracing::info!(job = %t.rec.id, pull = t.index, reason = %why.reason(), "pull request needs review");
            review::flag(ctx, t.rec, t.index, &why).await;
            (Verify::NeedsReview, why.reason())
        }
    }
}

/// The values for the job's pool.
pub(crate) fn settings_for(ctx: &WorkerCtx, rec: &JobRecord) -> VerifyFor {
    let pool = rec.input.agent.split(':').next().unwrap_or_default();
    ctx.cfg.verify.for_job(pool, rec.input.auto_merge)
}

/// A pull request's number from its web URL (`…/pulls/7`), as upstream's
/// `extractPRNumber`.
pub fn pr_number(url: &str) -> Option<u64> {
    url.trim_end_matches('/')
        .rsplit('/')
        .next()?
        .parse()
        .ok()
        .filter(|n| *n > 0)
}

/// What one verify is about.
pub(crate) struct Target<'a> {
    /// The job.
    pub rec: &'a JobRecord,
    /// Its pull request.
    pub index: u64,
    /// The worker-owned repository, when this host has the workspace.
    pub repo_dir: Option<PathBuf>,
    /// The agent branch.
    pub branch: String,
    /// The pool's values.
    pub settings: VerifyFor,
}

fn style(s: MergeStyleConf) -> MergeStyle {
    match s {
        MergeStyleConf::Merge => MergeStyle::Merge,
        MergeStyleConf::Rebase => MergeStyle::Rebase,
        MergeStyleConf::Squash => MergeStyle::Squash,
    }
}

/// `Ok` once merged (now or before); else why a person must look.
async fn verify_pull(ctx: &WorkerCtx, t: &Target<'_>) -> Result<(), Review> {
    let trouble = |e: agentq_shared::forge::ForgeError| Review::Trouble(e.to_string());
    let forge = ctx
        .forge
        .as_ref()
        .ok_or_else(|| Review::Trouble("no forge is configured".into()))?;
    let (o, r) = (t.rec.input.org.as_str(), t.rec.input.repo.as_str());
    let cfg = &ctx.cfg.verify;
    let timeout = Duration::from_secs(cfg.verify_timeout_secs);
    let poll = Duration::from_millis(cfg.poll_ms.max(50));
    let mut rebased = false;
    let mut until = tokio::time::Instant::now() + timeout;
    loop {
        let pr = forge.get_pull(o, r, t.index).await.map_err(trouble)?;
        if pr.merged {
            cleanup(ctx, t).await;
            return Ok(());
        }
        if pr.state == agentq_shared::forge::IssueState::Closed {
            return Err(Review::Closed);
        }
        let step = loop {
            let c = forge
                .combined_status(o, r, &pr.head.sha)
                .await
                .map_err(trouble)?;
            let left = tokio::time::Instant::now() < until;
            match after_checks(read_checks(&c), left, cfg.verify_timeout_secs) {
                Step::Wait => tokio::time::sleep(poll).await,
                step => break step,
            }
        };
        match step {
            Step::Merge => {}
            Step::NeedsReview(why) => return Err(why),
            other => return Err(Review::Trouble(format!("unexpected step {other:?}"))),
        }
        let merge = MergePull {
            style: style(t.settings.merge_style),
            message: format!(
                "Merged by agentq after verification (job {}).\n\nCo-Authored-By: {} <{}>",
                t.rec.id, ctx.cfg.docker.git_user_name, ctx.cfg.docker.git_user_email
            ),
            delete_branch_after_merge: cfg.delete_branch_after_merge,
            head_commit_id: pr.head.sha.clone(),
        };
        let answer = forge
            .merge_pull(o, r, t.index, &merge)
            .await
            .map_err(trouble)?;
        match after_merge(answer, rebased) {
            Step::Merged => {
                cleanup(ctx, t).await;
                return Ok(());
            }
            Step::Rebase(refused) => {
                let base = pr.base.branch().to_string();
                let done = match &t.repo_dir {
                    Some(dir) if dir.is_dir() => {
                        rebase::onto_base(ctx, t.rec, dir, &t.branch, &base, &pr.head.sha).await
                    }
                    _ => decide::Rebased::Failed("the job's workspace is not on this host".into()),
                };
                match after_rebase(done, &refused, &base) {
                    Step::Merge => {
                        rebased = true;
                        until = tokio::time::Instant::now() + timeout;
                    }
                    Step::NeedsReview(why) => return Err(why),
                    other => return Err(Review::Trouble(format!("unexpected step {other:?}"))),
                }
            }
            Step::NeedsReview(why) => return Err(why),
            other => return Err(Review::Trouble(format!("unexpected step {other:?}"))),
        }
    }
}

/// A merged branch goes from the forge (Forgejo deletes it with
/// `delete_branch_after_merge`; asked again in case the merge was an earlier
/// one) and from the shared remote when that is elsewhere.
async fn cleanup(ctx: &WorkerCtx, t: &Target<'_>) {
    if !ctx.cfg.verify.delete_branch_after_merge {
        return;
    }
    let (o, r) = (&t.rec.input.org, &t.rec.input.repo);
    if let Some(forge) = ctx.forge.as_ref() {
        if let Err(e) = forge.delete_branch(o, r, &t.branch).await {
            tracing::warn!(job = %t.rec.id, error = %e, "cannot delete the merged branch on the forge");
        }
    }
    let url = crate::prep::clone_url(&ctx.cfg, &t.rec.input);
    let on_forge =
        !ctx.cfg.forge.url.is_empty() && url.starts_with(ctx.cfg.forge.url.trim_end_matches('/'));
    if let (false, Some(dir)) = (on_forge, &t.repo_dir) {
        let gone = format!(":refs/heads/{}", t.branch);
        let creds = crate::git::Credentials::for_url(&ctx.cfg, &url)
            .ok()
            .flatten();
        if let Err(e) =
            crate::git::git_with(dir, &["push", "--quiet", "--", &url, &gone], creds.as_ref()).await
        {
            tracing::warn!(job = %t.rec.id, error = %e, "cannot delete the merged branch on the shared remote");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pull_numbers_come_from_the_url() {
        assert_eq!(super::pr_number("http://f/acme/w/pulls/7"), Some(7));
        assert_eq!(super::pr_number("http://f/acme/w/pulls/7/"), Some(7));
        assert_eq!(super::pr_number("http://f/acme/w/pulls/x"), None);
    }
}
