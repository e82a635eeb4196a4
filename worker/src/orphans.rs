//! What a dead worker left on this Docker engine, whatever its namespace: its
//! agent, QA and held containers, and their heartbeat directories.
//!
//! Every agentq container carries its job, worker, namespace, its namespace's
//! Redis (without credentials) and its time limit as labels. A container is a
//! dead worker's when its namespace's Redis has the job and no longer holds
//! the job's run lease for that worker (the worker died, or the job moved on);
//! when that Redis cannot be asked (gone, password-protected, a different
//! server at that address: the job is not there), only age tells: more than
//! [`AGE_GRACE`] past the container's time limit. A container whose Redis says
//! its run is held is never touched, whatever its age.
//!
//! Every worker's janitor runs this for the other namespaces on its engine
//! (its own namespace has [`crate::docker::reap_stale`]); `agentq-worker
//! --cleanup` runs it for all of them, once, and says what it removed.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::Duration,
};

use agentq_shared::{
    config::Config,
    container::{BEAT_MOUNT, LABEL_JOB, LABEL_NAMESPACE, LABEL_REDIS, LABEL_TIMEOUT, LABEL_WORKER},
    store::{lease::token_worker, JobStore},
};
use bollard::{models::ContainerSummary, query_parameters::ListContainersOptionsBuilder, Docker};

/// How long past its time limit a container whose Redis is unknown is kept.
pub const AGE_GRACE: Duration = Duration::from_secs(3600);

/// How long asking another namespace's Redis may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(3);

/// A container removed, and why.
#[derive(Debug, Clone)]
pub struct Removed {
    /// Container id.
    pub id: String,
    /// Its namespace.
    pub namespace: String,
    /// Its job.
    pub job: String,
    /// Why its run was over.
    pub why: String,
}

/// Whose a container is, as its namespace's Redis tells.
enum Owner {
    /// Its worker still holds its run: keep it.
    Held,
    /// Its run is over (why).
    Gone(String),
    /// Its Redis cannot tell.
    Unknown,
}

/// How many other namespaces' Redis servers are asked at once: a round over
/// many dead namespaces costs about `ceil(n / ASK_AT_ONCE)` timeouts, not `n`.
const ASK_AT_ONCE: usize = 16;

/// Connects to every namespace's Redis named in `wanted`, all at once (each
/// bounded by [`ASK_TIMEOUT`]); `None`: that one cannot be asked.
async fn connect_all(wanted: Vec<(String, String)>) -> HashMap<(String, String), Option<JobStore>> {
    use futures::StreamExt;
    futures::stream::iter(wanted)
        .map(|(ns, url)| async move {
            let store = match tokio::time::timeout(
                ASK_TIMEOUT,
                JobStore::connect(&url, &ns, ASK_TIMEOUT),
            )
            .await
            {
                Ok(Ok(s)) => Some(s),
                _ => {
                    tracing::debug!(namespace = %ns, redis = %url, "cannot ask the namespace's Redis; its containers go by age only");
                    None
                }
            };
            ((ns, url), store)
        })
        .buffer_unordered(ASK_AT_ONCE)
        .collect()
        .await
}

async fn owner(store: &JobStore, job: &str, worker: &str) -> Owner {
    // A Redis that does not know the job is not the container's (another
    // server now answers at that address): it cannot tell.
    match tokio::time::timeout(ASK_TIMEOUT, store.get(job)).await {
        Ok(Ok(Some(_))) => {}
        _ => return Owner::Unknown,
    }
    match tokio::time::timeout(ASK_TIMEOUT, store.run_lease_holder(job)).await {
        Ok(Ok(Some(t))) if token_worker(&t) == worker => Owner::Held,
        Ok(Ok(Some(_))) => Owner::Gone("its job is run by another worker now".into()),
        Ok(Ok(None)) => {
            Owner::Gone("its worker's run lease is gone from its namespace's Redis".into())
        }
        _ => Owner::Unknown,
    }
}

