//! The stages of an admitted run, read top to bottom in [`stages`]:
//! prep → agent → commits → QA → report → record. Each stage returns a typed
//! value; what a run *means* is decided by the pure rules of
//! [`agentq_shared::outcome`], and every state change is a
//! [`Transition`].

use std::time::Duration;

use agentq_shared::{
    agent::AgentSpec,
    container::{agent_container, encode_argv, held, GO_FILE},
    forge::CommitState,
    outcome::{decide_outcome, settle, Ended, Finding, RunOutcome},
    status::{read_blocked, JobState, QaStatus, QaSummary, StatusFile, WorkspaceStatus},
    summary::Summary,
    transition::{Note, Outcome, RunReport, Transition},
    workspace::Workspace,
};
use tokio::sync::watch;

use crate::{
    docker,
    guard::StopReason,
    hold::Fenced,
    import::{import_commits, ImportError},
    prep::{prepare, PrepError, Prepared},
    qa::QaResult,
    report::{self, ForgeErrors},
    run::{Run, RunDirs},
    save::{save_branch, SaveError, Saved},
};

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
struct AgentRun {
    outcome: Outcome,
    exit_code: Option<i64>,
    take_commits: bool,
    /// How long the agent ran (fast failures pause the pool).
    ran_for: Duration,
    /// The agent's tree went over its bounds: the agent's doing, never a
    /// sign of the provider's health (no pool backoff).
    tree_over: bool,
    /// The agent's final message (see [`crate::summary`]).
    summary: Summary,
    /// The run ended on the provider's usage limit (see [`crate::quota`]).
    quota: Option<agentq_shared::quota::LimitHit>,
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
    let (prepared, held) = tokio::join!(prep(run), start_held(run, agent));
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
    let (mut outcome, saved) = keep_commits(run, agent, &prepared, ran, &stop, &mut forge).await?;
    timer.done("commits");
    // A run stopped by its provider's limit is no outcome: its commits are
    // kept (above), and the job waits for the reset.
    if let Some(hit) = quota {
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
        &saved,
        &mut outcome,
        &stop,
        &mut forge,
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

/// Makes the run's output directory fresh and empty (see
/// [`crate::summary`]); nothing for a dry run, which runs no agent.
async fn make_out_dir(run: &Run<'_>) -> Result<(), StageError> {
    let (ctx, rec) = (run.ctx, run.rec);
    if rec.input.dry_run {
        return Ok(());
    }
    // A workspace path that escapes its root is refused by prep, saying so.
    let Ok(ws) = Workspace::for_input(&ctx.cfg.workspace_root, &rec.input) else {
        return Ok(());
    };
    let ids = ctx.agent_ids();
    tokio::task::spawn_blocking(move || crate::summary::make_out_dir(&ws, ids))
        .await
        .map_err(anyhow::Error::new)
        .and_then(|made| made.map(|_| ()).map_err(anyhow::Error::new))
        .map_err(|e| StageError::Infra(e.context("cannot make the agent's output directory"), None))
}

/// Prep: the workspace, branch and prompt. `None` for a dry run, which is
/// recorded as done here (its throwaway copy removed, whatever prep did).
async fn prep(run: &Run<'_>) -> Result<Option<Prepared>, StageError> {
    let (ctx, rec) = (run.ctx, run.rec);
    crate::fault::panic_at("prep");
    let issue = crate::forge::issue_for_prompt(ctx, &rec.input).await;
    let prepared = prepare(&ctx.cfg, rec, issue, ctx.agent_ids()).await;
    if rec.input.dry_run {
        let root = crate::prep::workspace_root(&ctx.cfg, rec);
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(root)).await;
    }
    let prepared = prepared.map_err(|e| match e {
        PrepError::Job(m) => StageError::Job(m),
        PrepError::Infra(e) => StageError::Infra(e, None),
    })?;
    if rec.input.dry_run {
        run.hold
            .go(Transition::dry_run_done(&prepared.branch, &prepared.prompt))
            .await?;
        return Ok(None);
    }
    run.hold
        .note(&Note::prepared(
            &prepared.workspace.dir.to_string_lossy(),
            &prepared.branch,
            prepared.resumed,
        ))
        .await?;
    Ok(Some(prepared))
}

/// An agent container started before its command was known (see
/// [`agentq_shared::container::held`]): it runs the command once `go` exists.
struct HeldAgent {
    started: docker::Started,
    go: std::path::PathBuf,
}

/// Starts the run's agent container, held, so that Docker starts it while the
/// workspace is prepared. `None` for a dry run, without a watchdog (nothing to
/// hold it), or when Docker fails: the agent stage then starts the container
/// once its command is known, as it would anyway, and meets the error there.
async fn start_held(run: &Run<'_>, agent: &AgentSpec) -> Option<HeldAgent> {
    let (ctx, rec) = (run.ctx, run.rec);
    let beat = run.beat?;
    if rec.input.dry_run {
        return None;
    }
    let ws = Workspace::for_input(&crate::prep::workspace_root(&ctx.cfg, rec), &rec.input).ok()?;
    if let Err(e) = crate::prep::make_mount_dirs(&ws) {
        tracing::debug!(job = %rec.id, error = %e, "cannot make the workspace's directories ahead of prep");
        return None;
    }
    let dirs = RunDirs::of(&ws);
    let job = run.container_job(agent, "", &dirs);
    let body = held(agent_container(&ctx.cfg, &job, |k| std::env::var(k).ok()))?;
    match docker::start(
        &ctx.docker,
        &run.agent_container_name(),
        body,
        note_container(run),
    )
    .await
    {
        Ok(started) => Some(HeldAgent {
            started,
            go: beat.dir().join(GO_FILE),
        }),
        Err(e) => {
            tracing::debug!(job = %rec.id, error = %e, "cannot start the agent's container ahead of prep");
            None
        }
    }
}

/// What [`docker::start`] calls with each container it creates: the id goes on
/// the record at once (without holding the start up).
fn note_container<'r>(run: &Run<'r>) -> impl Fn(&str) + 'r {
    let hold = run.hold.clone();
    let helpers = run.helpers;
    move |cid| {
        let (cid, hold) = (cid.to_string(), hold.clone());
        helpers.spawn(async move {
            let _ = hold.note(&Note::container(&cid)).await;
        });
    }
}

