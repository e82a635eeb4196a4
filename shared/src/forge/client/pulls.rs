//! Pull requests: looking one up by its branches, listing the open ones, and
//! opening one only when none is open.

use std::collections::HashSet;

use reqwest::Method;

use super::{ForgeClient, MAX_PAGES};
use crate::forge::{CreatePull, ForgeError, IssueState, PullRequest, RetryPolicy};

/// How a head given as `branch` or `owner:branch` splits.
fn split_head(head: &str) -> (Option<&str>, &str) {
    match head.rsplit_once(':') {
        Some((owner, branch)) => (Some(owner), branch),
        None => (None, head),
    }
}

impl ForgeClient {
    /// The pull request from `head` (`branch` or `owner:branch`) into `base`, in any
    /// state, or `None` if there never was one (`GET /pulls/{base}/{head}`). With
    /// several, the forge picks one (not necessarily the open one). The head's `/`s
    /// are sent as path separators, which the route accepts.
    ///
    /// # Errors
    ///
    /// [`ForgeError::InvalidArgument`] for a base containing `/` (the route cannot
    /// express it); [`ForgeError::Client`], [`ForgeError::Server`],
    /// [`ForgeError::Transport`], [`ForgeError::Decode`].
    pub async fn get_pull_by_base_head(
        &self,
        owner: &str,
        repo: &str,
        base: &str,
        head: &str,
    ) -> Result<Option<PullRequest>, ForgeError> {
        if base.is_empty() || base.contains('/') || head.is_empty() {
            return Err(ForgeError::InvalidArgument(format!(
                "cannot look a pull request up by base `{base}` and head `{head}`"
            )));
        }
        let mut segs = vec!["repos", owner, repo, "pulls", base];
        segs.extend(head.split('/'));
        self.get_opt(&segs, &[]).await
    }

    /// Every open pull request of the repository, following pagination (`page`,
    /// `limit`) until an empty page or the `X-Total-Count` the forge reports.
    ///
    /// # Errors
    ///
    /// [`ForgeError::Client`] (404 if there is no such repository),
    /// [`ForgeError::Server`], [`ForgeError::Transport`], [`ForgeError::Decode`].
    pub async fn list_open_pulls(
        &self,
        owner: &str,
        repo: &str,
    ) -> Result<Vec<PullRequest>, ForgeError> {
        let segs = ["repos", owner, repo, "pulls"];
        let limit = self.page_size.to_string();
        let mut pulls = Vec::new();
        let mut numbers = HashSet::new();
        let mut seen: u64 = 0;
        for page in 1..=MAX_PAGES {
            // `state` is always sent: without it Forgejo lists every pull request.
            let query = [
                ("state", IssueState::Open.as_str().to_string()),
                ("page", page.to_string()),
                ("limit", limit.clone()),
            ];
            let reply = self
                .t
                .execute(Method::GET, &segs, &query, None, self.retry)
                .await?;
            let total = reply.total_count;
            // The API may put `null` in the list for a pull request it failed to load.
            let batch: Vec<Option<PullRequest>> = self.t.decode_ok(&Method::GET, &segs, reply)?;
            if batch.is_empty() {
                break;
            }
            seen += batch.len() as u64;
            for pr in batch.into_iter().flatten() {
                // Pages can shift while we read; keep each pull request once.
                if numbers.insert(pr.number) {
                    pulls.push(pr);
                }
            }
            if total.is_some_and(|t| seen >= t) {
                break;
            }
        }
        Ok(pulls)
    }

    /// The open pull request from `head` (`branch` or `owner:branch`) into `base` of
    /// `owner/repo`, matched on the head's branch name (`label`, not `ref`, which
    /// becomes `refs/pull/N/head` once the branch is deleted), the head's repository
    /// and the base branch.
    ///
    /// It first asks `GET /pulls/{base}/{head}`: one request when that answers the
    /// open pull request, and an answer of 404 means there is none at all. Only when
    /// it answers a closed one (an open one may exist beside it), or the base cannot
    /// go in the path, are the open pull requests listed.
    ///
    /// # Errors
    ///
    /// As [`ForgeClient::get_pull_by_base_head`], [`ForgeClient::list_open_pulls`]
    /// and, for a fork's head, [`ForgeClient::get_repo`].
    pub async fn find_open_pull(
        &self,
        owner: &str,
        repo: &str,
        base: &str,
        head: &str,
    ) -> Result<Option<PullRequest>, ForgeError> {
        self.find_open_pull_with(owner, repo, base, head, true)
            .await
    }

