//! Issue 33's first half: priorities (a high job ahead of a line of normal
//! ones; a low job not starved), delayed jobs (`scheduled` until due,
//! cancelled at once) and periodic `[[schedule]]` jobs (exactly one job per
//! tick with three workers; a missed tick enqueued once).

use std::time::Duration;

use agentq_shared::{record::JobRecord, status::JobState};
use agentq_tests::*;
use redis::Commands;

const LONG: Duration = Duration::from_secs(240);

fn lines(agent: &str, task: &str, issues: std::ops::Range<u64>, extra: &str) -> String {
    issues
        .map(|i| {
            let mut v =
                serde_json::json!({"repo": "demo", "task": task, "agent": agent, "issue": i});
            if !extra.is_empty() {
                let more: serde_json::Value = serde_json::from_str(extra).unwrap();
                v.as_object_mut()
                    .unwrap()
                    .extend(more.as_object().unwrap().clone());
            }
            v.to_string() + "\n"
        })
        .collect()
}

/// When the wake granted the job its (first) slot, ms.
fn admitted(rec: &JobRecord) -> i64 {
    rec.admitted_at.map_or(i64::MAX, |t| t.ms())
}

async fn records(env: &TestEnv, ids: &[String]) -> Vec<JobRecord> {
    let store = env.store().await;
    let mut out = Vec::new();
    for id in ids {
        out.push(store.get(id).await.unwrap().unwrap());
    }
    out
}

