//! The `move` script (and the `open` and `finish` scripts that write and read
//! the records it moves), against a real redis-server: no worker, no Docker.

mod common;

use std::time::Duration;

use agentq_shared::{
    status::JobState,
    store::{lease::Acquire, Move, Moved, ParkIn, StoreError},
};
use common::{deliveries, enqueue, query, record, Redis};

/// Wakes `pool` with no limits; returns how many were granted.
async fn wake(store: &agentq_shared::store::JobStore, pool: &str) -> usize {
    let cfg = agentq_shared::admission::AdmissionConfig::default();
    store
        .wake_pool(&cfg, pool, Duration::from_secs(60), 10)
        .await
        .unwrap()
}

/// Enqueues a job, grants it a slot and takes it as `worker`: (id, token).
async fn running(store: &agentq_shared::store::JobStore, worker: &str) -> (String, String) {
    let id = enqueue(store, "claude").await;
    assert_eq!(wake(store, "claude").await, 1);
    let d = deliveries(store).await.pop().unwrap();
    let Acquire::Acquired { token, .. } = store
        .acquire(&d, worker, Duration::from_secs(60))
        .await
        .unwrap()
    else {
        panic!("not acquired")
    };
    (id, token)
}

#[tokio::test]
async fn move_is_refused_by_a_stale_token() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let (id, token) = running(&store, "w1").await;
    let stale = format!("{token}0");
    let m = Move::to(JobState::Running).fenced(&stale);
    assert_eq!(store.apply(&id, &m).await.unwrap(), Moved::Refused);
    assert_eq!(store.state_of(&id).await.unwrap(), Some(JobState::Queued));
    let m = Move::to(JobState::Running).fenced(&token);
    assert!(store.apply(&id, &m).await.unwrap().done());
    assert_eq!(store.state_of(&id).await.unwrap(), Some(JobState::Running));
}

#[tokio::test]
async fn move_is_refused_by_a_stale_seq() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let id = enqueue(&store, "claude").await;
    let m = Move::to(JobState::Cancelled).seq(7);
    assert_eq!(store.apply(&id, &m).await.unwrap(), Moved::Refused);
    let m = Move::to(JobState::Cancelled).seq(1);
    assert!(store.apply(&id, &m).await.unwrap().done());
    assert_eq!(
        store.state_of(&id).await.unwrap(),
        Some(JobState::Cancelled)
    );
}

#[tokio::test]
async fn move_of_no_job_finds_no_record() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let m = Move::to(JobState::Running);
    assert_eq!(
        store.apply("01NOSUCHJOB", &m).await.unwrap(),
        Moved::NoRecord
    );
}

#[tokio::test]
async fn move_refuses_a_seq_that_is_not_a_number_and_writes_nothing() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let id = enqueue(&store, "claude").await;
    // Opened (a first move), then its seq spoiled by hand.
    let m = Move::to(JobState::Queued).fields(&[("reason", "queued".to_string())]);
    assert!(store.apply(&id, &m).await.unwrap().done());
    let _: () = query(
        &store,
        redis::cmd("HSET")
            .arg(store.keys().job(&id))
            .arg("seq")
            .arg("x"),
    )
    .await;
    let m = Move::to(JobState::Waiting).deliver(Duration::ZERO, false);
    let err = store.apply(&id, &m).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Corrupt(_, ref why) if why.contains("seq")),
        "{err}"
    );
    let state: String = query(
        &store,
        redis::cmd("HGET").arg(store.keys().job(&id)).arg("state"),
    )
    .await;
    assert_eq!(state, JobState::Queued.as_str());
    assert!(
        deliveries(&store).await.is_empty(),
        "no delivery was pushed"
    );
}

