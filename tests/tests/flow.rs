//! Issue 33's flows end to end: `--after` chains run by a real worker
//! (Docker, git, the fake agent), a batch of 20 with its one `batch_done`
//! event and webhook, `--unique` through the CLI, and what `--after` refuses.

use std::time::Duration;

use agentq_shared::status::JobState;
use agentq_tests::*;
use redis::Commands;

const LONG: Duration = Duration::from_secs(240);

fn job(env: &TestEnv, issue: u32, task: &str, more: &[&str]) -> String {
    let issue = issue.to_string();
    let mut args = vec!["--repo", "demo", "--issue", &issue, "--task", task];
    args.extend_from_slice(more);
    env.enqueue(&args)
}

/// The events stream's entries whose `event` is `name`.
fn stream_events(env: &TestEnv, name: &str) -> usize {
    let mut conn = env.redis.conn();
    let entries: redis::streams::StreamRangeReply = conn.xrange_all(env.key("events")).unwrap();
    entries
        .ids
        .iter()
        .filter(|e| e.get::<String>("event").as_deref() == Some(name))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chain_with_a_failing_middle_job_cancels_the_last_naming_the_parent() {
    require_docker();
    let env = TestEnv::new();
    env.remotes.create("core", "demo", &[]);
    let a = job(&env, 1, "First @agentq-test commit", &[]);
    let b = job(&env, 2, "Break @agentq-test exit 3", &["--after", &a]);
    let c = job(&env, 3, "Last @agentq-test commit", &["--after", &b]);
    let status = env.cli_ok(&["status", &b]);
    assert!(status.contains(&format!("after:       {a}")), "{status}");
    assert!(status.contains(&format!("dependants:  {c}")), "{status}");
    let _w = env.worker("w1", 3);
    assert_eq!(env.wait_final(&a, LONG).await.state, JobState::Completed);
    assert_eq!(env.wait_final(&b, LONG).await.state, JobState::Failed);
    let rc = env.wait_final(&c, LONG).await;
    assert_eq!(
        (rc.state, rc.attempt, rc.error.as_str()),
        (
            JobState::Cancelled,
            0,
            format!("parent {b} failed").as_str()
        ),
        "{rc:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chain_that_completes_runs_in_order() {
    require_docker();
    let env = TestEnv::new();
    env.remotes.create("core", "demo", &[]);
    let a = job(&env, 1, "One @agentq-test commit", &[]);
    let b = job(&env, 2, "Two @agentq-test commit", &["--after", &a]);
    let c = job(&env, 3, "Three @agentq-test commit", &["--after", &b]);
    let _w = env.worker("w1", 3);
    let ra = env.wait_final(&a, LONG).await;
    let rb = env.wait_final(&b, LONG).await;
    let rc = env.wait_final(&c, LONG).await;
    for r in [&ra, &rb, &rc] {
        assert_eq!(r.state, JobState::Completed, "{r:#?}");
    }
    // Each started only after its parent had finished (the records' times,
    // one format, compared as text).
    assert!(rb.started_at > ra.finished_at, "{rb:#?}\n{ra:#?}");
    assert!(rc.started_at > rb.finished_at, "{rc:#?}\n{rb:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_of_20_reports_20_of_20_and_fires_its_completion_once() {
    require_docker();
    let hook = HookReceiver::start(HookMode::Ok).await;
    let env = TestEnv::with_config("notify_backoff_ms = 200\n");
    env.append_config(&format!(
        "[[notify]]\nurl = \"{}\"\nevents = [\"batch_done\"]\nallow_private = true\n",
        hook.url
    ));
    env.remotes.create("core", "demo", &[]);
    let lines: String = (1..=20)
        .map(|i| {
            serde_json::json!({"repo": "demo", "task": "t", "issue": i, "dry_run": true})
                .to_string()
                + "\n"
        })
        .collect();
    let out = env.cli(&["enqueue", "-", "--json", "--batch", "b20"], Some(&lines));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json_ids(&String::from_utf8_lossy(&out.stdout)).len(), 20);
    let _w = env.worker("w1", 4);
    let out = env.cli(&["batch", "status", "b20", "--wait", "--json"], None);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["total"].as_u64(), v["done"].as_u64()),
        (Some(20), Some(20)),
        "{v}"
    );
    assert_eq!(v["states"]["completed"], 20, "{v}");
    let text = env.cli_ok(&["batch", "status", "b20"]);
    assert!(text.contains("batch b20: 20/20 done"), "{text}");
    let got = env
        .poll_until("the batch's webhook", LONG, async || {
            let t = hook.taken();
            let n = t.len();
            (n >= 1).then_some(t).ok_or(n)
        })
        .await;
    // Sealed again (an enqueue of it with no line, as a retried enqueue
    // might): no second event.
    let out = env.cli(&["enqueue", "-", "--batch", "b20"], Some(""));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Nothing more can come: the outbox is empty and sent exactly one.
    env.poll_until("the outbox settled", LONG, async || {
        let mut conn = env.redis.conn();
        let left: u64 = conn.hlen(env.key("notify:items")).unwrap();
        (left == 0).then_some(()).ok_or(left)
    })
    .await;
    let sent: u64 = env.redis.conn().get(env.key("notify:sent_total")).unwrap();
    assert_eq!(sent, 1);
    assert_eq!(got.len(), 1, "{got:#?}");
    let body = got[0].json();
    assert_eq!(body["event"], "batch_done");
    assert_eq!(body["batch"], "b20");
    assert_eq!(
        (body["jobs"].as_u64(), body["completed"].as_u64()),
        (Some(20), Some(20))
    );
    assert_eq!(stream_events(&env, "batch_done"), 1);
}

