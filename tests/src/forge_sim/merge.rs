//! After a pull request: reading one by index, merging it, labels, branch
//! deletion, and what the forge's CI says (the combined status's extra
//! contexts). As Forgejo's handlers do:
//!
//! - `routers/api/v1/repo/pull.go`, `MergePullRequest`: 404 for no such pull
//!   request and for a closed one; 405 "PR already merged"; 405 "PR not in
//!   mergeable state" when the head does not merge cleanly into the base
//!   (`CheckPullMergeable`: the status the conflict checker computed);
//!   405 "PR is not ready to be merged" when the base's protection blocks
//!   an outdated branch and the head is behind the base
//!   (`CheckPullBranchProtections`, `BlockOnOutdatedBranch`); 409 "head out
//!   of date" when `head_commit_id` is not the head (`ErrSHADoesNotMatch`);
//!   200 with no body once merged; `delete_branch_after_merge` then deletes
//!   the head branch when it is in the same repository, not the default
//!   branch and not protected. `Do` is bound `Required;In(merge, rebase,
//!   rebase-merge, squash, fast-forward-only, manually-merged)` (422).
//! - `routers/api/v1/repo/label.go`: `ListLabels` 200 `[Label]`;
//!   `CreateLabel` 201 `Label` (`color` normalised to `#rrggbb`, 422 when it is
//!   not a colour); writers only (403).
//! - `routers/api/v1/repo/issue_label.go`, `AddIssueLabels`: 200 `[Label]`,
//!   the issue's labels after adding (ids, or names); 403 without write access.
//! - `routers/api/v1/repo/branch.go`, `DeleteBranch`: 204; 404 no such
//!   branch; 403 for the default branch or a protected one.

use super::*;

/// `GET /repos/{o}/{r}/pulls/{index}`.
pub(super) async fn get_pull(
    sh: &Shared,
    o: &str,
    r: &str,
    who: Option<u64>,
    index: &str,
) -> Response {
    let found = index.parse::<u64>().ok().and_then(|n| {
        let st = sh.lock();
        st.repos[&key(o, r)].pulls.get(&n).map(|p| (n, p.clone()))
    });
    let Some((n, p)) = found else {
        return not_found(sh);
    };
    let view = pull_view(sh, o, r, n, &p).await;
    let st = sh.lock();
    json_response(StatusCode::OK, pull_json(sh, &st, o, r, n, &p, &view, who))
}

/// Runs git in a work tree (the sim's own temporary clone).
async fn git_in(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=Forge Sim",
            "-c",
            "user.email=sim@forge.invalid",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .await
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// A commit on `branch` of the bare repository changing `path` to `content`
/// (someone else's merge).
async fn commit_on(bare: &Path, branch: &str, path: &str, content: &str) -> Result<(), String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = tmp.path();
    let b = bare.to_string_lossy().to_string();
    git_in(dir, &["clone", "--quiet", "--branch", branch, &b, "."]).await?;
    std::fs::write(dir.join(path), content).map_err(|e| e.to_string())?;
    git_in(dir, &["add", "--", path]).await?;
    git_in(dir, &["commit", "--quiet", "-m", "someone else's change"]).await?;
    let spec = format!("+HEAD:refs/heads/{branch}");
    git_output(bare, &["fetch", "--quiet", &dir.to_string_lossy(), &spec])
        .await
        .map(|_| ())
        .ok_or_else(|| "cannot update the base".to_string())
}

