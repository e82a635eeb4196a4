//! The worker's use of the Forgejo forge.

use std::sync::Arc;

use agentq_shared::{
    config::Config,
    forge::{ForgeClient, RetryPolicy},
    input::DispatchInput,
};

use crate::context::WorkerCtx;

/// A forge client from the configuration, `None` when no forge is configured.
/// The token is read from the environment variable the config names; retries
/// follow `[forge] max_retries` and `retry_base_ms`.
///
/// # Errors
/// An invalid base URL.
pub fn client(cfg: &Config) -> anyhow::Result<Option<ForgeClient>> {
    if cfg.forge.url.is_empty() {
        return Ok(None);
    }
    let token = std::env::var(&cfg.forge.token_env)
        .ok()
        .filter(|t| !t.is_empty());
    Ok(Some(ForgeClient::new(
        &cfg.forge.url,
        token,
        RetryPolicy::from(&cfg.forge),
    )?))
}

/// The issue's title and body for the prompt, when the job has an issue and a
/// forge is configured. A forge that cannot answer does not stop the job: the
/// prompt says the issue could not be read.
pub async fn issue_for_prompt(
    ctx: &Arc<WorkerCtx>,
    input: &DispatchInput,
) -> Option<(String, String)> {
    if input.issue == 0 {
        return None;
    }
    let forge = ctx.forge.as_ref()?;
    let budget = std::time::Duration::from_secs(ctx.cfg.forge.timeout_secs);
    // Its requests end by the budget; the timeout is the backstop.
    let forge = forge.with_deadline(tokio::time::Instant::now() + budget);
    let read = tokio::time::timeout(
        budget + std::time::Duration::from_millis(500),
        forge.get_issue(&input.org, &input.repo, input.issue),
    )
    .await
    .unwrap_or_else(|_| {
        Err(agentq_shared::forge::ForgeError::Transport(format!(
            "the forge did not answer within {}s (forge.timeout_secs)",
            budget.as_secs()
        )))
    });
    match read {
        Ok(issue) => Some((issue.title, issue.body)),
        Err(e) => {
            tracing::warn!(org = %input.org, repo = %input.repo, issue = input.issue, error = %e, "cannot read the issue from the forge");
            Some((
                format!("Issue #{}", input.issue),
                format!("(agentq could not read this issue from the forge: {e})"),
            ))
        }
    }
}
