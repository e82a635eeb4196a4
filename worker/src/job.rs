//! One delivery of one job, start to finish: admission checks, then the stages
//! prep → run → finish, with infrastructure errors retried and agent outcomes final.

use std::{path::PathBuf, sync::Arc, time::Duration};

use agentq_shared::{
    agent::AgentSpec,
    container::{agent_container, ContainerJob, Watchdog},
    forge::CommitState,
    lease::Acquire,
    record::JobRecord,
    status::{read_blocked, JobState, QaStatus, QaSummary, WaitReason, WorkspaceStatus},
    store::{now_rfc3339, Delivery, Move, Moved, ParkIn},
    workspace::Workspace,
    wslease::{workspace_key, WorkspaceTake},
};
use tokio::sync::watch;

use crate::{
    context::WorkerCtx,
    docker::{self, Ended},
    hold::{until_redis_answers, Fenced, Hold},
    import::{import_commits, ImportError},
    outcome::{decide_outcome, RunOutcome},
    prep::{prepare, PrepError, Prepared},
    qa::QaResult,
    report,
    save::{save_branch, SaveError, Saved},
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
    /// The run lease could not be renewed in time, or another run took the job:
    /// stop at once, before another worker may start it.
    Fenced,
    /// The working tree grew past `workspace_limit_mb` (its size in bytes).
    WorkspaceTooBig(u64),
}

/// How often the guard measures the working tree while a job runs.
const SIZE_CHECK_EVERY: Duration = Duration::from_secs(10);

/// Handles one delivery. Never fails: every outcome is written to the job's record.
///
/// The work runs on its own task, so that if apalis drops the handler (its stream
/// failing on a Redis outage) the job still finishes and records its outcome.
pub async fn process(ctx: Arc<WorkerCtx>, delivery: Delivery) {
    let id = delivery.job_id.clone();
    let task = tokio::spawn(async move { take(&ctx, delivery).await });
    if let Err(e) = task.await {
        tracing::error!(job = %id, error = %e, "job task panicked; the sweep puts the job back once its lease expires");
    }
}

/// Takes the delivery's job (run lease and fencing token), decides what to do
/// with it, and lets the lease go. A delivery is acknowledged only after this
/// returns, and this returns only once the record says how the job goes on.
async fn take(ctx: &Arc<WorkerCtx>, delivery: Delivery) {
    let store = &ctx.store;
    let id = delivery.job_id.clone();
    let ttl = ctx.cfg.lease_ttl();
    let taken = until_redis_answers("take the delivery", &id, || {
        store.acquire(&delivery, &ctx.worker_id, ttl)
    })
    .await;
    let (token, previous) = match taken {
        Acquire::Acquired { token, previous } => (token, previous),
        Acquire::Held(holder) => {
            // A duplicate: the holder moves the job on, or the sweep does if it dies.
            tracing::debug!(job = %id, holder = %holder, "job is held by another run; duplicate delivery dropped");
            return;
        }
        Acquire::Stale => {
            tracing::debug!(job = %id, seq = delivery.seq, "stale delivery; skipped");
            return;
        }
        Acquire::Gone => {
            tracing::warn!(job = %id, "delivery for a job with no record; skipped");
            return;
        }
    };
    if !previous.is_empty() {
        tracing::info!(job = %id, previous = %previous, "taking over a job whose run never finished");
    }
    let hold = Hold::new(store.clone(), id.clone(), token);
    let rec = until_redis_answers("read the record", &id, || store.get(&id)).await;
    if let Some(rec) = rec {
        if let Err(Fenced) = decide(ctx, &hold, rec).await {
            tracing::info!(job = %id, "run fenced out: another worker owns the job");
        }
    }
    hold.release().await;
}

