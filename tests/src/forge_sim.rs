//! A simulated Forgejo for end-to-end tests: the part of the REST API v1 agentq uses,
//! plus git over smart HTTP for the bare repositories under a directory (served by
//! `git http-backend`). Paths and bodies follow the upstream OpenAPI description;
//! answers follow what Forgejo's handlers do, which the description does not always
//! say. Each such behaviour names, in a comment, the Forgejo source file it follows
//! (paths in the forgejo repository).
//!
//! Users: the token given to [`ForgeSim::start`] belongs to [`SIM_USER`], who may
//! write to every repository. [`ForgeSim::add_user`] adds users who can read public
//! repositories and write where [`ForgeSim::add_collaborator`] says so.
//!
//! Authentication (`services/auth/oauth2.go`, `services/auth/basic.go`):
//! `Authorization: token <T>` (scheme in lowercase), `bearer <T>` (any case) or basic
//! auth with the token as password or user name. An unknown token is a 401; no
//! recognised credentials is an anonymous request, which may read public
//! repositories and nothing else: other requests answer 401 "token is required"
//! (`reqToken` in `routers/api/v1/api.go`). A private repository, or one that does not
//! exist, is a 404 for whoever cannot see it (`repoAssignment`).
//!
//! API (under `/api/v1`):
//!
//! | request | answers |
//! |---|---|
//! | `GET /user` | 200 `User`, 401 |
//! | `GET /repos/{owner}/{repo}` | 200 `Repository`, 404 |
//! | `GET /repos/{owner}/{repo}/issues/{index}` | 200 `Issue`, 404 |
//! | `GET /repos/{owner}/{repo}/issues/{index}/comments` | 200 `[Comment]`, 404 |
//! | `POST /repos/{owner}/{repo}/issues/{index}/comments` | 201 `Comment`, 401, 404, 422 |
//! | `GET`/`PATCH /repos/{owner}/{repo}/issues/comments/{id}` | 200 `Comment`, 401, 403 someone else's, 404, 422 |
//! | `GET /repos/{owner}/{repo}/issues/{index}/times?user&since&before&page&limit` | 200 `[TrackedTime]`, 401, 403, 404 (also: time tracking off), 422 |
//! | `POST /repos/{owner}/{repo}/issues/{index}/times` | 200 `TrackedTime`, 400 time tracking disabled, 401, 403, 404, 422 |
//! | `POST /repos/{owner}/{repo}/issues/{index}/stopwatch/start` | 201, 401, 403, 404, 409 running |
//! | `POST /repos/{owner}/{repo}/issues/{index}/stopwatch/stop` | 201, 401, 403, 404, 409 not running |
//! | `GET /repos/{owner}/{repo}/pulls?state&page&limit` | 200 `[PullRequest]` + `X-Total-Count`, 404 |
//! | `GET /repos/{owner}/{repo}/pulls/{base}/{head…}` | 200 `PullRequest` (any state), 404 |
//! | `POST /repos/{owner}/{repo}/pulls` | 201 `PullRequest`, 401, 404 no such branch, 409 exists, 422 |
//! | `GET`/`POST /repos/{owner}/{repo}/statuses/{sha}` | 200 `[CommitStatus]` / 201 `CommitStatus`, 401, 403, 404, 500 unknown commit |
//! | `GET /repos/{owner}/{repo}/commits/{ref}/status` | 200 `CombinedStatus`, 404 |
//! | `GET /repos/{owner}/{repo}/git/commits/{sha}` | 200 `Commit`, 404 |
//!
//! Other paths answer 404, other methods on a known path 405. JSON bodies must be
//! objects whose fields have the JSON types the document's option type gives them
//! (dates RFC 3339), and carry the fields Forgejo's binding requires (non-empty,
//! non-zero); anything else is a 422 naming the field. A field the option type does
//! not define is ignored, as Go's decoding does, and recorded
//! ([`ForgeSim::assert_nothing_dropped`]). Every success answer is checked against
//! the document's definition field by field before it is sent ([`spec`]; one that
//! does not follow it is a 500 and kept in [`ForgeSim::spec_report`]). Error bodies
//! have the spec's shapes (`APIError`, `APIValidationError`, `APINotFound`:
//! `message`, `url`); a bare `ctx.Status(403)` in Forgejo is an empty 403 here too.
//!
//! Token scopes (`routers/api/v1/api.go`, `tokenRequiresScopes`): each route group
//! asks for a category ([`spec::ENDPOINTS`]: `user`, `repository`, `issue`) at the
//! level of the method (`read` for GET, else `write`; `write` holds `read`, `all`
//! holds everything); a token without it gets 403 "token does not have at least one
//! of required scope(s): [write:issue]", before the repository is looked up. The
//! start token has `all`; [`ForgeSim::add_user_with_scopes`] and
//! [`ForgeSim::set_scopes`] give others.
//!
//! Faults: [`ForgeSim::set_down`] (the API and git answer 503),
//! [`ForgeSim::set_api_down`] (the API alone), [`ForgeSim::set_hang`] (the whole API
//! hangs), [`ForgeSim::hang_on`] (one endpoint hangs, the others answer),
//! [`ForgeSim::set_latency`], [`ForgeSim::fail_next`] and its variants.
//!
//! Git: `{url}/{owner}/{repo}.git` serves `{git_root}/{owner}/{repo}.git`
//! (`routers/web/repo/githttp.go`): clone and fetch of a public repository may be
//! anonymous; a push, any access to a private repository and any access to a
//! repository that does not exist need credentials (basic auth with the token as
//! password or user name), and are otherwise answered 401 with `WWW-Authenticate:
//! Basic realm="Gitea"`. Wrong credentials are a 401 too; a signed-in user who cannot
//! read the repository gets 404 "Repository not found", one who cannot write it has
//! the push refused. A token needs `read:repository` to fetch (but for an anonymous
//! public pull) and `write:repository` to push, else a bare 403. A repository the
//! forge does not have (not registered with [`ForgeSim::add_repo`], whatever is on
//! disk) is 404. Pushes go through a pre-receive hook as on Forgejo: `refs/pull/*`
//! is read-only and a branch [`ForgeSim::protect_branch`] protects is refused.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{
    body::{Body, Bytes},
    extract::{Request, State},
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    response::Response,
    Router,
};
use futures::StreamExt;
use serde_json::{json, Map, Value};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    process::{Child, ChildStdout, Command},
    sync::oneshot,
};

pub mod spec;

use spec::{Def, Endpoint};

/// Forgejo's `MAX_RESPONSE_ITEMS` default: the largest page the sim serves.
pub const MAX_PAGE_SIZE: usize = 50;
/// Forgejo's `DEFAULT_PAGING_NUM`: the page size when `limit` is absent.
pub const DEFAULT_PAGE_SIZE: usize = 30;
/// The login the token given to [`ForgeSim::start`] belongs to.
pub const SIM_USER: &str = "agentq-bot";
/// [`SIM_USER`]'s id.
pub const SIM_USER_ID: u64 = 1;

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

#[derive(Debug)]
struct Failure {
    method: String,
    path_prefix: String,
    status: u16,
    remaining: usize,
    retry_after: Option<u64>,
    /// Do the work, then answer `status` (a forge failing after storing).
    after_effect: bool,
}

#[derive(Debug, Clone)]
struct SimUser {
    id: u64,
    login: String,
    token: String,
    /// The token's scopes (`all`, `read:issue`, `write:repository`, …).
    scopes: Vec<String>,
}

#[derive(Debug, Default)]
struct RepoState {
    id: u64,
    default_branch: String,
    private: bool,
    time_tracking: bool,
    /// Users other than [`SIM_USER`] who may write.
    writers: HashSet<u64>,
    /// Protected branch patterns (shell globs).
    protected: Vec<String>,
    issues: BTreeMap<u64, IssueState>,
    pulls: BTreeMap<u64, PullState>,
    statuses: HashMap<String, Vec<StatusState>>,
}

#[derive(Debug, Clone)]
struct IssueState {
    id: u64,
    title: String,
    body: String,
    state: String,
    created: String,
    poster: u64,
}

#[derive(Debug, Clone)]
struct PullState {
    id: u64,
    title: String,
    body: String,
    head: String,
    head_repo: (String, String),
    base: String,
    head_sha: String,
    base_sha: String,
    state: String,
    created: String,
    poster: u64,
}

#[derive(Debug, Clone)]
struct StatusState {
    id: u64,
    state: String,
    target_url: String,
    description: String,
    context: String,
    created: String,
    creator: u64,
}

#[derive(Debug, Clone)]
struct CommentState {
    id: u64,
    owner: String,
    repo: String,
    issue: u64,
    body: String,
    created: String,
    updated: String,
    poster: u64,
}

/// A running stopwatch: at most one per user (`models/issues/stopwatch.go`).
#[derive(Debug, Clone)]
struct StopwatchState {
    owner: String,
    repo: String,
    issue: u64,
    started_unix: i64,
}

#[derive(Debug, Clone)]
struct TimeState {
    id: u64,
    owner: String,
    repo: String,
    issue: u64,
    user: u64,
    created_unix: i64,
    time: i64,
    from_stopwatch: bool,
}

#[derive(Debug, Default)]
struct SimState {
    users: Vec<SimUser>,
    repos: BTreeMap<(String, String), RepoState>,
    comments: Vec<CommentState>,
    stopwatches: HashMap<u64, StopwatchState>,
    stopwatch_events: Vec<(String, String, u64, String)>,
    times: Vec<TimeState>,
    next_id: u64,
    requests: Vec<RequestRecord>,
    failures: Vec<Failure>,
    down: bool,
    api_down: bool,
    hang: bool,
    /// (method, path prefix) of the endpoints that hang.
    hangs: Vec<(String, String)>,
    latency: std::time::Duration,
    pushes: Vec<PushRecord>,
    git_stderr: Vec<String>,
    unknown_fields: Vec<String>,
    /// Bodies of the writes the forge took, with their definition's name, in order.
    bodies: Vec<(&'static str, Value)>,
    /// Success answers checked per endpoint of [`spec::ENDPOINTS`].
    spec_served: Vec<usize>,
    /// Answers that did not follow the document.
    spec_violations: Vec<String>,
}

impl SimState {
    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn user(&self, id: u64) -> Option<&SimUser> {
        self.users.iter().find(|u| u.id == id)
    }

    fn login(&self, id: u64) -> String {
        self.user(id)
            .map_or_else(|| "ghost".into(), |u| u.login.clone())
    }

    fn user_by_token(&self, token: &str) -> Option<u64> {
        self.users
            .iter()
            .find(|u| !token.is_empty() && u.token == token)
            .map(|u| u.id)
    }

    fn can_read(&self, rs: &RepoState, user: Option<u64>) -> bool {
        !rs.private || user.is_some_and(|u| self.can_write(rs, Some(u)))
    }

    fn can_write(&self, rs: &RepoState, user: Option<u64>) -> bool {
        user.is_some_and(|u| u == SIM_USER_ID || rs.writers.contains(&u))
    }

