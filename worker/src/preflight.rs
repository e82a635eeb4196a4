//! What a worker checks before it takes jobs, each failure one clear line:
//! the Docker engine (its API version), each agent pool's image present
//! locally and Docker accepting its containers' configuration (one container
//! created, never started, and removed per image: mounts, limits, user), the
//! workspace root writable with free space, git, and with a forge configured,
//! that the forge answers and the token is valid (`GET /user`: in the
//! background, so that a hanging forge never holds the start up).
//!
//! A pool whose image is missing, or whose container Docker refuses, is not
//! served by this worker: it takes no job
//! of that pool (the registry says which pools each worker serves, and a pool
//! no live worker serves gets no slot), and it stops serving a pool whose image
//! disappears while it runs. Without any pool left the worker exits with
//! status 2.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
};

use agentq_shared::{
    config::{AgentRunIds, Config},
    container::{agent_container, ContainerJob},
    forge::ForgeClient,
};
use bollard::{query_parameters::CreateContainerOptions, Docker};

use crate::docker::EngineError;

/// This host cannot run agents at all: the worker exits with status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unfit(String);

fn unfit(why: impl Into<String>) -> anyhow::Error {
    Unfit(why.into()).into()
}

/// Less free space than this on the workspace root is reported.
const LOW_SPACE_BYTES: u64 = 1 << 30;

/// The pools this worker runs now; shared by the job handler, the registry
/// heartbeat and the run stage (which drops a pool whose image vanished).
#[derive(Debug, Clone, Default)]
pub struct Served(Arc<RwLock<BTreeSet<String>>>);

impl Served {
    /// Serves exactly `pools`.
    pub fn new(pools: impl IntoIterator<Item = String>) -> Self {
        Self(Arc::new(RwLock::new(pools.into_iter().collect())))
    }

    /// Whether this worker runs pool `pool`.
    pub fn serves(&self, pool: &str) -> bool {
        self.0.read().unwrap().contains(pool)
    }

    /// The pools, sorted.
    pub fn pools(&self) -> Vec<String> {
        self.0.read().unwrap().iter().cloned().collect()
    }

    /// Stops serving `pool`; true if it was served.
    pub fn drop_pool(&self, pool: &str) -> bool {
        self.0.write().unwrap().remove(pool)
    }
}

/// The checks' verdict: the pools this worker can run, or why it cannot run.
pub async fn check(cfg: &Config, docker: &Docker) -> anyhow::Result<Served> {
    match docker.version().await {
        Ok(v) => tracing::info!(
            engine = v.version.as_deref().unwrap_or("?"),
            api = v.api_version.as_deref().unwrap_or("?"),
            "preflight: Docker engine answers"
        ),
        Err(e) => {
            return Err(unfit(format!(
                "preflight: the Docker engine does not answer ({e}); is dockerd running and DOCKER_HOST right?"
            )))
        }
    }
    check_workspace_root(&cfg.workspace_root)?;
    match tokio::process::Command::new("git")
        .arg("--version")
        .output()
        .await
    {
        Ok(o) if o.status.success() => {}
        _ => {
            return Err(unfit(
                "preflight: git is not installed on this host (apt-get install -y git)",
            ))
        }
    }
    let mut served = Vec::new();
    let mut tried = std::collections::HashMap::new();
    for pool in cfg.agent_table().names() {
        let pool = pool.as_str();
        let image = cfg.image_for(pool);
        if let Err(e) = docker.inspect_image(image).await {
            tracing::error!(
                pool,
                image,
                error = %e,
                "preflight: image {image} of pool {pool} is not on this host; this worker takes no {pool} jobs (build or pull it, e.g. `docker pull {image}`, then restart the worker)"
            );
            continue;
        }
        // Pools whose containers differ only in name are tried once (a pool
        // with settings of its own is tried on its own).
        let own = cfg.agents.get(pool).map(|_| pool.to_string());
        let key = (image.to_string(), cfg.host_gateway_for(pool), own);
        if !tried.contains_key(&key) {
            let verdict = try_container(cfg, docker, pool).await;
            tried.insert(key.clone(), verdict);
        }
        match &tried[&key] {
            Ok(()) => served.push(pool.to_string()),
            Err(why) => tracing::error!(pool, "preflight: this worker takes no {pool} jobs: {why}"),
        }
    }
    if served.is_empty() {
        return Err(unfit(
            "preflight: no agent pool can run on this host (no pool's image is present, or Docker refuses their containers: see above)",
        ));
    }
    tracing::info!(pools = ?served, "preflight: serving these pools");
    Ok(Served::new(served))
}

