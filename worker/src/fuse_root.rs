//! Containers' root directory without group bits on a `fuse-overlayfs` host
//! (issue 34): commands run as the agents' uid twice as fast.
//!
//! On Docker's `fuse-overlayfs` storage driver every lookup of an absolute
//! path by a user who does not own `/` (the agents' uid) asks the FUSE daemon
//! for `/`'s POSIX ACL, because `/` has group permission bits; a warm `go vet`
//! makes 9 500 such requests and runs twice as long as root's (BENCHMARKS.md,
//! "QA: the root directory's ACL"). The watchdog's `--open-root`
//! (`watchdog/open_root.rs`), run here once as root in a container that is
//! held (nothing of the agent's or QA's runs in it yet), takes `/`'s group
//! bits off, and the kernel then reads the "other" bits and asks nothing.
//!
//! Why it is safe: the exec runs our watchdog binary from its read-only mount,
//! never the image's, with the container's own confinement (no capabilities,
//! `no-new-privileges`, its seccomp profile); root in the container owns `/`,
//! so the mode changes without any capability, and only its group bits, and
//! not at all when the agents' group is `/`'s group (they would lose access).
//! Nothing else runs in the container yet, so nothing can race it. Failing it
//! costs only speed: the run goes on, said once in the worker's log at debug.
//!
//! Only on `fuse-overlayfs` (the engine's storage driver, read at start by
//! [`detect`]): elsewhere the kernel caches the ACL and the exec would only
//! cost time.

use agentq_shared::container::{WATCHDOG_EXE, WATCHDOG_MOUNT};
use bollard::{exec::StartExecResults, models::ExecConfig, Docker};
use futures::StreamExt;

/// The storage driver this applies to.
const FUSE_DRIVER: &str = "fuse-overlayfs";

/// Whether the engine's containers have their root on `fuse-overlayfs`.
pub(crate) async fn detect(docker: &Docker) -> bool {
    match docker.info().await {
        Ok(info) => {
            let fuse = info.driver.as_deref() == Some(FUSE_DRIVER);
            if fuse {
                tracing::info!(
                    "preflight: Docker stores containers on {FUSE_DRIVER}: QA's containers get their root directory's group bits off before QA runs (path lookups then skip a FUSE round trip), and their image's /usr from a read-only copy on a volume (made once per image, in the background)"
                );
            }
            fuse
        }
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the Docker engine's storage driver");
            false
        }
    }
}

/// The command run as root in the container.
pub(crate) fn command(agent_gid: u32) -> Vec<String> {
    vec![
        format!("{WATCHDOG_MOUNT}/{WATCHDOG_EXE}"),
        "--open-root".into(),
        agent_gid.to_string(),
    ]
}

/// Takes the group bits off container `id`'s root directory (see the module
/// docs), when the engine is on `fuse-overlayfs`; waits until done.
pub(crate) async fn open(ctx: &crate::context::WorkerCtx, id: &str) {
    if !ctx.fuse_rootfs {
        return;
    }
    let (_, gid) = ctx.agent_ids();
    if let Err(e) = exec_as_root(&ctx.docker, id, command(gid)).await {
        tracing::debug!(container = id, error = %e, "cannot take the group bits off the container's root directory; its commands run slower");
    }
}

async fn exec_as_root(docker: &Docker, id: &str, cmd: Vec<String>) -> anyhow::Result<()> {
    let exec = docker
        .create_exec(
            id,
            ExecConfig {
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                user: Some("0".into()),
                cmd: Some(cmd),
                ..Default::default()
            },
        )
        .await?;
    let mut said = Vec::new();
    if let StartExecResults::Attached { mut output, .. } = docker.start_exec(&exec.id, None).await?
    {
        // A few bytes at most (one line on failure); bounded all the same.
        while let Some(chunk) = output.next().await {
            let bytes = chunk?.into_bytes();
            let room = 1024usize.saturating_sub(said.len());
            said.extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
    }
    match docker.inspect_exec(&exec.id).await?.exit_code {
        Some(0) => Ok(()),
        code => anyhow::bail!("exit {code:?}: {}", String::from_utf8_lossy(&said).trim()),
    }
}

/// The watchdog's own decision, tested here (build.rs builds the watchdog,
/// not `cargo test`).
#[cfg(test)]
#[allow(dead_code)]
#[path = "../watchdog/open_root.rs"]
mod open_root;

#[cfg(test)]
mod tests {

    #[test]
    fn it_runs_the_watchdog_from_its_mount_with_the_agents_group() {
        assert_eq!(
            super::command(1000),
            ["/agentq-bin/agentq-watchdog", "--open-root", "1000"]
        );
    }
}
