//! Job records: waiting for a state, reading what a record says.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use agentq_shared::{record::JobRecord, status::JobState, store::JobStore};

use crate::*;

impl TestEnv {
    /// An async store on this world's Redis.
    pub async fn store(&self) -> JobStore {
        JobStore::connect(&self.redis.url(), &self.ns, Duration::from_secs(5))
            .await
            .unwrap()
    }

    /// Waits until job `id` is in a final state; fails the test after `timeout`.
    pub async fn wait_final(&self, id: &str, timeout: Duration) -> JobRecord {
        self.wait_for(id, timeout, |r| r.state.is_final()).await
    }

    /// Waits until job `id`'s record satisfies `pred`; fails the test after `timeout`.
    pub async fn wait_for(
        &self,
        id: &str,
        timeout: Duration,
        pred: impl Fn(&JobRecord) -> bool,
    ) -> JobRecord {
        let store = self.store().await;
        let deadline = Instant::now() + timeout;
        loop {
            let rec = store.get(id).await.unwrap();
            if let Some(r) = &rec {
                if pred(r) {
                    return r.clone();
                }
            }
            assert!(
                Instant::now() < deadline,
                "job {id} did not reach the expected state within {timeout:?}; last record: {rec:#?}\n{}",
                self.worker_logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The patch a run left uncommitted (`.meta/leftovers-1.patch`), after
/// checking that the record says it kept `files` files that way.
pub fn kept_leftovers_patch(rec: &JobRecord, files: usize) -> String {
    assert_eq!(
        rec.leftovers,
        format!(
            "agent left {files} files uncommitted; kept as a patch, not pushed (.meta/leftovers-1.patch)"
        ),
        "{rec:#?}"
    );
    std::fs::read_to_string(Path::new(&rec.workspace_dir).join(".meta/leftovers-1.patch")).unwrap()
}

/// Whether a job is in a final state named `state`.
pub fn is_state(rec: &JobRecord, state: JobState) -> bool {
    rec.state == state
}
