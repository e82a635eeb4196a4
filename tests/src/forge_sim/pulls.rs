//! Pull request routes.

use super::*;

/// What `ToAPIPullRequest` (services/convert/pull.go) reads from git for a pull
/// request: the head's `ref` is the branch while it exists in the head repository,
/// else `refs/pull/{n}/head` (and its sha from there).
pub(super) struct PullView {
    pub(super) head_ref: String,
    pub(super) head_sha: String,
    pub(super) base_sha: String,
}

pub(super) async fn pull_view(sh: &Shared, o: &str, r: &str, n: u64, p: &PullState) -> PullView {
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
pub(super) async fn list_pulls(
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
pub(super) fn head_repo_of(o: &str, r: &str, head: &str) -> ((String, String), String) {
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
pub(super) async fn pull_by_base_head(
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

pub(super) async fn create_pull(
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
            merge_commit: String::new(),
            merged_at: String::new(),
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
