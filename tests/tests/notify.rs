//! Issue 32's notifications, end to end: a real worker, Docker, git, and a
//! local webhook receiver (127.0.0.1, so `allow_private = true`). Events are
//! signed (checked here with the secret, by HMAC code of the test's own),
//! delivered at least once through an outage of the receiver, never delay a
//! job when the receiver hangs, and are dead-lettered after the retry window.

use std::time::Duration;

use agentq_shared::status::JobState;
use agentq_tests::*;

const LONG: Duration = Duration::from_secs(180);
const SECRET: &str = "test-hook-secret";

/// A world whose `[[notify]]` entry points at `hook` for `events`, with
/// `top` top-level keys (short backoff by default).
fn world(hook: &HookReceiver, events: &str, top: &str) -> TestEnv {
    let env = TestEnv::with_config(&format!(
        "notify_backoff_ms = 200\nweb_url = \"http://console.example\"\n{top}"
    ));
    env.append_config(&format!(
        "[[notify]]\nurl = \"{}\"\nevents = [{events}]\nsecret_env = \"AGENTQ_TEST_HOOK_SECRET\"\nallow_private = true\n",
        hook.url
    ));
    env.set_env("AGENTQ_TEST_HOOK_SECRET", SECRET);
    env.remotes.create("core", "demo", &[]);
    env
}

/// The receiver's own check (`HookRequest::signed_with`, HMAC code of the
/// tests' own).
fn signature_ok(r: &HookRequest) -> bool {
    r.signed_with(SECRET)
}

/// The three jobs of these tests: (completed, blocked, failed) ids.
fn three_jobs(env: &TestEnv) -> (String, String, String) {
    let c = env.enqueue(&[
        "--repo",
        "demo",
        "--task",
        "Change @agentq-test commit",
        "--issue",
        "1",
    ]);
    let b = env.enqueue(&[
        "--repo",
        "demo",
        "--task",
        "Ask @agentq-test block \"Which database?\"",
        "--issue",
        "2",
    ]);
    let f = env.enqueue(&[
        "--repo",
        "demo",
        "--task",
        "Break @agentq-test exit 3",
        "--issue",
        "3",
    ]);
    (c, b, f)
}

