//! A simulated Forgejo for end-to-end tests: the part of the REST API v1 agentq uses,
//! checked against the upstream OpenAPI description, plus git over smart HTTP for the
//! bare repositories under a directory (served by `git http-backend`).
//!
//! API (under `/api/v1`; every request needs `Authorization: token <TOKEN>`, else 401):
//!
//! | request | answers |
//! |---|---|
//! | `GET /repos/{owner}/{repo}` | 200 `Repository`, 404 |
//! | `GET /repos/{owner}/{repo}/issues/{index}` | 200 `Issue`, 404 |
//! | `GET /repos/{owner}/{repo}/issues/{index}/comments` | 200 `[Comment]`, 404 |
//! | `POST /repos/{owner}/{repo}/issues/{index}/comments` | 201 `Comment`, 404, 422 |
//! | `GET`/`PATCH /repos/{owner}/{repo}/issues/comments/{id}` | 200 `Comment`, 404, 422 |
//! | `POST /repos/{owner}/{repo}/issues/{index}/stopwatch/start` | 201, 404, 409 running |
//! | `POST /repos/{owner}/{repo}/issues/{index}/stopwatch/stop` | 201, 404, 409 not running |
//! | `GET /repos/{owner}/{repo}/pulls?state&page&limit` | 200 `[PullRequest]` + `X-Total-Count`, 404, 422 |
//! | `POST /repos/{owner}/{repo}/pulls` | 201 `PullRequest`, 404 no such branch, 409 exists, 422 |
//! | `GET`/`POST /repos/{owner}/{repo}/statuses/{sha}` | 200 `[CommitStatus]` / 201 `CommitStatus`, 400, 404, 422 |
//!
//! Other paths answer 404, other methods on a known path 405. JSON bodies must be
//! objects whose fields are the ones the spec's option type defines, with the right
//! JSON types, and carry the fields Forgejo's binding requires (non-empty); anything
//! else is a 422 naming the field. Error bodies have the spec's shapes (`APIError`,
//! `APIValidationError`, `APINotFound`, `APIUnauthorizedError`: `message`, `url`).
//!
//! Git: `{url}/{owner}/{repo}.git` serves `{git_root}/{owner}/{repo}.git`. Clone and
//! fetch may be anonymous; push needs HTTP basic auth whose password (or user name)
//! is the token, and is otherwise answered 401 with `WWW-Authenticate: Basic
//! realm="forge"`. Wrong credentials are a 401 for fetches too.

use std::{
    collections::{BTreeMap, HashMap},
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

/// Forgejo's `MAX_RESPONSE_ITEMS` default: the largest page the sim serves.
pub const MAX_PAGE_SIZE: usize = 50;
/// Forgejo's `DEFAULT_PAGING_NUM`: the page size when `limit` is absent.
pub const DEFAULT_PAGE_SIZE: usize = 30;
/// The login the token belongs to.
pub const SIM_USER: &str = "agentq-bot";

/// A comment as the sim stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimComment {
    /// Its id.
    pub id: u64,
    /// The issue or pull request it is on.
    pub issue: u64,
    /// Its body.
    pub body: String,
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
    /// `pending`, `success`, `error`, `failure`, `warning` or `skipped`.
    pub state: String,
    /// Link, empty if none was given.
    pub target_url: String,
    /// Description, empty if none was given.
    pub description: String,
    /// Context.
    pub context: String,
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
    /// The basic-auth user name given.
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
}

#[derive(Debug, Default)]
struct RepoState {
    id: u64,
    default_branch: String,
    issues: BTreeMap<u64, IssueState>,
    pulls: BTreeMap<u64, PullState>,
    stopwatches: HashMap<u64, Stopwatch>,
    statuses: HashMap<String, Vec<StatusState>>,
}

#[derive(Debug, Clone)]
struct IssueState {
    id: u64,
    title: String,
    body: String,
    state: String,
    created: String,
}

#[derive(Debug, Clone)]
struct PullState {
    id: u64,
    title: String,
    body: String,
    head: String,
    base: String,
    head_sha: String,
    base_sha: String,
    state: String,
    created: String,
}