/// Hands the job back: parked in its pool's lane at its first place in line
/// (see [`agentq_shared::park`]), its slot given back. `refund`: the run's
/// `tries`, given back (the run spends no attempt). `extra`: more fields to set.
async fn hand_back(
    hold: &Hold,
    state: JobState,
    reason: WaitReason,
    refund: Option<u32>,
    extra: &[(&str, String)],
) -> Result<(), Fenced> {
    let mut fields = vec![("reason", reason.as_str().to_string())];
    if let Some(tries) = refund {
        fields.push(("tries", tries.saturating_sub(1).to_string()));
    }
    fields.extend(extra.iter().cloned());
    hold.apply(Move::to(state).fields(&fields).park(ParkIn::Lane))
        .await
        .map(|_| ())
}

/// Parks the job until what it waits for changes: no delivery, no re-check.
async fn park(
    hold: &Hold,
    at: ParkIn,
    reason: WaitReason,
    waiting_on: String,
) -> Result<(), Fenced> {
    let mut m = Move::to(JobState::Waiting)
        .fields(&[
            ("reason", reason.as_str().to_string()),
            ("waiting_on", waiting_on),
        ])
        .park(at);
    m.quiet = true;
    hold.apply(m).await.map(|_| ())
}

/// Cancel, shutdown, a degraded host, admission: then the run itself.
async fn decide(ctx: &Arc<WorkerCtx>, hold: &Hold, rec: JobRecord) -> Result<(), Fenced> {
    let store = &ctx.store;
    let id = rec.id.as_str();
    let cancel =
        until_redis_answers("read the cancel flag", id, || store.cancel_requested(id)).await;
    if cancel {
        return hold
            .move_to(JobState::Cancelled, &[("finished_at", now_rfc3339())])
            .await;
    }
    if *ctx.shutdown.borrow() != StopReason::None {
        return hand_back(hold, JobState::Queued, WaitReason::Shutdown, None, &[]).await;
    }
    if let Some((why, _)) = ctx.breaker.degraded() {
        tracing::info!(job = id, reason = %why, "host degraded: job handed back");
        return hand_back(hold, JobState::Waiting, WaitReason::HostDegraded, None, &[]).await;
    }
    let Ok(agent) = AgentSpec::parse(&rec.input.agent) else {
        // Validated at enqueue; a record edited by hand gets here.
        let msg = format!("unknown agent `{}`", rec.input.agent);
        return hold
            .move_to(
                JobState::Failed,
                &[
                    ("error", msg.clone()),
                    ("question", msg),
                    ("finished_at", now_rfc3339()),
                ],
            )
            .await;
    };
    if rec.input.dry_run {
        // A dry run prepares a throwaway copy: no slot, no pacing, no workspace.
        return run_admitted(ctx, hold, rec.clone(), &agent, None).await;
    }
    let ttl = ctx.cfg.lease_ttl();
    // A job starts only with a slot a wake granted it (oldest first, pacing and
    // pauses applied there); a delivery without one (a retry after its delay, a
    // hand-back) parks the job in its lane, at its first place in line.
    let granted = until_redis_answers("slot", id, || store.holds_slot(&agent, id, ttl)).await;
    if !granted {
        return park(hold, ParkIn::Lane, WaitReason::Slot, String::new()).await;
    }
    let ws = workspace_key(&rec.input);
    if let Some((host, since)) = affinity(ctx, &rec, &ws).await {
        // The host with the workspace claims the job (and its slot) when it has
        // room; this host looks again every few seconds, in case that host died.
        let until = since + ctx.cfg.affinity_secs as i64 * 1000;
        let left = (until - chrono::Utc::now().timestamp_millis()).clamp(0, 2_000) as u64;
        let mut m = Move::to(JobState::Waiting)
            .fields(&[
                ("reason", WaitReason::Affinity.as_str().to_string()),
                ("waiting_on", host.clone()),
                ("affinity_since", since.to_string()),
            ])
            .deliver(Duration::from_millis(left), false);
        m.quiet = true;
        m.keep_slot = true;
        hold.apply(m).await?;
        if let Err(e) = store.leave_to_host(&host, id, until).await {
            tracing::debug!(job = id, error = %e, "cannot leave the job to its workspace's host; it runs after the grace period");
        }
        return Ok(());
    }
    // A busy workspace: the job parks in its line and gives its slot back.
    let taken = until_redis_answers("workspace", id, || store.take_workspace(&ws, id, ttl)).await;
    if let WorkspaceTake::Busy(holder) = taken {
        return park(hold, ParkIn::Workspace(ws), WaitReason::Workspace, holder).await;
    }
    // The run's last move gives the slot back (in the same Lua call).
    let result = run_admitted(ctx, hold, rec.clone(), &agent, Some(&ws)).await;
    if let Err(e) = store.give_back_workspace(&ws, id).await {
        tracing::debug!(job = id, error = %e, "cannot give the workspace back; its lease expires by itself");
    }
    result
}