/// The merge in a temporary clone, fetched back into the bare repository:
/// the new base commit, or git's complaint.
async fn do_merge(
    bare: &Path,
    base: &str,
    head_sha: &str,
    style: &str,
    message: &str,
) -> Result<String, String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = tmp.path();
    let b = bare.to_string_lossy().to_string();
    git_in(dir, &["clone", "--quiet", "--branch", base, &b, "."]).await?;
    git_in(dir, &["fetch", "--quiet", "origin", head_sha]).await?;
    match style {
        "squash" => {
            git_in(dir, &["merge", "--squash", head_sha]).await?;
            git_in(dir, &["commit", "--quiet", "-m", message]).await?;
        }
        "rebase" | "fast-forward-only" => {
            git_in(dir, &["checkout", "--quiet", "-B", "sim-head", head_sha]).await?;
            if style == "rebase" {
                git_in(dir, &["rebase", "--quiet", base]).await?;
            }
            git_in(dir, &["checkout", "--quiet", base]).await?;
            git_in(dir, &["merge", "--quiet", "--ff-only", "sim-head"]).await?;
        }
        _ => {
            git_in(
                dir,
                &["merge", "--quiet", "--no-ff", "-m", message, head_sha],
            )
            .await?;
        }
    }
    let new = git_in(dir, &["rev-parse", "HEAD"]).await?;
    let spec = format!("+HEAD:refs/heads/{base}");
    git_output(bare, &["fetch", "--quiet", &dir.to_string_lossy(), &spec])
        .await
        .ok_or_else(|| "cannot update the base".to_string())?;
    Ok(new)
}

/// `POST /repos/{o}/{r}/pulls/{index}/merge` (see the module docs).
pub(super) async fn merge_pull(
    sh: &Shared,
    o: &str,
    r: &str,
    index: &str,
    user: u64,
    body: &Map<String, Value>,
) -> Response {
    const STYLES: &[&str] = &[
        "merge",
        "rebase",
        "rebase-merge",
        "squash",
        "fast-forward-only",
        "manually-merged",
    ];
    let style = str_field(body, "Do");
    if !STYLES.contains(&style) {
        return validation_error(sh, format!("[Do]: In: must be one of {STYLES:?}"));
    }
    let Some((n, p)) = index.parse::<u64>().ok().and_then(|n| {
        let st = sh.lock();
        st.repos[&key(o, r)].pulls.get(&n).map(|p| (n, p.clone()))
    }) else {
        return not_found(sh);
    };
    if !p.merge_commit.is_empty() {
        return api_error(sh, StatusCode::METHOD_NOT_ALLOWED, "PR already merged");
    }
    if p.state != "open" {
        return not_found(sh);
    }
    {
        let st = sh.lock();
        if !st.can_write(&st.repos[&key(o, r)], Some(user)) {
            return api_error(
                sh,
                StatusCode::METHOD_NOT_ALLOWED,
                "User not allowed to merge PR",
            );
        }
    }
    let bare = sh.bare_repo(o, r);
    let advance = sh
        .lock()
        .repos
        .get_mut(&key(o, r))
        .and_then(|rs| rs.advance_base.take());
    if let Some((path, content)) = advance {
        if let Err(e) = commit_on(&bare, &p.base, &path, &content).await {
            return api_error(sh, StatusCode::INTERNAL_SERVER_ERROR, e);
        }
    }
    let view = pull_view(sh, o, r, n, &p).await;
    let head = view.head_sha.clone();
    // The conflict checker's verdict (`services/pull/check.go`).
    let clean = git_output(
        &bare,
        &["merge-tree", "--write-tree", &view.base_sha, &head],
    )
    .await
    .is_some();
    if !clean {
        return api_error(
            sh,
            StatusCode::METHOD_NOT_ALLOWED,
            "PR not in mergeable state",
        );
    }
    let behind = git_output(
        &bare,
        &["merge-base", "--is-ancestor", &view.base_sha, &head],
    )
    .await
    .is_none();
    if behind && sh.lock().repos[&key(o, r)].block_on_outdated {
        return api_error(
            sh,
            StatusCode::METHOD_NOT_ALLOWED,
            "PR is not ready to be merged: The head branch is behind the base branch",
        );
    }
    let expected = str_field(body, "head_commit_id");
    if !expected.is_empty() && expected != head {
        return api_error(sh, StatusCode::CONFLICT, "head out of date");
    }
    let message = match str_field(body, "MergeMessageField").trim() {
        "" => format!("Merge pull request '{}' (#{n})", p.title),
        m => format!("Merge pull request '{}' (#{n})\n\n{m}", p.title),
    };
    let merged = match style {
        "manually-merged" => head.clone(),
        s => match do_merge(&bare, &p.base, &head, s, &message).await {
            Ok(sha) => sha,
            Err(e) => return api_error(sh, StatusCode::CONFLICT, format!("merge conflict: {e}")),
        },
    };
    let delete = body
        .get("delete_branch_after_merge")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    {
        let mut st = sh.lock();
        let rs = st.repos.get_mut(&key(o, r)).expect("checked");
        let pr = rs.pulls.get_mut(&n).expect("checked");
        pr.merge_commit = merged;
        pr.merged_at = now_rfc3339();
        pr.state = "closed".into();
        pr.head_sha = head;
    }
    if delete && p.head_repo == key(o, r) {
        let _ = remove_branch(sh, o, r, &p.head).await;
    }
    empty_response(StatusCode::OK)
}

