//! Uncommitted work the agent left: never dropped without a word.
//!
//! After the run, a short container (the export's sandbox: the job's image and
//! user, the tree read-only, no network; see
//! [`LEFTOVERS_SCRIPT`](agentq_shared::container::LEFTOVERS_SCRIPT)) prints a
//! binary patch of what the working tree has that `HEAD` does not, made in a
//! temporary index so the agent's own is never touched. The worker keeps it, as
//! data and bounded, in `.meta/leftovers-{attempt}.patch`, and the record says
//! so (`leftovers`, shown by `agentq inspect`, `list` and `status`). The patch
//! is not applied and not pushed.

use std::{io::Read, time::Duration};

use agentq_shared::{agent::AgentSpec, container::leftovers_container};

use crate::{
    docker,
    prep::Prepared,
    run::{Run, RunDirs},
};

/// Largest patch kept.
pub(crate) const MAX_PATCH: u64 = 16 * 1024 * 1024;
/// Longest the leftovers container may run.
const LEFTOVERS_TIMEOUT: Duration = Duration::from_secs(30);

/// Looks for uncommitted work and keeps it as a patch. Returns the line the
/// record gets (empty: nothing was left). Never fails the job: what cannot be
/// exported is said in the line.
///
/// # Errors
/// Docker failing to run the container (infrastructure).
pub(crate) async fn keep_leftovers(
    run: &Run<'_>,
    agent: &AgentSpec,
    prepared: &Prepared,
) -> anyhow::Result<String> {
    let (ctx, rec, attempt) = (run.ctx, run.rec, run.attempt);
    let ws = &prepared.workspace;
    let dirs = RunDirs::of(ws);
    let job = run.container_job(agent, "", &dirs);
    let body = leftovers_container(&ctx.cfg, &job);
    let name = format!("agentq-{}-{}-leftovers", rec.id.to_lowercase(), attempt);
    let file_name = format!("leftovers-{attempt}.patch");
    let patch = ws.meta_dir().join(&file_name);
    let _ = std::fs::remove_file(&patch);
    let captured = match docker::run_capture(
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
        let _ =
            std::fs::set_permissions(&patch, std::os::unix::fs::PermissionsExt::from_mode(0o644));
        return Ok(describe(files, &file_name));
    };
    let _ = std::fs::remove_file(&patch);
    if !message.is_empty() {
        tracing::warn!(job = %rec.id, "{message}");
    }
    Ok(message)
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