/// Removes a held container that was never given its command.
async fn release(run: &Run<'_>, held: Option<HeldAgent>) {
    if let Some(h) = held {
        docker::remove(&run.ctx.docker, &h.started.id).await;
    }
}

/// The agent runs in its container (time tracked on the forge around it), and
/// the outcome rules say what its run means.
async fn agent_stage(
    run: &Run<'_>,
    agent: &AgentSpec,
    prepared: &Prepared,
    runs: u32,
    stop: &watch::Receiver<StopReason>,
    forge: &mut ForgeErrors,
    held: &mut Option<HeldAgent>,
) -> Result<AgentRun, StageError> {
    let (ctx, rec) = (run.ctx, run.rec);
    let ws = &prepared.workspace;
    run.write_status(
        ws,
        &run.status(JobState::Running, runs, prepared.branch.clone()),
    );
    let dirs = RunDirs::of(ws);
    let cut =
        agentq_shared::container::prompt_cut(&run.container_job(agent, &prepared.prompt, &dirs))
            .map(|c| c.describe())
            .unwrap_or_default();
    if !cut.is_empty() {
        tracing::info!(job = %rec.id, "{cut}");
    }
    run.hold
        .go(Transition::running(runs, &prepared.prompt, &cut))
        .await?;
    match *stop.borrow() {
        StopReason::Shutdown | StopReason::StopNow => return Err(StageError::Interrupted),
        StopReason::Fenced => return Err(StageError::SelfFenced),
        _ => {}
    }
    crate::fault::panic_at("agent");
    let clock = report::start_timer(ctx, rec, forge).await;
    // The working tree is the agent's from here on: the guard measures it.
    run.tree_arm.arm();
    let opened = ctx.breaker.times_opened();
    let began = std::time::Instant::now();
    let ended = run_agent(run, agent, prepared, stop.clone(), held.take()).await;
    run.tree_arm.disarm();
    let ran_for = began.elapsed();
    report::track_time(ctx, rec, runs, &clock, forge).await;
    let ended = match ended {
        Ok(ended) => ended,
        Err(e) => {
            crate::summary::discard(&rec.id, ws).await;
            return Err(StageError::Infra(e, Some(ws.clone())));
        }
    };

    // From here on the working tree is the agent's: it is read only through
    // `read_blocked` (no links, no FIFOs, capped) and the export container.
    // Its output directory counts with it against the same bounds.
    let bounds = ctx.cfg.tree_bounds();
    let over = match &ended {
        Ended::Exited(_) | Ended::TimedOut if bounds.any() => {
            let (repo, out) = (ws.repo_dir(), ws.agent_out_dir());
            tokio::task::spawn_blocking(move || {
                agentq_shared::fsutil::trees_over(&[&repo, &out], &bounds)
            })
            .await
            .ok()
            .flatten()
        }
        _ => None,
    };
    // The agent's final message, read as data; its directory goes with it.
    let summary = crate::summary::take_summary(&rec.id, ws).await;
    let recorded = !matches!(ended, Ended::Interrupted | Ended::Fenced);
    if recorded && (!summary.text.is_empty() || !summary.note.is_empty()) {
        run.hold.note(&Note::summary(&summary)).await?;
    }
    // A failed run whose cause the agent cannot have made (a disk that filled
    // while its tree stayed within bounds, a host that degraded meanwhile) is
    // the host's failure: retried, no pool backoff.
    let tree_over = over.is_some() || matches!(ended, Ended::WorkspaceOver(_));
    let failed = matches!(ended, Ended::Exited(c) if c != 0) || ended == Ended::TimedOut;
    let end = agentq_shared::outcome::RunEnd {
        failed,
        tree_over,
        free: if failed && !tree_over {
            crate::space::free_bytes(&ctx.cfg.workspace_root)
        } else {
            None
        },
        floor: ctx.cfg.min_free_bytes(),
        degraded_meanwhile: (ctx.breaker.times_opened() != opened)
            .then(|| ctx.breaker.degraded().map(|(w, _)| w).unwrap_or_default()),
    };
    if let Some(why) = agentq_shared::outcome::host_failure(&end) {
        return Err(StageError::Infra(anyhow::anyhow!(why), Some(ws.clone())));
    }
    let repo = ws.repo_dir();
    match decide_outcome(
        &ended,
        over.as_ref(),
        || read_blocked(&repo),
        ctx.cfg.timeout_for(agent.pool()),
    ) {
        RunOutcome::Ended {
            outcome,
            exit_code,
            take_commits,
        } => Ok(AgentRun {
            // Only a failed run (a question in BLOCKED.md stands).
            quota: match ended {
                Ended::Exited(code)
                    if code != 0 && !tree_over && outcome.state() == JobState::Failed =>
                {
                    crate::quota::limit_hit(ctx, agent, &ws.agent_log(agent.pool()))
                }
                _ => None,
            },
            outcome: why_not_started(outcome, exit_code, &ws.agent_log(agent.pool())),
            exit_code,
            take_commits,
            ran_for,
            tree_over,
            summary,
        }),
        RunOutcome::Interrupted => Err(StageError::Interrupted),
        RunOutcome::SelfFenced => Err(StageError::SelfFenced),
    }
}

