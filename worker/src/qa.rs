//! Stage 3, QA: build, lint and test the agent's work inside a container from the
//! job's image (never on the worker host), per the seed's `runQA`.
//!
//! QA checks a commit, never the agent's working tree: the agent branch's head
//! in the worker repository (the commit that is saved, pushed and given the
//! commit status), in a clean checkout ([`Checkout`]). A run that committed
//! nothing is checked on the commit it started from (the branch's earlier head,
//! or the base): the seed checks after every completed run, and no uncommitted
//! file can change the result.

use std::time::Duration;

use agentq_shared::{
    agent::AgentSpec,
    container::qa_container,
    language::{DetectLanguage, Language},
    status::QaStatus,
};
use tokio::sync::watch;

use crate::{
    checkout::{Checkout, CheckoutError},
    context::WorkerCtx,
    docker::{self, Ended},
    guard::StopReason,
    prep::Prepared,
    run::{Run, RunDirs},
};

/// Bytes of QA output kept in the record and `status.json`.
const TAIL_BYTES: usize = 4_000;

/// What QA found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QaResult {
    /// How QA went.
    pub status: QaStatus,
    /// The command that failed (joined with spaces).
    pub command: String,
    /// How it failed: exit code or timeout.
    pub detail: String,
    /// The end of the output of the last command run.
    pub output_tail: String,
}

impl QaResult {
    /// The error a QA failure puts on the job (upstream's wording).
    pub fn failure(&self) -> String {
        format!("QA check failed: `{}` {}", self.command, self.detail)
    }
}

/// The commands QA runs for this job: the pool's configured ones, else those of
/// the language detected in the working tree `tree`; none means QA is skipped.
pub fn commands(ctx: &WorkerCtx, agent: &AgentSpec, tree: &std::path::Path) -> Vec<Vec<String>> {
    if let Some(cmds) = configured(ctx, agent) {
        return cmds;
    }
    Language::detect(tree)
        .map(Language::qa_commands)
        .unwrap_or_default()
}

/// The commands QA runs on `commit` of the worker repository `git_dir`: the
/// pool's configured ones, else those of the language of the commit's top
/// directory, read with one `git ls-tree` (no checkout). Empty means QA is
/// skipped; `None` that the top directory's listing is over
/// [`TOP_LISTING_MAX`] (the agent's to make huge): the checkout, under its
/// bounds, decides then.
///
/// # Errors
/// Git errors (a commit or tree missing from the worker repository).
pub async fn commands_at(
    ctx: &WorkerCtx,
    agent: &AgentSpec,
    git_dir: &std::path::Path,
    commit: &str,
) -> anyhow::Result<Option<Vec<Vec<String>>>> {
    if let Some(cmds) = configured(ctx, agent) {
        return Ok(Some(cmds));
    }
    Ok(language_at(git_dir, commit)
        .await?
        .map(|lang| lang.map(Language::qa_commands).unwrap_or_default()))
}

/// Bytes of a commit's top-directory listing read to find its language.
const TOP_LISTING_MAX: usize = 1 << 20;

/// The language of `commit` of the worker repository `git_dir`, from the
/// marker files in its top directory: regular files only (mode `100644` or
/// `100755`; no link, directory or submodule), as a checkout would have
/// them ([`DetectLanguage`]). `None` when the listing is over
/// [`TOP_LISTING_MAX`].
async fn language_at(
    git_dir: &std::path::Path,
    commit: &str,
) -> anyhow::Result<Option<Option<Language>>> {
    let tree = format!("{commit}^{{tree}}");
    let (listing, cut) = crate::git::git_bounded(
        git_dir,
        &["ls-tree", "-z", "--full-tree", &tree],
        b"",
        TOP_LISTING_MAX,
        std::time::Duration::from_secs(60),
    )
    .await?;
    if cut {
        return Ok(None);
    }
    let listing = String::from_utf8_lossy(&listing);
    let files: std::collections::HashSet<&str> = listing
        .split('\0')
        .filter_map(|entry| {
            // `<mode> <type> <object>\t<name>`
            let (meta, name) = entry.split_once('\t')?;
            let mode = meta.split(' ').next()?;
            matches!(mode, "100644" | "100755").then_some(name)
        })
        .collect();
    Ok(Some(Language::from_markers(|f| files.contains(f))))
}

/// The pool's configured QA commands, if any.
fn configured(ctx: &WorkerCtx, agent: &AgentSpec) -> Option<Vec<Vec<String>>> {
    ctx.cfg.agents.get(agent.pool()).and_then(|a| a.qa.clone())
}

