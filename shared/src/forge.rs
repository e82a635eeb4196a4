//! A client for the Forgejo (and Gitea) REST API v1: repositories, issues, issue
//! comments, stopwatches, pull requests and commit statuses.
//!
//! It follows the upstream OpenAPI description (`templates/swagger/v1_json.tmpl`)
//! for paths, methods, status codes and field names:
//!
//! | call | request | success | other answers handled |
//! |---|---|---|---|
//! | [`ForgeClient::get_repo`] | `GET /repos/{owner}/{repo}` | 200 `Repository` | |
//! | [`ForgeClient::get_issue`] | `GET /repos/{owner}/{repo}/issues/{index}` | 200 `Issue` | |
//! | [`ForgeClient::start_stopwatch`] | `POST …/issues/{index}/stopwatch/start` | 201 | 409: already running |
//! | [`ForgeClient::stop_stopwatch`] | `POST …/issues/{index}/stopwatch/stop` | 201 | 409: not running |
//! | [`ForgeClient::list_comments`] | `GET …/issues/{index}/comments` | 200 `[Comment]` | |
//! | [`ForgeClient::create_comment`] | `POST …/issues/{index}/comments` `{"body"}` | 201 `Comment` | |
//! | [`ForgeClient::edit_comment`] | `PATCH /repos/{owner}/{repo}/issues/comments/{id}` `{"body"}` | 200 `Comment` | 204: not editable |
//! | [`ForgeClient::list_open_pulls`] | `GET /repos/{owner}/{repo}/pulls?state=open&page&limit` | 200 `[PullRequest]` | |
//! | [`ForgeClient::create_pull`] | `POST /repos/{owner}/{repo}/pulls` | 201 `PullRequest` | 409: exists |
//! | [`ForgeClient::create_status`] | `POST /repos/{owner}/{repo}/statuses/{sha}` | 201 `CommitStatus` | |
//!
//! Every request carries `Authorization: token <TOKEN>` (when a token is given), a
//! `User-Agent: agentq/<version>`, a 5 s connect timeout and a 30 s total timeout.
//! 429 and 5xx answers and connection failures are retried with exponential backoff
//! (honouring `Retry-After`); other 4xx answers fail at once. The token never appears
//! in an error message, a log line or `Debug` output.

use std::{
    collections::HashSet,
    fmt,
    hash::{BuildHasher, Hasher},
    time::Duration,
};

use reqwest::{
    header::{HeaderMap, HeaderValue, AUTHORIZATION, RETRY_AFTER},
    Method, StatusCode, Url,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// The `User-Agent` sent with every request.
pub const USER_AGENT: &str = concat!("agentq/", env!("CARGO_PKG_VERSION"));

/// How long establishing a connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one request (connect, send, read the whole answer) may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Page size asked for when listing (Forgejo's default `MAX_RESPONSE_ITEMS`).
pub const DEFAULT_PAGE_SIZE: u32 = 50;

/// Most pages [`ForgeClient::list_open_pulls`] reads before giving up.
const MAX_PAGES: u32 = 1_000;

/// Most bytes of an error body quoted in an error message.
const MAX_MESSAGE_CHARS: usize = 300;

/// How failed requests are retried.
///
/// A request answered 429 or 5xx, or failing to connect, is retried up to
/// `max_retries` times. The wait before retry `n` (0-based) is the server's
/// `Retry-After` when it sent one, otherwise `base_delay * 2^n` with jitter (between
/// half and all of it); either way at most `max_delay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0: no retry).
    pub max_retries: u32,
    /// Backoff before the first retry.
    pub base_delay: Duration,
    /// Upper bound of any wait, `Retry-After` included.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 4 retries, 500 ms base delay, 30 s at most.
    fn default() -> Self {
        Self {
            max_retries: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn no_retries() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// The backoff ceiling before retry `retry` (0-based): `base_delay * 2^retry`,
    /// capped at `max_delay`. Jitter is applied on top of this by the client.
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry).unwrap_or(u32::MAX);
        self.base_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// The wait before retry `retry` when the server asked for `retry_after`:
    /// that (capped at `max_delay`) if present, otherwise [`RetryPolicy::backoff`].
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(wait) => wait.min(self.max_delay),
            None => self.backoff(retry),
        }
    }
}

