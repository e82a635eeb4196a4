//! What comes after a pull request is open: reading it back, merging it,
//! labelling it and deleting its branch (the calls of upstream `verify.go`:
//! `forgeMergePR`, `ensureLabel`, `getLabelID`, `flagForReview`).
//!
//! Forgejo `routers/api/v1/repo/pull.go` (`MergePullRequest`) answers 200
//! with no body on success; 405 when the pull request cannot be merged as it
//! is (already merged, not in a mergeable state, a branch protection refusing
//! it such as "the head branch is behind the base branch", a merge style the
//! repository does not allow); 409 on merge conflicts and when the head moved
//! (`head_commit_id` no longer the head: "head out of date"); 404 for a closed
//! one.

use reqwest::{Method, StatusCode};

use super::ForgeClient;
use crate::forge::{ForgeError, Label, MergePull, PullRequest, RetryPolicy};

/// What [`ForgeClient::merge_pull`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeOutcome {
    /// Merged now.
    Merged,
    /// It was merged already (an earlier try whose answer was lost, or a person).
    AlreadyMerged,
    /// 405: the forge will not merge it as it is (its message).
    NotMergeable(String),
    /// 409: conflicts, or the head moved (its message).
    Conflict(String),
    /// Closed without a merge (404 from the merge route on a closed one).
    Closed,
}

impl ForgeClient {
    /// Pull request `index` (`GET /repos/{owner}/{repo}/pulls/{index}`).
    ///
    /// # Errors
    ///
    /// [`ForgeError::Client`] (404: none), [`ForgeError::Server`],
    /// [`ForgeError::Transport`], [`ForgeError::Decode`].
    pub async fn get_pull(
        &self,
        owner: &str,
        repo: &str,
        index: u64,
    ) -> Result<PullRequest, ForgeError> {
        let index = index.to_string();
        self.get(&["repos", owner, repo, "pulls", index.as_str()], &[])
            .await
    }

    /// Merges pull request `index` (`POST …/pulls/{index}/merge`). Looks
    /// first: a pull request already merged is [`MergeOutcome::AlreadyMerged`]
    /// and nothing is sent; after a failure that may have taken effect (5xx,
    /// a lost answer) it looks again before any new try, so a retry never
    /// merges twice.
    ///
    /// # Errors
    ///
    /// As [`ForgeClient::get_pull`]; other 4xx answers of the merge route.
    pub async fn merge_pull(
        &self,
        owner: &str,
        repo: &str,
        index: u64,
        merge: &MergePull,
    ) -> Result<MergeOutcome, ForgeError> {
        let n = index.to_string();
        let segs = ["repos", owner, repo, "pulls", n.as_str(), "merge"];
        let payload = serde_json::to_value(merge)
            .map_err(|e| ForgeError::InvalidArgument(format!("cannot encode the merge: {e}")))?;
        self.write_looking_first("POST merge", |_| {
            let (segs, payload) = (&segs, &payload);
            async move {
                let pr = self.get_pull(owner, repo, index).await?;
                if pr.merged {
                    return Ok(Ok(MergeOutcome::AlreadyMerged));
                }
                if pr.state == crate::forge::IssueState::Closed {
                    return Ok(Ok(MergeOutcome::Closed));
                }
                let reply = match self
                    .t
                    .execute(
                        Method::POST,
                        segs,
                        &[],
                        Some(payload),
                        RetryPolicy::no_retries(),
                    )
                    .await
                {
                    Ok(r) => r,
                    Err(e) => return Ok(Err(e)),
                };
                let message = || match self.t.client_error(&Method::POST, segs, &reply) {
                    ForgeError::Client { message, .. } => message,
                    other => other.to_string(),
                };
                Ok(match reply.status {
                    s if s.is_success() => Ok(MergeOutcome::Merged),
                    StatusCode::METHOD_NOT_ALLOWED => Ok(MergeOutcome::NotMergeable(message())),
                    StatusCode::CONFLICT => Ok(MergeOutcome::Conflict(message())),
                    StatusCode::NOT_FOUND => Ok(MergeOutcome::Closed),
                    _ => Err(self.t.client_error(&Method::POST, segs, &reply)),
                })
            }
        })
        .await
    }

