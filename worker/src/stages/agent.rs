//! The agent's stage: its container run (a held one given its command, or
//! one started now), and what its run means.

use std::time::Duration;

use agentq_shared::{
    agent::AgentSpec,
    container::{agent_container, encode_argv},
    outcome::{decide_outcome, Ended, RunOutcome},
    status::{read_blocked, JobState},
    transition::{Note, Outcome, Transition},
};
use tokio::sync::watch;

use crate::{
    docker,
    guard::StopReason,
    prep::Prepared,
    report::{self, ForgeErrors},
    run::{Run, RunDirs},
};

use super::{
    prep::{note_container, HeldAgent},
    AgentRun, StageError,
};

/// The agent runs in its container (time tracked on the forge around it), and
/// the outcome rules say what its run means.
pub(super) async fn agent_stage(
    run: &Run<'_>,
    agent: &AgentSpec,
    prepared: &Prepared,
    runs: u32,
    stop: &watch::Receiver<StopReason>,
    forge: &mut ForgeErrors,
    held: &mut Option<HeldAgent>,
) -> Result<AgentRun, StageError> {
    let (ctx, rec) = (run.ctx, run.rec);
    let ws = &prepared.workspace;
    run.write_status(
        ws,
        &run.status(JobState::Running, runs, prepared.branch.clone()),
    );
    let dirs = RunDirs::of(ws);
    let cut =
        agentq_shared::container::prompt_cut(&run.container_job(agent, &prepared.prompt, &dirs))
            .map(|c| c.describe())
            .unwrap_or_default();
    if !cut.is_empty() {
        tracing::info!(job = %rec.id, "{cut}");
    }
    run.hold
        .go(Transition::running(runs, &prepared.prompt, &cut))
        .await?;
    match *stop.borrow() {
        StopReason::Shutdown | StopReason::StopNow => return Err(StageError::Interrupted),
        StopReason::Fenced => return Err(StageError::SelfFenced),
        _ => {}
    }
    crate::fault::panic_at("agent");
    let clock = report::start_timer(ctx, rec, forge).await;
    // The working tree is the agent's from here on: the guard measures it.
    run.tree_arm.arm();
    let opened = ctx.breaker.times_opened();
    let began = std::time::Instant::now();
    let ended = run_agent(run, agent, prepared, stop.clone(), held.take()).await;
    let (ended, after) = match ended {
        Ok((ended, after)) => (Ok(ended), after),
        Err(e) => (Err(e), Vec::new()),
    };
    run.tree_arm.disarm();
    let ran_for = began.elapsed();
    report::track_time(ctx, rec, runs, &clock, forge).await;
    let ended = match ended {
        Ok(ended) => ended,
        Err(e) => {
            crate::summary::discard(&rec.id, ws).await;
            return Err(StageError::Infra(e, Some(ws.clone())));
        }
    };

    // From here on the working tree is the agent's: it is read only through
    // `read_blocked` (no links, no FIFOs, capped) and the export container.
    // Its output directory counts with it against the same bounds.
    let bounds = ctx.cfg.tree_bounds();
    let over = match &ended {
        Ended::Exited(_) | Ended::TimedOut if bounds.any() => {
            let (repo, out) = (ws.repo_dir(), ws.agent_out_dir());
            tokio::task::spawn_blocking(move || {
                agentq_shared::fsutil::trees_over(&[&repo, &out], &bounds)
            })
            .await
            .ok()
            .flatten()
        }
        _ => None,
    };
    // The agent's final message, read as data; its directory goes with it.
    let summary = crate::summary::take_summary(&rec.id, ws).await;
    let recorded = !matches!(ended, Ended::Interrupted | Ended::Fenced);
    if recorded && (!summary.text.is_empty() || !summary.note.is_empty()) {
        run.hold.note(&Note::summary(&summary)).await?;
    }
    // A failed run whose cause the agent cannot have made (a disk that filled
    // while its tree stayed within bounds, a host that degraded meanwhile) is
    // the host's failure: retried, no pool backoff.
    let tree_over = over.is_some() || matches!(ended, Ended::WorkspaceOver(_));
    let failed = matches!(ended, Ended::Exited(c) if c != 0) || ended == Ended::TimedOut;
    let end = agentq_shared::outcome::RunEnd {
        failed,
        tree_over,
        free: if failed && !tree_over {
            crate::space::free_bytes(&ctx.cfg.workspace_root)
        } else {
            None
        },
        floor: ctx.cfg.min_free_bytes(),
        degraded_meanwhile: (ctx.breaker.times_opened() != opened)
            .then(|| ctx.breaker.degraded().map(|(w, _)| w).unwrap_or_default()),
    };
    if let Some(why) = agentq_shared::outcome::host_failure(&end) {
        return Err(StageError::Infra(anyhow::anyhow!(why), Some(ws.clone())));
    }
    let repo = ws.repo_dir();
    match decide_outcome(
        &ended,
        over.as_ref(),
        || read_blocked(&repo),
        ctx.cfg.timeout_for(agent.pool()),
    ) {
        RunOutcome::Ended {
            outcome,
            exit_code,
            take_commits,
        } => Ok(AgentRun {
            // Only a failed run (a question in BLOCKED.md stands).
            quota: match ended {
                Ended::Exited(code)
                    if code != 0 && !tree_over && outcome.state() == JobState::Failed =>
                {
                    crate::quota::limit_hit(ctx, agent, &ws.agent_log(agent.pool()))
                }
                _ => None,
            },
            outcome: why_not_started(outcome, exit_code, &ws.agent_log(agent.pool())),
            exit_code,
            take_commits,
            ran_for,
            tree_over,
            summary,
            after,
        }),
        RunOutcome::Interrupted => Err(StageError::Interrupted),
        RunOutcome::SelfFenced => Err(StageError::SelfFenced),
    }
}