/// The commit QA checks (see the module docs): the agent branch's head in the
/// worker repository, else the commit the run started from.
pub async fn target(prepared: &Prepared) -> String {
    let local = format!("refs/heads/{}", prepared.branch);
    crate::git::rev_parse(&prepared.workspace.worker_repo(), &local)
        .await
        .unwrap_or_else(|| prepared.start_sha.clone())
}

pub(crate) fn tail(text: &str) -> String {
    if text.len() <= TAIL_BYTES {
        return text.to_string();
    }
    let mut start = text.len() - TAIL_BYTES;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}

/// Runs the QA commands in order on a clean checkout of `commit`, stopping at
/// the first failure; the checkout is removed afterwards. A commit with no
/// commands to run ([`commands_at`]) is skipped without a checkout. `held`: the QA
/// container started ahead ([`crate::qa_held`]), used when QA runs in one
/// container, else removed.
///
/// # Errors
/// Docker API errors, git or file system errors making the checkout
/// (infrastructure).
pub async fn run(
    run: &Run<'_>,
    agent: &AgentSpec,
    prepared: &Prepared,
    commit: &str,
    stop: watch::Receiver<StopReason>,
    held: Option<crate::qa_held::HeldQa>,
) -> anyhow::Result<Result<QaResult, Ended>> {
    let ws = &prepared.workspace;
    let began = std::time::Instant::now();
    let cmds = commands_at(run.ctx, agent, &ws.worker_repo(), commit).await;
    if !cmds
        .as_ref()
        .is_ok_and(|c| c.as_ref().is_none_or(|c| !c.is_empty()))
    {
        // Nothing to run (or no commit to read): no checkout is made, and
        // the directory made empty ahead for a held container goes (the
        // container itself with `held`, unused).
        let _ = std::fs::remove_dir(ws.qa_tree());
    }
    let known = cmds?;
    if known.as_ref().is_some_and(Vec::is_empty) {
        append(
            &ws.meta_dir().join("qa.log"),
            &format!("# QA of commit {commit}"),
            "",
        );
        return Ok(Ok(QaResult::skipped()));
    }
    let bounds = run.ctx.cfg.tree_bounds();
    let made = Checkout::make(ws, commit, run.ctx.agent_ids(), &bounds).await;
    if made.is_err() {
        // The directory made empty ahead for a held container goes too.
        let _ = std::fs::remove_dir(ws.qa_tree());
    }
    let checkout = match made {
        Ok(c) => c,
        Err(e @ (CheckoutError::TooBig { .. } | CheckoutError::TooMany { .. })) => {
            return Ok(Ok(QaResult {
                status: QaStatus::Failed,
                command: "checkout".into(),
                detail: e.to_string(),
                output_tail: String::new(),
            }))
        }
        Err(CheckoutError::Infra(e)) => return Err(e),
    };
    tracing::debug!(job = %run.rec.id, ms = began.elapsed().as_millis() as u64, "QA checkout made");
    append(
        &ws.meta_dir().join("qa.log"),
        &format!("# QA of commit {}", checkout.commit()),
        "",
    );
    // A top directory too long to list is read from the checkout.
    let cmds = known.unwrap_or_else(|| commands(run.ctx, agent, checkout.dir()));
    let result = run_in(run, agent, prepared, &checkout, &cmds, stop, held).await;
    checkout.remove().await;
    result
}

impl QaResult {
    /// QA with nothing to run.
    fn skipped() -> Self {
        QaResult {
            status: QaStatus::Skipped,
            command: String::new(),
            detail: "no build or test commands for this repository".into(),
            output_tail: String::new(),
        }
    }
}

