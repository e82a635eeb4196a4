//! Dispatch: faults, authentication, token scopes and routing to the handlers.

use super::*;

pub(super) async fn handle(State(sh): State<Arc<Shared>>, req: Request) -> Response {
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

pub(super) async fn dispatch(sh: &Arc<Shared>, req: Request) -> Response {
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

pub(super) async fn route(sh: &Arc<Shared>, req: Request, path: &str) -> Response {
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

pub(super) fn take_failure(
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
pub(super) fn caller(st: &SimState, headers: &HeaderMap) -> Result<Option<u64>, ()> {
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
pub(super) enum Route {
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
    GetPull(String),
    MergePull(String),
    ListLabels,
    CreateLabel,
    AddIssueLabels(String),
    DeleteBranch(String),
}

impl Route {
    /// Its index in [`spec::ENDPOINTS`].
    pub(super) fn index(&self) -> usize {
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
            Route::GetPull(_) => 18,
            Route::MergePull(_) => 19,
            Route::ListLabels => 20,
            Route::CreateLabel => 21,
            Route::AddIssueLabels(_) => 22,
            Route::DeleteBranch(_) => 23,
        }
    }

    pub(super) fn endpoint(&self) -> &'static Endpoint {
        &spec::ENDPOINTS[self.index()]
    }
}

/// Waits while the whole API hangs ([`ForgeSim::set_hang`]) or an endpoint
/// matching `method` and `path` does ([`ForgeSim::hang_on`]), then for the
/// latency ([`ForgeSim::set_latency`]).
pub(super) async fn wait_like_the_forge(sh: &Shared, method: &str, path: &str) {
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
pub(super) fn matches_prefix(path: &str, prefix: &str) -> bool {
    path.starts_with(prefix.strip_prefix("/api/v1").unwrap_or(prefix))
}

/// Parses `segs` (the path under `/api/v1`) into the repository it is about,
/// if any, and the route; 404 or 405 when there is no such route.
pub(super) fn parse_route(
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
                ["pulls", index] if get && index.parse::<u64>().is_ok() => {
                    Route::GetPull(index.to_string())
                }
                ["pulls", index, "merge"] if post => Route::MergePull(index.to_string()),
                ["labels"] if get => Route::ListLabels,
                ["labels"] if post => Route::CreateLabel,
                ["issues", index, "labels"] if post => Route::AddIssueLabels(index.to_string()),
                // `m.Delete("/*", …, repo.DeleteBranch)`: the name may contain `/`.
                ["branches", branch @ ..] if method == Method::DELETE && !branch.is_empty() => {
                    Route::DeleteBranch(branch.join("/"))
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
                | ["pulls", _, "merge"]
                | ["labels"]
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
pub(super) fn scope_refusal(
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

pub(super) async fn api(sh: &Arc<Shared>, req: Request, rest: String) -> Response {
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
        Route::GetPull(index) => get_pull(sh, o, r, who, index).await,
        Route::MergePull(index) => match read_json(sh, req, &spec::MERGE_PULL_REQUEST).await {
            Ok(body) => {
                accepted = Some(Value::Object(body.clone()));
                merge_pull(sh, o, r, index, user, &body).await
            }
            Err(resp) => resp,
        },
        Route::ListLabels => list_labels(sh, o, r, &query),
        Route::CreateLabel => match read_json(sh, req, &spec::CREATE_LABEL).await {
            Ok(body) => {
                accepted = Some(Value::Object(body.clone()));
                create_label(sh, o, r, user, &body)
            }
            Err(resp) => resp,
        },
        Route::AddIssueLabels(index) => match read_json(sh, req, &spec::ISSUE_LABELS).await {
            Ok(body) => {
                accepted = Some(Value::Object(body.clone()));
                add_issue_labels(sh, o, r, index, user, &body)
            }
            Err(resp) => resp,
        },
        Route::DeleteBranch(branch) => delete_branch(sh, o, r, user, branch).await,
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
pub(super) async fn checked_answer(sh: &Shared, route: &Route, resp: Response) -> Response {
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
