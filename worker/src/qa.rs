//! Stage 3, QA: build, lint and test the agent's work inside a container from the
//! job's image (never on the worker host), per the seed's `runQA`.

use std::time::Duration;

use agentq_shared::{
    agent::AgentSpec, container::qa_container, language::Language, status::QaStatus,
};
use tokio::sync::watch;

use crate::{
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
/// the detected language; none means QA is skipped.
pub fn commands(ctx: &WorkerCtx, agent: &AgentSpec, prepared: &Prepared) -> Vec<Vec<String>> {
    if let Some(cmds) = ctx.cfg.agents.get(agent.pool()).and_then(|a| a.qa.clone()) {
        return cmds;
    }
    Language::detect(&prepared.workspace.repo_dir())
        .map(Language::qa_commands)
        .unwrap_or_default()
}

fn tail(text: &str) -> String {
    if text.len() <= TAIL_BYTES {
        return text.to_string();
    }
    let mut start = text.len() - TAIL_BYTES;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}

/// Runs the QA commands in order, stopping at the first failure.
///
/// # Errors
/// Docker API errors (infrastructure).
pub async fn run(
    run: &Run<'_>,
    agent: &AgentSpec,
    prepared: &Prepared,
    stop: watch::Receiver<StopReason>,
) -> anyhow::Result<Result<QaResult, Ended>> {
    let (ctx, rec, attempt) = (run.ctx, run.rec, run.attempt);
    let cmds = commands(ctx, agent, prepared);
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
    let mut last_output = String::new();
    let dirs = RunDirs::of(ws);
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

fn append(log: &std::path::Path, command: &str, output: &str) {
    use std::io::Write;
    if let Ok(mut f) = agentq_shared::fsutil::append_nofollow(log) {
        let _ = writeln!(f, "$ {command}\n{output}");
    }
}
