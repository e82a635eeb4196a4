//! The commit status of the pushed head.

use agentq_shared::{
    forge::{CommitState, CreateStatus},
    record::JobRecord,
};

use super::{ForgeErrors, Pushed};
use crate::context::WorkerCtx;

/// Commit status context agentq reports under.
pub const STATUS_CONTEXT: &str = "agentq/qa";

/// Sets the commit status of the pushed head.
pub async fn set_status(
    ctx: &WorkerCtx,
    rec: &JobRecord,
    pushed: &Pushed,
    state: CommitState,
    description: &str,
    errors: &mut ForgeErrors,
) {
    let Some(forge) = ctx.forge.as_ref() else {
        return;
    };
    let status = CreateStatus {
        state,
        target_url: None,
        description: Some(description.chars().take(140).collect()),
        context: STATUS_CONTEXT.into(),
    };
    errors.redo.for_job(rec).status = Some((pushed.sha.clone(), status.clone()));
    let fc = errors.client(forge);
    let set = errors
        .within(
            "set commit status",
            fc.create_status(&rec.input.org, &rec.input.repo, &pushed.sha, &status),
        )
        .await;
    match set {
        Some(Ok(_)) => errors.redo.status = None,
        Some(Err(e)) => errors.add_forge("set commit status", e),
        None => {}
    }
}