    /// Whether user `id`'s token holds scope `needed` (`read:issue`): `all`
    /// holds every scope, `write:X` holds `read:X`
    /// (`models/auth/access_token_scope.go`).
    fn has_scope(&self, id: u64, needed: &str) -> bool {
        let Some(user) = self.user(id) else {
            return false;
        };
        let (level, category) = needed.split_once(':').unwrap_or(("", needed));
        user.scopes.iter().any(|s| {
            s == "all" || s == needed || (level == "read" && *s == format!("write:{category}"))
        })
    }
}

struct Shared {
    git_root: PathBuf,
    /// Holds the pre-receive hook ([`PRE_RECEIVE`]).
    hooks: tempfile::TempDir,
    url: String,
    state: Mutex<SimState>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bare_repo(&self, owner: &str, repo: &str) -> PathBuf {
        self.git_root.join(owner).join(format!("{repo}.git"))
    }
}

/// A simulated Forgejo on a loopback port, stopped on drop.
pub struct ForgeSim {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
}

impl ForgeSim {
    /// Starts a sim where `token` is [`SIM_USER`]'s, serving the bare repositories
    /// under `git_root` (`{git_root}/{owner}/{repo}.git`) over HTTP. Binds
    /// `127.0.0.1:0` and serves on a tokio task of the current runtime.
    pub async fn start(token: &str, git_root: PathBuf) -> ForgeSim {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("forge sim: cannot bind a loopback port");
        let addr = listener.local_addr().expect("forge sim: local address");
        let state = SimState {
            users: vec![SimUser {
                id: SIM_USER_ID,
                login: SIM_USER.into(),
                token: token.to_string(),
                scopes: vec!["all".into()],
            }],
            next_id: 100,
            spec_served: vec![0; spec::ENDPOINTS.len()],
            ..SimState::default()
        };
        let hooks = tempfile::tempdir().expect("forge sim: a directory for its git hook");
        let hook = hooks.path().join("pre-receive");
        std::fs::write(&hook, PRE_RECEIVE).expect("forge sim: write the pre-receive hook");
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))
                .expect("forge sim: make the hook executable");
        }
        let shared = Arc::new(Shared {
            hooks,
            git_root,
            url: format!("http://{addr}"),
            state: Mutex::new(state),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let tx = crate::serve_until_told(listener, app);
        ForgeSim {
            shared,
            addr,
            shutdown: Some(tx),
        }
    }

    /// `http://127.0.0.1:PORT` (the forge's base URL; the API is under `/api/v1`).
    pub fn url(&self) -> String {
        self.shared.url.clone()
    }

    /// The socket address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The HTTP clone URL of `owner/repo`.
    pub fn clone_url(&self, owner: &str, repo: &str) -> String {
        format!("{}/{owner}/{repo}.git", self.shared.url)
    }

    /// Adds user `login` whose API token is `token`; returns its id. The user can
    /// read public repositories and comment there, and write nowhere until
    /// [`ForgeSim::add_collaborator`].
    pub fn add_user(&self, login: &str, token: &str) -> u64 {
        self.add_user_with_scopes(login, token, &["all"])
    }

    /// As [`ForgeSim::add_user`], with a token holding only `scopes` (Forgejo's
    /// names: `read:issue`, `write:repository`, `read:user`, `all`, …; an empty
    /// list is a token without scopes, refused everywhere a scope is needed).
    pub fn add_user_with_scopes(&self, login: &str, token: &str, scopes: &[&str]) -> u64 {
        let mut st = self.shared.lock();
        assert!(
            st.users
                .iter()
                .all(|u| u.login != login && u.token != token),
            "forge sim: user {login} or its token exists"
        );
        let id = st.next_id();
        st.users.push(SimUser {
            id,
            login: login.to_string(),
            token: token.to_string(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        });
        id
    }

    /// Gives user `login`'s token exactly `scopes` from now on ([`SIM_USER`]'s
    /// included: its token starts with `all`).
    pub fn set_scopes(&self, login: &str, scopes: &[&str]) {
        let mut st = self.shared.lock();
        let user = st
            .users
            .iter_mut()
            .find(|u| u.login == login)
            .unwrap_or_else(|| panic!("forge sim: no user {login}"));
        user.scopes = scopes.iter().map(|s| s.to_string()).collect();
    }

    /// Protects the branches of `owner/repo` matching `pattern` (a shell glob,
    /// `agent/*`): a push to one is refused by the pre-receive hook, as
    /// Forgejo's is (`routers/private/hook_pre_receive.go`: "Not allowed to
    /// push to protected branch …").
    pub fn protect_branch(&self, owner: &str, repo: &str, pattern: &str) {
        self.with_repo(owner, repo, |rs| rs.protected.push(pattern.to_string()));
    }

    /// Gives user `login` write access to `owner/repo` (and sight of it if private).
    pub fn add_collaborator(&self, owner: &str, repo: &str, login: &str) {
        let mut st = self.shared.lock();
        let id = st
            .users
            .iter()
            .find(|u| u.login == login)
            .map(|u| u.id)
            .unwrap_or_else(|| panic!("forge sim: no user {login}"));
        st.repos
            .get_mut(&key(owner, repo))
            .unwrap_or_else(|| panic!("forge sim: add_repo({owner}, {repo}) first"))
            .writers
            .insert(id);
    }

    /// Registers repository `owner/repo` with `default_branch` in the API (public,
    /// time tracking on). Its git data, if any, is the bare repository
    /// `{git_root}/{owner}/{repo}.git`.
    pub fn add_repo(&self, owner: &str, repo: &str, default_branch: &str) {
        let mut st = self.shared.lock();
        let id = st.next_id();
        st.repos
            .entry(key(owner, repo))
            .or_insert_with(|| RepoState {
                id,
                default_branch: default_branch.to_string(),
                time_tracking: true,
                ..RepoState::default()
            });
    }

    fn with_repo<T>(&self, owner: &str, repo: &str, f: impl FnOnce(&mut RepoState) -> T) -> T {
        let mut st = self.shared.lock();
        let rs = st
            .repos
            .get_mut(&key(owner, repo))
            .unwrap_or_else(|| panic!("forge sim: add_repo({owner}, {repo}) first"));
        f(rs)
    }

    /// Makes `owner/repo` private (or public again): only its writers see it, over
    /// the API and over git.
    pub fn set_private(&self, owner: &str, repo: &str, private: bool) {
        self.with_repo(owner, repo, |rs| rs.private = private);
    }

    /// Switches time tracking of `owner/repo` on or off.
    pub fn set_time_tracking(&self, owner: &str, repo: &str, enabled: bool) {
        self.with_repo(owner, repo, |rs| rs.time_tracking = enabled);
    }

    /// Adds open issue `number` to `owner/repo` (which must have been added).
    pub fn add_issue(&self, owner: &str, repo: &str, number: u64, title: &str, body: &str) {
        let mut st = self.shared.lock();
        let id = st.next_id();
        let rs = st
            .repos
            .get_mut(&key(owner, repo))
            .unwrap_or_else(|| panic!("forge sim: add_repo({owner}, {repo}) first"));
        assert!(
            !rs.pulls.contains_key(&number),
            "forge sim: #{number} is already a pull request"
        );
        rs.issues.insert(
            number,
            IssueState {
                id,
                title: title.to_string(),
                body: body.to_string(),
                state: "open".into(),
                created: now_rfc3339(),
                poster: SIM_USER_ID,
            },
        );
    }

    /// Adds a comment by user `login` on issue `index`; returns its id.
    pub fn add_comment_as(
        &self,
        owner: &str,
        repo: &str,
        index: u64,
        login: &str,
        body: &str,
    ) -> u64 {
        let mut st = self.shared.lock();
        let poster = st
            .users
            .iter()
            .find(|u| u.login == login)
            .map(|u| u.id)
            .unwrap_or_else(|| panic!("forge sim: no user {login}"));
        assert!(
            issue_exists(&st, owner, repo, &index.to_string()).is_some(),
            "forge sim: no issue {owner}/{repo}#{index}"
        );
        let id = st.next_id();
        let now = now_rfc3339();
        st.comments.push(CommentState {
            id,
            owner: owner.to_string(),
            repo: repo.to_string(),
            issue: index,
            body: body.to_string(),
            created: now.clone(),
            updated: now,
            poster,
        });
        id
    }

    /// Closes pull request `number`.
    pub fn close_pull(&self, owner: &str, repo: &str, number: u64) {
        let mut st = self.shared.lock();
        let pr = st
            .repos
            .get_mut(&key(owner, repo))
            .and_then(|rs| rs.pulls.get_mut(&number))
            .unwrap_or_else(|| panic!("forge sim: no pull request {owner}/{repo}#{number}"));
        pr.state = "closed".into();
    }

    /// Comments on issue or pull request `index`, oldest first.
    pub fn comments(&self, owner: &str, repo: &str, index: u64) -> Vec<SimComment> {
        let st = self.shared.lock();
        st.comments
            .iter()
            .filter(|c| c.owner == owner && c.repo == repo && c.issue == index)
            .map(|c| SimComment {
                id: c.id,
                issue: c.issue,
                body: c.body.clone(),
                author: st.login(c.poster),
            })
            .collect()
    }

    /// All pull requests of `owner/repo` (open and closed), by number.
    pub fn pulls(&self, owner: &str, repo: &str) -> Vec<SimPull> {
        let st = self.shared.lock();
        let Some(rs) = st.repos.get(&key(owner, repo)) else {
            return Vec::new();
        };
        rs.pulls
            .iter()
            .map(|(n, p)| SimPull {
                number: *n,
                title: p.title.clone(),
                body: p.body.clone(),
                head: p.head.clone(),
                head_repo: format!("{}/{}", p.head_repo.0, p.head_repo.1),
                base: p.base.clone(),
                head_sha: p.head_sha.clone(),
                state: p.state.clone(),
            })
            .collect()
    }

    /// Statuses set on `sha` (as given in the request path), oldest first.
    pub fn statuses(&self, owner: &str, repo: &str, sha: &str) -> Vec<SimStatus> {
        let st = self.shared.lock();
        st.repos
            .get(&key(owner, repo))
            .and_then(|rs| rs.statuses.get(sha))
            .map(|v| {
                v.iter()
                    .map(|s| SimStatus {
                        state: s.state.clone(),
                        target_url: s.target_url.clone(),
                        description: s.description.clone(),
                        context: s.context.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Tracked times on issue `index`, oldest first.
    pub fn tracked_times(&self, owner: &str, repo: &str, index: u64) -> Vec<SimTrackedTime> {
        let st = self.shared.lock();
        st.times
            .iter()
            .filter(|t| t.owner == owner && t.repo == repo && t.issue == index)
            .map(|t| SimTrackedTime {
                id: t.id,
                user: st.login(t.user),
                seconds: t.time,
                created_unix: t.created_unix,
                from_stopwatch: t.from_stopwatch,
            })
            .collect()
    }

    /// The stopwatch changes on `index`, in order: `"start"`, `"stop"` for a stop
    /// call, and `"stopped by a start elsewhere"` when the same user started one on
    /// another issue (a 409 changes nothing and is not listed; see
    /// [`ForgeSim::requests`] for every call).
    pub fn stopwatch_events(&self, owner: &str, repo: &str, index: u64) -> Vec<String> {
        let st = self.shared.lock();
        st.stopwatch_events
            .iter()
            .filter(|(o, r, n, _)| o == owner && r == repo && *n == index)
            .map(|(_, _, _, e)| e.clone())
            .collect()
    }

    /// Whether [`SIM_USER`]'s stopwatch runs on `index`.
    pub fn stopwatch_running(&self, owner: &str, repo: &str, index: u64) -> bool {
        let st = self.shared.lock();
        st.stopwatches
            .get(&SIM_USER_ID)
            .is_some_and(|s| s.owner == owner && s.repo == repo && s.issue == index)
    }

    /// Every request answered, as (method, path), in order.
    pub fn request_log(&self) -> Vec<(String, String)> {
        self.shared
            .lock()
            .requests
            .iter()
            .map(|r| (r.method.clone(), r.path.clone()))
            .collect()
    }

    /// Every request answered, with query and status, in order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.lock().requests.clone()
    }

    /// How many `method` requests to exactly `path` were answered.
    pub fn count_requests(&self, method: &str, path: &str) -> usize {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method) && r.path == path)
            .count()
    }

    /// Forgets the request log.
    pub fn clear_request_log(&self) {
        self.shared.lock().requests.clear();
    }

    /// Makes the next `count` `method` requests whose path starts with `path_prefix`
    /// answer `status` (with an `APIError` body) before normal service resumes. The
    /// prefix may be given with or without `/api/v1`.
    pub fn fail_next(&self, method: &str, path_prefix: &str, status: u16, count: usize) {
        self.push_failure(method, path_prefix, status, count, None, false);
    }

    /// As [`ForgeSim::fail_next`], with a `Retry-After: {retry_after_secs}` header.
    pub fn fail_next_with_retry_after(
        &self,
        method: &str,
        path_prefix: &str,
        status: u16,
        count: usize,
        retry_after_secs: u64,
    ) {
        self.push_failure(
            method,
            path_prefix,
            status,
            count,
            Some(retry_after_secs),
            false,
        );
    }

    /// As [`ForgeSim::fail_next`], but each of those requests is carried out first
    /// and only its answer replaced: a forge failing after it stored the write (as
    /// Forgejo's `CreateCommitStatus` can, `services/repository/commitstatus`).
    pub fn fail_next_after_effect(
        &self,
        method: &str,
        path_prefix: &str,
        status: u16,
        count: usize,
    ) {
        self.push_failure(method, path_prefix, status, count, None, true);
    }

    fn push_failure(
        &self,
        method: &str,
        path_prefix: &str,
        status: u16,
        count: usize,
        retry_after: Option<u64>,
        after_effect: bool,
    ) {
        if count == 0 {
            return;
        }
        self.shared.lock().failures.push(Failure {
            method: method.to_ascii_uppercase(),
            path_prefix: path_prefix.to_string(),
            status,
            remaining: count,
            retry_after,
            after_effect,
        });
    }

    /// While `down`, the forge is down: every API request and every git
    /// request answers 503.
    pub fn set_down(&self, down: bool) {
        self.shared.lock().down = down;
    }

    /// While `down`, every API request answers 503 and git over HTTP still
    /// works (the API alone failing: a proxy in front of `/api/v1`, say).
    pub fn set_api_down(&self, down: bool) {
        self.shared.lock().api_down = down;
    }

    /// Makes every `method` API request whose path starts with `path_prefix`
    /// (with or without `/api/v1`) hang: accepted and never answered until
    /// [`ForgeSim::stop_hanging`]. Other endpoints go on answering.
    pub fn hang_on(&self, method: &str, path_prefix: &str) {
        self.shared
            .lock()
            .hangs
            .push((method.to_ascii_uppercase(), path_prefix.to_string()));
    }

    /// Ends every [`ForgeSim::hang_on`].
    pub fn stop_hanging(&self) {
        self.shared.lock().hangs.clear();
    }

    /// Delays every API answer by `latency`.
    pub fn set_latency(&self, latency: std::time::Duration) {
        self.shared.lock().latency = latency;
    }

    /// Bodies of the writes the forge took (checked against their definition
    /// and answered with success) of definition `definition`, in order.
    pub fn accepted_bodies(&self, definition: &str) -> Vec<Value> {
        self.shared
            .lock()
            .bodies
            .iter()
            .filter(|(name, _)| *name == definition)
            .map(|(_, body)| body.clone())
            .collect()
    }

    /// Panics if a field of a write was silently dropped: a body carried a
    /// field its definition does not document (Forgejo ignores it), or what
    /// an accepted body said is not what the forge kept (every pull request's
    /// title, body, head and base; every status's state, context, description
    /// and link; every tracked time's seconds; the last comment body sent).
    pub fn assert_nothing_dropped(&self) {
        let unknown = self.unknown_fields();
        assert!(
            unknown.is_empty(),
            "fields the forge would silently drop were sent: {unknown:?}"
        );
        let st = self.shared.lock();
        let text = |v: &Value, k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        for (name, body) in &st.bodies {
            let kept = match *name {
                "CreatePullRequestOption" => {
                    st.repos.values().flat_map(|rs| rs.pulls.values()).any(|p| {
                        let head = text(body, "head");
                        let branch = head.rsplit_once(':').map_or(head.as_str(), |(_, b)| b);
                        p.title == text(body, "title")
                            && p.body == text(body, "body")
                            && p.base == text(body, "base")
                            && p.head == branch
                    })
                }
                "CreateStatusOption" => st
                    .repos
                    .values()
                    .flat_map(|rs| rs.statuses.values().flatten())
                    .any(|s| {
                        s.state == text(body, "state")
                            && s.context == text(body, "context").trim()
                            && s.description == text(body, "description").trim()
                            && s.target_url == text(body, "target_url").trim()
                    }),
                "AddTimeOption" => {
                    let time = body.get("time").and_then(Value::as_i64);
                    st.times.iter().any(|t| Some(t.time) == time)
                }
                _ => true,
            };
            assert!(kept, "the forge did not keep what this {name} said: {body}");
        }
        if let Some((_, last)) = st
            .bodies
            .iter()
            .rev()
            .find(|(name, _)| name.ends_with("IssueCommentOption"))
        {
            let sent = text(last, "body");
            assert!(
                st.comments.iter().any(|c| c.body == sent),
                "the last comment body sent is on no comment: {sent}"
            );
        }
    }

    /// Per endpoint of [`spec::ENDPOINTS`]: how many success answers were
    /// checked against the document; and every answer that did not follow it.
    pub fn spec_report(&self) -> (Vec<(&'static Endpoint, usize)>, Vec<String>) {
        let st = self.shared.lock();
        (
            spec::ENDPOINTS
                .iter()
                .zip(st.spec_served.iter().copied())
                .collect(),
            st.spec_violations.clone(),
        )
    }

    /// While `hang`, every API request is accepted and not answered (until
    /// `hang` is false again): a forge that hangs.
    pub fn set_hang(&self, hang: bool) {
        self.shared.lock().hang = hang;
    }

    /// Pushes served, in order.
    pub fn pushes(&self) -> Vec<PushRecord> {
        self.shared.lock().pushes.clone()
    }

    /// Body fields sent that their option type does not define (`Type.field`), in
    /// order. Forgejo ignores them; a client sending one has a bug.
    pub fn unknown_fields(&self) -> Vec<String> {
        self.shared.lock().unknown_fields.clone()
    }

    /// What `git http-backend` wrote to stderr, one entry per run that wrote any.
    pub fn git_stderr(&self) -> Vec<String> {
        self.shared.lock().git_stderr.clone()
    }
}

impl Drop for ForgeSim {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

// ---------------------------------------------------------------------------------
// Dispatch

async fn handle(State(sh): State<Arc<Shared>>, req: Request) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let resp = dispatch(&sh, req).await;
    sh.lock().requests.push(RequestRecord {
        method,
        path,
        query,
        status: resp.status().as_u16(),
    });
    resp
}

async fn dispatch(sh: &Arc<Shared>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let injected = take_failure(sh, req.method(), &path);
    let injected_resp = |status: StatusCode, retry_after: Option<u64>| {
        let mut resp = api_error(sh, status, "injected failure");
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    };
    if let Some((status, retry_after, false)) = injected {
        return injected_resp(status, retry_after);
    }
    let resp = route(sh, req, &path).await;
    match injected {
        // The work was done; the answer is lost.
        Some((status, retry_after, true)) => injected_resp(status, retry_after),
        _ => resp,
    }
}

async fn route(sh: &Arc<Shared>, req: Request, path: &str) -> Response {
    if let Some(rest) = path.strip_prefix("/api/v1") {
        if rest.is_empty() || rest.starts_with('/') {
            return api(sh, req, rest.to_string()).await;
        }
    }
    if let Some((owner, repo, tail)) = parse_git_path(path) {
        return git_http(sh, req, owner, repo, tail).await;
    }
    not_found(sh)
}

fn take_failure(
    sh: &Shared,
    method: &Method,
    path: &str,
) -> Option<(StatusCode, Option<u64>, bool)> {
    let mut st = sh.lock();
    let api_path = path.strip_prefix("/api/v1").unwrap_or(path);
    let idx = st.failures.iter().position(|f| {
        f.method == method.as_str()
            && (path.starts_with(&f.path_prefix) || api_path.starts_with(&f.path_prefix))
    })?;
    let f = &mut st.failures[idx];
    f.remaining -= 1;
    let out = (
        StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        f.retry_after,
        f.after_effect,
    );
    if f.remaining == 0 {
        st.failures.remove(idx);
    }
    Some(out)
}

/// Who sent a request: `Ok(None)` anonymous, `Err(())` credentials that match no
/// user (a 401). As Forgejo's `services/auth/oauth2.go` (`Authorization: token T`
/// with the scheme in lowercase, or `bearer T` in any case) and
/// `services/auth/basic.go` (basic auth: the token as user name with an empty or
/// `x-oauth-basic` password, else as password). Other schemes are ignored.
fn caller(st: &SimState, headers: &HeaderMap) -> Result<Option<u64>, ()> {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(None);
    };
    let fields: Vec<&str> = value.split_whitespace().collect();
    if fields.len() != 2 {
        return Ok(None);
    }
    let (scheme, cred) = (fields[0], fields[1]);
    if scheme == "token" || scheme.eq_ignore_ascii_case("bearer") {
        return st.user_by_token(cred).map(Some).ok_or(());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64_decode(cred)
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or(())?;
        let (user, password) = decoded.split_once(':').unwrap_or((decoded.as_str(), ""));
        if password.is_empty() || password == "x-oauth-basic" {
            if let Some(id) = st.user_by_token(user) {
                return Ok(Some(id));
            }
        }
        // No passwords in the sim: only a token works.
        return st.user_by_token(password).map(Some).ok_or(());
    }
    Ok(None)
}

/// What a request asks for: one of [`spec::ENDPOINTS`], in the same order.
enum Route {
    GetUser,
    GetRepo,
    GetIssue(String),
    ListComments(String),
    CreateComment(String),
    GetComment(String),
    EditComment(String),
    ListTimes(String),
    AddTime(String),
    Stopwatch(String, bool),
    ListPulls,
    CreatePull,
    PullByBaseHead(String, String),
    ListStatuses(String),
    CreateStatus(String),
    CombinedStatus(String),
    GetCommit(String),
}

impl Route {
    /// Its index in [`spec::ENDPOINTS`].
    fn index(&self) -> usize {
        match self {
            Route::GetUser => 0,
            Route::GetRepo => 1,
            Route::GetIssue(_) => 2,
            Route::ListComments(_) => 3,
            Route::CreateComment(_) => 4,
            Route::GetComment(_) => 5,
            Route::EditComment(_) => 6,
            Route::ListTimes(_) => 7,
            Route::AddTime(_) => 8,
            Route::Stopwatch(_, true) => 9,
            Route::Stopwatch(_, false) => 10,
            Route::ListPulls => 11,
            Route::CreatePull => 12,
            Route::PullByBaseHead(..) => 13,
            Route::ListStatuses(_) => 14,
            Route::CreateStatus(_) => 15,
            Route::CombinedStatus(_) => 16,
            Route::GetCommit(_) => 17,
        }
    }

    fn endpoint(&self) -> &'static Endpoint {
        &spec::ENDPOINTS[self.index()]
    }
}

/// Waits while the whole API hangs ([`ForgeSim::set_hang`]) or an endpoint
/// matching `method` and `path` does ([`ForgeSim::hang_on`]), then for the
/// latency ([`ForgeSim::set_latency`]).
async fn wait_like_the_forge(sh: &Shared, method: &str, path: &str) {
    loop {
        let hanging = {
            let st = sh.lock();
            st.hang
                || st
                    .hangs
                    .iter()
                    .any(|(m, prefix)| m == method && matches_prefix(path, prefix))
        };
        if !hanging {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let latency = sh.lock().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
}

/// Whether `prefix` (given with or without `/api/v1`) starts API path `path`
/// (without `/api/v1`).
fn matches_prefix(path: &str, prefix: &str) -> bool {
    path.starts_with(prefix.strip_prefix("/api/v1").unwrap_or(prefix))
}

/// Parses `segs` (the path under `/api/v1`) into the repository it is about,
/// if any, and the route; 404 or 405 when there is no such route.
fn parse_route(
    method: &Method,
    segs: &[&str],
) -> Result<(Option<(String, String)>, Route), StatusCode> {
    let get = method == Method::GET;
    let post = method == Method::POST;
    match segs {
        ["user"] if get => Ok((None, Route::GetUser)),
        ["user"] => Err(StatusCode::METHOD_NOT_ALLOWED),
        ["repos", o, r, rest @ ..] => {
            let route = match rest {
                [] if get => Route::GetRepo,
                ["issues", "comments", id] if get => Route::GetComment(id.to_string()),
                ["issues", "comments", id] if method == Method::PATCH => {
                    Route::EditComment(id.to_string())
                }
                ["issues", index] if get => Route::GetIssue(index.to_string()),
                ["issues", index, "comments"] if get => Route::ListComments(index.to_string()),
                ["issues", index, "comments"] if post => Route::CreateComment(index.to_string()),
                ["issues", index, "times"] if get => Route::ListTimes(index.to_string()),
                ["issues", index, "times"] if post => Route::AddTime(index.to_string()),
                ["issues", index, "stopwatch", action @ ("start" | "stop")] if post => {
                    Route::Stopwatch(index.to_string(), *action == "start")
                }
                ["pulls"] if get => Route::ListPulls,
                ["pulls"] if post => Route::CreatePull,
                // `m.Get("/{base}/*", repo.GetPullRequestByBaseHead)`: the head may
                // contain `/`.
                ["pulls", base, head @ ..] if get && !head.is_empty() => {
                    Route::PullByBaseHead(base.to_string(), head.join("/"))
                }
                ["statuses", sha] if get => Route::ListStatuses(sha.to_string()),
                ["statuses", sha] if post => Route::CreateStatus(sha.to_string()),
                ["commits", reference @ .., "status"] if get && !reference.is_empty() => {
                    Route::CombinedStatus(reference.join("/"))
                }
                ["git", "commits", sha] if get => Route::GetCommit(sha.to_string()),
                []
                | ["issues", "comments", _]
                | ["issues", _]
                | ["issues", _, "comments" | "times"]
                | ["issues", _, "stopwatch", "start" | "stop"]
                | ["pulls"]
                | ["statuses", _] => return Err(StatusCode::METHOD_NOT_ALLOWED),
                _ => return Err(StatusCode::NOT_FOUND),
            };
            Ok((Some((o.to_string(), r.to_string())), route))
        }
        _ => Err(StatusCode::NOT_FOUND),
    }
}

/// `tokenRequiresScopes` (routers/api/v1/api.go): a token must hold the
/// route group's category at the level of the method (`read` for GET,
/// `write` for POST, PUT, PATCH and DELETE); else a 403 naming the scope.
fn scope_refusal(
    sh: &Shared,
    who: Option<u64>,
    method: &Method,
    category: spec::Category,
) -> Option<Response> {
    let id = who?;
    let level = if method == Method::GET {
        "read"
    } else {
        "write"
    };
    let needed = format!("{level}:{}", category.as_str());
    if sh.lock().has_scope(id, &needed) {
        return None;
    }
    Some(api_error(
        sh,
        StatusCode::FORBIDDEN,
        format!("token does not have at least one of required scope(s): [{needed}]"),
    ))
}

async fn api(sh: &Arc<Shared>, req: Request, rest: String) -> Response {
    let method = req.method().clone();
    wait_like_the_forge(sh, method.as_str(), &rest).await;
    let down = {
        let st = sh.lock();
        st.down || st.api_down
    };
    if down {
        return api_error(sh, StatusCode::SERVICE_UNAVAILABLE, "the forge is down");
    }
    let who = match caller(&sh.lock(), req.headers()) {
        Ok(who) => who,
        Err(()) => {
            return api_error(
                sh,
                StatusCode::UNAUTHORIZED,
                "user does not exist [uid: 0, name: ]",
            )
        }
    };
    let segs: Vec<String> = rest
        .trim_start_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let query = parse_query(req.uri().query().unwrap_or_default());
    let (repo, route) = match parse_route(&method, &segs) {
        Ok(parsed) => parsed,
        Err(StatusCode::METHOD_NOT_ALLOWED) => return method_not_allowed(sh),
        Err(_) => return not_found(sh),
    };
    let endpoint = route.endpoint();
    // The scope is checked on the route group, before the repository is looked
    // up (`repoAssignment` is inside the group) and before `reqToken`.
    if let Some(refused) = scope_refusal(sh, who, &method, endpoint.category) {
        return refused;
    }
    let Some((o, r)) = repo else {
        // GET /user: `reqToken()`.
        let resp = match who {
            Some(id) => {
                let login = sh.lock().login(id);
                json_response(StatusCode::OK, user_json(sh, id, &login))
            }
            None => api_error(sh, StatusCode::UNAUTHORIZED, "token is required"),
        };
        return checked_answer(sh, &route, resp).await;
    };
    // `repoAssignment` (routers/api/v1/api.go): a repository the caller cannot see
    // is a 404, before anything else.
    {
        let st = sh.lock();
        match st.repos.get(&key(&o, &r)) {
            Some(rs) if st.can_read(rs, who) => {}
            _ => return not_found(sh),
        }
    }
    // `reqToken()` guards every write and the whole `/times` group.
    let needs_token = method != Method::GET || matches!(route, Route::ListTimes(_));
    let user = match who {
        Some(u) => u,
        None if needs_token => {
            return api_error(sh, StatusCode::UNAUTHORIZED, "token is required");
        }
        None => 0,
    };
    let (o, r) = (o.as_str(), r.as_str());
    // The body of a write the forge took (kept for `assert_nothing_dropped`).
    let mut accepted = None;
    let resp = match &route {
        Route::GetUser => unreachable!("answered above"),
        Route::GetRepo => get_repo(sh, o, r, who),
        Route::GetIssue(index) => get_issue(sh, o, r, index),
        Route::ListComments(index) => list_comments(sh, o, r, index),
        Route::CreateComment(index) => {
            match read_json(sh, req, &spec::CREATE_ISSUE_COMMENT).await {
                Ok(body) => {
                    accepted = Some(Value::Object(body.clone()));
                    create_comment(sh, o, r, index, user, &body)
                }
                Err(resp) => resp,
            }
        }
        Route::GetComment(id) => get_comment(sh, o, r, id),
        Route::EditComment(id) => match read_json(sh, req, &spec::EDIT_ISSUE_COMMENT).await {
            Ok(body) => {
                accepted = Some(Value::Object(body.clone()));
                edit_comment(sh, o, r, id, user, &body)
            }
            Err(resp) => resp,
        },
        Route::ListTimes(index) => list_times(sh, o, r, index, user, &query),
        Route::AddTime(index) => match read_json(sh, req, &spec::ADD_TIME).await {
            Ok(body) => {
                accepted = Some(Value::Object(body.clone()));
                add_time(sh, o, r, index, user, &body)
            }
            Err(resp) => resp,
        },
        Route::Stopwatch(index, start) => stopwatch(sh, o, r, index, user, *start),
        Route::ListPulls => list_pulls(sh, o, r, who, &query).await,
        Route::CreatePull => match read_json(sh, req, &spec::CREATE_PULL_REQUEST).await {
            Ok(body) => {
                accepted = Some(Value::Object(body.clone()));
                create_pull(sh, o, r, user, &body).await
            }
            Err(resp) => resp,
        },
        Route::PullByBaseHead(base, head) => pull_by_base_head(sh, o, r, who, base, head).await,
        Route::ListStatuses(sha) => list_statuses(sh, o, r, sha),
        Route::CreateStatus(sha) => match read_json(sh, req, &spec::CREATE_STATUS).await {
            Ok(body) => {
                accepted = Some(Value::Object(body.clone()));
                create_status(sh, o, r, sha, user, &body).await
            }
            Err(resp) => resp,
        },
        Route::CombinedStatus(reference) => combined_status(sh, o, r, reference, who).await,
        Route::GetCommit(sha) => get_commit(sh, o, r, sha).await,
    };
    if let (Some(def), Some(body)) = (endpoint.request, accepted) {
        if resp.status().as_u16() == endpoint.answer.0 {
            sh.lock().bodies.push((def.name, body));
        }
    }
    checked_answer(sh, &route, resp).await
}

/// A success answer of `route` checked against the document ([`spec`]): one
/// that does not follow it is a bug of the sim, answered 500 and kept in
/// [`ForgeSim::spec_report`]. Other answers pass as they are.
async fn checked_answer(sh: &Shared, route: &Route, resp: Response) -> Response {
    let endpoint = route.endpoint();
    if resp.status().as_u16() != endpoint.answer.0 {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let verdict = spec::check_body(endpoint.answer.1, &bytes);
    let mut st = sh.lock();
    st.spec_served[route.index()] += 1;
    if let Err(why) = verdict {
        let text = format!("{} {}: {why}", endpoint.method, endpoint.path);
        st.spec_violations.push(text.clone());
        drop(st);
        return api_error(
            sh,
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("forge sim: the answer does not follow the OpenAPI document: {text}"),
        );
    }
    Response::from_parts(parts, Body::from(bytes))
}

// ---------------------------------------------------------------------------------
// Request bodies, checked against the spec's option types ([`spec`])

async fn read_json(
    sh: &Shared,
    req: Request,
    schema: &Def,
) -> Result<Map<String, Value>, Response> {
    let json_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
    let bytes = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .map_err(|e| {
            api_error(
                sh,
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}"),
            )
        })?;
    if !json_type {
        return Err(validation_error(
            sh,
            format!("{}: Content-Type must be application/json", schema.name),
        ));
    }
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| validation_error(sh, format!("{}: the body is not JSON: {e}", schema.name)))?;
    let checked = spec::check_request(schema, &value).map_err(|m| validation_error(sh, m));
    sh.lock()
        .unknown_fields
        .extend(spec::unknown_fields(schema, &value));
    checked
}

fn str_field<'a>(body: &'a Map<String, Value>, name: &str) -> &'a str {
    body.get(name).and_then(Value::as_str).unwrap_or_default()
}

// ---------------------------------------------------------------------------------
// Handlers (the caller may see the repository: checked in `api`)

fn key(o: &str, r: &str) -> (String, String) {
    (o.to_string(), r.to_string())
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

fn get_repo(sh: &Shared, o: &str, r: &str, who: Option<u64>) -> Response {
    let st = sh.lock();
    match st.repos.get(&key(o, r)) {
        Some(rs) => json_response(StatusCode::OK, repo_json(sh, &st, o, r, rs, who)),
        None => not_found(sh),
    }
}

fn get_issue(sh: &Shared, o: &str, r: &str, index: &str) -> Response {
    let Ok(n) = index.parse::<u64>() else {
        return not_found(sh);
    };
    let st = sh.lock();
    let Some(rs) = st.repos.get(&key(o, r)) else {
        return not_found(sh);
    };
    let comments = st
        .comments
        .iter()
        .filter(|c| c.owner == o && c.repo == r && c.issue == n)
        .count();
    if let Some(issue) = rs.issues.get(&n) {
        return json_response(
            StatusCode::OK,
            issue_json(sh, &st, o, r, rs, n, issue, comments),
        );
    }
    if let Some(pr) = rs.pulls.get(&n) {
        let as_issue = IssueState {
            id: pr.id,
            title: pr.title.clone(),
            body: pr.body.clone(),
            state: pr.state.clone(),
            created: pr.created.clone(),
            poster: pr.poster,
        };
        let mut v = issue_json(sh, &st, o, r, rs, n, &as_issue, comments);
        v["pull_request"] = json!({
            "draft": false,
            "html_url": format!("{}/{o}/{r}/pulls/{n}", sh.url),
            "merged": false,
            "merged_at": null,
        });
        return json_response(StatusCode::OK, v);
    }
    not_found(sh)
}

/// Whether issue or pull request `index` exists in `o/r`.
fn issue_exists(st: &SimState, o: &str, r: &str, index: &str) -> Option<u64> {
    let n = index.parse::<u64>().ok()?;
    let rs = st.repos.get(&key(o, r))?;
    (rs.issues.contains_key(&n) || rs.pulls.contains_key(&n)).then_some(n)
}

/// The poster of issue or pull request `n`.
fn issue_poster(rs: &RepoState, n: u64) -> u64 {
    rs.issues
        .get(&n)
        .map(|i| i.poster)
        .or_else(|| rs.pulls.get(&n).map(|p| p.poster))
        .unwrap_or(0)
}

fn list_comments(sh: &Shared, o: &str, r: &str, index: &str) -> Response {
    let st = sh.lock();
    let Some(n) = issue_exists(&st, o, r, index) else {
        return not_found(sh);
    };
    let is_pull = st.repos[&key(o, r)].pulls.contains_key(&n);
    let list: Vec<Value> = st
        .comments
        .iter()
        .filter(|c| c.owner == o && c.repo == r && c.issue == n)
        .map(|c| comment_json(sh, &st, c, is_pull))
        .collect();
    json_response(StatusCode::OK, Value::Array(list))
}

fn create_comment(
    sh: &Shared,
    o: &str,
    r: &str,
    index: &str,
    user: u64,
    body: &Map<String, Value>,
) -> Response {
    let mut st = sh.lock();
    let Some(n) = issue_exists(&st, o, r, index) else {
        return not_found(sh);
    };
    let is_pull = st.repos[&key(o, r)].pulls.contains_key(&n);
    let id = st.next_id();
    let now = now_rfc3339();
    let comment = CommentState {
        id,
        owner: o.to_string(),
        repo: r.to_string(),
        issue: n,
        body: str_field(body, "body").to_string(),
        created: now.clone(),
        updated: now,
        poster: user,
    };
    let v = comment_json(sh, &st, &comment, is_pull);
    st.comments.push(comment);
    json_response(StatusCode::CREATED, v)
}

fn find_comment<'a>(
    st: &'a SimState,
    o: &str,
    r: &str,
    id: &str,
) -> Option<(usize, &'a CommentState)> {
    let id = id.parse::<u64>().ok()?;
    st.comments
        .iter()
        .enumerate()
        .find(|(_, c)| c.id == id && c.owner == o && c.repo == r)
}

fn get_comment(sh: &Shared, o: &str, r: &str, id: &str) -> Response {
    let st = sh.lock();
    match find_comment(&st, o, r, id) {
        Some((_, c)) => {
            let is_pull = st.repos[&key(o, r)].pulls.contains_key(&c.issue);
            json_response(StatusCode::OK, comment_json(sh, &st, c, is_pull))
        }
        None => not_found(sh),
    }
}

fn edit_comment(
    sh: &Shared,
    o: &str,
    r: &str,
    id: &str,
    user: u64,
    body: &Map<String, Value>,
) -> Response {
    let mut st = sh.lock();
    let Some((i, c)) = find_comment(&st, o, r, id) else {
        return not_found(sh);
    };
    // routers/api/v1/repo/issue_comment.go, editIssueComment: only the author or
    // someone who may write issues edits a comment; anyone else gets a bare 403.
    let writer = st.can_write(&st.repos[&key(o, r)], Some(user));
    if c.poster != user && !writer {
        return empty_response(StatusCode::FORBIDDEN);
    }
    let c = &mut st.comments[i];
    c.body = str_field(body, "body").to_string();
    c.updated = now_rfc3339();
    let c = c.clone();
    let is_pull = st.repos[&key(o, r)].pulls.contains_key(&c.issue);
    json_response(StatusCode::OK, comment_json(sh, &st, &c, is_pull))
}

/// Whether `user` may track time on issue `n` (`CanUseTimetracker` in
/// services/context/repo.go: time tracking on, and — with the default
/// `AllowOnlyContributorsToTrackTime` — a writer or the issue's poster).
fn can_use_timetracker(st: &SimState, rs: &RepoState, n: u64, user: u64) -> bool {
    rs.time_tracking && (st.can_write(rs, Some(user)) || issue_poster(rs, n) == user)
}

/// Stops `sw`, recording its time on its issue (`FinishIssueStopwatch` in
/// models/issues/stopwatch.go: now minus the start, in seconds).
fn finish_stopwatch(st: &mut SimState, user: u64, sw: &StopwatchState, event: &str) {
    let now = now_unix();
    let id = st.next_id();
    st.times.push(TimeState {
        id,
        owner: sw.owner.clone(),
        repo: sw.repo.clone(),
        issue: sw.issue,
        user,
        created_unix: now,
        time: now - sw.started_unix,
        from_stopwatch: true,
    });
    st.stopwatch_events.push((
        sw.owner.clone(),
        sw.repo.clone(),
        sw.issue,
        event.to_string(),
    ));
}

/// routers/api/v1/repo/issue_stopwatch.go (`prepareIssueStopwatch`) and
/// models/issues/stopwatch.go: one stopwatch per user; starting one stops (and
/// records) the one running on another issue.
fn stopwatch(sh: &Shared, o: &str, r: &str, index: &str, user: u64, start: bool) -> Response {
    let mut st = sh.lock();
    let Some(n) = issue_exists(&st, o, r, index) else {
        return not_found(sh);
    };
    let rs = &st.repos[&key(o, r)];
    if !st.can_write(rs, Some(user)) || !can_use_timetracker(&st, rs, n, user) {
        return empty_response(StatusCode::FORBIDDEN);
    }
    let here = st
        .stopwatches
        .get(&user)
        .is_some_and(|s| s.owner == o && s.repo == r && s.issue == n);
    if here == start {
        let message = if start {
            "cannot start a stopwatch again if it already exists"
        } else {
            "cannot stop/cancel a non existent stopwatch"
        };
        return api_error(sh, StatusCode::CONFLICT, message);
    }
    if start {
        if let Some(other) = st.stopwatches.remove(&user) {
            finish_stopwatch(&mut st, user, &other, "stopped by a start elsewhere");
        }
        st.stopwatches.insert(
            user,
            StopwatchState {
                owner: o.to_string(),
                repo: r.to_string(),
                issue: n,
                started_unix: now_unix(),
            },
        );
        st.stopwatch_events
            .push((o.to_string(), r.to_string(), n, "start".into()));
    } else if let Some(sw) = st.stopwatches.remove(&user) {
        finish_stopwatch(&mut st, user, &sw, "stop");
    }
    empty_response(StatusCode::CREATED)
}

/// routers/api/v1/repo/issue_tracked_time.go, `AddTime`: 400 "time tracking
/// disabled" when it is off, a bare 403 when the user may not track time, else 200
/// with the `TrackedTime` (`created` as given, else now).
fn add_time(
    sh: &Shared,
    o: &str,
    r: &str,
    index: &str,
    user: u64,
    body: &Map<String, Value>,
) -> Response {
    let created = match body.get("created").and_then(Value::as_str) {
        None => now_unix(),
        Some(s) => match chrono::DateTime::parse_from_rfc3339(s) {
            Ok(t) => t.timestamp(),
            Err(e) => {
                return validation_error(sh, format!("AddTimeOption: created: {e}"));
            }
        },
    };
    let time = body.get("time").and_then(Value::as_i64).unwrap_or(0);
    let mut st = sh.lock();
    let Some(n) = issue_exists(&st, o, r, index) else {
        return not_found(sh);
    };
    let rs = &st.repos[&key(o, r)];
    if !can_use_timetracker(&st, rs, n, user) {
        if !rs.time_tracking {
            return api_error(sh, StatusCode::BAD_REQUEST, "time tracking disabled");
        }
        return empty_response(StatusCode::FORBIDDEN);
    }
    let id = st.next_id();
    let t = TimeState {
        id,
        owner: o.to_string(),
        repo: r.to_string(),
        issue: n,
        user,
        created_unix: created,
        time,
        from_stopwatch: false,
    };
    let v = tracked_time_json(&st, &t);
    st.times.push(t);
    json_response(StatusCode::OK, v)
}

/// routers/api/v1/repo/issue_tracked_time.go, `ListTrackedTimes`: 404 when time
/// tracking is off; `since`/`before` (RFC 3339) bound `created` inclusively; a user
/// who may not write issues sees only their own times and may not ask for others'.
fn list_times(
    sh: &Shared,
    o: &str,
    r: &str,
    index: &str,
    user: u64,
    query: &HashMap<String, String>,
) -> Response {
    let st = sh.lock();
    let rs = &st.repos[&key(o, r)];
    if !rs.time_tracking {
        return not_found_msg(sh, "Timetracker is disabled");
    }
    let Some(n) = issue_exists(&st, o, r, index) else {
        return not_found(sh);
    };
    let mut filter_user = match query.get("user").map(|s| s.trim()) {
        None | Some("") => None,
        Some(login) => match st.users.iter().find(|u| u.login == login) {
            Some(u) => Some(u.id),
            None => return not_found_msg(sh, "User does not exist"),
        },
    };
    let bound = |name: &str| -> Result<Option<i64>, String> {
        match query.get(name).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => chrono::DateTime::parse_from_rfc3339(s)
                .map(|t| Some(t.timestamp()))
                .map_err(|e| format!("{name}: {e}")),
        }
    };
    let (since, before) = match (bound("since"), bound("before")) {
        (Ok(s), Ok(b)) => (s, b),
        (Err(e), _) | (_, Err(e)) => return validation_error(sh, e),
    };
    if !st.can_write(rs, Some(user)) && filter_user != Some(user) {
        if filter_user.is_some() {
            return api_error(
                sh,
                StatusCode::FORBIDDEN,
                "query by user not allowed; not enough rights",
            );
        }
        filter_user = Some(user);
    }
    let selected: Vec<&TimeState> = st
        .times
        .iter()
        .filter(|t| t.owner == o && t.repo == r && t.issue == n)
        .filter(|t| filter_user.is_none_or(|u| t.user == u))
        .filter(|t| since.is_none_or(|s| t.created_unix >= s))
        .filter(|t| before.is_none_or(|b| t.created_unix <= b))
        .collect();
    let (page, limit) = page_and_limit(query);
    let total = selected.len();
    let list: Vec<Value> = selected
        .into_iter()
        .skip((page - 1).saturating_mul(limit))
        .take(limit)
        .map(|t| tracked_time_json(&st, t))
        .collect();
    let mut resp = json_response(StatusCode::OK, Value::Array(list));
    resp.headers_mut()
        .insert("x-total-count", HeaderValue::from(total));
    resp
}

