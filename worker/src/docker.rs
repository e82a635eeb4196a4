//! The Docker engine: the agent container's life (create, start, stream logs, wait,
//! kill on timeout or cancel, remove), and reaping containers left by dead attempts.

use std::{collections::HashMap, path::Path, time::Duration};

use agentq_shared::container::{LABEL_JOB, LABEL_NAMESPACE, LABEL_WORKER};
use bollard::{
    models::ContainerCreateBody,
    query_parameters::{
        CreateContainerOptionsBuilder, KillContainerOptionsBuilder, ListContainersOptionsBuilder,
        LogsOptionsBuilder, RemoveContainerOptionsBuilder, WaitContainerOptionsBuilder,
    },
    Docker,
};
use futures::StreamExt;
use tokio::{io::AsyncWriteExt, sync::watch};

use crate::job::StopReason;

/// Where the agent's output is mirrored in Redis, for `agentq logs` on any host.
#[derive(Debug, Clone)]
pub struct LogTail {
    /// The store.
    pub store: agentq_shared::store::JobStore,
    /// The job.
    pub job_id: String,
}

/// Why a container run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The agent exited with this code.
    Exited(i64),
    /// The agent ran past its timeout and was killed.
    TimedOut,
    /// The job was cancelled and the container stopped.
    Cancelled,
    /// The worker is shutting down; the container was stopped and the job goes back.
    Interrupted,
}

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
    mut stop: watch::Receiver<StopReason>,
    on_created: impl FnOnce(&str),
) -> anyhow::Result<(String, Ended)> {
    let opts = CreateContainerOptionsBuilder::new().name(name).build();
    let created = docker.create_container(Some(opts), body).await?;
    let id = created.id;
    on_created(&id);
    let result = drive(docker, &id, log, tail, timeout, grace, &mut stop).await;
    remove(docker, &id).await;
    result.map(|ended| (id, ended))
}

async fn drive(
    docker: &Docker,
    id: &str,
    log: &Path,
    tail: LogTail,
    timeout: Duration,
    grace: Duration,
    stop: &mut watch::Receiver<StopReason>,
) -> anyhow::Result<Ended> {
    docker
        .start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
        .await?;

    let mut file = tokio::fs::File::create(log).await?;
    let mut logs = docker.logs(
        id,
        Some(
            LogsOptionsBuilder::new()
                .follow(true)
                .stdout(true)
                .stderr(true)
                .build(),
        ),
    );
    let log_task = tokio::spawn(async move {
        while let Some(Ok(chunk)) = logs.next().await {
            let bytes = chunk.into_bytes();
            if let Err(e) = tail.store.append_log(&tail.job_id, &bytes).await {
                tracing::debug!(job = %tail.job_id, error = %e, "cannot append to the log tail");
            }
            if file.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = file.flush().await;
        let _ = tail.store.expire_log(&tail.job_id).await;
    });

    let wait = async {
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
    };
    let stopped = async {
        loop {
            let reason = *stop.borrow();
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
            stop_gracefully(docker, id, grace).await;
            if reason == StopReason::Cancel { Ended::Cancelled } else { Ended::Interrupted }
        }
    };
    // Logs end when the container does; give them a moment to drain.
    let _ = tokio::time::timeout(Duration::from_secs(5), log_task).await;
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
/// run lease (the worker died, or the job moved on). `holder` answers who holds a
/// job's lease.
pub async fn reap_stale<F, Fut>(docker: &Docker, ns: &str, holder: F) -> usize
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Option<String>>,
{
    let Ok(list) = list_labelled(docker, ns, &[]).await else {
        return 0;
    };
    let mut n = 0;
    for (id, labels) in list {
        let (Some(job), Some(worker)) = (labels.get(LABEL_JOB), labels.get(LABEL_WORKER)) else {
            continue;
        };
        if holder(job.clone()).await.as_deref() != Some(worker.as_str()) {
            tracing::info!(job = %job, container = %id, worker = %worker, "reaping stale agent container");
            remove(docker, &id).await;
            n += 1;
        }
    }
    n
}
