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
        Ok(Ok(n)) if n > 0 => {
            // Harvest: nothing goes on a pull request that adds a binary or
            // an oversized file, or changes too many files.
            let limits = crate::verify::settings_for(ctx, rec);
            let remote_base = format!("refs/remotes/origin/{base}");
            let refused = Box::pin(crate::verify::harvest::refusal(
                &git_dir,
                &remote_base,
                sha,
                &limits,
            ))
            .await;
            if let Some(why) = refused {
                tracing::warn!(job = %rec.id, reason = %why, "harvest refused the branch: no pull request");
                errors.harvest = Some(why);
                return None;
            }
            Some(Pushed {
                sha: sha.clone(),
                base,
            })
        }
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
    let body = pull_body(&PullBody {
        rec,
        branch: &prepared.branch,
        commits: &commits,
        web_url: &ctx.cfg.web_url,
        co_author: (
            &ctx.cfg.docker.git_user_name,
            &ctx.cfg.docker.git_user_email,
        ),
    });
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

/// What a pull request's description is made of.
pub struct PullBody<'a> {
    /// The job.
    pub rec: &'a JobRecord,
    /// The agent branch.
    pub branch: &'a str,
    /// `git log --oneline` of the commits ahead of the base.
    pub commits: &'a str,
    /// The console's address (`web_url`; empty: no link).
    pub web_url: &'a str,
    /// The agents' git identity, for the Co-Authored-By footer.
    pub co_author: (&'a str, &'a str),
}

/// The pull request's description as upstream `auto_pr.go`
/// (`buildAutoPRBody`) writes it: `## Task`, `Closes #N`, agent, commit
/// count, branch, and the Co-Authored-By footer; plus agentq's job id (a
/// link to the console when `web_url` is set) and the commit list.
pub fn pull_body(b: &PullBody<'_>) -> String {
    let i = &b.rec.input;
    let count = b.commits.lines().filter(|l| !l.trim().is_empty()).count();
    let mut body = format!("## Task\n\n{}\n\n", i.task.trim());
    if i.issue > 0 {
        body.push_str(&format!("Closes #{}\n\n", i.issue));
    }
    let job = match b.web_url.trim_end_matches('/') {
        "" => format!("`{}`", b.rec.id),
        url => format!("[`{id}`]({url}/jobs/{id})", id = b.rec.id),
    };
    body.push_str(&format!(
        "**Agent:** {}\n**Commits:** {count}\n**Branch:** `{}`\n**Job:** {job}\n\nCommits:\n```\n{}\n```\n",
        i.agent,
        b.branch,
        cut(&cut_lines(b.commits.trim_end(), 200), 8 * 1024)
    ));
    body.push_str(&format!(
        "\n---\nAuto-created by agentq.\nCo-Authored-By: {} <{}>\n",
        b.co_author.0, b.co_author.1
    ));
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_upstreams_with_the_job_and_its_console_link() {
        let mut rec = JobRecord {
            id: "01JOB".into(),
            ..JobRecord::default()
        };
        rec.input.task = "Fix the bug".into();
        rec.input.issue = 5;
        rec.input.agent = "codex".into();
        let mut b = PullBody {
            rec: &rec,
            branch: "agent/x",
            commits: "abc one\ndef two\n",
            web_url: "",
            co_author: ("Virgil", "v@e"),
        };
        let body = pull_body(&b);
        assert!(
            body.starts_with("## Task\n\nFix the bug\n\nCloses #5\n\n**Agent:** codex\n**Commits:** 2\n**Branch:** `agent/x`\n**Job:** `01JOB`\n"),
            "{body}"
        );
        assert!(body.ends_with("Co-Authored-By: Virgil <v@e>\n"), "{body}");
        b.web_url = "https://agentq.example/";
        assert!(
            pull_body(&b).contains("**Job:** [`01JOB`](https://agentq.example/jobs/01JOB)\n"),
            "{}",
            pull_body(&b)
        );
    }
}
