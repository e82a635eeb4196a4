//! Issue 31, part A: a run that hits its provider's usage limit is waiting,
//! not failure. The fake agent prints each built-in agent's real limit
//! message once (`@agentq-test limit-once`) and exits 1; the job waits
//! (reason `quota`, `resume_at`, no attempt spent), the pool pauses on every
//! host, and at the reset the job runs again by itself and completes.

use std::time::Duration;

use agentq_shared::{
    record::JobRecord,
    status::{JobState, WaitReason},
    store::JobStore,
};
use agentq_tests::*;
use chrono::{DateTime, Utc};
use redis::Commands;

mod web_common;
use web_common::*;

const LONG: Duration = Duration::from_secs(240);

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("`{s}` is not RFC 3339: {e}"))
        .with_timezone(&Utc)
}

/// A moment of the record, which must be there.
fn when(t: Option<agentq_shared::stamp::Stamp>) -> DateTime<Utc> {
    t.expect("a time on the record").to_utc()
}

fn enqueue(env: &TestEnv, agent: &str, task: &str, issue: u64) -> String {
    let line = serde_json::json!({"repo": "demo", "task": task, "agent": agent, "issue": issue})
        .to_string()
        + "\n";
    env.enqueue_ndjson(&line).remove(0)
}

/// The events of the stream named `event`, for job `id`.
async fn quota_events(
    store: &JobStore,
    id: &str,
) -> Vec<std::collections::HashMap<String, String>> {
    store
        .recent_events(1000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.fields)
        .filter(|f| {
            f.get("event").map(String::as_str) == Some("quota")
                && f.get("job").map(String::as_str) == Some(id)
        })
        .collect()
}

async fn waiting_for_quota(env: &TestEnv, id: &str) -> JobRecord {
    env.wait_for(id, LONG, |r| {
        r.state.is_final() || (r.state == JobState::Waiting && r.reason == Some(WaitReason::Quota))
    })
    .await
}

