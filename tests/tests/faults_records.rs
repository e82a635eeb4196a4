//! Issue 27, round two of faults, the job's own: a panic in a job's stages and
//! a record that does not parse are outcomes of that one job (named, kept for
//! inspection), never a wedged worker, a lost record or a stopped lane.
//!
//! Panics are injected through the debug build's test hook
//! (`AGENTQ_TEST_PANIC_AT`, see `worker/src/fault.rs`); corrupt records are
//! made by writing a field of the job's hash directly.

use std::time::Duration;

use agentq_shared::status::JobState;
use agentq_tests::*;
use redis::Commands;

/// The suite's generous bound for an event that must come.
const LONG: Duration = Duration::from_secs(120);

/// Keys of this world matching `pattern` (after the namespace).
fn keys_matching(env: &TestEnv, pattern: &str) -> Vec<String> {
    let mut conn = env.redis.conn();
    conn.keys(env.key(pattern)).unwrap()
}

/// Waits until no key of this world matches any of `patterns`.
async fn wait_no_keys(env: &TestEnv, patterns: &[&str], timeout: Duration) {
    env.poll_until("no keys left", timeout, async || {
        let left: Vec<String> = patterns
            .iter()
            .flat_map(|p| keys_matching(env, p))
            .collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(left)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_that_always_panics_fails_after_max_attempts_and_holds_nothing() {
    require_docker();
    let env = TestEnv::new();
    env.remotes.create("core", "demo", &[]);
    // Every run panics in its agent stage: after its held agent container
    // started and the record says `running`.
    env.set_env("AGENTQ_TEST_PANIC_AT", "agent");
    let id = env.enqueue(&[
        "--repo",
        "demo",
        "--task",
        "never runs @agentq-test exit 0",
        "--issue",
        "1",
    ]);
    let _w = env.worker("w1", 1);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Failed, "{rec:#?}");
    assert_eq!(
        rec.attempt, 3,
        "max_attempts = 3 in the test config: {rec:#?}"
    );
    assert!(
        rec.error.contains("panic: injected fault at stage agent"),
        "{rec:#?}"
    );
    // No agent ran, no container is left, and the run lease, the slot and the
    // workspace lease are all given back.
    assert_eq!(env.agent_starts(&id), "");
    assert_eq!(env.containers_of(&id), Vec::<String>::new());
    wait_no_keys(&env, &["run:*", "ws:*", "limit:*"], LONG).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panic_before_the_run_fails_the_job_at_once() {
    require_docker();
    let env = TestEnv::new();
    // Outside the stages: it would come back on every delivery.
    env.set_env("AGENTQ_TEST_PANIC_AT", "admit");
    let world = env
        .arrange()
        .repo("core", "demo")
        .enqueue_for_issue(1, "never runs @agentq-test exit 0")
        .worker("w1", 1)
        .done();
    let id = world.id();
    let rec = env.wait_final(id, LONG).await;
    assert_eq!(rec.state, JobState::Failed, "{rec:#?}");
    assert_eq!(
        rec.error, "panic: injected fault at stage admit",
        "{rec:#?}"
    );
    assert_eq!(rec.attempt, 0, "no run began: {rec:#?}");
    assert_eq!(env.agent_starts(id), "");
    wait_no_keys(&env, &["run:*", "ws:*", "limit:*"], LONG).await;
}

/// Field `field` of job `id`'s own hash (empty when missing).
fn hget(env: &TestEnv, id: &str, field: &str) -> String {
    let mut conn = env.redis.conn();
    let v: Option<String> = conn.hget(env.key(&format!("job:{id}")), field).unwrap();
    v.unwrap_or_default()
}

/// Waits until field `field` of job `id`'s own hash is `want` (the record
/// itself may not parse, so not through the store's reader).
async fn wait_hash_field(env: &TestEnv, id: &str, field: &str, want: &str, timeout: Duration) {
    let what = format!("job {id}'s {field} to be {want:?}");
    env.poll_until(&what, timeout, async || {
        let got = hget(env, id, field);
        if got == want {
            Ok(())
        } else {
            Err(got)
        }
    })
    .await
}

/// `agentq ARGS`: exit code, stdout.
fn cli(env: &TestEnv, args: &[&str]) -> (Option<i32>, String) {
    let out = env.cli(args, None);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// `agentq status ID --json` of a job whose record does not parse: `corrupt`,
/// the field named, exit 1 (the job's problem, not Redis's); `inspect` too.
fn assert_shown_corrupt(env: &TestEnv, id: &str, field: &str) {
    for cmd in ["status", "inspect"] {
        let (code, text) = cli(env, &[cmd, id, "--json"]);
        assert_eq!(code, Some(1), "agentq {cmd}: {text}");
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["state"], "corrupt", "{v}");
        assert_eq!(v["field"], field, "{v}");
        assert_eq!(v["id"], id, "{v}");
        let (code, text) = cli(env, &[cmd, id]);
        assert_eq!(code, Some(1), "agentq {cmd}: {text}");
        assert!(text.contains("corrupt"), "{text}");
        assert!(
            text.contains(&format!("record unreadable: {field}: ")),
            "{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_field_that_does_not_parse_fails_its_job_and_the_worker_goes_on() {
    require_docker();
    let env = TestEnv::new();
    let [bad, fence, good] = env
        .arrange()
        .repo("core", "demo")
        .enqueue_for_issue(1, "never runs @agentq-test exit 0")
        .enqueue_for_issue(3, "never runs @agentq-test exit 0")
        .enqueue_for_issue(2, "runs @agentq-test exit 0")
        .done()
        .jobs();
    let mut conn = env.redis.conn();
    let _: () = conn
        .hset(env.key(&format!("job:{bad}")), "attempt", "x7")
        .unwrap();
    // The run's fencing counter, counted up when a run takes the job.
    let _: () = conn
        .hset(env.key(&format!("job:{fence}")), "fence", "zz")
        .unwrap();
    // One slot: the bad job is first in line, and must not keep it.
    let _w = env.worker("w1", 1);
    wait_hash_field(&env, &bad, "state", "failed", LONG).await;
    assert_eq!(
        hget(&env, &bad, "error"),
        "record unreadable: attempt: `x7` is not a number"
    );
    // Kept for inspection, as it was.
    assert_eq!(hget(&env, &bad, "attempt"), "x7");
    let rec = env.wait_final(&good, LONG).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    assert_eq!(env.agent_starts(&bad), "");
    assert_shown_corrupt(&env, &bad, "attempt");
    wait_hash_field(&env, &fence, "state", "failed", LONG).await;
    assert_eq!(
        hget(&env, &fence, "error"),
        "record unreadable: fence: `zz` is not a number"
    );
    // `fence` is not part of the record the CLI reads: it reads as failed.
    let (code, text) = cli(&env, &["status", &fence]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("record unreadable: fence: "), "{text}");
    wait_no_keys(&env, &["run:*", "limit:*"], LONG).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_packed_record_that_is_not_json_is_failed_and_kept_not_deleted() {
    require_docker();
    let env = TestEnv::new();
    let [bad, good] = env
        .arrange()
        .repo("core", "demo")
        .enqueue_for_issue(1, "never runs @agentq-test exit 0")
        .enqueue_for_issue(2, "runs @agentq-test exit 0")
        .done()
        .jobs();
    let mut conn = env.redis.conn();
    let _: () = conn.hset(env.key("new"), &bad, "{not json").unwrap();
    // Before anything opened it: shown as corrupt, the packed record named.
    assert_shown_corrupt(&env, &bad, "packed");
    let _w = env.worker("w1", 1);
    let rec = env.wait_final(&good, LONG).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    // Opening it failed the job, with its text kept on its hash.
    wait_hash_field(&env, &bad, "state", "failed", LONG).await;
    assert_eq!(
        hget(&env, &bad, "error"),
        "record unreadable: packed: not JSON"
    );
    assert_eq!(hget(&env, &bad, "packed"), "{not json");
    let (code, text) = cli(&env, &["status", &bad]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("failed"), "{text}");
    assert!(
        text.contains("record unreadable: packed: not JSON"),
        "{text}"
    );
    let failed = cli(&env, &["list", "--state", "failed", "--json"]).1;
    assert!(failed.contains(&bad), "{failed}");
    assert_eq!(env.agent_starts(&bad), "");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_seq_that_is_not_a_number_on_a_job_waiting_for_its_workspace_fails_it() {
    require_docker();
    let env = TestEnv::new();
    env.remotes.create("core", "demo", &[]);
    // Same issue, same workspace: the second waits for the first.
    let first = env.enqueue_for_issue(1, "first @agentq-test hold");
    let _w = env.worker("w1", 2);
    env.wait_holding(1).await;
    let second = env.enqueue_for_issue(1, "second @agentq-test exit 0");
    env.wait_for(&second, LONG, |r| {
        r.reason == Some(agentq_shared::status::WaitReason::Workspace)
    })
    .await;
    let mut conn = env.redis.conn();
    let _: () = conn
        .hset(env.key(&format!("job:{second}")), "seq", "nine")
        .unwrap();
    env.release_holds();
    let rec = env.wait_final(&first, LONG).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    // Its turn came: failed, named, kept; in no lane and holding no slot.
    wait_hash_field(&env, &second, "state", "failed", LONG).await;
    assert_eq!(
        hget(&env, &second, "error"),
        "record unreadable: seq: `nine` is not a number"
    );
    wait_no_keys(&env, &["run:*", "limit:*", "lane:*", "wsq:*"], LONG).await;
    assert_eq!(env.agent_starts(&second), "");
}

#[tokio::test(flavor = "multi_thread")]
async fn housekeeping_goes_on_past_a_running_job_whose_input_does_not_parse() {
    require_docker();
    let env = TestEnv::with_config("workspace_sweep_secs = 1\n");
    let world = env
        .arrange()
        .repo("core", "demo")
        .enqueue_for_issue(1, "runs @agentq-test hold")
        .worker("w1", 1)
        .done();
    let id = world.id().to_string();
    env.wait_holding(1).await;
    let running_ws = std::path::PathBuf::from(
        env.store()
            .await
            .get(&id)
            .await
            .unwrap()
            .unwrap()
            .workspace_dir,
    );
    assert!(running_ws.is_dir(), "{}", running_ws.display());
    let mut conn = env.redis.conn();
    let _: () = conn
        .hset(env.key(&format!("job:{id}")), "input", "{not json")
        .unwrap();
    // A workspace no job owns, unused since 1970, made after the record went
    // bad: a round that finds it reads the bad record too, and it goes only
    // if that round gets past the bad record to its removals.
    let stray = env.workspace_root().join("core/demo/stray");
    std::fs::create_dir_all(&stray).unwrap();
    std::fs::File::open(&stray)
        .unwrap()
        .set_modified(std::time::UNIX_EPOCH)
        .unwrap();
    let what = format!(
        "a housekeeping round to remove {} past the unreadable record",
        stray.display()
    );
    env.poll_until(&what, LONG, async || (!stray.exists()).then_some(()))
        .await;
    // The bad record's workspace is kept: its job is still running.
    assert!(running_ws.is_dir(), "{}", running_ws.display());
    assert_shown_corrupt(&env, &id, "input");
    env.release_holds();
}

#[tokio::test(flavor = "multi_thread")]
async fn list_and_the_console_keep_a_corrupt_job_and_name_its_field() {
    let env = TestEnv::new();
    let bad = env.enqueue(&["--repo", "demo", "--task", "t", "--issue", "1"]);
    let good = env.enqueue(&["--repo", "demo", "--task", "t", "--issue", "2"]);
    let mut conn = env.redis.conn();
    let _: () = conn
        .hset(env.key(&format!("job:{bad}")), "attempt", "x7")
        .unwrap();
    // `agentq list`, all jobs and by state: the row stays, as `corrupt`.
    for args in [vec!["list"], vec!["list", "--state", "queued"]] {
        let (code, text) = cli(&env, &args);
        assert_eq!(code, Some(0), "{text}");
        let row = text
            .lines()
            .find(|l| l.starts_with(&bad))
            .unwrap_or_else(|| panic!("agentq {args:?} dropped the corrupt job:\n{text}"));
        assert!(row.contains("corrupt"), "{row}");
        assert!(row.contains("record unreadable: attempt: "), "{row}");
        assert!(text.contains(&good), "{text}");
        let mut json = args.clone();
        json.push("--json");
        let (code, text) = cli(&env, &json);
        assert_eq!(code, Some(0), "{text}");
        let rows: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let row = rows.iter().find(|r| r["id"] == bad.as_str()).unwrap();
        assert_eq!(row["state"], "corrupt", "{row}");
        assert_eq!(row["field"], "attempt", "{row}");
        assert!(rows.iter().any(|r| r["id"] == good.as_str()));
    }
    // The console: the list keeps it, its page shows it (not a 503).
    let web = env.web(None);
    let http = reqwest::Client::new();
    let page: serde_json::Value = http
        .get(format!("{}/api/jobs", web.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jobs = page["jobs"].as_array().unwrap();
    assert!(jobs.iter().any(|j| j["id"] == good.as_str()), "{page}");
    let corrupt = page["corrupt"].as_array().unwrap();
    assert_eq!(corrupt.len(), 1, "{page}");
    assert_eq!(corrupt[0]["id"], bad.as_str(), "{page}");
    assert_eq!(corrupt[0]["field"], "attempt", "{page}");
    let list = http.get(format!("{}/jobs", web.url)).send().await.unwrap();
    assert_eq!(list.status(), 200);
    let list = list.text().await.unwrap();
    assert!(list.contains(&format!("/jobs/{bad}")), "{list}");
    let resp = http
        .get(format!("{}/jobs/{bad}", web.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let html = resp.text().await.unwrap();
    assert!(html.contains("corrupt"), "{html}");
    assert!(html.contains("record unreadable: attempt: "), "{html}");
    // Its API answer names the field: 422, not 503 ("Redis failing").
    let resp = http
        .get(format!("{}/api/jobs/{bad}", web.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let body: serde_json::Value = resp.json().await.unwrap();
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("record unreadable: attempt: "), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sweep_goes_on_past_an_orphan_whose_seq_does_not_parse() {
    require_docker();
    let env = TestEnv::new();
    env.remotes.create("core", "demo", &[]);
    let bad = env.enqueue_for_issue(1, "bad @agentq-test hold");
    let good = env.enqueue_for_issue(2, "good @agentq-test hold");
    let mut w1 = env.worker("w1", 2);
    env.wait_holding(2).await;
    let mut conn = env.redis.conn();
    let _: () = conn
        .hset(env.key(&format!("job:{bad}")), "seq", "x")
        .unwrap();
    // Both runs orphaned: the next worker's sweep meets the bad one.
    w1.kill9();
    env.release_holds();
    let _w2 = env.worker("w2", 2);
    let rec = env.wait_final(&good, LONG).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    wait_hash_field(&env, &bad, "state", "failed", LONG).await;
    assert_eq!(
        hget(&env, &bad, "error"),
        "record unreadable: seq: `x` is not a number"
    );
    wait_no_keys(&env, &["run:*", "limit:*", "lane:*"], LONG).await;
}

/// Bulk retry validates before it writes: a finished job whose `seq` does not
/// parse is left alone (its cancel flag and record untouched), and every other
/// job of the same chunk, before and after it, is retried. (Before: the
/// script's error aborted the chunk half-way, every time it was run again.)
#[tokio::test(flavor = "multi_thread")]
async fn bulk_retry_leaves_a_job_whose_seq_does_not_parse_and_retries_the_rest() {
    let env = TestEnv::new();
    env.remotes.create("core", "demo", &[]);
    let ids: Vec<String> = (1..=3)
        .map(|n| env.enqueue_for_issue(n, "never runs"))
        .collect();
    for id in &ids {
        env.cli_ok(&["cancel", id]);
    }
    let bad = &ids[1];
    let mut conn = env.redis.conn();
    let _: () = conn
        .hset(env.key(&format!("job:{bad}")), "seq", "x")
        .unwrap();
    let out = env.cli(&["retry", "--state", "cancelled", "--json"], None);
    assert_ne!(
        out.status.code(),
        Some(2),
        "the retry failed as a Redis error: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let state = |id: &str| -> String {
        let mut conn = env.redis.conn();
        conn.hget(env.key(&format!("job:{id}")), "state").unwrap()
    };
    assert_eq!(state(&ids[0]), "queued");
    assert_eq!(state(&ids[2]), "queued");
    assert_eq!(state(bad), "cancelled");
    let seq: String = conn.hget(env.key(&format!("job:{bad}")), "seq").unwrap();
    assert_eq!(seq, "x", "the corrupt record was written to");
}