/// Parses a `Retry-After` header value: delay-seconds (`"120"`) or an HTTP-date
/// (`"Wed, 21 Oct 2015 07:28:00 GMT"`, relative to now; a past date is zero).
/// Anything else is `None`.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    parse_retry_after_at(value, chrono::Utc::now())
}

fn parse_retry_after_at(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // All digits: delay-seconds. Absurdly long values saturate.
        return Some(Duration::from_secs(
            value.parse::<u64>().unwrap_or(u64::MAX),
        ));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (when.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// `ceiling` with "equal jitter": between half of it and all of it, picked by `random`.
fn jitter(ceiling: Duration, random: u64) -> Duration {
    let half = ceiling / 2;
    let span = u64::try_from(ceiling.saturating_sub(half).as_nanos()).unwrap_or(u64::MAX);
    half + Duration::from_nanos(random % span.saturating_add(1))
}

fn random_u64() -> u64 {
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// Errors from the forge client.
#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    /// The forge refused the request with a 4xx (or another non-retryable) status.
    /// Not retried.
    #[error("forge answered {status} to {method} {path}: {message}")]
    Client {
        /// HTTP status.
        status: u16,
        /// HTTP method.
        method: String,
        /// API path, relative to `/api/v1`.
        path: String,
        /// The forge's `message`, or the start of its answer.
        message: String,
    },
    /// The forge kept answering 5xx (or 429) until the retries ran out.
    #[error(
        "forge answered {status} to {method} {path} (gave up after {attempts} attempts): {message}"
    )]
    Server {
        /// HTTP status of the last answer.
        status: u16,
        /// HTTP method.
        method: String,
        /// API path, relative to `/api/v1`.
        path: String,
        /// The forge's `message`, or the start of its last answer.
        message: String,
        /// Requests made, the first one included.
        attempts: u32,
    },
    /// The request could not be sent or its answer not read (connection refused,
    /// timeout, reset), after any retries.
    #[error("cannot reach the forge: {0}")]
    Transport(String),
    /// The answer was not the JSON the API describes.
    #[error("unexpected answer from the forge: {0}")]
    Decode(String),
    /// The base URL given to [`ForgeClient::new`] is unusable.
    #[error("invalid forge base URL: {0}")]
    InvalidBaseUrl(String),
    /// An argument was refused before anything was sent (empty marker, empty sha,
    /// a token that cannot go in an HTTP header).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl ForgeError {
    /// The HTTP status behind this error, if the forge answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Client { status, .. } | Self::Server { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether retrying later may help (5xx/429 or transport trouble).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Server { .. } | Self::Transport(_))
    }
}

/// What starting or stopping a stopwatch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopwatchOutcome {
    /// The stopwatch was started (or stopped).
    Done,
    /// It already was in the wanted state: running for a start, not running for a
    /// stop (the forge answered 409). Not an error.
    AlreadyInState,
}

/// A repository (`Repository` in the API; only the fields agentq reads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repository {
    /// `owner/name`.
    pub full_name: String,
    /// The repository's name.
    pub name: String,
    /// Its default branch.
    pub default_branch: String,
    /// HTTP(S) clone URL.
    pub clone_url: String,
    /// SSH clone URL.
    #[serde(default)]
    pub ssh_url: String,
    /// Web page.
    pub html_url: String,
    /// Whether it has no commits yet.
    #[serde(default)]
    pub empty: bool,
    /// Whether it is archived (read-only).
    #[serde(default)]
    pub archived: bool,
}

/// An issue (`Issue` in the API; only the fields agentq reads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issue {
    /// Its index in the repository.
    pub number: u64,
    /// Title.
    pub title: String,
    /// Body (markdown).
    #[serde(default)]
    pub body: String,
    /// `open` or `closed`.
    pub state: String,
    /// Web page.
    pub html_url: String,
}

/// A comment on an issue or pull request (`Comment` in the API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comment {
    /// Its id (unique on the forge, not per issue).
    pub id: u64,
    /// Body (markdown).
    #[serde(default)]
    pub body: String,
    /// Web link to the comment.
    #[serde(default)]
    pub html_url: String,
}

/// One side of a pull request (`PRBranchInfo` in the API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrBranch {
    /// Branch name (`ref` in the API).
    #[serde(rename = "ref")]
    pub ref_name: String,
    /// Commit the branch points at.
    #[serde(default)]
    pub sha: String,
}

