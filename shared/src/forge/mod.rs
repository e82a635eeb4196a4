//! A client for the Forgejo (and Gitea) REST API v1: repositories, issues, issue
//! comments, tracked times and stopwatches, pull requests and commit statuses.
//!
//! Paths, methods and field names follow the upstream OpenAPI description
//! (`templates/swagger/v1_json.tmpl`); the answers handled are the ones Forgejo's
//! handlers give, which the description does not always list (the source file is
//! named where they differ):
//!
//! | call | request | success | other answers handled |
//! |---|---|---|---|
//! | [`ForgeClient::current_user`] | `GET /user` (once, cached) | 200 `User` | |
//! | [`ForgeClient::get_repo`] | `GET /repos/{owner}/{repo}` | 200 `Repository` | 404 (also a private repository the token cannot see) |
//! | [`ForgeClient::get_issue`] | `GET /repos/{owner}/{repo}/issues/{index}` | 200 `Issue` | |
//! | [`ForgeClient::add_time`] | `POST …/issues/{index}/times` `{"time","created"}` | 200 `TrackedTime` | 400 "time tracking disabled", 403 (`issue_tracked_time.go`) |
//! | [`ForgeClient::list_tracked_times`] | `GET …/issues/{index}/times?user&since&before` | 200 `[TrackedTime]` | |
//! | [`ForgeClient::start_stopwatch`] | `POST …/issues/{index}/stopwatch/start` | 201 | 403 time tracking off or not allowed, 409 already running (`issue_stopwatch.go`) |
//! | [`ForgeClient::stop_stopwatch`] | `POST …/issues/{index}/stopwatch/stop` | 201 | 403, 409 not running |
//! | [`ForgeClient::list_comments`] | `GET …/issues/{index}/comments` | 200 `[Comment]` | |
//! | [`ForgeClient::create_comment`] | `POST …/issues/{index}/comments` `{"body"}` | 201 `Comment` | |
//! | [`ForgeClient::edit_comment`] | `PATCH /repos/{owner}/{repo}/issues/comments/{id}` `{"body"}` | 200 `Comment` | 204: not editable; 403: someone else's (`issue_comment.go`) |
//! | [`ForgeClient::get_pull_by_base_head`] | `GET /repos/{owner}/{repo}/pulls/{base}/{head}` | 200 `PullRequest` (any state) | 404: none |
//! | [`ForgeClient::list_open_pulls`] | `GET /repos/{owner}/{repo}/pulls?state=open&page&limit` | 200 `[PullRequest]` | |
//! | [`ForgeClient::create_pull`] | `POST /repos/{owner}/{repo}/pulls` | 201 `PullRequest` | 409: exists |
//! | [`ForgeClient::create_status`] | `POST /repos/{owner}/{repo}/statuses/{sha}` | 201 `CommitStatus` | 500 for a commit the repository does not have (`status.go`) |
//! | [`ForgeClient::commit_exists`] | `GET /repos/{owner}/{repo}/git/commits/{sha}` | 200 | 404: no such commit |
//! | [`ForgeClient::combined_status`] | `GET /repos/{owner}/{repo}/commits/{ref}/status` | 200 `CombinedStatus` | |
//! | [`ForgeClient::get_pull`] | `GET /repos/{owner}/{repo}/pulls/{index}` | 200 `PullRequest` | 404 |
//! | [`ForgeClient::merge_pull`] | `POST …/pulls/{index}/merge` `MergePullRequestOption` | 200 (no body) | 405 not mergeable, 409 conflicts or head moved, 404 closed (`pull.go`, `MergePullRequest`) |
//! | [`ForgeClient::list_labels`] | `GET /repos/{owner}/{repo}/labels` | 200 `[Label]` | |
//! | [`ForgeClient::ensure_label`] | `POST /repos/{owner}/{repo}/labels` `CreateLabelOption` | 201 `Label` | |
//! | [`ForgeClient::add_labels`] | `POST …/issues/{index}/labels` `IssueLabelsOption` | 200 `[Label]` | |
//! | [`ForgeClient::delete_branch`] | `DELETE /repos/{owner}/{repo}/branches/{branch}` | 204 | 404 none, 403 default or protected (`branch.go`) |
//! | [`ForgeClient::missing_scopes`] | `GET /user`; `POST` to a repository that cannot exist, per write scope | 200 / 404: the scope is held | 403 "token does not have at least one of required scope(s)": missing (`scopes.rs`) |
//!
//! Every request carries `Authorization: token <TOKEN>` (when a token is given), a
//! `User-Agent: agentq/<version>`, a 5 s connect timeout and a 30 s total timeout.
//! 429 and 5xx answers and connection failures are retried with exponential backoff
//! (honouring `Retry-After`); other 4xx answers fail at once. A client with a
//! deadline ([`ForgeClient::with_deadline`]: the worker's budget for a stage's
//! forge calls) ends every request by it and begins no retry that could not end
//! before it, returning the last failure instead. Writes that the forge
//! may have stored before failing (comments, pull requests, tracked times, commit
//! statuses) are retried only after checking that the earlier attempt left nothing.
//! The token never appears in an error message, a log line or `Debug` output.

