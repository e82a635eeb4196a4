//! The `wake`, `due` and `free_workspaces` scripts, against a real
//! redis-server: no worker, no Docker.

mod common;

use std::time::Duration;

use agentq_shared::{
    admission::AdmissionConfig,
    status::JobState,
    store::{wslease::WorkspaceTake, Move, ParkIn},
};
use common::{admission, delivered, deliveries, enqueue, query, wake, Redis};

#[tokio::test]
async fn wake_with_mixed_model_limits_passes_a_full_model_by() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let cfg = admission("[limits]\nclaude = { total = 3, opus = 1 }\n");
    let opus1 = enqueue(&store, "claude:opus").await;
    let opus2 = enqueue(&store, "claude:opus").await;
    let haiku = enqueue(&store, "claude:haiku").await;
    let plain = enqueue(&store, "claude").await;
    // opus has room for one: the second opus waits, haiku and the job
    // without a model go ahead of it (no head-of-line blocking), up to the
    // pool's three.
    assert_eq!(wake(&store, &cfg, "claude").await, 3);
    assert_eq!(
        delivered(&deliveries(&store).await),
        vec![opus1.clone(), haiku, plain]
    );
    let parked = store.parked("claude").await.unwrap();
    assert_eq!(parked.total(), 1);
    assert!(
        parked.lanes.contains(&("opus".to_string(), 1)),
        "{parked:?}"
    );
    // Nothing more while the slots are held.
    assert_eq!(wake(&store, &cfg, "claude").await, 0);
    // opus1 ends: its slot goes back and opus2 is granted one.
    assert!(store
        .apply(&opus1, &Move::to(JobState::Completed))
        .await
        .unwrap()
        .done());
    assert_eq!(wake(&store, &cfg, "claude").await, 1);
    assert_eq!(delivered(&deliveries(&store).await).last(), Some(&opus2));
}

#[tokio::test]
async fn wake_grants_in_enqueue_order_up_to_the_pool_limit() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let cfg = admission("[limits]\ncodex = 2\n");
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(enqueue(&store, "codex").await);
    }
    assert_eq!(wake(&store, &cfg, "codex").await, 2);
    assert_eq!(delivered(&deliveries(&store).await), ids[..2].to_vec());
    let rec = store.get(&ids[0]).await.unwrap().unwrap();
    assert_eq!(rec.seq, 2, "a grant is a new delivery");
    assert!(rec.admitted_at.is_some());
    assert_eq!(store.parked("codex").await.unwrap().total(), 2);
}

#[tokio::test]
async fn wake_of_a_paused_pool_grants_nothing_and_sets_a_timer() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let cfg = AdmissionConfig::default();
    enqueue(&store, "gemini").await;
    store
        .pause_pool("gemini", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(wake(&store, &cfg, "gemini").await, 0);
    let timer: Option<f64> =
        query(&store, redis::cmd("ZSCORE").arg("t:timers").arg("gemini")).await;
    assert!(timer.is_some(), "the pause's end is a timer");
    assert!(
        store.due_timers().await.unwrap().due.is_empty(),
        "not due yet"
    );
}

#[tokio::test]
async fn due_takes_the_timers_that_are_due_once() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let _: () = query(
        &store,
        redis::cmd("ZADD")
            .arg("t:timers")
            .arg(1)
            .arg("claude")
            .arg(i64::MAX / 2)
            .arg("codex"),
    )
    .await;
    assert_eq!(
        store.due_timers().await.unwrap().due,
        vec!["claude".to_string()]
    );
    assert!(store.due_timers().await.unwrap().due.is_empty(), "taken");
}

#[tokio::test]
async fn free_workspaces_sends_the_head_of_a_dead_holders_line_to_its_lane() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let ws = "core/demo/task-1";
    let waiter = enqueue(&store, "claude").await;
    let ttl = Duration::from_secs(60);
    assert_eq!(
        store.take_workspace(ws, "01HOLDER", ttl).await.unwrap(),
        WorkspaceTake::Taken
    );
    let m = Move::to(JobState::Waiting).park(ParkIn::Workspace(ws.into()));
    assert!(store.apply(&waiter, &m).await.unwrap().done());
    assert_eq!(store.parked("claude").await.unwrap().total(), 0);
    // The holder is alive: nothing moves.
    assert_eq!(store.free_dead_workspaces().await.unwrap(), 0);
    // The holder died: its lease is gone.
    let _: () = query(
        &store,
        redis::cmd("DEL").arg(store.keys().workspace_lease(ws)),
    )
    .await;
    assert_eq!(store.free_dead_workspaces().await.unwrap(), 1);
    assert_eq!(store.parked("claude").await.unwrap().total(), 1);
    let parked: String = query(
        &store,
        redis::cmd("HGET")
            .arg(store.keys().job(&waiter))
            .arg("parked"),
    )
    .await;
    assert_eq!(parked, "lane");
    assert_eq!(store.free_dead_workspaces().await.unwrap(), 0, "line empty");
}