/// A pull request (`PullRequest` in the API; only the fields agentq reads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequest {
    /// Its index in the repository (shared with issues).
    pub number: u64,
    /// Web page.
    pub html_url: String,
    /// `open` or `closed`.
    pub state: String,
    /// Title.
    #[serde(default)]
    pub title: String,
    /// The branch with the changes.
    pub head: PrBranch,
    /// The branch it merges into.
    pub base: PrBranch,
}

/// What [`ForgeClient::create_pull`] sends (`CreatePullRequestOption`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatePull {
    /// Branch with the changes (`branch`, or `owner:branch` for a fork).
    pub head: String,
    /// Branch to merge into.
    pub base: String,
    /// Title.
    pub title: String,
    /// Description (markdown).
    pub body: String,
}

/// State of a commit status (`CommitStatusState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CommitState {
    /// Work is under way.
    Pending,
    /// Passed.
    Success,
    /// Could not run.
    Error,
    /// Ran and failed.
    Failure,
    /// Passed with warnings.
    Warning,
}

impl CommitState {
    /// The API's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Success => "success",
            Self::Error => "error",
            Self::Failure => "failure",
            Self::Warning => "warning",
        }
    }
}

impl fmt::Display for CommitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`ForgeClient::create_status`] sends (`CreateStatusOption`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateStatus {
    /// The state.
    pub state: CommitState,
    /// Link shown with the status (e.g. the job's log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_url: Option<String>,
    /// One-line description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Which check this is (`agentq/codex`); a later status with the same context
    /// replaces the earlier one.
    pub context: String,
}

/// The hidden marker agentq puts in the comments it owns for job `job_id`:
/// `<!-- agentq:job=ID -->`.
pub fn job_marker(job_id: &str) -> String {
    format!("<!-- agentq:job={job_id} -->")
}

/// `body` carrying `marker`: unchanged if it already contains it, else with the marker
/// appended on its own paragraph.
pub fn with_marker(body: &str, marker: &str) -> String {
    if body.contains(marker) {
        body.to_string()
    } else if body.trim().is_empty() {
        marker.to_string()
    } else {
        format!("{}\n\n{marker}", body.trim_end())
    }
}

/// The first (oldest) comment whose body contains `marker`.
pub fn find_marked<'a>(comments: &'a [Comment], marker: &str) -> Option<&'a Comment> {
    comments.iter().find(|c| c.body.contains(marker))
}

/// The branch name of a pull request head given as `branch` or `owner:branch`.
fn head_branch(head: &str) -> &str {
    head.rsplit_once(':').map_or(head, |(_, branch)| branch)
}

/// One answer read in full.
struct Reply {
    status: StatusCode,
    body: Vec<u8>,
    total_count: Option<u64>,
}

/// A client for one forge. Cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct ForgeClient {
    http: reqwest::Client,
    /// `{base}/api/v1`.
    api: Url,
    base_url: String,
    token: Option<String>,
    retry: RetryPolicy,
    page_size: u32,
}

