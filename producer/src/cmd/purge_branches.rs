//! `agentq purge`'s branch cleanup: a job whose pull request was closed
//! without a merge leaves its agent branch on the forge; purging the job
//! deletes it too (`DELETE /repos/{owner}/{repo}/branches/{branch}`), unless
//! `--keep-branches`. A merged job's branch went at the merge (the verify
//! stage). Forge trouble is said and does not stop the purge.

use agentq_shared::{
    config::Config,
    forge::{ForgeClient, IssueState, RetryPolicy},
    status::JobState,
    store::JobStore,
};

/// Deletes the agent branches of the jobs in `state` that got there before
/// `before_ms` and whose pull request was closed without a merge; returns
/// the branches deleted (`org/repo:branch`).
pub async fn delete_closed(
    cfg: &Config,
    store: &JobStore,
    state: JobState,
    before_ms: i64,
) -> Vec<String> {
    let mut deleted = Vec::new();
    if cfg.forge.url.is_empty() {
        return deleted;
    }
    let token = std::env::var(&cfg.forge.token_env)
        .ok()
        .filter(|t| !t.is_empty());
    let Ok(forge) = ForgeClient::new(&cfg.forge.url, token, RetryPolicy::from(&cfg.forge)) else {
        return deleted;
    };
    let ids = match store.ids_in_state_before(state, before_ms).await {
        Ok(ids) => ids,
        Err(e) => {
            errln!("agentq: cannot list the jobs to purge for their branches: {e}");
            return deleted;
        }
    };
    for id in ids {
        let Ok(Some(rec)) = store.get(&id).await else {
            continue;
        };
        let index = rec
            .pr_url
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .and_then(|n| n.parse::<u64>().ok());
        let (Some(index), false) = (index, rec.branch.is_empty()) else {
            continue;
        };
        let (o, r) = (&rec.input.org, &rec.input.repo);
        match forge.get_pull(o, r, index).await {
            Ok(pr) if pr.state == IssueState::Closed && !pr.merged => {
                match forge.delete_branch(o, r, &rec.branch).await {
                    Ok(true) => deleted.push(format!("{o}/{r}:{}", rec.branch)),
                    Ok(false) => {}
                    Err(e) => errln!("agentq: cannot delete branch {} of {id}: {e}", rec.branch),
                }
            }
            Ok(_) => {}
            Err(e) => errln!("agentq: cannot read the pull request of {id}: {e}"),
        }
    }
    deleted
}