/// Whether the history of job `id` has it waiting for its quota.
async fn waited_for_quota(store: &JobStore, id: &str) -> bool {
    store
        .history(id)
        .await
        .unwrap()
        .iter()
        .any(|h| h.state == "waiting" && h.reason == "quota")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_usage_limit_waits_pauses_every_host_and_resumes_by_itself() {
    require_directives(TEST_IMAGE, &["limit-once"]);
    // A fast failure would count (and one more would pause the pool for 10
    // minutes): the limit must not. One codex slot: the order is exact.
    let env = TestEnv::with_config(
        "[backoff]\nfailures = 2\nwindow_secs = 600\npause_secs = 600\n[limits]\ncodex = 1\n",
    );
    env.remotes.create("core", "demo", &[]);
    let store = env.store().await;
    let port = free_port();
    let mut w1 = env.worker_with_args(
        "w1",
        &[
            "--concurrency",
            "1",
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
        ],
    );
    let limited = enqueue(
        &env,
        "codex",
        "@agentq-test limit-once ■ You've hit your usage limit. Upgrade to Pro (https://openai.com/chatgpt/pricing) or try again in 25 seconds. @agentq-test commit",
        1,
    );
    let rec = waiting_for_quota(&env, &limited).await;
    assert_eq!(
        (rec.state, rec.reason),
        (JobState::Waiting, Some(WaitReason::Quota)),
        "{rec:#?}"
    );
    assert_eq!(
        (rec.attempt, rec.tries),
        (0, 0),
        "the limit spent an attempt: {rec:#?}"
    );
    assert_eq!(rec.runs, 1, "{rec:#?}");
    let resume_at = when(rec.resume_at);
    let ahead = resume_at - Utc::now();
    assert!(
        ahead <= chrono::Duration::seconds(26),
        "resume_at {resume_at} is not the named 25 s ahead"
    );
    assert!(rec.error.contains("usage limit"), "{rec:#?}");

    // Seen everywhere: the events stream, stats (JSON and words), inspect.
    let events = quota_events(&store, &limited).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["pool"], "codex");
    assert_eq!(
        events[0]["resume_at"],
        rec.resume_at.expect("a reset").to_string()
    );
    assert!(
        events[0]["line"].contains("hit your usage limit"),
        "{events:?}"
    );
    assert!(events[0]["line"].chars().count() <= 200);
    let s = env.stats_json();
    let codex = stats_pool(&s, "codex");
    assert_eq!(codex["pause_cause"], "quota", "{s}");
    assert!(codex["paused_until"].is_string(), "{s}");
    let human = env.cli_ok(&["stats"]);
    assert!(human.contains("codex: quota, resumes "), "{human}");
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let gauge = metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"agentq_pool_quota_resume_seconds{pool="codex"} "#))
        .unwrap_or_else(|| panic!("no quota gauge for codex: {metrics}"));
    assert!(gauge.parse::<f64>().unwrap() > 0.0, "{gauge}");
    assert!(
        metrics.contains(r#"agentq_pool_quota_resume_seconds{pool="claude"} 0"#),
        "{metrics}"
    );
    let inspect = env.cli_ok(&["inspect", &limited]);
    assert!(inspect.contains("quota"), "{inspect}");
    assert!(
        inspect.contains(&rec.resume_at.expect("a reset").to_string()),
        "{inspect}"
    );
    // The limit is not a fast failure: nothing counted, no backoff pause.
    let mut conn = env.redis.conn();
    let fails: Option<String> = conn.get(env.key("fails:codex")).unwrap();
    assert_eq!(fails, None, "the limit counted as a fast failure");
    let all: Vec<_> = store.recent_events(1000).await.unwrap();
    assert!(
        !all.iter()
            .any(|e| e.fields.get("event").map(String::as_str) == Some("pool_paused")),
        "a backoff pause: {all:?}"
    );

    // Another worker process (the first one gone) sees the pause: a second
    // codex job waits for it too, and both run after the reset, with no one
    // lifting anything.
    w1.kill9();
    let _w2 = env.worker("w2", 2);
    let second = enqueue(&env, "codex", "@agentq-test commit", 2);
    let done = env.wait_final(&limited, LONG).await;
    assert_eq!(done.state, JobState::Completed, "{done:#?}");
    assert_eq!(done.attempt, 1, "the limit spent an attempt: {done:#?}");
    assert_eq!(done.runs, 2, "{done:#?}");
    assert_eq!(done.resume_at, None, "{done:#?}");
    assert_ne!(
        done.worker, rec.worker,
        "it ran again on the worker that was killed"
    );
    assert!(
        when(done.started_at) >= resume_at,
        "the job ran again before the reset {resume_at}: {done:#?}"
    );
    let other = env.wait_final(&second, LONG).await;
    assert_eq!((other.state, other.attempt), (JobState::Completed, 1));
    assert!(
        when(other.started_at) >= resume_at,
        "a job of the paused pool started on another worker before the reset {resume_at}: {other:#?}"
    );
    // First in its lane: with one codex slot, the job that waited for the
    // reset runs (to its end) before the one enqueued after it starts.
    assert!(
        when(done.finished_at) <= when(other.started_at),
        "the waiting job was not first in line: {done:#?} {other:#?}"
    );
    let runs = env.agent_runs(&limited);
    assert_eq!(runs.lines().count(), 2, "{runs}");
    assert!(runs.lines().next().unwrap().ends_with("exit=1"), "{runs}");
    let fails: Option<String> = conn.get(env.key("fails:codex")).unwrap();
    assert_eq!(fails, None);
    assert!(stats_pool(&env.stats_json(), "codex")["paused_until"].is_null());
}

#[tokio::test(flavor = "multi_thread")]
async fn each_built_in_agents_limit_message_is_recognised() {
    require_directives(TEST_IMAGE, &["limit-once"]);
    // gemini's message names no time: the pool waits its backoff pause.
    let env = TestEnv::with_config("[backoff]\nfailures = 1\nwindow_secs = 600\npause_secs = 4\n");
    env.remotes.create("core", "demo", &[]);
    let store = env.store().await;
    let _w = env.worker("w1", 3);
    let epoch = Utc::now().timestamp() + 50;
    let claude = enqueue(
        &env,
        "claude",
        &format!(
            "@agentq-test limit-once Claude AI usage limit reached|{epoch} @agentq-test commit"
        ),
        1,
    );
    let gemini = enqueue(
        &env,
        "gemini",
        "@agentq-test limit-once ✕ [API Error: {\"code\": 429, \"message\": \"Quota exceeded for quota metric 'Gemini 2.5 Pro Requests'\", \"status\": \"RESOURCE_EXHAUSTED\"}] @agentq-test commit",
        2,
    );
    let codex = enqueue(
        &env,
        "codex",
        "@agentq-test limit-once You've hit your usage limit. Upgrade to Plus to continue using Codex, or try again in 6 seconds. @agentq-test commit",
        3,
    );
    for (id, pool) in [(&claude, "claude"), (&gemini, "gemini"), (&codex, "codex")] {
        let rec = env.wait_final(id, LONG).await;
        assert_eq!(
            (rec.state, rec.attempt, rec.runs),
            (JobState::Completed, 1, 2),
            "{pool}: {rec:#?}"
        );
        assert!(
            waited_for_quota(&store, id).await,
            "{pool} never waited for its quota"
        );
        let events = quota_events(&store, id).await;
        assert_eq!(events.len(), 1, "{pool}: {events:?}");
        assert_eq!(events[0]["pool"], pool);
        let resume_at = at(&events[0]["resume_at"]);
        assert!(
            when(rec.started_at) >= resume_at,
            "{pool} ran before {resume_at}"
        );
        if pool == "claude" {
            assert_eq!(resume_at.timestamp(), epoch, "claude's epoch");
        }
    }
    let fails: Option<String> = env.redis.conn().get(env.key("fails:gemini")).unwrap();
    assert_eq!(fails, None);
    // `agentq agents` shows the built-in defaults.
    let agents: serde_json::Value =
        serde_json::from_str(&env.cli_ok(&["agents", "--json"])).unwrap();
    let claude_row = agents
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["pool"] == "claude")
        .unwrap();
    assert!(
        claude_row["limit_patterns"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("usage limit reached")),
        "{claude_row}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_and_the_events_show_a_quota_pause() {
    // No worker, no Docker: the pause as a worker's run leaves it.
    let env = TestEnv::new();
    let store = env.store().await;
    let resume = Utc::now() + chrono::Duration::minutes(134);
    store
        .pause_for_quota(
            "claude",
            resume,
            "Claude usage limit reached. <b>Your limit</b> \u{1b}[2J will reset at 3pm",
            "J1",
        )
        .await
        .unwrap();
    let web = env.web(None);
    let c = http();
    let o: serde_json::Value =
        serde_json::from_str(&page_text(&c, format!("{}/api/overview", web.url)).await).unwrap();
    let claude = stats_pool(&o, "claude");
    assert_eq!(claude["pause_cause"], "quota", "{o}");
    let html = page_text(&c, format!("{}/", web.url)).await;
    assert!(html.contains(r#"data-cause="quota""#), "{html}");
    let events = page_text(&c, format!("{}/events", web.url)).await;
    assert!(events.contains("quota pool=claude resumes "), "{events}");
    assert!(
        events.contains("&lt;b&gt;Your limit&lt;/b&gt;") && !events.contains("<b>Your limit"),
        "the agent's line is escaped: {events}"
    );
    let cli = env.cli_ok(&["events"]);
    assert!(cli.contains("quota pool=claude resumes "), "{cli}");
    assert!(cli.contains("\\e[2J") && !cli.contains('\u{1b}'), "{cli}");
    let human = env.cli_ok(&["stats"]);
    assert!(human.contains("claude: quota, resumes "), "{human}");
    assert!(human.contains("(in 2h1"), "{human}");
}
