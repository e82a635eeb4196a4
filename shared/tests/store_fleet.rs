//! The `fleet` script (and the wake's look at its keys), against a real
//! redis-server: no worker, no Docker.

mod common;

use std::time::Duration;

use agentq_shared::{
    admission::AdmissionConfig,
    store::{fleet::Pools, JobStore},
};
use common::{enqueue, Redis};
use futures::StreamExt;

async fn wake(store: &JobStore, pool: &str) -> usize {
    store
        .wake_pool(
            &AdmissionConfig::default(),
            pool,
            Duration::from_secs(60),
            10,
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn an_operator_pause_grants_nothing_sets_no_timer_and_its_unpause_wakes_the_pool() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    enqueue(&store, "gemini").await;
    enqueue(&store, "codex").await;
    assert_eq!(
        store
            .pause(&Pools::Named(vec!["gemini".into()]))
            .await
            .unwrap(),
        1
    );
    assert_eq!(wake(&store, "gemini").await, 0);
    assert!(store.due_timers().await.unwrap().due.is_empty(), "no timer");
    assert_eq!(wake(&store, "codex").await, 1, "another pool goes on");
    let fleet = store.fleet_pause().await.unwrap();
    assert!(
        fleet.covers("gemini") && !fleet.covers("codex"),
        "{fleet:?}"
    );

    let mut ps = store.subscribe(&["t:wake".to_string()]).await.unwrap();
    assert_eq!(
        store
            .unpause(&Pools::Named(vec!["gemini".into()]), &[])
            .await
            .unwrap(),
        1
    );
    let msg = tokio::time::timeout(Duration::from_secs(10), ps.on_message().next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(msg.get_payload::<String>().unwrap(), "gemini");
    assert_eq!(wake(&store, "gemini").await, 1);
}

#[tokio::test]
async fn the_fleet_pause_covers_every_pool_and_unpause_all_lifts_every_pause() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    store.pause(&Pools::All).await.unwrap();
    store
        .pause(&Pools::Named(vec!["claude".into()]))
        .await
        .unwrap();
    enqueue(&store, "codex").await;
    assert_eq!(wake(&store, "codex").await, 0);
    // Lifting one pool leaves the fleet's pause.
    store
        .unpause(&Pools::Named(vec!["codex".into()]), &[])
        .await
        .unwrap();
    assert_eq!(wake(&store, "codex").await, 0);
    assert_eq!(store.unpause(&Pools::All, &[]).await.unwrap(), 2);
    assert_eq!(store.fleet_pause().await.unwrap(), Default::default());
    assert_eq!(wake(&store, "codex").await, 1);
}

#[tokio::test]
async fn start_paused_pauses_only_the_first_start_and_stop_now_notes_the_time() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    assert!(store.first_start(true).await.unwrap());
    assert!(store.fleet_pause().await.unwrap().all);
    assert!(!store.first_start(true).await.unwrap(), "once");
    store.unpause(&Pools::All, &[]).await.unwrap();
    assert!(!store.first_start(true).await.unwrap());
    assert!(!store.fleet_pause().await.unwrap().all, "no refreeze");
    // Without start_paused, the first start marks the fleet and pauses nothing.
    let other = redis.store("u").await;
    assert!(!other.first_start(false).await.unwrap());
    assert!(other.fleet_started().await.unwrap());
    assert!(!other.first_start(true).await.unwrap());

    let before = store.redis_now_ms().await.unwrap();
    assert_eq!(store.asks("j", "codex").await.unwrap().stopped_at, None);
    store
        .stop_now(&Pools::Named(vec!["codex".into()]))
        .await
        .unwrap();
    let asks = store.asks("j", "codex").await.unwrap();
    assert!(asks.stopped_at.unwrap() >= before, "{asks:?}");
    assert_eq!(store.asks("j", "claude").await.unwrap().stopped_at, None);
    assert!(store.fleet_pause().await.unwrap().covers("codex"));
    store.stop_now(&Pools::All).await.unwrap();
    assert!(store
        .asks("j", "claude")
        .await
        .unwrap()
        .stopped_at
        .is_some());
}
