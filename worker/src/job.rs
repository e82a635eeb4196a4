//! One delivery of one job, start to finish: admission checks, then the stages
//! prep → run → finish, with infrastructure errors retried and agent outcomes final.

use std::{path::PathBuf, sync::Arc, time::Duration};

use agentq_shared::{
    agent::AgentSpec,
    container::{agent_container, ContainerJob},
    forge::CommitState,
    lease::Acquire,
    limits::Admission,
    record::JobRecord,
    status::{
        detect_final_status, read_blocked, FinalStatus, JobState, QaSummary, WorkspaceStatus,
    },
    store::{now_rfc3339, Delivery},
    workspace::Workspace,
};
use tokio::sync::watch;

use crate::{
    context::WorkerCtx,
    docker::{self, Ended},
    import::{import_commits, ImportError},
    prep::{prepare, PrepError, Prepared},
    qa::QaResult,
    report,
};

/// Why the guard asks a running agent to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// Keep going.
    None,
    /// A person cancelled the job.
    Cancel,
    /// The worker is shutting down and its grace period ran out.
    Shutdown,
    /// The working tree grew past `workspace_limit_mb` (its size in bytes).
    WorkspaceTooBig(u64),
}

/// How often the guard measures the working tree while a job runs.
const SIZE_CHECK_EVERY: Duration = Duration::from_secs(10);

/// The failure reason for a working tree over the limit.
pub fn too_big(size: u64, limit: u64) -> String {
    let gib = |b: u64| b as f64 / (1024.0 * 1024.0 * 1024.0);
    format!(
        "workspace grew to {:.2} GiB ({size} bytes), over the limit of {:.2} GiB ({limit} bytes)",
        gib(size),
        gib(limit)
    )
}

/// Handles one delivery. Never fails: every outcome is written to the job's record.
///
/// The work runs on its own task, so that if apalis drops the handler (its stream
/// failing on a Redis outage) the job still finishes and records its outcome.
pub async fn process(ctx: Arc<WorkerCtx>, delivery: Delivery) {
    let id = delivery.job_id.clone();
    let task = tokio::spawn(async move { try_process(&ctx, delivery).await });
    match task.await {
        Ok(Ok(())) => {}
        // Only Redis itself failing gets here; the record could not be written.
        Ok(Err(e)) => {
            tracing::error!(job = %id, error = %format!("{e:#}"), "job handling failed; the record may be stale")
        }
        Err(e) => tracing::error!(job = %id, error = %e, "job task panicked"),
    }
}

async fn try_process(ctx: &Arc<WorkerCtx>, delivery: Delivery) -> anyhow::Result<()> {
    let store = &ctx.store;
    let id_owned = delivery.job_id.clone();
    let id = id_owned.as_str();
    let Some(rec) = store.get(id).await? else {
        tracing::warn!(job = id, "delivery for a job with no record; skipped");
        return Ok(());
    };
    if rec.seq != delivery.seq || rec.state.is_final() {
        tracing::debug!(job = id, seq = delivery.seq, record_seq = rec.seq, state = %rec.state, "stale delivery; skipped");
        return Ok(());
    }
    if store.cancel_requested(id).await? {
        store
            .transition(
                id,
                JobState::Cancelled,
                Some(rec.seq),
                &[("finished_at", now_rfc3339())],
            )
            .await?;
        return Ok(());
    }
    if *ctx.shutdown.borrow() != StopReason::None {
        // Shutting down: hand the job straight back.
        store.redeliver(delivery, Duration::ZERO).await?;
        return Ok(());
    }
    match store
        .acquire_run_lease(id, &ctx.worker_id, ctx.lease_ttl())
        .await?
    {
        Acquire::Acquired => {}
        Acquire::HeldBy(holder, left) => {
            tracing::info!(job = id, holder = %holder, "job is held by another worker; delivering again later");
            store
                .redeliver(delivery, left + Duration::from_millis(500))
                .await?;
            return Ok(());
        }
    }
    let result = admit_and_run(ctx, rec, delivery).await;
    store.release_run_lease(id, &ctx.worker_id).await?;
    result
}

