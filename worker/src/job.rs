//! One delivery of one job, its life read top to bottom: take the job (run
//! lease and fencing token), decide whether it may start (cancel, shutdown, a
//! degraded host, its slot, its workspace), run its stages
//! ([`crate::stages`]), and record what their result means. Every state change
//! is a [`Transition`]; infrastructure errors are retried, agent outcomes are
//! final.

use std::{panic::AssertUnwindSafe, sync::Arc, time::Duration};

use futures::FutureExt;

use agentq_shared::{
    agent::{AgentError, AgentSpec},
    clock::now_ms,
    record::{JobRecord, RecordView},
    stamp::Stamp,
    status::{JobState, WaitReason},
    store::lease::Acquire,
    store::wslease::{workspace_key, WorkspaceTake},
    store::{Delivery, Moved},
    transition::{Outcome, ParkIn, RunReport, Transition},
    workspace::Workspace,
};

use crate::{
    context::WorkerCtx,
    deadman::Beat,
    docker,
    guard::spawn_guard,
    hold::{until_redis_answers, Fenced, Hold},
    run::Run,
    stages::{stages, StageError},
};

/// Handles one delivery. Never fails: every outcome is written to the job's record.
///
/// The work runs on its own task, so that if apalis drops the handler (its stream
/// failing on a Redis outage) the job still finishes and records its outcome.
/// That task is one of the worker's jobs ([`WorkerCtx::jobs`]): `main` waits
/// for it at shutdown.
pub async fn process(ctx: Arc<WorkerCtx>, delivery: Delivery) {
    handle(ctx, delivery, Admit::Decide).await
}

/// Hands a delivery back to its lane unrun, first in line, spending nothing
/// (`reason` says why, e.g. [`WaitReason::NoRoom`]): this worker took it but
/// will not run it. Like [`process`], it takes the job's run lease first, so a
/// stale or duplicate delivery moves nothing.
pub async fn hand_back(ctx: Arc<WorkerCtx>, delivery: Delivery, reason: WaitReason) {
    handle(ctx, delivery, Admit::HandBack(reason)).await
}

/// What to do with a delivery once its job is taken.
#[derive(Debug, Clone, Copy)]
enum Admit {
    /// Decide whether it may start, and run it if so.
    Decide,
    /// Hand it back to its lane, unrun, for this reason.
    HandBack(WaitReason),
}

async fn handle(ctx: Arc<WorkerCtx>, delivery: Delivery, admit: Admit) {
    let id = delivery.job_id.clone();
    let task = ctx
        .jobs
        .clone()
        .spawn(async move { take(&ctx, delivery, admit).await });
    if let Err(e) = task.await {
        tracing::error!(job = %id, error = %e, "job task panicked; the sweep puts the job back once its lease expires");
    }
    crate::memory::give_back();
}