    async fn find_open_pull_with(
        &self,
        owner: &str,
        repo: &str,
        base: &str,
        head: &str,
        probe: bool,
    ) -> Result<Option<PullRequest>, ForgeError> {
        let (head_owner, branch) = split_head(head);
        let fork = head_owner.filter(|o| !o.eq_ignore_ascii_case(owner));
        if probe && !base.contains('/') {
            match self.get_pull_by_base_head(owner, repo, base, head).await? {
                None => return Ok(None),
                Some(pr)
                    if pr.state == IssueState::Open
                        && pr.head.branch() == branch
                        && pr.base.branch() == base
                        && (fork.is_some() || pr.head.repo_id == pr.base.repo_id) =>
                {
                    return Ok(Some(pr));
                }
                Some(_) => {}
            }
        }
        // The head's repository: this one, or the fork `{head_owner}/{repo}` (the
        // forge reads `owner:branch` that way).
        let fork_id = match fork {
            Some(o) => Some(self.get_repo(o, repo).await?.id),
            None => None,
        };
        let open = self.list_open_pulls(owner, repo).await?;
        Ok(open.into_iter().find(|p| {
            p.head.branch() == branch
                && p.base.branch() == base
                && p.head.repo_id == fork_id.unwrap_or(p.base.repo_id)
        }))
    }

    /// Opens a pull request.
    ///
    /// # Errors
    ///
    /// [`ForgeError::Client`] (404 if a branch does not exist, 409 if an open pull
    /// request already joins the same branches, 422 for head equal to base or a
    /// refused body), [`ForgeError::Server`], [`ForgeError::Transport`],
    /// [`ForgeError::Decode`].
    pub async fn create_pull(
        &self,
        owner: &str,
        repo: &str,
        pull: &CreatePull,
    ) -> Result<PullRequest, ForgeError> {
        self.create_pull_with(owner, repo, pull, self.retry).await
    }

    async fn create_pull_with(
        &self,
        owner: &str,
        repo: &str,
        pull: &CreatePull,
        retry: RetryPolicy,
    ) -> Result<PullRequest, ForgeError> {
        let segs = ["repos", owner, repo, "pulls"];
        let payload = serde_json::to_value(pull).map_err(|e| {
            ForgeError::InvalidArgument(format!("cannot encode the pull request: {e}"))
        })?;
        self.send(Method::POST, &segs, &payload, retry).await
    }

    /// The open pull request from `pull.head` into `pull.base` (see
    /// [`ForgeClient::find_open_pull`]), or a new one. Returns it and whether it was
    /// created. A 409 from the forge (someone opened it meanwhile, or a forge without
    /// the base/head route) and transient failures lead to a fresh look through the
    /// list before any new attempt, so a retry never opens a second pull request.
    ///
    /// # Errors
    ///
    /// As [`ForgeClient::find_open_pull`] and [`ForgeClient::create_pull`].
    pub async fn find_or_create_pull(
        &self,
        owner: &str,
        repo: &str,
        pull: &CreatePull,
    ) -> Result<(PullRequest, bool), ForgeError> {
        // One 409 (someone opened it meanwhile) is answered by looking again.
        let conflicts = std::sync::atomic::AtomicBool::new(false);
        self.write_looking_first("POST pull request", |retry| {
            let conflicts = &conflicts;
            async move {
                loop {
                    let conflicted = conflicts.load(std::sync::atomic::Ordering::Relaxed);
                    let probe = retry == 0 && !conflicted;
                    if let Some(pr) = self
                        .find_open_pull_with(owner, repo, &pull.base, &pull.head, probe)
                        .await?
                    {
                        return Ok(Ok((pr, false)));
                    }
                    match self
                        .create_pull_with(owner, repo, pull, RetryPolicy::no_retries())
                        .await
                    {
                        Ok(pr) => return Ok(Ok((pr, true))),
                        Err(ForgeError::Client { status: 409, .. }) if !conflicted => {
                            conflicts.store(true, std::sync::atomic::Ordering::Relaxed)
                        }
                        Err(e) => return Ok(Err(e)),
                    }
                }
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_split_into_owner_and_branch() {
        assert_eq!(split_head("agentq/job-1"), (None, "agentq/job-1"));
        assert_eq!(
            split_head("bot:agentq/job-1"),
            (Some("bot"), "agentq/job-1")
        );
    }
}