/// Takes a slot in the job's pool (or puts the job back to wait), then runs it.
async fn admit_and_run(
    ctx: &Arc<WorkerCtx>,
    rec: JobRecord,
    delivery: Delivery,
) -> anyhow::Result<()> {
    let store = &ctx.store;
    let Ok(agent) = AgentSpec::parse(&rec.input.agent) else {
        // Validated at enqueue; a record edited by hand gets here.
        let msg = format!("unknown agent `{}`", rec.input.agent);
        store
            .transition(
                &rec.id,
                JobState::Failed,
                Some(rec.seq),
                &[("question", msg), ("finished_at", now_rfc3339())],
            )
            .await?;
        return Ok(());
    };
    let stale = Duration::from_millis(ctx.cfg.slot_retry_ms.max(100) * 10) + ctx.lease_ttl();
    let admission = store
        .admit(&ctx.cfg.admission, &agent, &rec.id, ctx.lease_ttl(), stale)
        .await?;
    let retry = Duration::from_millis(ctx.cfg.slot_retry_ms.max(100));
    let (reason, delay) = match admission {
        Admission::Admitted => ("", Duration::ZERO),
        Admission::NoSlot => ("slot", retry),
        Admission::Paced(d) => ("slot", d.max(Duration::from_millis(100))),
        // Ask again at least every 5 s, so a pause lifted by hand takes effect soon.
        Admission::Paused(d) => ("backoff", d.min(Duration::from_secs(5)).max(retry)),
    };
    if !reason.is_empty() {
        if rec.state != JobState::Waiting || rec.reason != reason {
            store
                .transition(
                    &rec.id,
                    JobState::Waiting,
                    Some(rec.seq),
                    &[("reason", reason.to_string())],
                )
                .await?;
        }
        store.redeliver(delivery, delay).await?;
        return Ok(());
    }
    let result = run_admitted(ctx, rec.clone(), &agent).await;
    store.release_slot(&agent, &rec.id).await?;
    result
}

/// Renews the run lease and the slot, and watches for cancel and shutdown, while
/// the job runs.
fn spawn_guard(
    ctx: Arc<WorkerCtx>,
    id: String,
    agent: AgentSpec,
    repo: Option<PathBuf>,
) -> (watch::Receiver<StopReason>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(StopReason::None);
    let handle = tokio::spawn(async move {
        let ttl = ctx.lease_ttl();
        let mut renew = tokio::time::interval(ttl / 3);
        let mut poll = tokio::time::interval(Duration::from_secs(1));
        let mut size = tokio::time::interval(SIZE_CHECK_EVERY);
        let limit = ctx.cfg.workspace_limit_bytes();
        let mut shutdown = ctx.shutdown.clone();
        loop {
            tokio::select! {
                _ = size.tick(), if limit.is_some() && repo.is_some() => {
                    let (Some(limit), Some(repo)) = (limit, repo.clone()) else { continue };
                    let used = tokio::task::spawn_blocking(move || agentq_shared::fsutil::tree_size(&repo))
                        .await
                        .unwrap_or(0);
                    if used > limit {
                        tracing::warn!(job = %id, used, limit, "working tree over the limit; stopping the agent");
                        let _ = tx.send(StopReason::WorkspaceTooBig(used));
                    }
                }
                _ = renew.tick() => {
                    if let Err(e) = ctx.store.renew_run_lease(&id, &ctx.worker_id, ttl).await {
                        tracing::warn!(job = %id, error = %e, "cannot renew run lease");
                    }
                    if let Err(e) = ctx.store.renew_slot(&agent, &id, ttl).await {
                        tracing::warn!(job = %id, error = %e, "cannot renew slot lease");
                    }
                }
                _ = poll.tick() => {
                    if matches!(ctx.store.cancel_requested(&id).await, Ok(true)) {
                        let _ = tx.send(StopReason::Cancel);
                    }
                }
                changed = shutdown.changed() => {
                    if changed.is_ok() && *shutdown.borrow() == StopReason::Shutdown {
                        let _ = tx.send(StopReason::Shutdown);
                    }
                }
            }
        }
    });
    (rx, handle)
}

