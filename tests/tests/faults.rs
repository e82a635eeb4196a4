//! Issue 10's acceptance: no job lost, none finalized twice, no agent outliving
//! its lease, under the faults a pool of hosts sees (Redis refusing writes, a
//! Redis restart, a frozen Redis, `kill -9` of a worker, a host that cannot run
//! containers). Every count comes from somewhere the workers cannot fake: the
//! record's history (written in the same Lua call as the state) and the test
//! agent's own start/end log.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use agentq_shared::{
    container::LABEL_JOB,
    status::{JobState, ALL_STATES},
};
use agentq_tests::*;
use redis::Commands;

/// The suite's generous bound for an event that must come.
const LONG: Duration = Duration::from_secs(120);

/// Final-state entries in each job's history: 1 for every job, or it was
/// finalized twice (or never).
async fn finalized_counts(env: &TestEnv, ids: &[String]) -> HashMap<String, usize> {
    let store = env.store().await;
    let mut out = HashMap::new();
    for id in ids {
        let h = store.history(id).await.unwrap();
        let n = h
            .iter()
            .filter(|e| {
                e.state
                    .parse::<JobState>()
                    .map(|s| s.is_final())
                    .unwrap_or(false)
            })
            .count();
        out.insert(id.clone(), n);
    }
    out
}