#[derive(Debug, Default)]
struct Stopwatch {
    running: bool,
    events: Vec<String>,
}

#[derive(Debug, Clone)]
struct StatusState {
    id: u64,
    state: String,
    target_url: String,
    description: String,
    context: String,
    created: String,
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
}

#[derive(Debug, Default)]
struct SimState {
    repos: BTreeMap<(String, String), RepoState>,
    comments: Vec<CommentState>,
    next_id: u64,
    requests: Vec<RequestRecord>,
    failures: Vec<Failure>,
    down: bool,
    pushes: Vec<PushRecord>,
    git_stderr: Vec<String>,
}

impl SimState {
    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

struct Shared {
    token: String,
    git_root: PathBuf,
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
    /// Starts a sim accepting `token`, serving the bare repositories under `git_root`
    /// (`{git_root}/{owner}/{repo}.git`) over HTTP. Binds `127.0.0.1:0` and serves on a
    /// tokio task of the current runtime.
    pub async fn start(token: &str, git_root: PathBuf) -> ForgeSim {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("forge sim: cannot bind a loopback port");
        let addr = listener.local_addr().expect("forge sim: local address");
        let shared = Arc::new(Shared {
            token: token.to_string(),
            git_root,
            url: format!("http://{addr}"),
            state: Mutex::new(SimState::default()),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
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

    /// Registers repository `owner/repo` with `default_branch` in the API. Its git data,
    /// if any, is the bare repository `{git_root}/{owner}/{repo}.git`.
    pub fn add_repo(&self, owner: &str, repo: &str, default_branch: &str) {
        let mut st = self.shared.lock();
        let id = st.next_id();
        st.repos
            .entry((owner.to_string(), repo.to_string()))
            .or_insert_with(|| RepoState {
                id,
                default_branch: default_branch.to_string(),
                ..RepoState::default()
            });
    }

    /// Adds open issue `number` to `owner/repo` (which must have been added).
    pub fn add_issue(&self, owner: &str, repo: &str, number: u64, title: &str, body: &str) {
        let mut st = self.shared.lock();
        let id = st.next_id();
        let rs = st
            .repos
            .get_mut(&(owner.to_string(), repo.to_string()))
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
            },
        );
    }

    /// Closes pull request `number`.
    pub fn close_pull(&self, owner: &str, repo: &str, number: u64) {
        let mut st = self.shared.lock();
        let pr = st
            .repos
            .get_mut(&(owner.to_string(), repo.to_string()))
            .and_then(|rs| rs.pulls.get_mut(&number))
            .unwrap_or_else(|| panic!("forge sim: no pull request {owner}/{repo}#{number}"));
        pr.state = "closed".into();
    }

    /// Comments on issue or pull request `index`, oldest first.
    pub fn comments(&self, owner: &str, repo: &str, index: u64) -> Vec<SimComment> {
        self.shared
            .lock()
            .comments
            .iter()
            .filter(|c| c.owner == owner && c.repo == repo && c.issue == index)
            .map(|c| SimComment {
                id: c.id,
                issue: c.issue,
                body: c.body.clone(),
            })
            .collect()
    }

    /// All pull requests of `owner/repo` (open and closed), by number.
    pub fn pulls(&self, owner: &str, repo: &str) -> Vec<SimPull> {
        let st = self.shared.lock();
        let Some(rs) = st.repos.get(&(owner.to_string(), repo.to_string())) else {
            return Vec::new();
        };
        rs.pulls
            .iter()
            .map(|(n, p)| SimPull {
                number: *n,
                title: p.title.clone(),
                body: p.body.clone(),
                head: p.head.clone(),
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
            .get(&(owner.to_string(), repo.to_string()))
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

    /// The stopwatch changes on `index`, in order: `"start"` and `"stop"` for each
    /// call that took effect (a 409 changes nothing and is not listed; see
    /// [`ForgeSim::requests`] for every call).
    pub fn stopwatch_events(&self, owner: &str, repo: &str, index: u64) -> Vec<String> {
        let st = self.shared.lock();
        st.repos
            .get(&(owner.to_string(), repo.to_string()))
            .and_then(|rs| rs.stopwatches.get(&index))
            .map(|s| s.events.clone())
            .unwrap_or_default()
    }

    /// Whether the stopwatch on `index` is running.
    pub fn stopwatch_running(&self, owner: &str, repo: &str, index: u64) -> bool {
        let st = self.shared.lock();
        st.repos
            .get(&(owner.to_string(), repo.to_string()))
            .and_then(|rs| rs.stopwatches.get(&index))
            .is_some_and(|s| s.running)
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
        self.push_failure(method, path_prefix, status, count, None);
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
        self.push_failure(method, path_prefix, status, count, Some(retry_after_secs));
    }

    fn push_failure(
        &self,
        method: &str,
        path_prefix: &str,
        status: u16,
        count: usize,
        retry_after: Option<u64>,
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
        });
    }

    /// While `down`, every API request answers 503.
    pub fn set_down(&self, down: bool) {
        self.shared.lock().down = down;
    }

    /// Pushes served, in order.
    pub fn pushes(&self) -> Vec<PushRecord> {
        self.shared.lock().pushes.clone()
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
    if let Some((status, retry_after)) = take_failure(sh, req.method(), &path) {
        let mut resp = api_error(sh, status, "injected failure");
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        return resp;
    }
    if let Some(rest) = path.strip_prefix("/api/v1") {
        if rest.is_empty() || rest.starts_with('/') {
            return api(sh, req, rest.to_string()).await;
        }
    }
    if let Some((owner, repo, tail)) = parse_git_path(&path) {
        return git_http(sh, req, owner, repo, tail).await;
    }
    not_found(sh)
}

fn take_failure(sh: &Shared, method: &Method, path: &str) -> Option<(StatusCode, Option<u64>)> {
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
    );
    if f.remaining == 0 {
        st.failures.remove(idx);
    }
    Some(out)
}

async fn api(sh: &Arc<Shared>, req: Request, rest: String) -> Response {
    if sh.lock().down {
        return api_error(sh, StatusCode::SERVICE_UNAVAILABLE, "the forge is down");
    }
    if !api_authorized(sh, req.headers()) {
        return api_error(sh, StatusCode::UNAUTHORIZED, "token is required");
    }
    let segs: Vec<String> = rest
        .trim_start_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let method = req.method().clone();
    let query = parse_query(req.uri().query().unwrap_or_default());
    match segs.as_slice() {
        ["repos", o, r] => match method {
            Method::GET => get_repo(sh, o, r),
            _ => method_not_allowed(sh),
        },
        ["repos", o, r, "issues", "comments", id] => match method {
            Method::GET => get_comment(sh, o, r, id),
            Method::PATCH => match read_json(sh, req, &EDIT_ISSUE_COMMENT).await {
                Ok(body) => edit_comment(sh, o, r, id, &body),
                Err(resp) => resp,
            },
            _ => method_not_allowed(sh),
        },
        ["repos", o, r, "issues", index] => match method {
            Method::GET => get_issue(sh, o, r, index),
            _ => method_not_allowed(sh),
        },
        ["repos", o, r, "issues", index, "comments"] => match method {
            Method::GET => list_comments(sh, o, r, index),
            Method::POST => match read_json(sh, req, &CREATE_ISSUE_COMMENT).await {
                Ok(body) => create_comment(sh, o, r, index, &body),
                Err(resp) => resp,
            },
            _ => method_not_allowed(sh),
        },
        ["repos", o, r, "issues", index, "stopwatch", action @ ("start" | "stop")] => {
            match method {
                Method::POST => stopwatch(sh, o, r, index, action),
                _ => method_not_allowed(sh),
            }
        }
        ["repos", o, r, "pulls"] => match method {
            Method::GET => list_pulls(sh, o, r, &query).await,
            Method::POST => match read_json(sh, req, &CREATE_PULL_REQUEST).await {
                Ok(body) => create_pull(sh, o, r, &body).await,
                Err(resp) => resp,
            },
            _ => method_not_allowed(sh),
        },
        ["repos", o, r, "statuses", sha] => match method {
            Method::GET => list_statuses(sh, o, r, sha),
            Method::POST => match read_json(sh, req, &CREATE_STATUS).await {
                Ok(body) => create_status(sh, o, r, sha, &body).await,
                Err(resp) => resp,
            },
            _ => method_not_allowed(sh),
        },
        _ => not_found(sh),
    }
}

fn api_authorized(sh: &Shared, headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    match value.trim().split_once(' ') {
        Some((scheme, token)) => scheme.eq_ignore_ascii_case("token") && token.trim() == sh.token,
        None => false,
    }
}

// ---------------------------------------------------------------------------------
// Request bodies, checked against the spec's option types

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ty {
    Str,
    Int,
    StrArray,
    IntArray,
}

impl Ty {
    fn name(self) -> &'static str {
        match self {
            Ty::Str => "string",
            Ty::Int => "integer",
            Ty::StrArray => "array of strings",
            Ty::IntArray => "array of integers",
        }
    }

    fn accepts(self, v: &Value) -> bool {
        match self {
            Ty::Str => v.is_string(),
            Ty::Int => v.is_i64() || v.is_u64(),
            Ty::StrArray => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
            Ty::IntArray => v
                .as_array()
                .is_some_and(|a| a.iter().all(|x| x.is_i64() || x.is_u64())),
        }
    }
}

/// An option type of the spec: its name, and (field, type, required) per field.
struct Schema {
    name: &'static str,
    fields: &'static [(&'static str, Ty, bool)],
}