async fn run_admitted(
    ctx: &Arc<WorkerCtx>,
    rec: JobRecord,
    agent: &AgentSpec,
) -> anyhow::Result<()> {
    let store = &ctx.store;
    let id = rec.id.clone();
    let (attempt, tries) = store.bump_attempt(&id).await?;
    let started = now_rfc3339();
    store
        .transition(
            &id,
            JobState::Preparing,
            Some(rec.seq),
            &[
                ("host", ctx.host.clone()),
                ("worker", ctx.worker_id.clone()),
                ("started_at", started.clone()),
                ("reason", String::new()),
            ],
        )
        .await?;
    let reaped = docker::reap_job(&ctx.docker, store.keys().namespace(), &id).await;
    if reaped > 0 {
        tracing::info!(job = %id, reaped, "removed containers of an earlier attempt");
    }
    let repo = agentq_shared::workspace::Workspace::for_input(&ctx.cfg.workspace_root, &rec.input)
        .ok()
        .map(|w| w.repo_dir());
    let (stop, guard) = spawn_guard(ctx.clone(), id.clone(), agent.clone(), repo);
    ctx.running.lock().unwrap().insert(id.clone());
    let began = std::time::Instant::now();
    let outcome = stages(ctx, &rec, attempt, &started, stop).await;
    ctx.running.lock().unwrap().remove(&id);
    guard.abort();
    let result = record_outcome(ctx, &rec, attempt, tries, &started, outcome).await;
    if let Ok(Some(after)) = store.get(&id).await {
        if after.state.is_final() && after.seq == rec.seq {
            ctx.metrics
                .job_finished(agent.pool(), after.state, began.elapsed());
        }
    }
    result
}

/// Writes what the stages' result means for the job.
async fn record_outcome(
    ctx: &Arc<WorkerCtx>,
    rec: &JobRecord,
    attempt: u32,
    tries: u32,
    started: &str,
    outcome: Result<(), StageError>,
) -> anyhow::Result<()> {
    let store = &ctx.store;
    let id = rec.id.clone();
    match outcome {
        Ok(()) => Ok(()),
        Err(StageError::Redis(e)) => Err(e),
        Err(StageError::Infra(e, ws)) => {
            infra_failure(ctx, rec, attempt, tries, started, e, ws).await
        }
        Err(StageError::Job(msg)) => {
            tracing::warn!(job = %id, error = %msg, "job cannot run");
            store
                .transition(
                    &id,
                    JobState::Failed,
                    Some(rec.seq),
                    &[
                        ("error", msg.clone()),
                        ("question", msg),
                        ("finished_at", now_rfc3339()),
                    ],
                )
                .await?;
            Ok(())
        }
        Err(StageError::Interrupted) => {
            tracing::info!(job = %id, "worker shutting down; job handed back to the queue");
            store
                .requeue(
                    &id,
                    JobState::Queued,
                    Duration::ZERO,
                    &[("reason", "shutdown".to_string())],
                )
                .await?;
            Ok(())
        }
    }
}

enum StageError {
    /// An infrastructure step failed; maybe with the workspace, if prep got that far.
    Infra(anyhow::Error, Option<Workspace>),
    /// Redis failed while recording.
    Redis(anyhow::Error),
    /// The job itself cannot run (missing persona or plan): final, no retry.
    Job(String),
    /// The worker shut down before the job could finish: hand it back.
    Interrupted,
}

fn redis_err(e: impl Into<anyhow::Error>) -> StageError {
    StageError::Redis(e.into())
}