mod client;
mod retry;
mod scopes;
mod transport;
mod types;

use std::time::Duration;

pub use client::{ForgeClient, MergeOutcome};
pub use retry::{parse_retry_after, RetryPolicy};
pub use scopes::{is_scope_refusal, MissingScope, NEEDED_SCOPES, PROBE_OWNER};
pub use types::{
    find_marked, job_marker, with_marker, AddTime, CombinedStatus, Comment, CommitState,
    CommitStatus, CreatePull, CreateStatus, Issue, IssueState, Label, MergePull, MergeStyle,
    PrBranch, PullRequest, Repository, TrackedTime, User,
};

/// The `User-Agent` sent with every request.
pub const USER_AGENT: &str = concat!("agentq/", env!("CARGO_PKG_VERSION"));

/// How long establishing a connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one request (connect, send, read the whole answer) may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Page size asked for when listing (Forgejo's default `MAX_RESPONSE_ITEMS`).
pub const DEFAULT_PAGE_SIZE: u32 = 50;

/// How long a client trusts that time tracking is unavailable on a repository
/// before asking the forge again.
pub const TRACKING_RECHECK: Duration = Duration::from_secs(3600);

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
    /// A commit status was refused because the repository has no such commit.
    /// Forgejo answers this with a 500 (`routers/api/v1/repo/status.go`), which the
    /// client tells apart from a server fault by looking the commit up. Not retried.
    #[error("commit {sha} does not exist in the repository (the forge answered {status})")]
    UnknownCommit {
        /// The commit asked for.
        sha: String,
        /// What the forge answered to the status.
        status: u16,
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
    /// zero seconds, a token that cannot go in an HTTP header).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl ForgeError {
    /// The HTTP status behind this error, if the forge answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Client { status, .. }
            | Self::Server { status, .. }
            | Self::UnknownCommit { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether retrying later may help (5xx/429 or transport trouble).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Server { .. } | Self::Transport(_))
    }
}

/// Why the forge will not track time on a repository's issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackingUnavailable {
    /// Time tracking is switched off for the repository (`400 time tracking
    /// disabled` when adding time).
    Disabled,
    /// The forge answered 403: time tracking is off, or only contributors may track
    /// time and the token's user is not one (`CanUseTimetracker`).
    Forbidden,
}

impl TrackingUnavailable {
    /// A sentence for a note.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Disabled => "time tracking is disabled on this repository",
            Self::Forbidden => {
                "the forge refused time tracking (403: disabled on this repository, or the token's user may not track time there)"
            }
        }
    }
}

/// What [`ForgeClient::add_time`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeOutcome {
    /// The time was added.
    Added(TrackedTime),
    /// An earlier attempt that failed in transit had added it already; nothing new.
    AlreadyAdded(TrackedTime),
    /// The repository does not track time. `first` is true when the forge just said
    /// so, false when the client already knew (and did not ask again).
    Unavailable {
        /// Why.
        reason: TrackingUnavailable,
        /// First time this client learns it for this repository.
        first: bool,
    },
}

/// What starting or stopping a stopwatch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopwatchOutcome {
    /// The stopwatch was started.
    Started,
    /// A stopwatch was already running on this issue for the token's user (409).
    AlreadyRunning,
    /// The stopwatch was stopped and its time recorded on the issue.
    Stopped,
    /// No stopwatch was running on this issue (409). A forge keeps one stopwatch per
    /// user: starting one on another issue stops (and records) this one, so with
    /// several jobs on one token this means the time was cut short.
    NotRunning,
    /// The repository does not track time; `first` as in [`TimeOutcome::Unavailable`].
    Unavailable {
        /// Why.
        reason: TrackingUnavailable,
        /// First time this client learns it for this repository.
        first: bool,
    },
}
