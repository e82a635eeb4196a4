//! The slot scripts (`slot_holds`, `slot_renew`) and the pool backoff
//! (`pool_outcome`), against a real redis-server: no worker, no Docker.

mod common;

use std::time::Duration;

use agentq_shared::{
    admission::{AdmissionConfig, BackoffConfig},
    agent::AgentSpec,
    store::JobStore,
};
use common::{enqueue, query, Redis};

async fn slot_until(store: &JobStore, key: &str, id: &str) -> Option<f64> {
    query(store, redis::cmd("ZSCORE").arg(key).arg(id)).await
}

#[tokio::test]
async fn slot_holds_only_a_granted_slot_and_slot_renew_extends_it() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let agent = AgentSpec::parse("claude:opus").unwrap();
    let id = enqueue(&store, "claude:opus").await;
    let short = Duration::from_secs(5);
    assert!(
        !store.holds_slot(&agent, &id, short).await.unwrap(),
        "not granted yet"
    );
    let n = store
        .wake_pool(&AdmissionConfig::default(), "claude", short, 10)
        .await
        .unwrap();
    assert_eq!(n, 1);
    let pool_key = store.keys().limit("claude");
    let model_key = store.keys().limit_model("claude", "opus");
    let granted = slot_until(&store, &pool_key, &id).await.unwrap();
    assert!(store.holds_slot(&agent, &id, short).await.unwrap());
    store
        .renew_slot(&agent, &id, Duration::from_secs(600))
        .await
        .unwrap();
    let pool_until = slot_until(&store, &pool_key, &id).await.unwrap();
    let model_until = slot_until(&store, &model_key, &id).await.unwrap();
    assert!(
        pool_until > granted + 500_000.0,
        "{granted} -> {pool_until}"
    );
    assert_eq!(pool_until, model_until);
    // slot_renew never grants a slot that is not held.
    let other = enqueue(&store, "claude:opus").await;
    store
        .renew_slot(&agent, &other, Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(slot_until(&store, &pool_key, &other).await, None);
}

#[tokio::test]
async fn pool_outcome_pauses_a_pool_after_enough_fast_failures() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let cfg = BackoffConfig {
        failures: 2,
        window_secs: 60,
        pause_secs: 600,
    };
    let fast = Duration::from_secs(1);
    let backoff = store.keys().backoff("codex");
    assert!(!store
        .record_outcome(&cfg, "codex", true, fast)
        .await
        .unwrap());
    // A success in between starts the count again.
    assert!(!store
        .record_outcome(&cfg, "codex", false, fast)
        .await
        .unwrap());
    assert!(!store
        .record_outcome(&cfg, "codex", true, fast)
        .await
        .unwrap());
    // A slow failure is no fast one: it starts the count again too.
    let slow = Duration::from_secs(120);
    assert!(!store
        .record_outcome(&cfg, "codex", true, slow)
        .await
        .unwrap());
    assert!(!store
        .record_outcome(&cfg, "codex", true, fast)
        .await
        .unwrap());
    let paused: bool = query(&store, redis::cmd("EXISTS").arg(&backoff)).await;
    assert!(!paused);
    assert!(store
        .record_outcome(&cfg, "codex", true, fast)
        .await
        .unwrap());
    let ttl: i64 = query(&store, redis::cmd("PTTL").arg(&backoff)).await;
    assert!(ttl > 590_000, "{ttl}");
    let events = store.recent_events(5).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.fields.get("event").map(String::as_str) == Some("pool_paused")),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_quota_pause_names_its_cause_keeps_a_longer_pause_and_sets_the_timer() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let now = chrono::Utc::now();
    let left = store
        .pause_for_quota(
            "codex",
            now + chrono::Duration::seconds(60),
            "You've hit your usage limit \u{1b}[31m",
            "J1",
        )
        .await
        .unwrap();
    assert!(
        left > Duration::from_secs(55) && left <= Duration::from_secs(61),
        "{left:?}"
    );
    let value: Option<String> =
        query(&store, redis::cmd("GET").arg(store.keys().backoff("codex"))).await;
    assert!(value.unwrap().ends_with("|quota"));
    let stats = store
        .pool_stats(
            &AdmissionConfig::default(),
            &["codex".into(), "claude".into()],
        )
        .await
        .unwrap();
    assert_eq!(
        stats[0].pause_cause,
        Some(agentq_shared::quota::PauseCause::Quota)
    );
    assert!(stats[0].paused_until.is_some());
    assert_eq!(
        (stats[1].pause_cause, stats[1].paused_until.clone()),
        (None, None)
    );
    // The pool is woken when the pause ends.
    let timer: Option<f64> = query(&store, redis::cmd("ZSCORE").arg("t:timers").arg("codex")).await;
    assert!(timer.is_some());
    // A shorter limit keeps the longer pause.
    let left = store
        .pause_for_quota(
            "codex",
            now + chrono::Duration::seconds(5),
            "usage limit",
            "J2",
        )
        .await
        .unwrap();
    assert!(left > Duration::from_secs(50), "{left:?}");
    // Each said so on the events stream, the line made visible.
    let events = store.recent_events(10).await.unwrap();
    let quota: Vec<_> = events
        .iter()
        .filter(|e| e.fields.get("event").map(String::as_str) == Some("quota"))
        .collect();
    assert_eq!(quota.len(), 2);
    let first = quota.iter().find(|e| e.fields["job"] == "J1").unwrap();
    assert_eq!(first.fields["line"], "You've hit your usage limit \\e[31m");
    assert_eq!(first.fields["pool"], "codex");
    // A pause by hand names no cause.
    store
        .pause_pool("claude", Duration::from_secs(30))
        .await
        .unwrap();
    let stats = store
        .pool_stats(&AdmissionConfig::default(), &["claude".into()])
        .await
        .unwrap();
    assert_eq!(stats[0].pause_cause, None);
}