/// `CreateIssueCommentOption` (required: body).
const CREATE_ISSUE_COMMENT: Schema = Schema {
    name: "CreateIssueCommentOption",
    fields: &[("body", Ty::Str, true), ("updated_at", Ty::Str, false)],
};

/// `EditIssueCommentOption` (required: body).
const EDIT_ISSUE_COMMENT: Schema = Schema {
    name: "EditIssueCommentOption",
    fields: &[("body", Ty::Str, true), ("updated_at", Ty::Str, false)],
};

/// `CreatePullRequestOption`; head, base and title are `binding:"Required"` in
/// Forgejo's Go struct.
const CREATE_PULL_REQUEST: Schema = Schema {
    name: "CreatePullRequestOption",
    fields: &[
        ("assignee", Ty::Str, false),
        ("assignees", Ty::StrArray, false),
        ("base", Ty::Str, true),
        ("body", Ty::Str, false),
        ("due_date", Ty::Str, false),
        ("head", Ty::Str, true),
        ("labels", Ty::IntArray, false),
        ("milestone", Ty::Int, false),
        ("title", Ty::Str, true),
    ],
};

/// `CreateStatusOption`.
const CREATE_STATUS: Schema = Schema {
    name: "CreateStatusOption",
    fields: &[
        ("context", Ty::Str, false),
        ("description", Ty::Str, false),
        ("state", Ty::Str, false),
        ("target_url", Ty::Str, false),
    ],
};