#[tokio::test]
async fn move_to_a_final_state_gives_the_slot_back() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let (id, token) = running(&store, "w1").await;
    let slots = store.keys().limit("claude");
    let held: Vec<String> = query(&store, redis::cmd("ZRANGE").arg(&slots).arg(0).arg(-1)).await;
    assert_eq!(held, vec![id.clone()]);
    let m = Move::to(JobState::Failed).fenced(&token);
    assert!(store.apply(&id, &m).await.unwrap().done());
    let held: Vec<String> = query(&store, redis::cmd("ZRANGE").arg(&slots).arg(0).arg(-1)).await;
    assert!(held.is_empty(), "{held:?}");
    let rec = store.get(&id).await.unwrap().unwrap();
    assert_eq!((rec.state, rec.owner.as_str()), (JobState::Failed, ""));
    let hist = store.history(&id).await.unwrap();
    assert_eq!(hist.last().unwrap().state, JobState::Failed.as_str());
}

#[tokio::test]
async fn move_with_park_puts_the_job_back_in_its_lane() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let (id, token) = running(&store, "w1").await;
    assert_eq!(store.parked("claude").await.unwrap().total(), 0);
    let m = Move::to(JobState::Waiting)
        .fenced(&token)
        .park(ParkIn::Lane);
    assert!(store.apply(&id, &m).await.unwrap().done());
    assert_eq!(store.parked("claude").await.unwrap().total(), 1);
    let parked: String = query(
        &store,
        redis::cmd("HGET").arg(store.keys().job(&id)).arg("parked"),
    )
    .await;
    assert_eq!(parked, "lane");
}

#[tokio::test]
async fn open_moves_a_packed_record_to_its_own_hash() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let id = enqueue(&store, "claude").await;
    let before = store.get(&id).await.unwrap().unwrap();
    let fresh: bool = query(
        &store,
        redis::cmd("HEXISTS").arg(store.keys().fresh()).arg(&id),
    )
    .await;
    let own: bool = query(&store, redis::cmd("EXISTS").arg(store.keys().job(&id))).await;
    assert!(fresh && !own, "enqueue packs the record");
    // A quiet move to the same state opens it and changes nothing else.
    let mut m = Move::to(JobState::Queued);
    m.quiet = true;
    assert!(store.apply(&id, &m).await.unwrap().done());
    let fresh: bool = query(
        &store,
        redis::cmd("HEXISTS").arg(store.keys().fresh()).arg(&id),
    )
    .await;
    let own: bool = query(&store, redis::cmd("EXISTS").arg(store.keys().job(&id))).await;
    assert!(!fresh && own, "opened");
    let queued: Option<f64> = query(
        &store,
        redis::cmd("ZSCORE")
            .arg(store.keys().state("queued"))
            .arg(&id),
    )
    .await;
    assert!(queued.is_some(), "in its state's index once opened");
    let after = store.get(&id).await.unwrap().unwrap();
    assert_eq!(after.input, before.input);
    assert_eq!((after.state, after.seq), (before.state, before.seq));
}

#[tokio::test]
async fn open_fails_a_packed_record_that_is_not_json() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let id = enqueue(&store, "claude").await;
    let _: () = query(
        &store,
        redis::cmd("HSET")
            .arg(store.keys().fresh())
            .arg(&id)
            .arg("{not json"),
    )
    .await;
    let d = agentq_shared::store::Delivery {
        job_id: id.clone(),
        seq: 1,
    };
    // acquire opens it first: the job is failed, and so the delivery stale.
    let got = store
        .acquire(&d, "w1", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(got, Acquire::Stale);
    let rec = store.get(&id).await.unwrap().unwrap();
    assert_eq!(rec.state, JobState::Failed);
    assert!(
        rec.error.contains("record unreadable: packed: not JSON"),
        "{}",
        rec.error
    );
    let kept: String = query(
        &store,
        redis::cmd("HGET").arg(store.keys().job(&id)).arg("packed"),
    )
    .await;
    assert_eq!(kept, "{not json");
}

#[tokio::test]
async fn finish_answers_the_existing_job_for_a_repeated_key() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let mut a = record("claude");
    a.key = "k1".into();
    let mut b = record("claude");
    b.key = "k1".into();
    let first = store.create(std::slice::from_ref(&a)).await.unwrap();
    assert_eq!(first[0], agentq_shared::store::Created::New(a.id.clone()));
    let second = store.create(std::slice::from_ref(&b)).await.unwrap();
    assert_eq!(
        second[0],
        agentq_shared::store::Created::Existing(a.id.clone())
    );
    assert!(store.get(&b.id).await.unwrap().is_none(), "not written");
    assert_eq!(store.parked("claude").await.unwrap().total(), 1);
}