/// `utils.GetListOptions`: `page` below 1 (or not a number) is 1, `limit` 0 (or not a
/// number) is the default, and at most `MAX_RESPONSE_ITEMS`.
fn page_and_limit(query: &HashMap<String, String>) -> (usize, usize) {
    let page = query
        .get("page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let limit = match query.get("limit").and_then(|l| l.parse::<usize>().ok()) {
        None | Some(0) => DEFAULT_PAGE_SIZE,
        Some(l) => l.min(MAX_PAGE_SIZE),
    };
    (page, limit)
}

/// What `ToAPIPullRequest` (services/convert/pull.go) reads from git for a pull
/// request: the head's `ref` is the branch while it exists in the head repository,
/// else `refs/pull/{n}/head` (and its sha from there).
struct PullView {
    head_ref: String,
    head_sha: String,
    base_sha: String,
}

async fn pull_view(sh: &Shared, o: &str, r: &str, n: u64, p: &PullState) -> PullView {
    let (ho, hr) = (&p.head_repo.0, &p.head_repo.1);
    let (head_ref, head_sha) = match resolve_branch(sh, ho, hr, &p.head).await {
        Some(sha) => (p.head.clone(), sha),
        None => {
            let pull_ref = format!("refs/pull/{n}/head");
            let sha = resolve_ref(sh, o, r, &pull_ref)
                .await
                .unwrap_or_else(|| p.head_sha.clone());
            (pull_ref, sha)
        }
    };
    let base_sha = resolve_branch(sh, o, r, &p.base)
        .await
        .unwrap_or_else(|| p.base_sha.clone());
    PullView {
        head_ref,
        head_sha,
        base_sha,
    }
}

