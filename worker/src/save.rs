//! Saving the agent branch where every host can reach it.
//!
//! A host's workspace is a cache. After every run that left commits (completed,
//! blocked, failed or timed out) the agent branch goes from the worker
//! repository to the job's remote (`{git_base}/{org}/{repo}.git`, the forge when
//! one is configured), so the next job for the workspace (a retry, a resume, a
//! second dispatch) can run on any host and start from it. The push is a
//! compare-and-swap on the remote's commit: it replaces exactly the commit prep
//! saw there (or creates the branch), and is refused if the remote branch moved
//! to a commit this run never saw.

use crate::{
    git::{git_with, rev_parse, Credentials},
    prep::{clone_url, Prepared},
};
use agentq_shared::config::Config;
use agentq_shared::input::DispatchInput;

/// Where the agent branch stands after [`save_branch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Saved {
    /// No agent branch in the worker repository: nothing was ever committed.
    Nothing,
    /// The remote has the branch at this commit.
    At(String),
}

/// Why the branch could not be saved.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// The remote branch moved to a commit this run never saw: not overwritten.
    #[error("the remote branch {branch} moved while the job ran (to a commit this run never saw); not overwritten: the run's commits are only on host {host}")]
    Moved {
        /// The branch.
        branch: String,
        /// The host that has the commits.
        host: String,
    },
    /// Git or the network failed.
    #[error("cannot save the agent branch to the remote: {0:#}")]
    Failed(anyhow::Error),
}

/// Pushes the agent branch to the job's remote if it is not there yet (see the
/// module docs). `head`: where the branch is, when the caller has just moved
/// it there (the import): not looked up again.
///
/// # Errors
/// [`SaveError`].
pub async fn save_branch(
    cfg: &Config,
    input: &DispatchInput,
    prepared: &Prepared,
    host: &str,
    head: Option<&str>,
) -> Result<Saved, SaveError> {
    let git_dir = prepared.workspace.worker_repo();
    let local = format!("refs/heads/{}", prepared.branch);
    let sha = match head {
        Some(h) => Some(h.to_string()),
        None => rev_parse(&git_dir, &local).await,
    };
    let Some(sha) = sha else {
        return Ok(Saved::Nothing);
    };
    if prepared.remote_sha.as_deref() == Some(sha.as_str()) {
        return Ok(Saved::At(sha));
    }
    let url = clone_url(cfg, input);
    let creds = Credentials::for_url(cfg, &url).map_err(|e| SaveError::Failed(e.into()))?;
    let lease = format!(
        "--force-with-lease={local}:{}",
        prepared.remote_sha.as_deref().unwrap_or("")
    );
    // The commit itself, not the ref: what is pushed is what `Saved` says.
    let refspec = format!("{sha}:{local}");
    match git_with(
        &git_dir,
        &["push", "--quiet", &lease, "--", &url, &refspec],
        creds.as_ref(),
    )
    .await
    {
        Ok(_) => Ok(Saved::At(sha)),
        Err(e) => {
            let text = format!("{e:#}");
            if [
                "stale info",
                "[rejected]",
                "fetch first",
                "non-fast-forward",
            ]
            .iter()
            .any(|m| text.contains(m))
            {
                Err(SaveError::Moved {
                    branch: prepared.branch.clone(),
                    host: host.to_string(),
                })
            } else {
                Err(SaveError::Failed(e))
            }
        }
    }
}
