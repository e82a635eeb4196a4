//! The Docker engine: the agent container's life (create, start, stream logs, wait,
//! kill on timeout or cancel, remove), and reaping containers left by dead attempts.

use std::{collections::HashMap, path::Path, time::Duration};

use agentq_shared::container::{LABEL_JOB, LABEL_NAMESPACE, LABEL_WORKER};
use bollard::{
    models::ContainerCreateBody,
    query_parameters::{
        CreateContainerOptionsBuilder, KillContainerOptionsBuilder, ListContainersOptionsBuilder,
        RemoveContainerOptionsBuilder, WaitContainerOptionsBuilder,
    },
    Docker,
};
use futures::StreamExt;
use tokio::{io::AsyncWriteExt, sync::watch};

use crate::stop::StopReason;

/// Where the agent's output is mirrored in Redis, for `agentq logs` on any host.
#[derive(Debug, Clone)]
pub struct LogTail {
    /// The run whose output it is (writes are fenced by its token).
    pub hold: crate::hold::Hold,
}

/// Why the engine could not create or start a container, sorted by what to
/// do about it.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The image is not on this host (404 "No such image"): this worker stops
    /// serving the pool and the job goes to a worker that has the image,
    /// spending no attempt.
    #[error("the image is not on this host: {0}")]
    MissingImage(String),
    /// The engine refused the container's configuration (400: a bind mount
    /// whose source does not exist, a bad image reference, a limit out of
    /// range): it would on every try. Preflight finds these before any job
    /// is taken (the pool is not served); at run time the host changed since,
    /// and it is handled as the host's trouble, like [`EngineError::Transient`].
    #[error("Docker refuses the container's configuration: {0}. Fix this worker's agentq.toml ([docker] or [agents.POOL]: image, mounts, memory_mb, cpus, pids_limit) or the host, then restart the worker")]
    BadConfig(String),
    /// Anything else (engine unreachable, a 5xx, a timeout): the host's
    /// passing trouble. The job is handed back, spending no attempt, and the
    /// failure counts toward the host circuit breaker.
    #[error("this host cannot start a container: {0}")]
    Transient(String),
}

impl From<bollard::errors::Error> for EngineError {
    fn from(e: bollard::errors::Error) -> Self {
        use bollard::errors::Error as E;
        match e {
            E::DockerResponseServerError {
                status_code: 404,
                message,
            } if message.contains("No such image") => EngineError::MissingImage(message),
            E::DockerResponseServerError {
                status_code: 400,
                message,
            } => EngineError::BadConfig(message),
            e => EngineError::Transient(e.to_string()),
        }
    }
}

fn host_err(e: bollard::errors::Error) -> anyhow::Error {
    EngineError::from(e).into()
}

/// The engine error in `e`, if it is one.
pub fn engine_error(e: &anyhow::Error) -> Option<&EngineError> {
    e.downcast_ref::<EngineError>()
}

pub use agentq_shared::outcome::Ended;

/// Connects to the local engine and agrees an API version with it.
///
/// # Errors
/// No engine reachable.
pub async fn connect() -> anyhow::Result<Docker> {
    let docker = Docker::connect_with_local_defaults()?;
    let docker = docker.negotiate_version().await.map_err(|e| {
        anyhow::anyhow!(
            "cannot reach the Docker engine ({e}); is dockerd running and DOCKER_HOST right?"
        )
    })?;
    Ok(docker)
}

/// Makes the agents' network if it is missing (a bridge with traffic between
/// containers disabled, labelled as agentq's) and returns its id.
///
/// Docker 20.10 allows several networks of one name, and workers starting
/// together may each create one: every worker then picks the oldest of that name
/// (ties by id), removes the others it can, and uses the network by id.
///
/// # Errors
/// Docker API errors.
pub async fn ensure_network(docker: &Docker, name: &str) -> anyhow::Result<String> {
    use bollard::models::NetworkCreateRequest;
    if named_networks(docker, name).await?.is_empty() {
        let req = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            options: Some(HashMap::from([(
                "com.docker.network.bridge.enable_icc".to_string(),
                "false".to_string(),
            )])),
            labels: Some(HashMap::from([(
                "agentq.network".to_string(),
                "agents".to_string(),
            )])),
            ..Default::default()
        };
        if let Err(e) = docker.create_network(req).await {
            tracing::debug!(error = %e, "create network (another worker may have made it)");
        }
    }
    let found = named_networks(docker, name).await?;
    let Some(keep) = oldest_network(&found) else {
        anyhow::bail!("cannot create the agents' network `{name}`");
    };
    for (_, other) in found.iter().filter(|(_, id)| *id != keep) {
        let _ = docker.remove_network(other).await;
    }
    Ok(keep)
}

