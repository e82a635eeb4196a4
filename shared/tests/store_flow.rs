//! Issue 33's flows in the store (`flow_add`, the `flow_end` snippet in every
//! script that ends a job, `batch_seal`, the `unique_key` snippet of
//! `finish`), against a real redis-server: no worker, no Docker.

mod common;

use agentq_shared::{
    flow,
    record::JobRecord,
    status::{JobState, WaitReason},
    store::{bulk::BulkResult, Created, JobStore, Move},
};
use common::{query, record, Redis};

/// Enqueues one job for `claude` after `parents`; returns its id.
async fn after(store: &JobStore, parents: &[&str], any: bool) -> String {
    let mut rec = record("claude");
    let parents: Vec<String> = parents.iter().map(|p| p.to_string()).collect();
    flow::wait_for(&mut rec, &parents, any);
    store.create(std::slice::from_ref(&rec)).await.unwrap();
    rec.id
}

async fn get(store: &JobStore, id: &str) -> JobRecord {
    store.get(id).await.unwrap().unwrap()
}

async fn end(store: &JobStore, id: &str, state: JobState) {
    assert!(store.apply(id, &Move::to(state)).await.unwrap().done());
}

/// The events stream's entries with field `event` = `name`.
async fn events_named(store: &JobStore, name: &str) -> Vec<Vec<String>> {
    let entries: Vec<(String, Vec<String>)> = query(
        store,
        redis::cmd("XRANGE")
            .arg(store.keys().events())
            .arg("-")
            .arg("+"),
    )
    .await;
    entries
        .into_iter()
        .map(|(_, f)| f)
        .filter(|f| f.windows(2).any(|w| w[0] == "event" && w[1] == name))
        .collect()
}

#[tokio::test]
async fn a_chain_runs_in_order_each_job_parked_only_once_its_parent_completed() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let a = common::enqueue(&store, "claude").await;
    let b = after(&store, &[&a], false).await;
    let c = after(&store, &[&b], false).await;
    for id in [&b, &c] {
        let r = get(&store, id).await;
        assert_eq!(
            (r.state, r.reason),
            (JobState::Waiting, Some(WaitReason::Dependency))
        );
    }
    assert_eq!(
        store.parked("claude").await.unwrap().total(),
        1,
        "only a in line"
    );
    assert_eq!(store.dependants_of(&a).await.unwrap(), vec![b.clone()]);
    end(&store, &a, JobState::Completed).await;
    assert_eq!(get(&store, &b).await.state, JobState::Queued);
    assert_eq!(get(&store, &c).await.state, JobState::Waiting);
    assert_eq!(
        store.parked("claude").await.unwrap().total(),
        1,
        "b in line"
    );
    assert!(store.dependants_of(&a).await.unwrap().is_empty());
    end(&store, &b, JobState::Merged).await;
    assert_eq!(get(&store, &c).await.state, JobState::Queued);
}

#[tokio::test]
async fn a_failed_parent_cancels_its_dependants_naming_it_and_that_cascades() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let a = common::enqueue(&store, "claude").await;
    let b = after(&store, &[&a], false).await;
    let c = after(&store, &[&b], false).await;
    end(&store, &a, JobState::Completed).await;
    end(&store, &b, JobState::Failed).await;
    let rc = get(&store, &c).await;
    assert_eq!(rc.state, JobState::Cancelled);
    assert_eq!(rc.error, format!("parent {b} failed"));
    // Cascade: a timed-out root cancels the whole chain below it.
    let r = common::enqueue(&store, "claude").await;
    let x = after(&store, &[&r], false).await;
    let y = after(&store, &[&x], false).await;
    end(&store, &r, JobState::TimedOut).await;
    assert_eq!(get(&store, &x).await.error, format!("parent {r} timed_out"));
    let ry = get(&store, &y).await;
    assert_eq!(
        (ry.state, ry.error.as_str()),
        (
            JobState::Cancelled,
            format!("parent {x} cancelled").as_str()
        )
    );
    let hist = store.history(&y).await.unwrap();
    assert_eq!(hist.last().unwrap().state, "cancelled", "{hist:?}");
}

