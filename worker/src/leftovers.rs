//! Uncommitted work the agent left: never dropped without a word.
//!
//! After the run, a short container (the export's sandbox: the job's image and
//! user, the tree read-only, no network; see
//! [`LEFTOVERS_SCRIPT`](agentq_shared::container::LEFTOVERS_SCRIPT)) prints a
//! binary patch of what the working tree has that `HEAD` does not, made in a
//! temporary index so the agent's own is never touched. The worker keeps it, as
//! data and bounded, in `.meta/leftovers-{attempt}.patch`, and the record says
//! so (`leftovers`, shown by `agentq inspect`, `list` and `status`). The patch
//! is not applied and not pushed, unless `commit_leftovers = true`: then the
//! worker commits it on the agent branch (in its own repository, from the
//! patch as data) under the agents' git identity, and it is pushed with the
//! rest.
//!
//! Like the export (see [`crate::import`]), the patch is usually made by the
//! agent container's watchdog once the agent is gone, with the same script,
//! and handed over on its channel (`inside`); the container runs only when
//! that is missing.

use std::{io::Read, time::Duration};

use agentq_shared::{agent::AgentSpec, container::leftovers_container};

use crate::{
    docker,
    git::{git, git_in_index},
    prep::Prepared,
    run::{Run, RunDirs},
};

/// Largest patch kept.
pub(crate) const MAX_PATCH: u64 = 16 * 1024 * 1024;
/// Longest the leftovers container may run.
const LEFTOVERS_TIMEOUT: Duration = Duration::from_secs(30);

/// Looks for uncommitted work and keeps it as a patch. Returns the line the
/// record gets (empty: nothing was left). Never fails the job: what cannot be
/// exported is said in the line. `inside`: the patch the watchdog made after
/// the agent, if it did.
///
/// # Errors
/// Docker failing to run the container (infrastructure).
pub(crate) async fn keep_leftovers(
    run: &Run<'_>,
    agent: &AgentSpec,
    prepared: &Prepared,
    inside: Option<&docker::Section>,
) -> anyhow::Result<String> {
    let (ctx, rec, attempt) = (run.ctx, run.rec, run.attempt);
    let ws = &prepared.workspace;
    let file_name = format!("leftovers-{attempt}.patch");
    let patch = ws.meta_dir().join(&file_name);
    let captured = match inside.and_then(docker::Section::captured) {
        Some(c) if c.code == docker::TIMED_OUT => {
            let _ = std::fs::remove_file(&patch);
            return Ok(format!(
                "the agent's uncommitted work could not be exported: it ran past {LEFTOVERS_TIMEOUT:?}"
            ));
        }
        Some(c) => c,
        None => {
            let dirs = RunDirs::of(ws);
            let job = run.container_job(agent, "", &dirs);
            let body = leftovers_container(&ctx.cfg, &job);
            let name = format!("agentq-{}-{}-leftovers", rec.id.to_lowercase(), attempt);
            let _ = std::fs::remove_file(&patch);
            match docker::run_capture(
                &ctx.docker,
                &name,
                body,
                &patch,
                MAX_PATCH,
                LEFTOVERS_TIMEOUT,
            )
            .await
            {
                Ok(c) => c,
                Err(e) if e.downcast_ref::<docker::RanPast>().is_some() => {
                    let _ = std::fs::remove_file(&patch);
                    return Ok(format!(
                        "the agent's uncommitted work could not be exported: it ran past {LEFTOVERS_TIMEOUT:?}"
                    ));
                }
                Err(e) => return Err(e.context("leftovers container")),
            }
        }
    };
    let message = if captured.code != 0 {
        let detail: String = captured.stderr.trim().chars().take(300).collect();
        format!(
            "the agent's uncommitted work could not be exported (exit {}){}",
            captured.code,
            if detail.is_empty() {
                String::new()
            } else {
                format!(": {detail}")
            }
        )
    } else if captured.over_cap {
        format!(
            "agent left uncommitted work over {} MiB; not kept, not pushed",
            MAX_PATCH / (1024 * 1024)
        )
    } else if captured.bytes == 0 {
        String::new()
    } else {
        let files = count_files(&patch);
        if !ctx.cfg.commit_leftovers {
            return Ok(describe(files, &file_name));
        }
        return Ok(match commit_patch(run, prepared, &patch).await {
            Ok(sha) => format!(
                "agent left {files} {} uncommitted; committed on the agent branch as {} (patch in .meta/{file_name})",
                if files == 1 { "file" } else { "files" },
                &sha[..sha.len().min(12)]
            ),
            Err(e) => {
                tracing::warn!(job = %rec.id, error = %e, "cannot commit the agent's leftovers");
                format!(
                    "{}; committing it failed: {}",
                    describe(files, &file_name),
                    e.to_string().chars().take(300).collect::<String>()
                )
            }
        });
    };
    let _ = std::fs::remove_file(&patch);
    if !message.is_empty() {
        tracing::warn!(job = %rec.id, "{message}");
    }
    Ok(message)
}