/// The id of the oldest of (created, id) pairs, ties by id: the one network
/// every worker keeps. Docker writes `created` with its trailing zeros cut
/// (`…58.12345Z` is earlier than `…58.123456789Z`), so the times are compared
/// as times, not as text: compared as text, two workers could each keep a
/// different network and remove the other's.
fn oldest_network(found: &[(String, String)]) -> Option<String> {
    found
        .iter()
        .min_by_key(|(created, id)| {
            let at = chrono::DateTime::parse_from_rfc3339(created).ok();
            // An unreadable time sorts last.
            (at.is_none(), at, id.clone())
        })
        .map(|(_, id)| id.clone())
}

/// Docker's own network modes, never made or removed by agentq.
fn is_builtin_network(mode: &str) -> bool {
    matches!(mode, "none" | "host" | "bridge" | "default") || mode.starts_with("container:")
}

/// Whether Docker refused a create because network `name` is missing or
/// ambiguous.
fn network_missing_or_ambiguous(e: &bollard::errors::Error, name: &str) -> bool {
    let bollard::errors::Error::DockerResponseServerError { message, .. } = e else {
        return false;
    };
    message.contains(&format!("network {name}"))
        && (message.contains("not found") || message.contains("ambiguous"))
}

/// (created, id) of the networks named exactly `name`.
async fn named_networks(docker: &Docker, name: &str) -> anyhow::Result<Vec<(String, String)>> {
    let filters = HashMap::from([("name".to_string(), vec![name.to_string()])]);
    let list = docker
        .list_networks(Some(
            bollard::query_parameters::ListNetworksOptionsBuilder::new()
                .filters(&filters)
                .build(),
        ))
        .await?;
    Ok(list
        .into_iter()
        .filter(|n| n.name.as_deref() == Some(name))
        .filter_map(|n| Some((n.created.unwrap_or_default(), n.id?)))
        .collect())
}

/// How an export container ended.
#[derive(Debug)]
pub struct Captured {
    /// Exit code.
    pub code: i64,
    /// Bytes written to the output file.
    pub bytes: u64,
    /// The output went past the cap (the file holds only the cap).
    pub over_cap: bool,
    /// The start of stderr (at most 4 KiB), lossy.
    pub stderr: String,
}

/// A container that ran past its time limit (it was removed): the error
/// [`run_capture`] gives for its timeout, told from Docker's own errors.
#[derive(Debug, thiserror::Error)]
#[error("ran past {0:?}")]
pub struct RanPast(pub Duration);

/// Runs a short container whose stdout is data (e.g. a git bundle): attached
/// before start, stdout into `out` (created new, no symlink following), at most
/// `cap` bytes; killed after `timeout`. The container is removed afterwards.
///
/// # Errors
/// Docker API errors, I/O errors, the timeout ([`RanPast`]).
pub async fn run_capture(
    docker: &Docker,
    name: &str,
    body: ContainerCreateBody,
    out: &Path,
    cap: u64,
    timeout: Duration,
) -> anyhow::Result<Captured> {
    let opts = CreateContainerOptionsBuilder::new().name(name).build();
    let id = docker
        .create_container(Some(opts), body)
        .await
        .map_err(host_err)?
        .id;
    let result = tokio::time::timeout(timeout, capture(docker, &id, out, cap)).await;
    remove(docker, &id).await;
    match result {
        Ok(r) => r,
        Err(_) => Err(RanPast(timeout).into()),
    }
}

/// Attaches to the container's stdout and stderr, then starts it (attached
/// first, so no output is missed).
async fn attach_and_start(docker: &Docker, id: &str) -> Result<Output, bollard::errors::Error> {
    let attach = docker
        .attach_container(
            id,
            Some(
                bollard::query_parameters::AttachContainerOptionsBuilder::new()
                    .stdout(true)
                    .stderr(true)
                    .stream(true)
                    .build(),
            ),
        )
        .await?;
    docker
        .start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
        .await?;
    Ok(attach.output)
}