#[tokio::test]
async fn two_parents_are_both_waited_for_and_after_any_runs_after_a_failure() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let p1 = common::enqueue(&store, "claude").await;
    let p2 = common::enqueue(&store, "claude").await;
    let both = after(&store, &[&p1, &p2], false).await;
    let any = after(&store, &[&p1, &p2], true).await;
    end(&store, &p1, JobState::Completed).await;
    assert_eq!(get(&store, &both).await.state, JobState::Waiting);
    end(&store, &p2, JobState::Failed).await;
    assert_eq!(get(&store, &both).await.state, JobState::Cancelled);
    assert_eq!(get(&store, &any).await.state, JobState::Queued);
}

#[tokio::test]
async fn a_parent_already_final_or_missing_is_settled_at_enqueue() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let done = common::enqueue(&store, "claude").await;
    end(&store, &done, JobState::Completed).await;
    let failed = common::enqueue(&store, "claude").await;
    end(&store, &failed, JobState::Failed).await;
    let runs = after(&store, &[&done], false).await;
    assert_eq!(get(&store, &runs).await.state, JobState::Queued);
    assert_eq!(store.parked("claude").await.unwrap().total(), 1);
    let cancelled = after(&store, &[&failed], false).await;
    let r = get(&store, &cancelled).await;
    assert_eq!(
        (r.state, r.error),
        (JobState::Cancelled, format!("parent {failed} failed"))
    );
    assert_eq!(
        get(&store, &after(&store, &[&failed], true).await)
            .await
            .state,
        JobState::Queued
    );
    let missing = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
    let r = get(&store, &after(&store, &[missing], false).await).await;
    assert_eq!(r.error, format!("parent {missing} does not exist"));
    assert_eq!(
        store
            .first_missing(&[done.clone(), missing.into()])
            .await
            .unwrap(),
        Some(missing.into())
    );
}

#[tokio::test]
async fn a_waiting_dependant_is_cancelled_at_once_and_so_are_its_own() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let a = common::enqueue(&store, "claude").await;
    let b = after(&store, &[&a], false).await;
    let c = after(&store, &[&b], false).await;
    let out = store
        .cancel_many(std::slice::from_ref(&b), &mut |_, _| {})
        .await
        .unwrap();
    assert_eq!(out, vec![BulkResult::Done(JobState::Cancelled)]);
    assert_eq!(get(&store, &c).await.error, format!("parent {b} cancelled"));
    end(&store, &a, JobState::Completed).await;
    assert_eq!(
        get(&store, &b).await.state,
        JobState::Cancelled,
        "left cancelled"
    );
}

#[tokio::test]
async fn a_parent_whose_record_the_open_prelude_fails_cancels_its_dependants() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let a = common::enqueue(&store, "claude").await;
    let b = after(&store, &[&a], false).await;
    let _: i64 = query(
        &store,
        redis::cmd("HSET")
            .arg(store.keys().fresh())
            .arg(&a)
            .arg("not json"),
    )
    .await;
    // Any script opens it: the cancel finds it failed.
    store
        .cancel_many(std::slice::from_ref(&a), &mut |_, _| {})
        .await
        .unwrap();
    assert_eq!(get(&store, &b).await.error, format!("parent {a} failed"));
}

#[tokio::test]
async fn a_batch_of_20_completes_once_with_one_event_and_one_outbox_item() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let _: i64 = query(
        &store,
        redis::cmd("HSET")
            .arg(store.keys().notify("routes"))
            .arg("batch_done")
            .arg("r1"),
    )
    .await;
    let recs: Vec<JobRecord> = (0..20)
        .map(|_| {
            let mut r = record("claude");
            r.batch = "b1".into();
            r
        })
        .collect();
    // In two chunks, the first ending before the second is in: not done yet.
    store.create(&recs[..10]).await.unwrap();
    for r in &recs[..10] {
        end(&store, &r.id, JobState::Completed).await;
    }
    assert!(events_named(&store, "batch_done").await.is_empty());
    store.create(&recs[10..]).await.unwrap();
    assert_eq!(store.seal_batch("b1").await.unwrap(), (20, 10));
    for r in &recs[10..19] {
        end(&store, &r.id, JobState::Completed).await;
    }
    end(&store, &recs[19].id, JobState::Failed).await;
    // Again: a retried member ending again, a second seal, a merge.
    end(&store, &recs[0].id, JobState::Merged).await;
    assert_eq!(store.seal_batch("b1").await.unwrap(), (20, 20));
    let fired = events_named(&store, "batch_done").await;
    assert_eq!(fired.len(), 1, "{fired:?}");
    let f = &fired[0];
    let field = |k: &str| {
        f.windows(2)
            .find(|w| w[0] == k)
            .map(|w| w[1].clone())
            .unwrap()
    };
    assert_eq!(
        (
            field("batch"),
            field("jobs"),
            field("completed"),
            field("failed")
        ),
        ("b1".into(), "20".into(), "19".into(), "1".into())
    );
    let items: i64 = query(&store, redis::cmd("HLEN").arg(store.keys().notify("items"))).await;
    assert_eq!(items, 1);
    let s = store.batch_status("b1").await.unwrap().unwrap();
    assert_eq!((s.total, s.done, s.fired), (20, 20, true));
    assert!(!s.all_completed());
    assert!(store.batch_status("nope").await.unwrap().is_none());
}

