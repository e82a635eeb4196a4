//! Issue 31, part B: pacing as upstream defines it. A daily limit holds
//! across worker processes and lets the pool go on at the next `reset_utc`;
//! `agentq stats` shows the day; a pool name no table knows is refused at load.

use std::time::Duration;

use agentq_shared::{record::JobRecord, status::JobState};
use agentq_tests::*;

const LONG: Duration = Duration::from_secs(300);

fn enqueue_many(env: &TestEnv, agent: &str, n: u64) -> Vec<String> {
    let lines: String = (1..=n)
        .map(|i| {
            serde_json::json!({"repo": "demo", "task": "pace me", "agent": agent, "issue": i})
                .to_string()
                + "\n"
        })
        .collect();
    env.enqueue_ndjson(&lines)
}

/// A daily limit of 3, 5 jobs, two worker processes with room for all: 3
/// start in the day that ends at the reset, the other 2 wait (parked) and
/// start after it. The reset is a minute boundary 75 s to 135 s ahead on
/// Redis's clock; the proof is each job's grant time (`admitted_at`, written
/// by the wake script on the same clock), not the test's timing.
#[tokio::test(flavor = "multi_thread")]
async fn a_daily_limit_of_three_starts_three_before_the_reset_and_two_after() {
    require_docker();
    let env = TestEnv::new();
    env.remotes.create("core", "demo", &[]);
    let store = env.store().await;
    let now = store.redis_now_ms().await.unwrap();
    let reset_ms = ((now + 75_000) / 60_000 + 1) * 60_000;
    let reset = agentq_shared::pacing::utc_ms(reset_ms);
    let hh_mm = reset.format("%H:%M").to_string();
    env.append_config(&format!(
        "\n[pacing.claude]\nreset_utc = \"{hh_mm}\"\ndaily_limit = 3\n"
    ));
    let _w1 = env.worker("w1", 3);
    let _w2 = env.worker("w2", 3);
    wait_live_workers(&env, 2).await;
    let ids = enqueue_many(&env, "claude", 5);

    // Three run to the end; the two others stay parked, never granted.
    let done = env
        .poll_until("three jobs completed", LONG, async || {
            let mut done = Vec::new();
            for id in &ids {
                let rec = store.get(id).await.unwrap().unwrap();
                if rec.state == JobState::Completed {
                    done.push(rec);
                }
            }
            (done.len() >= 3).then_some(done)
        })
        .await;
    assert_eq!(done.len(), 3, "a fourth job started: {done:#?}");
    // While the day lasts, stats says so (checked only if the reset has not
    // come meanwhile: no assert on the machine's speed).
    let out = env.cli_ok(&["stats", "--json"]);
    let human = env.cli_ok(&["stats"]);
    if store.redis_now_ms().await.unwrap() < reset_ms {
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let claude = v["pools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["pool"] == "claude")
            .expect("claude in stats");
        let p = &claude["pacing"];
        assert_eq!(p["starts_today"], 3, "{out}");
        assert_eq!(p["daily_limit"], 3, "{out}");
        assert_eq!(p["starts_left"], 0, "{out}");
        assert_eq!(p["may_start_now"], false, "{out}");
        let at = reset.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        assert_eq!(p["next_start"], at.as_str(), "{out}");
        assert_eq!(p["day_ends"], at.as_str(), "{out}");
        assert!(human.contains("3/3 started today (0 left)"), "{human}");
        eprintln!("pacing: stats checked before the reset:\n{human}");
        let waiting: Vec<JobRecord> = {
            let mut v = Vec::new();
            for id in &ids {
                let rec = store.get(id).await.unwrap().unwrap();
                if rec.state != JobState::Completed {
                    v.push(rec);
                }
            }
            v
        };
        if store.redis_now_ms().await.unwrap() < reset_ms {
            assert_eq!(waiting.len(), 2);
            for r in &waiting {
                assert!(
                    matches!(r.state, JobState::Queued | JobState::Waiting),
                    "{r:#?}"
                );
            }
        }
    }

    // After the reset the two others run.
    let mut recs = Vec::new();
    for id in &ids {
        let rec = env.wait_final(id, LONG).await;
        assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
        assert_eq!(rec.attempt, 1, "waiting for the day spent an attempt");
        assert_eq!(env.agent_intervals(id).len(), 1, "ran once: {id}");
        recs.push(rec);
    }
    let granted = |r: &JobRecord| r.admitted_at.expect("granted by a wake").ms();
    let before: Vec<_> = recs.iter().filter(|r| granted(r) < reset_ms).collect();
    let after: Vec<_> = recs.iter().filter(|r| granted(r) >= reset_ms).collect();
    assert_eq!(
        (before.len(), after.len()),
        (3, 2),
        "reset at {reset}: {:?}",
        recs.iter().map(|r| (&r.id, granted(r))).collect::<Vec<_>>()
    );
    // The oldest three in the first day.
    for r in &before {
        assert!(ids[..3].contains(&r.id), "{r:#?}");
    }
    let hosts: std::collections::HashSet<_> = recs.iter().map(|r| r.worker.clone()).collect();
    assert!(hosts.len() >= 2, "one worker ran them all: {hosts:?}");
}

/// A pool no table knows in `[limits]`, `[rates]` or `[pacing]`: `agentq`
/// and `agentq-worker` refuse the config at load, naming the known pools.
#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_pool_in_limits_rates_or_pacing_is_refused_at_load() {
    for (extra, table) in [
        ("[limits]\nclaud = 1\n", "[limits]"),
        ("[rates]\ngemni = 2\n", "[rates]"),
        ("[pacing.codx]\ndaily_limit = 3\n", "[pacing]"),
    ] {
        let env = TestEnv::new();
        env.append_config(&format!("\n{extra}"));
        let out = env.cli(&["list"], None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(&format!("{table}: unknown pool")), "{err}");
        assert!(
            err.contains("known pools: ") && err.contains("claude") && err.contains("codex"),
            "{err}"
        );
    }
    // A configured pool is known: its pacing loads.
    let env = TestEnv::new();
    env.append_config(
        "\n[agents.aider]\ncommand = [\"aider\", \"--message-file\", \"{prompt_file}\"]\n\
         [pacing.aider]\ndaily_limit = 1\n[limits]\naider = 1\n",
    );
    env.cli_ok(&["list"]);
    let env = TestEnv::new();
    env.append_config("\n[pacing.aider]\nsustained_delay = 1\n");
    let path = env.config_path().to_str().unwrap().to_string();
    let mut w = env.worker_with_args("bad", &["--config", &path]);
    let status = w.wait_exit(LONG);
    let log = std::fs::read_to_string(&w.log).unwrap();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(log.contains("[pacing]: unknown pool `aider`"), "{log}");
}