async fn capture(docker: &Docker, id: &str, out: &Path, cap: u64) -> anyhow::Result<Captured> {
    use bollard::container::LogOutput;
    let mut output = attach_and_start(docker, id).await.map_err(host_err)?;
    let file = agentq_shared::fsutil::create_nofollow(out)?;
    let mut file = tokio::fs::File::from_std(file);
    let (mut bytes, mut over_cap, mut stderr) = (0u64, false, Vec::new());
    while let Some(frame) = output.next().await {
        match frame? {
            LogOutput::StdOut { message } => {
                if over_cap {
                    continue;
                }
                let room = cap.saturating_sub(bytes) as usize;
                let take = message.len().min(room);
                file.write_all(&message[..take]).await?;
                bytes += take as u64;
                over_cap = take < message.len();
            }
            LogOutput::StdErr { message } => {
                let room = 4096usize.saturating_sub(stderr.len());
                stderr.extend_from_slice(&message[..message.len().min(room)]);
            }
            _ => {}
        }
    }
    file.flush().await?;
    let code = wait_exit(docker, id).await?;
    Ok(Captured {
        code,
        bytes,
        over_cap,
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    })
}

async fn wait_exit(docker: &Docker, id: &str) -> anyhow::Result<i64> {
    let mut stream = docker.wait_container(
        id,
        Some(
            WaitContainerOptionsBuilder::new()
                .condition("not-running")
                .build(),
        ),
    );
    match stream.next().await {
        Some(Ok(resp)) => Ok(resp.status_code),
        // bollard reports a non-zero exit as an error carrying the code.
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
        Some(Err(e)) => Err(anyhow::Error::from(e)),
        None => Err(anyhow::anyhow!("container wait ended without a status")),
    }
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

/// The output stream of an attached container.
type Output = std::pin::Pin<
    Box<
        dyn futures::Stream<Item = Result<bollard::container::LogOutput, bollard::errors::Error>>
            + Send,
    >,
>;

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
    mut stop: watch::Receiver<StopReason>,
) -> anyhow::Result<(String, Ended)> {
    let Started { id, output } = started;
    let began = std::time::Instant::now();
    let result = drive(docker, &id, output, log, tail, timeout, grace, &mut stop).await;
    let ran_ms = began.elapsed().as_millis() as u64;
    remove(docker, &id).await;
    tracing::trace!(container = %id, ran_ms, remove_ms = began.elapsed().as_millis() as u64 - ran_ms, "container done");
    result.map(|ended| (id, ended))
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

    let ended = tokio::select! {
        code = wait => Ended::Exited(code?),
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
    // engine never closes the stream).
    let _ = tokio::time::timeout(Duration::from_secs(60), log_task).await;
    Ok(ended)
}

async fn kill(docker: &Docker, id: &str) {
    let _ = docker
        .kill_container(
            id,
            Some(KillContainerOptionsBuilder::new().signal("KILL").build()),
        )
        .await;
}

/// SIGTERM, up to `grace` for the agent to exit, then SIGKILL.
pub async fn stop_gracefully(docker: &Docker, id: &str, grace: Duration) {
    let opts = bollard::query_parameters::StopContainerOptionsBuilder::new()
        .t(grace.as_secs() as i32)
        .build();
    if docker.stop_container(id, Some(opts)).await.is_err() {
        kill(docker, id).await;
    }
}

/// Force-removes a container, ignoring "no such container".
pub async fn remove(docker: &Docker, id: &str) {
    let opts = RemoveContainerOptionsBuilder::new()
        .force(true)
        .v(true)
        .build();
    if let Err(e) = docker.remove_container(id, Some(opts)).await {
        if !matches!(
            e,
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                ..
            }
        ) {
            tracing::warn!(container = id, error = %e, "cannot remove container");
        }
    }
}

/// Containers of namespace `ns` on this engine, filtered by extra label `k=v` pairs:
/// (container id, labels).
///
/// # Errors
/// Docker API errors.
pub async fn list_labelled(
    docker: &Docker,
    ns: &str,
    extra: &[(&str, &str)],
) -> anyhow::Result<Vec<(String, HashMap<String, String>)>> {
    let mut labels = vec![format!("{LABEL_NAMESPACE}={ns}")];
    labels.extend(extra.iter().map(|(k, v)| format!("{k}={v}")));
    let filters = HashMap::from([("label".to_string(), labels)]);
    let opts = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    let list = docker.list_containers(Some(opts)).await?;
    Ok(list
        .into_iter()
        .filter_map(|c| Some((c.id?, c.labels.unwrap_or_default())))
        .collect())
}