async fn stages(
    ctx: &Arc<WorkerCtx>,
    rec: &JobRecord,
    attempt: u32,
    started: &str,
    stop: watch::Receiver<StopReason>,
) -> Result<(), StageError> {
    let store = &ctx.store;
    let input = &rec.input;
    let agent = AgentSpec::parse(&input.agent).map_err(|e| StageError::Infra(e.into(), None))?;

    // Stage 1: prep.
    let issue = crate::forge::issue_for_prompt(ctx, input).await;
    let prepared = prepare(&ctx.cfg, rec, issue, ctx.agent_ids())
        .await
        .map_err(|e| match e {
            PrepError::Job(m) => StageError::Job(m),
            PrepError::Infra(e) => StageError::Infra(e, None),
        })?;
    let ws = prepared.workspace.clone();
    let ws_dir = ws.dir.to_string_lossy().into_owned();
    let common = [
        ("workspace_dir", ws_dir.clone()),
        ("branch", prepared.branch.clone()),
        (
            "resumed",
            if prepared.resumed { "1" } else { "0" }.to_string(),
        ),
    ];
    store
        .set_fields(&rec.id, &common)
        .await
        .map_err(redis_err)?;

    if input.dry_run {
        write_status(
            rec,
            &prepared,
            JobState::Completed,
            rec.runs,
            attempt,
            started,
        );
        store
            .transition(
                &rec.id,
                JobState::Completed,
                Some(rec.seq),
                &[
                    ("prompt", prepared.prompt.clone()),
                    ("finished_at", now_rfc3339()),
                ],
            )
            .await
            .map_err(redis_err)?;
        return Ok(());
    }

    // Stage 2: run the agent.
    let runs = rec.runs + 1;
    write_status(rec, &prepared, JobState::Running, runs, attempt, started);
    store
        .transition(
            &rec.id,
            JobState::Running,
            Some(rec.seq),
            &[("runs", runs.to_string())],
        )
        .await
        .map_err(redis_err)?;
    if *stop.borrow() == StopReason::Shutdown {
        return Err(StageError::Interrupted);
    }
    let mut forge_errors = report::ForgeErrors::default();
    let clock = report::start_timer(ctx, rec, &mut forge_errors).await;
    let ran = std::time::Instant::now();
    let ended = run_agent(ctx, rec, attempt, &agent, &prepared, stop.clone()).await;
    let ran_for = ran.elapsed();
    report::track_time(ctx, rec, runs, &clock, &mut forge_errors).await;
    let ended = ended.map_err(|e| StageError::Infra(e, Some(ws.clone())))?;

    // From here on the working tree is the agent's: it is read only through
    // `read_blocked` (no links, no FIFOs, capped) and the export container.
    let limit = ctx.cfg.workspace_limit_bytes();
    let size = match (limit, &ended) {
        (Some(_), Ended::Exited(_) | Ended::TimedOut) => {
            let repo = ws.repo_dir();
            tokio::task::spawn_blocking(move || agentq_shared::fsutil::tree_size(&repo))
                .await
                .unwrap_or(0)
        }
        _ => 0,
    };
    let over = limit.filter(|l| size > *l);
    let mut take_commits = over.is_none();
    let (mut state, mut question, exit_code) = match ended {
        _ if over.is_some() => (JobState::Failed, too_big(size, over.unwrap_or(0)), None),
        Ended::WorkspaceTooBig(size) => {
            take_commits = false;
            (JobState::Failed, too_big(size, limit.unwrap_or(0)), None)
        }
        Ended::Exited(code) => {
            let blocked = read_blocked(&ws.repo_dir());
            take_commits &= blocked.is_ok();
            let FinalStatus { state, question } = detect_final_status(&blocked, code);
            (state, question, Some(code))
        }
        Ended::TimedOut => (
            JobState::TimedOut,
            format!(
                "Agent ran past its timeout of {}s and was killed",
                ctx.cfg.timeout_for(agent.pool())
            ),
            None,
        ),
        Ended::Cancelled => {
            take_commits = false;
            (JobState::Cancelled, "Cancelled".to_string(), None)
        }
        Ended::Interrupted => return Err(StageError::Interrupted),
    };
    // The agent's commits, taken as data into the worker repository.
    if take_commits {
        match import_commits(ctx, rec, attempt, &agent, &prepared).await {
            Ok(imported) => tracing::debug!(job = %rec.id, ?imported, "agent commits imported"),
            Err(ImportError::Infra(e)) => return Err(StageError::Infra(e, Some(ws.clone()))),
            Err(e @ ImportError::Refused(_)) => {
                tracing::warn!(job = %rec.id, error = %e, "agent commits refused");
                state = JobState::Failed;
                question = e.to_string();
            }
        }
    }
    // Fast failures of a pool are a sign of rate limits: pause it on every host.
    match store
        .record_outcome(
            &ctx.cfg.admission.backoff,
            agent.pool(),
            state == JobState::Failed,
            ran_for,
        )
        .await
    {
        Ok(true) => tracing::warn!(
            pool = agent.pool(),
            "fast failures: pool paused on every host"
        ),
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "cannot record the outcome for pool backoff"),
    }

    // Stage 3: QA, with the branch pushed first so its head can carry a status.
    let mut qa = None;
    let mut pr_url = None;
    if state == JobState::Completed {
        let pushed = report::push_branch(ctx, rec, &prepared, &mut forge_errors).await;
        if ctx.cfg.auto_qa {
            store
                .transition(&rec.id, JobState::Qa, Some(rec.seq), &[])
                .await
                .map_err(redis_err)?;
            if let Some(p) = &pushed {
                report::set_status(
                    ctx,
                    rec,
                    p,
                    CommitState::Pending,
                    "QA running",
                    &mut forge_errors,
                )
                .await;
            }
            let result = crate::qa::run(ctx, rec, attempt, &agent, &prepared, stop)
                .await
                .map_err(|e| StageError::Infra(e, Some(ws.clone())))?;
            let result = match result {
                Ok(r) => r,
                Err(Ended::Interrupted) => return Err(StageError::Interrupted),
                Err(_) => QaResult {
                    status: "failed",
                    command: String::new(),
                    detail: "cancelled".into(),
                    output_tail: String::new(),
                },
            };
            if result.status == "failed" {
                state = JobState::Failed;
                question = result.question();
            }
            if let Some(p) = &pushed {
                let (st, desc) = match result.status {
                    "failed" => (CommitState::Failure, question.clone()),
                    "passed" => (CommitState::Success, "QA passed".to_string()),
                    _ => (
                        CommitState::Success,
                        "QA skipped: nothing to build or test".to_string(),
                    ),
                };
                report::set_status(ctx, rec, p, st, &desc, &mut forge_errors).await;
            }
            qa = Some(result);
        }
        if let Some(p) = &pushed {
            if state == JobState::Completed || ctx.cfg.forge.pr_on_qa_failure {
                pr_url = report::open_pull(ctx, rec, &prepared, p, &mut forge_errors).await;
            }
        }
    }

    // Stage 4: report.
    if rec.input.issue > 0 && ctx.forge.is_some() {
        store
            .transition(&rec.id, JobState::Reporting, Some(rec.seq), &[])
            .await
            .map_err(redis_err)?;
        let outcome = report::Outcome {
            state,
            question: &question,
            qa: qa.as_ref(),
            pr_url: pr_url.as_deref(),
            branch: &prepared.branch,
        };
        report::comment(ctx, rec, &outcome, &mut forge_errors).await;
    }
    let forge_error = forge_errors.text();
    let qa_summary = qa.as_ref().map(|q| QaSummary {
        status: q.status.to_string(),
        command: q.command.clone(),
        output_tail: q.output_tail.clone(),
    });
    let st = WorkspaceStatus {
        status: state.to_string(),
        question: question.clone(),
        exit_code,
        qa: qa_summary.clone(),
        pr_url: pr_url.clone().unwrap_or_default(),
        forge_error: forge_error.clone(),
        ..base_status(rec, runs, attempt, started, prepared.branch.clone())
    };
    if let Err(e) = st.write_atomic(&ws.status_file()) {
        tracing::warn!(job = %rec.id, error = %e, "cannot write status.json");
    }
    let error = if matches!(state, JobState::Failed | JobState::TimedOut) {
        question.clone()
    } else {
        String::new()
    };
    let mut fields = vec![
        ("question", question),
        ("finished_at", now_rfc3339()),
        ("error", error),
        ("forge_error", forge_error),
        ("pr_url", pr_url.unwrap_or_default()),
        (
            "qa_status",
            qa_summary
                .as_ref()
                .map(|q| q.status.clone())
                .unwrap_or_default(),
        ),
        (
            "qa_command",
            qa_summary
                .as_ref()
                .map(|q| q.command.clone())
                .unwrap_or_default(),
        ),
        (
            "qa_output",
            qa_summary.map(|q| q.output_tail).unwrap_or_default(),
        ),
    ];
    if let Some(c) = exit_code {
        fields.push(("exit_code", c.to_string()));
    }
    store
        .transition(&rec.id, state, Some(rec.seq), &fields)
        .await
        .map_err(redis_err)?;
    tracing::info!(job = %rec.id, state = %state, "job finished");
    Ok(())
}

