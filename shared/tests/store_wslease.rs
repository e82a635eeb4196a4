//! The workspace lease scripts (`ws_take`, `ws_renew`, `ws_give_back`,
//! `ws_try_take`) and `claim`, against a real redis-server: no worker, no
//! Docker.

mod common;

use std::time::Duration;

use agentq_shared::{
    status::JobState,
    store::{apalis_config, wslease::WorkspaceTake, Move, ParkIn},
};
use common::{enqueue, query, Redis};

const WS: &str = "core/demo/task-1";
const TTL: Duration = Duration::from_secs(60);

#[tokio::test]
async fn ws_take_is_one_job_at_a_time_and_ws_renew_needs_the_holder() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    assert_eq!(
        store.take_workspace(WS, "01A", TTL).await.unwrap(),
        WorkspaceTake::Taken
    );
    assert_eq!(
        store.take_workspace(WS, "01A", TTL).await.unwrap(),
        WorkspaceTake::Taken
    );
    assert_eq!(
        store.take_workspace(WS, "01B", TTL).await.unwrap(),
        WorkspaceTake::Busy("01A".into())
    );
    assert!(!store.renew_workspace(WS, "01B", TTL).await.unwrap());
    assert!(store.renew_workspace(WS, "01A", TTL).await.unwrap());
}

#[tokio::test]
async fn ws_give_back_sends_the_first_in_line_to_its_lane() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let first = enqueue(&store, "claude").await;
    let second = enqueue(&store, "claude").await;
    assert_eq!(
        store.take_workspace(WS, "01HOLDER", TTL).await.unwrap(),
        WorkspaceTake::Taken
    );
    for id in [&first, &second] {
        let m = Move::to(JobState::Waiting).park(ParkIn::Workspace(WS.into()));
        assert!(store.apply(id, &m).await.unwrap().done());
    }
    // Not the holder: nothing changes.
    store.give_back_workspace(WS, "01OTHER").await.unwrap();
    assert_eq!(store.parked("claude").await.unwrap().total(), 0);
    store.give_back_workspace(WS, "01HOLDER").await.unwrap();
    let lane: Vec<String> = query(
        &store,
        redis::cmd("ZRANGE")
            .arg(store.keys().lane("claude", "-"))
            .arg(0)
            .arg(-1),
    )
    .await;
    assert_eq!(lane, vec![first.clone()], "only the first in line moves");
    let line: Vec<String> = query(
        &store,
        redis::cmd("ZRANGE")
            .arg(store.keys().workspace_waiters(WS))
            .arg(0)
            .arg(-1),
    )
    .await;
    assert_eq!(line, vec![second]);
}

#[tokio::test]
async fn ws_try_take_refuses_a_busy_workspace_or_one_with_a_line() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    assert!(store.try_take_workspace(WS, "01A", TTL).await.unwrap());
    assert!(
        !store.try_take_workspace(WS, "01B", TTL).await.unwrap(),
        "busy"
    );
    let _: () = query(
        &store,
        redis::cmd("DEL").arg(store.keys().workspace_lease(WS)),
    )
    .await;
    let _: () = query(
        &store,
        redis::cmd("ZADD")
            .arg(store.keys().workspace_waiters(WS))
            .arg(1)
            .arg("01W"),
    )
    .await;
    assert!(
        !store.try_take_workspace(WS, "01B", TTL).await.unwrap(),
        "someone waits"
    );
}

#[tokio::test]
async fn claim_takes_a_left_job_whose_delivery_is_scheduled() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let id = enqueue(&store, "claude").await;
    // Its next delivery is due in a minute (a retry's delay).
    let m = Move::to(JobState::Waiting).deliver(Duration::from_secs(60), false);
    let moved = store.apply(&id, &m).await.unwrap();
    assert!(moved.done());
    let cfg = apalis_config(store.keys());
    let scheduled: u64 = query(&store, redis::cmd("ZCARD").arg(cfg.scheduled_jobs_set())).await;
    assert_eq!(scheduled, 1);
    assert!(
        store
            .claim_left_jobs("host-a", 10)
            .await
            .unwrap()
            .is_empty(),
        "none left"
    );
    let until = store.redis_now_ms().await.unwrap() + 60_000;
    store.leave_to_host("host-a", &id, until).await.unwrap();
    let claimed = store.claim_left_jobs("host-a", 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        (claimed[0].job_id.as_str(), claimed[0].seq),
        (id.as_str(), 2)
    );
    let scheduled: u64 = query(&store, redis::cmd("ZCARD").arg(cfg.scheduled_jobs_set())).await;
    assert_eq!(scheduled, 0, "consumed");
    assert!(store
        .claim_left_jobs("host-a", 10)
        .await
        .unwrap()
        .is_empty());
}
