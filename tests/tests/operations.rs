//! Issue 6's acceptance: list, inspect, logs, retry, cancel, purge, events,
//! workers, metrics and graceful shutdown, from CLI processes that share nothing
//! with the worker but Redis.

use std::{
    collections::HashMap,
    path::Path,
    time::{Duration, Instant},
};

use agentq_shared::status::{JobState, WaitReason};
use agentq_tests::*;

const LONG: Duration = Duration::from_secs(120);

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn list_inspect_logs_events_and_workers_show_the_right_jobs() {
    require_docker();
    let env = TestEnv::new();
    env.remotes.create("core", "demo", &[]);
    env.remotes.create("core", "other", &[]);
    let _w = env.worker("w1", 3);
    let done = env.enqueue(&[
        "--repo",
        "demo",
        "--task",
        "@agentq-test print hello-from-agent",
        "--issue",
        "1",
    ]);
    let failed = env.enqueue(&[
        "--repo",
        "demo",
        "--agent",
        "claude",
        "--task",
        "@agentq-test exit 5",
        "--issue",
        "2",
    ]);
    let blocked = env.enqueue(&[
        "--repo",
        "other",
        "--task",
        "@agentq-test block \"Which way?\"",
        "--issue",
        "3",
    ]);
    for id in [&done, &failed, &blocked] {
        env.wait_final(id, LONG).await;
    }

    let all = json_lines(&env.cli_ok(&["list", "--json"]));
    let ids: Vec<&str> = all.iter().map(|j| j["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [blocked.as_str(), failed.as_str(), done.as_str()],
        "newest first"
    );
    let f = json_lines(&env.cli_ok(&["list", "--state", "failed", "--json"]));
    assert_eq!(f.len(), 1);
    assert_eq!(f[0]["id"], failed.as_str());
    assert_eq!(
        json_lines(&env.cli_ok(&["list", "--agent", "claude", "--json"])).len(),
        1
    );
    assert_eq!(
        json_lines(&env.cli_ok(&["list", "--repo", "core/other", "--json"])).len(),
        1
    );
    assert_eq!(
        json_lines(&env.cli_ok(&["list", "--limit", "2", "--json"])).len(),
        2
    );
    let table = env.cli_ok(&["list"]);
    assert!(
        table.contains(&failed)
            && table.contains("Agent exited with code 5")
            && table.contains("Which way?"),
        "{table}"
    );

    let ins: serde_json::Value =
        serde_json::from_str(&env.cli_ok(&["inspect", &failed, "--json"])).unwrap();
    assert_eq!(ins["record"]["state"], "failed");
    assert_eq!(ins["record"]["exit_code"], 5);
    assert_eq!(ins["record"]["input"]["agent"], "claude");
    assert!(ins["record"]["workspace_dir"]
        .as_str()
        .unwrap()
        .ends_with("core/demo/task-2"));
    let states: Vec<&str> = ins["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["preparing", "running", "failed"]);
    assert!(ins["history"][0]["host"]
        .as_str()
        .is_some_and(|h| !h.is_empty()));
    assert!(
        ins["log_tail"]
            .as_str()
            .unwrap()
            .contains("argv[4]=--dangerously-skip-permissions"),
        "{}",
        ins["log_tail"]
    );
    let text = env.cli_ok(&["inspect", &blocked]);
    assert!(
        text.contains("Which way?") && text.contains("history"),
        "{text}"
    );

    let log = env.cli_ok(&["logs", &done]);
    assert!(log.contains("hello-from-agent"), "{log}");
    let followed = env.cli_ok(&["logs", &done, "--follow"]);
    assert_eq!(
        log, followed,
        "--follow of a finished job prints the same and ends"
    );

    let events = json_lines(&env.cli_ok(&["events", "--json"]));
    // Enqueueing is one event per batch, naming its first and last job.
    assert!(
        events.iter().any(|e| e["fields"]["event"] == "enqueued"
            && e["fields"]["first"].as_str() <= Some(failed.as_str())
            && e["fields"]["last"].as_str() >= Some(failed.as_str())),
        "{events:?}"
    );
    let for_failed: Vec<&str> = events
        .iter()
        .filter(|e| e["fields"]["job"] == failed.as_str())
        .map(|e| e["fields"]["state"].as_str().unwrap())
        .collect();
    assert_eq!(for_failed, ["preparing", "running", "failed"]);
    let jsonl = std::fs::read_to_string(env.workspace_root().join("events.jsonl")).unwrap();
    assert!(
        jsonl
            .lines()
            .any(|l| l.contains(&failed) && l.contains("\"failed\"")),
        "{jsonl}"
    );

    let workers = json_lines(&env.cli_ok(&["workers", "--json"]));
    assert_eq!(workers.len(), 1, "{workers:?}");
    assert_eq!(workers[0]["concurrency"], 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_reruns_failed_jobs_as_new_attempts() {
    require_docker();
    let env = TestEnv::with_config("[backoff]\nfailures = 100\n");
    env.remotes.create("core", "demo", &[]);
    let _w = env.worker("w1", 5);
    let mut ids = Vec::new();
    for i in 1..=5 {
        ids.push(env.enqueue(&[
            "--repo",
            "demo",
            "--task",
            "@agentq-test exit 1",
            "--issue",
            &i.to_string(),
        ]));
    }
    let ok = env.enqueue(&["--repo", "demo", "--task", "fine", "--issue", "9"]);
    for id in ids.iter().chain([&ok]) {
        env.wait_final(id, LONG).await;
    }
    let out: serde_json::Value =
        serde_json::from_str(&env.cli_ok(&["retry", "--state", "failed", "--json"])).unwrap();
    assert_eq!(out["retried"].as_array().unwrap().len(), 5, "{out}");
    for id in &ids {
        let rec = env
            .wait_for(id, LONG, |r| r.attempt == 2 && r.state.is_final())
            .await;
        assert_eq!(rec.state, JobState::Failed);
        assert_eq!(rec.attempt, 2);
        assert_eq!(rec.runs, 2);
    }
    assert_eq!(
        env.store().await.get(&ok).await.unwrap().unwrap().attempt,
        1,
        "completed job untouched"
    );
    // By id, with a count; a running or unknown job is refused.
    let text = env.cli_ok(&["retry", &ids[0]]);
    assert!(text.ends_with("1 re-enqueued"), "{text}");
    let out = env.cli(&["retry", "01NOSUCHJOB"], None);
    assert_eq!(out.status.code(), Some(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_stops_a_running_agent_and_keeps_a_queued_job_from_running() {
    require_docker();
    let env = TestEnv::new();
    env.remotes.create("core", "demo", &[]);
    // Queued, no worker yet: cancelled at once, never starts.
    let queued = env.enqueue(&["--repo", "demo", "--task", "never", "--issue", "1"]);
    let text = env.cli_ok(&["cancel", &queued]);
    assert!(text.contains("cancelled"), "{text}");

    let _w = env.worker("w1", 2);
    let running = env.enqueue(&[
        "--repo",
        "demo",
        "--task",
        "@agentq-test sleep 60",
        "--issue",
        "2",
    ]);
    env.wait_for(&running, LONG, |r| {
        r.state == JobState::Running && !r.container.is_empty()
    })
    .await;
    assert_eq!(containers_with_label("agentq.job", &running).len(), 1);
    env.cli_ok(&["cancel", &running]);
    let rec = env.wait_final(&running, LONG).await;
    assert_eq!(rec.state, JobState::Cancelled);
    // The agent itself says it was stopped (SIGTERM, exit 143) long before its
    // 60 s were up; its container goes.
    let runs = env.agent_runs(&running);
    assert!(
        runs.contains("exit=143"),
        "the agent was not stopped: {runs}"
    );
    let (start, end) = env.agent_intervals(&running)[0];
    assert!(end - start < 50.0, "the agent ran {}s", end - start);
    let gone = Instant::now();
    while !containers_with_label("agentq.job", &running).is_empty() {
        assert!(gone.elapsed() < LONG, "container still there after cancel");
        std::thread::sleep(Duration::from_millis(100));
    }

    // The job cancelled while queued was never run, though the worker has run a
    // job enqueued after it.
    let q = env.store().await.get(&queued).await.unwrap().unwrap();
    assert_eq!(
        (q.state, q.attempt, q.runs),
        (JobState::Cancelled, 0, 0),
        "{q:#?}"
    );
    assert!(env.agent_starts(&queued).is_empty());
    assert!(q.workspace_dir.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn purge_removes_old_finished_records() {
    require_docker();
    let env = TestEnv::new();
    env.remotes.create("core", "demo", &[]);
    let _w = env.worker("w1", 2);
    let a = env.enqueue(&["--repo", "demo", "--task", "a", "--issue", "1"]);
    let b = env.enqueue(&[
        "--repo",
        "demo",
        "--task",
        "@agentq-test exit 1",
        "--issue",
        "2",
    ]);
    env.wait_final(&a, LONG).await;
    env.wait_final(&b, LONG).await;
    assert_eq!(
        env.cli_ok(&["purge", "--state", "completed", "--older-than", "1h"]),
        "purged 0 completed job(s)"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        env.cli_ok(&["purge", "--state", "completed", "--older-than", "1s"]),
        "purged 1 completed job(s)"
    );
    assert!(env.store().await.get(&a).await.unwrap().is_none());
    assert!(
        env.store().await.get(&b).await.unwrap().is_some(),
        "other states untouched"
    );
    let out = env.cli(&["purge", "--state", "running", "--older-than", "1s"], None);
    assert_eq!(out.status.code(), Some(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_hands_a_long_job_to_another_worker() {
    require_docker();
    let env = TestEnv::new();
    env.remotes.create("core", "demo", &[]);
    let id = env.enqueue(&[
        "--repo",
        "demo",
        "--task",
        "@agentq-test sleep 8",
        "--issue",
        "1",
    ]);
    let mut w1 = env.worker_with_args("w1", &["--concurrency", "1", "--shutdown-timeout", "1"]);
    let first = env
        .wait_for(&id, LONG, |r| {
            r.state == JobState::Running && !r.container.is_empty()
        })
        .await;
    let status = w1.signal_and_wait("TERM", Duration::from_secs(30));
    assert!(status.success(), "worker exited with {status}");
    assert!(
        containers_with_label("agentq.job", &id).is_empty(),
        "the agent container was left behind"
    );
    let rec = env.store().await.get(&id).await.unwrap().unwrap();
    // Handed back spending no attempt: its try given back.
    assert_eq!(
        (rec.state, rec.reason, rec.tries),
        (JobState::Queued, Some(WaitReason::Shutdown), 0),
        "{rec:#?}"
    );

    let _w2 = env.worker("w2", 1);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    assert_ne!(rec.worker, first.worker);
    assert_eq!((rec.attempt, rec.tries), (2, 1), "{rec:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_drains_a_short_job_leaves_queued_ones_and_a_second_signal_stops_at_once() {
    require_docker();
    let env = TestEnv::new();
    env.remotes.create("core", "demo", &[]);
    let short = env.enqueue(&[
        "--repo",
        "demo",
        "--task",
        "@agentq-test hold",
        "--issue",
        "1",
    ]);
    let long = env.enqueue(&[
        "--repo",
        "demo",
        "--task",
        "@agentq-test sleep 600",
        "--issue",
        "2",
    ]);
    // One at a time: the short job runs first (FIFO), the long one waits. The
    // short job's agent holds until the worker has the signal, so it cannot end
    // before it (and let the worker take the long job).
    let mut w1 = env.worker_with_args("w1", &["--concurrency", "1", "--shutdown-timeout", "600"]);
    assert_eq!(env.wait_holding(1).await, vec![short.clone()]);
    // SIGINT drains: the running job finishes within the grace period, the
    // worker exits by itself, and the waiting job is left queued, untouched.
    w1.signal("INT");
    w1.wait_log("shutdown requested", LONG);
    env.release_holds();
    let status = w1.wait_exit(LONG);
    assert!(status.success(), "worker exited with {status}");
    let store = env.store().await;
    let done = store.get(&short).await.unwrap().unwrap();
    assert_eq!(
        (done.state, done.attempt),
        (JobState::Completed, 1),
        "{done:#?}"
    );
    assert_eq!(
        env.agent_intervals(&short).len(),
        1,
        "the agent ran to its end"
    );
    let waiting = store.get(&long).await.unwrap().unwrap();
    assert_eq!(
        (waiting.state, waiting.attempt, waiting.runs),
        (JobState::Queued, 0, 0),
        "{waiting:#?}"
    );

    // A second SIGTERM does not wait out the 600 s grace period: the agent is
    // stopped and its job handed back, spending no attempt.
    let mut w2 = env.worker_with_args("w2", &["--concurrency", "1", "--shutdown-timeout", "600"]);
    env.wait_for(&long, LONG, |r| {
        r.state == JobState::Running && !r.container.is_empty()
    })
    .await;
    w2.signal("TERM");
    w2.wait_log("shutdown requested", LONG);
    let status = w2.signal_and_wait("TERM", LONG);
    assert!(status.success(), "worker exited with {status}");
    let back = store.get(&long).await.unwrap().unwrap();
    assert_eq!(back.state, JobState::Queued, "{back:#?}");
    assert_eq!(back.tries, 0, "the stopped run spent no attempt: {back:#?}");
    assert!(
        containers_with_label("agentq.job", &long).is_empty(),
        "the agent container was left behind"
    );
}

/// Minimal Prometheus/OpenMetrics text check: every sample line is
/// `name{labels} value`, with a numeric value; returns samples by name+labels.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample line: {line}"));
        let v: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in: {line}"));
        let name_end = key.find('{').unwrap_or(key.len());
        let name = &key[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in: {line}"
        );
        if name_end < key.len() {
            assert!(key.ends_with('}'), "bad labels in: {line}");
        }
        out.insert(key.to_string(), v);
    }
    assert!(
        text.trim_end().ends_with("# EOF"),
        "OpenMetrics text ends with # EOF"
    );
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_parse_and_count_the_jobs_run() {
    require_docker();
    let env = TestEnv::with_config("[limits]\nclaude = 1\n");
    env.remotes.create("core", "demo", &[]);
    let port = free_port();
    let _w = env.worker_with_args(
        "w1",
        &[
            "--concurrency",
            "3",
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
        ],
    );
    let ids = [
        env.enqueue(&["--repo", "demo", "--task", "a", "--issue", "1"]),
        env.enqueue(&["--repo", "demo", "--task", "b", "--issue", "2"]),
        env.enqueue(&[
            "--repo",
            "demo",
            "--task",
            "@agentq-test exit 2",
            "--issue",
            "3",
        ]),
        env.enqueue(&[
            "--repo",
            "demo",
            "--agent",
            "gemini",
            "--task",
            "@agentq-test block \"?\"",
            "--issue",
            "4",
        ]),
    ];
    for id in &ids {
        env.wait_final(id, LONG).await;
    }
    let client = reqwest::Client::new();
    let health = client
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let text = client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let m = parse_metrics(&text);
    let get = |k: &str| {
        m.get(k)
            .copied()
            .unwrap_or_else(|| panic!("{k} missing in:\n{text}"))
    };
    assert_eq!(
        get(r#"agentq_jobs_total{agent="codex",state="completed"}"#),
        2.0
    );
    assert_eq!(
        get(r#"agentq_jobs_total{agent="codex",state="failed"}"#),
        1.0
    );
    assert_eq!(
        get(r#"agentq_jobs_total{agent="gemini",state="blocked"}"#),
        1.0
    );
    assert_eq!(
        get(r#"agentq_job_duration_seconds_count{pool="codex"}"#),
        3.0
    );
    assert_eq!(get("agentq_queue_depth"), 0.0);
    assert_eq!(get(r#"agentq_running{pool="codex"}"#), 0.0);
    assert_eq!(get(r#"agentq_waiting{reason="slot"}"#), 0.0);
    assert!(Path::new(&env.workspace_root())
        .join("events.jsonl")
        .is_file());

    // The gauges follow the pool: one claude job runs, the next waits for its
    // slot (claude = 1).
    let slow = |issue: &str| {
        env.enqueue(&[
            "--repo",
            "demo",
            "--agent",
            "claude",
            "--task",
            "@agentq-test sleep 120",
            "--issue",
            issue,
        ])
    };
    let (running, queued) = (slow("5"), slow("6"));
    env.wait_for(&running, LONG, |r| r.state == JobState::Running)
        .await;
    let scrape = || async {
        let text = client
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        parse_metrics(&text)
    };
    let m = scrape().await;
    assert_eq!(
        m.get(r#"agentq_running{pool="claude"}"#),
        Some(&1.0),
        "{m:?}"
    );
    assert_eq!(m.get("agentq_queue_depth"), Some(&1.0), "{m:?}");
    let out = env.cli(&["cancel", &running, &queued], None);
    assert!(out.status.success(), "{out:?}");
    env.wait_final(&running, LONG).await;
    let m = scrape().await;
    assert_eq!(
        m.get(r#"agentq_running{pool="claude"}"#),
        Some(&0.0),
        "{m:?}"
    );
    assert_eq!(m.get("agentq_queue_depth"), Some(&0.0), "{m:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_survives_a_redis_restart() {
    require_docker();
    let mut env = TestEnv::new();
    env.remotes.create("core", "demo", &[]);
    let _w = env.worker("w1", 2);
    let before = env.enqueue(&["--repo", "demo", "--task", "before", "--issue", "1"]);
    env.wait_final(&before, LONG).await;
    env.restart_redis();
    // Redis came back empty (no persistence in tests): new work must still flow,
    // enqueued at once, while the worker may still be reconnecting.
    let after = env.enqueue(&["--repo", "demo", "--task", "after", "--issue", "2"]);
    let rec = env.wait_final(&after, LONG).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_follow_streams_a_running_job_until_it_ends() {
    require_docker();
    let env = TestEnv::new();
    env.remotes.create("core", "demo", &[]);
    let _w = env.worker("w1", 1);
    let id = env.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        "1",
        "--task",
        "@agentq-test hold\n@agentq-test print done-after-hold",
    ]);
    env.wait_holding(1).await;
    // Started while the agent holds; its first line comes while the agent
    // still holds (so it streamed a live job), and it returns only once the
    // job is final.
    let mut follow = std::process::Command::new(bin("agentq"))
        .args(["logs", &id, "--follow"])
        .envs(env.env())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let out = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|l: &String| l.contains("agentq-test-agent: codex"))
    {
        seen.push(rx.recv_timeout(LONG).expect("no output while the job runs"));
    }
    let rec = env.store().await.get(&id).await.unwrap().unwrap();
    assert_eq!(rec.state, JobState::Running, "still running: {rec:#?}");
    assert!(env.agent_runs(&id).is_empty(), "the agent has not ended");
    env.release_holds();
    let rest: Vec<String> = rx.iter().collect();
    assert!(follow.wait().unwrap().success());
    assert!(
        rest.iter().any(|l| l.contains("done-after-hold")),
        "{rest:?}"
    );
    let rec = env.store().await.get(&id).await.unwrap().unwrap();
    assert!(rec.state.is_final(), "{rec:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn finished_deliveries_are_vacuumed_from_apalis() {
    require_docker();
    let env = TestEnv::with_config("vacuum_after_secs = 1\n");
    env.remotes.create("core", "demo", &[]);
    let ids = env.enqueue_ndjson(
        "{\"repo\":\"demo\",\"task\":\"a\",\"issue\":1}\n{\"repo\":\"demo\",\"task\":\"b\",\"issue\":2}\n",
    );
    let mut conn = env.redis.conn();
    let data = env.key("q:data");
    let _w = env.worker("w1", 2);
    // Each job was delivered (its task id is written with the delivery, in the
    // same Lua call that puts the task data in apalis's hash).
    let mut tasks = Vec::new();
    for id in &ids {
        let rec = env.wait_final(id, LONG).await;
        assert!(!rec.delivery_task_id.is_empty(), "{rec:#?}");
        tasks.push(rec.delivery_task_id);
    }
    let started = Instant::now();
    loop {
        let left: Vec<&String> = tasks
            .iter()
            .filter(|t| redis::Commands::hexists(&mut conn, &data, t.as_str()).unwrap())
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "finished deliveries {left:?} still in {data}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // agentq's own records stay.
    for id in &ids {
        assert!(env.store().await.get(id).await.unwrap().is_some());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_workers_own_flags_win_over_env_and_config_and_json_logs_are_json() {
    require_docker();
    let env = TestEnv::new();
    env.remotes.create("core", "demo", &[]);
    // The environment and the default config point nowhere; the flags are right.
    let root = env.dir.path().join("flag-root");
    let log = env.dir.path().join("logs").join("flags.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut child = std::process::Command::new(bin("agentq-worker"))
        .args([
            "--concurrency",
            "1",
            "--config",
            &env.config_path().to_string_lossy(),
            "--redis-url",
            &env.redis.url(),
            "--workspace-root",
            &root.to_string_lossy(),
            "--git-base",
            &env.remotes.base(),
            "--log-format",
            "json",
        ])
        .env("AGENTQ_NAMESPACE", &env.ns)
        .env("AGENTQ_CONFIG", "/nonexistent/agentq.toml")
        .env("AGENTQ_REDIS_URL", "redis://127.0.0.1:1")
        .env("AGENTQ_WORKSPACE_ROOT", "/nonexistent/ws")
        .env("AGENTQ_GIT_BASE", "/nonexistent/git")
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let id = env.enqueue(&["--repo", "demo", "--task", "flags", "--issue", "1"]);
    let rec = env.wait_final(&id, LONG).await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    assert!(
        rec.workspace_dir
            .starts_with(&*root.canonicalize().unwrap().to_string_lossy()),
        "{} is not under {}",
        rec.workspace_dir,
        root.display()
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "the worker logged nothing");
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
    }
    assert!(text.contains("agentq-worker started"), "{text}");
}

/// A container labelled as an agent of namespace `ns`, for a job no run holds
/// and a worker that is not live: what a worker killed mid-run leaves behind.
/// Removed on drop if still there.
struct Stray(String);

impl Stray {
    fn start(ns: &str, name: &str) -> Self {
        let out = std::process::Command::new("docker")
            .args(["run", "-d", "--network", "none"])
            .args(["--label", &format!("agentq.namespace={ns}")])
            .args(["--label", &format!("agentq.job=01STRAY{name}")])
            .args(["--label", &format!("agentq.worker=dead-{name}")])
            .args([
                "--label",
                "agentq.attempt=1",
                "--label",
                "agentq.stage=agent",
            ])
            .args([TEST_IMAGE, "sleep", "3600"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "docker run: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn exists(&self) -> bool {
        std::process::Command::new("docker")
            .args(["container", "inspect", &self.0])
            .output()
            .unwrap()
            .status
            .success()
    }

    /// Waits up to `timeout` until the container is gone.
    async fn wait_gone(&self, timeout: Duration, env: &TestEnv) {
        let deadline = Instant::now() + timeout;
        while self.exists() {
            assert!(
                Instant::now() < deadline,
                "stray container {} still there after {timeout:?}\n{}",
                self.0,
                env.worker_logs()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Stray {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", &self.0])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stray_agent_containers_are_reaped_at_start_and_every_30_s() {
    require_docker();
    let env = TestEnv::new();
    // Another installation's container on the same engine: never touched.
    let foreign = Stray::start(&format!("{}-other", env.ns), "foreign");
    let before = Stray::start(&env.ns, "before");
    let w = env.worker("w1", 1);
    // The start-up reap runs before the worker says it started.
    w.wait_log("agentq-worker started", LONG);
    assert!(
        !before.exists(),
        "the stray left before start-up is still there"
    );
    // Left after start-up (as by a worker killed on this engine just now):
    // only the periodic reap can remove it.
    let after = Stray::start(&env.ns, "after");
    // Docker's state says it: gone at start, gone later (no log line needed).
    after.wait_gone(LONG, &env).await;
    assert!(
        foreign.exists(),
        "another namespace's container was removed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pruned_agents_network_is_made_again_by_the_next_job() {
    require_docker();
    let env = TestEnv::new();
    env.remotes.create("core", "demo", &[]);
    // A network of this world's own, so removing it touches no other test.
    let net = format!("agentq-test-{}", env.ns);
    let text = std::fs::read_to_string(env.config_path())
        .unwrap()
        .replace("[docker]\n", &format!("[docker]\nnetwork = \"{net}\"\n"));
    std::fs::write(env.config_path(), text).unwrap();
    let network_ids = || {
        let out = std::process::Command::new("docker")
            .args(["network", "ls", "-q", "--filter"])
            .arg(format!("name=^{net}$"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let w = env.worker("w1", 1);
    w.wait_log("agentq-worker started", LONG);
    assert_eq!(network_ids().len(), 1, "the worker made its network");
    // What `docker network prune` does while no agent runs.
    let rm = std::process::Command::new("docker")
        .args(["network", "rm", &net])
        .output()
        .unwrap();
    assert!(
        rm.status.success(),
        "{}",
        String::from_utf8_lossy(&rm.stderr)
    );
    assert!(network_ids().is_empty());
    let id = env.enqueue(&["--repo", "demo", "--task", "after a prune", "--issue", "1"]);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    assert_eq!(rec.attempt, 1, "{rec:#?}");
    assert_eq!(network_ids().len(), 1, "made again");
    drop(w);
    let _ = std::process::Command::new("docker")
        .args(["network", "rm", &net])
        .output();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workspace_root_starting_with_a_tilde_is_under_the_workers_home() {
    require_docker();
    // As the README's example config has it; no flag or environment override.
    let env = TestEnv::with_config("workspace_root = \"~/ws\"\n");
    env.remotes.create("core", "demo", &[]);
    let home = env.dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    env.set_env("HOME", home.to_string_lossy());
    env.unset_env("AGENTQ_WORKSPACE_ROOT");
    let _w = env.worker("w1", 1);
    let id = env.enqueue(&["--repo", "demo", "--task", "tilde", "--issue", "1"]);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    let root = home.join("ws").canonicalize().unwrap();
    assert!(
        Path::new(&rec.workspace_dir).starts_with(&root),
        "{} is not under {}",
        rec.workspace_dir,
        root.display()
    );
    assert!(Path::new(&rec.workspace_dir).join("status.json").is_file());
    assert!(
        !env.dir.path().join("~").exists() && !Path::new("~").exists(),
        "a directory named ~ was made"
    );
}

/// `stop_grace_secs`: cancelling a running job sends its agent SIGTERM, and
/// SIGKILL only once the grace period has passed. An agent that obeys TERM
/// ends by itself (its own run log says so, exit 143); one that ignores TERM
/// is killed no sooner than the grace period after the cancel.
#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_agent_gets_sigterm_then_sigkill_after_stop_grace_secs() {
    require_docker();
    const GRACE: f64 = 4.0;
    let env = TestEnv::new();
    let cfg = std::fs::read_to_string(env.config_path()).unwrap();
    assert!(cfg.contains("stop_grace_secs = 2\n"), "{cfg}");
    let cfg = cfg.replace("stop_grace_secs = 2\n", "stop_grace_secs = 4\n");
    std::fs::write(env.config_path(), cfg).unwrap();
    env.remotes.create("core", "demo", &[]);
    let _w = env.worker("w1", 2);
    let deaths = env.watch_agent_deaths();
    let polite = env.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        "1",
        "--task",
        "@agentq-test hold",
    ]);
    let stubborn = env.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        "2",
        "--task",
        "@agentq-test ignore-term @agentq-test hold",
    ]);
    env.wait_holding(2).await;
    let cancelled_at = uptime();
    env.cli_ok(&["cancel", &polite, &stubborn]);
    let died = deaths
        .wait_first(&[polite.clone(), stubborn.clone()], LONG)
        .await;
    for id in [&polite, &stubborn] {
        let rec = env.wait_final(id, LONG).await;
        assert_eq!(rec.state, JobState::Cancelled, "{rec:#?}");
    }
    assert!(
        env.agent_runs(&polite).contains("exit=143"),
        "the TERM-obeying agent did not end by itself: {:?}",
        env.agent_runs(&polite)
    );
    assert_eq!(
        env.agent_runs(&stubborn),
        "",
        "the TERM-ignoring agent ended by itself"
    );
    let waited = died[&stubborn] - cancelled_at;
    assert!(
        waited >= GRACE - 0.5,
        "SIGKILL came {waited:.1}s after the cancel, before the {GRACE}s grace period"
    );
}