/// An agent that could not start (exit 126 or 127 from the watchdog): the
/// failure says why, from the watchdog's line at the start of the agent's
/// log ("cannot run \"gemini\": Argument list too long ... over the 128 KiB
/// the kernel allows in one argument"), not only the exit code.
fn why_not_started(outcome: Outcome, exit_code: Option<i64>, log: &std::path::Path) -> Outcome {
    if !matches!(exit_code, Some(126 | 127)) || outcome.state() != JobState::Failed {
        return outcome;
    }
    // The worker's own file: its first 16 KiB.
    let mut head = Vec::new();
    let read = std::fs::File::open(log).and_then(|f| {
        std::io::Read::read_to_end(&mut std::io::Read::take(f, 16 * 1024), &mut head)
    });
    if read.is_err() {
        return outcome;
    }
    match watchdog_start_error(&String::from_utf8_lossy(&head)) {
        Some(why) => Outcome::fail(format!("{}: {why}", outcome.message())),
        None => outcome,
    }
}

/// The watchdog's "cannot run" or "cannot open" line in the start of a log.
fn watchdog_start_error(log_head: &str) -> Option<String> {
    log_head
        .lines()
        .find(|l| {
            l.starts_with("agentq-watchdog: cannot run ")
                || l.starts_with("agentq-watchdog: cannot open ")
        })
        .map(|l| agentq_shared::text::cut(l.trim(), 600))
}

