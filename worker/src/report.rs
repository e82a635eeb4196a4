//! Write-back to the forge: time tracked on the issue, branch push, commit status, pull
//! request and the outcome comment (upstream `auto_pr.go`). Forge trouble is
//! recorded on the job and never changes the job's own outcome.

mod budget;
mod comment;
mod pull;
mod redo;
mod status;
mod time;

use agentq_shared::{forge::ForgeClient, record::JobRecord};

pub use self::{
    budget::ForgeErrors,
    comment::{comment, Comment},
    pull::{open_pull, pull_branch, Pushed},
    redo::{CommentText, WriteBack},
    status::set_status,
    time::{start_timer, track_time},
};
use crate::context::WorkerCtx;

/// The forge to write back to: there is one and the job names an issue.
fn forge_for<'a>(ctx: &'a WorkerCtx, rec: &JobRecord) -> Option<&'a ForgeClient> {
    (rec.input.issue > 0).then_some(()).and(ctx.forge.as_ref())
}
