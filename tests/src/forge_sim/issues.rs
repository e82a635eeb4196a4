//! Issue and comment routes (the caller may see the repository: checked in `api`).

use super::*;

pub(super) fn get_issue(sh: &Shared, o: &str, r: &str, index: &str) -> Response {
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
pub(super) fn issue_exists(st: &SimState, o: &str, r: &str, index: &str) -> Option<u64> {
    let n = index.parse::<u64>().ok()?;
    let rs = st.repos.get(&key(o, r))?;
    (rs.issues.contains_key(&n) || rs.pulls.contains_key(&n)).then_some(n)
}

/// The poster of issue or pull request `n`.
pub(super) fn issue_poster(rs: &RepoState, n: u64) -> u64 {
    rs.issues
        .get(&n)
        .map(|i| i.poster)
        .or_else(|| rs.pulls.get(&n).map(|p| p.poster))
        .unwrap_or(0)
}

pub(super) fn list_comments(sh: &Shared, o: &str, r: &str, index: &str) -> Response {
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

pub(super) fn create_comment(
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

pub(super) fn find_comment<'a>(
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

pub(super) fn get_comment(sh: &Shared, o: &str, r: &str, id: &str) -> Response {
    let st = sh.lock();
    match find_comment(&st, o, r, id) {
        Some((_, c)) => {
            let is_pull = st.repos[&key(o, r)].pulls.contains_key(&c.issue);
            json_response(StatusCode::OK, comment_json(sh, &st, c, is_pull))
        }
        None => not_found(sh),
    }
}

pub(super) fn edit_comment(
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
