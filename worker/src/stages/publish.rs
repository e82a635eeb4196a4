//! The write-back path of a completed run: its branch pushed, QA on it (a
//! commit status around it), the pull request opened ([`qa_stage`]), then
//! the outcome told on the issue ([`report_stage`]).

use agentq_shared::{
    agent::AgentSpec,
    forge::CommitState,
    outcome::{settle, Ended, Finding},
    status::{QaStatus, QaSummary},
    summary::Summary,
    transition::{Outcome, Transition},
};
use tokio::sync::watch;

use crate::{
    guard::StopReason,
    prep::Prepared,
    qa::QaResult,
    report::{self, ForgeErrors},
    run::Run,
    save::Saved,
};

use super::StageError;

/// QA of a completed run, with the branch pushed first so its head can carry a
/// commit status; then the pull request. A QA failure fails the job.
#[allow(clippy::too_many_arguments)]
pub(super) async fn qa_stage(
    run: &Run<'_>,
    agent: &AgentSpec,
    prepared: &Prepared,
    saved: &Saved,
    outcome: &mut Outcome,
    stop: &watch::Receiver<StopReason>,
    forge: &mut ForgeErrors,
    held_qa: Option<crate::qa_held::HeldQa>,
) -> Result<(Option<QaResult>, Option<String>), StageError> {
    let (ctx, rec) = (run.ctx, run.rec);
    if *outcome != Outcome::Completed {
        return Ok((None, None));
    }
    let pushed = report::pull_branch(ctx, rec, prepared, saved, forge).await;
    let mut qa = None;
    if ctx.cfg.auto_qa {
        run.hold.go(Transition::qa()).await?;
        // What is pushed is what is checked: QA runs on a clean checkout of the
        // agent branch's head, and the status goes on that commit alone.
        let commit = crate::qa::target(prepared).await;
        let status_on = pushed.as_ref().filter(|p| p.sha == commit);
        if let Some(p) = status_on {
            report::set_status(ctx, rec, p, CommitState::Pending, "QA running", forge).await;
        }
        let result = crate::qa::run(run, agent, prepared, &commit, stop.clone(), held_qa)
            .await
            .map_err(|e| StageError::Infra(e, Some(prepared.workspace.clone())))?;
        let result = match result {
            Ok(r) => r,
            Err(Ended::Interrupted) => return Err(StageError::Interrupted),
            Err(Ended::Fenced) => return Err(StageError::SelfFenced),
            Err(_) => QaResult::cancelled(),
        };
        if result.status == QaStatus::Failed {
            *outcome = settle(outcome.clone(), Finding::QaFailed(result.failure()));
        }
        if let Some(p) = status_on {
            let (st, desc) = match result.status {
                QaStatus::Failed => (CommitState::Failure, result.failure()),
                QaStatus::Passed => (CommitState::Success, "QA passed".to_string()),
                QaStatus::Skipped => (
                    CommitState::Success,
                    "QA skipped: nothing to build or test".to_string(),
                ),
            };
            report::set_status(ctx, rec, p, st, &desc, forge).await;
        }
        qa = Some(result);
    }
    let mut pr_url = None;
    if let Some(p) = &pushed {
        if *outcome == Outcome::Completed || ctx.cfg.forge.pr_on_qa_failure {
            pr_url = report::open_pull(ctx, rec, prepared, p, forge).await;
        }
    }
    // The pull request is open (or was not wanted): the verify stage
    // (`crate::verify::after_pull`) follows it in `stages`.
    Ok((qa, pr_url))
}

/// The outcome, told on the job's issue.
pub(super) async fn report_stage(
    run: &Run<'_>,
    prepared: &Prepared,
    outcome: &Outcome,
    qa: Option<&QaResult>,
    pr_url: Option<&str>,
    summary: &Summary,
    forge: &mut ForgeErrors,
) -> Result<(), StageError> {
    let (ctx, rec) = (run.ctx, run.rec);
    if rec.input.issue == 0 || ctx.forge.is_none() {
        return Ok(());
    }
    run.hold.go(Transition::reporting()).await?;
    let comment = report::Comment {
        outcome,
        qa,
        pr_url,
        branch: &prepared.branch,
        summary: &summary.text,
    };
    report::comment(ctx, rec, &comment, forge).await;
    Ok(())
}

impl QaResult {
    /// `status.json`'s and the record's form of the result.
    pub(crate) fn summary(&self) -> QaSummary {
        QaSummary {
            status: self.status,
            command: self.command.clone(),
            output_tail: self.output_tail.clone(),
        }
    }

    /// QA stopped by a cancel.
    fn cancelled() -> Self {
        QaResult {
            status: QaStatus::Failed,
            command: String::new(),
            detail: "cancelled".into(),
            output_tail: String::new(),
        }
    }
}
