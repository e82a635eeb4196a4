//! The `rescue` script (through the sweeps), against a real redis-server: no
//! worker, no Docker.

mod common;

use std::time::Duration;

use agentq_shared::{
    admission::AdmissionConfig,
    status::{JobState, WaitReason},
    store::{apalis_config, lease::Acquire, JobStore, Move, Moved},
};
use common::{deliveries, enqueue, query, Redis};

/// Enqueues a job and grants it a slot (its delivery pushed).
async fn granted(store: &JobStore) -> String {
    let id = enqueue(store, "claude").await;
    let n = store
        .wake_pool(
            &AdmissionConfig::default(),
            "claude",
            Duration::from_secs(60),
            10,
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    id
}

async fn slot_holders(store: &JobStore) -> Vec<String> {
    query(
        store,
        redis::cmd("ZRANGE")
            .arg(store.keys().limit("claude"))
            .arg(0)
            .arg(-1),
    )
    .await
}

#[tokio::test]
async fn rescue_puts_back_a_lost_delivery() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let id = granted(&store).await;
    // The delivery is lost: nowhere in apalis's lists.
    let cfg = apalis_config(store.keys());
    let _: () = query(&store, redis::cmd("DEL").arg(cfg.active_jobs_list())).await;
    assert_eq!(
        store.sweep_lost(Duration::ZERO).await.unwrap(),
        vec![id.clone()]
    );
    let rec = store.get(&id).await.unwrap().unwrap();
    assert_eq!(rec.state, JobState::Waiting);
    assert_eq!(rec.reason, Some(WaitReason::Lost));
    assert_eq!(rec.seq, 3, "a new seq fences out the lost delivery");
    assert_eq!(store.rescued_total().await.unwrap(), 1);
    assert!(
        slot_holders(&store).await.is_empty(),
        "its slot is given back"
    );
    assert_eq!(
        store.parked("claude").await.unwrap().total(),
        1,
        "parked again"
    );
    // Parked, it is out of transit: the next sweep leaves it.
    assert!(store.sweep_lost(Duration::ZERO).await.unwrap().is_empty());
}

#[tokio::test]
async fn rescue_leaves_a_delivery_that_is_still_queued() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let id = granted(&store).await;
    assert!(store.sweep_lost(Duration::ZERO).await.unwrap().is_empty());
    let rec = store.get(&id).await.unwrap().unwrap();
    assert_eq!((rec.state, rec.seq), (JobState::Queued, 2));
    assert_eq!(store.rescued_total().await.unwrap(), 0);
    assert_eq!(deliveries(&store).await.len(), 1);
}

#[tokio::test]
async fn rescue_puts_back_an_orphan_and_fences_its_run_out() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let id = granted(&store).await;
    let d = deliveries(&store).await.pop().unwrap();
    let Acquire::Acquired { token, .. } = store
        .acquire(&d, "w1", Duration::from_secs(60))
        .await
        .unwrap()
    else {
        panic!("not acquired")
    };
    let m = Move::to(JobState::Running).fenced(&token);
    assert!(store.apply(&id, &m).await.unwrap().done());
    // The run lease is still held: no orphan.
    assert!(store.sweep_orphans().await.unwrap().is_empty());
    // Its worker died: the run lease expired.
    let _: () = query(&store, redis::cmd("DEL").arg(store.keys().run_lease(&id))).await;
    assert_eq!(store.sweep_orphans().await.unwrap(), vec![id.clone()]);
    let rec = store.get(&id).await.unwrap().unwrap();
    assert_eq!(rec.state, JobState::Waiting);
    assert_eq!(rec.reason, Some(WaitReason::Orphaned));
    assert_eq!(rec.owner, "");
    assert!(slot_holders(&store).await.is_empty());
    // The old run can no longer write.
    let m = Move::to(JobState::Completed).fenced(&token);
    assert_eq!(store.apply(&id, &m).await.unwrap(), Moved::Refused);
}

#[tokio::test]
async fn rescue_fails_a_job_whose_seq_is_not_a_number() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let id = granted(&store).await;
    let _: () = query(
        &store,
        redis::cmd("HSET")
            .arg(store.keys().job(&id))
            .arg("seq")
            .arg("x"),
    )
    .await;
    let cfg = apalis_config(store.keys());
    let _: () = query(&store, redis::cmd("DEL").arg(cfg.active_jobs_list())).await;
    assert!(store.sweep_lost(Duration::ZERO).await.unwrap().is_empty());
    let state: String = query(
        &store,
        redis::cmd("HGET").arg(store.keys().job(&id)).arg("state"),
    )
    .await;
    assert_eq!(state, JobState::Failed.as_str());
    assert!(
        slot_holders(&store).await.is_empty(),
        "its slot is given back"
    );
}
