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
/// the language detected in `tree` (the checkout); none means QA is skipped.
pub fn commands(ctx: &WorkerCtx, agent: &AgentSpec, tree: &std::path::Path) -> Vec<Vec<String>> {
    if let Some(cmds) = ctx.cfg.agents.get(agent.pool()).and_then(|a| a.qa.clone()) {
        return cmds;
    }
    Language::detect(tree)
        .map(Language::qa_commands)
        .unwrap_or_default()
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
/// the first failure; the checkout is removed afterwards. `held`: the QA
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
    let bounds = run.ctx.cfg.tree_bounds();
    let began = std::time::Instant::now();
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
    let result = run_in(run, agent, prepared, &checkout, stop, held).await;
    checkout.remove().await;
    result
}

async fn run_in(
    run: &Run<'_>,
    agent: &AgentSpec,
    prepared: &Prepared,
    checkout: &Checkout,
    stop: watch::Receiver<StopReason>,
    held: Option<crate::qa_held::HeldQa>,
) -> anyhow::Result<Result<QaResult, Ended>> {
    let (ctx, rec, attempt) = (run.ctx, run.rec, run.attempt);
    let cmds = commands(ctx, agent, checkout.dir());
    if cmds.is_empty() {
        return Ok(Ok(QaResult {
            status: QaStatus::Skipped,
            command: String::new(),
            detail: "no build or test commands for this repository".into(),
            output_tail: String::new(),
        }));
    }
    let ws = &prepared.workspace;
    let log = ws.meta_dir().join("qa.log");
    // One container for all the commands, with the host's build caches.
    match crate::qa_together::run_steps(run, agent, prepared, checkout, &cmds, stop.clone(), held)
        .await?
    {
        Some(Ok(steps)) => {
            return Ok(Ok(crate::qa_together::judge(
                &cmds,
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
