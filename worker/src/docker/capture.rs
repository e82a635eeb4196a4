//! Short containers whose stdout is data (the export's bundle, the leftovers'
//! patch), captured to a file up to a cap.

use std::{path::Path, time::Duration};

use bollard::{
    models::ContainerCreateBody, query_parameters::CreateContainerOptionsBuilder, Docker,
};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::{attach_and_start, errors::host_err, remove, wait_exit};

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
