//! Parked waiters against a real Redis (no Docker): exact FIFO per lane, no
//! head-of-line blocking across models, pauses and pacing as timers, cancel of
//! a parked job, and the number of Redis commands per enqueued job.

use std::time::{Duration, Instant};

use agentq_shared::{
    input::DispatchInput,
    record::JobRecord,
    status::{JobState, WaitReason},
    store::limits::AdmissionConfig,
    store::{JobStore, Move},
};
use agentq_tests::*;

const LEASE: Duration = Duration::from_secs(60);

async fn store(redis: &Redis) -> JobStore {
    JobStore::connect(&redis.url(), "park", Duration::from_secs(5))
        .await
        .unwrap()
}

fn limits(toml_text: &str) -> AdmissionConfig {
    toml::from_str(toml_text).unwrap()
}

fn record(n: u32, agent: &str) -> JobRecord {
    let input = DispatchInput {
        repo: "demo".into(),
        org: "core".into(),
        task: format!("job {n}"),
        issue: u64::from(n),
        agent: agent.into(),
        ..Default::default()
    };
    JobRecord::new(
        ulid::Ulid::new().to_string(),
        input,
        3,
        "2026-11-25T00:00:00Z".parse().expect("a time"),
    )
}

async fn enqueue(store: &JobStore, agent: &str, first: u32, n: u32) -> Vec<String> {
    let recs: Vec<JobRecord> = (first..first + n).map(|i| record(i, agent)).collect();
    store.create(&recs).await.unwrap();
    recs.into_iter().map(|r| r.id).collect()
}

/// Jobs holding a slot of `pool` now, in no particular order.
fn holders(redis: &Redis, key: &str) -> Vec<String> {
    redis::cmd("ZRANGE")
        .arg(format!("park:{key}"))
        .arg(0)
        .arg(-1)
        .query(&mut redis.conn())
        .unwrap()
}

/// Ends job `id`'s run as a worker would: a final move gives its slot back.
async fn finish(store: &JobStore, id: &str) {
    let moved = store
        .apply(id, &Move::to(JobState::Completed))
        .await
        .unwrap();
    assert!(moved.done());
}

#[tokio::test]
async fn one_hundred_waiters_behind_a_limit_of_one_start_in_exact_fifo_order() {
    let redis = Redis::start();
    let store = store(&redis).await;
    let cfg = limits("[limits]\nclaude = 1\n");
    // Enqueued in three batches, so order holds across calls too.
    let mut ids = enqueue(&store, "claude", 1, 40).await;
    ids.extend(enqueue(&store, "claude", 41, 30).await);
    ids.extend(enqueue(&store, "claude", 71, 30).await);
    let mut started = Vec::new();
    for _ in 0..100 {
        // Waking twice grants nothing more: the slot is taken.
        assert_eq!(store.wake_pool(&cfg, "claude", LEASE, 8).await.unwrap(), 1);
        assert_eq!(store.wake_pool(&cfg, "claude", LEASE, 8).await.unwrap(), 0);
        let held = holders(&redis, "limit:claude");
        assert_eq!(held.len(), 1, "{held:?}");
        started.push(held[0].clone());
        finish(&store, &held[0]).await;
    }
    assert_eq!(started, ids);
    assert_eq!(store.wake_pool(&cfg, "claude", LEASE, 8).await.unwrap(), 0);
    // Nothing attempted: granting a slot spends no attempt.
    for id in &ids {
        assert_eq!(store.get(id).await.unwrap().unwrap().attempt, 0);
    }
}

#[tokio::test]
async fn a_job_blocked_only_by_its_models_limit_does_not_hold_back_other_models() {
    let redis = Redis::start();
    let store = store(&redis).await;
    let cfg = limits("[limits]\nclaude = { total = 3, opus = 1 }\n");
    let opus = enqueue(&store, "claude:opus", 1, 4).await;
    let haiku = enqueue(&store, "claude:haiku", 5, 1).await;
    // One opus runs; the other three wait for the opus slot, the haiku job
    // behind them in the queue takes one of the two idle pool slots.
    assert_eq!(store.wake_pool(&cfg, "claude", LEASE, 8).await.unwrap(), 2);
    let mut held = holders(&redis, "limit:claude");
    held.sort();
    let mut want = vec![opus[0].clone(), haiku[0].clone()];
    want.sort();
    assert_eq!(held, want);
    assert_eq!(holders(&redis, "limit:claude:opus"), vec![opus[0].clone()]);
    // The opus slot frees: the next opus job, in order.
    finish(&store, &opus[0]).await;
    assert_eq!(store.wake_pool(&cfg, "claude", LEASE, 8).await.unwrap(), 1);
    assert_eq!(holders(&redis, "limit:claude:opus"), vec![opus[1].clone()]);
    let parked = store.parked("claude").await.unwrap();
    assert_eq!(parked.total(), 2, "{parked:?}");
}

