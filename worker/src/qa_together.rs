//! QA in one container per run, not one per command (issue 34): the
//! container's watchdog runs nothing first and then the QA commands as its
//! `--after` plan (see `worker/watchdog/after.rs`), one after the other in
//! the checkout, each within `qa_timeout_secs`, stopping at the first that
//! fails; each command's output (stdout and stderr together) and exit code
//! come back as a section of its own on the watchdog's channel, so each is
//! still logged (`.meta/qa-N.log`) and judged on its own. The host's build
//! caches are mounted in ([`crate::qa_cache`]).

use std::time::Duration;

use agentq_shared::{
    agent::AgentSpec,
    container::{encode_argv, qa_container, BEAT_MOUNT},
};
use tokio::sync::watch;

use crate::{
    checkout::Checkout,
    docker::{self, Ended, TIMED_OUT},
    guard::StopReason,
    prep::Prepared,
    qa::QaResult,
    run::{Run, RunDirs},
};

/// The plan file in the run's heartbeat directory (read-only in the
/// container).
const QA_PLAN: &str = "qa-plan";
/// Most output kept per QA command.
const STEP_CAP: u64 = 16 * 1024 * 1024;

/// How the commands went: for each command run, its output file and its
/// exit code ([`TIMED_OUT`]: past its time limit); or how the container ended when it
/// did not finish (cancelled, shut down, fenced). `None`: no watchdog, the
/// caller runs one container per command.
pub(crate) type Steps = Result<Vec<(std::path::PathBuf, i64)>, Ended>;

/// The plan the watchdog runs (version 2: output merged, stop at the first
/// failure).
fn plan(cmds: &[Vec<String>], limit: Duration) -> Vec<u8> {
    let mut args: Vec<String> = vec![
        "2".into(),
        "/workspace".into(),
        limit.as_millis().to_string(),
        "ms".into(),
        cmds.len().to_string(),
    ];
    for c in cmds {
        args.push(c.len().to_string());
        args.extend(c.iter().cloned());
    }
    encode_argv(&args)
}

/// The QA container's body (its watchdog runs the plan, `--after`, and
/// nothing first), without the caches: the same whether it starts now or
/// ahead ([`crate::qa_held`]). `tree` is the checkout's directory.
pub(crate) fn body(
    run: &Run<'_>,
    agent: &AgentSpec,
    ws: &agentq_shared::workspace::Workspace,
    tree: &std::path::Path,
) -> bollard::models::ContainerCreateBody {
    let dirs = RunDirs {
        repo: tree.to_path_buf(),
        input: ws.input_dir(),
        out: None,
    };
    let job = run.container_job(agent, "", &dirs);
    let mut body = qa_container(&run.ctx.cfg, &job, Vec::new());
    if let Some(entrypoint) = body.entrypoint.as_mut() {
        let dashes = entrypoint
            .iter()
            .rposition(|a| a == "--")
            .unwrap_or(entrypoint.len());
        entrypoint.splice(
            dashes..dashes,
            ["--after".to_string(), format!("{BEAT_MOUNT}/{QA_PLAN}")],
        );
    }
    body
}

/// The host's build caches ([`crate::qa_cache`]) mounted into QA's `body`
/// (`ws_dir`: the workspace's directory), in use until dropped; and, on a
/// `fuse-overlayfs` host, the image's `/usr` from its copy on a volume
/// ([`crate::image_usr`]).
pub(crate) async fn with_caches(
    ctx: &crate::context::WorkerCtx,
    ws_dir: &std::path::Path,
    body: &mut bollard::models::ContainerCreateBody,
) -> Option<crate::qa_cache::CacheUse> {
    crate::image_usr::apply(ctx, body).await;
    let caches = crate::qa_cache::acquire(ctx, ws_dir).await;
    if let Some(c) = &caches {
        c.apply(body);
    }
    caches
}

/// The QA container's name.
pub(crate) fn name(run: &Run<'_>) -> String {
    format!("agentq-{}-{}-qa", run.rec.id.to_lowercase(), run.attempt)
}

/// The plan's file in the run's heartbeat directory.
pub(crate) fn plan_file(beat: &crate::deadman::Beat) -> std::path::PathBuf {
    beat.dir().join(QA_PLAN)
}

