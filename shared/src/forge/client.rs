//! [`ForgeClient`]: the calls agentq makes, and the multi-step operations that must
//! not repeat themselves when a request fails half-way (one comment per job, one
//! pull request per branch, one tracked time per run, one status per report).

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex},
    time::Instant,
};

use reqwest::{Method, StatusCode};
use tokio::sync::OnceCell;

use super::{
    retry::RetryPolicy,
    transport::{Reply, Transport},
    types::{Issue, Repository, User},
    ForgeError, TrackingUnavailable, DEFAULT_PAGE_SIZE,
};

pub use merge::MergeOutcome;

mod comments;
mod merge;
mod pulls;
mod statuses;
mod tracking;

/// Most pages a listing ([`ForgeClient::list_open_pulls`],
/// [`ForgeClient::list_tracked_times`]) reads before giving up.
const MAX_PAGES: u32 = 1_000;

/// A client for one forge. Cheap to clone (the connection pool, the cached identity
/// of the token's user and what it learnt about time tracking are shared).
#[derive(Clone)]
pub struct ForgeClient {
    t: Transport,
    retry: RetryPolicy,
    page_size: u32,
    me: Arc<OnceCell<User>>,
    /// `owner/repo` (lowercase) → why time tracking is unavailable, and when the
    /// forge last said so.
    untracked: Arc<Mutex<HashMap<String, (TrackingUnavailable, Instant)>>>,
}

impl fmt::Debug for ForgeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForgeClient")
            .field("base_url", &self.t.base_url())
            .field(
                "token",
                &if self.t.has_token() {
                    "<redacted>"
                } else {
                    "<none>"
                },
            )
            .field("retry", &self.retry)
            .field("page_size", &self.page_size)
            .finish()
    }
}

impl ForgeClient {
    /// This client with a deadline: every request (retries included) ends by
    /// `at`, and a retry that could not is not begun (the last failure is
    /// returned). What the client learnt (the token's user, time tracking) is
    /// shared with `self`.
    pub fn with_deadline(&self, at: tokio::time::Instant) -> Self {
        Self {
            t: self.t.with_deadline(at),
            ..self.clone()
        }
    }