impl fmt::Debug for ForgeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForgeClient")
            .field("base_url", &self.base_url)
            .field(
                "token",
                &if self.token.is_some() {
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
        let base = Url::parse(base_url.trim())
            .map_err(|e| ForgeError::InvalidBaseUrl(format!("not an absolute URL ({e})")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(ForgeError::InvalidBaseUrl(format!(
                "scheme `{}` is not http or https",
                base.scheme()
            )));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(ForgeError::InvalidBaseUrl(
                "it embeds credentials; pass the token separately".into(),
            ));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(ForgeError::InvalidBaseUrl(
                "it has a query or a fragment".into(),
            ));
        }
        if base.cannot_be_a_base() || base.host_str().is_none() {
            return Err(ForgeError::InvalidBaseUrl("it has no host".into()));
        }
        let mut api = base.clone();
        api.path_segments_mut()
            .map_err(|()| ForgeError::InvalidBaseUrl("it cannot have a path".into()))?
            .pop_if_empty()
            .extend(["api", "v1"]);
        let base_url = base.as_str().trim_end_matches('/').to_string();

        let mut headers = HeaderMap::new();
        let token = match token {
            None => None,
            Some(t) => {
                let t = t.trim().to_string();
                if t.is_empty() {
                    return Err(ForgeError::InvalidArgument("the token is empty".into()));
                }
                let mut value = HeaderValue::from_str(&format!("token {t}")).map_err(|_| {
                    ForgeError::InvalidArgument(
                        "the token has characters not allowed in an HTTP header".into(),
                    )
                })?;
                value.set_sensitive(true);
                headers.insert(AUTHORIZATION, value);
                Some(t)
            }
        };
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .default_headers(headers)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| ForgeError::Transport(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            api,
            base_url,
            token,
            retry,
            page_size: DEFAULT_PAGE_SIZE,
        })
    }

    /// The same client asking for `page_size` items per page when listing (at least 1).
    pub fn with_page_size(mut self, page_size: u32) -> Self {
        self.page_size = page_size.max(1);
        self
    }

    /// The forge's base URL, without `/api/v1` and without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The retry policy in force.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// Fetches a repository.
    ///
    /// # Errors
    ///
    /// [`ForgeError::Client`] (404 if there is no such repository or the token cannot
    /// see it), [`ForgeError::Server`], [`ForgeError::Transport`], [`ForgeError::Decode`].
    pub async fn get_repo(&self, owner: &str, repo: &str) -> Result<Repository, ForgeError> {
        let segs = ["repos", owner, repo];
        let reply = self
            .execute(Method::GET, &segs, &[], None, self.retry)
            .await?;
        self.decode_ok(&Method::GET, &segs, reply)
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
        let segs = ["repos", owner, repo, "issues", index.as_str()];
        let reply = self
            .execute(Method::GET, &segs, &[], None, self.retry)
            .await?;
        self.decode_ok(&Method::GET, &segs, reply)
    }

    /// Starts the token owner's stopwatch on issue `index`.
    ///
    /// # Errors
    ///
    /// A stopwatch already running is [`StopwatchOutcome::AlreadyInState`], not an
    /// error. Otherwise [`ForgeError::Client`] (403 without write access or with time
    /// tracking off, 404 if there is no such issue), [`ForgeError::Server`],
    /// [`ForgeError::Transport`].
    pub async fn start_stopwatch(
        &self,
        owner: &str,
        repo: &str,
        index: u64,
    ) -> Result<StopwatchOutcome, ForgeError> {
        self.stopwatch(owner, repo, index, "start").await
    }

    /// Stops the token owner's stopwatch on issue `index` (the time is recorded).
    ///
    /// # Errors
    ///
    /// A stopwatch not running is [`StopwatchOutcome::AlreadyInState`], not an error.
    /// Otherwise as [`ForgeClient::start_stopwatch`].
    pub async fn stop_stopwatch(
        &self,
        owner: &str,
        repo: &str,
        index: u64,
    ) -> Result<StopwatchOutcome, ForgeError> {
        self.stopwatch(owner, repo, index, "stop").await
    }

    async fn stopwatch(
        &self,
        owner: &str,
        repo: &str,
        index: u64,
        action: &str,
    ) -> Result<StopwatchOutcome, ForgeError> {
        let index = index.to_string();
        let segs = [
            "repos",
            owner,
            repo,
            "issues",
            index.as_str(),
            "stopwatch",
            action,
        ];
        let reply = self
            .execute(Method::POST, &segs, &[], None, self.retry)
            .await?;
        if reply.status == StatusCode::CONFLICT {
            return Ok(StopwatchOutcome::AlreadyInState);
        }
        self.check_success(&Method::POST, &segs, &reply)?;
        Ok(StopwatchOutcome::Done)
    }

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
        let segs = ["repos", owner, repo, "issues", index.as_str(), "comments"];
        let reply = self
            .execute(Method::GET, &segs, &[], None, self.retry)
            .await?;
        self.decode_ok(&Method::GET, &segs, reply)
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
        let reply = self
            .execute(Method::POST, &segs, &[], Some(&payload), retry)
            .await?;
        self.decode_ok(&Method::POST, &segs, reply)
    }

    /// Replaces the body of comment `comment_id`.
    ///
    /// # Errors
    ///
    /// [`ForgeError::Client`] (403 not the author, 404 no such comment, 423 archived,
    /// and 204 for a comment kind without a body, which the forge does not edit),
    /// [`ForgeError::Server`], [`ForgeError::Transport`], [`ForgeError::Decode`].
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
        self.decode_ok(&Method::PATCH, &segs, reply)
    }

    /// Makes issue `index` carry exactly one comment holding `marker` (a hidden HTML
    /// comment such as [`job_marker`]), with `body` as its text: edits the existing one
    /// if its body differs, leaves it alone if identical, creates it (with the marker
    /// appended) if there is none. Calling it again with the same arguments changes
    /// nothing. Transient failures while creating are retried only after checking
    /// again for the marker, so a retry never duplicates the comment.
    ///
    /// # Errors
    ///
    /// [`ForgeError::InvalidArgument`] if `marker` is blank; otherwise as
    /// [`ForgeClient::list_comments`], [`ForgeClient::create_comment`] and
    /// [`ForgeClient::edit_comment`].
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
        let wanted = with_marker(body, marker);
        let mut retry = 0;
        loop {
            let comments = self.list_comments(owner, repo, index).await?;
            if let Some(existing) = find_marked(&comments, marker) {
                if existing.body.trim_end() == wanted.trim_end() {
                    return Ok(existing.clone());
                }
                return self.edit_comment(owner, repo, existing.id, &wanted).await;
            }
            match self
                .create_comment_with(owner, repo, index, &wanted, RetryPolicy::no_retries())
                .await
            {
                Err(e) if e.is_transient() && retry < self.retry.max_retries => {
                    self.pause(retry, "POST comment", &e).await;
                    retry += 1;
                }
                other => return other,
            }
        }
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
            let query = [
                ("state", "open".to_string()),
                ("page", page.to_string()),
                ("limit", limit.clone()),
            ];
            let reply = self
                .execute(Method::GET, &segs, &query, None, self.retry)
                .await?;
            let total = reply.total_count;
            // The API may put `null` in the list for a pull request it failed to load.
            let batch: Vec<Option<PullRequest>> = self.decode_ok(&Method::GET, &segs, reply)?;
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
        let reply = self
            .execute(Method::POST, &segs, &[], Some(&payload), retry)
            .await?;
        self.decode_ok(&Method::POST, &segs, reply)
    }

    /// The open pull request whose head branch is `pull.head`, or a new one. Returns it
    /// and whether it was created. A 409 from the forge (someone opened it meanwhile)
    /// and transient failures lead to a fresh look before any new attempt, so a retry
    /// never opens a second pull request.
    ///
    /// # Errors
    ///
    /// As [`ForgeClient::list_open_pulls`] and [`ForgeClient::create_pull`].
    pub async fn find_or_create_pull(
        &self,
        owner: &str,
        repo: &str,
        pull: &CreatePull,
    ) -> Result<(PullRequest, bool), ForgeError> {
        let wanted = head_branch(&pull.head);
        let mut retry = 0;
        let mut conflicts = 0;
        loop {
            let open = self.list_open_pulls(owner, repo).await?;
            if let Some(pr) = open.into_iter().find(|p| p.head.ref_name == wanted) {
                return Ok((pr, false));
            }
            match self
                .create_pull_with(owner, repo, pull, RetryPolicy::no_retries())
                .await
            {
                Ok(pr) => return Ok((pr, true)),
                Err(ForgeError::Client { status: 409, .. }) if conflicts == 0 => conflicts += 1,
                Err(e) if e.is_transient() && retry < self.retry.max_retries => {
                    self.pause(retry, "POST pull request", &e).await;
                    retry += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Sets a commit status on `sha`.
    ///
    /// # Errors
    ///
    /// [`ForgeError::InvalidArgument`] if `sha` is blank; [`ForgeError::Client`] (400,
    /// 404 if there is no such repository or commit), [`ForgeError::Server`],
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
        let reply = self
            .execute(Method::POST, &segs, &[], Some(&payload), self.retry)
            .await?;
        self.check_success(&Method::POST, &segs, &reply)
    }

    fn endpoint(&self, segs: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = self.api.clone();
        url.path_segments_mut()
            .expect("checked in ForgeClient::new")
            .extend(segs);
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        url
    }

    /// Sends one API request, retrying per `retry`. Returns the final answer, whatever
    /// its status, unless it is retryable (429, 5xx) and retries ran out, or the
    /// request could not be made.
    async fn execute(
        &self,
        method: Method,
        segs: &[&str],
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
        retry: RetryPolicy,
    ) -> Result<Reply, ForgeError> {
        let url = self.endpoint(segs, query);
        let path = display_path(segs);
        // Only requests that cannot have taken effect twice are retried after a
        // transport failure mid-request; a refused connection never reached the forge.
        let idempotent = matches!(
            method,
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE
        );
        let mut attempt: u32 = 0;
        loop {
            let mut request = self.http.request(method.clone(), url.clone());
            if let Some(body) = body {
                request = request.json(body);
            }
            // Either return, or name the failure to retry and any wait the forge asked for.
            let (what, retry_after) = match request.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let retry_after = resp
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_retry_after);
                    let total_count = resp
                        .headers()
                        .get("x-total-count")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse().ok());
                    match resp.bytes().await {
                        Ok(bytes) => {
                            let reply = Reply {
                                status,
                                body: bytes.to_vec(),
                                total_count,
                            };
                            if !is_retryable_status(status) {
                                return Ok(reply);
                            }
                            let message = self.message_of(&reply.body);
                            if attempt >= retry.max_retries {
                                return Err(ForgeError::Server {
                                    status: status.as_u16(),
                                    method: method.to_string(),
                                    path,
                                    message,
                                    attempts: attempt + 1,
                                });
                            }
                            (format!("{status}: {message}"), retry_after)
                        }
                        Err(e) if idempotent && attempt < retry.max_retries => (describe(&e), None),
                        Err(e) => return Err(self.transport(&method, &path, &e, attempt + 1)),
                    }
                }
                Err(e)
                    if (e.is_connect() || (idempotent && (e.is_timeout() || e.is_request())))
                        && attempt < retry.max_retries =>
                {
                    (describe(&e), None)
                }
                Err(e) => return Err(self.transport(&method, &path, &e, attempt + 1)),
            };
            let delay = match retry_after {
                Some(_) => retry.delay(attempt, retry_after),
                None => jitter(retry.backoff(attempt), random_u64()),
            };
            tracing::warn!(
                method = %method,
                path = %path,
                attempt = attempt + 1,
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                reason = %self.scrub(what),
                "forge request failed; retrying"
            );
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// Sleeps before retry `retry` of a multi-step operation.
    async fn pause(&self, retry: u32, what: &str, err: &ForgeError) {
        let delay = jitter(self.retry.backoff(retry), random_u64());
        tracing::warn!(
            operation = what,
            attempt = retry + 1,
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            error = %err,
            "forge operation failed; checking again before retrying"
        );
        tokio::time::sleep(delay).await;
    }

    fn transport(
        &self,
        method: &Method,
        path: &str,
        e: &reqwest::Error,
        attempts: u32,
    ) -> ForgeError {
        let plural = if attempts == 1 { "" } else { "s" };
        ForgeError::Transport(self.scrub(format!(
            "{method} {path}: {} ({attempts} attempt{plural})",
            describe(e)
        )))
    }

    fn check_success(
        &self,
        method: &Method,
        segs: &[&str],
        reply: &Reply,
    ) -> Result<(), ForgeError> {
        if reply.status.is_success() {
            Ok(())
        } else {
            Err(ForgeError::Client {
                status: reply.status.as_u16(),
                method: method.to_string(),
                path: display_path(segs),
                message: self.message_of(&reply.body),
            })
        }
    }

    fn decode_ok<T: DeserializeOwned>(
        &self,
        method: &Method,
        segs: &[&str],
        reply: Reply,
    ) -> Result<T, ForgeError> {
        self.check_success(method, segs, &reply)?;
        serde_json::from_slice(&reply.body).map_err(|e| {
            ForgeError::Decode(self.scrub(format!(
                "{method} {} answered {}: {e}",
                display_path(segs),
                reply.status.as_u16()
            )))
        })
    }

    /// The forge's `message` (`APIError`), else the start of the body, token removed.
    fn message_of(&self, body: &[u8]) -> String {
        self.scrub(error_message(body))
    }

    fn scrub(&self, text: String) -> String {
        match &self.token {
            Some(token) if text.contains(token.as_str()) => {
                text.replace(token.as_str(), "<redacted>")
            }
            _ => text,
        }
    }
}

