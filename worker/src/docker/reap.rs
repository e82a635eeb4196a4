//! Finding agentq's containers by label, and removing those no run holds.

use std::collections::HashMap;

use agentq_shared::container::{LABEL_JOB, LABEL_NAMESPACE, LABEL_WORKER};
use bollard::{query_parameters::ListContainersOptionsBuilder, Docker};

use super::remove;

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
