//! The run's output directory (`.meta/agent-out` on the host, `/agentq-out`
//! in the agent's container) and the agent's final message in it, which
//! becomes the job's `summary` (record, `status.json`, the forge comment).
//!
//! The directory is made fresh and empty for each run, owned by the agent's
//! uid with mode 0700, before the agent's container is created; only the
//! agent's container mounts it. While the agent runs, the guard counts it
//! with the working tree against the same bounds (`workspace_limit_mb`,
//! `workspace_limit_files`; see [`crate::guard`]), and so does the check
//! after the run. After the run it is read as data
//! ([`agentq_shared::summary::read_summary`]) and removed, whatever the agent
//! left in it.

use std::path::{Path, PathBuf};

use agentq_shared::{
    summary::{read_summary, Summary},
    workspace::Workspace,
};

/// Makes the run's output directory of `ws` fresh and empty: whatever an
/// earlier run left there is removed (never following a link, whatever modes
/// it has), then the directory is made with mode 0700 and, when this worker
/// is root, given to the agents' `uid:gid` (a worker that is not root runs its
/// agents as itself).
///
/// # Errors
/// I/O errors (the workspace's file system).
pub(crate) fn make_out_dir(ws: &Workspace, (uid, gid): (u32, u32)) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let out = ws.agent_out_dir();
    remove_out(&out)?;
    std::fs::create_dir_all(ws.meta_dir())?;
    std::fs::DirBuilder::new().mode(0o700).create(&out)?;
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o700))?;
    if agentq_shared::fsutil::current_ids().0 == 0 {
        std::os::unix::fs::lchown(&out, Some(uid), Some(gid))?;
    }
    Ok(out)
}

/// Removes an output directory whatever the agent left in it (a link in its
/// place is removed as a link).
fn remove_out(out: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(out) {
        Ok(m) if m.is_dir() => agentq_shared::fsutil::remove_tree(out),
        Ok(_) => std::fs::remove_file(out),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Reads the summary the agent left in `ws`'s output directory, then
/// removes the directory. Never fails: a directory that cannot be removed is
/// logged (the next run's [`make_out_dir`] tries again).
pub(crate) async fn take_summary(job: &str, ws: &Workspace) -> Summary {
    let out = ws.agent_out_dir();
    let read = tokio::task::spawn_blocking(move || {
        let summary = read_summary(&out);
        (summary, remove_out(&out))
    })
    .await;
    match read {
        Ok((summary, removed)) => {
            if let Err(e) = removed {
                tracing::warn!(job, error = %e, "cannot remove the agent's output directory");
            }
            if !summary.note.is_empty() {
                tracing::warn!(job, note = %summary.note, "the agent's summary was not read");
            }
            summary
        }
        Err(e) => Summary {
            text: String::new(),
            note: format!("no summary: reading it failed: {e}"),
        },
    }
}

/// Removes `ws`'s output directory unread (a run that ended in an
/// infrastructure error).
pub(crate) async fn discard(job: &str, ws: &Workspace) {
    let _ = take_summary(job, ws).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_output_directory_is_made_fresh_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let ws = Workspace {
            dir: t.path().join("task-1"),
        };
        let ids = agentq_shared::fsutil::current_ids();
        let out = make_out_dir(&ws, ids).unwrap();
        assert_eq!(out, ws.agent_out_dir());
        std::fs::create_dir_all(out.join("deep/er")).unwrap();
        std::fs::write(out.join("deep/er/old"), "x").unwrap();
        std::fs::write(out.join("summary.md"), "last run's").unwrap();
        let out = make_out_dir(&ws, ids).unwrap();
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0, "not emptied");
        let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // A link in its place is replaced, its target left alone.
        let elsewhere = t.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::write(elsewhere.join("keep"), "x").unwrap();
        std::fs::remove_dir(&out).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &out).unwrap();
        let out = make_out_dir(&ws, ids).unwrap();
        assert!(std::fs::symlink_metadata(&out).unwrap().is_dir());
        assert!(elsewhere.join("keep").exists());
    }

    #[tokio::test]
    async fn the_summary_is_read_and_the_directory_removed() {
        let t = tempfile::tempdir().unwrap();
        let ws = Workspace {
            dir: t.path().join("task-1"),
        };
        let out = make_out_dir(&ws, agentq_shared::fsutil::current_ids()).unwrap();
        std::fs::write(out.join("summary.md"), "All tests pass.\n").unwrap();
        let s = take_summary("J", &ws).await;
        assert_eq!(s.text, "All tests pass.");
        assert!(!out.exists(), "the output directory was not removed");
        assert_eq!(take_summary("J", &ws).await, Summary::default());
    }
}