/// models/issues/pull_list.go (`listPullRequestStatement`): only `open` and `closed`
/// filter; no `state` (or any other value) lists every pull request, newest first.
async fn list_pulls(
    sh: &Shared,
    o: &str,
    r: &str,
    who: Option<u64>,
    query: &HashMap<String, String>,
) -> Response {
    let state = query.get("state").map(String::as_str).unwrap_or_default();
    let (page, limit) = page_and_limit(query);
    let selected: Vec<(u64, PullState)> = {
        let st = sh.lock();
        let Some(rs) = st.repos.get(&key(o, r)) else {
            return not_found(sh);
        };
        rs.pulls
            .iter()
            .rev()
            .filter(|(_, p)| !matches!(state, "open" | "closed") || p.state == state)
            .map(|(n, p)| (*n, p.clone()))
            .collect()
    };
    let total = selected.len();
    let page_items: Vec<(u64, PullState)> = selected
        .into_iter()
        .skip((page - 1).saturating_mul(limit))
        .take(limit)
        .collect();
    let mut views = Vec::new();
    for (n, p) in &page_items {
        views.push(pull_view(sh, o, r, *n, p).await);
    }
    let list: Vec<Value> = {
        let st = sh.lock();
        page_items
            .iter()
            .zip(&views)
            .map(|((n, p), v)| pull_json(sh, &st, o, r, *n, p, v, who))
            .collect()
    };
    let mut resp = json_response(StatusCode::OK, Value::Array(list));
    resp.headers_mut()
        .insert("x-total-count", HeaderValue::from(total));
    resp
}

