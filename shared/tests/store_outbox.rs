//! The notification outbox's scripts (`notify_hand` in `move`,
//! `pool_outcome`, `quota_pause`, `pool_event`; `notify_lease`,
//! `notify_settle`) against a real redis-server: no worker, no HTTP.

mod common;

use std::time::Duration;

use agentq_shared::{
    notify::{NotifyConfig, NotifyEvent, NotifyFormat},
    status::JobState,
    store::{
        outbox::{receiver_id, Settle},
        JobStore, Move,
    },
};
use common::{enqueue, query, Redis};

fn receiver(url: &str, events: &[NotifyEvent]) -> NotifyConfig {
    NotifyConfig {
        url: url.into(),
        events: events.to_vec(),
        secret_env: None,
        format: NotifyFormat::Json,
        allow_private: false,
    }
}

const A: &str = "https://a.example/hook";
const B: &str = "https://b.example/hook";

async fn routes(store: &JobStore, max: u64) {
    store
        .publish_notify_routes(
            &[
                receiver(
                    A,
                    &[
                        NotifyEvent::Blocked,
                        NotifyEvent::Failed,
                        NotifyEvent::PoolPaused,
                        NotifyEvent::Quota,
                    ],
                ),
                receiver(
                    B,
                    &[
                        NotifyEvent::Failed,
                        NotifyEvent::PoolResumed,
                        NotifyEvent::QueueDrained,
                    ],
                ),
            ],
            max,
        )
        .await
        .unwrap();
}

async fn move_to(store: &JobStore, id: &str, state: JobState, fields: &[(&str, String)]) {
    assert!(store
        .apply(id, &Move::to(state).fields(fields))
        .await
        .unwrap()
        .done());
}

#[tokio::test]
async fn a_move_to_a_wanted_state_hands_one_item_per_receiver_with_the_jobs_fields() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    routes(&store, 100).await;
    let id = enqueue(&store, "claude:opus").await;
    move_to(
        &store,
        &id,
        JobState::Blocked,
        &[("question", "Which DB?".into())],
    )
    .await;
    let due = store.due_notifications(10).await.unwrap();
    assert_eq!(due.len(), 1, "{due:?}");
    let (item, n) = &due[0];
    assert_eq!(n.receiver, receiver_id(A));
    assert!(item.ends_with(&format!("/{}", receiver_id(A))), "{item}");
    assert_eq!((n.event.as_str(), n.job.as_str()), ("blocked", id.as_str()));
    assert_eq!((n.state.as_str(), n.from.as_str()), ("blocked", "queued"));
    assert_eq!(n.question, "Which DB?");
    assert_eq!(
        (n.pool.as_str(), n.agent.as_str()),
        ("claude", "claude:opus")
    );
    assert_eq!(
        (n.org.as_str(), n.repo.as_str(), n.issue.as_str()),
        ("core", "demo", "1")
    );
    assert!(n.id.starts_with("t:"), "{}", n.id);

    // Failed: both receivers, the same event id.
    move_to(&store, &id, JobState::Failed, &[("error", "boom".into())]).await;
    let due = store.due_notifications(10).await.unwrap();
    let failed: Vec<_> = due.iter().filter(|(_, n)| n.event == "failed").collect();
    assert_eq!(failed.len(), 2, "{due:?}");
    assert_eq!(failed[0].1.id, failed[1].1.id);
    assert_ne!(failed[0].1.receiver, failed[1].1.receiver);
    assert_eq!(failed[0].1.error, "boom");

    // A state no receiver asked for hands nothing over.
    let other = enqueue(&store, "codex").await;
    move_to(&store, &other, JobState::Completed, &[]).await;
    assert_eq!(store.due_notifications(10).await.unwrap().len(), 3);
}

#[tokio::test]
async fn without_routes_nothing_is_handed_over_and_the_stream_trim_loses_nothing() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    store.publish_notify_routes(&[], 100).await.unwrap();
    let id = enqueue(&store, "claude").await;
    move_to(&store, &id, JobState::Blocked, &[]).await;
    assert!(store.due_notifications(10).await.unwrap().is_empty());

    // Routes written: the next move is in the outbox however the stream is
    // trimmed after it (no notifier ran).
    routes(&store, 100).await;
    let id = enqueue(&store, "claude").await;
    move_to(&store, &id, JobState::Blocked, &[]).await;
    let _: i64 = query(
        &store,
        redis::cmd("XTRIM")
            .arg(store.keys().events())
            .arg("MAXLEN")
            .arg(0),
    )
    .await;
    assert_eq!(store.due_notifications(10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn at_the_outbox_bound_the_oldest_is_dead_lettered_and_counted() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    routes(&store, 2).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let id = enqueue(&store, "claude").await;
        move_to(&store, &id, JobState::Blocked, &[]).await;
        ids.push(id);
    }
    let view = store.outbox(10).await.unwrap();
    assert_eq!(view.pending.len(), 2);
    assert_eq!((view.dead_total, view.overflowed), (1, 1));
    assert_eq!(view.dead.len(), 1);
    assert_eq!(view.dead[0].job, ids[0], "the oldest goes");
    assert_eq!(view.dead[0].dead_reason.as_deref(), Some("outbox full"));
}

