//! The write-back path of a completed run: its branch pushed beside QA on it
//! (a commit status around it), the pull request opened ([`qa_stage`]), then
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
};

use super::{
    commits::{save, ToSave},
    StageError,
};

/// The branch saved (pushed) beside QA of a completed run, then the pull
/// request. The push and QA go on at once: QA checks a commit of the worker
/// repository ([`crate::qa::target`]), known before the push lands. The
/// commit status goes on the pushed head once it is there and QA has begun
/// (`Pending`), and its final state once both are done; the pull request
/// after both. A QA failure fails the job; a push that fails lets QA run (a
/// forge error); a remote branch that moved fails the run, and QA's result
/// then counts for nothing (as if it never ran).
#[allow(clippy::too_many_arguments)]
pub(super) async fn qa_stage(
    run: &Run<'_>,
    agent: &AgentSpec,
    prepared: &Prepared,
    to_save: ToSave,
    outcome: &mut Outcome,
    stop: &watch::Receiver<StopReason>,
    forge: &mut ForgeErrors,
    held_qa: Option<crate::qa_held::HeldQa>,
) -> Result<(Option<QaResult>, Option<String>), StageError> {
    let (ctx, rec) = (run.ctx, run.rec);
    let completed = *outcome == Outcome::Completed;
    // QA's commit, once QA has begun (its transition made).
    let (began, qa_began) = tokio::sync::oneshot::channel::<String>();
    let push = async {
        let (saved, moved) = save(run, prepared, to_save, forge).await;
        if !completed || moved.is_some() {
            return (None, moved);
        }
        let pushed = report::pull_branch(ctx, rec, prepared, &saved, forge).await;
        // What is pushed is what is checked: the status goes on that commit
        // alone.
        if let Ok(commit) = qa_began.await {
            if let Some(p) = pushed.as_ref().filter(|p| p.sha == commit) {
                report::set_status(ctx, rec, p, CommitState::Pending, "QA running", forge).await;
            }
        }
        (pushed, moved)
    };
    let check = async {
        if !completed || !ctx.cfg.auto_qa {
            return Ok(None);
        }
        run.hold.go(Transition::qa()).await?;
        // QA runs on a clean checkout of the agent branch's head.
        let commit = crate::qa::target(prepared).await;
        let _ = began.send(commit.clone());
        let result = crate::qa::run(run, agent, prepared, &commit, stop.clone(), held_qa)
            .await
            .map_err(|e| StageError::Infra(e, Some(prepared.workspace.clone())))?;
        Ok::<_, StageError>(Some((commit, result)))
    };
    let ((pushed, moved), checked) = tokio::join!(push, check);
    if let Some(finding) = moved {
        *outcome = settle(outcome.clone(), finding);
        return Ok((None, None));
    }
    let mut qa = None;
    if let Some((commit, result)) = checked? {
        let result = match result {
            Ok(r) => r,
            Err(Ended::Interrupted) => return Err(StageError::Interrupted),
            Err(Ended::Fenced) => return Err(StageError::SelfFenced),
            Err(_) => QaResult::cancelled(),
        };
        if result.status == QaStatus::Failed {
            *outcome = settle(outcome.clone(), Finding::QaFailed(result.failure()));
        }
        if let Some(p) = pushed.as_ref().filter(|p| p.sha == commit) {
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
