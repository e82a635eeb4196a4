//! Issue 27, round two of faults, the job's own: a panic in a job's stages and
//! a record that does not parse are outcomes of that one job (named, kept for
//! inspection), never a wedged worker, a lost record or a stopped lane.
//!
//! Panics are injected through the debug build's test hook
//! (`AGENTQ_TEST_PANIC_AT`, see `worker/src/fault.rs`); corrupt records are
//! made by writing a field of the job's hash directly.

use std::time::{Duration, Instant};

use agentq_shared::status::JobState;
use agentq_tests::*;
use redis::Commands;

/// The suite's generous bound for an event that must come.
const LONG: Duration = Duration::from_secs(120);

/// Keys of this world matching `pattern` (after the namespace).
fn keys_matching(env: &TestEnv, pattern: &str) -> Vec<String> {
    let mut conn = env.redis.conn();
    conn.keys(env.key(pattern)).unwrap()
}

/// Waits until no key of this world matches any of `patterns`.
async fn wait_no_keys(env: &TestEnv, patterns: &[&str], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let left: Vec<String> = patterns
            .iter()
            .flat_map(|p| keys_matching(env, p))
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "keys left: {left:?}\n{}",
            env.worker_logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_that_always_panics_fails_after_max_attempts_and_holds_nothing() {
    require_docker();
    let env = TestEnv::new();
    env.remotes.create("core", "demo", &[]);
    // Every run panics in its agent stage: after its held agent container
    // started and the record says `running`.
    env.set_env("AGENTQ_TEST_PANIC_AT", "agent");
    let id = env.enqueue(&[
        "--repo",
        "demo",
        "--task",
        "never runs @agentq-test exit 0",
        "--issue",
        "1",
    ]);
    let _w = env.worker("w1", 1);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Failed, "{rec:#?}");
    assert_eq!(
        rec.attempt, 3,
        "max_attempts = 3 in the test config: {rec:#?}"
    );
    assert!(
        rec.error.contains("panic: injected fault at stage agent"),
        "{rec:#?}"
    );
    // No agent ran, no container is left, and the run lease, the slot and the
    // workspace lease are all given back.
    assert_eq!(env.agent_starts(&id), "");
    assert_eq!(env.containers_of(&id), Vec::<String>::new());
    wait_no_keys(&env, &["run:*", "ws:*", "limit:*"], LONG).await;
}
