//! Response bodies (the spec's definitions) and error answers.

use super::*;

pub(super) fn user_json(sh: &Shared, id: u64, login: &str) -> Value {
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

pub(super) fn user_json_of(sh: &Shared, st: &SimState, id: u64) -> Value {
    user_json(sh, id, &st.login(id))
}

pub(super) fn repo_json(
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
pub(super) fn issue_json(
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
        "labels": labels_json(st, rs, n),
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

pub(super) fn comment_json(sh: &Shared, st: &SimState, c: &CommentState, is_pull: bool) -> Value {
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
pub(super) fn pull_json(
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
        "merged": !p.merge_commit.is_empty(),
        "merged_at": (!p.merged_at.is_empty()).then(|| p.merged_at.clone()),
        "merge_commit_sha": (!p.merge_commit.is_empty()).then(|| p.merge_commit.clone()),
        "merged_by": null,
        "allow_maintainer_edit": false,
        "base": {"label": p.base, "ref": p.base, "sha": view.base_sha, "repo_id": rs.id, "repo": base_repo},
        "head": {"label": p.head, "ref": view.head_ref, "sha": view.head_sha, "repo_id": head_repo_id, "repo": head_repo},
        "merge_base": p.base_sha,
        "due_date": null,
        "created_at": p.created,
        "updated_at": p.created,
        "closed_at": (!p.merged_at.is_empty()).then(|| p.merged_at.clone()),
        "pin_order": 0,
        "flow": 0,
    })
}

pub(super) fn status_json(
    sh: &Shared,
    st: &SimState,
    o: &str,
    r: &str,
    sha: &str,
    s: &StatusState,
) -> Value {
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

pub(super) fn tracked_time_json(st: &SimState, t: &TimeState) -> Value {
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

pub(super) fn json_response(status: StatusCode, body: Value) -> Response {
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=utf-8"),
    );
    resp
}

pub(super) fn empty_response(status: StatusCode) -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = status;
    resp
}

/// `APIError`-shaped answer (also `APIUnauthorizedError`, `APIValidationError`, …).
pub(super) fn api_error(sh: &Shared, status: StatusCode, message: impl Into<String>) -> Response {
    json_response(
        status,
        json!({"message": message.into(), "url": format!("{}/api/swagger", sh.url)}),
    )
}

pub(super) fn validation_error(sh: &Shared, message: impl Into<String>) -> Response {
    api_error(sh, StatusCode::UNPROCESSABLE_ENTITY, message)
}

/// `APINotFound`.
pub(super) fn not_found(sh: &Shared) -> Response {
    not_found_msg(sh, "The target couldn't be found.")
}

pub(super) fn not_found_msg(sh: &Shared, message: impl Into<String>) -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        json!({"errors": [], "message": message.into(), "url": format!("{}/api/swagger", sh.url)}),
    )
}

pub(super) fn method_not_allowed(sh: &Shared) -> Response {
    api_error(sh, StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
}