async fn run_agent(
    ctx: &Arc<WorkerCtx>,
    rec: &JobRecord,
    attempt: u32,
    agent: &AgentSpec,
    prepared: &Prepared,
    stop: watch::Receiver<StopReason>,
) -> anyhow::Result<Ended> {
    let ws = &prepared.workspace;
    let job = ContainerJob {
        job_id: &rec.id,
        attempt,
        worker_id: &ctx.worker_id,
        namespace: ctx.store.keys().namespace(),
        agent,
        prompt: &prepared.prompt,
        repo_dir: &ws.repo_dir(),
        input_dir: &ws.input_dir(),
        user: ctx.agent_user(),
        watchdog: None,
    };
    let body = agent_container(&ctx.cfg, &job, |k| std::env::var(k).ok());
    let name = format!("agentq-{}-{}", rec.id.to_lowercase(), attempt);
    let timeout = Duration::from_secs(ctx.cfg.timeout_for(agent.pool()));
    let store = ctx.store.clone();
    let id = rec.id.clone();
    let (container, ended) = docker::run_container(
        &ctx.docker,
        &name,
        body,
        &ws.agent_log(agent.pool()),
        docker::LogTail {
            store: ctx.store.clone(),
            job_id: rec.id.clone(),
        },
        timeout,
        Duration::from_secs(ctx.cfg.docker.stop_grace_secs),
        stop,
        |cid| {
            let cid = cid.to_string();
            tokio::spawn(async move {
                let _ = store.set_fields(&id, &[("container", cid)]).await;
            });
        },
    )
    .await?;
    ctx.store
        .set_fields(&rec.id, &[("container", container)])
        .await?;
    Ok(ended)
}