async fn run_in(
    run: &Run<'_>,
    agent: &AgentSpec,
    prepared: &Prepared,
    checkout: &Checkout,
    cmds: &[Vec<String>],
    stop: watch::Receiver<StopReason>,
    held: Option<crate::qa_held::HeldQa>,
) -> anyhow::Result<Result<QaResult, Ended>> {
    let (ctx, rec, attempt) = (run.ctx, run.rec, run.attempt);
    let ws = &prepared.workspace;
    let log = ws.meta_dir().join("qa.log");
    // One container for all the commands, with the host's build caches.
    match crate::qa_together::run_steps(run, agent, prepared, checkout, cmds, stop.clone(), held)
        .await?
    {
        Some(Ok(steps)) => {
            return Ok(Ok(crate::qa_together::judge(
                cmds,
                steps,
                ctx.cfg.qa_timeout_secs,
                &log,
            )))
        }
        Some(Err(ended)) => return Ok(Err(ended)),
        None => {}
    }
    let mut last_output = String::new();
    let dirs = RunDirs {
        repo: checkout.dir().to_path_buf(),
        input: ws.input_dir(),
        out: None,
    };
    for (i, argv) in cmds.iter().enumerate() {
        let job = run.container_job(agent, "", &dirs);
        let body = qa_container(&ctx.cfg, &job, argv.clone());
        let name = format!("agentq-{}-{}-qa{}", rec.id.to_lowercase(), attempt, i + 1);
        let step_log = ws.meta_dir().join(format!("qa-{}.log", i + 1));
        let (_, ended) = docker::run_container(
            &ctx.docker,
            &name,
            body,
            &step_log,
            docker::LogTail {
                hold: run.hold.clone(),
                after: None,
            },
            Duration::from_secs(ctx.cfg.qa_timeout_secs),
            Duration::from_secs(ctx.cfg.docker.stop_grace_secs),
            stop.clone(),
            |_| {},
        )
        .await?;
        let output = std::fs::read(&step_log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        append(&log, &argv.join(" "), &output);
        last_output = output;
        let detail = match ended {
            Ended::Exited(0) => continue,
            Ended::Exited(code) => format!("exited with code {code}"),
            Ended::TimedOut => format!("ran past {}s", ctx.cfg.qa_timeout_secs),
            other => return Ok(Err(other)),
        };
        return Ok(Ok(QaResult {
            status: QaStatus::Failed,
            command: argv.join(" "),
            detail,
            output_tail: tail(&last_output),
        }));
    }
    Ok(Ok(QaResult {
        status: QaStatus::Passed,
        command: String::new(),
        detail: String::new(),
        output_tail: tail(&last_output),
    }))
}

pub(crate) fn append(log: &std::path::Path, command: &str, output: &str) {
    use std::io::Write;
    if let Ok(mut f) = agentq_shared::fsutil::append_nofollow(log) {
        let _ = writeln!(f, "$ {command}\n{output}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::checkout::tests::sh;

    /// A commit's language, read from its tree alone: a marker that is a
    /// link, a directory or below the top directory is no marker (as in a
    /// checkout); a regular one (executable too) is; a commit missing from
    /// the repository is an error, not "nothing to check".
    #[tokio::test]
    async fn a_commits_language_comes_from_the_regular_files_at_its_top() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path();
        sh(src, &["init", "-q"]);
        std::fs::write(src.join("README.md"), "x").unwrap();
        std::os::unix::fs::symlink("README.md", src.join("go.mod")).unwrap();
        std::fs::create_dir_all(src.join("Cargo.toml")).unwrap();
        std::fs::write(src.join("Cargo.toml/x"), "x").unwrap();
        std::fs::create_dir(src.join("sub")).unwrap();
        std::fs::write(src.join("sub/package.json"), "{}").unwrap();
        sh(src, &["add", "-A"]);
        sh(src, &["commit", "-qm", "one"]);
        let none = sh(src, &["rev-parse", "HEAD"]);
        std::fs::write(src.join("requirements.txt"), "").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            src.join("requirements.txt"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        sh(src, &["add", "-A"]);
        sh(src, &["commit", "-qm", "two"]);
        let python = sh(src, &["rev-parse", "HEAD"]);
        let git_dir = src.join(".git");
        assert_eq!(language_at(&git_dir, &none).await.unwrap(), Some(None));
        assert_eq!(
            language_at(&git_dir, &python).await.unwrap(),
            Some(Some(Language::Python))
        );
        assert!(language_at(&git_dir, &"0".repeat(40)).await.is_err());
    }

    /// A top directory whose listing is over the bound (the agent's to
    /// make) is not read whole: the checkout, under its bounds, decides.
    #[tokio::test]
    async fn a_top_directory_too_long_to_list_is_left_to_the_checkout() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path();
        sh(src, &["init", "-q"]);
        let blob = {
            use std::io::Write;
            let mut child = std::process::Command::new("git")
                .args(["hash-object", "-w", "--stdin"])
                .current_dir(src)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(b"x").unwrap();
            let out = child.wait_with_output().unwrap();
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        };
        // About 90 bytes listed per entry: 20 000 entries are over 1 MiB.
        let entries: String = (0..20_000)
            .map(|i| format!("100644 blob {blob}\tfile-with-a-longish-name-{i:06}\n"))
            .chain(std::iter::once(format!("100644 blob {blob}\tgo.mod\n")))
            .collect();
        let tree = {
            use std::io::Write;
            let mut child = std::process::Command::new("git")
                .arg("mktree")
                .current_dir(src)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(entries.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        };
        assert_eq!(
            language_at(&src.join(".git"), &tree).await.unwrap(),
            None,
            "a listing over {TOP_LISTING_MAX} bytes was read whole"
        );
    }
}
