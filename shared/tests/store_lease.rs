//! The run lease scripts (`acquire`, `run_lease_renew`, `run_lease_release`)
//! and the fenced writes (`set_fenced`, `log_fenced`, with `log_tail_info`),
//! against a real redis-server: no worker, no Docker.

mod common;

use std::time::Duration;

use agentq_shared::{
    status::JobState,
    store::{lease::Acquire, Delivery, JobStore},
    transition::Note,
};
use common::{enqueue, query, Redis};

const TTL: Duration = Duration::from_secs(60);

fn delivery(id: &str, seq: u64) -> Delivery {
    Delivery {
        job_id: id.to_string(),
        seq,
    }
}

async fn take(store: &JobStore, id: &str, worker: &str) -> String {
    match store.acquire(&delivery(id, 1), worker, TTL).await.unwrap() {
        Acquire::Acquired { token, previous } => {
            assert_eq!(previous, "");
            token
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn acquire_takes_a_job_once_and_refuses_stale_and_gone_deliveries() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let id = enqueue(&store, "claude").await;
    let token = take(&store, &id, "w1").await;
    assert_eq!(token, "w1/1");
    assert_eq!(
        store.acquire(&delivery(&id, 1), "w2", TTL).await.unwrap(),
        Acquire::Held(token.clone())
    );
    assert_eq!(
        store.acquire(&delivery(&id, 2), "w2", TTL).await.unwrap(),
        Acquire::Stale
    );
    assert_eq!(
        store
            .acquire(&delivery("01NOSUCHJOB", 1), "w2", TTL)
            .await
            .unwrap(),
        Acquire::Gone
    );
    // The lease gone (w1 died), a take-over gets the next token.
    let _: () = query(&store, redis::cmd("DEL").arg(store.keys().run_lease(&id))).await;
    assert_eq!(
        store.acquire(&delivery(&id, 1), "w2", TTL).await.unwrap(),
        Acquire::Acquired {
            token: "w2/2".into(),
            previous: token
        }
    );
}

#[tokio::test]
async fn acquire_fails_a_job_whose_fence_is_not_a_number() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let id = enqueue(&store, "claude").await;
    let token = take(&store, &id, "w1").await;
    store.release_run_lease(&id, &token).await.unwrap();
    let _: () = query(
        &store,
        redis::cmd("HSET")
            .arg(store.keys().job(&id))
            .arg("fence")
            .arg("x"),
    )
    .await;
    assert_eq!(
        store.acquire(&delivery(&id, 1), "w2", TTL).await.unwrap(),
        Acquire::Unreadable
    );
    let rec = store.get(&id).await.unwrap().unwrap();
    assert_eq!(rec.state, JobState::Failed);
    assert!(rec.error.contains("fence"), "{}", rec.error);
}

#[tokio::test]
async fn run_lease_renew_and_release_need_the_holders_token() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let id = enqueue(&store, "claude").await;
    let token = take(&store, &id, "w1").await;
    assert!(!store.renew_run_lease(&id, "w9/9", TTL).await.unwrap());
    assert!(store.renew_run_lease(&id, &token, TTL).await.unwrap());
    store.release_run_lease(&id, "w9/9").await.unwrap();
    assert_eq!(
        store.run_lease_holder(&id).await.unwrap(),
        Some(token.clone())
    );
    store.release_run_lease(&id, &token).await.unwrap();
    assert_eq!(store.run_lease_holder(&id).await.unwrap(), None);
    assert!(
        !store.renew_run_lease(&id, &token, TTL).await.unwrap(),
        "gone"
    );
}

#[tokio::test]
async fn set_fenced_and_log_fenced_write_only_as_the_owner() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let id = enqueue(&store, "claude").await;
    let token = take(&store, &id, "w1").await;
    let note = Note {
        fields: vec![("branch", "agent/x".to_string())],
    };
    assert!(!store.note_fenced(&id, "w9/9", &note).await.unwrap());
    assert_eq!(store.get(&id).await.unwrap().unwrap().branch, "");
    assert!(store.note_fenced(&id, &token, &note).await.unwrap());
    assert_eq!(store.get(&id).await.unwrap().unwrap().branch, "agent/x");

    assert!(!store.append_log_fenced(&id, "w9/9", b"no").await.unwrap());
    assert_eq!(store.log_tail_info(&id).await.unwrap().kept, 0);
    assert!(store
        .append_log_fenced(&id, &token, b"hello")
        .await
        .unwrap());
    let info = store.log_tail_info(&id).await.unwrap();
    assert_eq!(info.kept, 1);
    assert_eq!(info.dropped, Some(0));
}
