//! The worker's start-up question to Redis: may it be trusted with jobs? An
//! evicting `maxmemory-policy` or a server older than 6.2 refuses the start
//! (exit 2, one line naming the setting or version and the fix); persistence off or a policy that cannot be read is
//! one warning line each. From then on the connection refuses every command
//! to an evicting server (see `agentq_shared::conn`), so a policy changed
//! while the worker runs stops its writes at the next reconnect or within
//! `RECHECK_SERVER_EVERY`.

use agentq_shared::store::{redact_url, JobStore};

/// Redis would lose jobs: the worker does not start (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Asks the server, refuses an evicting one, warns of the rest, then turns
/// the connection's refusal on.
///
/// # Errors
/// [`Refused`]; Redis unreachable.
pub async fn check(store: &JobStore, url: &str) -> anyhow::Result<()> {
    let conn = store.conn();
    let check = conn.server_check().await?;
    if let Some(why) = check.refusal().or_else(|| check.too_old()) {
        return Err(Refused(format!("refusing Redis at {}: {why}", redact_url(url))).into());
    }
    for w in check.warnings() {
        tracing::warn!("{w}");
    }
    conn.refuse_evicting();
    Ok(())
}
