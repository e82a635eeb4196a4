//! The agent's branch on the forge: whether it is ahead of the base, and its
//! pull request.

use std::sync::Arc;

use agentq_shared::{
    forge::CreatePull,
    record::JobRecord,
    text::{cut, cut_lines, strip_controls},
};

use super::ForgeErrors;
use crate::{context::WorkerCtx, git::git, prep::Prepared, save::Saved};

/// The pushed branch: its head and the base it is ahead of.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// Head commit.
    pub sha: String,
    /// Base branch.
    pub base: String,
}

/// The saved agent branch, when it has commits ahead of the base branch and a
/// forge is there to open a pull request for it.
pub async fn pull_branch(
    ctx: &Arc<WorkerCtx>,
    rec: &JobRecord,
    prepared: &Prepared,
    saved: &Saved,
    errors: &mut ForgeErrors,
) -> Option<Pushed> {
    let forge = ctx.forge.as_ref()?;
    if !ctx.cfg.forge.auto_pr {
        return None;
    }
    let Saved::At(sha) = saved else {
        return None;
    };
    let base = if !ctx.cfg.forge.base_branch.is_empty() {
        ctx.cfg.forge.base_branch.clone()
    } else {
        let fc = errors.client(forge);
        let repo = errors
            .within(
                "read repository",
                fc.get_repo(&rec.input.org, &rec.input.repo),
            )
            .await;
        let Some(repo) = repo else {
            // The budget is spent: the base is looked up when the write-back
            // is done again (an empty base says so).
            return Some(Pushed {
                sha: sha.clone(),
                base: String::new(),
            });
        };
        match repo {
            Ok(r) if !r.default_branch.is_empty() => r.default_branch,
            Ok(_) => "main".into(),
            Err(e) => {
                errors.add("read repository", &e);
                return None;
            }
        }
    };
    let git_dir = prepared.workspace.worker_repo();
    let ahead = git(
        &git_dir,
        &[
            "rev-list",
            "--count",
            &format!("refs/remotes/origin/{base}..{sha}"),
        ],
    )
    .await;
    match ahead.as_deref().map(str::parse::<u64>) {
        Ok(Ok(n)) if n > 0 => Some(Pushed {
            sha: sha.clone(),
            base,
        }),
        Ok(_) => None,
        Err(e) => {
            errors.add("count commits ahead of the base", e);
            None
        }
    }
}

/// Opens the pull request for the pushed branch, or finds the one already open.
pub async fn open_pull(
    ctx: &WorkerCtx,
    rec: &JobRecord,
    prepared: &Prepared,
    pushed: &Pushed,
    errors: &mut ForgeErrors,
) -> Option<String> {
    let forge = ctx.forge.as_ref()?;
    let i = &rec.input;
    let commits = if pushed.base.is_empty() {
        // Base unknown (the forge's budget was spent): no list.
        String::new()
    } else {
        git(
            &prepared.workspace.worker_repo(),
            &[
                "log",
                "--oneline",
                &format!("refs/remotes/origin/{}..{}", pushed.base, pushed.sha),
            ],
        )
        .await
        .unwrap_or_default()
    };
    let first_line = i.task.lines().next().unwrap_or("").trim();
    let short: String = first_line.chars().take(60).collect();
    let mut body = format!("{}\n\n", i.task.trim());
    if i.issue > 0 {
        body.push_str(&format!("Closes #{}\n\n", i.issue));
    }
    body.push_str(&format!(
        "- Agent: `{}`\n- Branch: `{}`\n- Job: `{}`\n\nCommits:\n```\n{}\n```\n",
        i.agent,
        prepared.branch,
        rec.id,
        cut(&cut_lines(commits.trim_end(), 200), 8 * 1024)
    ));
    // Commit subjects are the agent's text: no control characters on the forge.
    let pull = CreatePull {
        head: prepared.branch.clone(),
        base: pushed.base.clone(),
        title: strip_controls(&format!("[agent/{}] {}", i.agent, short)),
        body: strip_controls(&body),
    };
    errors.redo.for_job(rec).pull = Some(pull.clone());
    let fc = errors.client(forge);
    let opened = errors
        .within(
            "open pull request",
            fc.find_or_create_pull(&i.org, &i.repo, &pull),
        )
        .await;
    match opened {
        Some(Ok((pr, _created))) => {
            errors.redo.pull = None;
            errors.redo.pr_url = Some(pr.html_url.clone());
            Some(pr.html_url)
        }
        Some(Err(e)) => {
            errors.add_forge("open pull request", e);
            None
        }
        None => None,
    }
}