/// Checks a body against `schema`; the message names the offending field.
fn validate(schema: &Schema, body: &Value) -> Result<Map<String, Value>, String> {
    let Some(obj) = body.as_object() else {
        return Err(format!("{}: the body must be a JSON object", schema.name));
    };
    for key in obj.keys() {
        if !schema.fields.iter().any(|(name, _, _)| name == key) {
            let known: Vec<&str> = schema.fields.iter().map(|(n, _, _)| *n).collect();
            return Err(format!(
                "{}: unknown field `{key}` (fields: {})",
                schema.name,
                known.join(", ")
            ));
        }
    }
    for (name, ty, required) in schema.fields {
        match obj.get(*name) {
            None | Some(Value::Null) if *required => {
                return Err(format!("{}: field `{name}` is required", schema.name));
            }
            None | Some(Value::Null) => {}
            Some(v) if !ty.accepts(v) => {
                return Err(format!(
                    "{}: field `{name}` must be a {}, got {v}",
                    schema.name,
                    ty.name()
                ));
            }
            Some(Value::String(s)) if *required && s.trim().is_empty() => {
                return Err(format!(
                    "{}: field `{name}` is required (empty)",
                    schema.name
                ));
            }
            Some(_) => {}
        }
    }
    Ok(obj.clone())
}