#[tokio::test]
async fn a_paused_pool_grants_nothing_and_wakes_when_the_pause_ends() {
    let redis = Redis::start();
    let store = store(&redis).await;
    let cfg = limits("[limits]\nclaude = 2\n[backoff]\nfailures = 1\npause_secs = 5\n");
    let ids = enqueue(&store, "claude", 1, 2).await;
    let began = Instant::now();
    let paused = store
        .record_outcome(&cfg.backoff, "claude", true, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(paused);
    assert_eq!(store.wake_pool(&cfg, "claude", LEASE, 8).await.unwrap(), 0);
    // The pause's end is a timer: not due yet, then due, and not before the
    // pause is over.
    assert!(store.due_timers().await.unwrap().due.is_empty());
    let due = loop {
        let due = store.due_timers().await.unwrap().due;
        if !due.is_empty() {
            break due;
        }
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "the pause's timer never came due"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(due, vec!["claude".to_string()]);
    assert!(
        began.elapsed() >= Duration::from_millis(4_900),
        "due after {:?}, before the 5 s pause ended",
        began.elapsed()
    );
    assert_eq!(store.wake_pool(&cfg, "claude", LEASE, 8).await.unwrap(), 2);
    let mut held = holders(&redis, "limit:claude");
    held.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(held, want);
}

#[tokio::test]
async fn pacing_grants_one_start_per_interval_and_sets_a_timer_for_the_next() {
    let redis = Redis::start();
    let store = store(&redis).await;
    let cfg = limits("[rates]\ngemini = 30\n");
    let ids = enqueue(&store, "gemini", 1, 3).await;
    let before = chrono::Utc::now().timestamp_millis();
    assert_eq!(store.wake_pool(&cfg, "gemini", LEASE, 8).await.unwrap(), 1);
    let after = chrono::Utc::now().timestamp_millis();
    assert_eq!(store.wake_pool(&cfg, "gemini", LEASE, 8).await.unwrap(), 0);
    // The grant is recorded on the job, in the same call.
    let admitted = store.get(&ids[0]).await.unwrap().unwrap().admitted_at;
    assert!(
        admitted.is_some_and(|t| (before..=after).contains(&t.ms())),
        "{admitted:?} not in {before}..={after}"
    );
    for id in &ids[1..] {
        assert_eq!(store.get(id).await.unwrap().unwrap().admitted_at, None);
    }
    let due: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg("park:timers")
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query(&mut redis.conn())
        .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].0, "gemini");
    let now = chrono::Utc::now().timestamp_millis() as f64;
    assert!(
        due[0].1 > now + 25_000.0 && due[0].1 <= now + 30_000.0,
        "{due:?}"
    );
}

#[tokio::test]
async fn a_cancelled_parked_job_leaves_its_lane() {
    let redis = Redis::start();
    let store = store(&redis).await;
    let cfg = limits("[limits]\nclaude = 1\n");
    let ids = enqueue(&store, "claude", 1, 3).await;
    assert_eq!(
        store.request_cancel(&ids[1]).await.unwrap(),
        Some(JobState::Cancelled)
    );
    assert_eq!(store.parked("claude").await.unwrap().total(), 2);
    assert_eq!(store.wake_pool(&cfg, "claude", LEASE, 8).await.unwrap(), 1);
    assert_eq!(holders(&redis, "limit:claude"), vec![ids[0].clone()]);
    finish(&store, &ids[0]).await;
    assert_eq!(store.wake_pool(&cfg, "claude", LEASE, 8).await.unwrap(), 1);
    assert_eq!(holders(&redis, "limit:claude"), vec![ids[2].clone()]);
}

#[tokio::test]
async fn a_dead_runs_slot_expires_and_the_next_wake_grants_it() {
    let redis = Redis::start();
    let store = store(&redis).await;
    let cfg = limits("[limits]\nclaude = 1\n");
    let ids = enqueue(&store, "claude", 1, 2).await;
    let began = Instant::now();
    assert_eq!(
        store
            .wake_pool(&cfg, "claude", Duration::from_secs(3), 8)
            .await
            .unwrap(),
        1
    );
    // Nobody renews or releases the first job's slot: the slot stays taken
    // until its lease runs out, then the next wake grants it.
    assert_eq!(store.wake_pool(&cfg, "claude", LEASE, 8).await.unwrap(), 0);
    loop {
        let held = holders(&redis, "limit:claude");
        if store.wake_pool(&cfg, "claude", LEASE, 8).await.unwrap() == 1 {
            break;
        }
        assert_eq!(held, vec![ids[0].clone()], "the dead run keeps its slot");
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "the dead run's slot never expired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        began.elapsed() >= Duration::from_millis(2_900),
        "granted again after {:?}, before the 3 s lease ran out",
        began.elapsed()
    );
    assert_eq!(holders(&redis, "limit:claude"), vec![ids[1].clone()]);
}