/// The agent's commits, taken as data into the worker repository and saved to
/// the shared remote (so any host can carry on from them); the pool's backoff
/// told how the run went. Nothing leaves from a run that lost its job.
async fn keep_commits(
    run: &Run<'_>,
    agent: &AgentSpec,
    prepared: &Prepared,
    ran: AgentRun,
    stop: &watch::Receiver<StopReason>,
    forge: &mut ForgeErrors,
) -> Result<(Outcome, Saved), StageError> {
    let (ctx, rec) = (run.ctx, run.rec);
    let AgentRun {
        mut outcome,
        take_commits,
        ran_for,
        tree_over,
        quota,
        ..
    } = ran;
    let ws = &prepared.workspace;
    // Fast failures of a pool are a sign of rate limits: pause it on every host.
    // Only the agent's own run counts: commits refused afterwards (a history
    // rewrite, a bad object, a tree that stalls the export) say nothing of the
    // pool's health, and an agent could pause a pool fleet-wide with them.
    // Nor does a tree over its bounds: the agent made it, whatever it exited.
    let failed = outcome.state() == JobState::Failed && !tree_over;
    if take_commits {
        let imported = match import_commits(run, agent, prepared).await {
            Ok(imported) => {
                tracing::debug!(job = %rec.id, ?imported, "agent commits imported");
                true
            }
            Err(ImportError::Infra(e)) => return Err(StageError::Infra(e, Some(ws.clone()))),
            Err(e @ ImportError::Refused(_)) => {
                tracing::warn!(job = %rec.id, error = %e, "agent commits refused");
                outcome = settle(outcome, Finding::CommitsRefused(e.to_string()));
                false
            }
        };
        // What the agent did not commit is kept as a patch and said so (not
        // from a tree whose commits were refused: the job fails for that).
        if imported {
            match crate::leftovers::keep_leftovers(run, agent, prepared).await {
                Ok(line) => {
                    run.hold.note(&Note::leftovers(&line)).await?;
                }
                Err(e) => return Err(StageError::Infra(e, Some(ws.clone()))),
            }
        }
    }
    // A run stopped by its provider's limit is not a fast failure: its
    // pause is the limit's own (see `crate::quota`), and the count stays.
    let counted = match quota {
        Some(_) => Ok(false),
        None => {
            ctx.store
                .record_outcome(&ctx.cfg.admission.backoff, agent.pool(), failed, ran_for)
                .await
        }
    };
    match counted {
        Ok(true) => tracing::warn!(
            pool = agent.pool(),
            "fast failures: pool paused on every host"
        ),
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "cannot record the outcome for pool backoff"),
    }
    if *stop.borrow() == StopReason::Fenced {
        return Err(StageError::SelfFenced);
    }
    if !take_commits {
        return Ok((outcome, Saved::Nothing));
    }
    let saved = match save_branch(&ctx.cfg, &rec.input, prepared, &ctx.host).await {
        Ok(s) => s,
        Err(e @ SaveError::Moved { .. }) => {
            tracing::warn!(job = %rec.id, error = %e, "agent branch not saved");
            outcome = settle(outcome, Finding::BranchMoved(e.to_string()));
            Saved::Nothing
        }
        Err(e @ SaveError::Failed(_)) => {
            forge.add("save branch", e);
            Saved::Nothing
        }
    };
    Ok((outcome, saved))
}

