//! Stage 1, prep: the workspace, the clone, the agent branch and the prompt.

use std::path::Path;

use agentq_shared::{
    config::Config,
    input::DispatchInput,
    prompt::{build_prompt, PromptContext},
    workspace::{agent_branch, Workspace},
};

use crate::git::{git, has_branch};

/// What prep leaves for the run stage.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The workspace.
    pub workspace: Workspace,
    /// The agent's branch, checked out.
    pub branch: String,
    /// The prompt, also in `.meta/prompt.md`.
    pub prompt: String,
    /// The clone already existed (an earlier run's work is in it).
    pub resumed: bool,
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

/// Makes (or reuses) the workspace of `input`: clones into `repo/` or reuses the
/// clone, checks out `agent/{slug}`, removes a stale `BLOCKED.md`, writes the prompt.
///
/// # Errors
/// File system or git failures: infrastructure errors, retried by the caller.
pub async fn prepare(cfg: &Config, input: &DispatchInput) -> anyhow::Result<Prepared> {
    let workspace = Workspace::for_input(&cfg.workspace_root, input)?;
    let repo = workspace.repo_dir();
    std::fs::create_dir_all(workspace.meta_dir())?;

    let resumed = repo.join(".git").join("HEAD").is_file();
    if !resumed {
        if repo.exists() {
            // A clone that died half-way: start it again.
            std::fs::remove_dir_all(&repo)?;
        }
        clone(cfg, input, &workspace.dir, &repo).await?;
    }

    let branch = agent_branch(input);
    if has_branch(&repo, &branch).await {
        git(&repo, &["checkout", "--quiet", &branch]).await?;
    } else {
        git(&repo, &["checkout", "--quiet", "-b", &branch]).await?;
    }

    let blocked = repo.join("BLOCKED.md");
    if blocked.exists() {
        std::fs::remove_file(&blocked)?;
    }

    let prompt = build_prompt(
        input,
        &PromptContext {
            branch: branch.clone(),
            resumed,
        },
    );
    agentq_shared::fsutil::write_atomic(&workspace.prompt_file(), prompt.as_bytes())?;
    Ok(Prepared {
        workspace,
        branch,
        prompt,
        resumed,
    })
}

async fn clone(cfg: &Config, input: &DispatchInput, ws: &Path, repo: &Path) -> anyhow::Result<()> {
    let url = clone_url(cfg, input);
    let mut args = vec!["clone", "--quiet", "--no-tags"];
    let named = if !input.branch.is_empty() {
        Some(input.branch.as_str())
    } else if !input.tag.is_empty() {
        Some(input.tag.as_str())
    } else {
        None
    };
    if let Some(r) = named {
        args.extend(["--branch", r]);
    }
    args.extend(["--", url.as_str(), "repo"]);
    git(ws, &args).await?;
    if input.pr > 0 {
        let refspec = format!("pull/{}/head:pr-{}", input.pr, input.pr);
        git(repo, &["fetch", "--quiet", "origin", &refspec]).await?;
        git(repo, &["checkout", "--quiet", &format!("pr-{}", input.pr)]).await?;
    }
    Ok(())
}
