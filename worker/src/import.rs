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
//!
//! Whatever the agent left is its own doing, so an export it makes fail is
//! the agent's outcome (the job fails at once, no retry, not counted against
//! the host): a FIFO, device or link where git expects `.git/HEAD` is refused
//! before any container starts, and an export that runs past
//! [`EXPORT_TIMEOUT`] (git waiting on a FIFO deeper in `.git`, a tree built to
//! be slow) is refused too. Only Docker failing to run the container is an
//! infrastructure error.
//!
//! Since issue 34 the export usually needs no container of its own: the
//! agent container's watchdog, once the agent and everything it left
//! running are gone, runs the same [`EXPORT_SCRIPT`] in the same sandbox and
//! hands the bundle over on a channel the agent never holds (see
//! `worker/watchdog/after.rs` for why it cannot be forged, and
//! [`crate::docker::AfterSink`]). Its result is taken exactly as the export
//! container's (same exit codes, same cap, same checks after); when it is
//! missing (no watchdog, a run stopped or killed, a plan that could not be
//! written), the export container runs as before.
//!
//! [`EXPORT_SCRIPT`]: agentq_shared::container::EXPORT_SCRIPT
//!
//! Most runs that commit nothing (reviews, questions, failures) need no export
//! container: when the tree's plain files show `HEAD` still on the start
//! commit, read as bytes without following a link or blocking (see
//! [`head_unmoved`]), that is git's answer too, and the container is skipped.

use std::time::Duration;

use agentq_shared::{agent::AgentSpec, container::export_container};

use crate::{
    docker,
    git::{git, is_ancestor, rev_parse},
    prep::Prepared,
    run::{Run, RunDirs},
};

/// Longest the export container may run: an honest export of a run's commits
/// takes seconds; past this the tree is made to stall it (the agent's doing).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(30);
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

/// The largest bundle taken: the workspace's size limit, or [`MAX_BUNDLE`].
pub(crate) fn bundle_cap(cfg: &agentq_shared::config::Config) -> u64 {
    cfg.workspace_limit_bytes().unwrap_or(MAX_BUNDLE)
}

/// Exports, fetches and checks the agent's commits (see the module docs).
/// `inside`: the export the watchdog made after the agent, if it did.
///
/// # Errors
/// [`ImportError`].
pub async fn import_commits(
    run: &Run<'_>,
    agent: &AgentSpec,
    prepared: &Prepared,
    inside: Option<&docker::Section>,
) -> Result<Imported, ImportError> {
    let (ctx, rec, attempt) = (run.ctx, run.rec, run.attempt);
    let ws = &prepared.workspace;
    let bundle = ws.meta_dir().join(format!("import-{attempt}.bundle"));
    if head_unmoved(&ws.dir, &prepared.branch, &prepared.start_sha) {
        tracing::debug!(job = %rec.id, "HEAD is where the run started: nothing to export");
        let _ = std::fs::remove_file(&bundle);
        return Ok(Imported::Nothing);
    }
    if let Some(why) = head_not_a_file(&ws.repo_dir()) {
        let _ = std::fs::remove_file(&bundle);
        return Err(ImportError::Refused(why));
    }
    let git_dir = ws.worker_repo();
    let cap = bundle_cap(&ctx.cfg);
    let ran_past = |past: Duration| {
        ImportError::Refused(format!(
            "exporting them ran past {past:?}: the working tree makes git wait (a FIFO or device in .git?)"
        ))
    };
    let captured = match inside.and_then(docker::Section::captured) {
        Some(c) if c.code == docker::TIMED_OUT => Err(ran_past(EXPORT_TIMEOUT)),
        Some(c) => {
            tracing::debug!(job = %rec.id, code = c.code, "the export made after the agent, in its container");
            Ok(c)
        }
        None => {
            let dirs = RunDirs::of(ws);
            let job = run.container_job(agent, "", &dirs);
            let body = export_container(&ctx.cfg, &job, &prepared.start_sha);
            let name = format!("agentq-{}-{}-export", rec.id.to_lowercase(), attempt);
            let _ = std::fs::remove_file(&bundle);
            docker::run_capture(&ctx.docker, &name, body, &bundle, cap, EXPORT_TIMEOUT)
                .await
                .map_err(|e| match e.downcast_ref::<docker::RanPast>() {
                    Some(past) => ran_past(past.0),
                    None => ImportError::Infra(e.context("export container")),
                })
        }
    };
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
                // Neither is needed here, and both are on the way to the
                // job's end: the worker repository's upkeep runs with
                // prep's fetches, and nothing reads FETCH_HEAD.
                "--no-auto-maintenance",
                "--no-write-fetch-head",
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
                "the branch's head {} does not descend from {}, the commit the run started from: {}",
                short(&head),
                short(&prepared.start_sha),
                rewrite_hint(&git_dir, &prepared.start_sha, &head).await
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

/// What a head that does not descend from `start` did to the history, in
/// words for the job's error (both commits are in the worker's repository
/// by now, parsed and checked).
async fn rewrite_hint(dir: &std::path::Path, start: &str, head: &str) -> &'static str {
    let parents = |c: &str| {
        let c = c.to_string();
        async move {
            git(dir, &["rev-list", "--parents", "--max-count=1", &c])
                .await
                .map(|l| {
                    l.split_whitespace()
                        .skip(1)
                        .map(str::to_string)
                        .collect::<Vec<_>>()
                })
                .ok()
        }
    };
    let same_parents = parents(start).await == parents(head).await;
    let related = git(dir, &["merge-base", start, head]).await.is_ok();
    match (same_parents, related) {
        (true, true) => "the agent rewrote that commit (an amend?)",
        (true, false) => "the agent replaced that root commit (an amend, or a reset to another root?)",
        (false, false) => {
            "the agent's history shares no commit with it (a reset to an unrelated root, an orphan branch?)"
        }
        (false, true) => "the agent rewrote the history the run started from (a reset or a rebase?)",
    }
}

