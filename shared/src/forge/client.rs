//! [`ForgeClient`]: the calls agentq makes, and the multi-step operations that must
//! not repeat themselves when a request fails half-way (one comment per job, one
//! pull request per branch, one tracked time per run, one status per report).

use std::{
    collections::{HashMap, HashSet},
    fmt,
    sync::{Arc, Mutex},
    time::Instant,
};

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::{Method, StatusCode};
use tokio::sync::OnceCell;

use super::{
    retry::RetryPolicy,
    transport::{display_path, Reply, Transport},
    types::{
        find_marked, with_marker, AddTime, CombinedStatus, Comment, CreatePull, CreateStatus,
        Issue, IssueState, PullRequest, Repository, TrackedTime, User,
    },
    ForgeError, StopwatchOutcome, TimeOutcome, TrackingUnavailable, DEFAULT_PAGE_SIZE,
    TRACKING_RECHECK,
};

/// Most pages [`ForgeClient::list_open_pulls`] reads before giving up.
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

/// How a head given as `branch` or `owner:branch` splits.
fn split_head(head: &str) -> (Option<&str>, &str) {
    match head.rsplit_once(':') {
        Some((owner, branch)) => (Some(owner), branch),
        None => (None, head),
    }
}

fn rfc3339_secs(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
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

    /// One `POST` of a multi-step write, not retried by the transport (the
    /// caller looks whether it took effect before trying again).
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

    // -----------------------------------------------------------------------------
    // Time tracking

    fn untracked_key(owner: &str, repo: &str) -> String {
        format!("{owner}/{repo}").to_lowercase()
    }

    /// Why time tracking is known to be unavailable on `owner/repo`, if the forge
    /// said so within [`TRACKING_RECHECK`].
    fn known_untracked(&self, owner: &str, repo: &str) -> Option<TrackingUnavailable> {
        let map = self.untracked.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&Self::untracked_key(owner, repo))
            .filter(|(_, when)| when.elapsed() < TRACKING_RECHECK)
            .map(|(reason, _)| *reason)
    }

    /// Remembers that the forge refused time tracking; true if it was not known.
    fn mark_untracked(&self, owner: &str, repo: &str, reason: TrackingUnavailable) -> bool {
        let mut map = self.untracked.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(Self::untracked_key(owner, repo), (reason, Instant::now()))
            .is_none()
    }

    fn mark_tracked(&self, owner: &str, repo: &str) {
        let mut map = self.untracked.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&Self::untracked_key(owner, repo));
    }

    /// Adds `time` to issue `index` as the token's user: once, even when a request
    /// fails after the forge stored it. Before retrying a failed attempt the client
    /// lists the user's tracked times on the issue created at `time.created` and
    /// stops if one with the same seconds is there.
    ///
    /// A repository whose time tracking is off (`400 time tracking disabled`) or that
    /// refuses the user (403) is [`TimeOutcome::Unavailable`], not an error; the
    /// client remembers it for [`TRACKING_RECHECK`] and does not ask again meanwhile.
    ///
    /// # Errors
    ///
    /// [`ForgeError::InvalidArgument`] for zero seconds; [`ForgeError::Client`] (404
    /// no such issue), [`ForgeError::Server`], [`ForgeError::Transport`],
    /// [`ForgeError::Decode`].
    pub async fn add_time(
        &self,
        owner: &str,
        repo: &str,
        index: u64,
        time: &AddTime,
    ) -> Result<TimeOutcome, ForgeError> {
        if time.seconds == 0 {
            return Err(ForgeError::InvalidArgument(
                "a tracked time needs at least one second".into(),
            ));
        }
        if let Some(reason) = self.known_untracked(owner, repo) {
            return Ok(TimeOutcome::Unavailable {
                reason,
                first: false,
            });
        }
        let index_s = index.to_string();
        let segs = ["repos", owner, repo, "issues", index_s.as_str(), "times"];
        let created = rfc3339_secs(time.created);
        let payload = serde_json::json!({ "time": time.seconds, "created": created });
        self.write_looking_first("POST tracked time", |retry| {
            let (segs, payload) = (&segs, &payload);
            async move {
                let result = self.post_once(segs, Some(payload)).await;
                match result {
                    Ok(reply) if reply.status.is_success() => {
                        self.mark_tracked(owner, repo);
                        let t: TrackedTime = self.t.decode(&Method::POST, segs, &reply)?;
                        Ok(Ok(TimeOutcome::Added(t)))
                    }
                    Ok(reply) => {
                        if let Some(reason) = refusal(&reply, &self.t.message_of(&reply.body)) {
                            let first = self.mark_untracked(owner, repo, reason);
                            return Ok(Ok(TimeOutcome::Unavailable { reason, first }));
                        }
                        Err(self.t.client_error(&Method::POST, segs, &reply))
                    }
                    Err(e) if e.is_transient() && retry < self.retry.max_retries => {
                        // The forge may have stored it before failing: look first.
                        match self.find_tracked_time(owner, repo, index, time).await? {
                            Some(t) => Ok(Ok(TimeOutcome::AlreadyAdded(t))),
                            None => Ok(Err(e)),
                        }
                    }
                    Err(e) => Err(e),
                }
            }
        })
        .await
    }

    /// The token user's tracked time on issue `index` matching `time` (created in
    /// the same second, same seconds), if the forge has it.
    async fn find_tracked_time(
        &self,
        owner: &str,
        repo: &str,
        index: u64,
        time: &AddTime,
    ) -> Result<Option<TrackedTime>, ForgeError> {
        let me = self.current_user().await?;
        let created = time.created.timestamp();
        let times = self
            .list_tracked_times(
                owner,
                repo,
                index,
                Some(&me.login),
                Some(time.created),
                Some(time.created),
            )
            .await?;
        Ok(times.into_iter().find(|t| {
            t.user_id == me.id
                && t.created.timestamp() == created
                && u64::try_from(t.time).ok() == Some(time.seconds)
        }))
    }

    /// Tracked times on issue `index`, optionally only `user`'s and only those
    /// created between `since` and `before` (both inclusive, to the second).
    ///
    /// # Errors
    ///
    /// [`ForgeError::Client`] (404 no such issue, or time tracking is disabled),
    /// [`ForgeError::Server`], [`ForgeError::Transport`], [`ForgeError::Decode`].
    pub async fn list_tracked_times(
        &self,
        owner: &str,
        repo: &str,
        index: u64,
        user: Option<&str>,
        since: Option<DateTime<Utc>>,
        before: Option<DateTime<Utc>>,
    ) -> Result<Vec<TrackedTime>, ForgeError> {
        let index = index.to_string();
        let segs = ["repos", owner, repo, "issues", index.as_str(), "times"];
        let mut query = Vec::new();
        if let Some(u) = user {
            query.push(("user", u.to_string()));
        }
        if let Some(s) = since {
            query.push(("since", rfc3339_secs(s)));
        }
        if let Some(b) = before {
            query.push(("before", rfc3339_secs(b)));
        }
        let limit = self.page_size.to_string();
        let mut all = Vec::new();
        for page in 1..=MAX_PAGES {
            let mut q = query.clone();
            q.push(("page", page.to_string()));
            q.push(("limit", limit.clone()));
            let reply = self
                .t
                .execute(Method::GET, &segs, &q, None, self.retry)
                .await?;
            let total = reply.total_count;
            let batch: Vec<TrackedTime> = self.t.decode_ok(&Method::GET, &segs, reply)?;
            let n = batch.len();
            all.extend(batch);
            if n == 0 || total.is_some_and(|t| all.len() as u64 >= t) {
                break;
            }
        }
        Ok(all)
    }

    /// Starts the token owner's stopwatch on issue `index`. The forge keeps one
    /// running stopwatch per user (`models/issues/stopwatch.go`): one running on
    /// another issue is stopped, and its time recorded there.
    ///
    /// # Errors
    ///
    /// A stopwatch already running and time tracking being unavailable are
    /// outcomes, not errors. Otherwise [`ForgeError::Client`] (404 if there is no
    /// such issue), [`ForgeError::Server`], [`ForgeError::Transport`].
    pub async fn start_stopwatch(
        &self,
        owner: &str,
        repo: &str,
        index: u64,
    ) -> Result<StopwatchOutcome, ForgeError> {
        self.stopwatch(owner, repo, index, true).await
    }

    /// Stops the token owner's stopwatch on issue `index` (the time is recorded).
    ///
    /// # Errors
    ///
    /// A stopwatch not running ([`StopwatchOutcome::NotRunning`]) is an outcome, not
    /// an error. Otherwise as [`ForgeClient::start_stopwatch`].
    pub async fn stop_stopwatch(
        &self,
        owner: &str,
        repo: &str,
        index: u64,
    ) -> Result<StopwatchOutcome, ForgeError> {
        self.stopwatch(owner, repo, index, false).await
    }

    async fn stopwatch(
        &self,
        owner: &str,
        repo: &str,
        index: u64,
        start: bool,
    ) -> Result<StopwatchOutcome, ForgeError> {
        if let Some(reason) = self.known_untracked(owner, repo) {
            return Ok(StopwatchOutcome::Unavailable {
                reason,
                first: false,
            });
        }
        let index = index.to_string();
        let action = if start { "start" } else { "stop" };
        let segs = [
            "repos",
            owner,
            repo,
            "issues",
            index.as_str(),
            "stopwatch",
            action,
        ];
        self.write_looking_first("POST stopwatch", |retry| {
            let segs = &segs;
            async move {
                let reply = match self.post_once(segs, None).await {
                    Ok(reply) => reply,
                    Err(e) => return Ok(Err(e)),
                };
                Ok(match reply.status {
                    s if s.is_success() => {
                        self.mark_tracked(owner, repo);
                        Ok(if start {
                            StopwatchOutcome::Started
                        } else {
                            StopwatchOutcome::Stopped
                        })
                    }
                    StatusCode::CONFLICT if start => Ok(StopwatchOutcome::AlreadyRunning),
                    // After a failed attempt, "not running" most likely means that
                    // attempt stopped it.
                    StatusCode::CONFLICT if retry > 0 => Ok(StopwatchOutcome::Stopped),
                    StatusCode::CONFLICT => Ok(StopwatchOutcome::NotRunning),
                    _ => match refusal(&reply, &self.t.message_of(&reply.body)) {
                        Some(reason) => {
                            let first = self.mark_untracked(owner, repo, reason);
                            Ok(StopwatchOutcome::Unavailable { reason, first })
                        }
                        None => return Err(self.t.client_error(&Method::POST, segs, &reply)),
                    },
                })
            }
        })
        .await
    }

    // -----------------------------------------------------------------------------
    // Comments

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
    /// `marker` (a hidden HTML comment such as [`super::job_marker`]), with `body` as
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

    // -----------------------------------------------------------------------------
    // Pull requests

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

    // -----------------------------------------------------------------------------
    // Commit statuses

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

