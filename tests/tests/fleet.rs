//! Issue 31, part C: fleet control. `agentq pause` / `unpause` (an
//! operator's pause with no end, on every host, surviving worker restarts),
//! `agentq stop --now` (running agents stopped, their jobs back to `queued`
//! first in line, the pools paused) and `start_paused`. Real workers, Docker
//! and Redis.

use std::time::Duration;

use agentq_shared::{record::JobRecord, status::JobState};
use agentq_tests::*;

const LONG: Duration = Duration::from_secs(180);
/// The test config's `stop_grace_secs`.
const GRACE_SECS: f64 = 2.0;

/// The `stats --json` row of `pool`.
fn pool_row(env: &TestEnv, pool: &str) -> serde_json::Value {
    stats_pool(&env.stats_json(), pool).clone()
}

fn enqueue_n(env: &TestEnv, task: &str, issues: std::ops::RangeInclusive<u32>) -> Vec<String> {
    issues
        .map(|i| {
            env.enqueue(&[
                "--repo",
                "demo",
                "--agent",
                "codex",
                "--task",
                task,
                "--issue",
                &i.to_string(),
            ])
        })
        .collect()
}

async fn records(env: &TestEnv, ids: &[String]) -> Vec<JobRecord> {
    let store = env.store().await;
    let mut out = Vec::new();
    for id in ids {
        out.push(store.get(id).await.unwrap().unwrap());
    }
    out
}

