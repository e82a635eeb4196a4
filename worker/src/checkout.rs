//! A clean checkout of one commit of the worker repository, for QA.
//!
//! What is pushed is what was checked: QA never looks at the agent's working
//! tree (uncommitted files there are not in the pushed commit, and a file
//! deleted there still is). It gets a fresh directory, `.meta/qa-tree`, with
//! the files of the commit alone, written by the worker's git from its own
//! repository (no `.git` in it, so the QA container reaches nothing of the
//! worker's), given to the agents' user, and removed afterwards. A commit whose
//! files add up to more than the workspace limit is not written out at all (a
//! few compressed objects can stand for gigabytes of files).

use std::path::{Path, PathBuf};

use agentq_shared::{fsutil::TreeBounds, workspace::Workspace};

use crate::git::git;

/// `info/attributes` of the worker repository: overrides every attribute that
/// would run a filter or change bytes on checkout.
const NO_ATTRIBUTES: &[u8] = b"* -filter -text -eol -ident -working-tree-encoding\n";

/// Why there is no checkout.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    /// The commit's files are over the workspace's byte limit: the agent's
    /// doing.
    #[error(
        "the commit's files come to over {limit} bytes (the workspace limit); not checked out"
    )]
    TooBig {
        /// The limit.
        limit: u64,
    },
    /// The commit has more files than the workspace's entry limit
    /// (`workspace_limit_files`): the agent's doing.
    #[error("the commit has over {limit} files (workspace_limit_files); not checked out")]
    TooMany {
        /// The limit.
        limit: u64,
    },
    /// Git or the file system failed.
    #[error("cannot check the commit out for QA: {0:#}")]
    Infra(#[from] anyhow::Error),
}

impl From<std::io::Error> for CheckoutError {
    fn from(e: std::io::Error) -> Self {
        Self::Infra(e.into())
    }
}

impl From<tokio::task::JoinError> for CheckoutError {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::Infra(e.into())
    }
}

/// A checkout made by [`Checkout::make`]; [`Checkout::remove`] removes it.
#[derive(Debug)]
pub struct Checkout {
    dir: PathBuf,
    commit: String,
}

impl Checkout {
    /// Writes the files of `commit` (in the worker repository of `ws`) into
    /// `.meta/qa-tree`, replacing whatever an earlier run left there (in the
    /// same directory: a QA container started ahead, [`crate::qa_held`], has
    /// it mounted already), and gives
    /// them to the agents' user `(uid, gid)` when the worker runs as root.
    /// The commit's files must stay within `bounds`: at most `max_bytes`
    /// bytes and `max_entries` files (the workspace's limits; the commit is the
    /// agent's, and a few KiB of objects can stand for millions of files).
    ///
    /// # Errors
    /// [`CheckoutError`].
    pub async fn make(
        ws: &Workspace,
        commit: &str,
        (uid, gid): (u32, u32),
        bounds: &TreeBounds,
    ) -> Result<Self, CheckoutError> {
        if bounds.max_bytes.is_some() || bounds.max_entries.is_some() {
            let max_bytes = bounds.max_bytes.unwrap_or(u64::MAX);
            let max_files = bounds.max_entries.unwrap_or(u64::MAX);
            let (bytes, files) =
                files_size(&ws.worker_repo(), commit, max_bytes, max_files).await?;
            if bytes > max_bytes {
                return Err(CheckoutError::TooBig { limit: max_bytes });
            }
            if files > max_files {
                return Err(CheckoutError::TooMany { limit: max_files });
            }
        }
        let dir = ws.qa_tree();
        let d = dir.clone();
        tokio::task::spawn_blocking(move || empty_dir(&d)).await??;
        // The commit's `.gitattributes` are the agent's: no filter driver of
        // any configuration (a host's git-lfs, say) runs on its files, and they
        // are written byte for byte as committed (this file has the last word).
        let info = ws.worker_repo().join("info");
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&info)?;
            agentq_shared::fsutil::write_atomic(&info.join("attributes"), NO_ATTRIBUTES)
        })
        .await??;
        let work_tree = format!("--work-tree={}", dir.display());
        // `restore` writes the commit's files into the work tree alone: the
        // worker repository's index and refs are not touched.
        git(
            &ws.worker_repo(),
            &[
                "--git-dir=.",
                &work_tree,
                "restore",
                "--no-overlay",
                &format!("--source={commit}^{{commit}}"),
                "--worktree",
                "--",
                ".",
            ],
        )
        .await?;
        if agentq_shared::fsutil::current_ids().0 == 0 {
            let d = dir.clone();
            tokio::task::spawn_blocking(move || agentq_shared::fsutil::chown_tree(&d, uid, gid))
                .await??;
        }
        Ok(Self {
            dir,
            commit: commit.to_string(),
        })
    }

    /// The checkout's directory (mounted at `/workspace` in QA containers).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The commit checked out.
    pub fn commit(&self) -> &str {
        &self.commit
    }

    /// Removes the checkout (a failure is logged; the next checkout retries).
    pub async fn remove(self) {
        let d = self.dir.clone();
        match tokio::task::spawn_blocking(move || remove_tree(&d)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot remove the QA checkout")
            }
            Err(e) => tracing::warn!(error = %e, "cannot remove the QA checkout"),
        }
    }
}

