//! The agent's commits, taken as data into the worker repository and saved to
//! the shared remote.

use agentq_shared::{
    agent::AgentSpec,
    outcome::{settle, Finding},
    status::JobState,
    transition::{Note, Outcome},
};
use tokio::sync::watch;

use crate::{
    guard::StopReason,
    import::{import_commits, ImportError},
    prep::Prepared,
    report::ForgeErrors,
    run::Run,
    save::{save_branch, SaveError, Saved},
};

use super::{AgentRun, StageError};

/// What [`save`] is to push once the commits are kept: nothing (the run's
/// work is not taken), or the agent branch.
pub(super) enum ToSave {
    /// The run's work is not taken: nothing is saved.
    Nothing,
    /// The agent branch, at `head` when the import just moved it there.
    Branch {
        /// The branch's head, when known without looking it up.
        head: Option<String>,
    },
}

/// The agent's commits, taken as data into the worker repository, and what
/// is to be saved to the shared remote (by [`save`], beside QA, so any host
/// can carry on from them); the pool's backoff told how the run went.
/// Nothing leaves from a run that lost its job.
pub(super) async fn keep_commits(
    run: &Run<'_>,
    agent: &AgentSpec,
    prepared: &Prepared,
    ran: AgentRun,
    stop: &watch::Receiver<StopReason>,
) -> Result<(Outcome, ToSave), StageError> {
    let (ctx, rec) = (run.ctx, run.rec);
    let AgentRun {
        mut outcome,
        take_commits,
        ran_for,
        tree_over,
        quota,
        after,
        ..
    } = ran;
    let ws = &prepared.workspace;
    // Fast failures of a pool are a sign of rate limits: pause it on every host.
    // Only the agent's own run counts: commits refused afterwards (a history
    // rewrite, a bad object, a tree that stalls the export) say nothing of the
    // pool's health, and an agent could pause a pool fleet-wide with them.
    // Nor does a tree over its bounds: the agent made it, whatever it exited.
    let failed = outcome.state() == JobState::Failed && !tree_over;
    let mut kept_patch = false;
    // The branch's head when the import just moved it there.
    let mut head = None;
    if take_commits {
        let imported = match import_commits(run, agent, prepared, after.first()).await {
            Ok(imported) => {
                tracing::debug!(job = %rec.id, ?imported, "agent commits imported");
                if let crate::import::Imported::Head(h) = imported {
                    head = Some(h);
                }
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
            kept_patch = true;
            match crate::leftovers::keep_leftovers(run, agent, prepared, after.get(1)).await {
                Ok(line) => {
                    run.hold.note(&Note::leftovers(&line)).await?;
                }
                Err(e) => return Err(StageError::Infra(e, Some(ws.clone()))),
            }
        }
    }
    if !kept_patch {
        // What the watchdog read out after a run whose work is not taken.
        for name in [
            format!("import-{}.bundle", run.attempt),
            format!("leftovers-{}.patch", run.attempt),
        ] {
            let _ = std::fs::remove_file(ws.meta_dir().join(name));
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
        return Ok((outcome, ToSave::Nothing));
    }
    // The leftovers, when committed, move the branch past the import.
    let head = head.filter(|_| !ctx.cfg.commit_leftovers);
    Ok((outcome, ToSave::Branch { head }))
}

/// Saves the agent branch to the shared remote ([`save_branch`]): where it
/// stands, and the finding when the remote branch moved (the run then fails
/// for it). A push that fails otherwise is a forge error.
pub(super) async fn save(
    run: &Run<'_>,
    prepared: &Prepared,
    to_save: ToSave,
    forge: &mut ForgeErrors,
) -> (Saved, Option<Finding>) {
    let (ctx, rec) = (run.ctx, run.rec);
    let ToSave::Branch { head } = to_save else {
        return (Saved::Nothing, None);
    };
    match save_branch(&ctx.cfg, &rec.input, prepared, &ctx.host, head.as_deref()).await {
        Ok(s) => (s, None),
        Err(e @ SaveError::Moved { .. }) => {
            tracing::warn!(job = %rec.id, error = %e, "agent branch not saved");
            (Saved::Nothing, Some(Finding::BranchMoved(e.to_string())))
        }
        Err(e @ SaveError::Failed(_)) => {
            forge.add("save branch", e);
            (Saved::Nothing, None)
        }
    }
}