async fn read_json(
    sh: &Shared,
    req: Request,
    schema: &Schema,
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
    validate(schema, &value).map_err(|m| validation_error(sh, m))
}

fn str_field<'a>(body: &'a Map<String, Value>, name: &str) -> &'a str {
    body.get(name).and_then(Value::as_str).unwrap_or_default()
}

// ---------------------------------------------------------------------------------
// Handlers

fn key(o: &str, r: &str) -> (String, String) {
    (o.to_string(), r.to_string())
}

fn get_repo(sh: &Shared, o: &str, r: &str) -> Response {
    let st = sh.lock();
    match st.repos.get(&key(o, r)) {
        Some(rs) => json_response(StatusCode::OK, repo_json(sh, o, r, rs)),
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
        return json_response(StatusCode::OK, issue_json(sh, o, r, rs, n, issue, comments));
    }
    if let Some(pr) = rs.pulls.get(&n) {
        let as_issue = IssueState {
            id: pr.id,
            title: pr.title.clone(),
            body: pr.body.clone(),
            state: pr.state.clone(),
            created: pr.created.clone(),
        };
        let mut v = issue_json(sh, o, r, rs, n, &as_issue, comments);
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
        .map(|c| comment_json(sh, c, is_pull))
        .collect();
    json_response(StatusCode::OK, Value::Array(list))
}

fn create_comment(
    sh: &Shared,
    o: &str,
    r: &str,
    index: &str,
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
    };
    let v = comment_json(sh, &comment, is_pull);
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
            json_response(StatusCode::OK, comment_json(sh, c, is_pull))
        }
        None => not_found(sh),
    }
}

fn edit_comment(sh: &Shared, o: &str, r: &str, id: &str, body: &Map<String, Value>) -> Response {
    let mut st = sh.lock();
    let Some((i, _)) = find_comment(&st, o, r, id) else {
        return not_found(sh);
    };
    let c = &mut st.comments[i];
    c.body = str_field(body, "body").to_string();
    c.updated = now_rfc3339();
    let c = c.clone();
    let is_pull = st.repos[&key(o, r)].pulls.contains_key(&c.issue);
    json_response(StatusCode::OK, comment_json(sh, &c, is_pull))
}

fn stopwatch(sh: &Shared, o: &str, r: &str, index: &str, action: &str) -> Response {
    let mut st = sh.lock();
    let Some(n) = issue_exists(&st, o, r, index) else {
        return not_found(sh);
    };
    let rs = st.repos.get_mut(&key(o, r)).expect("checked");
    let sw = rs.stopwatches.entry(n).or_default();
    let start = action == "start";
    if sw.running == start {
        let message = if start {
            "Cannot start a stopwatch again if it already exists"
        } else {
            "Cannot stop a non existent stopwatch"
        };
        return api_error(sh, StatusCode::CONFLICT, message);
    }
    sw.running = start;
    sw.events.push(action.to_string());
    empty_response(StatusCode::CREATED)
}