/// Whether an answer means the forge will not track time here: 400 with "time
/// tracking disabled" (`AddTime`), or 403 (`AddTime` and the stopwatch, from
/// `CanUseTimetracker`).
fn refusal(reply: &Reply, message: &str) -> Option<TrackingUnavailable> {
    match reply.status {
        // A token without the issue scope is not a repository without time
        // tracking: that refusal names the scope, and is the token's to fix.
        StatusCode::FORBIDDEN if message.contains("required scope") => None,
        StatusCode::FORBIDDEN => Some(TrackingUnavailable::Forbidden),
        StatusCode::BAD_REQUEST if message.to_lowercase().contains("time tracking disabled") => {
            Some(TrackingUnavailable::Disabled)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_refusal_is_not_time_tracking_refused() {
        let reply = |status: u16| Reply {
            status: StatusCode::from_u16(status).unwrap(),
            body: Vec::new(),
            total_count: None,
        };
        assert_eq!(
            refusal(&reply(403), ""),
            Some(TrackingUnavailable::Forbidden)
        );
        assert_eq!(
            refusal(
                &reply(403),
                "token does not have at least one of required scope(s): [write:issue]"
            ),
            None
        );
    }

    #[test]
    fn heads_split_into_owner_and_branch() {
        assert_eq!(split_head("agentq/job-1"), (None, "agentq/job-1"));
        assert_eq!(
            split_head("bot:agentq/job-1"),
            (Some("bot"), "agentq/job-1")
        );
    }

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

    #[test]
    fn time_tracking_refusals_are_remembered_per_repository() {
        let c = ForgeClient::new("http://127.0.0.1:3000", None, RetryPolicy::default()).unwrap();
        assert_eq!(c.known_untracked("Acme", "W"), None);
        assert!(c.mark_untracked("Acme", "W", TrackingUnavailable::Disabled));
        assert!(!c.mark_untracked("acme", "w", TrackingUnavailable::Disabled));
        assert_eq!(
            c.clone().known_untracked("acme", "w"),
            Some(TrackingUnavailable::Disabled)
        );
        assert_eq!(c.known_untracked("acme", "other"), None);
        c.mark_tracked("ACME", "w");
        assert_eq!(c.known_untracked("acme", "w"), None);
    }

    #[test]
    fn created_is_sent_to_the_second_in_utc() {
        let t = DateTime::parse_from_rfc3339("2025-03-01T10:00:05.734+01:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(rfc3339_secs(t), "2025-03-01T09:00:05Z");
    }
}