#[tokio::test]
async fn enqueue_costs_at_most_two_redis_commands_per_job() {
    let redis = Redis::start();
    let store = store(&redis).await;
    let recs: Vec<JobRecord> = (1..=5_000).map(|i| record(i, "claude")).collect();
    let before = redis.total_commands();
    for chunk in recs.chunks(agentq_shared::store::ENQUEUE_CHUNK) {
        store.create(chunk).await.unwrap();
    }
    // Counted by Redis itself, commands run inside Lua scripts included (the
    // INFO that reads the count is one more).
    let per_job = (redis.total_commands() - before) as f64 / 5_000.0;
    eprintln!("Redis commands per enqueued job: {per_job:.3}");
    // A chunk is a dozen commands whatever its size (one `HSET` of all its
    // records, an index insert each, the lanes, one Lua call, the transaction).
    assert!(per_job > 0.01, "{per_job}: the count is not counting");
    assert!(per_job <= 2.0, "{per_job} Redis commands per enqueued job");
    // And every record is complete.
    let rec = store.get(&recs[4_321].id).await.unwrap().unwrap();
    assert_eq!(rec, recs[4_321]);
    assert_eq!(store.parked("claude").await.unwrap().total(), 5_000);
}

#[tokio::test]
async fn waiting_jobs_are_counted_by_reason() {
    let redis = Redis::start();
    let store = store(&redis).await;
    let ids = enqueue(&store, "claude", 1, 3).await;
    for (id, reason) in ids.iter().zip(["retry", "retry", "host_error"]) {
        let m = Move::to(JobState::Waiting).fields(&[("reason", reason.to_string())]);
        assert!(store.apply(id, &m).await.unwrap().done());
    }
    let counts = store.waiting_by_reason(100).await.unwrap();
    let n = |r: WaitReason| counts.iter().find(|(x, _)| *x == r).unwrap().1;
    assert_eq!(
        (
            n(WaitReason::Retry),
            n(WaitReason::HostError),
            n(WaitReason::Slot)
        ),
        (2, 1, 0)
    );
    // Only the newest `limit` are read.
    let one: u64 = store
        .waiting_by_reason(1)
        .await
        .unwrap()
        .iter()
        .map(|(_, c)| c)
        .sum();
    assert_eq!(one, 1);
}

/// Issue 34: workers wait for the first due timer only, so a script that adds
/// a timer due before every other publishes its due time on `{ns}:timer`
/// (one snippet, `timer_add`, for every script); a later one says nothing;
/// `due` says when the first timer left is due.
#[tokio::test]
async fn a_timer_due_before_every_other_is_published_and_due_says_when_the_next_is() {
    use futures::StreamExt;
    let redis = Redis::start();
    let store = store(&redis).await;
    let cfg = limits("");
    let mut ps = store.subscribe(&["park:timer".to_string()]).await.unwrap();
    let mut messages = ps.on_message();
    for (pool, secs) in [("gemini", 60), ("codex", 120), ("claude", 30)] {
        enqueue(&store, pool, 1, 1).await;
        store
            .pause_pool(pool, Duration::from_secs(secs))
            .await
            .unwrap();
        assert_eq!(store.wake_pool(&cfg, pool, LEASE, 8).await.unwrap(), 0);
    }
    let score = |pool: &str| -> i64 {
        let s: f64 = redis::cmd("ZSCORE")
            .arg("park:timers")
            .arg(pool)
            .query(&mut redis.conn())
            .unwrap();
        s as i64
    };
    // gemini's was the first timer; codex's (later) was not published;
    // claude's (sooner than gemini's) was.
    for pool in ["gemini", "claude"] {
        let msg = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .expect("no publish on park:timer")
            .unwrap();
        let at: i64 = msg.get_payload::<String>().unwrap().parse().unwrap();
        assert_eq!(at, score(pool), "{pool}");
    }
    let taken = store.due_timers().await.unwrap();
    assert!(taken.due.is_empty(), "{taken:?}");
    let next = taken.next.expect("timers are left");
    assert!(
        next > Duration::from_secs(25) && next <= Duration::from_secs(30),
        "{next:?}"
    );
}