    /// A client for the forge at `base_url` (`http://127.0.0.1:3000`, or with a sub-path
    /// such as `https://example.org/forge`); `/api/v1` is appended. `token`, when given,
    /// is sent as `Authorization: token <TOKEN>`.
    ///
    /// # Errors
    ///
    /// [`ForgeError::InvalidBaseUrl`] if `base_url` is not an absolute http(s) URL, or
    /// carries credentials, a query or a fragment; [`ForgeError::InvalidArgument`] if
    /// the token is empty or cannot go in a header; [`ForgeError::Transport`] if the
    /// HTTP client cannot be built.
    pub fn new(
        base_url: &str,
        token: Option<String>,
        retry: RetryPolicy,
    ) -> Result<Self, ForgeError> {
        Ok(Self {
            t: Transport::new(base_url, token)?,
            retry,
            page_size: DEFAULT_PAGE_SIZE,
            me: Arc::new(OnceCell::new()),
            untracked: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// The same client asking for `page_size` items per page when listing (at least 1).
    pub fn with_page_size(mut self, page_size: u32) -> Self {
        self.page_size = page_size.max(1);
        self
    }

    /// The forge's base URL, without `/api/v1` and without a trailing slash.
    pub fn base_url(&self) -> &str {
        self.t.base_url()
    }

    /// The retry policy in force.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        segs: &[&str],
        query: &[(&str, String)],
    ) -> Result<T, ForgeError> {
        let reply = self
            .t
            .execute(Method::GET, segs, query, None, self.retry)
            .await?;
        self.t.decode_ok(&Method::GET, segs, reply)
    }

    /// Sends `payload` with `method` under `retry` and decodes a 2xx answer.
    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        segs: &[&str],
        payload: &serde_json::Value,
        retry: RetryPolicy,
    ) -> Result<T, ForgeError> {
        let reply = self
            .t
            .execute(method.clone(), segs, &[], Some(payload), retry)
            .await?;
        self.t.decode_ok(&method, segs, reply)
    }

    /// Like `get`, with a 404 as `None`.
    async fn get_opt<T: serde::de::DeserializeOwned>(
        &self,
        segs: &[&str],
        query: &[(&str, String)],
    ) -> Result<Option<T>, ForgeError> {
        let reply = self
            .t
            .execute(Method::GET, segs, query, None, self.retry)
            .await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        self.t.decode_ok(&Method::GET, segs, reply).map(Some)
    }

    /// Sleeps before retry `retry` of a multi-step operation.
    async fn pause(&self, retry: u32, what: &str, err: &ForgeError) {
        let delay = self.retry.wait(retry, None);
        tracing::warn!(
            operation = what,
            attempt = retry + 1,
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            error = %err,
            "forge operation failed; checking again before retrying"
        );
        tokio::time::sleep(delay).await;
    }

    /// Runs a write whose answer may be lost although it took effect, one try
    /// at a time: `once(retry)` (0 for the first try) does the request and,
    /// after a failure, looks whether the forge stored it anyway. Its outer
    /// error ends the operation; its inner error is the request's own, tried
    /// again after a pause while transient and retries are left.
    async fn write_looking_first<T, F, Fut>(&self, what: &str, mut once: F) -> Result<T, ForgeError>
    where
        F: FnMut(u32) -> Fut,
        Fut: std::future::Future<Output = Result<Result<T, ForgeError>, ForgeError>>,
    {
        let mut retry = 0;
        loop {
            match once(retry).await? {
                Err(e) if e.is_transient() && retry < self.retry.max_retries => {
                    self.pause(retry, what, &e).await;
                    retry += 1;
                }
                done => return done,
            }
        }
    }

    /// One request for [`ForgeClient::missing_scopes`] (an empty JSON object
    /// as the body of a write): its status when it is a success or a 404,
    /// else the forge's refusal as an error.
    pub(super) async fn probe(
        &self,
        method: Method,
        segs: &[&str],
    ) -> Result<StatusCode, ForgeError> {
        let body = (method != Method::GET).then(|| serde_json::json!({}));
        let reply = self
            .t
            .execute(method.clone(), segs, &[], body.as_ref(), self.retry)
            .await?;
        if reply.status.is_success() || reply.status == StatusCode::NOT_FOUND {
            return Ok(reply.status);
        }
        Err(self.t.client_error(&method, segs, &reply))
    }

    /// One `POST` of a multi-step write, not retried by the transport (the
    /// caller looks whether it took effect before trying again).
    async fn post_once(
        &self,
        segs: &[&str],
        payload: Option<&serde_json::Value>,
    ) -> Result<Reply, ForgeError> {
        self.t
            .execute(Method::POST, segs, &[], payload, RetryPolicy::no_retries())
            .await
    }

    /// The user the token belongs to (`GET /user`), asked once and then remembered.
    ///
    /// # Errors
    ///
    /// [`ForgeError::Client`] (401 without a valid token), [`ForgeError::Server`],
    /// [`ForgeError::Transport`], [`ForgeError::Decode`].
    pub async fn current_user(&self) -> Result<User, ForgeError> {
        self.me
            .get_or_try_init(|| self.get(&["user"], &[]))
            .await
            .cloned()
    }

    /// Fetches a repository.
    ///
    /// # Errors
    ///
    /// [`ForgeError::Client`] (404 if there is no such repository or the token cannot
    /// see it, as for a private one without a token), [`ForgeError::Server`],
    /// [`ForgeError::Transport`], [`ForgeError::Decode`].
    pub async fn get_repo(&self, owner: &str, repo: &str) -> Result<Repository, ForgeError> {
        self.get(&["repos", owner, repo], &[]).await
    }

    /// Fetches issue (or pull request) `index`.
    ///
    /// # Errors
    ///
    /// [`ForgeError::Client`] (404 if there is no such issue), [`ForgeError::Server`],
    /// [`ForgeError::Transport`], [`ForgeError::Decode`].
    pub async fn get_issue(
        &self,
        owner: &str,
        repo: &str,
        index: u64,
    ) -> Result<Issue, ForgeError> {
        let index = index.to_string();
        self.get(&["repos", owner, repo, "issues", index.as_str()], &[])
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_token() {
        let token = "s3cr3t-t0ken-value";
        let c = ForgeClient::new(
            "http://127.0.0.1:3000",
            Some(token.into()),
            RetryPolicy::default(),
        )
        .unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains(token), "{debug}");
        assert!(debug.contains("<redacted>"));
    }
}