/// The head repository a `head` names (routers/api/v1/repo/pull.go): `branch` is in
/// this repository, `owner:branch` in `owner`'s repository of the same name,
/// `owner/repo:branch` in that one.
fn head_repo_of(o: &str, r: &str, head: &str) -> ((String, String), String) {
    match head.split_once(':') {
        None => (key(o, r), head.to_string()),
        Some((who, branch)) => match who.split_once('/') {
            Some((ho, hr)) => (key(ho, hr), branch.to_string()),
            None => (key(who, r), branch.to_string()),
        },
    }
}

/// routers/api/v1/repo/pull.go, `GetPullRequestByBaseHead`, and
/// models/issues/pull.go, `GetPullRequestByBaseHeadInfo`: the pull request joining
/// exactly these branches and repositories, whatever its state (the first found:
/// the oldest here); 404 if none.
async fn pull_by_base_head(
    sh: &Shared,
    o: &str,
    r: &str,
    who: Option<u64>,
    base: &str,
    head: &str,
) -> Response {
    let (head_repo, branch) = head_repo_of(o, r, head);
    let found = {
        let st = sh.lock();
        if !st.repos.contains_key(&head_repo) {
            return not_found(sh);
        }
        st.repos[&key(o, r)]
            .pulls
            .iter()
            .find(|(_, p)| p.base == base && p.head == branch && p.head_repo == head_repo)
            .map(|(n, p)| (*n, p.clone()))
    };
    let Some((n, p)) = found else {
        return not_found(sh);
    };
    let view = pull_view(sh, o, r, n, &p).await;
    let st = sh.lock();
    json_response(StatusCode::OK, pull_json(sh, &st, o, r, n, &p, &view, who))
}