    /// The repository's labels (`GET /repos/{owner}/{repo}/labels`, first
    /// page of `limit` 50 is enough for a name agentq made).
    ///
    /// # Errors
    ///
    /// [`ForgeError::Client`], [`ForgeError::Server`], [`ForgeError::Transport`],
    /// [`ForgeError::Decode`].
    pub async fn list_labels(&self, owner: &str, repo: &str) -> Result<Vec<Label>, ForgeError> {
        let mut all = Vec::new();
        for page in 1..=20u32 {
            let batch: Vec<Label> = self
                .get(
                    &["repos", owner, repo, "labels"],
                    &[
                        ("page", page.to_string()),
                        ("limit", self.page_size.to_string()),
                    ],
                )
                .await?;
            let done = batch.len() < self.page_size as usize;
            all.extend(batch);
            if done {
                break;
            }
        }
        Ok(all)
    }

    /// The id of label `name`, created (`POST /repos/{owner}/{repo}/labels`,
    /// `color` as `#rrggbb`) when the repository has none: upstream
    /// `ensureLabel` and `getLabelID`. Looks again before a retry.
    ///
    /// # Errors
    ///
    /// As [`ForgeClient::list_labels`]; 403 without write access.
    pub async fn ensure_label(
        &self,
        owner: &str,
        repo: &str,
        name: &str,
        color: &str,
        description: &str,
    ) -> Result<u64, ForgeError> {
        let segs = ["repos", owner, repo, "labels"];
        let payload = serde_json::json!({"name": name, "color": color, "description": description});
        self.write_looking_first("POST label", |_| {
            let (segs, payload) = (&segs, &payload);
            async move {
                let labels = self.list_labels(owner, repo).await?;
                if let Some(l) = labels.iter().find(|l| l.name == name) {
                    return Ok(Ok(l.id));
                }
                Ok(self.post_once(segs, Some(payload)).await.and_then(|reply| {
                    self.t
                        .decode_ok::<Label>(&Method::POST, segs, reply)
                        .map(|l| l.id)
                }))
            }
        })
        .await
    }

    /// Adds labels `ids` to issue or pull request `index` (`POST
    /// …/issues/{index}/labels`, `IssueLabelsOption`); adding one it has
    /// changes nothing, so it is retried as it is.
    ///
    /// # Errors
    ///
    /// [`ForgeError::Client`] (403 without write access, 404), [`ForgeError::Server`],
    /// [`ForgeError::Transport`], [`ForgeError::Decode`].
    pub async fn add_labels(
        &self,
        owner: &str,
        repo: &str,
        index: u64,
        ids: &[u64],
    ) -> Result<Vec<Label>, ForgeError> {
        let n = index.to_string();
        let segs = ["repos", owner, repo, "issues", n.as_str(), "labels"];
        self.send(
            Method::POST,
            &segs,
            &serde_json::json!({ "labels": ids }),
            self.retry,
        )
        .await
    }

    /// Deletes branch `branch` (`DELETE /repos/{owner}/{repo}/branches/{branch}`);
    /// `false` when it was not there (404).
    ///
    /// # Errors
    ///
    /// [`ForgeError::Client`] (403: the default or a protected branch),
    /// [`ForgeError::Server`], [`ForgeError::Transport`].
    pub async fn delete_branch(
        &self,
        owner: &str,
        repo: &str,
        branch: &str,
    ) -> Result<bool, ForgeError> {
        // `{branch}` is `*` in the route: its `/`s travel as path separators.
        let mut segs = vec!["repos", owner, repo, "branches"];
        segs.extend(branch.split('/'));
        let reply = self
            .t
            .execute(Method::DELETE, &segs, &[], None, self.retry)
            .await?;
        match reply.status {
            StatusCode::NOT_FOUND => Ok(false),
            s if s.is_success() => Ok(true),
            _ => Err(self.t.client_error(&Method::DELETE, &segs, &reply)),
        }
    }
}