#[test]
fn a_unique_job_is_refused_with_the_existing_id_while_active_and_accepted_after() {
    let env = TestEnv::new();
    let args = [
        "enqueue", "--repo", "demo", "--issue", "7", "--task", "nightly", "--unique", "--json",
    ];
    let first = env.cli_ok(&args);
    let first: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(first["status"], "queued");
    let id = first["id"].as_str().unwrap().to_string();
    let again: serde_json::Value = serde_json::from_str(&env.cli_ok(&args)).unwrap();
    assert_eq!(
        (again["status"].as_str(), again["id"].as_str()),
        (Some("exists"), Some(id.as_str()))
    );
    // A different task is another key.
    let mut other = args.to_vec();
    other[6] = "weekly";
    let o: serde_json::Value = serde_json::from_str(&env.cli_ok(&other)).unwrap();
    assert_eq!(o["status"], "queued");
    // Once it ended, a new one goes in; with --key, the key is the user's.
    env.cli_ok(&["cancel", &id]);
    let third: serde_json::Value = serde_json::from_str(&env.cli_ok(&args)).unwrap();
    assert_eq!(third["status"], "queued");
    assert_ne!(third["id"], id.as_str());
    let keyed = [
        "enqueue", "--repo", "demo", "--issue", "8", "--task", "x", "--key", "k#1", "--unique",
        "--json",
    ];
    let k1: serde_json::Value = serde_json::from_str(&env.cli_ok(&keyed)).unwrap();
    let k2: serde_json::Value = serde_json::from_str(&env.cli_ok(&keyed)).unwrap();
    assert_eq!(
        (k2["status"].as_str(), k2["key"].as_str()),
        (Some("exists"), Some("k#1"))
    );
    assert_eq!(k1["id"], k2["id"]);
}

#[test]
fn after_is_refused_naming_the_field_for_a_malformed_or_unknown_id() {
    let env = TestEnv::new();
    for bad in ["../x", "01ARZ3NDEKTSV4RRFFQ69G5FAV"] {
        let out = env.cli(
            &[
                "enqueue", "--repo", "demo", "--issue", "1", "--task", "t", "--after", bad,
                "--json",
            ],
            None,
        );
        assert_eq!(out.status.code(), Some(1), "{bad}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            (v["status"].as_str(), v["field"].as_str()),
            (Some("refused"), Some("after")),
            "{v}"
        );
    }
    let out = env.cli(
        &["enqueue", "-", "--json"],
        Some("{\"repo\":\"demo\",\"issue\":1,\"task\":\"t\",\"after\":[\"x\"]}\n"),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["field"], "after", "{v}");
    let out = env.cli(
        &[
            "enqueue", "--repo", "demo", "--issue", "1", "--task", "t", "--batch", "a:b",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn every_job_of_a_pool_in_unique_pools_is_unique() {
    let env = TestEnv::with_config("unique_pools = [\"codex\"]\n");
    let args = [
        "enqueue", "--repo", "demo", "--issue", "9", "--task", "t", "--json",
    ];
    let first: serde_json::Value = serde_json::from_str(&env.cli_ok(&args)).unwrap();
    let again: serde_json::Value = serde_json::from_str(&env.cli_ok(&args)).unwrap();
    assert_eq!(again["status"], "exists", "{again}");
    assert_eq!(first["id"], again["id"]);
    // Another pool is not.
    let mut claude = args.to_vec();
    claude.extend(["--agent", "claude"]);
    env.cli_ok(&claude);
    let c2: serde_json::Value = serde_json::from_str(&env.cli_ok(&claude)).unwrap();
    assert_eq!(c2["status"], "queued");
    // A pool the table lacks is refused at load, naming the key.
    let bad = TestEnv::with_config("unique_pools = [\"nope\"]\n");
    let out = bad.cli(&args, None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unique_pools"));
}
