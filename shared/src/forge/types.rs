//! The API's data types, as far as agentq reads or sends them (names follow the
//! OpenAPI description `templates/swagger/v1_json.tmpl`).

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A user (`User` in the API; only the fields agentq reads). Ids are signed: the
/// forge shows a deleted user as the "ghost" with id -1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Its id.
    pub id: i64,
    /// Its login name.
    #[serde(default)]
    pub login: String,
}

/// Whether an issue or pull request is open (`StateType` in the API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IssueState {
    /// Open.
    Open,
    /// Closed (for a pull request: closed or merged).
    Closed,
}

impl IssueState {
    /// The API's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }
}

impl fmt::Display for IssueState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A repository (`Repository` in the API; only the fields agentq reads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repository {
    /// Its id (what a pull request's `head.repo_id` and `base.repo_id` refer to).
    #[serde(default)]
    pub id: i64,
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
    /// Whether only its members can see it (clone and fetch need credentials).
    #[serde(default)]
    pub private: bool,
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
    /// Open or closed.
    pub state: IssueState,
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
    /// Its author (`null` for some migrated comments).
    #[serde(default)]
    pub user: Option<User>,
}

/// One side of a pull request (`PRBranchInfo` in the API).
///
/// On Forgejo (`services/convert/pull.go`, `ToAPIPullRequest`) `label` is the branch
/// name; `ref` is the branch name too while the branch exists, and
/// `refs/pull/{index}/head` once it was deleted; `repo_id` is the repository the
/// branch lives in (a fork's for a pull request from a fork; -1 if that repository
/// is gone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrBranch {
    /// Branch name (`label` in the API).
    #[serde(default)]
    pub label: String,
    /// Branch name, or `refs/pull/{index}/head` when the branch is gone (`ref`).
    #[serde(rename = "ref")]
    pub ref_name: String,
    /// Commit the branch points at.
    #[serde(default)]
    pub sha: String,
    /// Id of the repository holding the branch.
    #[serde(default)]
    pub repo_id: i64,
}

impl PrBranch {
    /// The branch name: `label`, without an `owner:` prefix if a server adds one
    /// (`:` cannot occur in a git branch name).
    pub fn branch(&self) -> &str {
        let label = if self.label.is_empty() {
            self.ref_name.as_str()
        } else {
            self.label.as_str()
        };
        label.rsplit_once(':').map_or(label, |(_, b)| b)
    }
}

/// A pull request (`PullRequest` in the API; only the fields agentq reads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequest {
    /// Its index in the repository (shared with issues).
    pub number: u64,
    /// Web page.
    pub html_url: String,
    /// Open or closed.
    pub state: IssueState,
    /// Title.
    #[serde(default)]
    pub title: String,
    /// The branch with the changes.
    pub head: PrBranch,
    /// The branch it merges into.
    pub base: PrBranch,
    /// Whether it was merged (a merged one is `closed` too).
    #[serde(default)]
    pub merged: bool,
}

/// How a pull request is merged (`MergePullRequestOption.Do`; Forgejo also
/// knows `rebase-merge`, `fast-forward-only` and `manually-merged`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MergeStyle {
    /// A merge commit.
    #[default]
    Merge,
    /// The commits rebased onto the base, no merge commit.
    Rebase,
    /// One commit with all the changes.
    Squash,
}

/// What [`super::ForgeClient::merge_pull`] sends (`MergePullRequestOption`,
/// upstream `verify.go` `forgeMergePR`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergePull {
    /// The style (`Do`, required).
    #[serde(rename = "Do")]
    pub style: MergeStyle,
    /// The merge commit's message (`MergeMessageField`: the Go field has no
    /// JSON tag, so this is its name; upstream `verify.go` sends
    /// `merge_message_field`, which Forgejo's decoder silently drops).
    #[serde(
        rename = "MergeMessageField",
        skip_serializing_if = "String::is_empty",
        default
    )]
    pub message: String,
    /// Delete the head branch once merged.
    pub delete_branch_after_merge: bool,
    /// Merge only while the head is this commit (else 409 "head out of date").
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub head_commit_id: String,
}

/// A label (`Label`; the fields agentq reads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    /// Its id.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// Colour, `rrggbb`.
    #[serde(default)]
    pub color: String,
}

/// What [`super::ForgeClient::create_pull`] sends (`CreatePullRequestOption`).
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

/// What [`super::ForgeClient::create_status`] sends (`CreateStatusOption`).
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

/// A commit status as the forge stores it (`CommitStatus`; the fields agentq reads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitStatus {
    /// Its id.
    #[serde(default)]
    pub id: u64,
    /// Its state (`status` in the API), as the forge names it.
    #[serde(default)]
    pub status: String,
    /// Link, empty if none.
    #[serde(default)]
    pub target_url: String,
    /// Description, empty if none.
    #[serde(default)]
    pub description: String,
    /// Context.
    #[serde(default)]
    pub context: String,
}

impl CommitStatus {
    /// Whether this is what `wanted` asked for (the forge trims text values).
    pub fn is(&self, wanted: &CreateStatus) -> bool {
        let trimmed = |o: &Option<String>| o.as_deref().unwrap_or_default().trim().to_string();
        self.status == wanted.state.as_str()
            && self.context.trim() == wanted.context.trim()
            && self.description.trim() == trimmed(&wanted.description)
            && self.target_url.trim() == trimmed(&wanted.target_url)
    }
}

