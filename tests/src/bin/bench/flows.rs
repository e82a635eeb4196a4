//! Issue 33's row: what jobs that wait for a time (`scheduled`) or for a parent
//! (`waiting`, reason `dependency`) cost Redis. One real idle worker is
//! measured with nothing waiting, then with 10 000 delayed jobs (due in a day)
//! and 10 000 jobs waiting for a parent that is itself delayed: neither kind
//! is in a lane, has a delivery or is looked at by anyone until what it waits
//! for happens, so the rate should not move.

use std::time::{Duration, Instant};

use agentq_tests::*;

use super::Row;

/// Jobs of each kind.
const EACH: usize = 10_000;
/// Seconds each measure lasts (six heartbeats of 10 s: the sweep's and the
/// registry's rounds fall alike in both).
const SECS: u64 = 60;

/// Redis commands/s over `SECS`.
async fn rate(redis: &Redis) -> f64 {
    let (c0, t) = (redis.total_commands(), Instant::now());
    tokio::time::sleep(Duration::from_secs(SECS)).await;
    (redis.total_commands() - c0) as f64 / t.elapsed().as_secs_f64()
}

/// `n` NDJSON lines from issue `first` on, each with `extra` fields.
fn lines(n: usize, first: usize, extra: &serde_json::Value) -> String {
    (first..first + n)
        .map(|i| {
            let mut v = serde_json::json!({"repo": "demo", "org": "core", "task": "wait",
                "agent": "claude", "issue": i});
            for (k, x) in extra.as_object().expect("an object") {
                v[k] = x.clone();
            }
            v.to_string() + "\n"
        })
        .collect()
}

/// The row.
pub async fn row() -> Row {
    require_docker();
    let env = TestEnv::with_config("heartbeat_secs = 10\n");
    env.remotes.create("core", "demo", &[]);
    let _w = env.worker("flows", 2);
    wait_live_workers(&env, 1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = rate(&env.redis).await;

    env.enqueue_ndjson(&lines(EACH, 1, &serde_json::json!({"in": "24h"})));
    let blocker = env.enqueue_ndjson(&lines(1, EACH + 1, &serde_json::json!({"in": "24h"})));
    env.enqueue_ndjson(&lines(
        EACH,
        EACH + 2,
        &serde_json::json!({"after": [blocker[0]]}),
    ));
    let store = env.store().await;
    let t = Instant::now();
    loop {
        let counts = store.state_counts().await.unwrap();
        let n = |s| counts.iter().find(|(k, _)| *k == s).map_or(0, |(_, n)| *n);
        use agentq_shared::status::JobState::{Scheduled, Waiting};
        if n(Scheduled) == EACH as u64 + 1 && n(Waiting) == EACH as u64 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(120), "{counts:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rate(&env.redis).await;
    Row {
        what: format!(
            "Redis commands/s of one idle worker with {EACH} scheduled + {EACH} dependent jobs waiting ({SECS} s)"
        ),
        agentq: format!("{after:.2}"),
        peer: format!("{before:.2} with none waiting"),
        ratio: format!("{:.2}×", after / before),
    }
}