/// More than [`AGE_GRACE`] past its time limit (a container without the
/// label has an unknown limit: never by age).
fn too_old(c: &ContainerSummary, now: i64) -> Option<String> {
    let limit: i64 = c.labels.as_ref()?.get(LABEL_TIMEOUT)?.parse().ok()?;
    let created = c.created?;
    let age = now - created;
    (age > limit + AGE_GRACE.as_secs() as i64).then(|| {
        format!(
            "its Redis cannot be asked and it is {age}s old, over its limit of {limit}s by more than {}s",
            AGE_GRACE.as_secs()
        )
    })
}

/// The heartbeat directory a container mounts, when it has the shape the
/// worker makes (`…/.agentq-run/beat/{name}`): nothing else is ever removed.
fn beat_dir(c: &ContainerSummary) -> Option<PathBuf> {
    let src = c
        .mounts
        .as_ref()?
        .iter()
        .find(|m| m.destination.as_deref() == Some(BEAT_MOUNT))?
        .source
        .clone()?;
    let path = PathBuf::from(src);
    let parent = path.parent()?;
    let ok = parent.file_name()? == "beat"
        && parent.parent()?.file_name()? == crate::deadman::RUN_DIR
        && path.file_name().is_some();
    ok.then_some(path)
}

/// Removes a dead run's heartbeat directory (if it is on this host).
fn forget_beat(dir: &Path) {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => tracing::info!(dir = %dir.display(), "removed a dead run's heartbeat directory"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a dead run's heartbeat directory")
        }
    }
}

/// Removes the heartbeat directory container `id` mounts (before the
/// container itself is removed as stale).
pub async fn forget_beat_of(docker: &Docker, id: &str) {
    let filters = HashMap::from([("id".to_string(), vec![id.to_string()])]);
    let opts = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    if let Ok(list) = docker.list_containers(Some(opts)).await {
        if let Some(dir) = list.first().and_then(beat_dir) {
            forget_beat(&dir);
        }
    }
}

/// Every agentq container on this engine, whatever its namespace.
async fn all_agentq(docker: &Docker) -> anyhow::Result<Vec<ContainerSummary>> {
    let filters = HashMap::from([("label".to_string(), vec![LABEL_NAMESPACE.to_string()])]);
    let opts = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    Ok(docker.list_containers(Some(opts)).await?)
}

/// Removes the containers (and heartbeat directories) of dead workers on this
/// engine. `own`: this worker's namespace and store (asked directly, with its
/// credentials); `skip_own`: leave that namespace to
/// [`crate::docker::reap_stale`].
pub async fn reap_dead(
    docker: &Docker,
    own: Option<(&str, &JobStore)>,
    skip_own: bool,
) -> Vec<Removed> {
    let list = match all_agentq(docker).await {
        Ok(l) => l,
        Err(e) => {
            tracing::debug!(error = %e, "cannot list agentq containers");
            return Vec::new();
        }
    };
    let now = chrono::Utc::now().timestamp();
    // Each container with the labels that say whose it is.
    let mut found = Vec::new();
    for c in list {
        let (Some(id), Some(labels)) = (c.id.clone(), c.labels.clone()) else {
            continue;
        };
        let (Some(ns), Some(job), Some(worker)) = (
            labels.get(LABEL_NAMESPACE).cloned(),
            labels.get(LABEL_JOB).cloned(),
            labels.get(LABEL_WORKER).cloned(),
        ) else {
            continue;
        };
        if skip_own && own.is_some_and(|(o, _)| o == ns) {
            continue;
        }
        let url = labels.get(LABEL_REDIS).cloned().unwrap_or_default();
        found.push((c, id, ns, job, worker, url));
    }
    // Every other namespace's Redis, asked at once (one dead server costs one
    // timeout per round, whatever the number of its containers).
    let mut wanted: Vec<(String, String)> = found
        .iter()
        .filter(|(_, _, ns, _, _, url)| !url.is_empty() && own.is_none_or(|(o, _)| o != ns))
        .map(|(_, _, ns, _, _, url)| (ns.clone(), url.clone()))
        .collect();
    wanted.sort();
    wanted.dedup();
    let stores = connect_all(wanted).await;
    let store_of = |ns: &str, url: &str| -> Option<JobStore> {
        if let Some((own_ns, store)) = own {
            if own_ns == ns {
                return Some(store.clone());
            }
        }
        stores
            .get(&(ns.to_string(), url.to_string()))
            .and_then(Clone::clone)
    };
    let asks: Vec<_> = found
        .iter()
        .enumerate()
        .map(|(i, (_, _, ns, job, worker, url))| {
            let (store, job, worker) = (store_of(ns, url), job.clone(), worker.clone());
            async move {
                let verdict = match store {
                    Some(store) => owner(&store, &job, &worker).await,
                    None => Owner::Unknown,
                };
                (i, verdict)
            }
        })
        .collect();
    use futures::StreamExt;
    let verdicts: Vec<(usize, Owner)> = futures::stream::iter(asks)
        .buffer_unordered(ASK_AT_ONCE)
        .collect()
        .await;
    let mut removed = Vec::new();
    for (i, verdict) in verdicts {
        let (c, id, ns, job, worker, _) = &found[i];
        let why = match verdict {
            Owner::Held => continue,
            Owner::Gone(why) => why,
            Owner::Unknown => match too_old(c, now) {
                Some(why) => why,
                None => continue,
            },
        };
        tracing::info!(container = %id, namespace = %ns, job = %job, worker = %worker, reason = %why, "removing a dead worker's container");
        if let Some(dir) = beat_dir(c) {
            forget_beat(&dir);
        }
        crate::docker::remove(docker, id).await;
        removed.push(Removed {
            id: id.clone(),
            namespace: ns.clone(),
            job: job.clone(),
            why,
        });
    }
    removed
}