/// Makes `.meta/qa-tree` of `ws` an empty directory, for a QA container
/// started before the checkout is made ([`crate::qa_held`]) to mount.
/// Called on the job's async path, so it only makes one: a directory left
/// with entries (an earlier attempt's QA, which wrote into it as the agents'
/// uid, as many files as it liked) is refused, and emptied later by
/// [`Checkout::make`] on a blocking thread.
///
/// # Errors
/// File system errors; a directory that is not empty.
pub fn make_empty(ws: &Workspace) -> std::io::Result<PathBuf> {
    let dir = ws.qa_tree();
    match std::fs::symlink_metadata(&dir) {
        Ok(m) if m.is_dir() => {
            if std::fs::read_dir(&dir)?.next().is_some() {
                return Err(std::io::Error::other("left with entries by an earlier run"));
            }
        }
        _ => empty_dir(&dir)?,
    }
    Ok(dir)
}

/// Makes `dir` an empty directory: its entries removed (never following a
/// link), the directory itself kept, so that a container that has it
/// mounted sees what is written in it next; made when missing, and in the
/// place of a file or link.
fn empty_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {
            for e in std::fs::read_dir(dir)? {
                remove_tree(&e?.path())?;
            }
            Ok(())
        }
        Ok(_) => {
            std::fs::remove_file(dir)?;
            std::fs::create_dir(dir)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir(dir),
        Err(e) => Err(e),
    }
}

/// The bytes and the number of the files of `commit` (blob sizes from `git
/// ls-tree -r -l`), counted up to just past either limit.
async fn files_size(
    git_dir: &Path,
    commit: &str,
    max_bytes: u64,
    max_files: u64,
) -> anyhow::Result<(u64, u64)> {
    let tree = format!("{commit}^{{tree}}");
    let listing = git(
        git_dir,
        &["ls-tree", "-r", "-l", "-z", "--full-tree", &tree],
    )
    .await?;
    let (mut total, mut files): (u64, u64) = (0, 0);
    for entry in listing.split('\0').filter(|e| !e.is_empty()) {
        // `<mode> <type> <object> <size>\t<path>`; the size is `-` for a
        // submodule's commit.
        let meta = entry.split('\t').next().unwrap_or("");
        let size = meta
            .split_whitespace()
            .nth(3)
            .and_then(|s| s.parse::<u64>().ok());
        total = total.saturating_add(size.unwrap_or(0));
        files += 1;
        if total > max_bytes || files > max_files {
            break;
        }
    }
    Ok((total, files))
}

/// Removes `dir` and everything in it, never following a link; a directory
/// whose permissions a QA command took away is given them back first.
fn remove_tree(dir: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
        Ok(m) if !m.is_dir() => return std::fs::remove_file(dir),
        Ok(_) => {}
    }
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            open_up(dir)?;
            std::fs::remove_dir_all(dir)
        }
        other => other,
    }
}

