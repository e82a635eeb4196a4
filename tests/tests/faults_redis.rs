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

/// Jobs the issue's race and eviction tests use.
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

/// Sets `maxmemory-policy` (and a small `maxmemory`, so eviction is real).
fn set_policy(redis: &Redis, policy: &str) {
    let mut c = redis.conn();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg(policy)
        .query(&mut c)
        .unwrap();
    let max = if policy == "noeviction" { "0" } else { "4mb" };
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(max)
        .query(&mut c)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_evicting_redis_is_refused_by_enqueue_and_by_the_worker() {
    let env = TestEnv::new();
    set_policy(&env.redis, "allkeys-lru");
    let out = env.cli(&["enqueue", "-", "--json"], Some(&ndjson(MANY)));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let queued = stdout.lines().filter(|l| l.contains("queued")).count();
    assert_eq!(
        queued, 0,
        "{queued} of {MANY} lines claimed queued into an evicting Redis"
    );
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("maxmemory-policy is `allkeys-lru`")
            && stderr.contains("redis-cli CONFIG SET maxmemory-policy noeviction")
            && stderr.contains("maxmemory-policy noeviction` in redis.conf"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    let jobs: u64 = env.redis.conn().zcard(env.key("jobs")).unwrap();
    assert_eq!(jobs, 0, "jobs were written into an evicting Redis");

    // One job, from flags: the same.
    let out = env.cli(
        &["enqueue", "--repo", "demo", "--task", "x", "--issue", "1"],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("maxmemory-policy"));
    // Retry and resume put jobs back in line: the same.
    for args in [
        &["retry", "--state", "failed"][..],
        &["resume", "01JZZZZZZZZZZZZZZZZZZZZZZZ", "--answer", "yes"][..],
    ] {
        let out = env.cli(args, None);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("maxmemory-policy"));
    }

    // The worker refuses to start: one line naming the setting and the fix.
    let mut w = env.worker("w1", 1);
    let status = w.wait_exit(LONG);
    let log = std::fs::read_to_string(&w.log).unwrap();
    assert_eq!(status.code(), Some(2), "{log}");
    let line: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("maxmemory-policy"))
        .collect();
    assert_eq!(line.len(), 1, "{log}");
    assert!(
        line[0].contains("allkeys-lru")
            && line[0].contains("redis-cli CONFIG SET maxmemory-policy noeviction"),
        "{log}"
    );
    assert!(!log.contains("agentq-worker started"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_switched_to_evicting_under_a_running_worker_is_refused_at_its_reconnect() {
    require_docker();
    let env = TestEnv::new();
    env.remotes.create("core", "demo", &[]);
    let w = env.worker("w1", 1);
    w.wait_log("agentq-worker started", LONG);
    // Persistence off (the test Redis) is one warning, not a refusal.
    assert_eq!(w.log_count("persistence is off"), 1);
    set_policy(&env.redis, "allkeys-lru");
    // Cut every client connection: the worker reconnects, asks again, and
    // refuses to write from then on.
    let _: redis::Value = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .query(&mut env.redis.conn())
        .unwrap();
    w.wait_log(
        "refusing Redis: Redis maxmemory-policy is `allkeys-lru`",
        LONG,
    );
    assert_eq!(
        w.log_count("refusing Redis"),
        1,
        "logged once, not per command"
    );
    // Fixed: the worker goes on and runs a job.
    set_policy(&env.redis, "noeviction");
    w.wait_log("noeviction again", LONG);
    let id = env.enqueue(&["--repo", "demo", "--task", "after the fix", "--issue", "1"]);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Completed, "{}", env.worker_logs());
}

/// A redis-server whose `CONFIG` command is disabled (as managed Redis
/// services do), with `maxmemory-policy` `policy`; stopped on drop.
struct NoConfigRedis {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl NoConfigRedis {
    fn start(policy: &str) -> Self {
        Self::start_with(policy, &[])
    }

    /// [`NoConfigRedis::start`] with more arguments (`--rename-command INFO ""`).
    fn start_with(policy: &str, args: &[&str]) -> Self {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(args)
            .args(["--save", "", "--appendonly", "yes"])
            .args([
                "--maxmemory-policy",
                policy,
                "--rename-command",
                "CONFIG",
                "",
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("redis://127.0.0.1:{port}");
        let t0 = Instant::now();
        while redis::Client::open(url.as_str())
            .and_then(|c| c.get_connection())
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_err()
        {
            assert!(t0.elapsed() < LONG, "redis-server did not answer");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for NoConfigRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn doctor(env: &TestEnv, url: Option<&str>) -> (i32, serde_json::Value) {
    let mut vars = env.env();
    if let Some(u) = url {
        vars.insert("AGENTQ_REDIS_URL", u.to_string());
    }
    let out = cli_with_env(&vars, &["doctor", "--json"], None);
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor --json: {e}: {out:?}"));
    (out.status.code().unwrap(), json)
}

fn status_of(report: &serde_json::Value, name: &str) -> String {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .map(|c| {
            format!(
                "{} {}",
                c["status"].as_str().unwrap(),
                c["detail"].as_str().unwrap()
            )
        })
        .unwrap_or_else(|| panic!("no check {name}: {report}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_prints_every_check_and_fails_an_evicting_redis_even_without_config() {
    let env = TestEnv::new();
    let (code, report) = doctor(&env, None);
    assert_eq!(code, 0, "{report}");
    for name in [
        "config",
        "reachable",
        "role",
        "version",
        "maxmemory-policy",
        "persistence",
        "namespace",
    ] {
        status_of(&report, name);
    }
    assert!(status_of(&report, "config").contains(&env.config_path().display().to_string()));
    assert_eq!(status_of(&report, "maxmemory-policy"), "ok noeviction");
    assert_eq!(status_of(&report, "role"), "ok primary");
    assert!(
        status_of(&report, "persistence").starts_with("warn off"),
        "{report}"
    );
    assert!(
        status_of(&report, "namespace").contains(&env.ns),
        "{report}"
    );
    assert!(
        status_of(&report, "version").starts_with("ok Redis "),
        "{report}"
    );
    let text = env.cli_ok(&["doctor"]);
    assert!(
        text.lines()
            .any(|l| l.starts_with("ok") && l.contains("maxmemory-policy")),
        "{text}"
    );

    set_policy(&env.redis, "allkeys-lru");
    let (code, report) = doctor(&env, None);
    assert_eq!(code, 1, "{report}");
    assert!(
        status_of(&report, "maxmemory-policy").starts_with("fail"),
        "{report}"
    );

    // CONFIG disabled: the policy comes from INFO, still refused.
    let managed = NoConfigRedis::start("volatile-lru");
    let (code, report) = doctor(&env, Some(&managed.url()));
    assert_eq!(code, 1, "{report}");
    assert!(
        status_of(&report, "maxmemory-policy").contains("volatile-lru"),
        "{report}"
    );
    let mut vars = env.env();
    vars.insert("AGENTQ_REDIS_URL", managed.url());
    let out = cli_with_env(
        &vars,
        &["enqueue", "--repo", "demo", "--task", "x", "--issue", "1"],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    // A replica: its role fails (it refuses writes).
    let dir = tempfile::tempdir().unwrap();
    let replica = Proc::start(
        dir.path(),
        "replica",
        &["--replicaof", "127.0.0.1", &env.redis.port.to_string()],
        None,
    );
    let (code, report) = doctor(&env, Some(&format!("redis://127.0.0.1:{}", replica.port)));
    assert_eq!(code, 1, "{report}");
    assert!(
        status_of(&report, "role").starts_with("fail slave"),
        "{report}"
    );

    // Nothing down: reachable fails, exit 1.
    let (code, report) = doctor(&env, Some(&format!("redis://127.0.0.1:{}", free_port())));
    assert_eq!(code, 1, "{report}");
    assert!(
        status_of(&report, "reachable").starts_with("fail"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_with_a_clock_a_minute_ahead_cannot_break_a_pool_limit_of_one() {
    require_docker();
    let env = TestEnv::with_config("[limits]\ncodex = 1\n");
    env.remotes.create("core", "demo", &[]);
    let ids: Vec<String> = (1..=6)
        .map(|i| env.enqueue_for_issue(i, "@agentq-test sleep 3"))
        .collect();
    let _w1 = env.worker("w1", 2);
    // The second host's clock is a minute ahead (test builds only: the
    // `fault-injection` feature of agentq-domain).
    env.set_env("AGENTQ_TEST_CLOCK_OFFSET_MS", "60000");
    let _w2 = env.worker("w2", 2);
    wait_live_workers(&env, 2).await;
    for id in &ids {
        let rec = env.wait_final(id, LONG * 2).await;
        assert_eq!(rec.state, JobState::Completed, "{}", env.worker_logs());
    }
    // From the agents' own clock: never two at once.
    let spans: Vec<(f64, f64)> = ids.iter().flat_map(|id| env.agent_spans(id)).collect();
    assert_eq!(spans.len(), ids.len(), "each job ran once: {spans:?}");
    assert_eq!(max_overlap(&spans), 1, "two agents ran at once: {spans:?}");
    // Both hosts ran some (the skewed one took part).
    let hosts: HashSet<String> = {
        let store = env.store().await;
        let mut out = HashSet::new();
        for id in &ids {
            out.insert(store.get(id).await.unwrap().unwrap().worker);
        }
        out
    };
    eprintln!("run by {} worker(s)", hosts.len());
}

/// A redis-server (or sentinel) process on a free port, killed on drop.
struct Proc {
    child: Option<std::process::Child>,
    port: u16,
}

impl Proc {
    fn start(
        dir: &std::path::Path,
        name: &str,
        args: &[&str],
        sentinel_conf: Option<&str>,
    ) -> Self {
        let port = free_port();
        let mut cmd = std::process::Command::new("redis-server");
        if let Some(conf) = sentinel_conf {
            let path = dir.join(format!("{name}.conf"));
            std::fs::write(&path, format!("port {port}\nbind 127.0.0.1\n{conf}")).unwrap();
            cmd.arg(&path).arg("--sentinel");
        } else {
            let data = dir.join(name);
            std::fs::create_dir_all(&data).unwrap();
            cmd.args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(&data)
            .args(args);
        }
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        wait_listening(&format!("127.0.0.1:{port}"), LONG, name, &log);
        Self {
            child: Some(child),
            port,
        }
    }

    fn conn(&self) -> redis::Connection {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))
            .unwrap()
            .get_connection()
            .unwrap()
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sentinel_failover_to_an_evicting_replica_is_refused_on_the_new_primary() {
    let env = TestEnv::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut primary = Proc::start(d, "primary", &["--appendonly", "yes"], None);
    let pport = primary.port.to_string();
    let replica = Proc::start(
        d,
        "replica",
        &[
            "--appendonly",
            "yes",
            "--maxmemory-policy",
            "allkeys-lru",
            "--replicaof",
            "127.0.0.1",
            &pport,
        ],
        None,
    );
    let t0 = Instant::now();
    loop {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut replica.conn())
            .unwrap();
        if info.contains("master_link_status:up") {
            break;
        }
        assert!(t0.elapsed() < LONG, "the replica never synced: {info}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let sentinel = Proc::start(
        d,
        "sentinel",
        &[],
        Some(&format!(
            "sentinel monitor evict 127.0.0.1 {pport} 1\n\
             sentinel down-after-milliseconds evict 1000\n\
             sentinel failover-timeout evict 10000\n"
        )),
    );
    let url = format!("redis+sentinel://127.0.0.1:{}/evict", sentinel.port);
    let mut vars = env.env();
    vars.insert("AGENTQ_REDIS_URL", url.clone());
    vars.insert("AGENTQ_REDIS_MIN_REPLICAS", "0".into());
    let enqueue = ["enqueue", "--repo", "demo", "--task", "x", "--issue", "1"];
    let out = cli_with_env(&vars, &enqueue, None);
    assert!(out.status.success(), "{out:?}");

    // A long-lived connection that refuses evicting servers, as the worker's.
    let store = agentq_shared::store::JobStore::connect(&url, &env.ns, Duration::from_secs(5))
        .await
        .unwrap();
    store.conn().refuse_evicting();
    assert_eq!(store.state_counts().await.unwrap().len(), ALL_STATES.len());

    primary.kill9();
    // It follows the new primary, asks it, and refuses it.
    let t0 = Instant::now();
    let refused = loop {
        match store.state_counts().await {
            Err(e) if e.to_string().contains("maxmemory-policy is `allkeys-lru`") => break e,
            _ => {}
        }
        assert!(
            t0.elapsed() < LONG,
            "never refused the evicting new primary"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!("refused after the failover: {refused}");
    // A new CLI resolves the new primary and refuses it.
    let out = cli_with_env(&vars, &enqueue, None);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("maxmemory-policy"));
}

#[tokio::test(flavor = "multi_thread")]
async fn two_operators_resuming_the_same_finished_job_from_the_same_read_run_it_once() {
    let env = TestEnv::new();
    let id = env.enqueue(&["--repo", "demo", "--task", "x", "--issue", "1"]);
    env.cli_ok(&["cancel", &id]);
    let store = env.store().await;
    // Both read the record while it was cancelled (the read `agentq resume`
    // does before its script), then both resume it.
    let seen = store.get(&id).await.unwrap().unwrap();
    assert_eq!(seen.state, JobState::Cancelled);
    let first = store
        .rerun(&id, seen.seq, &[("answer", "first".into())], false)
        .await
        .unwrap();
    let second = store
        .rerun(&id, seen.seq, &[("answer", "second".into())], false)
        .await
        .unwrap();
    assert!(first, "the first resume was refused");
    assert!(
        !second,
        "the second resume, from a stale read, went through too"
    );
    let rec = store.get(&id).await.unwrap().unwrap();
    assert_eq!(
        (rec.state, rec.answer.as_str()),
        (JobState::Queued, "first")
    );
    let history = store.history(&id).await.unwrap();
    let requeued = history.iter().filter(|h| h.state == "queued").count();
    assert_eq!(requeued, 1, "resumed once: {history:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_on_a_redis_that_answers_neither_config_nor_info_starts_with_one_warning() {
    require_docker();
    let env = TestEnv::new();
    // The policy is noeviction, but the worker cannot know it.
    let managed = NoConfigRedis::start_with("noeviction", &["--rename-command", "INFO", ""]);
    env.set_env("AGENTQ_REDIS_URL", managed.url());
    let w = env.worker("w1", 1);
    w.wait_log("agentq-worker started", LONG);
    assert_eq!(
        w.log_count("cannot read Redis's maxmemory-policy"),
        1,
        "{}",
        std::fs::read_to_string(&w.log).unwrap()
    );
    assert_eq!(w.log_count("refusing Redis"), 0);
}