async fn list_pulls(sh: &Shared, o: &str, r: &str, query: &HashMap<String, String>) -> Response {
    let state = query.get("state").map_or("open", String::as_str);
    if !matches!(state, "open" | "closed" | "all") {
        return validation_error(
            sh,
            format!("state must be open, closed or all, got `{state}`"),
        );
    }
    let page = match query.get("page").map(|p| p.parse::<usize>()) {
        None => 1,
        Some(Ok(p)) => p.max(1),
        Some(Err(_)) => return validation_error(sh, "page must be an integer"),
    };
    let limit = match query.get("limit").map(|l| l.parse::<usize>()) {
        None | Some(Ok(0)) => DEFAULT_PAGE_SIZE,
        Some(Ok(l)) => l.min(MAX_PAGE_SIZE),
        Some(Err(_)) => return validation_error(sh, "limit must be an integer"),
    };
    let selected: Vec<(u64, PullState)> = {
        let st = sh.lock();
        let Some(rs) = st.repos.get(&key(o, r)) else {
            return not_found(sh);
        };
        // Newest first, as Forgejo lists them by default.
        rs.pulls
            .iter()
            .rev()
            .filter(|(_, p)| state == "all" || p.state == state)
            .map(|(n, p)| (*n, p.clone()))
            .collect()
    };
    let total = selected.len();
    let mut page_items: Vec<(u64, PullState)> = selected
        .into_iter()
        .skip((page - 1).saturating_mul(limit))
        .take(limit)
        .collect();
    for (_, p) in &mut page_items {
        if p.state == "open" {
            // Like Forgejo after a push: an open pull request shows its branch's head.
            if let Some(sha) = resolve_branch(sh, o, r, &p.head).await {
                p.head_sha = sha;
            }
        }
    }
    let list: Vec<Value> = {
        let st = sh.lock();
        let Some(rs) = st.repos.get(&key(o, r)) else {
            return not_found(sh);
        };
        page_items
            .iter()
            .map(|(n, p)| pull_json(sh, o, r, rs, *n, p))
            .collect()
    };
    let mut resp = json_response(StatusCode::OK, Value::Array(list));
    resp.headers_mut()
        .insert("x-total-count", HeaderValue::from(total));
    resp
}

async fn create_pull(sh: &Shared, o: &str, r: &str, body: &Map<String, Value>) -> Response {
    if !sh.lock().repos.contains_key(&key(o, r)) {
        return not_found(sh);
    }
    let head_given = str_field(body, "head");
    let base = str_field(body, "base");
    // As upstream CreatePullRequest: same head and base is refused first.
    if head_given == base {
        return validation_error(
            sh,
            "Invalid PullRequest: There are no changes between the head and the base",
        );
    }
    // `owner:branch` names a fork's branch; the sim has no forks.
    let head = match head_given.split_once(':') {
        None => head_given,
        Some((user, branch)) if user == o => branch,
        Some(_) => return not_found(sh),
    };
    // As upstream parseCompareInfo (Forgejo and Gitea): an unknown base or head is a
    // 404, not a 422. The sim only knows branches.
    let Some(base_sha) = resolve_branch(sh, o, r, base).await else {
        return not_found_msg(sh, format!("base branch `{base}` does not exist"));
    };
    let Some(head_sha) = resolve_branch(sh, o, r, head).await else {
        return not_found_msg(
            sh,
            format!("could not find '{head}' to be a commit, branch or tag in the head repository {o}/{r}"),
        );
    };
    let mut st = sh.lock();
    let id = st.next_id();
    let Some(rs) = st.repos.get_mut(&key(o, r)) else {
        return not_found(sh);
    };
    if let Some((n, p)) = rs
        .pulls
        .iter()
        .find(|(_, p)| p.state == "open" && p.head == head && p.base == base)
    {
        return api_error(
            sh,
            StatusCode::CONFLICT,
            format!(
                "pull request already exists for these targets [id: {}, issue_id: {n}, head_repo_id: {rid}, base_repo_id: {rid}, head_branch: {head}, base_branch: {base}]",
                p.id,
                rid = rs.id
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
    let pr = PullState {
        id,
        title: str_field(body, "title").to_string(),
        body: str_field(body, "body").to_string(),
        head: head.to_string(),
        base: base.to_string(),
        head_sha,
        base_sha,
        state: "open".into(),
        created: now_rfc3339(),
    };
    rs.pulls.insert(number, pr.clone());
    let v = pull_json(sh, o, r, rs, number, &pr);
    json_response(StatusCode::CREATED, v)
}

const STATUS_STATES: [&str; 6] = [
    "pending", "success", "error", "failure", "warning", "skipped",
];

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
                .map(|s| status_json(sh, o, r, sha, s))
                .collect()
        })
        .unwrap_or_default();
    json_response(StatusCode::OK, Value::Array(list))
}