#[tokio::test]
async fn a_batch_already_ended_fires_when_it_is_sealed() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let mut r = record("claude");
    r.batch = "b2".into();
    store.create(std::slice::from_ref(&r)).await.unwrap();
    end(&store, &r.id, JobState::Completed).await;
    assert!(events_named(&store, "batch_done").await.is_empty());
    store.seal_batch("b2").await.unwrap();
    assert_eq!(events_named(&store, "batch_done").await.len(), 1);
    assert!(store
        .batch_status("b2")
        .await
        .unwrap()
        .unwrap()
        .all_completed());
}

#[tokio::test]
async fn a_unique_key_holds_while_its_job_is_active_and_a_plain_key_until_purge() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let unique = || {
        let mut r = record("claude");
        flow::make_unique(&mut r);
        r
    };
    let first = unique();
    assert_eq!(
        store.create(std::slice::from_ref(&first)).await.unwrap(),
        vec![Created::New(first.id.clone())]
    );
    let second = unique();
    assert_eq!(
        store.create(std::slice::from_ref(&second)).await.unwrap(),
        vec![Created::Existing(first.id.clone())]
    );
    end(&store, &first.id, JobState::Completed).await;
    let third = unique();
    assert_eq!(
        store.create(std::slice::from_ref(&third)).await.unwrap(),
        vec![Created::New(third.id.clone())]
    );
    // A plain key with the same text is another key, and holds after the end.
    let mut plain = record("claude");
    plain.key = "k1".into();
    store.create(&[plain.clone()]).await.unwrap();
    end(&store, &plain.id, JobState::Completed).await;
    let mut again = record("claude");
    again.key = "k1".into();
    assert_eq!(
        store.create(&[again]).await.unwrap(),
        vec![Created::Existing(plain.id)]
    );
}

#[tokio::test]
async fn a_parent_the_wake_fails_as_unreadable_cancels_its_dependants() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let a = common::enqueue(&store, "claude").await;
    let b = after(&store, &[&a], false).await;
    // Opened by b's enqueue (its parent is looked at): on its own hash.
    let _: i64 = query(
        &store,
        redis::cmd("HSET")
            .arg(store.keys().job(&a))
            .arg("seq")
            .arg("x"),
    )
    .await;
    let cfg = agentq_shared::admission::AdmissionConfig::default();
    store
        .wake_pool(&cfg, "claude", std::time::Duration::from_secs(60), 10)
        .await
        .unwrap();
    // Its record stays unreadable (the seq): its state is read alone.
    assert_eq!(store.state_of(&a).await.unwrap(), Some(JobState::Failed));
    assert_eq!(get(&store, &b).await.error, format!("parent {a} failed"));
}

#[tokio::test]
async fn the_snippets_time_is_rfc_3339_as_rust_writes_it() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let src = format!(
        "local NS = 't'\n{}\nreturn {{flow_iso(0), flow_iso(1796623200123), flow_iso(951782400999)}}",
        agentq_shared::store::lua::source("flow_end")
    );
    let got: Vec<String> = query(&store, redis::cmd("EVAL").arg(&src).arg(0)).await;
    let rust = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    assert_eq!(got, vec![rust(0), rust(1796623200123), rust(951782400999)]);
}
