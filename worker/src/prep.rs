//! Stage 1, prep: the worker-owned repository, a fresh working tree for the
//! agent, and the prompt.
//!
//! The working tree of an earlier run is hostile (its `.git/config`, hooks and
//! files are the agent's), so prep never runs git in it: it fetches into the
//! worker-owned bare repository (`.meta/git`), deletes the old tree and builds a
//! new one from that repository, and gives it to the agents' user.

use agentq_shared::{
    config::Config,
    input::DispatchInput,
    language::{DetectLanguage, Language},
    prompt::{build_prompt, PromptParts},
    record::JobRecord,
    templates::{TemplateError, Templates},
    workspace::{agent_branch, is_agent_branch, legacy_agent_branch, workspace_name, Workspace},
};

use crate::git::{git, is_ancestor, rev_parse, Credentials};

/// The ref in the worker repository that holds the job's base commit.
const BASE_REF: &str = "refs/agentq/base";
/// The ref in the worker repository the working tree is built from.
const START_REF: &str = "refs/agentq/start";

/// What prep leaves for the run stage.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The workspace.
    pub workspace: Workspace,
    /// The agent's branch, checked out.
    pub branch: String,
    /// The prompt, also in `.meta/input/prompt.md`.
    pub prompt: String,
    /// Earlier work of this job or branch is in the working tree.
    pub resumed: bool,
    /// The commit the working tree starts from: the agent's commits must descend
    /// from it.
    pub start_sha: String,
    /// The agent branch on the remote when prep fetched (`None`: not there). A
    /// push replaces exactly this commit, or nothing if it moved.
    pub remote_sha: Option<String>,
}

/// Where `{org}/{repo}` is cloned from.
pub fn clone_url(cfg: &Config, input: &DispatchInput) -> String {
    format!(
        "{}/{}/{}.git",
        cfg.git_base.trim_end_matches('/'),
        input.org,
        input.repo
    )
}

/// Where job `rec`'s workspace is made: the workspace root, or for a dry run a
/// throwaway root of its own (removed after), so a dry run never touches the
/// workspace a real (maybe blocked) job owns.
pub fn workspace_root(cfg: &Config, rec: &JobRecord) -> std::path::PathBuf {
    if rec.input.dry_run {
        cfg.workspace_root
            .join(crate::deadman::RUN_DIR)
            .join("dry")
            .join(rec.id.to_lowercase())
    } else {
        cfg.workspace_root.clone()
    }
}

/// Why prep failed.
#[derive(Debug)]
pub enum PrepError {
    /// The job itself is wrong (a missing persona or plan): retrying cannot help.
    Job(String),
    /// File system or git trouble: worth another attempt.
    Infra(anyhow::Error),
}

impl From<TemplateError> for PrepError {
    fn from(e: TemplateError) -> Self {
        PrepError::Job(e.to_string())
    }
}

/// Brings the worker repository up to date, builds a fresh working tree on the
/// agent branch from it, then writes the prompt from the templates, the
/// repository and `issue` (title, body) if the forge gave one.
///
/// # Errors
/// [`PrepError::Job`] for template problems, [`PrepError::Infra`] for the rest.
pub async fn prepare(
    cfg: &Config,
    rec: &JobRecord,
    issue: Option<(String, String)>,
    agent_ids: (u32, u32),
) -> Result<Prepared, PrepError> {
    let input = &rec.input;
    let templates = Templates::new(cfg.templates_dir.clone());
    // Template problems are the job's fault: find them before cloning anything.
    let template_text = templates.template_set(&input.template)?;
    let persona = (!input.persona.is_empty())
        .then(|| templates.persona(&input.persona))
        .transpose()?;
    let plan = (!input.plan_template.is_empty())
        .then(|| templates.plan(&input.plan_template, &input.variables))
        .transpose()?;
    let workspace = Workspace::for_input(&workspace_root(cfg, rec), input)
        .map_err(|e| PrepError::Infra(e.into()))?;
    let branch = branch_for(rec, &workspace);
    let sync = sync_worker_repo(cfg, input, &workspace, &branch)
        .await
        .map_err(PrepError::Infra)?;
    // The prompt's recent changes are read from the worker repository while
    // the working tree is built from it.
    let worker_repo = workspace.worker_repo();
    let (built, recent_changes) = tokio::join!(
        build_working_tree(cfg, input, &workspace, &branch, agent_ids),
        git(&worker_repo, &["log", "--oneline", "-20", START_REF]),
    );
    built.map_err(PrepError::Infra)?;
    let recent_changes = recent_changes.unwrap_or_default();
    let resumed = sync.had_branch || rec.runs > 0;

    let infra = |e: std::io::Error| PrepError::Infra(e.into());
    let answer = workspace.answer_file();
    if rec.answer.is_empty() {
        match std::fs::remove_file(&answer) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(infra(e)),
            _ => {}
        }
    } else {
        agentq_shared::fsutil::write_atomic(
            &answer,
            format!("{}\n", rec.answer.trim_end()).as_bytes(),
        )
        .map_err(infra)?;
    }
    let parts = PromptParts {
        branch: branch.clone(),
        language: Language::detect(&workspace.repo_dir()),
        template_text,
        persona,
        issue,
        recent_changes,
        plan,
        answer: (!rec.answer.is_empty()).then(|| rec.answer.clone()),
        resumed,
    };
    let prompt = build_prompt(input, &parts);
    agentq_shared::fsutil::write_atomic(&workspace.prompt_file(), prompt.as_bytes())
        .map_err(infra)?;
    Ok(Prepared {
        workspace,
        branch,
        prompt,
        resumed,
        start_sha: sync.start,
        remote_sha: sync.remote,
    })
}

