//! Prep: the run's output directory, the workspace (branch, prompt), and the
//! agent's container started, held, beside it.

use agentq_shared::{
    agent::AgentSpec,
    container::{agent_container, held, GO_FILE},
    transition::{Note, Transition},
    workspace::Workspace,
};

use crate::{
    docker,
    prep::{prepare, PrepError, Prepared},
    run::{Run, RunDirs},
};

use super::StageError;

/// Makes the run's output directory fresh and empty (see
/// [`crate::summary`]); nothing for a dry run, which runs no agent.
pub(super) async fn make_out_dir(run: &Run<'_>) -> Result<(), StageError> {
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
pub(super) async fn prep(run: &Run<'_>) -> Result<Option<Prepared>, StageError> {
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
pub(super) struct HeldAgent {
    pub(super) started: docker::Started,
    pub(super) go: std::path::PathBuf,
    /// The build caches it has mounted (`cache_for_agents`), in use until
    /// the run ends.
    pub(super) caches: Option<crate::qa_cache::CacheUse>,
}

/// Starts the run's agent container, held, so that Docker starts it while the
/// workspace is prepared. `None` for a dry run, without a watchdog (nothing to
/// hold it), or when Docker fails: the agent stage then starts the container
/// once its command is known, as it would anyway, and meets the error there.
pub(super) async fn start_held(run: &Run<'_>, agent: &AgentSpec) -> Option<HeldAgent> {
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
    let mut body = held(agent_container(&ctx.cfg, &job, |k| std::env::var(k).ok()))?;
    let caches = agent_caches(run, &ws.dir, &mut body).await;
    tracing::trace!(job = %rec.id, "creating the agent's container");
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
            caches,
        }),
        Err(e) => {
            tracing::debug!(job = %rec.id, error = %e, "cannot start the agent's container ahead of prep");
            None
        }
    }
}

/// With `cache_for_agents = true`, the host's build caches mounted into the
/// agent's container body too (see [`crate::qa_cache`]).
pub(super) async fn agent_caches(
    run: &Run<'_>,
    ws_dir: &std::path::Path,
    body: &mut bollard::models::ContainerCreateBody,
) -> Option<crate::qa_cache::CacheUse> {
    if !run.ctx.cfg.cache_for_agents {
        return None;
    }
    let caches = crate::qa_cache::acquire(run.ctx, ws_dir).await?;
    caches.apply(body);
    Some(caches)
}

/// What [`docker::start`] calls with each container it creates: the id goes on
/// the record at once (without holding the start up).
pub(super) fn note_container<'r>(run: &Run<'r>) -> impl Fn(&str) + 'r {
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
pub(super) async fn release(run: &Run<'_>, held: Option<HeldAgent>) {
    if let Some(h) = held {
        docker::remove(&run.ctx.docker, &h.started.id).await;
    }
}