async fn create_status(
    sh: &Shared,
    o: &str,
    r: &str,
    sha: &str,
    body: &Map<String, Value>,
) -> Response {
    if !sh.lock().repos.contains_key(&key(o, r)) {
        return not_found(sh);
    }
    let state = str_field(body, "state");
    if !STATUS_STATES.contains(&state) {
        return api_error(
            sh,
            StatusCode::BAD_REQUEST,
            format!(
                "CreateStatusOption: state must be one of {}, got `{state}`",
                STATUS_STATES.join(", ")
            ),
        );
    }
    if sha.is_empty() || sha.len() > 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return api_error(
            sh,
            StatusCode::BAD_REQUEST,
            format!("`{sha}` is not a commit sha"),
        );
    }
    let bare = sh.bare_repo(o, r);
    if bare.is_dir()
        && git_output(
            &bare,
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("{sha}^{{commit}}"),
            ],
        )
        .await
        .is_none()
    {
        return not_found_msg(sh, format!("commit `{sha}` does not exist"));
    }
    let mut st = sh.lock();
    let id = st.next_id();
    let Some(rs) = st.repos.get_mut(&key(o, r)) else {
        return not_found(sh);
    };
    let status = StatusState {
        id,
        state: state.to_string(),
        target_url: str_field(body, "target_url").to_string(),
        description: str_field(body, "description").to_string(),
        context: str_field(body, "context").to_string(),
        created: now_rfc3339(),
    };
    let v = status_json(sh, o, r, sha, &status);
    rs.statuses.entry(sha.to_string()).or_default().push(status);
    json_response(StatusCode::CREATED, v)
}

// ---------------------------------------------------------------------------------
// Response bodies (the spec's definitions)