/// Whether to leave the job to the live host that has its workspace: that host
/// and since when (ms), while `affinity_secs` have not passed. Redis errors
/// mean no affinity (any host may run any job).
async fn affinity(ctx: &WorkerCtx, rec: &JobRecord, ws: &str) -> Option<(String, i64)> {
    let grace = ctx.cfg.affinity_secs as i64 * 1000;
    if grace == 0 {
        return None;
    }
    let owner = ctx.store.workspace_host(ws).await.ok()??;
    if owner == ctx.host {
        return None;
    }
    let live = ctx.store.live_workers().await.ok()?;
    if !live
        .iter()
        .any(|w| w.host == owner && w.degraded.is_empty())
    {
        return None;
    }
    let now = chrono::Utc::now().timestamp_millis();
    let since = rec.affinity_since.parse().unwrap_or(now);
    (now - since < grace).then_some((owner, since))
}

/// Renews the run lease and the slot, and watches for cancel and shutdown, while
/// the job runs. A run that cannot renew its lease for [`Config::fence_after`]
/// stops its agent (self-fencing), so it is down before another worker may take
/// the job over; the agent's watchdog does the same if this worker is gone.
///
/// [`Config::fence_after`]: agentq_shared::config::Config::fence_after
fn spawn_guard(
    ctx: Arc<WorkerCtx>,
    hold: Hold,
    agent: AgentSpec,
    workspace: Option<String>,
    repo: Option<PathBuf>,
    beat: Option<Arc<crate::deadman::Beat>>,
) -> (watch::Receiver<StopReason>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(StopReason::None);
    let handle = tokio::spawn(async move {
        let ttl = ctx.cfg.lease_ttl();
        let every = ctx.cfg.lease_renew_every();
        let fence_after = ctx.cfg.fence_after();
        let mut renew = tokio::time::interval(every);
        let mut watch_renewals = tokio::time::interval(Duration::from_millis(250));
        let mut poll = tokio::time::interval(Duration::from_secs(1));
        let mut size = tokio::time::interval(SIZE_CHECK_EVERY);
        let limit = ctx.cfg.workspace_limit_bytes();
        let mut shutdown = ctx.shutdown.clone();
        let mut last_renewed = std::time::Instant::now();
        let id = hold.id.clone();
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
                    let sent = std::time::SystemTime::now();
                    let began = std::time::Instant::now();
                    match tokio::time::timeout(every, hold.renew(ttl)).await {
                        Ok(Ok(true)) => {
                            last_renewed = began;
                            if let Some(b) = &beat {
                                if let Err(e) = b.touch(sent) {
                                    tracing::warn!(job = %id, error = %e, "cannot refresh the agent's heartbeat file");
                                }
                            }
                            if let Err(e) = ctx.store.renew_slot(&agent, &id, ttl).await {
                                tracing::warn!(job = %id, error = %e, "cannot renew slot lease");
                            }
                            if let Some(ws) = &workspace {
                                match ctx.store.renew_workspace(ws, &id, ttl).await {
                                    Ok(true) => {}
                                    Ok(false) => {
                                        tracing::warn!(job = %id, workspace = %ws, "workspace lease lost; stopping the agent");
                                        let _ = tx.send(StopReason::Fenced);
                                    }
                                    Err(e) => tracing::warn!(job = %id, error = %e, "cannot renew workspace lease"),
                                }
                            }
                        }
                        Ok(Ok(false)) => {
                            tracing::warn!(job = %id, "run lease lost to another run; stopping the agent");
                            let _ = tx.send(StopReason::Fenced);
                        }
                        Ok(Err(e)) => tracing::warn!(job = %id, error = %e, "cannot renew run lease"),
                        Err(_) => tracing::warn!(job = %id, "run lease renewal timed out"),
                    }
                }
                _ = watch_renewals.tick() => {
                    if last_renewed.elapsed() > fence_after && *tx.borrow() != StopReason::Fenced {
                        tracing::warn!(job = %id, unrenewed = ?last_renewed.elapsed(), "run lease not renewable; stopping the agent before another worker may take over (self-fencing)");
                        let _ = tx.send(StopReason::Fenced);
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
    hold: &Hold,
    rec: JobRecord,
    agent: &AgentSpec,
    workspace: Option<&str>,
) -> Result<(), Fenced> {
    let id = rec.id.clone();
    let started = now_rfc3339();
    let mut m = Move::to(JobState::Preparing).fields(&[
        ("host", ctx.host.clone()),
        ("worker", ctx.worker_id.clone()),
        ("started_at", started.clone()),
        ("reason", String::new()),
        ("waiting_on", String::new()),
        ("affinity_since", String::new()),
    ]);
    m.bump_attempt = true;
    let Moved::Done { attempt, tries, .. } = hold.apply(m).await? else {
        return Err(Fenced);
    };
    if let Some(ws) = workspace {
        let noted = async {
            ctx.store.set_workspace_host(ws, &ctx.host).await?;
            ctx.store.set_workspace_job(ws, &id).await
        };
        if let Err(e) = noted.await {
            tracing::debug!(job = %id, error = %e, "cannot note this host and job as the workspace's");
        }
    }
    let reaped = docker::reap_job(&ctx.docker, ctx.store.keys().namespace(), &id).await;
    if reaped > 0 {
        tracing::info!(job = %id, reaped, "removed containers of an earlier attempt");
    }
    let repo = agentq_shared::workspace::Workspace::for_input(&ctx.cfg.workspace_root, &rec.input)
        .ok()
        .map(|w| w.repo_dir());
    let beat =
        match crate::deadman::Beat::create(&ctx.cfg.workspace_root, &format!("{id}-{attempt}")) {
            Ok(b) => Some(Arc::new(b)),
            Err(e) => {
                tracing::warn!(job = %id, error = %e, "cannot make the agent's heartbeat file");
                None
            }
        };
    let (stop, guard) = spawn_guard(
        ctx.clone(),
        hold.clone(),
        agent.clone(),
        workspace.map(str::to_string),
        repo,
        beat.clone(),
    );
    ctx.running.lock().unwrap().insert(id.clone());
    let began = std::time::Instant::now();
    let run = Run {
        ctx,
        hold,
        rec: &rec,
        attempt,
        started: &started,
        beat: beat.as_deref(),
    };
    let outcome = stages(&run, stop).await;
    ctx.running.lock().unwrap().remove(&id);
    guard.abort();
    match &outcome {
        Err(StageError::Infra(..)) => {}
        _ => ctx.breaker.success(),
    }
    let result = record_outcome(&run, tries, outcome).await;
    if let Ok(Some(after)) = ctx.store.get(&id).await {
        if after.state.is_final() {
            ctx.metrics
                .job_finished(agent.pool(), after.state, began.elapsed());
        }
    }
    result
}

/// One admitted run of a job: what every stage needs.
pub(crate) struct Run<'a> {
    pub(crate) ctx: &'a Arc<WorkerCtx>,
    pub(crate) hold: &'a Hold,
    pub(crate) rec: &'a JobRecord,
    pub(crate) attempt: u32,
    pub(crate) started: &'a str,
    pub(crate) beat: Option<&'a crate::deadman::Beat>,
}

impl Run<'_> {
    /// Identifies this run's containers, with the watchdog wired in.
    pub(crate) fn container_job<'b>(
        &'b self,
        agent: &'b AgentSpec,
        prompt: &'b str,
        dirs: &'b RunDirs,
    ) -> ContainerJob<'b> {
        ContainerJob {
            job_id: &self.rec.id,
            attempt: self.attempt,
            worker_id: &self.ctx.worker_id,
            namespace: self.ctx.store.keys().namespace(),
            agent,
            prompt,
            repo_dir: &dirs.repo,
            input_dir: &dirs.input,
            user: self.ctx.agent_user(),
            watchdog: self.beat.map(|b| Watchdog {
                bin_dir: &self.ctx.watchdog_dir,
                beat_dir: b.dir(),
                stale_after: self.ctx.cfg.fence_after(),
            }),
        }
    }
}