/// Records an infrastructure failure: another delivery later while attempts remain,
/// else the job fails with the error.
#[allow(clippy::too_many_arguments)]
async fn infra_failure(
    ctx: &Arc<WorkerCtx>,
    rec: &JobRecord,
    attempt: u32,
    tries: u32,
    started: &str,
    err: anyhow::Error,
    ws: Option<Workspace>,
) -> anyhow::Result<()> {
    let text = format!("{err:#}");
    let max = rec.max_attempts.max(1);
    if tries < max {
        let delay = retry_delay(ctx.cfg.retry_base_secs, tries);
        tracing::warn!(job = %rec.id, attempt, max, error = %text, ?delay, "infrastructure error; retrying");
        ctx.store
            .requeue(
                &rec.id,
                JobState::Waiting,
                delay,
                &[("reason", "retry".to_string()), ("error", text)],
            )
            .await?;
        return Ok(());
    }
    tracing::error!(job = %rec.id, attempt, error = %text, "infrastructure error; giving up");
    let question = format!("Infrastructure error after {tries} attempts: {text}");
    if let Some(ws) = ws {
        let st = WorkspaceStatus {
            status: JobState::Failed.to_string(),
            question: question.clone(),
            ..base_status(rec, rec.runs, attempt, started, ws_branch(rec))
        };
        let _ = st.write_atomic(&ws.status_file());
    }
    ctx.store
        .transition(
            &rec.id,
            JobState::Failed,
            Some(rec.seq),
            &[
                ("error", text),
                ("question", question),
                ("finished_at", now_rfc3339()),
            ],
        )
        .await?;
    Ok(())
}

fn ws_branch(rec: &JobRecord) -> String {
    agentq_shared::workspace::agent_branch(&rec.input)
}

/// `base * 2^(attempt-1)` seconds, at most 300.
pub fn retry_delay(base_secs: u64, attempt: u32) -> Duration {
    let secs = base_secs.saturating_mul(1u64 << attempt.saturating_sub(1).min(16));
    Duration::from_secs(secs.min(300))
}

fn base_status(
    rec: &JobRecord,
    runs: u32,
    attempt: u32,
    started: &str,
    branch: String,
) -> WorkspaceStatus {
    let i = &rec.input;
    WorkspaceStatus {
        status: String::new(),
        agent: i.agent.clone(),
        repo: i.repo.clone(),
        org: i.org.clone(),
        task: i.task.clone(),
        branch,
        pid: 0,
        started_at: started.to_string(),
        runs,
        question: String::new(),
        issue: i.issue,
        job_id: rec.id.clone(),
        attempt,
        exit_code: None,
        updated_at: now_rfc3339(),
        ..Default::default()
    }
}

/// Writes `status.json` for a job between stages (no outcome yet).
fn write_status(
    rec: &JobRecord,
    prepared: &Prepared,
    state: JobState,
    runs: u32,
    attempt: u32,
    started: &str,
) {
    let st = WorkspaceStatus {
        status: state.to_string(),
        ..base_status(rec, runs, attempt, started, prepared.branch.clone())
    };
    if let Err(e) = st.write_atomic(&prepared.workspace.status_file()) {
        tracing::warn!(job = %rec.id, error = %e, "cannot write status.json");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_doubles_and_caps() {
        assert_eq!(retry_delay(5, 1), Duration::from_secs(5));
        assert_eq!(retry_delay(5, 2), Duration::from_secs(10));
        assert_eq!(retry_delay(5, 3), Duration::from_secs(20));
        assert_eq!(retry_delay(5, 30), Duration::from_secs(300));
    }
}
