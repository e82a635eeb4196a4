//! `agentq purge`'s branch cleanup: a job whose pull request was closed
//! without a merge leaves its agent branch on the forge; purging the job
//! leaves that branch to the workers (`{ns}:verify:branches`), which delete
//! it (`DELETE /repos/{owner}/{repo}/branches/{branch}`) once they saw the
//! pull request closed and not merged. The CLI links no forge client (the
//! workers hold the token). `--keep-branches` opts out.

use agentq_shared::{status::JobState, store::JobStore};

/// Leaves the branch cleanup of the jobs in `state` that got there before
/// `before_ms` (those with a pull request) to the workers; returns how many.
pub async fn queue(store: &JobStore, state: JobState, before_ms: i64) -> usize {
    let ids = match store.ids_in_state_before(state, before_ms).await {
        Ok(ids) => ids,
        Err(e) => {
            errln!("agentq: cannot list the jobs to purge for their branches: {e}");
            return 0;
        }
    };
    let mut n = 0;
    for id in ids {
        let Ok(Some(rec)) = store.get(&id).await else {
            continue;
        };
        if rec.pr_url.is_empty() || rec.branch.is_empty() {
            continue;
        }
        let entry = serde_json::json!({
            "org": rec.input.org, "repo": rec.input.repo,
            "branch": rec.branch, "pr_url": rec.pr_url, "job": rec.id,
        });
        match store.queue_branch_cleanup(&entry.to_string()).await {
            Ok(()) => n += 1,
            Err(e) => errln!("agentq: cannot leave the branch of {id} to the workers: {e}"),
        }
    }
    n
}
