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

// The sim's parts, one concern each. Each part says `use super::*`: the
// imports above are its imports too, and its own `pub(super)` items come back
// here by the glob imports below, for the other parts to use.
mod bodies;
mod commits;
mod controls;
mod dispatch;
mod git_http;
mod issues;
mod merge;
mod pulls;
mod records;
mod repos;
mod responses;
mod state;
#[cfg(test)]
mod tests;
mod times;
mod util;

use bodies::*;
use commits::*;
pub use controls::ForgeSim;
use dispatch::*;
use git_http::*;
use issues::*;
use merge::*;
use pulls::*;
pub use records::{
    PushRecord, RefUpdate, RequestRecord, SimComment, SimPull, SimStatus, SimTrackedTime,
};
use repos::*;
use responses::*;
use state::*;
use times::*;
use util::*;

/// Forgejo's `MAX_RESPONSE_ITEMS` default: the largest page the sim serves.
pub const MAX_PAGE_SIZE: usize = 50;
/// Forgejo's `DEFAULT_PAGING_NUM`: the page size when `limit` is absent.
pub const DEFAULT_PAGE_SIZE: usize = 30;
/// The login the token given to [`ForgeSim::start`] belongs to.
pub const SIM_USER: &str = "agentq-bot";
/// [`SIM_USER`]'s id.
pub const SIM_USER_ID: u64 = 1;
