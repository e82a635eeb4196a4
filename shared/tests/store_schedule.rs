//! Scheduling in the store: priorities in the `wake` script, delayed jobs
//! (`release_scheduled`, cancel, enqueue's duplicate keys) and the periodic
//! schedules' compare-and-set (`schedule_tick`), against a real
//! redis-server: no worker, no Docker.

mod common;

use std::time::Duration;

use agentq_shared::{
    keys::SCHEDULED_TIMER,
    priority::Priority,
    record::JobRecord,
    status::JobState,
    store::{Created, JobStore},
};
use common::{admission, delivered, deliveries, query, record, wake, Redis};

/// A record of `agent` at `priority`, made `age_ms` ago (its id's time).
fn job(agent: &str, priority: Priority, age_ms: u64) -> JobRecord {
    let mut rec = record(agent);
    rec.input.priority = priority;
    let made = std::time::SystemTime::now() - Duration::from_millis(age_ms);
    rec.id = ulid::Ulid::from_datetime(made).to_string();
    rec
}

async fn put(store: &JobStore, rec: &JobRecord) -> String {
    store.create(std::slice::from_ref(rec)).await.unwrap();
    rec.id.clone()
}

#[tokio::test]
async fn wake_takes_the_highest_priority_first_and_fifo_within_one() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let cfg = admission("[limits]\ncodex = 1\n");
    let n1 = put(&store, &job("codex", Priority::Normal, 0)).await;
    let l1 = put(&store, &job("codex", Priority::Low, 0)).await;
    let n2 = put(&store, &job("codex", Priority::Normal, 0)).await;
    let h1 = put(&store, &job("codex:m", Priority::High, 0)).await;
    let h2 = put(&store, &job("codex", Priority::High, 0)).await;
    let mut order = Vec::new();
    for _ in 0..5 {
        assert_eq!(wake(&store, &cfg, "codex").await, 1);
        let id = delivered(&deliveries(&store).await).pop().unwrap();
        order.push(id.clone());
        // Its slot back: the next wake grants the next one.
        let _: () = query(&store, redis::cmd("ZREM").arg("t:limit:codex").arg(&id)).await;
    }
    assert_eq!(order, vec![h1, h2, n1, n2, l1]);
    let lanes: Vec<String> = query(&store, redis::cmd("SMEMBERS").arg("t:lanes:codex")).await;
    assert!(
        lanes
            .iter()
            .all(|l| ["-", "-~high", "-~low", "m~high"].contains(&l.as_str())),
        "{lanes:?}"
    );
}

/// One chunk of one agent at several priorities and models, and another
/// agent: each job in its own lane, in the lanes' and pools' sets (a chunk
/// works out each lane once, issue 34).
#[tokio::test]
async fn one_chunk_of_mixed_priorities_and_models_parks_each_job_in_its_lane() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let recs = [
        job("codex", Priority::Normal, 0),
        job("codex", Priority::High, 0),
        job("codex:m", Priority::High, 0),
        job("codex", Priority::Normal, 0),
        job("claude", Priority::Low, 0),
    ];
    store.create(&recs).await.unwrap();
    let lanes = [
        "codex:-",
        "codex:-~high",
        "codex:m~high",
        "codex:-",
        "claude:-~low",
    ];
    for (rec, lane) in recs.iter().zip(lanes) {
        let members: Vec<String> = query(
            &store,
            redis::cmd("ZRANGE")
                .arg(format!("t:lane:{lane}"))
                .arg(0)
                .arg(-1),
        )
        .await;
        assert!(
            members.contains(&rec.id),
            "{} not in {lane}: {members:?}",
            rec.id
        );
    }
    let mut codex: Vec<String> = query(&store, redis::cmd("SMEMBERS").arg("t:lanes:codex")).await;
    codex.sort();
    assert_eq!(codex, ["-", "-~high", "m~high"]);
    let claude: Vec<String> = query(&store, redis::cmd("SMEMBERS").arg("t:lanes:claude")).await;
    assert_eq!(claude, ["-~low"]);
}

#[tokio::test]
async fn a_low_job_past_the_priority_age_counts_as_normal() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let cfg = admission("priority_age_secs = 60\n[limits]\ncodex = 1\nclaude = 1\n");
    let next = |pool: &'static str| {
        let (store, cfg) = (&store, &cfg);
        async move {
            let _: () = query(store, redis::cmd("DEL").arg(format!("t:limit:{pool}"))).await;
            assert_eq!(wake(store, cfg, pool).await, 1);
            delivered(&deliveries(store).await).pop().unwrap()
        }
    };
    // Young: the normal job goes first, though later in line.
    let young = put(&store, &job("codex", Priority::Low, 0)).await;
    let normal = put(&store, &job("codex", Priority::Normal, 0)).await;
    assert_eq!(next("codex").await, normal);
    assert_eq!(next("codex").await, young);
    // Two minutes old: it counts as normal and competes by place in line,
    // after the normal job before it and before the one after it.
    let before = put(&store, &job("claude", Priority::Normal, 0)).await;
    let old = put(&store, &job("claude", Priority::Low, 120_000)).await;
    let after = put(&store, &job("claude", Priority::Normal, 0)).await;
    assert_eq!(next("claude").await, before);
    assert_eq!(next("claude").await, old);
    assert_eq!(next("claude").await, after);
}

