//! Pacing in the `wake` script (issue 31): the daily limit counted in the
//! same Lua call that grants a start, the gap upstream's `delayForAgent`
//! computes, against a real redis-server: no worker, no Docker.

mod common;

use agentq_shared::{
    admission::AdmissionConfig,
    status::JobState,
    store::{JobStore, Move, ParkIn},
};
use common::{deliveries, enqueue, query, wake, Redis};

fn admission(toml_text: &str) -> AdmissionConfig {
    let cfg: AdmissionConfig = toml::from_str(toml_text).unwrap();
    cfg.validate(&["gemini", "codex", "claude"].map(String::from))
        .unwrap();
    cfg
}

async fn timer(store: &JobStore, pool: &str) -> Option<i64> {
    let t: Option<f64> = query(store, redis::cmd("ZSCORE").arg("t:timers").arg(pool)).await;
    t.map(|t| t as i64)
}

#[tokio::test]
async fn the_daily_limit_is_counted_with_the_grant_and_holds_across_hosts() {
    let redis = Redis::start();
    // Two hosts: two stores, each its own connection.
    let (a, b) = (redis.store("t").await, redis.store("t").await);
    let cfg = admission("[pacing.gemini]\ndaily_limit = 3\n");
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(enqueue(&a, "gemini").await);
    }
    let (na, nb) = tokio::join!(wake(&a, &cfg, "gemini"), wake(&b, &cfg, "gemini"));
    assert_eq!(na + nb, 3, "three starts in the day, whichever host woke");
    let granted: Vec<String> = deliveries(&a).await.into_iter().map(|d| d.job_id).collect();
    assert_eq!(granted, ids[..3].to_vec(), "oldest first");
    assert_eq!(a.parked("gemini").await.unwrap().total(), 2);
    // The count lives under the day's key and expires after the day; the
    // others wait, parked, for a timer at the next reset.
    let now = a.redis_now_ms().await.unwrap();
    let (day, next_reset) = cfg.pacing("gemini").unwrap().day_window(now);
    let key = a.keys().starts("gemini", day);
    let n: i64 = query(&a, redis::cmd("GET").arg(&key)).await;
    assert_eq!(n, 3);
    let ttl: i64 = query(&a, redis::cmd("PTTL").arg(&key)).await;
    assert!(
        ttl > next_reset - now && ttl <= next_reset - now + 60_000,
        "{ttl}"
    );
    assert_eq!(timer(&a, "gemini").await, Some(next_reset));
    assert_eq!(wake(&b, &cfg, "gemini").await, 0);
    // A slot given back by a job that never started (its workspace was
    // busy) is granted again without counting twice.
    let back = Move::to(JobState::Waiting).park(ParkIn::Lane);
    assert!(a.apply(&ids[0], &back).await.unwrap().done());
    assert_eq!(wake(&a, &cfg, "gemini").await, 1);
    let n: i64 = query(&a, redis::cmd("GET").arg(&key)).await;
    assert_eq!(n, 3, "counted once a day until it starts");
    // Once it started, a new grant counts again: a fourth start is refused.
    let start = agentq_shared::transition::Transition::preparing(
        "h",
        "w",
        agentq_shared::stamp::Stamp::from_ms(0),
    );
    let m = Move::to(JobState::Preparing).fields(&start.fields);
    assert!(a.apply(&ids[0], &m).await.unwrap().done());
    let back = Move::to(JobState::Waiting).park(ParkIn::Lane);
    assert!(a.apply(&ids[0], &back).await.unwrap().done());
    assert_eq!(wake(&a, &cfg, "gemini").await, 0);
    assert_eq!(a.parked("gemini").await.unwrap().total(), 3);
}

#[tokio::test]
async fn the_pacing_gap_replaces_the_flat_rate() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    // The flat rate would wait 1000 s; pacing's sustained delay is 30 s.
    let cfg = admission("[rates]\ngemini = 1000\n[pacing.gemini]\nsustained_delay = 30\n");
    enqueue(&store, "gemini").await;
    enqueue(&store, "gemini").await;
    let before = store.redis_now_ms().await.unwrap();
    assert_eq!(wake(&store, &cfg, "gemini").await, 1);
    let after = store.redis_now_ms().await.unwrap();
    assert_eq!(wake(&store, &cfg, "gemini").await, 0, "paced");
    let due = timer(&store, "gemini")
        .await
        .expect("a timer at the gap's end");
    assert!(
        (before + 30_000..=after + 30_000).contains(&due),
        "{before} {due} {after}"
    );
    // No daily limit: no counter.
    let keys: Vec<String> = query(&store, redis::cmd("KEYS").arg("t:starts:*")).await;
    assert!(keys.is_empty(), "{keys:?}");
    // Another pool keeps its flat rate.
    let flat = admission("[rates]\ncodex = 1000\n");
    enqueue(&store, "codex").await;
    enqueue(&store, "codex").await;
    assert_eq!(wake(&store, &flat, "codex").await, 1);
    assert_eq!(wake(&store, &flat, "codex").await, 0);
    assert!(timer(&store, "codex").await.unwrap() >= before + 999_000);
}

/// `reset_utc` as `HH:MM`, `minutes` (whole) after Redis's now.
async fn reset_in(store: &JobStore, minutes: i64) -> String {
    let now = store.redis_now_ms().await.unwrap();
    let at = (now / 60_000 + minutes) * 60_000;
    agentq_shared::pacing::utc_ms(at)
        .format("%H:%M")
        .to_string()
}

/// The script's gap is upstream's rule on Redis's clock, the same as the
/// domain's `Pacing::next_start_ms`: the burst gap inside the window, the
/// sustained one outside it, and the window's opening when it comes first.
#[tokio::test]
async fn the_scripts_gap_is_the_domains_burst_or_sustained() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    for (minutes, want_gap) in [
        // Half an hour before the reset, in a one-hour burst window.
        (31, Some(60_000)),
        // Three hours before it: the sustained hour.
        (181, Some(3_600_000)),
        // Ninety minutes before it: the window opens in half an hour, before
        // the sustained hour has passed.
        (91, None),
    ] {
        let reset = reset_in(&store, minutes).await;
        let cfg = admission(&format!(
            "[pacing.claude]\nreset_utc = \"{reset}\"\nsustained_delay = 3600\nburst_window = 1\nburst_delay = 60\n"
        ));
        let _: () = query(
            &store,
            redis::cmd("DEL").arg("t:rate:claude").arg("t:timers"),
        )
        .await;
        enqueue(&store, "claude").await;
        enqueue(&store, "claude").await;
        assert!(wake(&store, &cfg, "claude").await >= 1);
        assert_eq!(wake(&store, &cfg, "claude").await, 0, "paced");
        let last: i64 = query(&store, redis::cmd("GET").arg("t:rate:claude")).await;
        let now = store.redis_now_ms().await.unwrap();
        let p = cfg.pacing("claude").unwrap();
        let due = timer(&store, "claude").await.unwrap();
        assert_eq!(due, p.next_start_ms(last, now), "reset {reset}");
        match want_gap {
            Some(gap) => assert_eq!(due - last, gap, "reset {reset}"),
            None => {
                let (_, next_reset) = p.day_window(now);
                assert_eq!(due, next_reset - 3_600_000, "reset {reset}");
            }
        }
    }
}