#[tokio::test]
async fn finish_delivers_a_dry_run_at_once() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let mut r = record("claude");
    r.input.dry_run = true;
    store.create(std::slice::from_ref(&r)).await.unwrap();
    let d = deliveries(&store).await;
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].job_id.as_str(), d[0].seq), (r.id.as_str(), 1));
    assert_eq!(store.parked("claude").await.unwrap().total(), 0);
    let events = store.recent_events(10).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.fields.get("event").map(String::as_str) == Some("enqueued")),
        "{events:?}"
    );
}

/// Issue 34: a delayed delivery (a retry) is a timer (`@deliveries`, due when
/// apalis's whole second is), published as the first one due; `due` moves
/// the deliveries due by then to the active list, as apalis's fetch would,
/// so no worker polls for due retries.
#[tokio::test]
async fn a_delayed_delivery_is_a_timer_and_due_moves_it_to_the_active_list() {
    use futures::StreamExt;
    let redis = Redis::start();
    let store = redis.store("t").await;
    let (id, token) = running(&store, "w1").await;
    // The first delivery stays in the list (this test takes it by reading).
    let before = deliveries(&store).await.len();
    let mut ps = store.subscribe(&["t:timer".to_string()]).await.unwrap();
    let mut deliver = store.subscribe(&["t:deliver".to_string()]).await.unwrap();
    let m = Move::to(JobState::Waiting)
        .fenced(&token)
        .deliver(Duration::from_millis(1500), false);
    assert!(store.apply(&id, &m).await.unwrap().done());
    let at: i64 = tokio::time::timeout(Duration::from_secs(10), ps.on_message().next())
        .await
        .expect("the delayed delivery's timer was not published")
        .unwrap()
        .get_payload::<String>()
        .unwrap()
        .parse()
        .unwrap();
    let score: f64 = query(
        &store,
        redis::cmd("ZSCORE")
            .arg("t:timers")
            .arg(agentq_shared::store::park::DELIVERIES_TIMER),
    )
    .await;
    assert_eq!((score as i64, at % 1000), (at, 0), "due on a whole second");
    assert_eq!(deliveries(&store).await.len(), before, "not due yet");
    let took = loop {
        let d = store.due_timers().await.unwrap();
        if !d.due.is_empty() {
            break d;
        }
        assert!(d.next.is_some(), "the timer went away: {d:?}");
        tokio::time::sleep(d.next.unwrap().min(Duration::from_millis(200))).await;
    };
    assert_eq!(took.due, vec![agentq_shared::store::park::DELIVERIES_TIMER]);
    assert_eq!(took.next, None, "no delayed delivery is left");
    let now = deliveries(&store).await;
    assert_eq!(now.len(), before + 1, "{now:?}");
    assert_eq!(now.last().unwrap().job_id, id);
    let told = tokio::time::timeout(Duration::from_secs(10), deliver.on_message().next())
        .await
        .expect("the intakes were not told")
        .unwrap();
    assert_eq!(told.get_payload::<String>().unwrap(), "1");
}

/// Issue 34: `--wait` is woken by the job's moves (`{ns}:moved:{id}`), not by
/// polling: with a re-read only every ten minutes, `wait_final` returns once
/// the final move is written.
#[tokio::test]
async fn wait_final_is_woken_by_the_final_move() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let (id, token) = running(&store, "w1").await;
    let waiter = {
        let (store, id) = (store.clone(), id.clone());
        tokio::spawn(async move {
            store
                .wait_final(&id, Duration::from_secs(600), |_| {})
                .await
        })
    };
    // The waiter has read the record once (running) and waits.
    loop {
        let subs: Vec<(String, i64)> = query(
            &store,
            redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(format!("t:moved:{id}")),
        )
        .await;
        if subs[0].1 == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let m = Move::to(JobState::Failed).fenced(&token);
    assert!(store.apply(&id, &m).await.unwrap().done());
    let rec = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("wait_final was not woken by the move")
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(rec.state, JobState::Failed);
}