#[tokio::test]
async fn settling_needs_the_lease_and_sent_retry_dead_do_what_they_say() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    routes(&store, 100).await;
    let ttl = Duration::from_secs(30);
    assert!(store.notify_lease("w1", ttl).await.unwrap());
    assert!(!store.notify_lease("w2", ttl).await.unwrap());
    assert!(store.notify_lease("w1", ttl).await.unwrap(), "renewed");
    for _ in 0..3 {
        let id = enqueue(&store, "claude").await;
        move_to(&store, &id, JobState::Blocked, &[]).await;
    }
    let due = store.due_notifications(10).await.unwrap();
    let items: Vec<String> = due.iter().map(|(i, _)| i.clone()).collect();
    // Not the lease holder: nothing written.
    assert!(!store
        .settle_notification("w2", &items[0], &Settle::Sent, "ok", Some(200))
        .await
        .unwrap());
    assert_eq!(store.due_notifications(10).await.unwrap().len(), 3);

    assert!(store
        .settle_notification("w1", &items[0], &Settle::Sent, "ok", Some(200))
        .await
        .unwrap());
    let far = store.redis_now_ms().await.unwrap() + 3_600_000;
    assert!(store
        .settle_notification(
            "w1",
            &items[1],
            &Settle::Retry(far),
            "HTTP 500: down",
            Some(500)
        )
        .await
        .unwrap());
    assert!(store
        .settle_notification("w1", &items[2], &Settle::Dead, "HTTP 500: down", Some(500))
        .await
        .unwrap());
    // Nothing is due now: one sent, one later, one dead.
    assert!(store.due_notifications(10).await.unwrap().is_empty());
    let view = store.outbox(10).await.unwrap();
    assert_eq!(view.pending.len(), 1);
    assert_eq!(view.pending[0].tries, 1);
    assert_eq!(view.pending[0].last_error, "HTTP 500: down");
    assert_eq!(view.pending[0].last_status, "500");
    assert_eq!((view.sent.len(), view.sent_total), (1, 1));
    assert_eq!(
        (view.dead.len(), view.dead_total, view.overflowed),
        (1, 1, 0)
    );
    assert_eq!(view.dead[0].dead_reason.as_deref(), Some("HTTP 500: down"));
    // A settled item is gone: settling it again finds nothing.
    assert!(!store
        .settle_notification("w1", &items[0], &Settle::Sent, "ok", Some(200))
        .await
        .unwrap());
}

#[tokio::test]
async fn pool_events_are_handed_over_where_they_are_recorded() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    routes(&store, 100).await;
    store
        .pause_pool("claude", Duration::from_secs(60))
        .await
        .unwrap();
    store.resume_pool("claude").await.unwrap();
    store
        .pool_event("queue_drained", "codex", &[])
        .await
        .unwrap();
    // The fast-failure pause (pool_outcome).
    let cfg = agentq_shared::admission::BackoffConfig {
        failures: 1,
        ..Default::default()
    };
    assert!(store
        .record_outcome(&cfg, "gemini", true, Duration::from_millis(1))
        .await
        .unwrap());
    // The quota pause (quota_pause).
    let at = chrono::Utc::now() + chrono::Duration::minutes(5);
    store
        .pause_for_quota("claude", at, "usage limit reached", "J1")
        .await
        .unwrap();
    let due = store.due_notifications(10).await.unwrap();
    let got: Vec<(String, String, String)> = due
        .iter()
        .map(|(_, n)| (n.event.clone(), n.pool.clone(), n.receiver.clone()))
        .collect();
    assert_eq!(
        got,
        [
            ("pool_paused".into(), "claude".into(), receiver_id(A)),
            ("pool_resumed".into(), "claude".into(), receiver_id(B)),
            ("queue_drained".into(), "codex".into(), receiver_id(B)),
            ("pool_paused".into(), "gemini".into(), receiver_id(A)),
            ("quota".into(), "claude".into(), receiver_id(A)),
        ]
    );
    assert!(!due[0].1.until.is_empty());
    assert_eq!(
        (due[4].1.job.as_str(), due[4].1.line.as_str()),
        ("J1", "usage limit reached")
    );
    // Each is on the events stream too.
    let n: u64 = query(&store, redis::cmd("XLEN").arg(store.keys().events())).await;
    assert_eq!(n, 5);
}

#[tokio::test]
async fn pools_with_work_are_those_with_queued_or_running_jobs() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let a = enqueue(&store, "claude").await;
    let b = enqueue(&store, "codex").await;
    // Jobs not opened yet (no move): their pools cannot be told.
    assert_eq!(store.pools_with_work().await.unwrap(), None);
    move_to(&store, &a, JobState::Running, &[]).await;
    move_to(&store, &b, JobState::Blocked, &[]).await;
    let pools = store.pools_with_work().await.unwrap();
    assert_eq!(pools, Some(["claude".to_string()].into()));
}

/// The verify stage's `needs_review` event (`job_event`) is in the stream and
/// handed to the outbox in one call, with the job's fields and the reason.
#[tokio::test]
async fn a_needs_review_event_is_handed_over_with_the_jobs_fields_and_its_reason() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    store
        .publish_notify_routes(&[receiver(A, &[NotifyEvent::NeedsReview])], 100)
        .await
        .unwrap();
    let id = enqueue(&store, "codex").await;
    move_to(&store, &id, JobState::Completed, &[]).await;
    assert!(store.due_notifications(10).await.unwrap().is_empty());
    store
        .add_needs_review_event(&id, "checks failed: ci/build")
        .await
        .unwrap();
    let due = store.due_notifications(10).await.unwrap();
    assert_eq!(due.len(), 1, "{due:?}");
    let n = &due[0].1;
    assert_eq!(
        (n.event.as_str(), n.job.as_str(), n.pool.as_str()),
        ("needs_review", id.as_str(), "codex")
    );
    assert_eq!(n.reason, "checks failed: ci/build");
    assert_eq!((n.org.as_str(), n.repo.as_str()), ("core", "demo"));
    let stream: redis::Value = query(
        &store,
        redis::cmd("XRANGE")
            .arg(store.keys().events())
            .arg("-")
            .arg("+"),
    )
    .await;
    assert!(
        format!("{stream:?}").contains("needs_review"),
        "not in the stream: {stream:?}"
    );
}