/// `agentq-worker --cleanup`: removes every agentq container on this engine
/// whose run is not held (see the module docs), prints each, and returns.
///
/// # Errors
/// The Docker engine does not answer.
pub async fn cleanup(cfg: &Config) -> anyhow::Result<()> {
    let docker = crate::docker::connect().await?;
    docker.version().await?;
    let own = JobStore::connect_with_ca(
        &cfg.redis_url,
        cfg.redis_ca_file.as_deref(),
        &cfg.namespace,
        ASK_TIMEOUT,
    )
    .await;
    if let Err(e) = &own {
        eprintln!(
            "agentq-worker: cannot reach this namespace's Redis ({e}); its containers go by age only"
        );
    }
    let own = own.ok();
    let removed = reap_dead(
        &docker,
        own.as_ref().map(|s| (cfg.namespace.as_str(), s)),
        false,
    )
    .await;
    for r in &removed {
        println!(
            "removed {} (namespace {}, job {}): {}",
            r.id, r.namespace, r.job, r.why
        );
    }
    println!("{} container(s) removed", removed.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::MountPoint;

    fn with_beat(src: &str) -> ContainerSummary {
        ContainerSummary {
            mounts: Some(vec![MountPoint {
                source: Some(src.into()),
                destination: Some(BEAT_MOUNT.into()),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn only_a_heartbeat_directory_of_the_workers_shape_is_removed() {
        assert_eq!(
            beat_dir(&with_beat("/ws/.agentq-run/beat/J-1")),
            Some(PathBuf::from("/ws/.agentq-run/beat/J-1"))
        );
        assert_eq!(beat_dir(&with_beat("/home/user")), None);
        assert_eq!(beat_dir(&with_beat("/ws/beat/J-1")), None);
        assert_eq!(beat_dir(&ContainerSummary::default()), None);
    }

    #[test]
    fn age_counts_only_with_a_known_limit() {
        let mut c = ContainerSummary {
            created: Some(1_000),
            ..Default::default()
        };
        assert_eq!(too_old(&c, 1_000_000), None, "no limit label");
        c.labels = Some(HashMap::from([(
            LABEL_TIMEOUT.to_string(),
            "60".to_string(),
        )]));
        assert_eq!(too_old(&c, 1_000 + 60 + 3_600), None);
        assert!(too_old(&c, 1_000 + 60 + 3_601).is_some());
    }
}