/// Waits until `n` jobs are final (or `timeout`), returning the state counts.
async fn wait_all_final(env: &TestEnv, n: u64, timeout: Duration) -> Vec<(JobState, u64)> {
    let store = env.store().await;
    let deadline = Instant::now() + timeout;
    loop {
        let counts = match store.state_counts().await {
            Ok(c) => c,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let done: u64 = counts
            .iter()
            .filter(|(s, _)| s.is_final())
            .map(|(_, c)| c)
            .sum();
        if done >= n {
            return counts;
        }
        assert!(
            Instant::now() < deadline,
            "only {done} of {n} jobs final after {timeout:?}: {counts:?}\n{}",
            env.worker_logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn overlapping(iv: &[(f64, f64)]) -> bool {
    let mut v = iv.to_vec();
    v.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    v.windows(2).any(|w| w[1].0 < w[0].1)
}

fn running_containers(id: &str) -> Vec<String> {
    running_containers_with_label(LABEL_JOB, id)
}

/// Enqueues a codex job on `core/demo` for `issue` whose agent sleeps `secs`,
/// and waits until the agent itself has started.
async fn start_sleeping_job(env: &TestEnv, issue: u32, secs: u32) -> String {
    let id = env.enqueue_for_issue(issue, &format!("fault @agentq-test sleep {secs}"));
    env.wait_for(&id, Duration::from_secs(60), |r| {
        r.state == JobState::Running
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while env.agent_starts(&id).is_empty() {
        assert!(Instant::now() < deadline, "agent of {id} did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    id
}

/// Enqueues a codex job on `core/demo` for `issue` whose agent holds (see
/// [`TestEnv::release_holds`]), and waits until the agent itself is holding: it
/// cannot end by itself, so only agentq stops it.
async fn start_holding_job(env: &TestEnv, issue: u32) -> String {
    let id = env.enqueue_for_issue(issue, "fault @agentq-test hold");
    let deadline = Instant::now() + LONG;
    while !env.holding().contains(&id) {
        assert!(
            Instant::now() < deadline,
            "agent of {id} did not hold\n{}",
            env.worker_logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_redis_faults_lose_no_job_and_finalize_none_twice() {
    let n = 1000usize;
    let mut env = TestEnv::with_config_and_redis("", Redis::start_durable());
    env.remotes.create("core", "demo", &[]);
    let _a = env.worker("a", 4);
    let _b = env.worker("b", 4);
    let lines: String = (0..n)
        .map(|i| {
            format!(
                r#"{{"repo":"demo","org":"core","issue":{},"task":"fault","agent":"codex","dry_run":true}}"#,
                i + 1
            ) + "\n"
        })
        .collect();
    let ids = env.enqueue_ndjson(&lines);
    assert_eq!(ids.len(), n);

    // 25 short spells of Redis refusing every write, then a restart.
    for _ in 0..25 {
        env.redis.refuse_writes(true);
        std::thread::sleep(Duration::from_millis(300));
        env.redis.refuse_writes(false);
        std::thread::sleep(Duration::from_millis(300));
    }
    env.redis.bounce(Duration::from_secs(2));

    let counts = wait_all_final(&env, n as u64, Duration::from_secs(600)).await;
    let completed = counts
        .iter()
        .find(|(s, _)| *s == JobState::Completed)
        .map_or(0, |(_, c)| *c);
    assert_eq!(completed, n as u64, "every job completes: {counts:?}");
    let twice: Vec<_> = finalized_counts(&env, &ids)
        .await
        .into_iter()
        .filter(|(_, c)| *c != 1)
        .collect();
    assert!(
        twice.is_empty(),
        "jobs finalized other than once: {twice:?}"
    );
    for st in ALL_STATES.iter().filter(|s| !s.is_final()) {
        let left = counts.iter().find(|(s, _)| s == st).map_or(0, |(_, c)| *c);
        assert_eq!(left, 0, "nothing left {st}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_of_a_killed_worker_stop_before_anyone_takes_their_jobs_over() {
    require_docker();
    let env = TestEnv::new();
    env.remotes.create("core", "demo", &[]);
    let deaths = env.watch_agent_deaths();
    let mut a = env.worker("a", 2);
    let mut ids = Vec::new();
    for issue in 1..=2 {
        ids.push(start_holding_job(&env, issue).await);
    }
    a.kill9();
    // Another worker at once: it takes each job over as soon as its lease lets
    // it (heartbeat 1 s × 3 missed: 3 s after the last renewal). The agents
    // hold until released, so only the watchdog's stop ends them: no takeover
    // may start before that.
    let _b = env.worker("b", 2);
    let gone = deaths.wait_first(&ids, LONG).await;
    env.release_holds();
    for id in &ids {
        let rec = env.wait_final(id, LONG).await;
        assert_eq!(rec.state, JobState::Completed, "{id}: {rec:?}");
        let iv = ended_by(env.agent_spans(id), gone[id]);
        assert_eq!(
            iv.len(),
            2,
            "{id} ran twice (killed, then taken over): {iv:?}"
        );
        assert!(iv[0].0 < gone[id], "died before it started? {iv:?}");
        assert!(!overlapping(&iv), "{id}'s runs overlap: {iv:?}");
        let store = env.store().await;
        let h = store.history(id).await.unwrap();
        assert!(
            h.iter()
                .any(|e| e.state == "waiting" && e.reason == "orphaned"),
            "{id} was put back as orphaned: {h:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_for_30_s_neither_reaps_nor_reruns_a_running_agent() {
    require_docker();
    // A 120 s lease (renewed every 40 s, self-fencing after 80 s unrenewed): a
    // 30 s outage is within what a run rides out whatever the renewal's phase
    // (at most 40 + 30 s unrenewed). The reaper
    // runs 30 s after the worker starts, inside the outage, where every lookup
    // of the lease fails.
    let mut env = TestEnv::with_config_and_redis(
        "heartbeat_secs = 2\nmissed_heartbeats = 60\n",
        Redis::start_durable(),
    );
    env.remotes.create("core", "demo", &[]);
    let _w = env.worker("w", 1);
    let id = start_sleeping_job(&env, 1, 45).await;
    let before = running_containers(&id);
    assert_eq!(before.len(), 1);
    env.redis.stop();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let during = running_containers(&id);
    env.redis.start_again();
    assert_eq!(during, before, "the agent's container survives the outage");
    let rec = env.wait_final(&id, Duration::from_secs(120)).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:?}");
    assert_eq!(env.agent_spans(&id).len(), 1, "the agent ran once");
    assert_eq!(
        finalized_counts(&env, std::slice::from_ref(&id)).await[&id],
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_cannot_run_containers_spends_no_attempts() {
    require_docker();
    let env = TestEnv::new();
    env.remotes.create("core", "demo", &[]);
    // The bad host mounts a directory into agents that disappears once it
    // runs: the engine refuses every container it asks for.
    let (gone, bad_cfg) = config_with_a_mount_that_vanishes(&env);
    let _bad = env.worker_with_args(
        "bad",
        &["--concurrency", "2", "--config", bad_cfg.to_str().unwrap()],
    );
    let _good = env.worker("good", 2);
    wait_live_workers(&env, 2).await;
    std::fs::remove_dir(&gone).unwrap();
    let lines: String = (0..20)
        .map(|i| {
            format!(r#"{{"repo":"demo","org":"core","issue":{},"task":"host {} @agentq-test commit","agent":"codex"}}"#,
                i + 1,
                i + 1)
                + "\n"
        })
        .collect();
    let ids = env.enqueue_ndjson(&lines);
    let mut states = HashMap::new();
    for id in &ids {
        let rec = env.wait_final(id, Duration::from_secs(240)).await;
        *states.entry(rec.state).or_insert(0) += 1;
    }
    assert_eq!(states.get(&JobState::Completed), Some(&20), "{states:?}");
    let workers = env.cli_ok(&["workers", "--json"]);
    let v: Vec<serde_json::Value> = workers
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let degraded: Vec<_> = v
        .iter()
        .filter(|w| !w["degraded"].as_str().unwrap_or("").is_empty())
        .collect();
    assert_eq!(degraded.len(), 1, "the bad host shows as degraded: {v:?}");
    let why = degraded[0]["degraded"].as_str().unwrap();
    assert!(why.contains("gone-after-start"), "{why}");
    let mut c = env.redis.conn();
    let rescued: Option<u64> = c.get(env.key("rescued")).unwrap();
    assert_eq!(rescued.unwrap_or(0), 0, "no job was lost on the way");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_cut_off_by_a_partition_is_fenced_out_and_its_agent_stops() {
    require_docker();
    let net = NetNs::new();
    let env = TestEnv::with_config_and_redis("", Redis::start_listening_on(&net.host_addr));
    env.remotes.create("core", "demo", &[]);
    let url = format!("redis://{}:{}", net.host_addr, env.redis.port);
    // Its /metrics, in the namespace, counts the runs it had fenced out.
    let metrics = format!("{}:{}", net.ns_addr, free_port());
    let a = env.worker_in_netns(
        "a",
        &net.name,
        &url,
        &["--concurrency", "1", "--metrics-addr", &metrics],
    );
    let deaths = env.watch_agent_deaths();
    let id = start_holding_job(&env, 1).await;
    let a_worker = env.store().await.get(&id).await.unwrap().unwrap().worker;
    net.cut();
    // Another worker at once: it takes the job over once the lease (3 s) has
    // run out. The cut-off worker must stop its agent before (within ⅔ of the
    // lease); the agent holds until released, so only that stop ends it.
    let _b = env.worker("b", 1);
    let gone = deaths.wait_first(std::slice::from_ref(&id), LONG).await[&id];
    env.release_holds();
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:?}");
    assert_ne!(rec.worker, a_worker, "the takeover finished it");
    net.heal();
    // The fenced worker tries its pending write once Redis answers, and is
    // refused: its own count of fenced-out runs says the write was tried.
    wait_runs_fenced(&metrics, 1, &a).await;
    let after = env.store().await.get(&id).await.unwrap().unwrap();
    assert_eq!(after.state, JobState::Completed, "nothing reopened it");
    assert_eq!(after.seq, rec.seq, "the fenced worker changed nothing");
    assert_eq!(
        after.updated_at, rec.updated_at,
        "the fenced worker changed nothing"
    );
    assert_eq!(
        finalized_counts(&env, std::slice::from_ref(&id)).await[&id],
        1
    );
    let iv = ended_by(env.agent_spans(&id), gone);
    assert_eq!(iv.len(), 2, "{iv:?}");
    assert!(iv[0].0 < gone, "died at {gone}, before it started? {iv:?}");
    // The cut-off run ended, as the engine saw it, before the takeover's run
    // started (on the agent's own clock): stopped by its worker's
    // self-fencing and its watchdog, whose limits are the same (the worker's
    // log alone would tell which acted first).
    assert!(!overlapping(&iv), "runs overlap: {iv:?}");
    assert!(
        gone <= iv[1].0,
        "died at {gone}, after the takeover began: {iv:?}"
    );
}

/// Waits until the worker serving /metrics on `addr` counts `n` runs fenced
/// out (`agentq_runs_fenced_total`).
async fn wait_runs_fenced(addr: &str, n: u64, w: &WorkerProc) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + LONG;
    let mut last = String::new();
    loop {
        if let Ok(resp) = client.get(format!("http://{addr}/metrics")).send().await {
            last = resp.text().await.unwrap_or_default();
            let fenced = last
                .lines()
                .find_map(|l| l.strip_prefix("agentq_runs_fenced_total "))
                .and_then(|v| v.trim().parse::<f64>().ok());
            if fenced.is_some_and(|v| v >= n as f64) {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "fewer than {n} runs fenced out after {LONG:?}: {last}\n{}",
            std::fs::read_to_string(&w.log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