/// A workspace's directories that containers mount.
pub(crate) struct RunDirs {
    repo: PathBuf,
    input: PathBuf,
}

impl RunDirs {
    pub(crate) fn of(ws: &Workspace) -> Self {
        Self {
            repo: ws.repo_dir(),
            input: ws.input_dir(),
        }
    }
}

/// Writes what the stages' result means for the job.
async fn record_outcome(
    run: &Run<'_>,
    tries: u32,
    outcome: Result<(), StageError>,
) -> Result<(), Fenced> {
    let (ctx, hold, rec) = (run.ctx, run.hold, run.rec);
    match outcome {
        Ok(()) => Ok(()),
        Err(StageError::Fenced) => Err(Fenced),
        Err(StageError::Infra(e, ws)) => {
            let text = format!("{e:#}");
            if ctx.breaker.failure(&text) {
                tracing::error!(reason = %text, cooldown_secs = ctx.cfg.host_cooldown_secs, "host degraded: taking no jobs for a while");
            }
            if e.downcast_ref::<docker::HostError>().is_some() {
                tracing::warn!(job = %rec.id, error = %text, "this host cannot run the job; handed back without spending an attempt");
                return hand_back(
                    hold,
                    JobState::Waiting,
                    WaitReason::HostError,
                    Some(tries),
                    &[("error", text)],
                )
                .await;
            }
            infra_failure(run, tries, e, ws).await
        }
        Err(StageError::Job(msg)) => {
            tracing::warn!(job = %rec.id, error = %msg, "job cannot run");
            hold.move_to(
                JobState::Failed,
                &[
                    ("error", msg.clone()),
                    ("question", msg),
                    ("finished_at", now_rfc3339()),
                ],
            )
            .await
        }
        Err(StageError::Interrupted) => {
            tracing::info!(job = %rec.id, "worker shutting down; job handed back to the queue");
            hand_back(
                hold,
                JobState::Queued,
                WaitReason::Shutdown,
                Some(tries),
                &[],
            )
            .await
        }
        Err(StageError::SelfFenced) => {
            tracing::warn!(job = %rec.id, "agent stopped (lease not renewable); handing the job back if it is still ours");
            hand_back(
                hold,
                JobState::Waiting,
                WaitReason::Fenced,
                Some(tries),
                &[],
            )
            .await
        }
    }
}

