//! Commit statuses: set once, and read back.

use reqwest::{Method, StatusCode};

use super::ForgeClient;
use crate::forge::{transport::Reply, CombinedStatus, CreateStatus, ForgeError};

impl ForgeClient {
    /// Sets a commit status on `sha`.
    ///
    /// Forgejo answers 500 both for a commit the repository does not have (storing
    /// nothing) and for a failure after the status was stored
    /// (`services/repository/commitstatus`). So after a 5xx (or a lost answer) the
    /// client looks the commit up, then whether the status is now the latest of its
    /// context, and only then tries again.
    ///
    /// # Errors
    ///
    /// [`ForgeError::InvalidArgument`] if `sha` is blank; [`ForgeError::UnknownCommit`]
    /// if the repository has no such commit; [`ForgeError::Client`] (400 bad state,
    /// 403 no write access, 404 no such repository), [`ForgeError::Server`],
    /// [`ForgeError::Transport`].
    pub async fn create_status(
        &self,
        owner: &str,
        repo: &str,
        sha: &str,
        status: &CreateStatus,
    ) -> Result<(), ForgeError> {
        if sha.trim().is_empty() {
            return Err(ForgeError::InvalidArgument(
                "the commit sha is empty".into(),
            ));
        }
        let segs = ["repos", owner, repo, "statuses", sha];
        let payload = serde_json::to_value(status)
            .map_err(|e| ForgeError::InvalidArgument(format!("cannot encode the status: {e}")))?;
        self.write_looking_first("POST commit status", |_| {
            let (segs, payload) = (&segs, &payload);
            async move {
                let result = self.post_once(segs, Some(payload)).await;
                match result {
                    Ok(reply) => self.t.check_success(&Method::POST, segs, &reply).map(Ok),
                    Err(e) if e.is_transient() => {
                        if !self.commit_exists(owner, repo, sha).await? {
                            return Err(ForgeError::UnknownCommit {
                                sha: sha.to_string(),
                                status: e.status().unwrap_or(0),
                            });
                        }
                        let combined = self.combined_status(owner, repo, sha).await?;
                        let latest = combined.statuses.unwrap_or_default();
                        let stored = latest
                            .iter()
                            .any(|s| s.context.trim() == status.context.trim() && s.is(status));
                        Ok(if stored { Ok(()) } else { Err(e) })
                    }
                    Err(e) => Err(e),
                }
            }
        })
        .await
    }

    /// Whether the repository has commit `sha` (`GET /git/commits/{sha}`, without
    /// stats, verification or files).
    ///
    /// # Errors
    ///
    /// [`ForgeError::Client`] other than 404, [`ForgeError::Server`],
    /// [`ForgeError::Transport`].
    pub async fn commit_exists(
        &self,
        owner: &str,
        repo: &str,
        sha: &str,
    ) -> Result<bool, ForgeError> {
        let segs = ["repos", owner, repo, "git", "commits", sha];
        let query = [
            ("stat", "false".to_string()),
            ("verification", "false".to_string()),
            ("files", "false".to_string()),
        ];
        let reply: Reply = self
            .t
            .execute(Method::GET, &segs, &query, None, self.retry)
            .await?;
        match reply.status {
            StatusCode::NOT_FOUND => Ok(false),
            s if s.is_success() => Ok(true),
            _ => Err(self.t.client_error(&Method::GET, &segs, &reply)),
        }
    }

    /// The latest status of each context on `reference` (a sha, branch or tag).
    ///
    /// # Errors
    ///
    /// [`ForgeError::Client`], [`ForgeError::Server`], [`ForgeError::Transport`],
    /// [`ForgeError::Decode`].
    pub async fn combined_status(
        &self,
        owner: &str,
        repo: &str,
        reference: &str,
    ) -> Result<CombinedStatus, ForgeError> {
        // `{ref}` is one path segment; a `/` in it travels encoded.
        self.get(
            &["repos", owner, repo, "commits", reference, "status"],
            &[("limit", self.page_size.to_string())],
        )
        .await
    }
}