/// Removes containers of job `job_id` left by earlier attempts.
pub async fn reap_job(docker: &Docker, ns: &str, job_id: &str) -> usize {
    let Ok(list) = list_labelled(docker, ns, &[(LABEL_JOB, job_id)]).await else {
        return 0;
    };
    for (id, _) in &list {
        tracing::info!(job = job_id, container = %id, "removing container of an earlier attempt");
        remove(docker, id).await;
    }
    list.len()
}

/// Removes agent containers on this engine whose worker no longer holds their job's
/// run lease (the worker died, or the job moved on). `holder` answers which
/// fencing token holds a job's lease; when it cannot tell (Redis unreachable),
/// the container is left alone: "unknown" is not "nobody".
pub async fn reap_stale<F, Fut, E>(docker: &Docker, ns: &str, holder: F) -> usize
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<Option<String>, E>>,
    E: std::fmt::Display,
{
    let Ok(list) = list_labelled(docker, ns, &[]).await else {
        return 0;
    };
    let mut n = 0;
    for (id, labels) in list {
        let (Some(job), Some(worker)) = (labels.get(LABEL_JOB), labels.get(LABEL_WORKER)) else {
            continue;
        };
        let held_by = match holder(job.clone()).await {
            Ok(h) => h,
            Err(e) => {
                tracing::debug!(job = %job, error = %e, "cannot tell who holds the job; container left alone");
                continue;
            }
        };
        let ours = held_by
            .as_deref()
            .is_some_and(|t| agentq_shared::store::lease::token_worker(t) == worker);
        if !ours {
            tracing::info!(job = %job, container = %id, worker = %worker, "reaping stale agent container");
            crate::orphans::forget_beat_of(docker, &id).await;
            remove(docker, &id).await;
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::{oldest_network, EngineError};
    use bollard::errors::Error;

    #[test]
    fn a_missing_or_doubled_network_is_told_from_other_refusals() {
        use super::{is_builtin_network, network_missing_or_ambiguous};
        let refusal = |status_code, message: &str| Error::DockerResponseServerError {
            status_code,
            message: message.into(),
        };
        let net = "agentq-agents";
        assert!(network_missing_or_ambiguous(
            &refusal(404, "network agentq-agents not found"),
            net
        ));
        assert!(network_missing_or_ambiguous(
            &refusal(
                400,
                "network agentq-agents is ambiguous (2 matches found based on name)"
            ),
            net
        ));
        assert!(!network_missing_or_ambiguous(
            &refusal(404, "No such image: agentq-test-agent:latest"),
            net
        ));
        assert!(!network_missing_or_ambiguous(
            &refusal(404, "network other not found"),
            net
        ));
        assert!(is_builtin_network("none") && is_builtin_network("container:abc"));
        assert!(!is_builtin_network(net));
    }

    #[test]
    fn the_oldest_network_is_found_by_time_not_by_text() {
        let found = vec![
            // Later, but sorts first as text ('6' < 'Z').
            (
                "2026-11-29T00:45:58.123456789Z".to_string(),
                "b".to_string(),
            ),
            ("2026-11-29T00:45:58.12345Z".to_string(), "c".to_string()),
            ("garbled".to_string(), "a".to_string()),
        ];
        assert_eq!(oldest_network(&found).as_deref(), Some("c"));
        let tie = vec![
            ("2026-11-29T00:45:58Z".to_string(), "y".to_string()),
            ("2026-11-29T00:45:58.000Z".to_string(), "x".to_string()),
        ];
        assert_eq!(oldest_network(&tie).as_deref(), Some("x"));
        assert_eq!(oldest_network(&[]), None);
    }

    fn server(status_code: u16, message: &str) -> EngineError {
        Error::DockerResponseServerError {
            status_code,
            message: message.into(),
        }
        .into()
    }

    #[test]
    fn a_missing_image_is_the_hosts_not_the_jobs() {
        assert!(matches!(
            server(404, "No such image: core-dev:latest"),
            EngineError::MissingImage(_)
        ));
    }

    #[test]
    fn a_refused_configuration_says_what_to_fix() {
        let e = server(
            400,
            "invalid mount config for type \"bind\": bind source path does not exist: /x",
        );
        assert!(matches!(e, EngineError::BadConfig(_)));
        let text = e.to_string();
        assert!(
            text.contains("agentq.toml") && text.contains("mounts"),
            "{text}"
        );
    }

    #[test]
    fn engine_trouble_is_transient() {
        for e in [
            server(500, "driver failed programming external connectivity"),
            server(404, "No such container: abc"),
            Error::RequestTimeoutError.into(),
        ] {
            assert!(matches!(e, EngineError::Transient(_)), "{e}");
        }
    }
}