/// Takes the delivery's job (run lease and fencing token), decides what to do
/// with it, and lets the lease go. A delivery is acknowledged only after this
/// returns, and this returns only once the record says how the job goes on.
async fn take(ctx: &Arc<WorkerCtx>, delivery: Delivery, admit: Admit) {
    let store = &ctx.store;
    let id = delivery.job_id.clone();
    let ttl = ctx.cfg.lease_ttl();
    let taken = until_redis_answers("take the delivery", &id, || {
        store.acquire(&delivery, &ctx.worker_id, ttl)
    })
    .await;
    let (token, previous) = match taken {
        Acquire::Acquired { token, previous } => {
            tracing::trace!(job = %id, "delivery taken");
            (token, previous)
        }
        Acquire::Held(holder) => {
            // A duplicate: the holder moves the job on, or the sweep does if it dies.
            tracing::debug!(job = %id, holder = %holder, "job is held by another run; duplicate delivery dropped");
            return;
        }
        Acquire::Stale => {
            tracing::debug!(job = %id, seq = delivery.seq, "stale delivery; skipped");
            return;
        }
        Acquire::Unreadable => {
            tracing::warn!(job = %id, "job record unreadable (fence); job failed");
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
    let rec = until_redis_answers("read the record", &id, || store.view(&id)).await;
    let decided = match (rec, admit) {
        (Some(RecordView::Ok(_)), Admit::HandBack(reason)) => {
            tracing::info!(job = %id, %reason, "job handed back unrun");
            go(
                &hold,
                Transition::handed_back(JobState::Queued, reason, None, None),
            )
            .await
        }
        (Some(RecordView::Ok(rec)), Admit::Decide) => {
            // A panic outside the stages (those catch their own, as a retry)
            // is a bug that would come back on every delivery: the job fails
            // with it at once, never wedged, never re-delivered for ever.
            match AssertUnwindSafe(decide(ctx, &hold, rec))
                .catch_unwind()
                .await
            {
                Ok(decided) => decided,
                Err(panic) => {
                    let msg = panic_message(panic.as_ref());
                    tracing::error!(job = %id, panic = %msg, "the job's admission panicked; job failed");
                    ctx.running.lock().unwrap().remove(&id);
                    go(&hold, Transition::refused(&format!("panic: {msg}"))).await
                }
            }
        }
        (Some(RecordView::Unreadable { problem, .. }), _) => {
            // The record's problem, not the worker's: the job fails, its record
            // kept for inspection, and its slot goes back.
            tracing::warn!(job = %id, field = %problem.field, error = %problem, "job record unreadable; job failed");
            go(&hold, Transition::refused(&problem.to_string())).await
        }
        (None, _) => Ok(()),
    };
    if let Err(Fenced) = decided {
        tracing::info!(job = %id, "run fenced out: another worker owns the job");
        ctx.metrics.run_fenced();
    }
    hold.release().await;
}

/// Cancel, shutdown, a degraded host, admission: then the run itself.
async fn decide(ctx: &Arc<WorkerCtx>, hold: &Hold, rec: JobRecord) -> Result<(), Fenced> {
    let store = &ctx.store;
    let id = rec.id.as_str();
    crate::fault::panic_at("admit");
    let cancel =
        until_redis_answers("read the cancel flag", id, || store.cancel_requested(id)).await;
    if cancel {
        return go(hold, Transition::cancelled()).await;
    }
    if *ctx.shutdown.borrow() != crate::guard::StopReason::None {
        let back = Transition::handed_back(JobState::Queued, WaitReason::Shutdown, None, None);
        return go(hold, back).await;
    }
    // A host whose disk is under `min_free_gb` starts nothing it cannot finish.
    crate::space::degrade_if_full(ctx);
    if let Some((why, _)) = ctx.breaker.degraded() {
        tracing::info!(job = id, reason = %why, "host degraded: job handed back");
        ctx.wakes.degraded.notify_one();
        let back = Transition::handed_back(JobState::Waiting, WaitReason::HostDegraded, None, None);
        return go(hold, back).await;
    }
    let agent = match ctx.cfg.agent_table().parse(&rec.input.agent) {
        Ok(agent) => agent,
        Err(AgentError::Unknown(_)) => {
            // A pool this worker's table does not have (a pool configured on
            // the producer's side and on other workers): never taken here,
            // never dropped; back to its lane, for a worker that runs it (a
            // pool no live worker serves gets no slot).
            tracing::warn!(
                job = id,
                agent = %rec.input.agent,
                "this worker's agent table has no such pool ([agents.NAME] in its agentq.toml); job handed back"
            );
            let back = Transition::handed_back(JobState::Queued, WaitReason::Unserved, None, None);
            return go(hold, back).await;
        }
        Err(e) => {
            // Validated at enqueue; a record edited by hand gets here.
            let msg = format!("agent `{}`: {e}", rec.input.agent);
            return go(hold, Transition::refused(&msg)).await;
        }
    };
    if rec.input.dry_run {
        // A dry run prepares a throwaway copy: no slot, no pacing, no workspace.
        return run_admitted(ctx, hold, &rec, &agent, None).await;
    }
    if !ctx.served.serves(agent.pool()) {
        // Its image is missing here: back to its lane, for a worker that has it.
        tracing::info!(
            job = id,
            pool = agent.pool(),
            "this worker does not run the pool; job handed back"
        );
        let back = Transition::handed_back(JobState::Queued, WaitReason::Unserved, None, None);
        return go(hold, back).await;
    }
    let ttl = ctx.cfg.lease_ttl();
    // A job starts only with a slot a wake granted it (oldest first, pacing and
    // pauses applied there); a delivery without one (a retry after its delay, a
    // hand-back) parks the job in its lane, at its first place in line.
    let granted = until_redis_answers("slot", id, || store.holds_slot(&agent, id, ttl)).await;
    if !granted {
        return go(hold, Transition::parked(ParkIn::Lane, WaitReason::Slot, "")).await;
    }
    let ws = workspace_key(&rec.input);
    if let Some((host, since)) = affinity(ctx, &rec, &ws).await {
        // The host with the workspace claims the job (and its slot) when it has
        // room; this host looks again every few seconds, in case that host died.
        let until = since.ms() + ctx.cfg.affinity_grace_ms();
        let recheck = Duration::from_millis((until - now_ms()).clamp(0, 2_000) as u64);
        go(hold, Transition::left_to_host(&host, since, recheck)).await?;
        if let Err(e) = store.leave_to_host(&host, id, until).await {
            tracing::debug!(job = id, error = %e, "cannot leave the job to its workspace's host; it runs after the grace period");
        }
        return Ok(());
    }
    // A busy workspace: the job parks in its line and gives its slot back.
    let taken = until_redis_answers("workspace", id, || store.take_workspace(&ws, id, ttl)).await;
    if let WorkspaceTake::Busy(holder) = taken {
        let wait = Transition::parked(ParkIn::Workspace(ws), WaitReason::Workspace, &holder);
        return go(hold, wait).await;
    }
    // The run's last move gives the slot back (in the same Lua call).
    let result = run_admitted(ctx, hold, &rec, &agent, Some(&ws)).await;
    if let Err(e) = store.give_back_workspace(&ws, id).await {
        tracing::debug!(job = id, error = %e, "cannot give the workspace back; its lease expires by itself");
    }
    result
}

/// Makes a transition that needs nothing of its result.
async fn go(hold: &Hold, t: Transition) -> Result<(), Fenced> {
    hold.go(t).await.map(|_| ())
}

/// Whether to leave the job to the live host that has its workspace: that host
/// and since when, while `affinity_secs` have not passed. Redis errors mean no
/// affinity (any host may run any job).
async fn affinity(ctx: &WorkerCtx, rec: &JobRecord, ws: &str) -> Option<(String, Stamp)> {
    let grace = ctx.cfg.affinity_grace_ms();
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
    // Redis's clock, as the affinity set's scores and the claim script use.
    let now = ctx.store.redis_now_ms().await.ok()?;
    let since = rec.affinity_since.unwrap_or(Stamp::from_ms(now));
    (now - since.ms() < grace).then_some((owner, since))
}

/// The run of an admitted job: a new attempt, the guard renewing its leases,
/// the stages, and what their result means.
async fn run_admitted(
    ctx: &Arc<WorkerCtx>,
    hold: &Hold,
    rec: &JobRecord,
    agent: &AgentSpec,
    workspace: Option<&str>,
) -> Result<(), Fenced> {
    let id = rec.id.clone();
    let started = Stamp::now();
    let Moved::Done { attempt, tries, .. } = hold
        .go(Transition::preparing(&ctx.host, &ctx.worker_id, started))
        .await?
    else {
        return Err(Fenced);
    };
    if let Some(ws) = workspace {
        if let Err(e) = ctx.store.note_workspace(ws, &ctx.host, &id).await {
            tracing::debug!(job = %id, error = %e, "cannot note this host and job as the workspace's");
        }
    }
    // Only an earlier attempt can have left containers behind (the janitor
    // removes any other stray within 30 s).
    if attempt > 1 {
        let reaped = docker::reap_job(&ctx.docker, ctx.store.keys().namespace(), &id).await;
        if reaped > 0 {
            tracing::info!(job = %id, reaped, "removed containers of an earlier attempt");
        }
    }
    // What the guard measures while the agent runs: its working tree and its
    // output directory, counted together.
    let trees = Workspace::for_input(&ctx.cfg.workspace_root, &rec.input)
        .map(|w| vec![w.repo_dir(), w.agent_out_dir()])
        .unwrap_or_default();
    let beat = match Beat::create(&ctx.cfg.workspace_root, &format!("{id}-{attempt}")) {
        Ok(b) => Some(Arc::new(b)),
        Err(e) => {
            tracing::warn!(job = %id, error = %e, "cannot make the agent's heartbeat file");
            None
        }
    };
    let (stop, guard, tree_arm) = spawn_guard(
        ctx.clone(),
        hold.clone(),
        agent.clone(),
        workspace.map(str::to_string),
        trees,
        beat.clone(),
        rec.admitted_at,
    );
    // Why the run was stopped, if it was: read after the stages, once the
    // guard is gone (its last word stays).
    let stopped = stop.clone();
    ctx.running.lock().unwrap().insert(id.clone());
    let began = std::time::Instant::now();
    // This run's helper tasks: aborted when this function returns or unwinds.
    let helpers = crate::run::RunTasks::default();
    let removals = crate::run::Removals::default();
    let run = Run {
        ctx,
        hold,
        rec,
        attempt,
        started,
        beat: beat.as_deref(),
        tree_arm: &tree_arm,
        helpers: &helpers,
        removals: &removals,
    };
    let outcome = match AssertUnwindSafe(stages(&run, agent, stop))
        .catch_unwind()
        .await
    {
        Ok(outcome) => outcome,
        Err(panic) => Err(StageError::Panic(panic_message(panic.as_ref()))),
    };
    // The run's containers are gone before what its end means is written.
    removals.wait().await;
    ctx.running.lock().unwrap().remove(&id);
    drop(guard);
    if let Err(StageError::Panic(msg)) = &outcome {
        // What the stages held when they unwound: its containers (a held agent
        // container, a QA container) go now, not when the janitor finds them.
        tracing::error!(job = %id, attempt, panic = %msg, "the job's stages panicked");
        let reaped = docker::reap_job(&ctx.docker, ctx.store.keys().namespace(), &id).await;
        if reaped > 0 {
            tracing::info!(job = %id, reaped, "removed the containers of the panicked run");
        }
    }
    if !matches!(outcome, Err(StageError::Infra(..) | StageError::Panic(_))) {
        ctx.breaker.success();
    }
    let by_operator = *stopped.borrow() == crate::guard::StopReason::StopNow;
    let result = after_stages(&run, agent, tries, outcome, by_operator).await;
    if let Ok(Some(after)) = ctx.store.get(&id).await {
        if after.state.is_final() {
            ctx.metrics
                .job_finished(agent.pool(), after.state, began.elapsed());
        }
    }
    result
}

/// Writes what the stages' result means for the job, when the stages did not
/// record an outcome themselves. `stopped_now`: an operator stopped the run
/// (`agentq stop --now`).
async fn after_stages(
    run: &Run<'_>,
    agent: &AgentSpec,
    tries: u32,
    result: Result<(), StageError>,
    stopped_now: bool,
) -> Result<(), Fenced> {
    let (ctx, hold, rec) = (run.ctx, run.hold, run.rec);
    match result {
        Ok(()) => Ok(()),
        Err(StageError::Fenced) => Err(Fenced),
        Err(StageError::Infra(e, _))
            if matches!(
                docker::engine_error(&e),
                Some(docker::EngineError::MissingImage(_))
            ) =>
        {
            // The pool's image went away on this host: this worker stops taking
            // the pool, and the job goes to one that has it, spending nothing.
            let pool = agent.pool();
            if ctx.served.drop_pool(pool) {
                tracing::error!(pool, image = ctx.cfg.image_for(pool), "image of pool {pool} is gone from this host; this worker takes no {pool} jobs any more (build or pull it, then restart the worker)");
            }
            let back = Transition::handed_back(
                JobState::Queued,
                WaitReason::Unserved,
                Some(tries),
                Some(&format!("{e:#}")),
            );
            go(hold, back).await
        }
        Err(StageError::Infra(e, ws)) => {
            let text = format!("{e:#}");
            if ctx.breaker.failure(&text) {
                tracing::error!(reason = %text, cooldown_secs = ctx.cfg.host_cooldown_secs, "host degraded: taking no jobs for a while");
            }
            // A refused container config (400) lands here too: preflight
            // created this host's containers once at start, so the host
            // changed since (a mounted directory vanished). Failing jobs on a
            // broken host would make it a black hole; it degrades instead, and
            // hosts that can run the job do.
            if docker::engine_error(&e).is_some() {
                tracing::warn!(job = %rec.id, error = %text, "this host cannot run the job; handed back without spending an attempt");
                let back = Transition::handed_back(
                    JobState::Waiting,
                    WaitReason::HostError,
                    Some(tries),
                    Some(&text),
                );
                return go(hold, back).await;
            }
            infra_failure(run, tries, &text, ws).await
        }
        Err(StageError::Panic(msg)) => {
            // A bug, not the host's fault: no breaker; the attempt counts.
            infra_failure(run, tries, &format!("panic: {msg}"), None).await
        }
        Err(StageError::Quota(hit)) => crate::quota::wait_for_reset(run, agent, tries, &hit).await,
        Err(StageError::Job(msg)) => {
            tracing::warn!(job = %rec.id, error = %msg, "job cannot run");
            go(hold, Transition::refused(&msg)).await
        }
        Err(StageError::Interrupted) if stopped_now => {
            // First in line (its place kept), its try given back; its pool is
            // paused until an operator unpauses it. Neither the pool's
            // backoff nor the host's breaker counts it.
            tracing::info!(job = %rec.id, "an operator stopped the pool; job handed back to the queue");
            let back =
                Transition::handed_back(JobState::Queued, WaitReason::Stopped, Some(tries), None);
            go(hold, back).await
        }
        Err(StageError::Interrupted) => {
            tracing::info!(job = %rec.id, "worker shutting down; job handed back to the queue");
            let back =
                Transition::handed_back(JobState::Queued, WaitReason::Shutdown, Some(tries), None);
            go(hold, back).await
        }
        Err(StageError::SelfFenced) => {
            tracing::warn!(job = %rec.id, "agent stopped (lease not renewable); handing the job back if it is still ours");
            let back =
                Transition::handed_back(JobState::Waiting, WaitReason::Fenced, Some(tries), None);
            go(hold, back).await
        }
    }
}

/// The text of a caught panic's payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".to_string()
    }
}

/// Records an infrastructure failure: another delivery later while attempts
/// remain, else the job fails with the error.
async fn infra_failure(
    run: &Run<'_>,
    tries: u32,
    text: &str,
    ws: Option<Workspace>,
) -> Result<(), Fenced> {
    let (ctx, hold, rec, attempt) = (run.ctx, run.hold, run.rec, run.attempt);
    let max = rec.max_attempts;
    if tries < max {
        let delay = ctx.cfg.infra_retry_delay(tries);
        tracing::warn!(job = %rec.id, attempt, max, error = %text, ?delay, "infrastructure error; retrying");
        return go(hold, Transition::infra_retry(text, delay)).await;
    }
    tracing::error!(job = %rec.id, attempt, error = %text, "infrastructure error; giving up");
    let outcome = Outcome::fail(format!(
        "Infrastructure error after {tries} attempts: {text}"
    ));
    if let Some(ws) = ws {
        let branch = crate::prep::branch_for(rec, &ws);
        let st = agentq_shared::status::WorkspaceStatus {
            question: outcome.message().to_string(),
            ..run.status(JobState::Failed, rec.runs, branch)
        };
        run.write_status(&ws, &st);
    }
    go(hold, Transition::finished(&outcome, &RunReport::default())).await
}