/// An agent that could not start (exit 126 or 127 from the watchdog): the
/// failure says why, from the watchdog's line at the start of the agent's
/// log ("cannot run \"gemini\": Argument list too long ... over the 128 KiB
/// the kernel allows in one argument"), not only the exit code.
pub(super) fn why_not_started(
    outcome: Outcome,
    exit_code: Option<i64>,
    log: &std::path::Path,
) -> Outcome {
    if !matches!(exit_code, Some(126 | 127)) || outcome.state() != JobState::Failed {
        return outcome;
    }
    // The worker's own file: its first 16 KiB.
    let mut head = Vec::new();
    let read = std::fs::File::open(log).and_then(|f| {
        std::io::Read::read_to_end(&mut std::io::Read::take(f, 16 * 1024), &mut head)
    });
    if read.is_err() {
        return outcome;
    }
    match watchdog_start_error(&String::from_utf8_lossy(&head)) {
        Some(why) => Outcome::fail(format!("{}: {why}", outcome.message())),
        None => outcome,
    }
}

/// The watchdog's "cannot run" or "cannot open" line in the start of a log.
pub(super) fn watchdog_start_error(log_head: &str) -> Option<String> {
    log_head
        .lines()
        .find(|l| {
            l.starts_with("agentq-watchdog: cannot run ")
                || l.starts_with("agentq-watchdog: cannot open ")
        })
        .map(|l| agentq_shared::text::cut(l.trim(), 600))
}