/// `commit_leftovers`: applies the patch to the agent branch's tree in the
/// worker's own repository (a temporary index; the patch is data to `git
/// apply --cached`, nothing is written to any working tree) and commits it on
/// the branch under the agents' git identity, compare-and-swap on the branch.
/// Returns the new commit.
async fn commit_patch(
    run: &Run<'_>,
    prepared: &Prepared,
    patch: &std::path::Path,
) -> anyhow::Result<String> {
    let cfg = &run.ctx.cfg;
    let git_dir = prepared.workspace.worker_repo();
    let branch_ref = format!("refs/heads/{}", prepared.branch);
    let head = crate::git::rev_parse(&git_dir, &branch_ref)
        .await
        .ok_or_else(|| anyhow::anyhow!("the agent branch has no commit"))?;
    let index = prepared
        .workspace
        .meta_dir()
        .join(format!("leftovers-{}.index", run.attempt));
    let _ = std::fs::remove_file(&index);
    let result = async {
        git_in_index(&git_dir, &index, &["read-tree", &head]).await?;
        let patch_s = patch.to_string_lossy();
        git_in_index(
            &git_dir,
            &index,
            &[
                "apply",
                "--cached",
                "--binary",
                "--whitespace=nowarn",
                "--",
                &patch_s,
            ],
        )
        .await?;
        let tree = git_in_index(&git_dir, &index, &["write-tree"]).await?;
        let name = format!("user.name={}", cfg.docker.git_user_name);
        let email = format!("user.email={}", cfg.docker.git_user_email);
        let commit = git(
            &git_dir,
            &[
                "-c",
                &name,
                "-c",
                &email,
                "commit-tree",
                &tree,
                "-p",
                &head,
                "-m",
                "agentq: work the agent left uncommitted",
            ],
        )
        .await?;
        git(&git_dir, &["update-ref", &branch_ref, &commit, &head]).await?;
        Ok(commit)
    }
    .await;
    let _ = std::fs::remove_file(&index);
    result
}

/// The record's line for a kept patch of `files` files.
fn describe(files: usize, file_name: &str) -> String {
    let what = if files == 1 { "file" } else { "files" };
    format!(
        "agent left {files} {what} uncommitted; kept as a patch, not pushed (.meta/{file_name})"
    )
}

/// Files in a patch: its `diff --git ` lines (read as bytes, bounded by
/// [`MAX_PATCH`]).
fn count_files(patch: &std::path::Path) -> usize {
    let mut bytes = Vec::new();
    let Ok(f) = std::fs::File::open(patch) else {
        return 0;
    };
    if f.take(MAX_PATCH).read_to_end(&mut bytes).is_err() {
        return 0;
    }
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| l.starts_with(b"diff --git "))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_is_counted_by_its_files_and_described() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.patch");
        std::fs::write(
            &p,
            "diff --git a/a b/a\n+x\ndiff --git a/b b/b\nGIT binary patch\n\0\ndiff --git a/c b/c\n",
        )
        .unwrap();
        assert_eq!(count_files(&p), 3);
        assert_eq!(
            describe(3, "leftovers-1.patch"),
            "agent left 3 files uncommitted; kept as a patch, not pushed (.meta/leftovers-1.patch)"
        );
        assert!(describe(1, "p").starts_with("agent left 1 file uncommitted"));
    }
}
