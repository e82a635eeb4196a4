//! The one rebase of upstream `verify.go` (`rebaseBranch`), done in the
//! worker-owned repository (`.meta/git`, never the agent's tree): the base is
//! fetched, the agent branch is rebased onto it in a temporary worktree of
//! that repository (git's hooks off, as every host-side git command), and the
//! result is pushed with the same compare-and-swap the save uses: it replaces
//! exactly the head the forge had, or nothing.

use std::path::Path;

use agentq_shared::record::JobRecord;

use super::decide::Rebased;
use crate::{
    context::WorkerCtx,
    git::{git, git_with, is_ancestor, rev_parse, Credentials},
    prep::clone_url,
};

/// Rebases `branch` (on the forge at `head`) onto the remote's `base`.
pub async fn onto_base(
    ctx: &WorkerCtx,
    rec: &JobRecord,
    git_dir: &Path,
    branch: &str,
    base: &str,
    head: &str,
) -> Rebased {
    match run(ctx, rec, git_dir, branch, base, head).await {
        Ok(r) => r,
        Err(e) => Rebased::Failed(format!("{e:#}")),
    }
}

async fn run(
    ctx: &WorkerCtx,
    rec: &JobRecord,
    git_dir: &Path,
    branch: &str,
    base: &str,
    head: &str,
) -> anyhow::Result<Rebased> {
    let url = clone_url(&ctx.cfg, &rec.input);
    let creds = Credentials::for_url(&ctx.cfg, &url)?;
    let remote_base = format!("refs/remotes/origin/{base}");
    let fetch_base = format!("+refs/heads/{base}:{remote_base}");
    let fetch_head = format!("+refs/heads/{branch}:refs/heads/{branch}");
    git_with(
        git_dir,
        &["fetch", "--quiet", "--", &url, &fetch_base, &fetch_head],
        creds.as_ref(),
    )
    .await?;
    let Some(base_sha) = rev_parse(git_dir, &remote_base).await else {
        anyhow::bail!("the remote has no branch {base}");
    };
    if is_ancestor(git_dir, &base_sha, head).await {
        return Ok(Rebased::BaseNotMoved);
    }
    let tree = git_dir
        .parent()
        .map(|m| m.join("rebase-tree"))
        .ok_or_else(|| anyhow::anyhow!("no place for the rebase's worktree"))?;
    let _ = tokio::fs::remove_dir_all(&tree).await;
    let _ = git(git_dir, &["worktree", "prune"]).await;
    let tree_s = tree.to_string_lossy().to_string();
    git(
        git_dir,
        &["worktree", "add", "--detach", "--quiet", &tree_s, head],
    )
    .await?;
    let name = format!("user.name={}", ctx.cfg.docker.git_user_name);
    let email = format!("user.email={}", ctx.cfg.docker.git_user_email);
    let rebased = git(
        &tree,
        &[
            "-c",
            &name,
            "-c",
            &email,
            "rebase",
            "--quiet",
            "--no-autostash",
            &base_sha,
        ],
    )
    .await;
    let new = match rebased {
        Ok(_) => rev_parse(&tree, "HEAD").await,
        Err(_) => {
            let _ = git(&tree, &["rebase", "--abort"]).await;
            None
        }
    };
    let _ = git(git_dir, &["worktree", "remove", "--force", &tree_s]).await;
    let _ = tokio::fs::remove_dir_all(&tree).await;
    let Some(new) = new else {
        return Ok(Rebased::Conflict);
    };
    let local = format!("refs/heads/{branch}");
    git(git_dir, &["update-ref", &local, &new]).await?;
    let lease = format!("--force-with-lease={local}:{head}");
    let refspec = format!("{local}:{local}");
    git_with(
        git_dir,
        &["push", "--quiet", &lease, "--", &url, &refspec],
        creds.as_ref(),
    )
    .await?;
    Ok(Rebased::Pushed(new))
}
