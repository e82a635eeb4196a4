//! The worker's use of the Forgejo forge (temporary stub until the client lands).

use std::sync::Arc;

use agentq_shared::{config::Config, input::DispatchInput};

use crate::context::WorkerCtx;

/// Stub.
pub fn client(_cfg: &Config) -> anyhow::Result<Option<()>> {
    Ok(None)
}

/// Stub.
pub async fn issue_for_prompt(
    _ctx: &Arc<WorkerCtx>,
    _input: &DispatchInput,
) -> Option<(String, String)> {
    None
}
