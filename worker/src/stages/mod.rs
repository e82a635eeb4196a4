//! The stages of an admitted run, read top to bottom in [`stages`]:
//! prep → agent → commits → QA → report → record. Each stage returns a typed
//! value; what a run *means* is decided by the pure rules of
//! [`agentq_shared::outcome`], and every state change is a
//! [`Transition`].
//!
//! One module per stage: [`prep`] (output directory, workspace, the held
//! agent container), [`agent`] (the agent's run and what it means),
//! [`commits`] (taken in, and how they are saved to the remote), [`publish`]
//! (the branch pushed beside QA, the pull request opened: the write-back
//! path), and the report and record here.

mod agent;
mod commits;
mod prep;
mod publish;

use std::time::Duration;

use agentq_shared::{
    agent::AgentSpec,
    status::{JobState, StatusFile, WorkspaceStatus},
    summary::Summary,
    transition::{Outcome, RunReport, Transition},
    workspace::Workspace,
};
use tokio::sync::watch;

use crate::{
    guard::StopReason, hold::Fenced, prep::Prepared, qa::QaResult, report::ForgeErrors, run::Run,
};

use agent::agent_stage;
use commits::keep_commits;
use prep::{make_out_dir, prep, release, start_held};
use publish::{qa_stage, report_stage};

/// Why the stages stopped short of recording an outcome.
pub(crate) enum StageError {
    /// An infrastructure step failed; maybe with the workspace, if prep got that far.
    Infra(anyhow::Error, Option<Workspace>),
    /// The job itself cannot run (missing persona or plan): final, no retry.
    Job(String),
    /// The worker shut down before the job could finish: hand it back.
    Interrupted,
    /// The agent was stopped because the run lease could not be renewed: hand the
    /// job back if no other run took it.
    SelfFenced,
    /// A write was refused: another run owns the job. Record nothing more.
    Fenced,
    /// The stages panicked (a bug): the message. Retried as an infrastructure
    /// failure, so the attempt counts and the job ends after `max_attempts`.
    Panic(String),
    /// The agent stopped on its provider's usage limit (its output matched
    /// the pool's `limit_patterns`): the job waits for the reset, spending
    /// no attempt, and the pool pauses on every host.
    Quota(agentq_shared::quota::LimitHit),
}

impl From<Fenced> for StageError {
    fn from(_: Fenced) -> Self {
        StageError::Fenced
    }
}

/// What the agent stage left: how the run ended and the agent's exit code.
pub(super) struct AgentRun {
    pub(super) outcome: Outcome,
    pub(super) exit_code: Option<i64>,
    pub(super) take_commits: bool,
    /// How long the agent ran (fast failures pause the pool).
    pub(super) ran_for: Duration,
    /// The agent's tree went over its bounds: the agent's doing, never a
    /// sign of the provider's health (no pool backoff).
    pub(super) tree_over: bool,
    /// The agent's final message (see [`crate::summary`]).
    pub(super) summary: Summary,
    /// The run ended on the provider's usage limit (see [`crate::quota`]).
    pub(super) quota: Option<agentq_shared::quota::LimitHit>,
    /// What the watchdog read out after the agent (`--after`): the export
    /// (section 0) and the leftovers (section 1); empty without a watchdog.
    pub(super) after: Vec<crate::docker::Section>,
}