#[tokio::test]
async fn with_one_priority_waiting_the_place_in_line_alone_decides() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let cfg = admission("priority_age_secs = 1\n[limits]\ncodex = 1\n");
    // An old job (a retry has an old id) behind a young one, in another
    // model's lane: FIFO by place in line, age or not.
    let first = put(&store, &job("codex:a", Priority::Normal, 0)).await;
    let old = put(&store, &job("codex:b", Priority::Normal, 600_000)).await;
    assert_eq!(wake(&store, &cfg, "codex").await, 1);
    assert_eq!(delivered(&deliveries(&store).await), vec![first]);
    let _: () = query(&store, redis::cmd("DEL").arg("t:limit:codex")).await;
    assert_eq!(wake(&store, &cfg, "codex").await, 1);
    assert_eq!(delivered(&deliveries(&store).await).pop(), Some(old));
}

fn delayed(at_ms: i64) -> JobRecord {
    let mut input = record("claude").input;
    input.at = Some(agentq_shared::stamp::Stamp::from_ms(at_ms));
    JobRecord::new(
        ulid::Ulid::new().to_string(),
        input,
        3,
        "2026-12-01T00:00:00Z".parse().expect("a time"),
    )
}

async fn timer(store: &JobStore) -> Option<i64> {
    query(
        store,
        redis::cmd("ZSCORE").arg("t:timers").arg(SCHEDULED_TIMER),
    )
    .await
}

#[tokio::test]
async fn due_delayed_jobs_go_to_their_lanes_and_the_timer_moves_on() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let now = agentq_shared::clock::now_ms() / 1000 * 1000;
    let due = delayed(now - 1000);
    let later = delayed(now + 3_600_000);
    store.create(std::slice::from_ref(&later)).await.unwrap();
    assert_eq!(timer(&store).await, Some(now + 3_600_000));
    store.create(std::slice::from_ref(&due)).await.unwrap();
    assert_eq!(
        timer(&store).await,
        Some(now - 1000),
        "lowered to the earliest"
    );
    for id in [&due.id, &later.id] {
        assert_eq!(store.state_of(id).await.unwrap(), Some(JobState::Scheduled));
    }
    assert_eq!(
        store.parked("claude").await.unwrap().total(),
        0,
        "in no lane"
    );
    let counts = store.state_counts().await.unwrap();
    assert!(counts.contains(&(JobState::Scheduled, 2)), "{counts:?}");
    assert!(counts.contains(&(JobState::Queued, 0)), "{counts:?}");
    // The timer is due: the due job is queued in its lane, its pool woken.
    assert!(
        store.due_timers().await.unwrap().due.is_empty(),
        "no pool's timer"
    );
    assert_eq!(
        store.state_of(&due.id).await.unwrap(),
        Some(JobState::Queued)
    );
    assert_eq!(store.parked("claude").await.unwrap().total(), 1);
    let history = store.history(&due.id).await.unwrap();
    assert_eq!(history.last().unwrap().state, JobState::Queued.as_str());
    assert_eq!(
        store.state_of(&later.id).await.unwrap(),
        Some(JobState::Scheduled)
    );
    assert_eq!(
        timer(&store).await,
        Some(now + 3_600_000),
        "set to the next"
    );
    assert_eq!(
        store.scheduled_count().await.unwrap(),
        (1, Some(now + 3_600_000))
    );
    assert_eq!(
        store.release_scheduled().await.unwrap(),
        0,
        "nothing else due"
    );
    // A timer lost (taken by a worker whose release failed) is set again.
    let _: () = query(&store, redis::cmd("DEL").arg("t:timers")).await;
    store.rearm_scheduled_timer().await.unwrap();
    assert_eq!(timer(&store).await, Some(now + 3_600_000));
}

#[tokio::test]
async fn a_scheduled_job_is_cancelled_at_once_and_never_released() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    // Due already, and its timer not yet taken.
    let rec = delayed(agentq_shared::clock::now_ms() - 1000);
    store.create(std::slice::from_ref(&rec)).await.unwrap();
    assert_eq!(
        store.request_cancel(&rec.id).await.unwrap(),
        Some(JobState::Cancelled)
    );
    assert_eq!(store.scheduled_count().await.unwrap().0, 0);
    assert_eq!(store.release_scheduled().await.unwrap(), 0);
    assert_eq!(
        store.state_of(&rec.id).await.unwrap(),
        Some(JobState::Cancelled)
    );
    assert_eq!(store.parked("claude").await.unwrap().total(), 0);
}