async fn create_pull(
    sh: &Shared,
    o: &str,
    r: &str,
    user: u64,
    body: &Map<String, Value>,
) -> Response {
    let head_given = str_field(body, "head");
    let base = str_field(body, "base");
    // As upstream CreatePullRequest: same head and base is refused first.
    if head_given == base {
        return validation_error(
            sh,
            "Invalid PullRequest: There are no changes between the head and the base",
        );
    }
    let (head_repo, head) = head_repo_of(o, r, head_given);
    {
        let st = sh.lock();
        match st.repos.get(&head_repo) {
            Some(hr) if st.can_read(hr, Some(user)) => {}
            _ => return not_found(sh),
        }
    }
    // As upstream parseCompareInfo (Forgejo and Gitea): an unknown base or head is a
    // 404, not a 422. The sim only knows branches.
    let Some(base_sha) = resolve_branch(sh, o, r, base).await else {
        return not_found_msg(sh, format!("base branch `{base}` does not exist"));
    };
    let Some(head_sha) = resolve_branch(sh, &head_repo.0, &head_repo.1, &head).await else {
        return not_found_msg(
            sh,
            format!(
                "could not find '{head}' to be a commit, branch or tag in the head repository {}/{}",
                head_repo.0, head_repo.1
            ),
        );
    };
    let number = {
        let mut st = sh.lock();
        let Some(rs) = st.repos.get(&key(o, r)) else {
            return not_found(sh);
        };
        let head_repo_id = st.repos[&head_repo].id;
        if let Some((n, p)) = rs.pulls.iter().find(|(_, p)| {
            p.state == "open" && p.head == head && p.base == base && p.head_repo == head_repo
        }) {
            return api_error(
                sh,
                StatusCode::CONFLICT,
                format!(
                    "pull request already exists for these targets [id: {}, issue_id: {n}, head_repo_id: {head_repo_id}, base_repo_id: {}, head_branch: {head}, base_branch: {base}]",
                    p.id, rs.id
                ),
            );
        }
        let number = rs
            .issues
            .keys()
            .chain(rs.pulls.keys())
            .max()
            .copied()
            .unwrap_or(0)
            + 1;
        let id = st.next_id();
        let pr = PullState {
            id,
            title: str_field(body, "title").to_string(),
            body: str_field(body, "body").to_string(),
            head: head.clone(),
            head_repo: head_repo.clone(),
            base: base.to_string(),
            head_sha: head_sha.clone(),
            base_sha,
            state: "open".into(),
            created: now_rfc3339(),
            poster: user,
        };
        st.repos
            .get_mut(&key(o, r))
            .expect("checked")
            .pulls
            .insert(number, pr);
        number
    };
    // As Forgejo (services/pull/pull.go, PushToBaseRepo): the head is kept in the base
    // repository as refs/pull/{n}/head, which outlives the branch.
    let bare = sh.bare_repo(o, r);
    let pull_ref = format!("refs/pull/{number}/head");
    if head_repo == key(o, r) {
        let _ = git_output(&bare, &["update-ref", &pull_ref, &head_sha]).await;
    } else {
        let from = sh.bare_repo(&head_repo.0, &head_repo.1);
        let spec = format!("+refs/heads/{head}:{pull_ref}");
        let _ = git_output(&bare, &["fetch", "--quiet", &from.to_string_lossy(), &spec]).await;
    }
    let p = sh.lock().repos[&key(o, r)].pulls[&number].clone();
    let view = pull_view(sh, o, r, number, &p).await;
    let st = sh.lock();
    json_response(
        StatusCode::CREATED,
        pull_json(sh, &st, o, r, number, &p, &view, Some(user)),
    )
}

fn list_statuses(sh: &Shared, o: &str, r: &str, sha: &str) -> Response {
    let st = sh.lock();
    let Some(rs) = st.repos.get(&key(o, r)) else {
        return not_found(sh);
    };
    let list: Vec<Value> = rs
        .statuses
        .get(sha)
        .map(|v| {
            v.iter()
                .rev()
                .map(|s| status_json(sh, &st, o, r, sha, s))
                .collect()
        })
        .unwrap_or_default();
    json_response(StatusCode::OK, Value::Array(list))
}

/// routers/api/v1/repo/status.go (`NewCommitStatus`) and
/// services/repository/commitstatus (`CreateCommitStatus`): writers only (a 403
/// from `reqRepoWriter`); a commit the repository does not have makes `GetCommit`
/// fail, which the handler answers 500, storing nothing. The state is not checked.
/// A repository registered without git data takes any sha.
async fn create_status(
    sh: &Shared,
    o: &str,
    r: &str,
    sha: &str,
    user: u64,
    body: &Map<String, Value>,
) -> Response {
    {
        let st = sh.lock();
        if !st.can_write(&st.repos[&key(o, r)], Some(user)) {
            return api_error(
                sh,
                StatusCode::FORBIDDEN,
                "user should have a permission to write to a repo",
            );
        }
    }
    let bare = sh.bare_repo(o, r);
    if bare.is_dir() && resolve_commit(&bare, sha).await.is_none() {
        return api_error(
            sh,
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("GetCommit[{sha}]: object does not exist [id: {sha}, rel_path: ]"),
        );
    }
    let mut st = sh.lock();
    let id = st.next_id();
    let status = StatusState {
        id,
        state: str_field(body, "state").to_string(),
        target_url: str_field(body, "target_url").trim().to_string(),
        description: str_field(body, "description").trim().to_string(),
        context: str_field(body, "context").trim().to_string(),
        created: now_rfc3339(),
        creator: user,
    };
    let v = status_json(sh, &st, o, r, sha, &status);
    st.repos
        .get_mut(&key(o, r))
        .expect("checked")
        .statuses
        .entry(sha.to_string())
        .or_default()
        .push(status);
    json_response(StatusCode::CREATED, v)
}

/// routers/api/v1/repo/status.go, `GetCombinedCommitStatusByRef`: the latest status
/// per context on the commit `reference` resolves to; an empty `CombinedStatus`
/// when there is none.
async fn combined_status(
    sh: &Shared,
    o: &str,
    r: &str,
    reference: &str,
    who: Option<u64>,
) -> Response {
    let bare = sh.bare_repo(o, r);
    let sha = match resolve_commit(&bare, reference).await {
        Some(sha) if bare.is_dir() => sha,
        _ => reference.to_string(),
    };
    let st = sh.lock();
    let rs = &st.repos[&key(o, r)];
    let all = rs.statuses.get(&sha).cloned().unwrap_or_default();
    let mut latest: BTreeMap<String, StatusState> = BTreeMap::new();
    for s in all {
        latest.insert(s.context.clone(), s);
    }
    if latest.is_empty() {
        return json_response(
            StatusCode::OK,
            json!({"state": "", "sha": "", "total_count": 0, "statuses": null,
                   "repository": null, "commit_url": "", "url": ""}),
        );
    }
    let rank = |s: &str| match s {
        "error" => 4,
        "failure" => 3,
        "warning" => 2,
        "pending" => 1,
        _ => 0,
    };
    let state = latest
        .values()
        .map(|s| s.state.as_str())
        .max_by_key(|s| rank(s))
        .unwrap_or("success")
        .to_string();
    let statuses: Vec<Value> = latest
        .values()
        .map(|s| status_json(sh, &st, o, r, &sha, s))
        .collect();
    json_response(
        StatusCode::OK,
        json!({
            "state": state,
            "sha": sha,
            "total_count": statuses.len(),
            "statuses": statuses,
            "repository": repo_json(sh, &st, o, r, rs, who),
            "commit_url": format!("{}/api/v1/repos/{o}/{r}/commits/{sha}", sh.url),
            "url": format!("{}/api/v1/repos/{o}/{r}/commits/{sha}/status", sh.url),
        }),
    )
}

/// routers/api/v1/repo/commits.go, `GetSingleCommit`: 404 for a commit the
/// repository does not have.
async fn get_commit(sh: &Shared, o: &str, r: &str, sha: &str) -> Response {
    let bare = sh.bare_repo(o, r);
    let Some(full) = resolve_commit(&bare, sha).await else {
        return not_found_msg(sh, format!("sha not found [{sha}]"));
    };
    let message = git_output(&bare, &["log", "-1", "--format=%B", &full])
        .await
        .unwrap_or_default();
    let created = git_output(&bare, &["log", "-1", "--format=%cI", &full])
        .await
        .unwrap_or_default();
    json_response(
        StatusCode::OK,
        json!({
            "url": format!("{}/api/v1/repos/{o}/{r}/git/commits/{full}", sh.url),
            "sha": full,
            "html_url": format!("{}/{o}/{r}/commit/{full}", sh.url),
            "commit": {"message": message, "tree": {"sha": ""}},
            "author": null,
            "committer": null,
            "created": created,
            "parents": [],
            "files": null,
            "stats": null,
        }),
    )
}

// ---------------------------------------------------------------------------------
// Response bodies (the spec's definitions)

fn user_json(sh: &Shared, id: u64, login: &str) -> Value {
    json!({
        "id": id,
        "login": login,
        "login_name": "",
        "full_name": "",
        "email": format!("{login}@noreply.localhost"),
        "avatar_url": "",
        "html_url": format!("{}/{login}", sh.url),
        "language": "",
        "is_admin": false,
        "restricted": false,
        "active": true,
        "prohibit_login": false,
        "location": "",
        "website": "",
        "description": "",
        "visibility": "public",
        "followers_count": 0,
        "following_count": 0,
        "starred_repos_count": 0,
        "username": login,
    })
}

fn user_json_of(sh: &Shared, st: &SimState, id: u64) -> Value {
    user_json(sh, id, &st.login(id))
}

fn repo_json(
    sh: &Shared,
    st: &SimState,
    o: &str,
    r: &str,
    rs: &RepoState,
    who: Option<u64>,
) -> Value {
    let open_issues = rs.issues.values().filter(|i| i.state == "open").count();
    let open_pulls = rs.pulls.values().filter(|p| p.state == "open").count();
    let host = sh.url.trim_start_matches("http://");
    let write = st.can_write(rs, who);
    let mut v = json!({
        "id": rs.id,
        "owner": user_json(sh, 0, o),
        "name": r,
        "full_name": format!("{o}/{r}"),
        "description": "",
        "empty": false,
        "private": rs.private,
        "fork": false,
        "template": false,
        "parent": null,
        "mirror": false,
        "size": 0,
        "language": "",
        "languages_url": format!("{}/api/v1/repos/{o}/{r}/languages", sh.url),
        "html_url": format!("{}/{o}/{r}", sh.url),
        "url": format!("{}/api/v1/repos/{o}/{r}", sh.url),
        "link": "",
        "ssh_url": format!("ssh://git@{host}/{o}/{r}.git"),
        "clone_url": format!("{}/{o}/{r}.git", sh.url),
        "original_url": "",
        "website": "",
    });
    let more = json!({
        "stars_count": 0,
        "forks_count": 0,
        "watchers_count": 0,
        "open_issues_count": open_issues,
        "open_pr_counter": open_pulls,
        "release_counter": 0,
        "default_branch": rs.default_branch,
        "archived": false,
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-01T00:00:00Z",
        "archived_at": "1970-01-01T00:00:00Z",
        "permissions": {"admin": write, "push": write, "pull": true},
        "has_issues": true,
        "internal_tracker": {
            "enable_time_tracker": rs.time_tracking,
            "allow_only_contributors_to_track_time": true,
            "enable_issue_dependencies": true,
        },
        "has_wiki": false,
        "has_pull_requests": true,
        "has_projects": false,
        "has_releases": false,
        "has_packages": false,
        "has_actions": false,
        "ignore_whitespace_conflicts": false,
        "allow_merge_commits": true,
        "allow_rebase": true,
        "allow_rebase_explicit": true,
        "allow_squash_merge": true,
        "allow_fast_forward_only_merge": true,
        "allow_rebase_update": true,
        "default_delete_branch_after_merge": false,
        "default_merge_style": "merge",
        "default_allow_maintainer_edit": false,
        "avatar_url": "",
        "internal": false,
        "mirror_interval": "",
        "object_format_name": "sha1",
    });
    if let (Some(v), Value::Object(m)) = (v.as_object_mut(), more) {
        v.extend(m);
    }
    v
}