enum StageError {
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
}

impl From<Fenced> for StageError {
    fn from(_: Fenced) -> Self {
        StageError::Fenced
    }
}

async fn stages(run: &Run<'_>, stop: watch::Receiver<StopReason>) -> Result<(), StageError> {
    let (ctx, hold, rec, attempt, started) = (run.ctx, run.hold, run.rec, run.attempt, run.started);
    let input = &rec.input;
    let agent = AgentSpec::parse(&input.agent).map_err(|e| StageError::Infra(e.into(), None))?;

    // Stage 1: prep.
    let issue = crate::forge::issue_for_prompt(ctx, input).await;
    let prepared = prepare(&ctx.cfg, rec, issue, ctx.agent_ids()).await;
    if input.dry_run {
        // The throwaway copy goes, whatever prep did; the real workspace was
        // never touched.
        let root = crate::prep::workspace_root(&ctx.cfg, rec);
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(root)).await;
    }
    let prepared = prepared.map_err(|e| match e {
        PrepError::Job(m) => StageError::Job(m),
        PrepError::Infra(e) => StageError::Infra(e, None),
    })?;
    let ws = prepared.workspace.clone();

    if input.dry_run {
        hold.move_to(
            JobState::Completed,
            &[
                ("branch", prepared.branch.clone()),
                ("prompt", prepared.prompt.clone()),
                ("finished_at", now_rfc3339()),
            ],
        )
        .await?;
        return Ok(());
    }
    let ws_dir = ws.dir.to_string_lossy().into_owned();
    hold.set_fields(&[
        ("workspace_dir", ws_dir.clone()),
        ("branch", prepared.branch.clone()),
        (
            "resumed",
            if prepared.resumed { "1" } else { "0" }.to_string(),
        ),
    ])
    .await?;

    // Stage 2: run the agent.
    let runs = rec.runs + 1;
    write_status(rec, &prepared, JobState::Running, runs, attempt, started);
    // The prompt goes on the record too: a resume on another host has it all.
    hold.move_to(
        JobState::Running,
        &[
            ("runs", runs.to_string()),
            ("prompt", prepared.prompt.clone()),
        ],
    )
    .await?;
    match *stop.borrow() {
        StopReason::Shutdown => return Err(StageError::Interrupted),
        StopReason::Fenced => return Err(StageError::SelfFenced),
        _ => {}
    }
    let mut forge_errors = report::ForgeErrors::default();
    let clock = report::start_timer(ctx, rec, &mut forge_errors).await;
    let ran = std::time::Instant::now();
    let ended = run_agent(run, &agent, &prepared, stop.clone()).await;
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
    let repo = ws.repo_dir();
    let (mut state, mut question, exit_code, take_commits) = match decide_outcome(
        &ended,
        size,
        limit,
        || read_blocked(&repo),
        ctx.cfg.timeout_for(agent.pool()),
    ) {
        RunOutcome::Ended {
            state,
            message,
            exit_code,
            take_commits,
        } => (state, message, exit_code, take_commits),
        RunOutcome::Interrupted => return Err(StageError::Interrupted),
        RunOutcome::SelfFenced => return Err(StageError::SelfFenced),
    };
    // The agent's commits, taken as data into the worker repository.
    if take_commits {
        match import_commits(run, &agent, &prepared).await {
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
    match ctx
        .store
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

    // The agent branch goes to the shared remote after every run that could
    // leave commits, so any host can carry on from it. Nothing leaves from a run
    // that lost its job.
    if *stop.borrow() == StopReason::Fenced {
        return Err(StageError::SelfFenced);
    }
    let saved = if take_commits {
        match save_branch(&ctx.cfg, input, &prepared, &ctx.host).await {
            Ok(s) => s,
            Err(e @ SaveError::Moved { .. }) => {
                tracing::warn!(job = %rec.id, error = %e, "agent branch not saved");
                state = JobState::Failed;
                question = e.to_string();
                Saved::Nothing
            }
            Err(e @ SaveError::Failed(_)) => {
                forge_errors.add("save branch", e);
                Saved::Nothing
            }
        }
    } else {
        Saved::Nothing
    };

    // Stage 3: QA, with the branch saved first so its head can carry a status.
    let mut qa = None;
    let mut pr_url = None;
    if state == JobState::Completed {
        let pushed = report::pull_branch(ctx, rec, &prepared, &saved, &mut forge_errors).await;
        if ctx.cfg.auto_qa {
            hold.move_to(JobState::Qa, &[]).await?;
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
            let result = crate::qa::run(run, &agent, &prepared, stop.clone())
                .await
                .map_err(|e| StageError::Infra(e, Some(ws.clone())))?;
            let result = match result {
                Ok(r) => r,
                Err(Ended::Interrupted) => return Err(StageError::Interrupted),
                Err(Ended::Fenced) => return Err(StageError::SelfFenced),
                Err(_) => QaResult {
                    status: QaStatus::Failed,
                    command: String::new(),
                    detail: "cancelled".into(),
                    output_tail: String::new(),
                },
            };
            if result.status == QaStatus::Failed {
                state = JobState::Failed;
                question = result.question();
            }
            if let Some(p) = &pushed {
                let (st, desc) = match result.status {
                    QaStatus::Failed => (CommitState::Failure, question.clone()),
                    QaStatus::Passed => (CommitState::Success, "QA passed".to_string()),
                    QaStatus::Skipped => (
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
        hold.move_to(JobState::Reporting, &[]).await?;
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
        status: q.status,
        command: q.command.clone(),
        output_tail: q.output_tail.clone(),
    });
    let st = WorkspaceStatus {
        status: state,
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
                .map(|q| q.status.to_string())
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
    hold.move_to(state, &fields).await?;
    tracing::info!(job = %rec.id, state = %state, "job finished");
    Ok(())
}

async fn run_agent(
    run: &Run<'_>,
    agent: &AgentSpec,
    prepared: &Prepared,
    stop: watch::Receiver<StopReason>,
) -> anyhow::Result<Ended> {
    let (ctx, rec) = (run.ctx, run.rec);
    let ws = &prepared.workspace;
    let dirs = RunDirs::of(ws);
    let job = run.container_job(agent, &prepared.prompt, &dirs);
    let body = agent_container(&ctx.cfg, &job, |k| std::env::var(k).ok());
    let name = format!("agentq-{}-{}", rec.id.to_lowercase(), run.attempt);
    let timeout = Duration::from_secs(ctx.cfg.timeout_for(agent.pool()));
    let hold = run.hold.clone();
    let (container, ended) = docker::run_container(
        &ctx.docker,
        &name,
        body,
        &ws.agent_log(agent.pool()),
        docker::LogTail {
            hold: run.hold.clone(),
        },
        timeout,
        Duration::from_secs(ctx.cfg.docker.stop_grace_secs),
        stop,
        |cid| {
            let cid = cid.to_string();
            tokio::spawn(async move {
                let _ = hold.set_fields(&[("container", cid)]).await;
            });
        },
    )
    .await?;
    let _ = run.hold.set_fields(&[("container", container)]).await;
    Ok(ended)
}

/// Records an infrastructure failure: another delivery later while attempts remain,
/// else the job fails with the error.
async fn infra_failure(
    run: &Run<'_>,
    tries: u32,
    err: anyhow::Error,
    ws: Option<Workspace>,
) -> Result<(), Fenced> {
    let (ctx, hold, rec, attempt) = (run.ctx, run.hold, run.rec, run.attempt);
    let text = format!("{err:#}");
    let max = rec.max_attempts.max(1);
    if tries < max {
        let delay = retry_delay(ctx.cfg.retry_base_secs, tries);
        tracing::warn!(job = %rec.id, attempt, max, error = %text, ?delay, "infrastructure error; retrying");
        return hold
            .apply(
                Move::to(JobState::Waiting)
                    .fields(&[
                        ("reason", WaitReason::Retry.as_str().to_string()),
                        ("error", text),
                    ])
                    .deliver(delay, false),
            )
            .await
            .map(|_| ());
    }
    tracing::error!(job = %rec.id, attempt, error = %text, "infrastructure error; giving up");
    let question = format!("Infrastructure error after {tries} attempts: {text}");
    if let Some(ws) = ws {
        let st = WorkspaceStatus {
            status: JobState::Failed,
            question: question.clone(),
            ..base_status(rec, rec.runs, attempt, run.started, ws_branch(rec))
        };
        let _ = st.write_atomic(&ws.status_file());
    }
    hold.move_to(
        JobState::Failed,
        &[
            ("error", text),
            ("question", question),
            ("finished_at", now_rfc3339()),
        ],
    )
    .await
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
        status: JobState::Running,
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
        status: state,
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