/// Runs the agent: gives a held container its command, or starts one. With
/// a watchdog, also what the watchdog read out after it (see
/// [`after_sink`]).
pub(super) async fn run_agent(
    run: &Run<'_>,
    agent: &AgentSpec,
    prepared: &Prepared,
    stop: watch::Receiver<StopReason>,
    held: Option<HeldAgent>,
) -> anyhow::Result<(Ended, Vec<docker::Section>)> {
    let ctx = run.ctx;
    let ws = &prepared.workspace;
    let dirs = RunDirs::of(ws);
    let job = run.container_job(agent, &prepared.prompt, &dirs);
    let body = agent_container(&ctx.cfg, &job, |k| std::env::var(k).ok());
    let timeout = Duration::from_secs(ctx.cfg.timeout_for(agent.pool()));
    let grace = Duration::from_secs(ctx.cfg.docker.stop_grace_secs);
    let log = ws.agent_log(agent.pool());
    let after = after_sink(run, prepared);
    let tail = docker::LogTail {
        hold: run.hold.clone(),
        after: after.clone(),
    };
    let (started, caches) = match held {
        Some(HeldAgent {
            started,
            go,
            caches,
        }) => {
            let argv = encode_argv(body.cmd.as_deref().unwrap_or_default());
            if let Err(e) = agentq_shared::fsutil::write_atomic(&go, &argv) {
                docker::remove(&ctx.docker, &started.id).await;
                return Err(anyhow::Error::new(e).context("cannot give the agent its command"));
            }
            (started, caches)
        }
        None => {
            let mut body = body;
            let caches = super::prep::agent_caches(run, &ws.dir, &mut body).await;
            let started = docker::start(
                &ctx.docker,
                &run.agent_container_name(),
                body,
                note_container(run),
            )
            .await?;
            (started, caches)
        }
    };
    let (container, ended) =
        docker::finish_kept(&ctx.docker, started, &log, tail, timeout, grace, stop).await;
    // Removed beside what follows, whatever the run's end (see
    // `crate::run::Removals`); its caches stay in use until it is gone.
    run.removals.remove(ctx, container.clone(), caches);
    let ended = ended?;
    let _ = run.hold.note(&Note::container(&container)).await;
    Ok((ended, after.map(|a| a.take()).unwrap_or_default()))
}

/// The watchdog's plan for after the agent (its commits since the start
/// commit as a bundle, its uncommitted work as a patch: see
/// [`after_plan`](agentq_shared::container::after_plan)), written to the
/// run's heartbeat directory (read-only in the container) before the agent
/// can start, and where its frames go: `.meta/import-{attempt}.bundle`
/// (capped as the export container's) and `.meta/leftovers-{attempt}.patch`.
/// `None` without a watchdog or when the plan cannot be written: the export
/// and leftovers containers run afterwards, as before.
fn after_sink(run: &Run<'_>, prepared: &Prepared) -> Option<docker::AfterSink> {
    let beat = run.beat?;
    let plan = agentq_shared::container::after_plan(&prepared.start_sha);
    let file = beat.dir().join(agentq_shared::container::AFTER_FILE);
    if let Err(e) = agentq_shared::fsutil::write_atomic(&file, &plan) {
        tracing::warn!(job = %run.rec.id, error = %e, "cannot write the watchdog's plan; the export runs in its own container");
        return None;
    }
    let meta = prepared.workspace.meta_dir();
    Some(
        docker::AfterSink::new(vec![
            (
                meta.join(format!("import-{}.bundle", run.attempt)),
                crate::import::bundle_cap(&run.ctx.cfg),
            ),
            (
                meta.join(format!("leftovers-{}.patch", run.attempt)),
                crate::leftovers::MAX_PATCH,
            ),
        ])
        // The agent's exit code follows the sections: the run's whole result.
        .ending(docker::Ends::WithExit),
    )
}

#[cfg(test)]
mod tests {
    use super::watchdog_start_error;

    #[test]
    fn a_start_failure_says_why_from_the_watchdogs_line() {
        let log = "agentq-watchdog: cannot run \"gemini\": Argument list too long (os error 7) (argument 2, the prompt most likely, is 141 KB, over the 128 KiB the kernel allows in one argument: give the agent its prompt as a file or on stdin)\n";
        let why = watchdog_start_error(log).unwrap();
        assert!(
            why.contains("is 141 KB, over the 128 KiB the kernel allows in one argument"),
            "{why}"
        );
        assert_eq!(watchdog_start_error("hello\nexit 126\n"), None);
    }
}