/// Deletes `branch` as `DeleteBranch` does: the status to answer.
async fn remove_branch(sh: &Shared, o: &str, r: &str, branch: &str) -> StatusCode {
    {
        let st = sh.lock();
        let rs = &st.repos[&key(o, r)];
        if rs.default_branch == branch {
            return StatusCode::FORBIDDEN;
        }
        if rs.protected.iter().any(|pat| glob_match(pat, branch)) {
            return StatusCode::FORBIDDEN;
        }
    }
    if resolve_branch(sh, o, r, branch).await.is_none() {
        return StatusCode::NOT_FOUND;
    }
    let bare = sh.bare_repo(o, r);
    match git_output(
        &bare,
        &["update-ref", "-d", &format!("refs/heads/{branch}")],
    )
    .await
    {
        Some(_) => StatusCode::NO_CONTENT,
        None => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A shell glob with `*` only (as the sim's protected patterns).
fn glob_match(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((pre, post)) => {
            name.len() >= pre.len() + post.len() && name.starts_with(pre) && name.ends_with(post)
        }
    }
}

/// `DELETE /repos/{o}/{r}/branches/{branch}`.
pub(super) async fn delete_branch(
    sh: &Shared,
    o: &str,
    r: &str,
    user: u64,
    branch: &str,
) -> Response {
    {
        let st = sh.lock();
        if !st.can_write(&st.repos[&key(o, r)], Some(user)) {
            return empty_response(StatusCode::FORBIDDEN);
        }
    }
    match remove_branch(sh, o, r, branch).await {
        StatusCode::NO_CONTENT => empty_response(StatusCode::NO_CONTENT),
        StatusCode::NOT_FOUND => not_found_msg(sh, "branch does not exist"),
        StatusCode::FORBIDDEN => api_error(
            sh,
            StatusCode::FORBIDDEN,
            "can not delete the default or a protected branch",
        ),
        s => api_error(sh, s, "cannot delete the branch"),
    }
}

pub(super) fn label_json(sh: &Shared, o: &str, r: &str, id: u64, l: &LabelState) -> Value {
    json!({
        "id": id,
        "name": l.name,
        "exclusive": false,
        "is_archived": false,
        "color": l.color,
        "description": l.description,
        "url": format!("{}/api/v1/repos/{o}/{r}/labels/{id}", sh.url),
    })
}

/// The labels of issue or pull request `n`, for its JSON.
pub(super) fn labels_json(st: &SimState, rs: &RepoState, n: u64) -> Value {
    let _ = st;
    Value::Array(
        rs.issue_labels
            .get(&n)
            .into_iter()
            .flatten()
            .filter_map(|id| {
                rs.labels
                    .get(id)
                    .map(|l| json!({"id": id, "name": l.name, "color": l.color}))
            })
            .collect(),
    )
}

/// `GET /repos/{o}/{r}/labels`.
pub(super) fn list_labels(
    sh: &Shared,
    o: &str,
    r: &str,
    query: &HashMap<String, String>,
) -> Response {
    let (page, limit) = page_and_limit(query);
    let st = sh.lock();
    let rs = &st.repos[&key(o, r)];
    let list: Vec<Value> = rs
        .labels
        .iter()
        .skip((page - 1).saturating_mul(limit))
        .take(limit)
        .map(|(id, l)| label_json(sh, o, r, *id, l))
        .collect();
    let mut resp = json_response(StatusCode::OK, Value::Array(list));
    resp.headers_mut()
        .insert("x-total-count", HeaderValue::from(rs.labels.len()));
    resp
}

/// `POST /repos/{o}/{r}/labels`.
pub(super) fn create_label(
    sh: &Shared,
    o: &str,
    r: &str,
    user: u64,
    body: &Map<String, Value>,
) -> Response {
    let color = str_field(body, "color")
        .trim()
        .trim_start_matches('#')
        .to_lowercase();
    if !(color.len() == 6 && color.chars().all(|c| c.is_ascii_hexdigit())) {
        return validation_error(sh, "Color: invalid color");
    }
    let mut st = sh.lock();
    if !st.can_write(&st.repos[&key(o, r)], Some(user)) {
        drop(st);
        return empty_response(StatusCode::FORBIDDEN);
    }
    let id = st.next_id();
    let label = LabelState {
        name: str_field(body, "name").to_string(),
        color: format!("#{color}"),
        description: str_field(body, "description").to_string(),
    };
    let v = label_json(sh, o, r, id, &label);
    st.repos
        .get_mut(&key(o, r))
        .expect("checked")
        .labels
        .insert(id, label);
    json_response(StatusCode::CREATED, v)
}

/// `POST /repos/{o}/{r}/issues/{index}/labels`.
pub(super) fn add_issue_labels(
    sh: &Shared,
    o: &str,
    r: &str,
    index: &str,
    user: u64,
    body: &Map<String, Value>,
) -> Response {
    let mut st = sh.lock();
    let rs = &st.repos[&key(o, r)];
    let Some(n) = index
        .parse::<u64>()
        .ok()
        .filter(|n| rs.issues.contains_key(n) || rs.pulls.contains_key(n))
    else {
        drop(st);
        return not_found(sh);
    };
    if !st.can_write(rs, Some(user)) {
        drop(st);
        return empty_response(StatusCode::FORBIDDEN);
    }
    // Ids, or names (`issue_label.go`, `prepareForReplaceOrAdd`).
    let wanted: Vec<u64> = body
        .get("labels")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| match v {
                    Value::Number(x) => x.as_u64().filter(|id| rs.labels.contains_key(id)),
                    Value::String(name) => rs
                        .labels
                        .iter()
                        .find(|(_, l)| &l.name == name)
                        .map(|(id, _)| *id),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let rs = st.repos.get_mut(&key(o, r)).expect("checked");
    let on = rs.issue_labels.entry(n).or_default();
    for id in wanted {
        if !on.contains(&id) {
            on.push(id);
        }
    }
    let ids = on.clone();
    let list: Vec<Value> = ids
        .iter()
        .filter_map(|id| rs.labels.get(id).map(|l| label_json(sh, o, r, *id, l)))
        .collect();
    drop(st);
    json_response(StatusCode::OK, Value::Array(list))
}

impl ForgeSim {
    /// The forge's CI reports `state` under `context` on every commit of
    /// `owner/repo` (in the combined status), until set again.
    pub fn set_ci(&self, owner: &str, repo: &str, context: &str, state: &str) {
        self.with_repo(owner, repo, |rs| {
            rs.ci.insert(context.to_string(), state.to_string())
        });
    }

    /// The base branch's protection blocks merging a head that is behind it
    /// (`block_on_outdated_branch`).
    pub fn block_outdated_branches(&self, owner: &str, repo: &str, on: bool) {
        self.with_repo(owner, repo, |rs| rs.block_on_outdated = on);
    }

    /// Before the next merge request is looked at, someone else's commit
    /// lands on the pull request's base, changing `path` to `content`.
    pub fn advance_base_on_next_merge(&self, owner: &str, repo: &str, path: &str, content: &str) {
        self.with_repo(owner, repo, |rs| {
            rs.advance_base = Some((path.to_string(), content.to_string()))
        });
    }

    /// Whether branch `branch` of `owner/repo` exists in its git data.
    pub fn branch_exists(&self, owner: &str, repo: &str, branch: &str) -> bool {
        let bare = self.shared.bare_repo(owner, repo);
        std::process::Command::new("git")
            .arg("--git-dir")
            .arg(&bare)
            .args([
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("refs/heads/{branch}"),
            ])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }
}
