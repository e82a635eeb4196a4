//! The sim's state: users, repositories and what they hold, faults, records.

use super::*;

#[derive(Debug)]
pub(super) struct Failure {
    pub(super) method: String,
    pub(super) path_prefix: String,
    pub(super) status: u16,
    pub(super) remaining: usize,
    pub(super) retry_after: Option<u64>,
    /// Do the work, then answer `status` (a forge failing after storing).
    pub(super) after_effect: bool,
}

#[derive(Debug, Clone)]
pub(super) struct SimUser {
    pub(super) id: u64,
    pub(super) login: String,
    pub(super) token: String,
    /// The token's scopes (`all`, `read:issue`, `write:repository`, …).
    pub(super) scopes: Vec<String>,
}

#[derive(Debug, Default)]
pub(super) struct RepoState {
    pub(super) id: u64,
    pub(super) default_branch: String,
    pub(super) private: bool,
    pub(super) time_tracking: bool,
    /// Users other than [`SIM_USER`] who may write.
    pub(super) writers: HashSet<u64>,
    /// Protected branch patterns (shell globs).
    pub(super) protected: Vec<String>,
    pub(super) issues: BTreeMap<u64, IssueState>,
    pub(super) pulls: BTreeMap<u64, PullState>,
    pub(super) statuses: HashMap<String, Vec<StatusState>>,
    /// Labels, by id (see `merge.rs`).
    pub(super) labels: BTreeMap<u64, LabelState>,
    /// Label ids on each issue or pull request, by index.
    pub(super) issue_labels: HashMap<u64, Vec<u64>>,
    /// The base branch protection's `block_on_outdated_branch`: a pull
    /// request whose head is behind its base is refused a merge.
    pub(super) block_on_outdated: bool,
    /// What the forge's CI reports on every commit: context → state.
    pub(super) ci: BTreeMap<String, String>,
    /// Before the next merge: a commit on the base branch (path, content),
    /// as if someone merged meanwhile.
    pub(super) advance_base: Option<(String, String)>,
}

#[derive(Debug, Clone)]
pub(super) struct LabelState {
    pub(super) name: String,
    pub(super) color: String,
    pub(super) description: String,
}

#[derive(Debug, Clone)]
pub(super) struct IssueState {
    pub(super) id: u64,
    pub(super) title: String,
    pub(super) body: String,
    pub(super) state: String,
    pub(super) created: String,
    pub(super) poster: u64,
}

#[derive(Debug, Clone)]
pub(super) struct PullState {
    pub(super) id: u64,
    pub(super) title: String,
    pub(super) body: String,
    pub(super) head: String,
    pub(super) head_repo: (String, String),
    pub(super) base: String,
    pub(super) head_sha: String,
    pub(super) base_sha: String,
    pub(super) state: String,
    pub(super) created: String,
    pub(super) poster: u64,
    /// The merge commit once merged (empty: not merged).
    pub(super) merge_commit: String,
    /// When it was merged.
    pub(super) merged_at: String,
}

#[derive(Debug, Clone)]
pub(super) struct StatusState {
    pub(super) id: u64,
    pub(super) state: String,
    pub(super) target_url: String,
    pub(super) description: String,
    pub(super) context: String,
    pub(super) created: String,
    pub(super) creator: u64,
}

#[derive(Debug, Clone)]
pub(super) struct CommentState {
    pub(super) id: u64,
    pub(super) owner: String,
    pub(super) repo: String,
    pub(super) issue: u64,
    pub(super) body: String,
    pub(super) created: String,
    pub(super) updated: String,
    pub(super) poster: u64,
}

/// A running stopwatch: at most one per user (`models/issues/stopwatch.go`).
#[derive(Debug, Clone)]
pub(super) struct StopwatchState {
    pub(super) owner: String,
    pub(super) repo: String,
    pub(super) issue: u64,
    pub(super) started_unix: i64,
}

#[derive(Debug, Clone)]
pub(super) struct TimeState {
    pub(super) id: u64,
    pub(super) owner: String,
    pub(super) repo: String,
    pub(super) issue: u64,
    pub(super) user: u64,
    pub(super) created_unix: i64,
    pub(super) time: i64,
    pub(super) from_stopwatch: bool,
}

#[derive(Debug, Default)]
pub(super) struct SimState {
    pub(super) users: Vec<SimUser>,
    pub(super) repos: BTreeMap<(String, String), RepoState>,
    pub(super) comments: Vec<CommentState>,
    pub(super) stopwatches: HashMap<u64, StopwatchState>,
    pub(super) stopwatch_events: Vec<(String, String, u64, String)>,
    pub(super) times: Vec<TimeState>,
    pub(super) next_id: u64,
    pub(super) requests: Vec<RequestRecord>,
    pub(super) failures: Vec<Failure>,
    pub(super) down: bool,
    pub(super) api_down: bool,
    pub(super) hang: bool,
    /// (method, path prefix) of the endpoints that hang.
    pub(super) hangs: Vec<(String, String)>,
    pub(super) latency: std::time::Duration,
    pub(super) pushes: Vec<PushRecord>,
    pub(super) git_stderr: Vec<String>,
    pub(super) unknown_fields: Vec<String>,
    /// Bodies of the writes the forge took, with their definition's name, in order.
    pub(super) bodies: Vec<(&'static str, Value)>,
    /// Success answers checked per endpoint of [`spec::ENDPOINTS`].
    pub(super) spec_served: Vec<usize>,
    /// Answers that did not follow the document.
    pub(super) spec_violations: Vec<String>,
}

impl SimState {
    pub(super) fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub(super) fn user(&self, id: u64) -> Option<&SimUser> {
        self.users.iter().find(|u| u.id == id)
    }

    pub(super) fn login(&self, id: u64) -> String {
        self.user(id)
            .map_or_else(|| "ghost".into(), |u| u.login.clone())
    }

    pub(super) fn user_by_token(&self, token: &str) -> Option<u64> {
        self.users
            .iter()
            .find(|u| !token.is_empty() && u.token == token)
            .map(|u| u.id)
    }

    pub(super) fn can_read(&self, rs: &RepoState, user: Option<u64>) -> bool {
        !rs.private || user.is_some_and(|u| self.can_write(rs, Some(u)))
    }

    pub(super) fn can_write(&self, rs: &RepoState, user: Option<u64>) -> bool {
        user.is_some_and(|u| u == SIM_USER_ID || rs.writers.contains(&u))
    }

    /// Whether user `id`'s token holds scope `needed` (`read:issue`): `all`
    /// holds every scope, `write:X` holds `read:X`
    /// (`models/auth/access_token_scope.go`).
    pub(super) fn has_scope(&self, id: u64, needed: &str) -> bool {
        let Some(user) = self.user(id) else {
            return false;
        };
        let (level, category) = needed.split_once(':').unwrap_or(("", needed));
        user.scopes.iter().any(|s| {
            s == "all" || s == needed || (level == "read" && *s == format!("write:{category}"))
        })
    }
}

pub(super) struct Shared {
    pub(super) git_root: PathBuf,
    /// Holds the pre-receive hook ([`PRE_RECEIVE`]).
    pub(super) hooks: tempfile::TempDir,
    pub(super) url: String,
    pub(super) state: Mutex<SimState>,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn bare_repo(&self, owner: &str, repo: &str) -> PathBuf {
        self.git_root.join(owner).join(format!("{repo}.git"))
    }
}
