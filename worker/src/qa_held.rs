//! QA's container started ahead (issue 34): created and started while the
//! agent runs, held, so that QA itself only makes the checkout and writes
//! the plan (Docker's start is about as long as a warm Go build).
//!
//! It is the same container QA would start (the body of
//! [`crate::qa_together::body`], from `qa_container`, with the same caches
//! of [`crate::qa_cache`]), only earlier: its watchdog runs nothing until
//! the worker writes the plan to the run's heartbeat directory (read-only in
//! the container; `worker/watchdog/main.rs`, `--after` with no command), and
//! its `/workspace` is `.meta/qa-tree`, made empty beforehand and filled in
//! place by [`crate::checkout::Checkout::make`]. Nothing of the agent's is
//! in it, and it runs nothing of the agent's before the plan: the checkout
//! is the commit's files, written by the worker.
//!
//! Started only where QA will most likely run commands: `auto_qa`, a
//! watchdog, and QA commands for the repository as it is before the agent
//! (the pool's configured ones, or a language detected in the start tree).
//! A run whose QA then has none (or that never gets to QA: failed,
//! cancelled, stopped) drops its [`HeldQa`], which removes the container
//! (and lets go of its caches) in a task of its own, off the job's path.
//! If the worker dies meanwhile, the run's heartbeat goes stale and the
//! watchdog ends the container; the janitor removes it by its labels
//! (job, worker, namespace), as any container of a run no longer held.

use agentq_shared::agent::AgentSpec;

use crate::{docker, prep::Prepared, qa_cache::CacheUse, run::Run};

/// A QA container being started, or started, ahead of QA.
pub(crate) struct HeldQa {
    start: Option<tokio::task::JoinHandle<Option<Ready>>>,
    ctx: std::sync::Arc<crate::context::WorkerCtx>,
    /// The run's removals: an unused container's is one of them, so the
    /// job's end waits for it as for the run's other containers.
    removals: crate::run::Removals,
}

/// A held QA container, started.
pub(crate) struct Ready {
    pub(crate) started: docker::Started,
    /// The caches it has mounted, in use until it is removed.
    pub(crate) caches: Option<CacheUse>,
}

/// Starts the run's QA container ahead of QA, when QA will most likely
/// need it (see the module docs); `None` otherwise.
pub(crate) fn start(run: &Run<'_>, agent: &AgentSpec, prepared: &Prepared) -> Option<HeldQa> {
    let ctx = run.ctx;
    let beat = run.beat?;
    if !ctx.cfg.auto_qa || run.rec.input.dry_run {
        return None;
    }
    let ws = &prepared.workspace;
    if crate::qa::commands(ctx, agent, &ws.repo_dir()).is_empty() {
        return None;
    }
    // A plan left by an earlier run of the same name is never run.
    let plan = crate::qa_together::plan_file(beat);
    if let Err(e) = std::fs::remove_file(&plan) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::debug!(job = %run.rec.id, error = %e, "cannot remove an old QA plan; QA starts its container then");
            return None;
        }
    }
    let tree = match crate::checkout::make_empty(ws) {
        Ok(t) => t,
        Err(e) => {
            tracing::debug!(job = %run.rec.id, error = %e, "cannot make the QA checkout's directory ahead");
            return None;
        }
    };
    let mut body = crate::qa_together::body(run, agent, ws, &tree);
    let name = crate::qa_together::name(run);
    let (ctx, ws_dir, job) = (ctx.clone(), ws.dir.clone(), run.rec.id.clone());
    let held_ctx = ctx.clone();
    let task = tokio::spawn(async move {
        let caches = crate::qa_together::with_caches(&ctx, &ws_dir, &mut body).await;
        match docker::start(&ctx.docker, &name, body, |_| {}).await {
            Ok(started) => {
                // Before the plan, so before anything runs in it.
                crate::fuse_root::open(&ctx, &started.id).await;
                Some(Ready { started, caches })
            }
            Err(e) => {
                tracing::debug!(job = %job, error = %e, "cannot start the QA container ahead; QA starts it then");
                None
            }
        }
    });
    Some(HeldQa {
        start: Some(task),
        ctx: held_ctx,
        removals: run.removals.clone(),
    })
}

impl HeldQa {
    /// The container, once started; `None` when it could not be (QA then
    /// starts one as before).
    pub(crate) async fn take(mut self) -> Option<Ready> {
        let task = self.start.take()?;
        task.await.ok().flatten()
    }
}

impl Drop for HeldQa {
    /// Unused: the container goes (once started), beside what follows, and
    /// before the job's end is written (one of the run's removals).
    fn drop(&mut self) {
        let Some(task) = self.start.take() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let docker = self.ctx.docker.clone();
        self.removals.after(&self.ctx, async move {
            if let Ok(Some(ready)) = task.await {
                crate::run::remove_now(&docker, &ready.started.id).await;
                drop(ready.caches);
            }
        });
    }
}