/// QA of a completed run, with the branch pushed first so its head can carry a
/// commit status; then the pull request. A QA failure fails the job.
async fn qa_stage(
    run: &Run<'_>,
    agent: &AgentSpec,
    prepared: &Prepared,
    saved: &Saved,
    outcome: &mut Outcome,
    stop: &watch::Receiver<StopReason>,
    forge: &mut ForgeErrors,
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
        let result = crate::qa::run(run, agent, prepared, &commit, stop.clone())
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
    Ok((qa, pr_url))
}

/// The outcome, told on the job's issue.
async fn report_stage(
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
        ..run.status(outcome.state(), runs, prepared.branch.clone())
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
    run.hold.go(Transition::finished(outcome, report)).await?;
    tracing::info!(job = %run.rec.id, state = %outcome.state(), "job finished");
    Ok(())
}

/// Runs the agent: gives a held container its command, or starts one.
async fn run_agent(
    run: &Run<'_>,
    agent: &AgentSpec,
    prepared: &Prepared,
    stop: watch::Receiver<StopReason>,
    held: Option<HeldAgent>,
) -> anyhow::Result<Ended> {
    let ctx = run.ctx;
    let ws = &prepared.workspace;
    let dirs = RunDirs::of(ws);
    let job = run.container_job(agent, &prepared.prompt, &dirs);
    let body = agent_container(&ctx.cfg, &job, |k| std::env::var(k).ok());
    let timeout = Duration::from_secs(ctx.cfg.timeout_for(agent.pool()));
    let grace = Duration::from_secs(ctx.cfg.docker.stop_grace_secs);
    let log = ws.agent_log(agent.pool());
    let tail = docker::LogTail {
        hold: run.hold.clone(),
    };
    let (container, ended) = match held {
        Some(HeldAgent { started, go }) => {
            let argv = encode_argv(body.cmd.as_deref().unwrap_or_default());
            if let Err(e) = agentq_shared::fsutil::write_atomic(&go, &argv) {
                docker::remove(&ctx.docker, &started.id).await;
                return Err(anyhow::Error::new(e).context("cannot give the agent its command"));
            }
            docker::finish(&ctx.docker, started, &log, tail, timeout, grace, stop).await?
        }
        None => {
            docker::run_container(
                &ctx.docker,
                &run.agent_container_name(),
                body,
                &log,
                tail,
                timeout,
                grace,
                stop,
                note_container(run),
            )
            .await?
        }
    };
    let _ = run.hold.note(&Note::container(&container)).await;
    Ok(ended)
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

#[cfg(test)]
mod tests {
    use super::watchdog_start_error;

    #[test]
    fn a_start_failure_says_why_from_the_watchdogs_line() {
        let log = "agentq-watchdog: cannot run \"gemini\": Argument list too long (os error 7) (argument 2, the prompt most likely, is 141 KB, over the 128 KiB the kernel allows in one argument: give the agent its prompt as a file or on stdin)\n";
        let why = watchdog_start_error(log).unwrap();
        assert!(
            why.contains("is 141 KB, over the 128 KiB the kernel allows in one argument"),
            "{why}"
        );
        assert_eq!(watchdog_start_error("hello\nexit 126\n"), None);
    }
}