/// The latest status of each context on a commit (`CombinedStatus`). A commit
/// without statuses is answered `{}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CombinedStatus {
    /// The commit.
    #[serde(default)]
    pub sha: String,
    /// The latest status per context.
    #[serde(default)]
    pub statuses: Option<Vec<CommitStatus>>,
}

/// A stretch of time spent on an issue (`TrackedTime`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackedTime {
    /// Its id.
    pub id: u64,
    /// When it was spent (as given when adding it, to the second).
    pub created: DateTime<Utc>,
    /// Seconds.
    pub time: i64,
    /// Who spent it.
    #[serde(default)]
    pub user_id: i64,
    /// Their login.
    #[serde(default)]
    pub user_name: String,
    /// The issue's id (not its index).
    #[serde(default)]
    pub issue_id: i64,
}

/// What [`super::ForgeClient::add_time`] adds (`AddTimeOption`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddTime {
    /// Seconds spent (at least 1: the forge requires a non-zero `time`).
    pub seconds: u64,
    /// When the time was spent (sent to the second). With the seconds and the user
    /// it identifies this entry, so a retry can tell whether it was already stored.
    pub created: DateTime<Utc>,
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

/// The first (oldest) comment written by user `author_id` whose body contains
/// `marker`. Comments by anyone else are ignored even if they quote the marker: the
/// forge lets only a comment's author (or a repository writer) edit it, and a
/// human's comment is never agentq's to rewrite.
pub fn find_marked<'a>(
    comments: &'a [Comment],
    marker: &str,
    author_id: i64,
) -> Option<&'a Comment> {
    comments
        .iter()
        .find(|c| c.user.as_ref().is_some_and(|u| u.id == author_id) && c.body.contains(marker))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comment(id: u64, user: i64, body: &str) -> Comment {
        Comment {
            id,
            body: body.into(),
            html_url: String::new(),
            user: Some(User {
                id: user,
                login: format!("u{user}"),
            }),
        }
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
    fn find_marked_picks_the_authors_oldest_matching_comment() {
        let m = job_marker("A");
        let comments = vec![
            comment(1, 5, "unrelated"),
            // A human quoting the marker: not ours.
            comment(2, 9, &format!("see\n\n{m}")),
            comment(3, 5, &format!("first\n\n{m}")),
            comment(4, 5, &format!("second\n\n{m}")),
            comment(5, 5, &job_marker("AB")),
            Comment {
                user: None,
                ..comment(6, 0, &m)
            },
        ];
        assert_eq!(find_marked(&comments, &m, 5).map(|c| c.id), Some(3));
        assert_eq!(find_marked(&comments, &m, 9).map(|c| c.id), Some(2));
        assert_eq!(find_marked(&comments, &m, 7).map(|c| c.id), None);
        assert_eq!(find_marked(&comments, &job_marker("B"), 5), None);
        assert_eq!(
            find_marked(&comments, &job_marker("AB"), 5).map(|c| c.id),
            Some(5)
        );
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
        let stored = CommitStatus {
            id: 1,
            status: "failure".into(),
            target_url: String::new(),
            description: "tests failed ".into(),
            context: "agentq/codex".into(),
        };
        assert!(stored.is(&s));
        assert!(!stored.is(&CreateStatus {
            state: CommitState::Success,
            ..s
        }));
    }

    #[test]
    fn pull_request_branches_as_forgejo_sends_them() {
        let pr: PullRequest = serde_json::from_value(serde_json::json!({
            "number": 3, "html_url": "h", "state": "open", "title": "t",
            "head": {"ref": "refs/pull/3/head", "sha": "abc", "label": "agentq/x", "repo_id": 4},
            "base": {"ref": "main", "sha": "def", "label": "main", "repo_id": 4}
        }))
        .unwrap();
        assert_eq!(pr.state, IssueState::Open);
        // The branch was deleted: `ref` no longer names it, `label` does.
        assert_eq!(pr.head.ref_name, "refs/pull/3/head");
        assert_eq!(pr.head.branch(), "agentq/x");
        assert_eq!(pr.head.repo_id, 4);
        assert_eq!(pr.base.sha, "def");
        let gone: PrBranch = serde_json::from_value(
            serde_json::json!({"ref": "feature", "label": "bot:feature", "repo_id": -1}),
        )
        .unwrap();
        assert_eq!(gone.branch(), "feature");
        assert_eq!(gone.repo_id, -1);
    }

    #[test]
    fn tracked_time_reads_forgejo_json() {
        let t: TrackedTime = serde_json::from_value(serde_json::json!({
            "id": 9, "created": "2025-03-01T10:00:05+01:00", "time": 42,
            "user_id": 3, "user_name": "agentq-bot", "issue_id": 77, "issue": null
        }))
        .unwrap();
        assert_eq!(t.created.to_rfc3339(), "2025-03-01T09:00:05+00:00");
        assert_eq!((t.time, t.user_id), (42, 3));
    }
}
