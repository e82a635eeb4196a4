//! Git on the worker host, always as an argument vector with a timeout; never a
//! shell string, never an interactive prompt.

use std::{path::Path, time::Duration};

use tokio::process::Command;

/// Longest a single git command may take.
pub const GIT_TIMEOUT: Duration = Duration::from_secs(600);

/// Runs `git args...` in `dir` and returns its trimmed stdout.
///
/// # Errors
/// Spawn failure, timeout, or a non-zero exit (with git's stderr).
pub async fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    git_env(dir, args, &[]).await
}

/// [`git`] with extra environment variables for this one process (e.g. the askpass
/// helper and the credentials it prints). Their values never reach errors or logs.
///
/// # Errors
/// As [`git`].
pub async fn git_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<String> {
    let mut cmd = Command::new("git");
    cmd.args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "true")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(GIT_TIMEOUT, cmd.output())
        .await
        .map_err(|_| anyhow::anyhow!("git {} timed out after {GIT_TIMEOUT:?}", args.join(" ")))?
        .map_err(|e| anyhow::anyhow!("cannot run git: {e}"))?;
    if !out.status.success() {
        anyhow::bail!(
            "git {} failed ({}): {}",
            args.first().copied().unwrap_or(""),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Whether `branch` exists locally in the repository at `dir`.
pub async fn has_branch(dir: &Path, branch: &str) -> bool {
    git(
        dir,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("refs/heads/{branch}"),
        ],
    )
    .await
    .is_ok()
}