/// Runs the job's stages and records its outcome. `Ok` means the record says
/// how the job ended; errors say why it did not get that far.
pub(crate) async fn stages(
    run: &Run<'_>,
    agent: &AgentSpec,
    stop: watch::Receiver<StopReason>,
) -> Result<(), StageError> {
    let mut timer = StageTimer::start(&run.rec.id);
    // The run's output directory, fresh, before any container can mount it.
    make_out_dir(run).await?;
    // The agent's container starts, held, while the workspace is prepared:
    // Docker's start is the slow part of a run, and prep need not wait for it.
    // QA's container starts, held, as soon as the workspace is there, beside
    // the agent's start and run (`crate::qa_held`); dropped unused on any
    // way out that does not reach QA.
    let prep_then_qa = async {
        let prepared = prep(run).await;
        let held_qa = match &prepared {
            Ok(Some(p)) => crate::qa_held::start(run, agent, p),
            _ => None,
        };
        (prepared, held_qa)
    };
    let ((prepared, held_qa), held) = tokio::join!(prep_then_qa, start_held(run, agent));
    let mut held = held;
    let prepared = match prepared {
        Ok(Some(prepared)) => prepared,
        other => {
            release(run, held).await;
            // A dry run (`None`) is done.
            return other.map(|_| ());
        }
    };
    // Prep, and the agent container's start beside it.
    timer.done("prep");
    let mut forge = ForgeErrors::with_budget(Duration::from_secs(run.ctx.cfg.forge.timeout_secs));
    let runs = run.rec.runs + 1;
    let ran = agent_stage(run, agent, &prepared, runs, &stop, &mut forge, &mut held).await;
    release(run, held).await;
    let ran = ran?;
    timer.done("agent");
    let exit_code = ran.exit_code;
    let summary = ran.summary.clone();
    let quota = ran.quota.clone();
    let (mut outcome, to_save) = keep_commits(run, agent, &prepared, ran, &stop).await?;
    timer.done("commits");
    // A run stopped by its provider's limit is no outcome: its commits are
    // kept (above) and saved, and the job waits for the reset.
    if let Some(hit) = quota {
        commits::save(run, &prepared, to_save, &mut forge).await;
        let ws = &prepared.workspace;
        run.write_status(
            ws,
            &run.status(JobState::Waiting, runs, prepared.branch.clone()),
        );
        return Err(StageError::Quota(hit));
    }
    let (qa, pr_url) = qa_stage(
        run,
        agent,
        &prepared,
        to_save,
        &mut outcome,
        &stop,
        &mut forge,
        held_qa,
    )
    .await?;
    timer.done("qa");
    let verify = crate::verify::after_pull(
        run.ctx,
        run.rec,
        &prepared,
        &outcome,
        pr_url.as_deref(),
        forge.harvest.take(),
    )
    .await;
    report_stage(
        run,
        &prepared,
        &outcome,
        qa.as_ref(),
        pr_url.as_deref(),
        &summary,
        &mut forge,
    )
    .await?;
    let report = RunReport {
        exit_code,
        qa: qa.as_ref().map(QaResult::summary),
        pr_url,
        forge_error: forge.text(),
        verify,
    };
    timer.done("report");
    record(run, &prepared, runs, &outcome, &report, &summary).await?;
    // Queued only once the outcome it reports is the record's: a run that
    // turned into an infrastructure retry while recording reports nothing.
    if forge.redo_later() {
        forge.redo.runs = runs;
        crate::writeback::queue(run.ctx, &forge.redo).await;
    }
    timer.done("record");
    Ok(())
}

/// Logs how long each stage took (debug), to see where a run's time goes.
struct StageTimer<'a> {
    job: &'a str,
    at: std::time::Instant,
}

impl<'a> StageTimer<'a> {
    fn start(job: &'a str) -> Self {
        Self {
            job,
            at: std::time::Instant::now(),
        }
    }

    fn done(&mut self, stage: &'static str) {
        let ms = self.at.elapsed().as_millis() as u64;
        tracing::debug!(job = %self.job, stage, ms, "stage done");
        self.at = std::time::Instant::now();
    }
}

/// The outcome, written to the workspace's `status.json` (the seed's format:
/// its `question` holds the question or the failure reason) and to the record.
async fn record(
    run: &Run<'_>,
    prepared: &Prepared,
    runs: u32,
    outcome: &Outcome,
    report: &RunReport,
    summary: &Summary,
) -> Result<(), StageError> {
    let st = WorkspaceStatus {
        question: outcome.message().to_string(),
        exit_code: report.exit_code,
        qa: report.qa.clone(),
        pr_url: report.pr_url.clone().unwrap_or_default(),
        forge_error: report.forge_error.clone(),
        summary: summary.text.clone(),
        summary_note: summary.note.clone(),
        ..run.status(report.final_state(outcome), runs, prepared.branch.clone())
    };
    if let Err(e) = st.write_atomic(&prepared.workspace.status_file()) {
        // A disk that filled up failed the run, not the agent.
        if e.kind() == std::io::ErrorKind::StorageFull {
            return Err(StageError::Infra(
                anyhow::Error::new(e)
                    .context("the workspace file system is full: cannot write status.json"),
                Some(prepared.workspace.clone()),
            ));
        }
        tracing::warn!(job = %run.rec.id, error = %e, "cannot write status.json");
    }
    // Removed beside the commits' import and push: gone before the job is
    // said finished (see `crate::run::Removals`).
    run.removals.wait().await;
    run.hold.go(Transition::finished(outcome, report)).await?;
    tracing::info!(job = %run.rec.id, state = %outcome.state(), "job finished");
    Ok(())
}