fn user_json(sh: &Shared, login: &str) -> Value {
    json!({
        "id": 1,
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

fn repo_json(sh: &Shared, o: &str, r: &str, rs: &RepoState) -> Value {
    let open_issues = rs.issues.values().filter(|i| i.state == "open").count();
    let open_pulls = rs.pulls.values().filter(|p| p.state == "open").count();
    let host = sh.url.trim_start_matches("http://");
    let mut v = json!({
        "id": rs.id,
        "owner": user_json(sh, o),
        "name": r,
        "full_name": format!("{o}/{r}"),
        "description": "",
        "empty": false,
        "private": false,
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
        "permissions": {"admin": true, "push": true, "pull": true},
        "has_issues": true,
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

fn issue_json(
    sh: &Shared,
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
        "user": user_json(sh, SIM_USER),
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

fn comment_json(sh: &Shared, c: &CommentState, is_pull: bool) -> Value {
    let (o, r, n) = (&c.owner, &c.repo, c.issue);
    let kind = if is_pull { "pulls" } else { "issues" };
    json!({
        "id": c.id,
        "html_url": format!("{}/{o}/{r}/{kind}/{n}#issuecomment-{}", sh.url, c.id),
        "pull_request_url": if is_pull { format!("{}/{o}/{r}/pulls/{n}", sh.url) } else { String::new() },
        "issue_url": if is_pull { String::new() } else { format!("{}/{o}/{r}/issues/{n}", sh.url) },
        "user": user_json(sh, SIM_USER),
        "original_author": "",
        "original_author_id": 0,
        "body": c.body,
        "assets": [],
        "created_at": c.created,
        "updated_at": c.updated,
    })
}

fn pull_json(sh: &Shared, o: &str, r: &str, rs: &RepoState, n: u64, p: &PullState) -> Value {
    let repo = repo_json(sh, o, r, rs);
    let branch = |name: &str, sha: &str| json!({"label": name, "ref": name, "sha": sha, "repo_id": rs.id, "repo": repo.clone()});
    json!({
        "id": p.id,
        "url": format!("{}/{o}/{r}/pulls/{n}", sh.url),
        "number": n,
        "user": user_json(sh, SIM_USER),
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
        "base": branch(&p.base, &p.base_sha),
        "head": branch(&p.head, &p.head_sha),
        "merge_base": p.base_sha,
        "due_date": null,
        "created_at": p.created,
        "updated_at": p.created,
        "closed_at": null,
        "pin_order": 0,
        "flow": 0,
    })
}

fn status_json(sh: &Shared, o: &str, r: &str, sha: &str, s: &StatusState) -> Value {
    json!({
        "id": s.id,
        "status": s.state,
        "target_url": s.target_url,
        "description": s.description,
        "url": format!("{}/api/v1/repos/{o}/{r}/statuses/{sha}", sh.url),
        "context": s.context,
        "creator": user_json(sh, SIM_USER),
        "created_at": s.created,
        "updated_at": s.created,
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

enum GitAuth {
    Anonymous,
    User(String),
    Invalid,
}

fn git_auth(sh: &Shared, headers: &HeaderMap) -> GitAuth {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return GitAuth::Anonymous;
    };
    let Some((scheme, cred)) = value.to_str().ok().and_then(|v| v.trim().split_once(' ')) else {
        return GitAuth::Invalid;
    };
    let cred = cred.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let Some(decoded) = base64_decode(cred).and_then(|b| String::from_utf8(b).ok()) else {
            return GitAuth::Invalid;
        };
        let (user, password) = decoded.split_once(':').unwrap_or((decoded.as_str(), ""));
        // As Forgejo: the token as password (any user), or as user name.
        if password == sh.token {
            return GitAuth::User(if user.is_empty() {
                SIM_USER.into()
            } else {
                user.to_string()
            });
        }
        if user == sh.token {
            return GitAuth::User(SIM_USER.into());
        }
        return GitAuth::Invalid;
    }
    if (scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer"))
        && cred == sh.token
    {
        return GitAuth::User(SIM_USER.into());
    }
    GitAuth::Invalid
}

fn git_challenge() -> Response {
    let mut resp = Response::new(Body::from("Unauthorized\n"));
    *resp.status_mut() = StatusCode::UNAUTHORIZED;
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"forge\""),
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
    if !bare.is_dir() {
        return plain(StatusCode::NOT_FOUND, "Repository not found\n");
    }
    let query = req.uri().query().unwrap_or_default().to_string();
    let is_push = tail == "git-receive-pack"
        || (tail == "info/refs"
            && parse_query(&query)
                .get("service")
                .is_some_and(|s| s == "git-receive-pack"));
    let user = match git_auth(sh, req.headers()) {
        GitAuth::Invalid => return git_challenge(),
        GitAuth::Anonymous if is_push => return git_challenge(),
        GitAuth::Anonymous => None,
        GitAuth::User(u) => Some(u),
    };

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
    if let Some(user) = &user {
        cmd.env("REMOTE_USER", user)
            .env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "http.receivepack")
            .env("GIT_CONFIG_VALUE_0", "true");
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
        let ok = json!({"body": "hi"});
        assert!(validate(&CREATE_ISSUE_COMMENT, &ok).is_ok());
        let e = validate(&CREATE_ISSUE_COMMENT, &json!({})).unwrap_err();
        assert!(e.contains("`body` is required"), "{e}");
        let e = validate(&CREATE_ISSUE_COMMENT, &json!({"body": 3})).unwrap_err();
        assert!(e.contains("must be a string"), "{e}");
        let e = validate(
            &CREATE_STATUS,
            &json!({"state": "success", "target-url": "x"}),
        )
        .unwrap_err();
        assert!(e.contains("unknown field `target-url`"), "{e}");
        let e = validate(
            &CREATE_PULL_REQUEST,
            &json!({"head": "a", "base": "b", "title": " "}),
        )
        .unwrap_err();
        assert!(e.contains("`title` is required"), "{e}");
        assert!(validate(&CREATE_PULL_REQUEST, &json!([1])).is_err());
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z'), "{t}");
    }
}