/// Cancels every job still waiting and waits until `ids` are all final.
async fn cancel_the_rest(env: &TestEnv, ids: &[String]) {
    env.cli_ok(&["cancel", "--state", "queued"]);
    env.cli_ok(&["cancel", "--state", "waiting"]);
    for id in ids {
        env.wait_final(id, LONG).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_high_priority_job_starts_next_ahead_of_fifty_normal_ones() {
    require_docker();
    let env = TestEnv::with_config("[limits]\nclaude = 1\n");
    env.remotes.create("core", "demo", &[]);
    let _w = env.worker("w1", 2);
    let blocker = env.enqueue(&[
        "--repo",
        "demo",
        "--agent",
        "claude",
        "--task",
        "@agentq-test hold",
        "--issue",
        "1",
    ]);
    env.wait_holding(1).await;
    let normal = env.enqueue_ndjson(&lines("claude", "quick", 10..60, ""));
    let high = env.enqueue(&[
        "--repo",
        "demo",
        "--agent",
        "claude",
        "--task",
        "quick",
        "--issue",
        "99",
        "--priority",
        "high",
    ]);
    let listed = env.cli_ok(&["list", "--priority", "high", "--json"]);
    assert_eq!(json_ids(&listed), vec![high.clone()], "{listed}");
    env.release_holds();
    assert_eq!(
        env.wait_final(&blocker, LONG).await.state,
        JobState::Completed
    );
    let h = env.wait_final(&high, LONG).await;
    assert_eq!(h.state, JobState::Completed, "{h:#?}");
    assert_eq!(h.input.priority.as_str(), "high");
    // Granted the slot the blocker gave back, before every normal job.
    for n in records(&env, &normal).await {
        assert!(
            admitted(&n) > admitted(&h),
            "normal job {} started before the high one: {n:#?}",
            n.id
        );
    }
    cancel_the_rest(&env, &normal).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_low_job_past_the_priority_age_starts_despite_a_stream_of_normal_ones() {
    require_docker();
    let env = TestEnv::with_config("priority_age_secs = 3\n");
    env.append_config("[limits]\nclaude = 1\n");
    env.remotes.create("core", "demo", &[]);
    let _w = env.worker("w1", 2);
    let blocker = env.enqueue(&[
        "--repo",
        "demo",
        "--agent",
        "claude",
        "--task",
        "@agentq-test hold",
        "--issue",
        "1",
    ]);
    env.wait_holding(1).await;
    let low = env.enqueue_ndjson(&lines("claude", "quick", 2..3, r#"{"priority":"low"}"#));
    let low = low[0].clone();
    let mut normal = env.enqueue_ndjson(&lines("claude", "quick", 10..15, ""));
    // Until the low job has waited the priority age (its id says when it was
    // made), it would go after every normal job.
    let made = ulid::Ulid::from_string(&low).unwrap().timestamp_ms() as i64;
    poll_until("the low job to age", LONG, async || {
        (agentq_shared::clock::now_ms() > made + 3_500).then_some(())
    })
    .await;
    env.release_holds();
    // A steady stream: more normal jobs keep coming while it waits.
    normal.extend(env.enqueue_ndjson(&lines("claude", "quick", 20..25, "")));
    let l = env.wait_final(&low, LONG).await;
    assert_eq!(l.state, JobState::Completed, "{l:#?}");
    let done = env.wait_final(&blocker, LONG).await;
    assert_eq!(done.state, JobState::Completed);
    for n in records(&env, &normal).await {
        assert!(
            admitted(&n) > admitted(&l),
            "normal job {} started before the aged low one",
            n.id
        );
    }
    cancel_the_rest(&env, &normal).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delayed_job_is_scheduled_until_due_then_runs() {
    require_docker();
    let env = TestEnv::new();
    env.remotes.create("core", "demo", &[]);
    let port = free_port();
    let _w = env.worker_with_args("w1", &["--metrics-addr", &format!("127.0.0.1:{port}")]);
    let later = env.enqueue(&[
        "--repo", "demo", "--agent", "codex", "--task", "quick", "--issue", "2", "--in", "1h",
    ]);
    let id = env.enqueue(&[
        "--repo", "demo", "--agent", "codex", "--task", "quick", "--issue", "1", "--in", "3s",
    ]);
    let store = env.store().await;
    let rec = store.get(&id).await.unwrap().unwrap();
    assert_eq!(rec.state, JobState::Scheduled, "{rec:#?}");
    let due = rec.input.at.expect("a due time").to_utc();
    let listed = env.cli_ok(&["list", "--state", "scheduled", "--json"]);
    assert_eq!(json_ids(&listed), vec![id.clone(), later.clone()]);
    let scheduled_gauge = async || {
        let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("agentq_scheduled "))
            .map(str::to_string)
    };
    assert!(env
        .cli_ok(&["list"])
        .contains(&format!("due {}", rec.input.at.expect("a due time"))));
    let done = env.wait_final(&id, LONG).await;
    assert_eq!(done.state, JobState::Completed, "{done:#?}");
    // It left `scheduled` for `queued` only once due, and ran after that.
    let history = store.history(&id).await.unwrap();
    let queued = history
        .iter()
        .find(|h| h.from == "scheduled")
        .unwrap_or_else(|| panic!("{history:#?}"));
    assert_eq!(queued.state, "queued");
    let queued_at = chrono::DateTime::parse_from_rfc3339(&queued.at).unwrap();
    assert!(queued_at >= due, "queued at {queued_at}, due {due}");
    let started = done.started_at.expect("started").to_utc();
    assert!(started >= due, "started at {started}, due {due}");
    // The other one is not due: still scheduled, the timer set to it.
    assert_eq!(
        store.state_of(&later).await.unwrap(),
        Some(JobState::Scheduled)
    );
    let later_due = store.get(&later).await.unwrap().unwrap().input.at;
    let later_ms = later_due.expect("a due time").ms();
    assert_eq!(store.scheduled_count().await.unwrap(), (1, Some(later_ms)));
    let seen = env
        .poll_until("the metrics", LONG, async || scheduled_gauge().await)
        .await;
    assert_eq!(seen, "1", "agentq_scheduled");
    env.cli_ok(&["cancel", &later]);
    assert_eq!(store.scheduled_count().await.unwrap(), (0, None));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduled_job_is_cancelled_at_once_and_bad_times_are_refused() {
    let env = TestEnv::new();
    let id = env.enqueue(&[
        "--repo",
        "demo",
        "--task",
        "t",
        "--issue",
        "1",
        "--at",
        "2099-12-07T06:00Z",
    ]);
    let store = env.store().await;
    assert_eq!(
        store.state_of(&id).await.unwrap(),
        Some(JobState::Scheduled)
    );
    let rec = store.get(&id).await.unwrap().unwrap();
    assert_eq!(rec.input.at, Some("2099-12-07T06:00:00Z".parse().unwrap()));
    env.cli_ok(&["cancel", &id]);
    assert_eq!(
        store.state_of(&id).await.unwrap(),
        Some(JobState::Cancelled)
    );
    assert_eq!(store.scheduled_count().await.unwrap().0, 0);
    for (args, field) in [
        (vec!["--at", "tomorrow"], "at"),
        (vec!["--in", "soon"], "in"),
        (vec!["--priority", "urgent"], "priority"),
    ] {
        let mut all = vec![
            "enqueue", "--repo", "demo", "--task", "t", "--issue", "1", "--json",
        ];
        all.extend(args);
        let out = env.cli(&all, None);
        assert!(!out.status.success(), "{all:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["field"], field, "{v}");
    }
    let out = env.cli(
        &["enqueue", "-", "--json"],
        Some(&lines("codex", "t", 1..2, r#"{"in":"2x"}"#)),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["status"].as_str(), v["field"].as_str()),
        (Some("refused"), Some("in"))
    );
    // What enqueue prints says the job is scheduled, not queued: one job,
    // and a batch's lines (text and JSON).
    let one = env.cli_ok(&[
        "enqueue", "--repo", "demo", "--task", "t", "--issue", "2", "--in", "1h", "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&one).unwrap();
    assert_eq!(v["status"], "scheduled", "{v}");
    let batch = lines("codex", "t", 3..5, r#"{"in":"1h"}"#);
    let text = env.cli(&["enqueue", "-"], Some(&batch));
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(text.starts_with("line 1: scheduled "), "{text}");
    let json = env.cli(
        &["enqueue", "-", "--json"],
        Some(&lines("codex", "t", 5..6, r#"{"in":"1h"}"#)),
    );
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["status"], "scheduled", "{v}");
    let now = env.cli_ok(&[
        "enqueue", "--repo", "demo", "--task", "t", "--issue", "6", "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&now).unwrap();
    assert_eq!(v["status"], "queued", "{v}");
}

/// The jobs whose idempotency key is `schedule:{name}:{tick}`, by tick.
async fn ticks_enqueued(env: &TestEnv, name: &str) -> Vec<i64> {
    let store = env.store().await;
    let prefix = format!("schedule:{name}:");
    let mut ticks: Vec<i64> = store
        .list(&Default::default())
        .await
        .unwrap()
        .into_iter()
        .filter_map(|r| r.key.strip_prefix(&prefix)?.parse().ok())
        .collect();
    ticks.sort();
    ticks
}

const SCHEDULES: &str = r#"
[[schedule]]
name = "every3"
cron = "*/3 * * * * *"
[schedule.job]
repo = "demo"
task = "periodic"
issue = 1
dry_run = true

[[schedule]]
name = "yearly"
cron = "0 0 0 1 1 *"
tz = "UTC"
[schedule.job]
repo = "demo"
task = "yearly"
issue = 2
dry_run = true

[[schedule]]
name = "fresh"
cron = "0 0 0 1 1 *"
[schedule.job]
repo = "demo"
task = "fresh"
issue = 3
dry_run = true
"#;

#[tokio::test(flavor = "multi_thread")]
async fn three_workers_enqueue_exactly_one_job_per_tick() {
    require_docker();
    let env = TestEnv::with_config(SCHEDULES);
    env.remotes.create("core", "demo", &[]);
    let mut r = env.redis.conn();
    // `yearly` last ran in 2020: every tick since was missed; one job, for
    // the latest (this year's 1 January), not one per year.
    use chrono::{Datelike, TimeZone};
    let year = chrono::Utc::now().year();
    let jan1 = |y: i32| chrono::Utc.with_ymd_and_hms(y, 1, 1, 0, 0, 0).unwrap();
    let this_year = jan1(year).timestamp();
    let _: () = r.set(env.key("schedule:yearly"), 1_577_836_800i64).unwrap();
    let _w: Vec<_> = (1..=3).map(|i| env.worker(&format!("w{i}"), 1)).collect();
    wait_live_workers(&env, 3).await;
    let tick = |r: &mut redis::Connection, name: &str| -> Option<i64> {
        r.get(env.key(&format!("schedule:{name}"))).unwrap()
    };
    let first = env
        .poll_until("every3's first tick", LONG, async || tick(&mut r, "every3"))
        .await;
    let last = env
        .poll_until("three more ticks", LONG, async || {
            tick(&mut r, "every3").filter(|t| *t >= first + 9)
        })
        .await;
    // The job of the last tick observed is in (the compare-and-set comes first).
    let key = env.key(&format!("key:schedule:every3:{last}"));
    env.poll_until("the last tick's job", LONG, async || {
        r.exists::<_, bool>(&key).unwrap().then_some(())
    })
    .await;
    let ticks: Vec<i64> = ticks_enqueued(&env, "every3")
        .await
        .into_iter()
        .filter(|t| *t <= last)
        .collect();
    assert!(ticks.len() >= 3, "{ticks:?}");
    let expected: Vec<i64> = (0..ticks.len() as i64).map(|i| ticks[0] + 3 * i).collect();
    assert_eq!(ticks, expected, "one job per tick, none missed, none twice");
    assert_eq!(ticks.last(), Some(&last));
    // The missed ticks: once. The new schedule: its tick only recorded.
    assert_eq!(ticks_enqueued(&env, "yearly").await, vec![this_year]);
    assert_eq!(tick(&mut r, "yearly"), Some(this_year));
    assert_eq!(ticks_enqueued(&env, "fresh").await, Vec::<i64>::new());
    assert_eq!(tick(&mut r, "fresh"), Some(this_year));
    let out = env.cli_ok(&["schedules", "--json"]);
    let views: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(views.len(), 3, "{out}");
    assert_eq!(views[1]["name"], "yearly");
    let text = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    assert_eq!(views[1]["last_tick"], text(jan1(year)));
    assert_eq!(views[1]["next_tick"], text(jan1(year + 1)));
    assert!(env.cli_ok(&["schedules"]).contains("every3"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_schedule_is_refused_at_load_naming_its_key() {
    let env = TestEnv::with_config(
        "[[schedule]]\nname = \"n\"\ncron = \"0 3 * * *\"\ntz = \"Mars/Olympus\"\n[schedule.job]\nrepo = \"demo\"\ntask = \"t\"\nissue = 1\n",
    );
    let out = env.cli(&["schedules"], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("schedule[0].tz"), "{err}");
}
