//! Flagging a pull request for a person (upstream `verify.go`,
//! `flagForReview`): the `needs-review` label (created if the repository has
//! none), a comment saying exactly why, and an `event=needs_review` entry in
//! the events stream for the notifier. Each write is idempotent: the label is
//! looked up before it is created, adding a label it has changes nothing, and
//! the comment is found by its marker and edited rather than repeated.

use agentq_shared::record::JobRecord;

use super::decide::Review;
use crate::context::WorkerCtx;

/// The label.
pub const LABEL: &str = "needs-review";

/// Its colour (upstream's).
const COLOR: &str = "#e11d48";

/// The hidden marker of the verify comment of job `id`.
pub fn marker(id: &str) -> String {
    format!("<!-- agentq:verify={id} -->")
}

/// The comment's text.
pub fn comment_body(rec: &JobRecord, why: &Review) -> String {
    let detail = match why {
        Review::ChecksFailed(c) => format!(
            "These checks failed on the head commit:\n\n{}",
            c.iter().map(|c| format!("- `{c}`\n")).collect::<String>()
        ),
        Review::TimedOut { secs, pending } => format!(
            "The checks did not finish within {secs}s (`verify_timeout_secs`). Still pending:\n\n{}",
            pending.iter().map(|c| format!("- `{c}`\n")).collect::<String>()
        ),
        other => format!("{}.\n", other.reason()),
    };
    format!(
        "## Needs review\n\n{detail}\nagentq did not merge this pull request (job `{}`). Labelled `{LABEL}` for a person; `agentq verify {}` runs the check and merge again.\n",
        rec.id, rec.id
    )
}

/// Labels pull request `index`, comments why, and adds the event. Forge
/// failures are logged (the job's outcome stands).
pub async fn flag(ctx: &WorkerCtx, rec: &JobRecord, index: u64, why: &Review) {
    if let Some(forge) = ctx.forge.as_ref() {
        if index > 0 {
            let (o, r) = (&rec.input.org, &rec.input.repo);
            match forge
                .ensure_label(o, r, LABEL, COLOR, "agentq: a person must look")
                .await
            {
                Ok(id) => {
                    if let Err(e) = forge.add_labels(o, r, index, &[id]).await {
                        tracing::warn!(job = %rec.id, error = %e, "cannot label the pull request");
                    }
                }
                Err(e) => {
                    tracing::warn!(job = %rec.id, error = %e, "cannot make the needs-review label")
                }
            }
            let body = comment_body(rec, why);
            if let Err(e) = forge
                .upsert_comment(o, r, index, &marker(&rec.id), &body)
                .await
            {
                tracing::warn!(job = %rec.id, error = %e, "cannot comment on the pull request");
            }
        }
    }
    event(ctx, &rec.id, why).await;
}

/// The `needs_review` entry of the events stream.
pub async fn event(ctx: &WorkerCtx, id: &str, why: &Review) {
    if let Err(e) = ctx.store.add_needs_review_event(id, &why.reason()).await {
        tracing::warn!(job = %id, error = %e, "cannot add the needs_review event");
    }
}