/// The job's agent branch: the one its record names (set at its first prep, so
/// a retried or resumed job keeps its branch, whichever version named it); for
/// a job that never ran, the branch of an earlier job of the same task in this
/// workspace if that one was named the old way (`agent/{slug of task}`, in the
/// workspace's `status.json`), so work begun before the upgrade goes on in its
/// branch and pull request; else [`agent_branch`]. Only names agentq could have
/// made are taken back ([`is_agent_branch`]).
pub fn branch_for(rec: &JobRecord, ws: &Workspace) -> String {
    if is_agent_branch(&rec.branch) {
        return rec.branch.clone();
    }
    let legacy = legacy_agent_branch(&rec.input);
    let earlier = agentq_shared::fsutil::read_beneath(&ws.dir, "status.json", 1 << 20)
        .and_then(|b| serde_json::from_slice::<agentq_shared::status::WorkspaceStatus>(&b).ok());
    match earlier {
        Some(st)
            if st.task == rec.input.task && st.branch == legacy && is_agent_branch(&legacy) =>
        {
            legacy
        }
        _ => agent_branch(&rec.input),
    }
}

/// Makes the directories an agent container mounts, `repo` and `.meta/input`
/// (with the modes prep gives them), so that the container can be created
/// before the workspace is prepared (see [`agentq_shared::container::held`]).
///
/// # Errors
/// I/O errors.
pub fn make_mount_dirs(ws: &Workspace) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(ws.input_dir())?;
    std::fs::set_permissions(ws.meta_dir(), std::fs::Permissions::from_mode(0o711))?;
    std::fs::set_permissions(ws.input_dir(), std::fs::Permissions::from_mode(0o755))?;
    let repo = ws.repo_dir();
    if std::fs::symlink_metadata(&repo).is_ok_and(|m| !m.is_dir()) {
        std::fs::remove_file(&repo)?;
    }
    std::fs::create_dir_all(&repo)
}

