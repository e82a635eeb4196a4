//! The per-host git mirror cache: one bare mirror per repository under the
//! workspace root (`.agentq-run/mirrors/{org}/{repo}.git`), worker-owned and
//! never mounted. Prep fetches from the remote into the mirror (only what is
//! new), then fills a workspace's worker repository from the mirror, which
//! borrows the mirror's objects (`objects/info/alternates`) instead of copying
//! them. So after a host's first job on a repository, preparing another
//! workspace transfers only new commits over the network and copies no history.
//!
//! The mirror never collects garbage (`gc.auto=0`), so objects a workspace
//! borrows stay. Processes on one host share it under a file lock.

use std::path::{Path, PathBuf};

use agentq_shared::{config::Config, input::DispatchInput};

use crate::git::{git, git_with, Credentials};

/// The mirror of `{org}/{repo}` on this host.
pub fn mirror_dir(cfg: &Config, input: &DispatchInput) -> PathBuf {
    cfg.workspace_root
        .join(crate::deadman::RUN_DIR)
        .join("mirrors")
        .join(&input.org)
        .join(format!("{}.git", input.repo))
}

/// Brings the mirror of `url` at `dir` up to date: every branch, and
/// `base_spec` (the job's base, fetched into a ref of the mirror's own named by
/// the caller). Creates the mirror on first use.
///
/// # Errors
/// File system or git errors.
pub async fn update(
    dir: &Path,
    url: &str,
    base_spec: &str,
    creds: Option<&Credentials>,
) -> anyhow::Result<()> {
    let parent = dir
        .parent()
        .ok_or_else(|| anyhow::anyhow!("mirror path has no parent"))?;
    std::fs::create_dir_all(parent)?;
    let lock = lock(parent.join(format!(
        "{}.lock",
        dir.file_name().unwrap_or_default().to_string_lossy()
    )))
    .await?;
    if !dir.join("HEAD").is_file() {
        if std::fs::symlink_metadata(dir).is_ok() {
            std::fs::remove_dir_all(dir)?;
        }
        git(
            parent,
            &["init", "--quiet", "--bare", &dir.to_string_lossy()],
        )
        .await?;
        git(dir, &["config", "gc.auto", "0"]).await?;
    }
    git_with(
        dir,
        &[
            "fetch",
            "--quiet",
            "--no-tags",
            "--prune",
            "--",
            url,
            "+refs/heads/*:refs/heads/*",
            base_spec,
        ],
        creds,
    )
    .await?;
    drop(lock);
    Ok(())
}

/// Makes the worker repository at `git_dir` borrow the mirror's objects.
///
/// # Errors
/// File system errors.
pub fn borrow_objects(git_dir: &Path, mirror: &Path) -> std::io::Result<()> {
    let info = git_dir.join("objects/info");
    std::fs::create_dir_all(&info)?;
    let objects = mirror.join("objects");
    agentq_shared::fsutil::write_atomic(
        &info.join("alternates"),
        format!("{}\n", objects.display()).as_bytes(),
    )
}

/// An exclusive lock on `path` (created if needed), held until dropped.
async fn lock(path: PathBuf) -> anyhow::Result<std::fs::File> {
    tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        f.lock()?;
        Ok(f)
    })
    .await?
    .map_err(Into::into)
}
