//! One agent container's run: created, attached and started, its output
//! streamed to the log and the Redis tail, waited for or stopped, removed.

use std::{path::Path, time::Duration};

use bollard::{
    models::ContainerCreateBody, query_parameters::CreateContainerOptionsBuilder, Docker,
};
use futures::StreamExt;
use tokio::sync::watch;

use super::{
    attach_and_start,
    errors::host_err,
    kill,
    network::{ensure_network, is_builtin_network, network_missing_or_ambiguous},
    remove, stop_gracefully, wait_exit, Ended, Output,
};
use crate::stop::StopReason;

/// Where the agent's output is mirrored in Redis, for `agentq logs` on any host.
#[derive(Debug, Clone)]
pub struct LogTail {
    /// The run whose output it is (writes are fenced by its token).
    pub hold: crate::hold::Hold,
    /// With the watchdog's `--after`: the container's stdout is its frames,
    /// not the agent's output (which comes on stderr), read into this.
    pub after: Option<super::after::AfterSink>,
}

/// Runs one agent container to its end, streaming stdout and stderr into `log`.
/// The container is removed afterwards, whatever happened.
///
/// `stop` leaving [`StopReason::None`] stops the agent: SIGTERM, a grace period,
/// then kill.
///
/// # Errors
/// Docker API errors (infrastructure: the caller retries).
#[allow(clippy::too_many_arguments)]
pub async fn run_container(
    docker: &Docker,
    name: &str,
    body: ContainerCreateBody,
    log: &Path,
    tail: LogTail,
    timeout: Duration,
    grace: Duration,
    stop: watch::Receiver<StopReason>,
    on_created: impl Fn(&str),
) -> anyhow::Result<(String, Ended)> {
    let started = start(docker, name, body, on_created).await?;
    finish(docker, started, log, tail, timeout, grace, stop).await
}

/// A container created, attached and started, and not yet waited for: see
/// [`start`] and [`finish`].
pub struct Started {
    /// The container's id.
    pub id: String,
    output: Output,
}

/// Creates, attaches to and starts a container (`on_created` gets its id as
/// soon as it exists). A container that fails to start is removed. When
/// Docker cannot find the agents' network the body names (`docker network
/// prune` removes it whenever no agent runs), or cannot tell it from another
/// of the same name (made by a worker starting meanwhile), the network is
/// made again or its duplicates removed ([`ensure_network`]), and the
/// container tried once more.
///
/// # Errors
/// Docker API errors (infrastructure: the caller retries).
pub async fn start(
    docker: &Docker,
    name: &str,
    body: ContainerCreateBody,
    on_created: impl Fn(&str),
) -> anyhow::Result<Started> {
    let began = std::time::Instant::now();
    let network = body
        .host_config
        .as_ref()
        .and_then(|h| h.network_mode.clone())
        .filter(|n| !is_builtin_network(n));
    let mut made_again = false;
    loop {
        match create_and_start(docker, name, body.clone(), &on_created).await {
            Ok(started) => {
                tracing::trace!(container = %started.id, ms = began.elapsed().as_millis() as u64, "container started");
                return Ok(started);
            }
            Err(e) => match network.as_deref() {
                Some(net) if !made_again && network_missing_or_ambiguous(&e, net) => {
                    tracing::warn!(network = net, error = %e, "the agents' network is gone or doubled; making it again");
                    ensure_network(docker, net).await?;
                    made_again = true;
                }
                _ => return Err(host_err(e)),
            },
        }
    }
}

/// Creates, attaches to and starts a container; one that does not start is
/// removed.
async fn create_and_start(
    docker: &Docker,
    name: &str,
    body: ContainerCreateBody,
    on_created: &impl Fn(&str),
) -> Result<Started, bollard::errors::Error> {
    let opts = CreateContainerOptionsBuilder::new().name(name).build();
    let id = docker.create_container(Some(opts), body).await?.id;
    on_created(&id);
    // Attached before start, so no output is missed; agentq's containers keep no
    // engine-side log (it would be another unbounded copy on the host).
    match attach_and_start(docker, &id).await {
        Ok(output) => Ok(Started { id, output }),
        Err(e) => {
            remove(docker, &id).await;
            Err(e)
        }
    }
}

/// Streams a started container's output to `log` and the Redis tail, waits
/// for it to exit (or stops it: timeout, cancel, shutdown, fencing), then
/// removes it.
///
/// # Errors
/// Docker API errors (infrastructure: the caller retries).
pub async fn finish(
    docker: &Docker,
    started: Started,
    log: &Path,
    tail: LogTail,
    timeout: Duration,
    grace: Duration,
    stop: watch::Receiver<StopReason>,
) -> anyhow::Result<(String, Ended)> {
    let began = std::time::Instant::now();
    let (id, result) = finish_kept(docker, started, log, tail, timeout, grace, stop).await;
    let ran_ms = began.elapsed().as_millis() as u64;
    remove(docker, &id).await;
    tracing::trace!(container = %id, ran_ms, remove_ms = began.elapsed().as_millis() as u64 - ran_ms, "container done");
    result.map(|ended| (id, ended))
}