/// The first taken request for job `id`.
fn for_job(hook: &HookReceiver, id: &str) -> Option<HookRequest> {
    hook.taken().into_iter().find(|r| r.json()["job"] == id)
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_events_for_blocked_failed_and_completed_reach_the_receiver() {
    require_docker();
    let hook = HookReceiver::start(HookMode::Ok).await;
    let env = world(&hook, "\"blocked\", \"failed\", \"completed\"", "");
    let (c, b, f) = three_jobs(&env);
    let _w = env.worker("w1", 3);
    for id in [&c, &b, &f] {
        env.wait_final(id, LONG).await;
    }
    let got = env
        .poll_until("three events at the receiver", LONG, async || {
            let t = hook.taken();
            let n = t.len();
            (n >= 3).then_some(t).ok_or(n)
        })
        .await;
    assert_eq!(got.len(), 3, "only the three asked-for events: {got:#?}");
    for (id, event) in [(&c, "completed"), (&b, "blocked"), (&f, "failed")] {
        let r = for_job(&hook, id).unwrap_or_else(|| panic!("no event for {id}"));
        assert!(signature_ok(&r), "bad signature: {r:#?}");
        let v = r.json();
        assert_eq!(v["event"], event);
        assert_eq!(v["state"], event);
        assert_eq!(r.header("x-agentq-event"), event);
        assert_eq!(r.header("x-agentq-event-id"), v["id"].as_str().unwrap());
        assert_eq!(v["repo"], "demo");
        assert_eq!(v["org"], "core");
        assert_eq!(v["agent"], "codex");
        assert_eq!(v["pool"], "codex");
        assert!(!v["host"].as_str().unwrap().is_empty(), "{v}");
        assert_eq!(
            v["console_url"],
            format!("http://console.example/jobs/{id}")
        );
    }
    let blocked = for_job(&hook, &b).unwrap().json();
    assert_eq!(blocked["question"], "Which database?");
    assert_eq!(blocked["issue"], 2);
    assert_eq!(
        for_job(&hook, &f).unwrap().json()["error"],
        "Agent exited with code 3"
    );
    // Event ids are unique.
    let ids: std::collections::HashSet<String> = got
        .iter()
        .map(|r| r.header("x-agentq-event-id").to_string())
        .collect();
    assert_eq!(ids.len(), 3);

    // Measured, not asserted (BENCHMARKS.md): the event id holds the ms of
    // the move on the events stream; the receiver stamps its arrival.
    let r = for_job(&hook, &b).unwrap();
    let moved_ms: i64 = r.json()["id"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .and_then(|s| s.split('-').next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    eprintln!(
        "notify latency blocked -> receiver: {} ms",
        r.at.timestamp_millis() - moved_ms
    );

    // The sent items are listed.
    let list: serde_json::Value =
        serde_json::from_str(&env.cli_ok(&["notify", "list", "--json"])).unwrap();
    assert_eq!(list["sent_total"], 3, "{list}");
    assert_eq!(list["pending"].as_array().unwrap().len(), 0, "{list}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_that_fails_for_a_while_gets_every_event_once_it_recovers() {
    require_docker();
    let hook = HookReceiver::start(HookMode::Fail(500)).await;
    let env = world(&hook, "\"blocked\", \"failed\", \"completed\"", "");
    let (c, b, f) = three_jobs(&env);
    let _w = env.worker("w1", 3);
    for id in [&c, &b, &f] {
        env.wait_final(id, LONG).await;
    }
    // Every event was tried, and refused, at least twice.
    env.poll_until("every event refused twice", LONG, async || {
        let reqs = hook.requests();
        let mut per: std::collections::HashMap<String, usize> = Default::default();
        for r in &reqs {
            *per.entry(r.header("x-agentq-event-id").to_string())
                .or_default() += 1;
        }
        (per.len() == 3 && per.values().all(|n| *n >= 2))
            .then_some(())
            .ok_or(per)
    })
    .await;
    assert!(hook.taken().is_empty());
    let list: serde_json::Value =
        serde_json::from_str(&env.cli_ok(&["notify", "list", "--json"])).unwrap();
    let pending = list["pending"].as_array().unwrap();
    assert_eq!(pending.len(), 3, "{list}");
    assert!(
        pending
            .iter()
            .all(|p| p["last_error"].as_str().unwrap().starts_with("HTTP 500")),
        "{list}"
    );

    hook.set_mode(HookMode::Ok);
    env.poll_until("every event taken after the recovery", LONG, async || {
        let t = hook.taken();
        (t.len() == 3).then_some(()).ok_or(t.len())
    })
    .await;
    for id in [&c, &b, &f] {
        let r = for_job(&hook, id).unwrap_or_else(|| panic!("lost the event of {id}"));
        assert!(signature_ok(&r));
    }
    // Retries carry the same event id (so receivers drop duplicates).
    let ids: std::collections::HashSet<String> = hook
        .requests()
        .iter()
        .map(|r| r.header("x-agentq-event-id").to_string())
        .collect();
    assert_eq!(ids.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_that_hangs_never_delays_a_jobs_outcome() {
    require_docker();
    let hook = HookReceiver::start(HookMode::Hang).await;
    // A request may hang for an hour: only the receiver is stuck.
    let env = world(
        &hook,
        "\"blocked\", \"completed\"",
        "notify_timeout_secs = 3600",
    );
    let b = env.enqueue(&[
        "--repo",
        "demo",
        "--task",
        "Ask @agentq-test block \"Q?\"",
        "--issue",
        "2",
    ]);
    let _w = env.worker("w1", 2);
    env.wait_final(&b, LONG).await;
    env.poll_until(
        "the blocked event hanging at the receiver",
        LONG,
        async || {
            let n = hook.requests().len();
            (n >= 1).then_some(()).ok_or(n)
        },
    )
    .await;
    // While that request hangs, another job runs to its end.
    let c = env.enqueue(&[
        "--repo",
        "demo",
        "--task",
        "Change @agentq-test commit",
        "--issue",
        "1",
    ]);
    let rec = env.wait_final(&c, LONG).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    let reqs = hook.requests();
    assert!(reqs.iter().all(|r| r.answered.is_none()), "{reqs:#?}");
    // Its event waits in the outbox behind the hanging one, not lost.
    let list: serde_json::Value =
        serde_json::from_str(&env.cli_ok(&["notify", "list", "--json"])).unwrap();
    assert_eq!(list["sent_total"], 0, "{list}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_notification_is_dead_lettered_after_the_retry_window() {
    require_docker();
    let hook = HookReceiver::start(HookMode::Fail(503)).await;
    // 0.0005 h = 1.8 s of retries.
    let env = world(&hook, "\"blocked\"", "notify_retry_hours = 0.0005");
    let b = env.enqueue(&[
        "--repo",
        "demo",
        "--task",
        "Ask @agentq-test block \"Q?\"",
        "--issue",
        "2",
    ]);
    let _w = env.worker("w1", 1);
    env.wait_final(&b, LONG).await;
    let list = env
        .poll_until("the event dead-lettered", LONG, async || {
            let v: serde_json::Value =
                serde_json::from_str(&env.cli_ok(&["notify", "list", "--failed", "--json"]))
                    .unwrap();
            (v["dead"].as_array().unwrap().len() == 1)
                .then_some(v.clone())
                .ok_or(v)
        })
        .await;
    let dead = &list["dead"][0];
    assert_eq!(dead["job"], b.as_str(), "{list}");
    assert!(
        dead["dead_reason"]
            .as_str()
            .unwrap()
            .starts_with("HTTP 503"),
        "{list}"
    );
    assert!(dead["tries"].as_u64().unwrap() >= 2, "{list}");
    assert_eq!(list["dead_total"], 1);
    assert_eq!(
        list["pending"].as_array().unwrap().len(),
        0,
        "--failed shows only the dead"
    );
    let text = env.cli_ok(&["notify", "list", "--failed"]);
    assert!(
        text.contains("failed (last 1, 1 in all") && text.contains(&b),
        "{text}"
    );
    assert!(
        !text.contains("/hook"),
        "a receiver's path is never shown: {text}"
    );

    // The console's page shows the same.
    let web = env.web(None);
    let page = reqwest::get(format!("{}/notifications", web.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("1 dead-lettered (0 for a full outbox)"),
        "{page}"
    );
    let dead_table = page.split("id=\"notify-dead\"").nth(1).unwrap();
    assert!(
        dead_table.contains(&b) && dead_table.contains("HTTP 503"),
        "{page}"
    );
    assert!(!page.contains("/hook"), "{page}");
}

#[tokio::test(flavor = "multi_thread")]
async fn notify_test_sends_one_signed_event_and_private_targets_are_refused() {
    let hook = HookReceiver::start(HookMode::Ok).await;
    let env = TestEnv::new();
    env.append_config(&format!(
        "[[notify]]\nurl = \"{}\"\nevents = [\"blocked\"]\nsecret_env = \"AGENTQ_TEST_HOOK_SECRET\"\nallow_private = true\n",
        hook.url
    ));
    env.set_env("AGENTQ_TEST_HOOK_SECRET", SECRET);
    let out = env.cli_ok(&["notify", "test", &hook.url]);
    assert!(
        out.starts_with("HTTP 200") && out.contains("signed"),
        "{out}"
    );
    let got = hook.requests();
    assert_eq!(got.len(), 1);
    assert!(signature_ok(&got[0]));
    assert_eq!(got[0].json()["event"], "test");

    // Not configured, not allowed: refused before any request.
    let other = HookReceiver::start(HookMode::Ok).await;
    let out = env.cli(&["notify", "test", &other.url], None);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("private"), "{err}");
    assert!(other.requests().is_empty());

    // At config load: a literal private address without allow_private.
    let bad = TestEnv::new();
    bad.append_config(
        "[[notify]]\nurl = \"http://169.254.169.254/latest\"\nevents = [\"failed\"]\n",
    );
    let out = bad.cli(&["notify", "list"], None);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("notify[0].url"), "{err}");
    // An unknown event name, named with its key.
    let bad = TestEnv::new();
    bad.append_config("[[notify]]\nurl = \"https://x.example\"\nevents = [\"exploded\"]\n");
    let out = bad.cli(&["notify", "list"], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() != Some(0) && err.contains("exploded"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pools_queue_that_drains_is_told_once() {
    require_docker();
    let hook = HookReceiver::start(HookMode::Ok).await;
    let env = world(&hook, "\"queue_drained\"", "");
    let _w = env.worker("w1", 1);
    wait_live_workers(&env, 1).await;
    // Runs for 3 s (work the notifier sees), then blocks: a blocked job is
    // not work, so the pool's queue has drained.
    let b = env.enqueue(&[
        "--repo",
        "demo",
        "--task",
        "Ask @agentq-test sleep 3 @agentq-test block \"Q?\"",
        "--issue",
        "2",
    ]);
    assert_eq!(env.wait_final(&b, LONG).await.state, JobState::Blocked);
    let got = env
        .poll_until("queue_drained at the receiver", LONG, async || {
            let t = hook.taken();
            let n = t.len();
            (n >= 1).then_some(t).ok_or(n)
        })
        .await;
    assert_eq!(got.len(), 1, "{got:#?}");
    let v = got[0].json();
    assert_eq!(v["event"], "queue_drained");
    assert_eq!(v["pool"], "codex");
    assert_eq!(v["job"], "");
    assert!(signature_ok(&got[0]));
}