#[allow(clippy::too_many_arguments)]
fn issue_json(
    sh: &Shared,
    st: &SimState,
    o: &str,
    r: &str,
    rs: &RepoState,
    n: u64,
    issue: &IssueState,
    comments: usize,
) -> Value {
    json!({
        "id": issue.id,
        "url": format!("{}/api/v1/repos/{o}/{r}/issues/{n}", sh.url),
        "html_url": format!("{}/{o}/{r}/issues/{n}", sh.url),
        "number": n,
        "user": user_json_of(sh, st, issue.poster),
        "original_author": "",
        "original_author_id": 0,
        "title": issue.title,
        "body": issue.body,
        "ref": "",
        "assets": [],
        "labels": [],
        "milestone": null,
        "assignee": null,
        "assignees": null,
        "state": issue.state,
        "is_locked": false,
        "comments": comments,
        "created_at": issue.created,
        "updated_at": issue.created,
        "closed_at": null,
        "due_date": null,
        "pull_request": null,
        "repository": {"id": rs.id, "name": r, "owner": o, "full_name": format!("{o}/{r}")},
        "pin_order": 0,
    })
}

fn comment_json(sh: &Shared, st: &SimState, c: &CommentState, is_pull: bool) -> Value {
    let (o, r, n) = (&c.owner, &c.repo, c.issue);
    let kind = if is_pull { "pulls" } else { "issues" };
    json!({
        "id": c.id,
        "html_url": format!("{}/{o}/{r}/{kind}/{n}#issuecomment-{}", sh.url, c.id),
        "pull_request_url": if is_pull { format!("{}/{o}/{r}/pulls/{n}", sh.url) } else { String::new() },
        "issue_url": if is_pull { String::new() } else { format!("{}/{o}/{r}/issues/{n}", sh.url) },
        "user": user_json_of(sh, st, c.poster),
        "original_author": "",
        "original_author_id": 0,
        "body": c.body,
        "assets": [],
        "created_at": c.created,
        "updated_at": c.updated,
    })
}

/// services/convert/pull.go, `ToAPIPullRequest`: `label` is the branch name, `ref`
/// the branch or `refs/pull/{n}/head`, `repo_id` the repository holding the branch.
#[allow(clippy::too_many_arguments)]
fn pull_json(
    sh: &Shared,
    st: &SimState,
    o: &str,
    r: &str,
    n: u64,
    p: &PullState,
    view: &PullView,
    who: Option<u64>,
) -> Value {
    let rs = &st.repos[&key(o, r)];
    let base_repo = repo_json(sh, st, o, r, rs, who);
    let (head_repo_id, head_repo) = match st.repos.get(&p.head_repo) {
        Some(hr) => (
            i64::try_from(hr.id).unwrap_or(-1),
            repo_json(sh, st, &p.head_repo.0, &p.head_repo.1, hr, who),
        ),
        None => (-1, Value::Null),
    };
    json!({
        "id": p.id,
        "url": format!("{}/{o}/{r}/pulls/{n}", sh.url),
        "number": n,
        "user": user_json_of(sh, st, p.poster),
        "title": p.title,
        "body": p.body,
        "labels": [],
        "milestone": null,
        "assignee": null,
        "assignees": null,
        "requested_reviewers": [],
        "requested_reviewers_teams": [],
        "state": p.state,
        "draft": false,
        "is_locked": false,
        "comments": 0,
        "review_comments": 0,
        "additions": 0,
        "deletions": 0,
        "changed_files": 0,
        "html_url": format!("{}/{o}/{r}/pulls/{n}", sh.url),
        "diff_url": format!("{}/{o}/{r}/pulls/{n}.diff", sh.url),
        "patch_url": format!("{}/{o}/{r}/pulls/{n}.patch", sh.url),
        "mergeable": true,
        "merged": false,
        "merged_at": null,
        "merge_commit_sha": null,
        "merged_by": null,
        "allow_maintainer_edit": false,
        "base": {"label": p.base, "ref": p.base, "sha": view.base_sha, "repo_id": rs.id, "repo": base_repo},
        "head": {"label": p.head, "ref": view.head_ref, "sha": view.head_sha, "repo_id": head_repo_id, "repo": head_repo},
        "merge_base": p.base_sha,
        "due_date": null,
        "created_at": p.created,
        "updated_at": p.created,
        "closed_at": null,
        "pin_order": 0,
        "flow": 0,
    })
}

fn status_json(sh: &Shared, st: &SimState, o: &str, r: &str, sha: &str, s: &StatusState) -> Value {
    json!({
        "id": s.id,
        "status": s.state,
        "target_url": s.target_url,
        "description": s.description,
        "url": format!("{}/api/v1/repos/{o}/{r}/statuses/{sha}", sh.url),
        "context": s.context,
        "creator": user_json_of(sh, st, s.creator),
        "created_at": s.created,
        "updated_at": s.created,
    })
}

fn tracked_time_json(st: &SimState, t: &TimeState) -> Value {
    let created = chrono::DateTime::from_timestamp(t.created_unix, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let issue_id = st
        .repos
        .get(&key(&t.owner, &t.repo))
        .and_then(|rs| {
            rs.issues
                .get(&t.issue)
                .map(|i| i.id)
                .or_else(|| rs.pulls.get(&t.issue).map(|p| p.id))
        })
        .unwrap_or(0);
    json!({
        "id": t.id,
        "created": created,
        "time": t.time,
        "user_id": t.user,
        "user_name": st.login(t.user),
        "issue_id": issue_id,
        "issue": null,
    })
}

fn json_response(status: StatusCode, body: Value) -> Response {
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=utf-8"),
    );
    resp
}

fn empty_response(status: StatusCode) -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = status;
    resp
}

/// `APIError`-shaped answer (also `APIUnauthorizedError`, `APIValidationError`, …).
fn api_error(sh: &Shared, status: StatusCode, message: impl Into<String>) -> Response {
    json_response(
        status,
        json!({"message": message.into(), "url": format!("{}/api/swagger", sh.url)}),
    )
}

fn validation_error(sh: &Shared, message: impl Into<String>) -> Response {
    api_error(sh, StatusCode::UNPROCESSABLE_ENTITY, message)
}

/// `APINotFound`.
fn not_found(sh: &Shared) -> Response {
    not_found_msg(sh, "The target couldn't be found.")
}

fn not_found_msg(sh: &Shared, message: impl Into<String>) -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        json!({"errors": [], "message": message.into(), "url": format!("{}/api/swagger", sh.url)}),
    )
}