/// [`finish`] without the removal: the container has stopped (exited,
/// killed or stopped) when this returns, and the caller removes it, whatever
/// the result (the agent stage removes it beside the work that follows: see
/// [`crate::run::Removals`]).
pub async fn finish_kept(
    docker: &Docker,
    started: Started,
    log: &Path,
    tail: LogTail,
    timeout: Duration,
    grace: Duration,
    mut stop: watch::Receiver<StopReason>,
) -> (String, anyhow::Result<Ended>) {
    let Started { id, output } = started;
    let began = std::time::Instant::now();
    let result = drive(docker, &id, output, log, tail, timeout, grace, &mut stop).await;
    tracing::trace!(container = %id, ran_ms = began.elapsed().as_millis() as u64, "container stopped");
    (id, result)
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    docker: &Docker,
    id: &str,
    mut logs: Output,
    log: &Path,
    tail: LogTail,
    timeout: Duration,
    grace: Duration,
    stop: &mut watch::Receiver<StopReason>,
) -> anyhow::Result<Ended> {
    let mut file = crate::caplog::CappedLog::create(log)?;
    let after = tail.after.clone();
    // Output goes to the capped host log as it comes, and to the Redis tail in
    // batches (at most every 250 ms or 4 KiB), so a flood of small lines costs
    // Redis a bounded number of writes; lines over 16 KiB reach the tail cut,
    // with a marker (the host log keeps them).
    // Owned: it ends with the run, even one that unwinds.
    let log_task = crate::task::Owned::spawn(async move {
        let mut pending: Vec<u8> = Vec::new();
        let mut lines = agentq_shared::text::LineCutter::new(agentq_shared::text::LINE_MAX_BYTES);
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let flush = |pending: &mut Vec<u8>| {
            let chunk = std::mem::take(pending);
            let tail = tail.clone();
            async move {
                if chunk.is_empty() {
                    return;
                }
                match tail.hold.append_log(&chunk).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::debug!(job = %tail.hold.id, "log tail not written: the job is another run's now")
                    }
                    Err(e) => {
                        tracing::debug!(job = %tail.hold.id, error = %e, "cannot append to the log tail")
                    }
                }
            }
        };
        loop {
            tokio::select! {
                chunk = logs.next() => {
                    let Some(Ok(chunk)) = chunk else { break };
                    if let (Some(sink), bollard::container::LogOutput::StdOut { message }) = (&tail.after, &chunk) {
                        sink.push(message);
                        continue;
                    }
                    let bytes = chunk.into_bytes();
                    if file.write(&bytes).is_err() {
                        break;
                    }
                    lines.push(&bytes, &mut pending);
                    if pending.len() >= 4096 {
                        flush(&mut pending).await;
                    }
                }
                _ = tick.tick() => flush(&mut pending).await,
            }
        }
        lines.finish(&mut pending);
        flush(&mut pending).await;
        let _ = file.finish();
        let _ = tail.hold.store().expire_log(&tail.hold.id).await;
    });

    let wait = wait_exit(docker, id);
    let stopped = async {
        loop {
            let reason = stop.borrow().clone();
            if reason != StopReason::None {
                return reason;
            }
            if stop.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };

    let whole = async {
        match &after {
            Some(sink) => sink.whole().await,
            None => std::future::pending().await,
        }
    };
    let mut early = None;
    let ended = tokio::select! {
        code = wait => Ended::Exited(code?),
        code = whole => {
            // The frames hold the run's whole result (`docker::Ends`): the
            // watchdog exits with `code` right after them (the caller
            // removes the container, which ends it if it has not yet).
            early = after.as_ref().map(super::after::AfterSink::ends);
            Ended::Exited(code)
        }
        _ = tokio::time::sleep(timeout) => {
            kill(docker, id).await;
            Ended::TimedOut
        }
        reason = stopped => {
            if reason == StopReason::Fenced {
                // Another worker may take the job over soon: no grace period.
                kill(docker, id).await;
            } else {
                stop_gracefully(docker, id, grace).await;
            }
            match reason {
                StopReason::Fenced => Ended::Fenced,
                StopReason::Cancel => Ended::Cancelled,
                StopReason::WorkspaceOver(over) => Ended::WorkspaceOver(over),
                _ => Ended::Interrupted,
            }
        }
    };
    // Logs end when the container does: let them drain (bounded, in case the
    // engine never closes the stream); beside what follows when the run
    // ended with its sections.
    let drain = tokio::time::timeout(Duration::from_secs(60), log_task);
    if early == Some(super::Ends::WithSections) {
        tokio::spawn(drain);
    } else {
        let _ = drain.await;
    }
    Ok(ended)
}