/// The workers serve (a dry run, which needs no slot, completes), and for
/// three heartbeats after that (the sweep leader wakes every parked pool each
/// heartbeat) none of `ids` has started: they are all still `queued`, never run.
async fn nothing_starts(env: &TestEnv, ids: &[String]) {
    static ISSUE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(900);
    let issue = ISSUE
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        .to_string();
    let dry = env.enqueue(&[
        "--repo",
        "demo",
        "--agent",
        "codex",
        "--task",
        "d",
        "--dry-run",
        "--issue",
        &issue,
    ]);
    let rec = env.wait_final(&dry, LONG).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    let until = std::time::Instant::now() + Duration::from_secs(4);
    while std::time::Instant::now() < until {
        for r in records(env, ids).await {
            assert_eq!(
                (r.state, r.runs, r.tries),
                (JobState::Queued, 0, 0),
                "a job started while paused: {r:#?}\n{}",
                env.worker_logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(agent_starts_all(env, ids).is_empty());
}

/// Those of `ids` whose agent ever started.
fn agent_starts_all(env: &TestEnv, ids: &[String]) -> Vec<String> {
    ids.iter()
        .filter(|id| !env.agent_starts(id).is_empty())
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn pause_all_holds_on_every_host_and_across_restarts_until_unpause() {
    require_docker();
    let env = TestEnv::new();
    env.remotes.create("core", "demo", &[]);

    // An unknown pool is refused, naming the known ones; nothing is paused.
    let out = env.cli(&["pause", "nope"], None);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nope") && err.contains("codex") && err.contains("claude"),
        "{err}"
    );
    assert_eq!(pool_row(&env, "codex")["operator_paused"], false);

    let out = env.cli_ok(&["pause", "--all", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["all"].clone(), v["paused"].clone()),
        (true.into(), true.into()),
        "{v}"
    );
    let mut w1 = env.worker("w1", 2);
    let _w2 = env.worker("w2", 2);
    wait_live_workers(&env, 2).await;
    let ids = enqueue_n(&env, "a", 1..=3);
    nothing_starts(&env, &ids).await;
    let s = env.stats_json();
    assert_eq!(s["fleet"]["all"], true, "{s}");
    for p in s["pools"].as_array().unwrap() {
        assert_eq!(p["operator_paused"], true, "{p}");
        assert!(p["paused_until"].is_null(), "not a timed pause: {p}");
    }
    assert!(env.cli_ok(&["stats"]).contains("by operator"));

    // A restarted worker finds the pause in Redis.
    let status = w1.signal_and_wait("TERM", LONG);
    assert!(status.success(), "{status}");
    let _w3 = env.worker("w3", 2);
    wait_live_workers(&env, 2).await;
    nothing_starts(&env, &ids).await;
    assert_eq!(pool_row(&env, "codex")["operator_paused"], true);

    let out = env.cli_ok(&["unpause", "--all", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["fleet_paused"], false, "{v}");
    for id in &ids {
        let r = env.wait_final(id, LONG).await;
        assert_eq!(r.state, JobState::Completed, "{r:#?}");
    }
    assert_eq!(pool_row(&env, "codex")["operator_paused"], false);
    let events = env.cli_ok(&["events", "--json", "--last", "1000"]);
    assert!(
        events.contains("fleet_paused") && events.contains("fleet_resumed"),
        "{events}"
    );
    assert!(events.contains("\"cause\":\"operator\""), "{events}");

    // A timed pause and the operator's coexist: unpause lifts only its own.
    env.cli_ok(&["pool", "pause", "claude", "--for", "1h"]);
    env.cli_ok(&["pause", "claude"]);
    let row = pool_row(&env, "claude");
    assert!(
        row["operator_paused"] == true && row["paused_until"].is_string(),
        "{row}"
    );
    let out = env.cli_ok(&["unpause", "claude", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["lifted"], 1, "{v}");
    assert!(v["timed_paused_until"]["claude"].is_string(), "{v}");
    let row = pool_row(&env, "claude");
    assert!(
        row["operator_paused"] == false && row["paused_until"].is_string(),
        "{row}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_now_stops_running_agents_on_every_host_and_hands_their_jobs_back() {
    require_docker();
    let env = TestEnv::new();
    env.remotes.create("core", "demo", &[]);
    let port = free_port();
    let metrics_addr = format!("127.0.0.1:{port}");
    let _w1 = env.worker_with_args(
        "w1",
        &["--concurrency", "2", "--metrics-addr", &metrics_addr],
    );
    let _w2 = env.worker("w2", 2);
    let ids = enqueue_n(&env, "@agentq-test hold", 1..=4);
    let mut held = env.wait_holding(4).await;
    held.sort();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(held, sorted);
    let hosts: std::collections::BTreeSet<String> = records(&env, &ids)
        .await
        .into_iter()
        .map(|r| r.worker)
        .collect();
    assert_eq!(hosts.len(), 2, "the 4 jobs run on both workers: {hosts:?}");

    let deaths = env.watch_agent_deaths();
    let asked = uptime();
    let out = env.cli_ok(&["stop", "--now", "codex", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["pools"], serde_json::json!(["codex"]), "{v}");

    // Every agent stopped within stop_grace_secs + 5 s of the command, on
    // both hosts, and its container is gone.
    let died = deaths.wait_first(&ids, LONG).await;
    for (id, at) in &died {
        assert!(
            at - asked <= GRACE_SECS + 5.0,
            "agent of {id} stopped {:.1}s after stop --now",
            at - asked
        );
    }
    env.poll_until("the agents' containers gone", LONG, async || {
        let left: Vec<String> = ids.iter().flat_map(|id| env.containers_of(id)).collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(left)
        }
    })
    .await;

    // Back in `queued`, reason `stopped`, no attempt spent.
    for id in &ids {
        let r = env
            .wait_for(id, LONG, |r| {
                r.state != JobState::Running && r.state != JobState::Preparing
            })
            .await;
        assert_eq!(
            (r.state, r.reason.map(|r| r.as_str()), r.tries, r.attempt),
            (JobState::Queued, Some("stopped"), 0, 1),
            "{r:#?}\n{}",
            env.worker_logs()
        );
    }
    let row = pool_row(&env, "codex");
    assert_eq!(row["operator_paused"], true, "{row}");
    assert!(row["paused_until"].is_null(), "no backoff pause: {row}");
    assert_eq!(pool_row(&env, "claude")["operator_paused"], false);
    nothing_starts(&env, &[]).await;
    let metrics = reqwest::get(format!("http://{metrics_addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        r#"agentq_pool_paused{pool="codex",cause="operator"} 1"#,
        r#"agentq_pool_paused{pool="codex",cause="timed"} 0"#,
        r#"agentq_pool_paused{pool="claude",cause="operator"} 0"#,
    ] {
        assert!(metrics.contains(line), "no `{line}` in\n{metrics}");
    }
    for r in records(&env, &ids).await {
        assert_eq!(r.state, JobState::Queued, "{r:#?}");
    }

    env.release_holds();
    env.cli_ok(&["unpause", "codex"]);
    for id in &ids {
        let r = env.wait_final(id, LONG).await;
        assert_eq!(
            (r.state, r.attempt, r.tries),
            (JobState::Completed, 2, 1),
            "{r:#?}"
        );
    }
    let events = env.cli_ok(&["events", "--json", "--last", "1000"]);
    assert!(events.contains("pool_stopped"), "{events}");
}

#[tokio::test(flavor = "multi_thread")]
async fn start_paused_fleet_runs_nothing_until_unpause_all_and_restarts_do_not_refreeze() {
    require_docker();
    let env = TestEnv::with_config("start_paused = true");
    env.remotes.create("core", "demo", &[]);
    let ids = enqueue_n(&env, "a", 1..=2);
    let mut w1 = env.worker("w1", 2);
    let _w2 = env.worker("w2", 2);
    wait_live_workers(&env, 2).await;
    nothing_starts(&env, &ids).await;
    assert_eq!(env.stats_json()["fleet"]["all"], true);

    env.cli_ok(&["unpause", "--all"]);
    for id in &ids {
        assert_eq!(env.wait_final(id, LONG).await.state, JobState::Completed);
    }
    // A restart (start_paused still set) does not freeze the fleet again.
    let status = w1.signal_and_wait("TERM", LONG);
    assert!(status.success(), "{status}");
    let _w3 = env.worker("w3", 2);
    wait_live_workers(&env, 2).await;
    let more = enqueue_n(&env, "b", 3..=3);
    assert_eq!(
        env.wait_final(&more[0], LONG).await.state,
        JobState::Completed
    );
    assert_eq!(env.stats_json()["fleet"]["all"], false);
}