#[tokio::test]
async fn a_scheduled_duplicate_key_leaves_nothing_behind() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    let at = agentq_shared::clock::now_ms() + 3_600_000;
    let mut a = delayed(at);
    a.key = "k1".into();
    let mut b = delayed(at);
    b.key = "k1".into();
    assert_eq!(
        store.create(std::slice::from_ref(&a)).await.unwrap(),
        vec![Created::New(a.id.clone())]
    );
    assert_eq!(
        store.create(std::slice::from_ref(&b)).await.unwrap(),
        vec![Created::Existing(a.id.clone())]
    );
    assert!(store.get(&b.id).await.unwrap().is_none());
    assert_eq!(store.scheduled_count().await.unwrap().0, 1);
    let counts = store.state_counts().await.unwrap();
    assert!(counts.contains(&(JobState::Scheduled, 1)), "{counts:?}");
}

#[tokio::test]
async fn a_schedules_tick_is_taken_once_and_never_backwards() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    // A schedule seen for the first time: its latest tick only recorded.
    assert!(!store.take_schedule_tick("n", 100, true).await.unwrap());
    assert_eq!(store.last_schedule_tick("n").await.unwrap(), Some(100));
    assert!(!store.take_schedule_tick("n", 100, false).await.unwrap());
    assert!(!store.take_schedule_tick("n", 100, true).await.unwrap());
    // The next tick: one caller takes it.
    assert!(store.take_schedule_tick("n", 160, false).await.unwrap());
    assert!(!store.take_schedule_tick("n", 160, false).await.unwrap());
    assert!(!store.take_schedule_tick("n", 130, false).await.unwrap());
    // A missed tick found at start is taken (the key exists).
    assert!(store.take_schedule_tick("n", 400, true).await.unwrap());
    assert_eq!(store.last_schedule_tick("n").await.unwrap(), Some(400));
    // A missing key while running: taken.
    assert!(store.take_schedule_tick("m", 5, false).await.unwrap());
}

/// Workers wait for the first due timer only (issue 34), so whatever sets the
/// delayed jobs' timer tells them: the enqueue of a delayed job, and the
/// re-arm after a failed release or by the sweep, but the re-arm only when
/// the timer really moved (the sweep calls it every few seconds).
#[tokio::test]
async fn the_delayed_jobs_timer_is_published_when_set_and_only_when_it_moves() {
    use futures::StreamExt;
    let redis = Redis::start();
    let store = redis.store("t").await;
    let mut ps = store.subscribe(&["t:timer".to_string()]).await.unwrap();
    let mut messages = ps.on_message();
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .ok()
            .flatten()
            .map(|m| m.get_payload::<String>().unwrap().parse::<i64>().unwrap())
    };
    let at = agentq_shared::clock::now_ms() / 1000 * 1000 + 3_600_000;
    put(&store, &delayed(at)).await;
    assert_eq!(next().await, Some(at), "enqueue did not publish the timer");
    // Taken (as a due worker takes it), then set again: published.
    let _: () = query(
        &store,
        redis::cmd("ZREM").arg("t:timers").arg(SCHEDULED_TIMER),
    )
    .await;
    store.rearm_scheduled_timer().await.unwrap();
    assert_eq!(timer(&store).await, Some(at));
    assert_eq!(next().await, Some(at), "the re-arm did not publish");
    // Already right: a re-arm writes and publishes nothing; the next publish
    // seen is the one made after it.
    store.rearm_scheduled_timer().await.unwrap();
    let _: () = query(&store, redis::cmd("PUBLISH").arg("t:timer").arg("0")).await;
    assert_eq!(
        next().await,
        Some(0),
        "a re-arm that moved nothing published"
    );
}

/// A tick's job is enqueued before the tick is moved: when the enqueue fails
/// (here Redis refuses the places-in-line counter), the tick stays free and
/// the next try enqueues its job; taking the tick first would have lost it.
#[tokio::test]
async fn a_tick_whose_enqueue_failed_is_enqueued_on_the_next_try() {
    use agentq_shared::store::schedules::Tick;
    let redis = Redis::start();
    let store = redis.store("t").await;
    let s: agentq_shared::schedule::ScheduleConfig =
        toml::from_str("name = \"n\"\ncron = \"0 6 * * *\"\njob = { agent = \"codex\" }\n")
            .unwrap();
    let input = record("codex").input;
    assert!(!store.take_schedule_tick("n", 100, true).await.unwrap());
    // The enqueue fails: `{ns}:order` is not a number.
    query::<()>(&store, redis::cmd("SET").arg("t:order").arg("not a number")).await;
    assert!(store
        .schedule_tick(&s, &input, 3, 160, false)
        .await
        .is_err());
    assert_eq!(store.last_schedule_tick("n").await.unwrap(), Some(100));
    query::<()>(&store, redis::cmd("DEL").arg("t:order")).await;
    let Tick::Enqueued(Created::New(id)) = store
        .schedule_tick(&s, &input, 3, 160, false)
        .await
        .unwrap()
    else {
        panic!("the tick's job is enqueued on the next try");
    };
    assert_eq!(store.last_schedule_tick("n").await.unwrap(), Some(160));
    // Taken now; a racing caller that looked before the move meets the key.
    assert_eq!(
        store
            .schedule_tick(&s, &input, 3, 160, false)
            .await
            .unwrap(),
        Tick::Taken
    );
    assert_eq!(store.get(&id).await.unwrap().unwrap().key, "schedule:n:160");
}
