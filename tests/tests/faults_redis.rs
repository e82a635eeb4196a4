//! Issue 27's Redis faults: an evicting Redis is refused (worker, CLI,
//! `agentq doctor`), operators racing each other lose nothing, and one clock
//! (Redis's `TIME`) for every lease, slot and window.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use agentq_shared::status::{JobState, ALL_STATES};
use agentq_tests::*;
use redis::Commands;

/// The suite's generous bound for an event that must come.
const LONG: Duration = Duration::from_secs(120);

/// Jobs the race and eviction tests use.
const MANY: usize = 20_000;

/// NDJSON for `n` jobs of the default agent on repo `demo`.
fn ndjson(n: usize) -> String {
    (1..=n)
        .map(|i| format!("{{\"repo\":\"demo\",\"task\":\"race {i}\",\"issue\":{i}}}\n"))
        .collect()
}

/// Spawns `agentq args...` on `env` without waiting for it.
fn spawn_cli(env: &TestEnv, args: &[&str]) -> std::process::Child {
    std::process::Command::new(bin("agentq"))
        .args(args)
        .envs(env.env())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cannot start agentq")
}

/// Members of every lane of every pool.
fn lane_members(env: &TestEnv) -> HashSet<String> {
    let mut c = env.redis.conn();
    let pools: Vec<String> = c.smembers(env.key("pools")).unwrap();
    let mut out = HashSet::new();
    for pool in pools {
        let models: Vec<String> = c.smembers(env.key(&format!("lanes:{pool}"))).unwrap();
        for m in models {
            let ids: Vec<String> = c
                .zrange(env.key(&format!("lane:{pool}:{m}")), 0, -1)
                .unwrap();
            out.extend(ids);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn purge_racing_retry_of_the_same_jobs_leaves_each_in_one_consistent_place() {
    let env = TestEnv::new();
    let ids = env.enqueue_ndjson(&ndjson(MANY));
    assert_eq!(ids.len(), MANY);
    let out = env.cli_ok(&["cancel", "--state", "queued", "--json"]);
    assert!(!out.is_empty());
    let stats = env.cli_ok(&["stats", "--json"]);
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["states"]["cancelled"], MANY, "{stats}");

    // Both at once, on the same jobs: retry first, and purge as soon as
    // retry's first chunk is in, so purge selects jobs retry is about to
    // reach (both walk them oldest first) and the two chase each other.
    let t0 = Instant::now();
    let retry = spawn_cli(&env, &["retry", "--state", "cancelled", "--json"]);
    let mut c = env.redis.conn();
    while c.zcard::<_, u64>(env.key("state:queued")).unwrap() == 0 {
        assert!(t0.elapsed() < LONG, "retry retried nothing");
        std::thread::sleep(Duration::from_millis(2));
    }
    let purge = spawn_cli(
        &env,
        &["purge", "--state", "cancelled", "--older-than", "0s"],
    );
    let purge = purge.wait_with_output().unwrap();
    let retry = retry.wait_with_output().unwrap();
    eprintln!(
        "purge and retry of {MANY} jobs at once took {:?}; purge: {} {}",
        t0.elapsed(),
        String::from_utf8_lossy(&purge.stdout).trim(),
        String::from_utf8_lossy(&purge.stderr).trim()
    );
    assert!(purge.status.success(), "purge: {purge:?}");
    // Retry exits 1 when some jobs were gone (purged first): that is a report,
    // not a failure.
    assert!(
        matches!(retry.status.code(), Some(0 | 1)),
        "retry: {retry:?}"
    );

    let lanes = lane_members(&env);
    let all: HashSet<String> = c
        .zrange::<_, Vec<String>>(env.key("jobs"), 0, -1)
        .unwrap()
        .into_iter()
        .collect();
    let mut in_state: HashMap<String, Vec<JobState>> = HashMap::new();
    for st in ALL_STATES {
        let members: Vec<String> = c.zrange(env.key(&format!("state:{st}")), 0, -1).unwrap();
        for id in members {
            in_state.entry(id).or_default().push(*st);
        }
    }
    let fresh: HashSet<String> = c
        .hkeys::<_, Vec<String>>(env.key("new"))
        .unwrap()
        .into_iter()
        .collect();
    let (mut gone, mut retried) = (0usize, 0usize);
    let mut bad = Vec::new();
    for id in &ids {
        let state: Option<String> = c.hget(env.key(&format!("job:{id}")), "state").unwrap();
        let states = in_state.get(id).cloned().unwrap_or_default();
        let consistent = match state.as_deref() {
            None => {
                gone += 1;
                states.is_empty() && !lanes.contains(id) && !all.contains(id) && !fresh.contains(id)
            }
            Some("queued") => {
                retried += 1;
                states == [JobState::Queued] && lanes.contains(id) && all.contains(id)
            }
            Some(_) => false,
        };
        if !consistent {
            bad.push(format!(
                "{id}: record state {state:?}, indexes {states:?}, in a lane {}, in all jobs {}",
                lanes.contains(id),
                all.contains(id)
            ));
        }
    }
    eprintln!("{gone} purged, {retried} retried");
    assert!(
        bad.is_empty(),
        "{} of {MANY} jobs are in no consistent place, e.g.:\n{}",
        bad.len(),
        bad.iter().take(5).cloned().collect::<Vec<_>>().join("\n")
    );
    assert_eq!(gone + retried, MANY);

    // What stats counts is what list finds.
    let stats = env.cli_ok(&["stats", "--json"]);
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    for st in ALL_STATES {
        let listed = env.cli_ok(&[
            "list",
            "--state",
            st.as_str(),
            "--limit",
            "1000000",
            "--json",
        ]);
        let n = listed.lines().filter(|l| !l.trim().is_empty()).count();
        assert_eq!(
            stats["states"][st.as_str()].as_u64().unwrap_or(0),
            n as u64,
            "stats and list disagree on {st}: {stats}"
        );
    }
    let waiting: u64 = stats["pools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["waiting"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(waiting, retried as u64, "{stats}");
}