/// Makes every directory under `dir` (links not followed) the owner's to read,
/// write and enter.
fn open_up(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700))?;
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            if e.file_type()?.is_dir() {
                stack.push(e.path());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Runs git in `dir` (a test's identity), its output trimmed.
    pub(crate) fn sh(dir: &Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn bounds(max_bytes: Option<u64>, max_entries: Option<u64>) -> TreeBounds {
        TreeBounds {
            max_bytes,
            max_entries,
            budget: std::time::Duration::from_secs(5),
        }
    }

    /// The directory for a QA container started ahead is made where it is
    /// missing or a link (never followed), but one left with entries is
    /// refused, not walked: that is for `Checkout::make`, off the async path.
    #[test]
    fn make_empty_refuses_a_directory_left_with_entries() {
        let t = tempfile::tempdir().unwrap();
        let ws = Workspace {
            dir: t.path().join("ws"),
        };
        std::fs::create_dir_all(ws.meta_dir()).unwrap();
        let dir = make_empty(&ws).unwrap();
        assert!(dir.is_dir() && std::fs::read_dir(&dir).unwrap().next().is_none());
        assert_eq!(make_empty(&ws).unwrap(), dir);
        std::fs::write(dir.join("left"), "x").unwrap();
        assert!(make_empty(&ws).is_err());
        assert!(dir.join("left").exists());
        std::fs::remove_dir_all(&dir).unwrap();
        let elsewhere = t.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &dir).unwrap();
        let made = make_empty(&ws).unwrap();
        assert!(!std::fs::symlink_metadata(&made).unwrap().is_symlink());
        assert!(elsewhere.is_dir());
    }

    /// The checkout has the commit's files, not the working tree's, and no
    /// `.git`; the worker repository keeps no index; removal leaves nothing.
    #[tokio::test]
    async fn a_checkout_holds_the_commit_and_nothing_else() {
        let t = tempfile::tempdir().unwrap();
        let ws = Workspace {
            dir: t.path().join("ws"),
        };
        let src = t.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        sh(&src, &["init", "-q"]);
        std::fs::write(src.join("go.mod"), "module x\n").unwrap();
        std::fs::create_dir(src.join("d")).unwrap();
        // A filter driver in some configuration git reads, and the commit asks for it.
        let marker = t.path().join("filter-ran");
        std::fs::write(src.join(".gitattributes"), "* filter=evil\n").unwrap();
        std::fs::write(src.join("d/broken.go"), "package x\nbroken\n").unwrap();
        sh(&src, &["add", "-A"]);
        sh(&src, &["commit", "-qm", "one"]);
        let commit = sh(&src, &["rev-parse", "HEAD"]);
        // Not committed: the deletion and a new file.
        std::fs::remove_file(src.join("go.mod")).unwrap();
        std::fs::write(src.join("untracked"), "x").unwrap();
        std::fs::create_dir_all(ws.meta_dir()).unwrap();
        sh(
            &ws.meta_dir(),
            &["clone", "-q", "--bare", &src.to_string_lossy(), "git"],
        );
        assert!(matches!(
            Checkout::make(&ws, &commit, (0, 0), &bounds(Some(20), None)).await,
            Err(CheckoutError::TooBig { limit: 20 })
        ));
        // Three files (.gitattributes, d/broken.go, go.mod): over a limit of two.
        assert!(matches!(
            Checkout::make(&ws, &commit, (0, 0), &bounds(None, Some(2))).await,
            Err(CheckoutError::TooMany { limit: 2 })
        ));
        assert!(!ws.qa_tree().exists());
        sh(
            &ws.worker_repo(),
            &[
                "config",
                "filter.evil.smudge",
                &format!("touch {}; cat", marker.display()),
            ],
        );
        let c = Checkout::make(&ws, &commit, (0, 0), &bounds(Some(64), Some(3)))
            .await
            .unwrap();
        assert_eq!(c.commit(), commit);
        assert_eq!(
            std::fs::read_to_string(c.dir().join("go.mod")).unwrap(),
            "module x\n"
        );
        assert!(c.dir().join("d/broken.go").is_file());
        assert!(!c.dir().join("untracked").exists());
        assert!(
            !marker.exists(),
            "a filter driver ran on the commit's files"
        );
        assert!(!c.dir().join(".git").exists());
        assert!(!ws.worker_repo().join("index").exists());
        // A second checkout replaces what the first (or a QA command) left,
        // in the same directory (a held QA container has it mounted).
        std::fs::write(c.dir().join("leftover"), "x").unwrap();
        std::fs::create_dir(c.dir().join("sub")).unwrap();
        std::fs::write(c.dir().join("sub/deep"), "x").unwrap();
        // Held open as a mount holds it: what is written must show there.
        let held = std::fs::File::open(c.dir()).unwrap();
        let seen =
            Path::new("/proc/self/fd").join(std::os::fd::AsRawFd::as_raw_fd(&held).to_string());
        let c = Checkout::make(&ws, &commit, (0, 0), &bounds(None, None))
            .await
            .unwrap();
        assert!(!c.dir().join("leftover").exists() && !c.dir().join("sub").exists());
        assert!(
            seen.join("go.mod").is_file(),
            "the checkout's directory was replaced, not filled"
        );
        drop(held);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(c.dir().join("d"), std::fs::Permissions::from_mode(0o000))
            .unwrap();
        let dir = c.dir().to_path_buf();
        c.remove().await;
        assert!(!dir.exists());
    }
}
