//! Issue comments, and the one comment per job that [`ForgeClient::upsert_comment`]
//! keeps up to date.

use reqwest::{Method, StatusCode};

use super::ForgeClient;
use crate::forge::{
    find_marked, transport::display_path, with_marker, Comment, ForgeError, RetryPolicy,
};

impl ForgeClient {
    /// All comments on issue (or pull request) `index`, oldest first.
    ///
    /// # Errors
    ///
    /// [`ForgeError::Client`] (404 if there is no such issue), [`ForgeError::Server`],
    /// [`ForgeError::Transport`], [`ForgeError::Decode`].
    pub async fn list_comments(
        &self,
        owner: &str,
        repo: &str,
        index: u64,
    ) -> Result<Vec<Comment>, ForgeError> {
        let index = index.to_string();
        self.get(
            &["repos", owner, repo, "issues", index.as_str(), "comments"],
            &[],
        )
        .await
    }

    /// Adds a comment to issue (or pull request) `index`.
    ///
    /// A 5xx answer is retried, which can leave a duplicate if the forge stored the
    /// comment before failing; [`ForgeClient::upsert_comment`] cannot.
    ///
    /// # Errors
    ///
    /// [`ForgeError::Client`] (403, 404, 423 archived), [`ForgeError::Server`],
    /// [`ForgeError::Transport`], [`ForgeError::Decode`].
    pub async fn create_comment(
        &self,
        owner: &str,
        repo: &str,
        index: u64,
        body: &str,
    ) -> Result<Comment, ForgeError> {
        self.create_comment_with(owner, repo, index, body, self.retry)
            .await
    }

    async fn create_comment_with(
        &self,
        owner: &str,
        repo: &str,
        index: u64,
        body: &str,
        retry: RetryPolicy,
    ) -> Result<Comment, ForgeError> {
        let index = index.to_string();
        let segs = ["repos", owner, repo, "issues", index.as_str(), "comments"];
        let payload = serde_json::json!({ "body": body });
        self.send(Method::POST, &segs, &payload, retry).await
    }

    /// Replaces the body of comment `comment_id`.
    ///
    /// # Errors
    ///
    /// [`ForgeError::Client`] (403 not the author and not a repository writer, 404 no
    /// such comment, 423 archived, and 204 for a comment kind without a body, which
    /// the forge does not edit), [`ForgeError::Server`], [`ForgeError::Transport`],
    /// [`ForgeError::Decode`].
    pub async fn edit_comment(
        &self,
        owner: &str,
        repo: &str,
        comment_id: u64,
        body: &str,
    ) -> Result<Comment, ForgeError> {
        let id = comment_id.to_string();
        let segs = ["repos", owner, repo, "issues", "comments", id.as_str()];
        let payload = serde_json::json!({ "body": body });
        let reply = self
            .t
            .execute(Method::PATCH, &segs, &[], Some(&payload), self.retry)
            .await?;
        if reply.status == StatusCode::NO_CONTENT {
            return Err(ForgeError::Client {
                status: 204,
                method: Method::PATCH.to_string(),
                path: display_path(&segs),
                message: "this kind of comment has no editable body; nothing was changed".into(),
            });
        }
        self.t.decode_ok(&Method::PATCH, &segs, reply)
    }

    /// Makes issue `index` carry exactly one comment by the token's user holding
    /// `marker` (a hidden HTML comment such as [`crate::forge::job_marker`]), with `body` as
    /// its text: edits that comment if its body differs, leaves it alone if
    /// identical, creates it (with the marker appended) if there is none. Comments by
    /// anyone else are never edited, even when they quote the marker. Calling it
    /// again with the same arguments changes nothing. Transient failures while
    /// creating are retried only after checking again for the marker, so a retry
    /// never duplicates the comment.
    ///
    /// # Errors
    ///
    /// [`ForgeError::InvalidArgument`] if `marker` is blank; otherwise as
    /// [`ForgeClient::current_user`], [`ForgeClient::list_comments`],
    /// [`ForgeClient::create_comment`] and [`ForgeClient::edit_comment`].
    pub async fn upsert_comment(
        &self,
        owner: &str,
        repo: &str,
        index: u64,
        marker: &str,
        body: &str,
    ) -> Result<Comment, ForgeError> {
        if marker.trim().is_empty() {
            return Err(ForgeError::InvalidArgument(
                "the comment marker is empty".into(),
            ));
        }
        let me = self.current_user().await?;
        let wanted = with_marker(body, marker);
        let wanted = &wanted;
        self.write_looking_first("POST comment", |_| async move {
            let comments = self.list_comments(owner, repo, index).await?;
            if let Some(existing) = find_marked(&comments, marker, me.id) {
                if existing.body.trim_end() == wanted.trim_end() {
                    return Ok(Ok(existing.clone()));
                }
                return self
                    .edit_comment(owner, repo, existing.id, wanted)
                    .await
                    .map(Ok);
            }
            Ok(self
                .create_comment_with(owner, repo, index, wanted, RetryPolicy::no_retries())
                .await)
        })
        .await
    }
}