/// Removes everything inside `dir` (never following a link), keeping `dir`
/// itself but giving it back to the worker (the last run gave it to the
/// agents' user, and git refuses a repository its user does not own); makes
/// `dir` if it is missing, and replaces it if it is not a directory.
fn empty_dir(dir: &std::path::Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => std::fs::remove_file(dir)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(dir)?;
    let (uid, gid) = agentq_shared::fsutil::current_ids();
    std::os::unix::fs::lchown(dir, Some(uid), Some(gid))?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            // Whatever modes the agent left (`chmod 000`): a worker that is not
            // root must still be able to empty its tree.
            agentq_shared::fsutil::remove_tree(&entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// What [`sync_worker_repo`] found.
struct Synced {
    /// The start commit (also at [`START_REF`]).
    start: String,
    /// The agent branch existed (on this host or on the remote).
    had_branch: bool,
    /// The agent branch on the remote.
    remote: Option<String>,
}

/// The refspec that fetches the job's base into `target`: the PR head
/// (`refs/pull/N/head`, as Forgejo publishes it), the named branch or tag, or
/// the remote's default branch.
fn base_refspec(input: &DispatchInput, target: &str) -> String {
    if input.pr > 0 {
        format!("+refs/pull/{}/head:{target}", input.pr)
    } else if !input.branch.is_empty() {
        format!("+refs/heads/{}:{target}", input.branch)
    } else if !input.tag.is_empty() {
        format!("+refs/tags/{}:{target}", input.tag)
    } else {
        format!("+HEAD:{target}")
    }
}

/// Creates the worker repository if needed, fetches the remote's branches and
/// the job's base into it, and picks the start commit: the agent branch on the
/// remote (saved by whichever host ran the workspace last), unless this host's
/// is ahead of it; else this host's; else the base.
async fn sync_worker_repo(
    cfg: &Config,
    input: &DispatchInput,
    ws: &Workspace,
    branch: &str,
) -> anyhow::Result<Synced> {
    let meta = ws.meta_dir();
    make_mount_dirs(ws)?;
    let git_dir = ws.worker_repo();
    // The worker repository is made (if new) while the mirror is updated.
    let make_repo = async {
        if !git_dir.join("HEAD").is_file() {
            if std::fs::symlink_metadata(&git_dir).is_ok() {
                std::fs::remove_dir_all(&git_dir)?;
            }
            git(&meta, &["init", "--quiet", "--bare", "git"]).await?;
        }
        anyhow::Ok(())
    };
    // The network fetch goes to this host's mirror of the repository (only what
    // is new); the worker repository borrows its objects and fetches from it.
    let url = clone_url(cfg, input);
    let creds = Credentials::for_url(cfg, &url)?;
    let mirror = crate::mirror::mirror_dir(cfg, input);
    let mirror_base = format!("refs/agentq/base/{}", workspace_name(input));
    let base_spec = base_refspec(input, &mirror_base);
    let (made, updated) = tokio::join!(
        make_repo,
        crate::mirror::update(&mirror, &url, &base_spec, creds.as_ref()),
    );
    made?;
    updated?;
    crate::mirror::borrow_objects(&git_dir, &mirror)?;
    git(
        &git_dir,
        &[
            "fetch",
            "--quiet",
            "--no-tags",
            "--prune",
            "--",
            &mirror.to_string_lossy(),
            "+refs/heads/*:refs/remotes/origin/*",
            &format!("+{mirror_base}:{BASE_REF}"),
        ],
    )
    .await?;
    let (local_ref, remote_ref) = (
        format!("refs/heads/{branch}"),
        format!("refs/remotes/origin/{branch}"),
    );
    let (base, local, remote) = tokio::join!(
        rev_parse(&git_dir, BASE_REF),
        rev_parse(&git_dir, &local_ref),
        rev_parse(&git_dir, &remote_ref),
    );
    let base = base.ok_or_else(|| anyhow::anyhow!("the base `{BASE_REF}` is not a commit"))?;
    // The remote's agent branch is the shared truth (any host may have saved
    // to it); this host's own branch wins only when it is the same or ahead
    // (commits a failed save left here).
    let start = match (&local, &remote) {
        (Some(l), Some(r)) if l == r || is_ancestor(&git_dir, r, l).await => l.clone(),
        (Some(l), Some(r)) => {
            if !is_ancestor(&git_dir, l, r).await {
                tracing::warn!(branch, local = %l, remote = %r, "this host's agent branch diverged from the remote's; starting from the remote's");
            }
            r.clone()
        }
        (Some(l), None) => l.clone(),
        (None, Some(r)) => r.clone(),
        (None, None) => base,
    };
    git(&git_dir, &["update-ref", START_REF, &start]).await?;
    Ok(Synced {
        start,
        had_branch: local.is_some() || remote.is_some(),
        remote,
    })
}

/// Replaces the working tree with a fresh one on `branch` at [`START_REF`],
/// made from the worker repository (objects copied, never hard-linked, so the
/// agent cannot reach the worker's files), and gives it to the agents' user.
async fn build_working_tree(
    cfg: &Config,
    input: &DispatchInput,
    ws: &Workspace,
    branch: &str,
    (uid, gid): (u32, u32),
) -> anyhow::Result<()> {
    let repo = ws.repo_dir();
    // Emptied, not replaced: a held agent container may have it mounted already.
    let r = repo.clone();
    tokio::task::spawn_blocking(move || empty_dir(&r)).await??;
    git(&ws.dir, &["init", "--quiet", "repo"]).await?;
    // At most `agent_history_depth` commits of history: preparing a workspace
    // then costs the same whatever the repository's age.
    // A URL, so git copies objects (a path would hard-link them); percent-encoded,
    // as git decodes it (a workspace name has `%` in it).
    let src = url::Url::from_file_path(std::path::absolute(ws.worker_repo())?)
        .map_err(|()| anyhow::anyhow!("the worker repository's path is not absolute"))?
        .to_string();
    let depth = format!("--depth={}", cfg.agent_history_depth);
    let start = format!("+{START_REF}:refs/heads/{branch}");
    let mut args = vec!["fetch", "--quiet", "--no-tags", "--update-head-ok"];
    if cfg.agent_history_depth > 0 {
        args.push(&depth);
    }
    args.extend([
        "--",
        src.as_str(),
        "+refs/remotes/origin/*:refs/remotes/origin/*",
        start.as_str(),
    ]);
    git(&repo, &args).await?;
    // The branch may hold an earlier run's `.gitattributes`: no filter driver of
    // any configuration the worker's git reads (a host's git-lfs, say) runs on
    // its files. The override is gone before the agent sees the tree.
    let attributes = repo.join(".git/info/attributes");
    std::fs::create_dir_all(repo.join(".git/info"))?;
    agentq_shared::fsutil::write_atomic(&attributes, b"* -filter\n")?;
    git(&repo, &["checkout", "--quiet", "--force", branch]).await?;
    std::fs::remove_file(&attributes)?;
    // The seed's rule: a stale BLOCKED.md (even a committed one) is not this
    // run's question.
    let blocked = repo.join("BLOCKED.md");
    if std::fs::symlink_metadata(&blocked).is_ok() {
        std::fs::remove_file(&blocked)?;
    }
    // The agent sees the public URL (never credentials); pushing is the worker's.
    git(&repo, &["remote", "add", "origin", &clone_url(cfg, input)]).await?;
    if agentq_shared::fsutil::current_ids().0 == 0 {
        let r = repo.clone();
        tokio::task::spawn_blocking(move || agentq_shared::fsutil::chown_tree(&r, uid, gid))
            .await??;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentq_shared::status::{StatusFile, WorkspaceStatus};

    fn rec(issue: u64, task: &str) -> JobRecord {
        let input = DispatchInput {
            repo: "demo".into(),
            org: "core".into(),
            task: task.into(),
            issue,
            ..Default::default()
        };
        JobRecord::new(
            "01J".into(),
            input,
            3,
            "2026-01-01T00:00:00Z".parse().unwrap(),
        )
    }

    /// A record that names a branch keeps it (retry, resume, whichever version
    /// named it); a new job takes over the old-style branch of the same task in
    /// its workspace, and nothing else; otherwise the new naming.
    #[test]
    fn branch_for_keeps_old_branches_and_names_new_ones() {
        let t = tempfile::tempdir().unwrap();
        let ws = Workspace {
            dir: t.path().join("task-70"),
        };
        std::fs::create_dir_all(&ws.dir).unwrap();
        let fresh = rec(70, "Fix the build");
        assert_eq!(branch_for(&fresh, &ws), "agent/issue-70-fix-the-build");

        let mut old = rec(70, "Fix the build");
        old.branch = "agent/fix-the-build".into();
        assert_eq!(branch_for(&old, &ws), "agent/fix-the-build");
        old.branch = "--upload-pack=x".into();
        assert_eq!(branch_for(&old, &ws), "agent/issue-70-fix-the-build");

        let status = |task: &str, branch: &str| {
            WorkspaceStatus {
                task: task.into(),
                branch: branch.into(),
                ..Default::default()
            }
            .write_atomic(&ws.status_file())
            .unwrap()
        };
        status("Fix the build", "agent/fix-the-build");
        assert_eq!(branch_for(&fresh, &ws), "agent/fix-the-build");
        status("Another task", "agent/fix-the-build");
        assert_eq!(branch_for(&fresh, &ws), "agent/issue-70-fix-the-build");
        status("Fix the build", "agent/somebody-elses");
        assert_eq!(branch_for(&fresh, &ws), "agent/issue-70-fix-the-build");
    }
}