/// Whether the run left `HEAD` on `start`, told from the working tree's plain
/// files alone: `repo/.git` a directory, its `HEAD` exactly `ref:
/// refs/heads/{branch}` (as prep left it) with that loose ref exactly `start`,
/// or `HEAD` exactly `start`. git resolves those files the same way (a loose
/// ref wins over a packed one), so a yes is git's answer. Anything else (a
/// link anywhere on the way, a FIFO, a gitfile, a packed or moved ref, another
/// branch, extra bytes) is a no, and the export container decides. Every file
/// is the agent's: it is read as bytes, capped, never followed, never waited
/// on ([`read_beneath`](agentq_shared::fsutil::read_beneath)).
fn head_unmoved(ws_dir: &std::path::Path, branch: &str, start: &str) -> bool {
    let read = |rel: &str| agentq_shared::fsutil::read_beneath(ws_dir, rel, 4096);
    let line = |text: &str| format!("{text}\n").into_bytes();
    match read("repo/.git/HEAD") {
        Some(head) if head == line(start) => true,
        Some(head) if head == line(&format!("ref: refs/heads/{branch}")) => {
            read(&format!("repo/.git/refs/heads/{branch}")) == Some(line(start))
        }
        _ => false,
    }
}

/// Why `repo/.git/HEAD` cannot be what git reads first, when `.git` is a
/// directory and `HEAD` in it is a FIFO, socket, device, directory or link
/// (`None` otherwise: a missing `HEAD` or a gitfile is the export's to tell).
/// Looked at without following or opening anything.
fn head_not_a_file(repo: &std::path::Path) -> Option<String> {
    use std::os::unix::fs::FileTypeExt;
    let git = std::fs::symlink_metadata(repo.join(".git")).ok()?;
    if !git.is_dir() {
        return None;
    }
    let ft = std::fs::symlink_metadata(repo.join(".git/HEAD"))
        .ok()?
        .file_type();
    let what = if ft.is_file() {
        return None;
    } else if ft.is_symlink() {
        "a symlink"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "a device"
    };
    Some(format!(".git/HEAD is {what}, not a file"))
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::{head_not_a_file, head_unmoved};
    use std::{fs, os::unix::fs::symlink, path::Path};

    const START: &str = "1111111111111111111111111111111111111111";
    const NEW: &str = "2222222222222222222222222222222222222222";
    const BRANCH: &str = "agent/fix-it";

    /// A workspace as prep leaves it: `HEAD` on the branch, the branch at START.
    fn workspace() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let git = t.path().join("repo/.git");
        fs::create_dir_all(git.join("refs/heads/agent")).unwrap();
        fs::write(git.join("HEAD"), format!("ref: refs/heads/{BRANCH}\n")).unwrap();
        fs::write(git.join("refs/heads").join(BRANCH), format!("{START}\n")).unwrap();
        t
    }

    fn unmoved(ws: &Path) -> bool {
        head_unmoved(ws, BRANCH, START)
    }

    #[test]
    fn a_tree_as_prep_left_it_or_detached_at_the_start_is_unmoved() {
        let ws = workspace();
        assert!(unmoved(ws.path()));
        fs::write(ws.path().join("repo/.git/HEAD"), format!("{START}\n")).unwrap();
        assert!(unmoved(ws.path()));
    }

    #[test]
    fn a_commit_another_branch_or_a_packed_ref_is_left_to_the_export() {
        let ws = workspace();
        let git = ws.path().join("repo/.git");
        fs::write(git.join("refs/heads").join(BRANCH), format!("{NEW}\n")).unwrap();
        assert!(!unmoved(ws.path()), "the branch moved");
        fs::write(git.join("HEAD"), format!("{NEW}\n")).unwrap();
        assert!(!unmoved(ws.path()), "detached elsewhere");
        fs::write(git.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        assert!(!unmoved(ws.path()), "another branch");
        fs::write(git.join("HEAD"), format!("ref: refs/heads/{BRANCH}\n")).unwrap();
        fs::remove_file(git.join("refs/heads").join(BRANCH)).unwrap();
        fs::write(
            git.join("packed-refs"),
            format!("{START} refs/heads/{BRANCH}\n"),
        )
        .unwrap();
        assert!(!unmoved(ws.path()), "packed refs are git's to read");
        fs::write(
            git.join("refs/heads").join(BRANCH),
            format!("{START}\n# more\n"),
        )
        .unwrap();
        assert!(!unmoved(ws.path()), "extra bytes");
    }

    /// Red team: the agent commits, then points the host at a decoy that says
    /// nothing moved. No link is followed, so the export container decides.
    #[test]
    fn decoys_behind_links_or_gitfiles_are_not_believed() {
        let decoy = workspace();
        let decoy_git = decoy.path().join("repo/.git");
        // `.git` a link to the decoy repository.
        let ws = workspace();
        let git = ws.path().join("repo/.git");
        fs::remove_dir_all(&git).unwrap();
        symlink(&decoy_git, &git).unwrap();
        assert!(!unmoved(ws.path()), ".git is a link");
        // `HEAD`, the ref, or a directory on its way a link to the decoy's.
        for (rel, target) in [
            ("HEAD", "HEAD"),
            ("refs/heads/agent/fix-it", "refs/heads/agent/fix-it"),
            ("refs/heads/agent", "refs/heads/agent"),
            ("refs", "refs"),
        ] {
            let ws = workspace();
            let git = ws.path().join("repo/.git");
            fs::write(git.join("refs/heads").join(BRANCH), format!("{NEW}\n")).unwrap();
            let at = git.join(rel);
            if at.is_dir() {
                fs::remove_dir_all(&at).unwrap();
            } else {
                fs::remove_file(&at).unwrap();
            }
            symlink(decoy_git.join(target), &at).unwrap();
            assert!(!unmoved(ws.path()), "{rel} is a link");
        }
        // A gitfile sending git elsewhere.
        let ws = workspace();
        let git = ws.path().join("repo/.git");
        fs::remove_dir_all(&git).unwrap();
        fs::write(&git, format!("gitdir: {}\n", decoy_git.display())).unwrap();
        assert!(!unmoved(ws.path()), ".git is a gitfile");
    }

    /// Red team: a FIFO where `HEAD` should be is refused at once, not waited on.
    #[test]
    fn a_fifo_for_head_is_not_waited_on() {
        let ws = workspace();
        let repo = ws.path().join("repo");
        assert_eq!(head_not_a_file(&repo), None);
        let head = repo.join(".git/HEAD");
        fs::remove_file(&head).unwrap();
        let c = std::ffi::CString::new(head.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(!unmoved(ws.path()));
        assert_eq!(
            head_not_a_file(&repo).as_deref(),
            Some(".git/HEAD is a FIFO, not a file")
        );
        fs::remove_file(&head).unwrap();
        symlink("/etc/hostname", &head).unwrap();
        assert_eq!(
            head_not_a_file(&repo).as_deref(),
            Some(".git/HEAD is a symlink, not a file")
        );
    }
}