/// Runs `cmds` in one container on `checkout` (see the module docs): the one
/// started ahead when there is one ([`crate::qa_held`]; only the plan is
/// written then), else one started now.
///
/// # Errors
/// Docker API errors, the plan that cannot be written (infrastructure).
pub(crate) async fn run_steps(
    run: &Run<'_>,
    agent: &AgentSpec,
    prepared: &Prepared,
    checkout: &Checkout,
    cmds: &[Vec<String>],
    stop: watch::Receiver<StopReason>,
    held: Option<crate::qa_held::HeldQa>,
) -> anyhow::Result<Option<Steps>> {
    let ctx = run.ctx;
    let Some(beat) = run.beat else {
        return Ok(None);
    };
    let ws = &prepared.workspace;
    let limit = Duration::from_secs(ctx.cfg.qa_timeout_secs);
    let began = std::time::Instant::now();
    let mut held = match held {
        Some(h) => h.take().await,
        None => None,
    };
    // Where QA's time goes (debug): the wait for a held container still
    // starting, then the container's run and removal.
    let waited_ms = began.elapsed().as_millis() as u64;
    // A held container waits for this file: it runs the commands once the
    // plan is there, on the checkout made in its mounted directory.
    agentq_shared::fsutil::write_atomic(&plan_file(beat), &plan(cmds, limit))?;
    loop {
        let was_held = held.is_some();
        let (started, caches) = match held.take() {
            Some(h) => (h.started, h.caches),
            None => {
                let mut body = body(run, agent, ws, checkout.dir());
                let caches = with_caches(ctx, &ws.dir, &mut body).await;
                let started = docker::start(&ctx.docker, &name(run), body, |_| {}).await?;
                (started, caches)
            }
        };
        let files: Vec<_> = (1..=cmds.len())
            .map(|i| (ws.meta_dir().join(format!("qa-{i}.log")), STEP_CAP))
            .collect();
        // QA's work is all in the sections: the last one's end ends the run.
        let sink = docker::AfterSink::new(files.clone()).ending(docker::Ends::WithSections);
        // The watchdog bounds each command; the container as a whole gets
        // their sum and a minute more.
        let whole = limit * cmds.len() as u32 + Duration::from_secs(60);
        let (id, ended) = docker::finish_kept(
            &ctx.docker,
            started,
            &ws.meta_dir().join("qa-watchdog.log"),
            docker::LogTail {
                hold: run.hold.clone(),
                after: Some(sink.clone()),
            },
            whole,
            Duration::from_secs(ctx.cfg.docker.stop_grace_secs),
            stop.clone(),
        )
        .await;
        // Removed beside what follows (the verdict, the push), gone before
        // the job's end is written (`crate::run::Removals`); its caches stay
        // in use until then.
        run.removals.remove(ctx, id, caches);
        let ended = ended?;
        tracing::debug!(job = %run.rec.id, held = was_held, waited_ms, ran_ms = began.elapsed().as_millis() as u64 - waited_ms, "QA container done");
        let sections = sink.take();
        // A held container that ended before it ran anything (stopped by
        // someone else while it waited, its heartbeat gone stale): the
        // commands run in a container started now, once.
        let nothing_ran = sections.iter().all(|s| s.code.is_none() && s.bytes == 0);
        if was_held && nothing_ran && matches!(ended, Ended::Exited(c) if c != 0) {
            tracing::warn!(job = %run.rec.id, ?ended, "the QA container started ahead ended before its plan; starting another");
            // The next one takes its name: the dead one must be gone first.
            run.removals.wait().await;
            continue;
        }
        evict_later(run);
        let mut steps = Vec::new();
        for ((file, _), s) in files.into_iter().zip(sections) {
            match s.code {
                Some(code) => steps.push((file, code)),
                None => break,
            }
        }
        match ended {
            Ended::Exited(_) => {}
            Ended::TimedOut => {
                // Only a watchdog that could not stop a command gets here.
                steps.push((ws.meta_dir().join("qa-watchdog.log"), TIMED_OUT));
            }
            other => return Ok(Some(Err(other))),
        }
        return Ok(Some(Ok(steps)));
    }
}

/// Keeps the caches under `qa_cache_gb`, off the job's path.
fn evict_later(run: &Run<'_>) {
    let cfg = &run.ctx.cfg;
    if cfg.qa_cache_gb <= 0.0 {
        return;
    }
    // One walk at a time: what QA leaves in a cache (the repository's own
    // tests write there) may be many files, and every QA run ends here.
    static EVICTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if EVICTING.swap(true, std::sync::atomic::Ordering::AcqRel) {
        return;
    }
    let root = crate::qa_cache::root(run.ctx);
    let bound = (cfg.qa_cache_gb * 1e9) as u64;
    tokio::task::spawn_blocking(move || {
        // Let go however the walk ends (a panic included).
        struct Done;
        impl Drop for Done {
            fn drop(&mut self) {
                EVICTING.store(false, std::sync::atomic::Ordering::Release);
            }
        }
        let _done = Done;
        let emptied = crate::qa_cache::evict(&root, bound);
        if !emptied.is_empty() {
            tracing::info!(
                ?emptied,
                "build caches over qa_cache_gb: least recently used emptied"
            );
        }
    });
}

/// The result of the steps, as the per-command containers' loop gives it:
/// the first command that failed, or one that never ran (the container
/// ended before it), else passed.
pub(crate) fn judge(
    cmds: &[Vec<String>],
    steps: Vec<(std::path::PathBuf, i64)>,
    qa_timeout_secs: u64,
    log: &std::path::Path,
) -> QaResult {
    let mut last_output = String::new();
    let mut steps = steps.into_iter();
    for argv in cmds {
        let detail = match steps.next() {
            Some((file, code)) => {
                let output = std::fs::read(&file)
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                crate::qa::append(log, &argv.join(" "), &output);
                last_output = output;
                match code {
                    0 => continue,
                    TIMED_OUT => format!("ran past {qa_timeout_secs}s"),
                    code => format!("exited with code {code}"),
                }
            }
            None => "did not run: the QA container ended before it".to_string(),
        };
        return QaResult {
            status: agentq_shared::status::QaStatus::Failed,
            command: argv.join(" "),
            detail,
            output_tail: crate::qa::tail(&last_output),
        };
    }
    QaResult {
        status: agentq_shared::status::QaStatus::Passed,
        command: String::new(),
        detail: String::new(),
        output_tail: crate::qa::tail(&last_output),
    }
}
