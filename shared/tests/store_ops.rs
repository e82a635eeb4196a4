//! The bulk scripts (`cancel_many`, `retry_many`) and `purge_many`, against a
//! real redis-server: no worker, no Docker.

mod common;

use std::time::Duration;

use agentq_shared::{
    status::JobState,
    store::{bulk::BulkResult, lease::Acquire, Delivery, Move},
};
use common::{enqueue, query, Redis};

fn no_progress() -> impl FnMut(usize, usize) + Send {
    |_, _| {}
}

#[tokio::test]
async fn cancel_many_cancels_parked_jobs_and_flags_running_ones() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let running = enqueue(&store, "claude").await;
    let granted = store
        .wake_pool(&Default::default(), "claude", Duration::from_secs(60), 10)
        .await
        .unwrap();
    assert_eq!(granted, 1);
    let parked = enqueue(&store, "claude").await;
    let done = enqueue(&store, "claude").await;
    let d = Delivery {
        job_id: running.clone(),
        seq: 2,
    };
    let Acquire::Acquired { token, .. } = store
        .acquire(&d, "w1", Duration::from_secs(60))
        .await
        .unwrap()
    else {
        panic!("not acquired")
    };
    let m = Move::to(JobState::Running).fenced(&token);
    assert!(store.apply(&running, &m).await.unwrap().done());
    assert!(store
        .apply(&done, &Move::to(JobState::Completed))
        .await
        .unwrap()
        .done());
    let ids = vec![
        parked.clone(),
        running.clone(),
        done.clone(),
        "01NOSUCHJOB".into(),
    ];
    let out = store.cancel_many(&ids, &mut no_progress()).await.unwrap();
    assert_eq!(
        out,
        vec![
            BulkResult::Done(JobState::Cancelled),
            BulkResult::Left(JobState::Running),
            BulkResult::Left(JobState::Completed),
            BulkResult::NoSuchJob,
        ]
    );
    assert_eq!(
        store.parked("claude").await.unwrap().total(),
        0,
        "out of the lane"
    );
    assert!(
        store.cancel_requested(&running).await.unwrap(),
        "its worker is asked"
    );
    assert!(!store.cancel_requested(&done).await.unwrap());
}

#[tokio::test]
async fn retry_many_runs_again_only_finished_jobs_in_the_state_selected() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let failed = enqueue(&store, "claude").await;
    let succeeded = enqueue(&store, "claude").await;
    let queued = enqueue(&store, "claude").await;
    let fields = [("error", "boom".to_string())];
    let m = Move::to(JobState::Failed).fields(&fields);
    assert!(store.apply(&failed, &m).await.unwrap().done());
    assert!(store
        .apply(&succeeded, &Move::to(JobState::Completed))
        .await
        .unwrap()
        .done());
    let ids = vec![failed.clone(), succeeded.clone(), queued.clone()];
    let out = store
        .retry_selected(&ids, Some(JobState::Failed), &mut no_progress())
        .await
        .unwrap();
    // (A job left in `queued` reads as `Done(Queued)`: the answer is the
    // state after, and a retry's is `queued` too.)
    assert_eq!(
        out[..2],
        [
            BulkResult::Done(JobState::Queued),
            BulkResult::Left(JobState::Completed),
        ]
    );
    assert_eq!(
        store.get(&queued).await.unwrap().unwrap().seq,
        1,
        "left alone"
    );
    let rec = store.get(&failed).await.unwrap().unwrap();
    assert_eq!(
        (rec.state, rec.error.as_str(), rec.seq),
        (JobState::Queued, "", 2)
    );
    // At the back of the lane: after `queued`, which was enqueued later.
    let lane: Vec<String> = query(
        &store,
        redis::cmd("ZRANGE")
            .arg(store.keys().lane("claude", "-"))
            .arg(0)
            .arg(-1),
    )
    .await;
    assert_eq!(lane, vec![queued, failed]);
}

#[tokio::test]
async fn purge_many_deletes_only_jobs_still_in_the_state_purged() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let old = enqueue(&store, "claude").await;
    let retried = enqueue(&store, "claude").await;
    for id in [&old, &retried] {
        assert!(store
            .apply(id, &Move::to(JobState::Cancelled))
            .await
            .unwrap()
            .done());
    }
    let now = store.redis_now_ms().await.unwrap() + 1_000;
    // `retried` leaves `cancelled` before the purge reaches it.
    let out = store
        .retry_many(std::slice::from_ref(&retried), &mut no_progress())
        .await
        .unwrap();
    assert_eq!(out, vec![BulkResult::Done(JobState::Queued)]);
    let purged = store.purge(JobState::Cancelled, now).await.unwrap();
    assert_eq!(purged.purged, 1);
    assert!(store.get(&old).await.unwrap().is_none());
    assert!(store.history(&old).await.unwrap().is_empty());
    assert_eq!(
        store.state_of(&retried).await.unwrap(),
        Some(JobState::Queued)
    );
}