fn is_retryable_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

fn display_path(segs: &[&str]) -> String {
    let mut path = String::new();
    for seg in segs {
        path.push('/');
        path.push_str(seg);
    }
    path
}

/// A reqwest error and its causes, without the URL.
fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "connection failed".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The `message` of an `APIError`-shaped body (with `errors` if any), else the start
/// of the body as text.
fn error_message(body: &[u8]) -> String {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        let message = value
            .get("message")
            .and_then(|m| m.as_str())
            .unwrap_or_default()
            .trim()
            .to_string();
        let errors: Vec<&str> = value
            .get("errors")
            .and_then(|e| e.as_array())
            .map(|a| a.iter().filter_map(|e| e.as_str()).collect())
            .unwrap_or_default();
        let joined = match (message.is_empty(), errors.is_empty()) {
            (false, true) => message,
            (false, false) => format!("{message} ({})", errors.join("; ")),
            (true, false) => errors.join("; "),
            (true, true) => String::new(),
        };
        if !joined.is_empty() {
            return truncate(&joined);
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "(empty answer)".to_string()
    } else {
        truncate(text)
    }
}

fn truncate(text: &str) -> String {
    match text.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(base_ms: u64, max_ms: u64) -> RetryPolicy {
        RetryPolicy {
            max_retries: 4,
            base_delay: Duration::from_millis(base_ms),
            max_delay: Duration::from_millis(max_ms),
        }
    }

    #[test]
    fn default_policy_is_four_retries_from_500ms_to_30s() {
        let p = RetryPolicy::default();
        assert_eq!(p.max_retries, 4);
        assert_eq!(p.base_delay, Duration::from_millis(500));
        assert_eq!(p.max_delay, Duration::from_secs(30));
        assert_eq!(RetryPolicy::no_retries().max_retries, 0);
    }

    #[test]
    fn retry_after_seconds_form() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999"),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn retry_after_rejects_garbage() {
        for bad in ["", "  ", "-1", "1.5", "soon", "12s", "0x10"] {
            assert_eq!(parse_retry_after(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn retry_after_http_date_form_is_relative_to_now() {
        let now = chrono::DateTime::parse_from_rfc3339("2015-10-21T07:27:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(
            parse_retry_after_at("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        // A date in the past means "now".
        assert_eq!(
            parse_retry_after_at("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = policy(500, 30_000);
        let got: Vec<u64> = (0..8).map(|n| p.backoff(n).as_millis() as u64).collect();
        assert_eq!(got, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
        // Huge retry numbers neither overflow nor exceed the cap.
        assert_eq!(p.backoff(31), Duration::from_secs(30));
        assert_eq!(p.backoff(64), Duration::from_secs(30));
        assert_eq!(p.backoff(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn retry_after_wins_but_is_capped_by_max_delay() {
        let p = policy(100, 5_000);
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(3600))),
            Duration::from_secs(5)
        );
        assert_eq!(p.delay(3, None), Duration::from_millis(800));
    }

    #[test]
    fn jitter_stays_between_half_and_full() {
        let ceiling = Duration::from_millis(1000);
        for r in [0, 1, 7, 499_999_999, 500_000_000, u64::MAX / 3, u64::MAX] {
            let d = jitter(ceiling, r);
            assert!(d >= Duration::from_millis(500) && d <= ceiling, "{d:?}");
        }
        assert_eq!(jitter(Duration::ZERO, 12345), Duration::ZERO);
    }

    #[test]
    fn marker_is_appended_once() {
        let m = job_marker("01J");
        assert_eq!(m, "<!-- agentq:job=01J -->");
        assert_eq!(
            with_marker("Working on it.\n", &m),
            format!("Working on it.\n\n{m}")
        );
        let once = with_marker("Working on it.", &m);
        assert_eq!(with_marker(&once, &m), once);
        assert_eq!(with_marker("", &m), m);
    }

    #[test]
    fn find_marked_picks_the_oldest_matching_comment() {
        let m = job_marker("A");
        let comments = vec![
            Comment {
                id: 1,
                body: "unrelated".into(),
                html_url: String::new(),
            },
            Comment {
                id: 2,
                body: format!("first\n\n{m}"),
                html_url: String::new(),
            },
            Comment {
                id: 3,
                body: format!("second\n\n{m}"),
                html_url: String::new(),
            },
            Comment {
                id: 4,
                body: job_marker("AB"),
                html_url: String::new(),
            },
        ];
        assert_eq!(find_marked(&comments, &m).map(|c| c.id), Some(2));
        assert_eq!(find_marked(&comments, &job_marker("B")).map(|c| c.id), None);
        assert_eq!(
            find_marked(&comments, &job_marker("AB")).map(|c| c.id),
            Some(4)
        );
    }

    #[test]
    fn head_branch_strips_a_fork_owner() {
        assert_eq!(head_branch("agentq/job-1"), "agentq/job-1");
        assert_eq!(head_branch("bot:agentq/job-1"), "agentq/job-1");
    }

    #[test]
    fn error_message_prefers_the_api_message() {
        assert_eq!(
            error_message(br#"{"message":"issue does not exist","url":"x"}"#),
            "issue does not exist"
        );
        assert_eq!(
            error_message(br#"{"message":"not found","errors":["a","b"]}"#),
            "not found (a; b)"
        );
        assert_eq!(
            error_message(b"<html>bad gateway</html>"),
            "<html>bad gateway</html>"
        );
        assert_eq!(error_message(b""), "(empty answer)");
        let long = "x".repeat(1000);
        assert_eq!(
            error_message(long.as_bytes()).chars().count(),
            MAX_MESSAGE_CHARS + 1
        );
    }

    #[test]
    fn base_url_is_checked() {
        let ok = |u: &str| ForgeClient::new(u, None, RetryPolicy::default());
        assert!(ok("http://127.0.0.1:3000").is_ok());
        assert!(ok("https://forge.example.org/sub/").is_ok());
        for bad in [
            "127.0.0.1:3000",
            "ftp://forge.example.org",
            "http://user:secret@forge.example.org",
            "http://forge.example.org/?a=b",
            "not a url",
        ] {
            let err = ok(bad).unwrap_err();
            assert!(
                matches!(err, ForgeError::InvalidBaseUrl(_)),
                "{bad}: {err:?}"
            );
            assert!(!err.to_string().contains("secret"), "{err}");
        }
    }

    #[test]
    fn endpoints_live_under_api_v1_with_encoded_segments() {
        let c = ForgeClient::new(
            "https://forge.example.org/sub/",
            None,
            RetryPolicy::default(),
        )
        .unwrap();
        assert_eq!(c.base_url(), "https://forge.example.org/sub");
        let url = c.endpoint(
            &["repos", "acme", "we ird", "statuses", "abc"],
            &[("page", "2".into())],
        );
        assert_eq!(
            url.as_str(),
            "https://forge.example.org/sub/api/v1/repos/acme/we%20ird/statuses/abc?page=2"
        );
        let c = ForgeClient::new("http://127.0.0.1:3000", None, RetryPolicy::default()).unwrap();
        assert_eq!(
            c.endpoint(&["repos", "a", "b"], &[]).as_str(),
            "http://127.0.0.1:3000/api/v1/repos/a/b"
        );
    }

    #[test]
    fn token_is_never_printed() {
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
        assert_eq!(c.scrub(format!("echo {token}!")), "echo <redacted>!");
        assert!(matches!(
            ForgeClient::new("http://h", Some("  ".into()), RetryPolicy::default()),
            Err(ForgeError::InvalidArgument(_))
        ));
        let err = ForgeClient::new(
            "http://h",
            Some("bad\ntoken".into()),
            RetryPolicy::default(),
        )
        .unwrap_err();
        assert!(!err.to_string().contains("bad\ntoken"));
    }

    #[test]
    fn commit_state_serializes_lowercase() {
        let s = CreateStatus {
            state: CommitState::Failure,
            target_url: None,
            description: Some("tests failed".into()),
            context: "agentq/codex".into(),
        };
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            serde_json::json!({"state": "failure", "description": "tests failed", "context": "agentq/codex"})
        );
        assert_eq!(CommitState::Warning.to_string(), "warning");
    }

    #[test]
    fn pull_request_branch_ref_is_renamed() {
        let pr: PullRequest = serde_json::from_value(serde_json::json!({
            "number": 3, "html_url": "h", "state": "open", "title": "t",
            "head": {"ref": "agentq/x", "sha": "abc", "label": "agentq/x"},
            "base": {"ref": "main", "sha": "def"}
        }))
        .unwrap();
        assert_eq!(pr.head.ref_name, "agentq/x");
        assert_eq!(pr.base.sha, "def");
    }
}
