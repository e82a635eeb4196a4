//! Commit and commit status routes.

use super::*;

pub(super) fn list_statuses(sh: &Shared, o: &str, r: &str, sha: &str) -> Response {
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
pub(super) async fn create_status(
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
pub(super) async fn combined_status(
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
    // The forge's own CI ([`ForgeSim::set_ci`]) on every commit.
    for (context, state) in &rs.ci {
        latest
            .entry(context.clone())
            .or_insert_with(|| StatusState {
                id: 0,
                state: state.clone(),
                target_url: String::new(),
                description: "CI".into(),
                context: context.clone(),
                created: now_rfc3339(),
                creator: SIM_USER_ID,
            });
    }
    if latest.is_empty() {
        return json_response(
            StatusCode::OK,
            json!({"state": "", "sha": "", "total_count": 0, "statuses": null,
                   "repository": null, "commit_url": "", "url": ""}),
        );
    }
    // `models/git/commit_status.go`, `CalcCommitStatus`: the worst state
    // wins, by `commitStatusPriorities` (error, failure, warning, pending,
    // success).
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
pub(super) async fn get_commit(sh: &Shared, o: &str, r: &str, sha: &str) -> Response {
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