/// Checks, in the background, that the forge answers and accepts the token
/// (`GET /user`), and that the token holds the scopes agentq needs
/// ([`agentq_shared::forge::NEEDED_SCOPES`], probed without writing
/// anything: see `ForgeClient::missing_scopes`), and logs the verdict, one
/// line per missing scope: the worker's start never waits on the forge, and
/// a forge that does not answer is told apart from one that refuses the
/// token. Forge trouble never stops jobs (write-back errors are recorded on
/// them and the write-back is done again later).
pub fn spawn_forge_check(
    cfg: &Config,
    forge: Option<ForgeClient>,
    services: &crate::services::Services,
) {
    let Some(forge) = forge else {
        return;
    };
    let url = cfg.forge.url.clone();
    let budget = std::time::Duration::from_secs(cfg.forge.timeout_secs.max(1));
    services.spawn("forge check", async move {
        let checked = tokio::time::timeout(budget, async {
            let missing = forge.missing_scopes().await?;
            // `read:user` missing: the token's user cannot be asked for.
            let user = if missing.is_empty() {
                Some(forge.current_user().await?)
            } else {
                None
            };
            Ok::<_, agentq_shared::forge::ForgeError>((user, missing))
        })
        .await;
        match checked {
            Ok(Ok((user, missing))) => {
                if let Some(u) = user {
                    tracing::info!(user = %u.login, "preflight: the forge answers, the token is valid and has the scopes agentq needs");
                }
                for m in missing {
                    tracing::error!(
                        forge = %url,
                        scope = m.scope,
                        "preflight: the forge token lacks scope {} (needed to {}): {}; give the token read:user, write:issue and write:repository",
                        m.scope,
                        m.needed_for,
                        m.message
                    );
                }
            }
            Ok(Err(e)) if matches!(e.status(), Some(401 | 403)) => {
                tracing::error!(forge = %url, error = %e, "preflight: the forge refused this worker's token (check the variable named by [forge] token_env)")
            }
            Ok(Err(e)) => {
                tracing::warn!(forge = %url, error = %e, "preflight: the forge cannot be reached now (check [forge] url); write-backs are done again later")
            }
            Err(_) => tracing::warn!(
                forge = %url,
                "preflight: the forge did not answer within {}s (forge.timeout_secs); write-backs are done again later",
                budget.as_secs()
            ),
        }
    });
}

/// Creates (never starts) and removes an agent container of `pool` as a job
/// would have it (image, mounts, limits, user), in scratch directories under
/// the workspace root, so that a configuration Docker refuses is found now
/// rather than on every job. Only a refusal (400) is an error: other trouble
/// is the engine's passing state, which jobs meet and handle.
async fn try_container(cfg: &Config, docker: &Docker, pool: &str) -> Result<(), String> {
    let scratch = cfg
        .workspace_root
        .join(".agentq-run")
        .join(format!("preflight-{}", std::process::id()));
    let (repo, input, out) = (
        scratch.join("repo"),
        scratch.join("input"),
        scratch.join("out"),
    );
    let made = std::fs::create_dir_all(&repo)
        .and_then(|()| std::fs::create_dir_all(&input))
        .and_then(|()| std::fs::create_dir_all(&out));
    if let Err(e) = made {
        return Err(format!("cannot make {}: {e}", scratch.display()));
    }
    // A pool whose command needs a model and has no default is tried with
    // one: the container's configuration is what is checked.
    let agent = cfg
        .agent_table()
        .parse(pool)
        .or_else(|_| cfg.agent_table().parse(&format!("{pool}:preflight")))
        .map_err(|e| e.to_string())?;
    let (uid, gid) = cfg.agent_run_ids();
    let job = ContainerJob {
        job_id: "preflight",
        attempt: 0,
        worker_id: "preflight",
        namespace: &cfg.namespace,
        agent: &agent,
        prompt: "",
        repo_dir: &repo,
        input_dir: &input,
        out_dir: Some(&out),
        user: format!("{uid}:{gid}"),
        watchdog: None,
    };
    let body = agent_container(cfg, &job, |_| None);
    let verdict = match docker
        .create_container(None::<CreateContainerOptions>, body)
        .await
    {
        Ok(c) => {
            crate::docker::remove(docker, &c.id).await;
            Ok(())
        }
        Err(e) => match EngineError::from(e) {
            e @ EngineError::BadConfig(_) => Err(e.to_string()),
            e => {
                tracing::warn!(pool, error = %e, "preflight: could not try a container of pool {pool}; jobs will");
                Ok(())
            }
        },
    };
    let _ = std::fs::remove_dir_all(&scratch);
    verdict
}

/// Creates the workspace root if needed and returns its canonical path; a root
/// that cannot be made (a file in the way) stops the worker, naming it.
pub fn make_workspace_root(root: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(root)
        .and_then(|()| root.canonicalize())
        .map_err(|e| {
            unfit(format!(
                "preflight: cannot make the workspace root {} ({e})",
                root.display()
            ))
        })
}

/// The workspace root: writable, and how much room it has.
fn check_workspace_root(root: &Path) -> anyhow::Result<()> {
    let probe = root.join(format!(".agentq-preflight-{}", std::process::id()));
    std::fs::write(&probe, b"ok").map_err(|e| {
        unfit(format!(
            "preflight: the workspace root {} is not writable ({e})",
            root.display()
        ))
    })?;
    let _ = std::fs::remove_file(&probe);
    if let Some(free) = crate::space::free_bytes(root) {
        if free < LOW_SPACE_BYTES {
            tracing::warn!(
                root = %root.display(),
                free_mib = free >> 20,
                "preflight: the workspace root has less than 1 GiB free"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_can_be_dropped_once() {
        let s = Served::new(["claude".to_string(), "codex".to_string()]);
        assert!(s.serves("codex"));
        assert!(s.drop_pool("codex"));
        assert!(!s.drop_pool("codex"));
        assert_eq!(s.pools(), ["claude"]);
    }

    #[test]
    fn the_workspace_root_must_be_writable_and_has_free_space() {
        let dir = tempfile::tempdir().unwrap();
        check_workspace_root(dir.path()).unwrap();
        assert!(crate::space::free_bytes(dir.path()).unwrap() > 0);
        assert!(check_workspace_root(&dir.path().join("missing")).is_err());
    }
}
