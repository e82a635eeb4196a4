//! The Docker engine: the agent container's life (create, start, stream logs, wait,
//! kill on timeout or cancel, remove), and reaping containers left by dead attempts.

mod after;
mod capture;
mod errors;
mod network;
mod reap;
mod run;

use std::time::Duration;

use bollard::{
    query_parameters::{
        KillContainerOptionsBuilder, RemoveContainerOptionsBuilder, WaitContainerOptionsBuilder,
    },
    Docker,
};
use futures::StreamExt;

pub use self::{
    after::{AfterSink, Ends, Section, TIMED_OUT},
    capture::{run_capture, Captured, RanPast},
    errors::{engine_error, EngineError},
    network::ensure_network,
    reap::{reap_job, reap_stale},
    run::{finish_kept, run_container, start, LogTail, Started},
};

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

/// The output stream of an attached container.
type Output = std::pin::Pin<
    Box<
        dyn futures::Stream<Item = Result<bollard::container::LogOutput, bollard::errors::Error>>
            + Send,
    >,
>;

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
