//! Taking the agent's commits as data.
//!
//! After a run the working tree is the agent's: its `.git` may be a gitfile
//! pointing anywhere, its config may run commands, its objects directory may be
//! symlinks to host files. So the host never reads it with git. Instead a short
//! export container (the job's image and user, the tree mounted read-only, no
//! network) prints a git bundle of the commits on `HEAD` that are new since the
//! run's start commit; the worker fetches that bundle into its own repository
//! with object checking on, checks that the new head descends from the start
//! commit, and only then moves the agent branch there. Whatever the export
//! printed is untrusted bytes until git has parsed and checked it.

use std::time::Duration;

use agentq_shared::{agent::AgentSpec, container::export_container};

use crate::{
    docker,
    git::{git, is_ancestor, rev_parse},
    prep::Prepared,
    run::{Run, RunDirs},
};

/// Longest the export container may run.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(300);
/// Largest bundle taken when the workspace has no size limit.
const MAX_BUNDLE: u64 = 4 * 1024 * 1024 * 1024;
/// The ref the bundle is fetched into before it is checked.
const IMPORT_REF: &str = "refs/agentq/import";

/// What the run left on its branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Imported {
    /// No commit since the start commit.
    Nothing,
    /// New commits; the agent branch in the worker repository is now at this one.
    Head(String),
}

/// Why the agent's commits were not taken.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Docker or the file system failed: worth another attempt.
    #[error("{0:#}")]
    Infra(anyhow::Error),
    /// What the agent left cannot be taken (the job fails, saying why).
    #[error("cannot take the agent's commits: {0}")]
    Refused(String),
}

/// Exports, fetches and checks the agent's commits (see the module docs).
///
/// # Errors
/// [`ImportError`].
pub async fn import_commits(
    run: &Run<'_>,
    agent: &AgentSpec,
    prepared: &Prepared,
) -> Result<Imported, ImportError> {
    let (ctx, rec, attempt) = (run.ctx, run.rec, run.attempt);
    let ws = &prepared.workspace;
    let git_dir = ws.worker_repo();
    let dirs = RunDirs::of(ws);
    let job = run.container_job(agent, "", &dirs);
    let body = export_container(&ctx.cfg, &job, &prepared.start_sha);
    let name = format!("agentq-{}-{}-export", rec.id.to_lowercase(), attempt);
    let bundle = ws.meta_dir().join(format!("import-{attempt}.bundle"));
    let _ = std::fs::remove_file(&bundle);
    let cap = ctx.cfg.workspace_limit_bytes().unwrap_or(MAX_BUNDLE);
    let captured = docker::run_capture(&ctx.docker, &name, body, &bundle, cap, EXPORT_TIMEOUT)
        .await
        .map_err(|e| ImportError::Infra(e.context("export container")));
    let result = async {
        let captured = captured?;
        tracing::debug!(job = %rec.id, code = captured.code, bytes = captured.bytes, "export container ended");
        let refused = |what: &str| {
            let detail = captured.stderr.trim();
            let detail: String = detail.chars().take(500).collect();
            ImportError::Refused(if detail.is_empty() {
                what.to_string()
            } else {
                format!("{what}: {detail}")
            })
        };
        match captured.code {
            0 => {}
            4 => return Ok(Imported::Nothing),
            3 => return Err(refused("the working tree has no HEAD commit")),
            code => return Err(refused(&format!("exporting them failed (exit {code})"))),
        }
        if captured.over_cap {
            return Err(refused(&format!("their bundle is over {cap} bytes")));
        }
        let bundle_s = bundle.to_string_lossy();
        git(
            &git_dir,
            &[
                "-c",
                "fetch.fsckObjects=true",
                "-c",
                "transfer.fsckObjects=true",
                "fetch",
                "--quiet",
                "--no-tags",
                "--",
                &bundle_s,
                &format!("+HEAD:{IMPORT_REF}"),
            ],
        )
        .await
        .map_err(|e| ImportError::Refused(format!("their bundle is not valid: {e}")))?;
        let head = rev_parse(&git_dir, IMPORT_REF)
            .await
            .ok_or_else(|| refused("the bundle has no commit"))?;
        if !is_ancestor(&git_dir, &prepared.start_sha, &head).await {
            return Err(ImportError::Refused(format!(
                "the branch's head {} does not descend from {}, the commit the run started from",
                short(&head),
                short(&prepared.start_sha)
            )));
        }
        git(
            &git_dir,
            &["update-ref", &format!("refs/heads/{}", prepared.branch), &head],
        )
        .await
        .map_err(ImportError::Infra)?;
        Ok(Imported::Head(head))
    }
    .await;
    let _ = std::fs::remove_file(&bundle);
    result
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}
