//! Git remotes: bare repositories in a temp directory.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// Bare git repositories under `{base}/{org}/{repo}.git`, the worker's `git_base`.
pub struct GitRemotes {
    /// The temp directory holding them.
    pub base: tempfile::TempDir,
}

fn run_git(dir: &Path, args: &[&str]) -> String {
    // Workspaces belong to the agents' user; the tests look at them as root.
    let out = Command::new("git")
        .args(["-c", "safe.directory=*"])
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs git in `dir` and returns its stdout, failing the test on error.
pub fn git(dir: &Path, args: &[&str]) -> String {
    run_git(dir, args)
}

impl GitRemotes {
    /// An empty set of remotes.
    pub fn new() -> Self {
        Self {
            base: tempfile::tempdir().unwrap(),
        }
    }

    /// `git_base` for the worker.
    pub fn base(&self) -> String {
        self.base.path().to_string_lossy().into_owned()
    }

    /// Creates `{org}/{repo}.git` with one commit holding `files`.
    pub fn create(&self, org: &str, repo: &str, files: &[(&str, &str)]) -> PathBuf {
        let bare = self.base.path().join(org).join(format!("{repo}.git"));
        std::fs::create_dir_all(&bare).unwrap();
        run_git(
            &bare,
            &["init", "--quiet", "--bare", "--initial-branch=main"],
        );
        let work = tempfile::tempdir().unwrap();
        run_git(work.path(), &["init", "--quiet", "--initial-branch=main"]);
        let mut files = files.to_vec();
        if files.is_empty() {
            files.push(("README.md", "# test repo\n"));
        }
        for (name, body) in files {
            let p = work.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, body).unwrap();
        }
        run_git(work.path(), &["add", "-A"]);
        run_git(work.path(), &["commit", "--quiet", "-m", "initial"]);
        run_git(
            work.path(),
            &["push", "--quiet", bare.to_str().unwrap(), "main"],
        );
        bare
    }
}

impl GitRemotes {
    /// Publishes `refs/pull/{n}/head` in `{org}/{repo}.git` at `main`, as Forgejo
    /// does for pull request `n`.
    pub fn publish_pull(&self, org: &str, repo: &str, n: u64) {
        let bare = self.base.path().join(org).join(format!("{repo}.git"));
        run_git(
            &bare,
            &["update-ref", &format!("refs/pull/{n}/head"), "main"],
        );
    }
}

impl Default for GitRemotes {
    fn default() -> Self {
        Self::new()
    }
}