fn method_not_allowed(sh: &Shared) -> Response {
    api_error(sh, StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
}

// ---------------------------------------------------------------------------------
// Git over HTTP

/// `/{owner}/{repo}.git/{tail}` → (owner, repo, tail).
fn parse_git_path(path: &str) -> Option<(String, String, String)> {
    let rest = path.strip_prefix('/')?;
    let (owner, rest) = rest.split_once('/')?;
    let (repo_git, tail) = rest.split_once('/')?;
    let repo = repo_git.strip_suffix(".git")?;
    let safe = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    let tail_ok = !tail.is_empty()
        && tail
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..");
    (safe(owner) && safe(repo) && tail_ok)
        .then(|| (owner.to_string(), repo.to_string(), tail.to_string()))
}

fn git_challenge() -> Response {
    let mut resp = Response::new(Body::from("Unauthorized\n"));
    *resp.status_mut() = StatusCode::UNAUTHORIZED;
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"Gitea\""),
    );
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn plain(status: StatusCode, text: impl Into<String>) -> Response {
    let mut resp = Response::new(Body::from(text.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// The sim's pre-receive hook: what Forgejo's pre-receive hook
/// (`routers/private/hook_pre_receive.go`, printed by `cmd/hook.go` as
/// `Forgejo: …`) refuses. `refs/pull/*` is read-only (`preReceivePull`: only
/// AGit pull requests may be pushed there), and a branch matching one of the
/// repository's protected patterns (`AGENTQ_SIM_PROTECTED`, shell globs) is
/// refused (`preReceiveBranch`: "Not allowed to push to protected branch").
/// Git then reports `[remote rejected] … (pre-receive hook declined)` and
/// changes no ref of the push.
const PRE_RECEIVE: &str = r#"#!/bin/sh
set -f
status=0
while read -r old new ref; do
  case "$ref" in
    refs/pull/*)
      echo "Forgejo: Only AGit pull-requests can be pushed via $ref" >&2
      status=1 ;;
    refs/heads/*)
      branch=${ref#refs/heads/}
      for pattern in $AGENTQ_SIM_PROTECTED; do
        case "$branch" in
          $pattern)
            echo "Forgejo: Not allowed to push to protected branch $branch" >&2
            status=1 ;;
        esac
      done ;;
  esac
done
exit $status
"#;

struct PushCtx {
    owner: String,
    repo: String,
    user: String,
    bare: PathBuf,
    before: BTreeMap<String, String>,
}

async fn git_http(
    sh: &Arc<Shared>,
    req: Request,
    owner: String,
    repo: String,
    tail: String,
) -> Response {
    let bare = sh.bare_repo(&owner, &repo);
    let query = req.uri().query().unwrap_or_default().to_string();
    let is_push = tail == "git-receive-pack"
        || (tail == "info/refs"
            && parse_query(&query)
                .get("service")
                .is_some_and(|s| s == "git-receive-pack"));
    // routers/web/repo/githttp.go (`httpBase`): only a pull from a public repository
    // that exists goes without credentials; everything else asks for them (401 with
    // a basic-auth challenge). A token must hold `read:repository` (a pull) or
    // `write:repository` (a push): else a bare 403 (`CheckRepoScopedToken`,
    // services/context/permission.go; not asked for a public pull). A repository
    // the forge does not have (not registered with `add_repo`, whatever is on
    // disk) is 404 "Repository not found" to a pull, and a push to it is refused
    // (push-to-create is off by default); so is one the user cannot read.
    if sh.lock().down {
        return plain(StatusCode::SERVICE_UNAVAILABLE, "the forge is down\n");
    }
    let (user, can_write, protected) = {
        let st = sh.lock();
        let who = match caller(&st, req.headers()) {
            Ok(who) => who,
            Err(()) => return git_challenge(),
        };
        let rs = st.repos.get(&key(&owner, &repo)).filter(|_| bare.is_dir());
        let private = rs.is_some_and(|rs| rs.private);
        let public_pull = rs.is_some() && !private && !is_push;
        if public_pull {
            (None, false, Vec::new())
        } else {
            let Some(id) = who else {
                return git_challenge();
            };
            let level = if is_push { "write" } else { "read" };
            if !st.has_scope(id, &format!("{level}:repository")) {
                return plain(StatusCode::FORBIDDEN, "Forbidden\n");
            }
            let Some(rs) = rs else {
                if is_push {
                    return plain(
                        StatusCode::FORBIDDEN,
                        "Push to create is not enabled for users.\n",
                    );
                }
                return plain(StatusCode::NOT_FOUND, "Repository not found");
            };
            if !st.can_read(rs, who) {
                return plain(StatusCode::NOT_FOUND, "Repository not found");
            }
            (
                Some(st.login(id)),
                st.can_write(rs, who),
                rs.protected.clone(),
            )
        }
    };
    if is_push && !can_write {
        // Forgejo refuses it in its pre-receive hook; the push fails either way.
        return plain(StatusCode::FORBIDDEN, "User permission denied for writing.");
    }

    let headers = req.headers().clone();
    let method = req.method().clone();
    let body = req.into_body();
    let header_str = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let mut cmd = Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &sh.git_root)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_PROJECT_ROOT", &sh.git_root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", format!("/{owner}/{repo}.git/{tail}"))
        .env("QUERY_STRING", &query)
        .env("REQUEST_METHOD", method.as_str())
        .env(
            "CONTENT_TYPE",
            header_str("content-type").unwrap_or_default(),
        )
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    if let Some(len) = header_str("content-length") {
        cmd.env("CONTENT_LENGTH", len);
    }
    if let Some(enc) = header_str("content-encoding") {
        cmd.env("HTTP_CONTENT_ENCODING", enc);
    }
    if let Some(proto) = header_str("git-protocol") {
        cmd.env("GIT_PROTOCOL", proto);
    }
    // The sim's pre-receive hook refuses what Forgejo's refuses.
    cmd.env("GIT_CONFIG_KEY_0", "core.hooksPath")
        .env("GIT_CONFIG_VALUE_0", sh.hooks.path())
        .env("AGENTQ_SIM_PROTECTED", protected.join(" "));
    if let Some(user) = &user {
        cmd.env("REMOTE_USER", user)
            .env("GIT_CONFIG_COUNT", "2")
            .env("GIT_CONFIG_KEY_1", "http.receivepack")
            .env("GIT_CONFIG_VALUE_1", "true");
    } else {
        cmd.env("GIT_CONFIG_COUNT", "1");
    }
    let push = if is_push && tail == "git-receive-pack" {
        Some(PushCtx {
            owner: owner.clone(),
            repo: repo.clone(),
            user: user.clone().unwrap_or_default(),
            before: refs_of(&bare).await,
            bare: bare.clone(),
        })
    } else {
        None
    };

    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot run git http-backend: {e}\n"),
            )
        }
    };
    let mut stdin = child.stdin.take().expect("piped stdin");
    let mut body = body.into_data_stream();
    tokio::spawn(async move {
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(bytes) => {
                    if stdin.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        let _ = stdin.shutdown().await;
    });
    if let Some(mut stderr) = child.stderr.take() {
        let sh = sh.clone();
        tokio::spawn(async move {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text).await;
            if !text.trim().is_empty() {
                sh.lock().git_stderr.push(text);
            }
        });
    }
    let mut stdout = child.stdout.take().expect("piped stdout");

    // CGI headers, up to the blank line.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let (head_end, body_start) = loop {
        if let Some(found) = find_header_end(&buf) {
            break found;
        }
        match stdout.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                let _ = child.wait().await;
                return plain(
                    StatusCode::BAD_GATEWAY,
                    "git http-backend wrote no CGI headers\n",
                );
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > 64 * 1024 {
            return plain(
                StatusCode::BAD_GATEWAY,
                "git http-backend: CGI headers too long\n",
            );
        }
    };
    let mut status = StatusCode::OK;
    let mut headers = HeaderMap::new();
    for line in String::from_utf8_lossy(&buf[..head_end]).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            if let Some(code) = value
                .split_whitespace()
                .next()
                .and_then(|c| c.parse::<u16>().ok())
            {
                status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
            }
        } else if let (Ok(n), Ok(v)) = (
            header::HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(n, v);
        }
    }
    let first = buf[body_start..].to_vec();
    let tail_stream = CgiTail {
        stdout,
        child: Some(child),
        push,
        shared: sh.clone(),
        done: false,
    };
    let rest = futures::stream::unfold(tail_stream, |mut t| async move {
        if t.done {
            return None;
        }
        let mut chunk = vec![0u8; 32 * 1024];
        match t.stdout.read(&mut chunk).await {
            Ok(0) => {
                t.finish().await;
                None
            }
            Ok(n) => {
                chunk.truncate(n);
                Some((Ok::<Bytes, std::io::Error>(Bytes::from(chunk)), t))
            }
            Err(e) => {
                t.finish().await;
                t.done = true;
                Some((Err(e), t))
            }
        }
    });
    let stream =
        futures::stream::iter((!first.is_empty()).then(|| Ok(Bytes::from(first)))).chain(rest);
    let mut resp = Response::new(Body::from_stream(stream));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

/// The rest of a CGI answer; reaps the process and records the push at the end, so
/// a push is recorded before the client sees the end of the answer.
struct CgiTail {
    stdout: ChildStdout,
    child: Option<Child>,
    push: Option<PushCtx>,
    shared: Arc<Shared>,
    done: bool,
}

impl CgiTail {
    async fn finish(&mut self) {
        let success = match self.child.take() {
            Some(mut child) => child.wait().await.is_ok_and(|s| s.success()),
            None => false,
        };
        if let Some(push) = self.push.take() {
            let after = refs_of(&push.bare).await;
            let mut updates = Vec::new();
            for (name, old) in &push.before {
                match after.get(name) {
                    Some(new) if new == old => {}
                    new => updates.push(RefUpdate {
                        name: name.clone(),
                        old: Some(old.clone()),
                        new: new.cloned(),
                    }),
                }
            }
            for (name, new) in &after {
                if !push.before.contains_key(name) {
                    updates.push(RefUpdate {
                        name: name.clone(),
                        old: None,
                        new: Some(new.clone()),
                    });
                }
            }
            self.shared.lock().pushes.push(PushRecord {
                owner: push.owner,
                repo: push.repo,
                user: push.user,
                success,
                updates,
            });
        }
    }
}

fn find_header_end(buf: &[u8]) -> Option<(usize, usize)> {
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4));
    let lf = buf
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (i, i + 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

async fn git_output(git_dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(git_dir)
        .args(args)
        .output()
        .await
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

async fn resolve_branch(sh: &Shared, o: &str, r: &str, branch: &str) -> Option<String> {
    if branch.is_empty() || branch.starts_with('-') {
        return None;
    }
    let bare = sh.bare_repo(o, r);
    if !bare.is_dir() {
        return None;
    }
    git_output(
        &bare,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("refs/heads/{branch}^{{commit}}"),
        ],
    )
    .await
    .filter(|s| !s.is_empty())
}

/// The commit `rev` names in `bare`, if any.
async fn resolve_commit(bare: &Path, rev: &str) -> Option<String> {
    if rev.is_empty() || rev.starts_with('-') || !bare.is_dir() {
        return None;
    }
    git_output(
        bare,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{rev}^{{commit}}"),
        ],
    )
    .await
    .filter(|s| !s.is_empty())
}

/// The commit full ref `name` points at in `o/r`.
async fn resolve_ref(sh: &Shared, o: &str, r: &str, name: &str) -> Option<String> {
    resolve_commit(&sh.bare_repo(o, r), name).await
}

async fn refs_of(bare: &Path) -> BTreeMap<String, String> {
    git_output(bare, &["for-each-ref", "--format=%(refname) %(objectname)"])
        .await
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, s)| (n.to_string(), s.to_string()))
        .collect()
}

// ---------------------------------------------------------------------------------
// Small helpers

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                percent_decode(&k.replace('+', " ")),
                percent_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace()) {
        if c == b'=' {
            break;
        }
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Now as RFC 3339 in UTC, to the second.
fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_basic_credentials() {
        assert_eq!(base64_decode("dXNlcjpwYXNz").unwrap(), b"user:pass");
        assert_eq!(base64_decode("YTpiYw==").unwrap(), b"a:bc");
        assert!(base64_decode("!!").is_none());
    }

    #[test]
    fn git_paths_are_parsed_and_guarded() {
        assert_eq!(
            parse_git_path("/acme/widget.git/info/refs"),
            Some(("acme".into(), "widget".into(), "info/refs".into()))
        );
        assert_eq!(parse_git_path("/acme/widget.git/"), None);
        assert_eq!(parse_git_path("/acme/widget/info/refs"), None);
        assert_eq!(parse_git_path("/../widget.git/info/refs"), None);
        assert_eq!(parse_git_path("/acme/widget.git/objects/../../x"), None);
    }

    #[test]
    fn queries_and_paths_are_decoded() {
        assert_eq!(percent_decode("a%20b%2Fc%"), "a b/c%");
        let q = parse_query("state=open&page=2&service=git-upload-pack&x=a+b");
        assert_eq!(q["page"], "2");
        assert_eq!(q["x"], "a b");
    }

    #[test]
    fn bodies_are_checked_against_the_schema() {
        use spec::{check_request as validate, *};
        let ok = json!({"body": "hi"});
        assert!(validate(&CREATE_ISSUE_COMMENT, &ok).is_ok());
        let e = validate(&CREATE_ISSUE_COMMENT, &json!({})).unwrap_err();
        assert!(e.contains("`body` is required"), "{e}");
        let e = validate(&CREATE_ISSUE_COMMENT, &json!({"body": 3})).unwrap_err();
        assert!(e.contains("must be a string"), "{e}");
        let odd = json!({"state": "success", "target-url": "x"});
        assert!(validate(&CREATE_STATUS, &odd).is_ok());
        assert_eq!(
            unknown_fields(&CREATE_STATUS, &odd),
            ["CreateStatusOption.target-url"]
        );
        let e = validate(&ADD_TIME, &json!({"time": 0})).unwrap_err();
        assert!(e.contains("`time` is required"), "{e}");
        let e = validate(&ADD_TIME, &json!({"time": 5, "created": "yesterday"})).unwrap_err();
        assert!(e.contains("`created` must be a date-time string"), "{e}");
        let e = validate(
            &CREATE_PULL_REQUEST,
            &json!({"head": "a", "base": "b", "title": " "}),
        )
        .unwrap_err();
        assert!(e.contains("`title` is required"), "{e}");
        assert!(validate(&CREATE_PULL_REQUEST, &json!([1])).is_err());
    }

    #[test]
    fn answers_are_checked_field_by_field() {
        use spec::*;
        let user = json!({"id": 1, "login": "a", "login_name": "", "full_name": "",
            "email": "", "avatar_url": "", "html_url": "", "is_admin": false,
            "active": true, "visibility": "public"});
        let status = json!({"id": 1, "status": "success", "target_url": "",
            "description": "", "url": "", "context": "c", "creator": user,
            "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z"});
        assert_eq!(check_answer(&COMMIT_STATUS, &status, ""), Ok(()));
        // A complete definition: a field it does not document is refused.
        let mut extra = status.clone();
        extra["state"] = json!("success");
        let e = check_answer(&COMMIT_STATUS, &extra, "").unwrap_err();
        assert!(
            e.contains(".state: CommitStatus does not document it"),
            "{e}"
        );
        // A missing field, a wrong type, a bad date, a nested definition.
        let mut missing = status.clone();
        missing.as_object_mut().unwrap().remove("context");
        assert!(check_answer(&COMMIT_STATUS, &missing, "")
            .unwrap_err()
            .contains("context: missing"));
        let mut wrong = status.clone();
        wrong["id"] = json!("1");
        assert!(check_answer(&COMMIT_STATUS, &wrong, "").is_err());
        let mut date = status.clone();
        date["created_at"] = json!("2024-01-01 00:00");
        assert!(check_answer(&COMMIT_STATUS, &date, "").is_err());
        let mut nested = status.clone();
        nested["creator"]["login"] = json!(7);
        let e = check_answer(&COMMIT_STATUS, &nested, "").unwrap_err();
        assert!(e.starts_with("creator.login:"), "{e}");
        // Objects and lists may be null (Go's nil); a list is checked item by item.
        let mut null_creator = status.clone();
        null_creator["creator"] = Value::Null;
        assert_eq!(check_answer(&COMMIT_STATUS, &null_creator, ""), Ok(()));
        let list = serde_json::to_vec(&json!([status, wrong])).unwrap();
        assert!(check_body(Answer::Many(&COMMIT_STATUS), &list)
            .unwrap_err()
            .starts_with("[1].id"));
        assert!(check_body(Answer::Empty, b"").is_ok());
        assert!(check_body(Answer::Empty, b"{}").is_err());
    }

    #[test]
    fn scopes_follow_forgejos_levels() {
        let st = SimState {
            users: vec![SimUser {
                id: 1,
                login: "a".into(),
                token: "t".into(),
                scopes: vec!["write:issue".into(), "read:repository".into()],
            }],
            ..SimState::default()
        };
        assert!(st.has_scope(1, "write:issue"));
        assert!(st.has_scope(1, "read:issue"), "write holds read");
        assert!(st.has_scope(1, "read:repository"));
        assert!(
            !st.has_scope(1, "write:repository"),
            "read does not hold write"
        );
        assert!(!st.has_scope(1, "read:user"));
        assert!(!st.has_scope(2, "read:user"), "no such user");
    }

    #[test]
    fn the_coverage_table_lists_every_endpoint() {
        let table = spec::coverage();
        assert_eq!(table.lines().count(), spec::ENDPOINTS.len(), "{table}");
        assert!(
            table.contains("POST /repos/{owner}/{repo}/pulls | write:repository | request CreatePullRequestOption* [assignee, assignees, base!, body, due_date, head!, labels, milestone, title!]"),
            "{table}"
        );
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z'), "{t}");
    }
}
