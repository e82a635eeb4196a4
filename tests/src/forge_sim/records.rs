//! What a test reads back from the sim: comments, pull requests, statuses,
//! tracked times, requests and pushes.

/// A comment as the sim stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimComment {
    /// Its id.
    pub id: u64,
    /// The issue or pull request it is on.
    pub issue: u64,
    /// Its body.
    pub body: String,
    /// Its author's login.
    pub author: String,
}

/// A pull request as the sim stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimPull {
    /// Its index (shared with issues).
    pub number: u64,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// Head branch.
    pub head: String,
    /// The repository the head branch is in, `owner/repo` (a fork's, or this one).
    pub head_repo: String,
    /// Base branch.
    pub base: String,
    /// The head branch's commit when the pull request was opened.
    pub head_sha: String,
    /// `open` or `closed`.
    pub state: String,
    /// Whether it was merged.
    pub merged: bool,
    /// The names of its labels.
    pub labels: Vec<String>,
}

/// A commit status as the sim stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimStatus {
    /// As given (Forgejo does not check it).
    pub state: String,
    /// Link, empty if none was given.
    pub target_url: String,
    /// Description, empty if none was given.
    pub description: String,
    /// Context.
    pub context: String,
}

/// A tracked time as the sim stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimTrackedTime {
    /// Its id.
    pub id: u64,
    /// Who spent it.
    pub user: String,
    /// Seconds.
    pub seconds: i64,
    /// When (Unix seconds).
    pub created_unix: i64,
    /// Whether a stopwatch made it (stopped, or stopped by a start on another issue).
    pub from_stopwatch: bool,
}

/// One request the sim answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// HTTP method.
    pub method: String,
    /// Path, `/api/v1/...` for the API.
    pub path: String,
    /// Raw query string, empty if none.
    pub query: String,
    /// Status answered.
    pub status: u16,
}

/// One ref changed by a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefUpdate {
    /// Full ref name (`refs/heads/main`).
    pub name: String,
    /// Commit before the push, `None` if the ref was created.
    pub old: Option<String>,
    /// Commit after the push, `None` if the ref was deleted.
    pub new: Option<String>,
}

/// One push (`git-receive-pack`) the sim served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushRecord {
    /// Owner.
    pub owner: String,
    /// Repository (without `.git`).
    pub repo: String,
    /// The login of the user whose token authenticated the push.
    pub user: String,
    /// Whether `git http-backend` exited successfully.
    pub success: bool,
    /// Refs that changed.
    pub updates: Vec<RefUpdate>,
}
