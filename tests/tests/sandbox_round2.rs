//! Red-team tests, round two: availability and the integrity of outcomes. A
//! hostile agent (`agentq-redteam:latest`, `tests/image/redteam-agent.sh`) run
//! through the real worker, real Docker and real git cannot stall the worker's
//! lease renewal, outlive a dead worker, degrade a host or pause a pool.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use agentq_shared::status::JobState;
use agentq_tests::*;

const LONG: Duration = Duration::from_secs(180);
const REDTEAM_IMAGE: &str = "agentq-redteam:latest";

/// A world whose agents are the red team: `top` top-level keys, then
/// `tables` after the red-team image's table.
fn redteam_env(top: &str, tables: &str) -> TestEnv {
    require_image(REDTEAM_IMAGE);
    let env = TestEnv::with_config(top);
    env.append_config(&format!(
        "[agents.codex]\nimage = \"{REDTEAM_IMAGE}\"\n{tables}"
    ));
    env.remotes
        .create("core", "demo", &[("README.md", "# demo\n")]);
    env
}

fn enqueue_main(env: &TestEnv, task: &str) -> String {
    env.enqueue(&["--repo", "demo", "--branch", "main", "--task", task])
}

/// The worker's copy of the agent's output.
fn agent_log(workspace_dir: &str) -> String {
    std::fs::read_to_string(Path::new(workspace_dir).join(".meta/agent-codex.log"))
        .unwrap_or_default()
}

/// Removes a job's containers when dropped, whatever the test found (a
/// container that outlived its worker is this test's to clean up).
struct RemoveContainers<'a>(&'a TestEnv, String);

impl Drop for RemoveContainers<'_> {
    fn drop(&mut self) {
        for c in self.0.containers_of(&self.1) {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", &c])
                .output();
        }
    }
}

/// Row 1: ~1 M empty files with the size limit on. The tree walk runs off the
/// renewal path and stops at `workspace_limit_files` (default 200 000): the
/// run lease is renewed throughout (read from Redis while the agent makes
/// files, it never lapses), the run is never fenced or taken over (one
/// attempt), and the job fails as over its limits.
#[tokio::test(flavor = "multi_thread")]
async fn a_million_files_never_stall_the_lease_and_fail_the_job_as_over_its_limits() {
    let env = redteam_env("", "");
    let _w = env.worker("w1", 1);
    let id = enqueue_main(
        &env,
        "Inodes @redteam many-files 1000000 @redteam sleep 600",
    );
    let _cleanup = RemoveContainers(&env, id.clone());
    let store = env.store().await;
    let mut conn = env.redis.conn();
    let lease = env.key(&format!("run:{id}"));
    let deadline = Instant::now() + Duration::from_secs(600);
    let (mut seen_live, mut lapses) = (0u32, Vec::new());
    let rec = loop {
        // The lease first, then the record: a lease gone while the record
        // (read after) is still not final is a lapse of a live run.
        let pttl: i64 = redis::cmd("PTTL").arg(&lease).query(&mut conn).unwrap();
        let rec = store.get(&id).await.unwrap().unwrap();
        if rec.state.is_final() {
            break rec;
        }
        if pttl > 0 {
            seen_live += 1;
        } else if seen_live > 0 {
            lapses.push((pttl, rec.state, rec.reason));
        }
        assert!(
            Instant::now() < deadline,
            "job never ended: {rec:#?}\n{}",
            env.worker_logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(seen_live > 10, "the run lease was never seen: {rec:#?}");
    assert!(
        lapses.is_empty(),
        "the run lease lapsed {} times while the agent made files; first: {:?}\n{}",
        lapses.len(),
        &lapses[..lapses.len().min(5)],
        env.worker_logs()
    );
    assert_eq!(
        rec.state,
        JobState::Failed,
        "{rec:#?}\n{}",
        env.worker_logs()
    );
    assert!(
        rec.error.contains("over the limit"),
        "not failed for its tree: {rec:#?}"
    );
    assert_eq!(rec.attempt, 1, "the run was taken over: {rec:#?}");
    assert_eq!(rec.runs, 1, "{rec:#?}");
    let log = std::fs::read_to_string(&_w.log).unwrap();
    assert!(!log.contains("self-fencing"), "the worker fenced itself");
}

/// Row 1, inode exhaustion: a tree of empty files (0 bytes) is over
/// `workspace_limit_files` at the check after the run.
#[tokio::test(flavor = "multi_thread")]
async fn a_tree_of_empty_files_is_over_workspace_limit_files() {
    // A backoff that pauses the pool on one fast failure: a tree over its
    // bounds is the agent's doing and must not pause it.
    let env = redteam_env(
        "workspace_limit_files = 1000",
        "[backoff]\nfailures = 1\nwindow_secs = 600\npause_secs = 600\n",
    );
    let _w = env.worker("w1", 1);
    let id = enqueue_main(&env, "Inodes @redteam many-files 3000");
    let rec = env.wait_final(&id, LONG).await;
    assert!(
        agent_log(&rec.workspace_dir).contains("made 3000 files"),
        "{}",
        agent_log(&rec.workspace_dir)
    );
    assert_eq!(
        rec.state,
        JobState::Failed,
        "{rec:#?}\n{}",
        env.worker_logs()
    );
    assert!(
        rec.error.contains("over the limit of 1000 files"),
        "{rec:#?}"
    );
    assert_eq!(rec.attempt, 1, "{rec:#?}");
    let mut conn = env.redis.conn();
    let backoff: bool = redis::cmd("EXISTS")
        .arg(env.key("backoff:codex"))
        .query(&mut conn)
        .unwrap();
    assert!(!backoff, "a tree over its bounds paused the pool");
}

/// Row 2: the agent sends SIGSTOP to every process it can see and SIGKILL to
/// PID 1 and all but its own ancestors; then its worker dies (kill -9). The
/// watchdog, PID 1 of the container, was out of reach: the container ends
/// within the heartbeat's bound (watched through Docker).
#[tokio::test(flavor = "multi_thread")]
async fn the_watchdog_stops_the_agent_after_its_worker_dies_whatever_the_agent_signalled() {
    let env = redteam_env("", "");
    let deaths = env.watch_agent_deaths();
    let mut w = env.worker("w1", 1);
    let id = enqueue_main(&env, "Freeze @redteam signal-all @redteam sleep 600");
    let _cleanup = RemoveContainers(&env, id.clone());
    let rec = env
        .wait_for(&id, LONG, |r| r.state == JobState::Running)
        .await;
    let deadline = Instant::now() + LONG;
    while !agent_log(&rec.workspace_dir).contains("signal-all done") {
        assert!(
            Instant::now() < deadline,
            "the attack never ran: {}\n{}",
            agent_log(&rec.workspace_dir),
            env.worker_logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let said = agent_log(&rec.workspace_dir);
    assert!(said.contains("kill -STOP -1: sent"), "{said}");
    w.kill9();
    // The watchdog goes by the heartbeat (stale after two thirds of the 3 s
    // lease here); a minute is a generous bound, and without the watchdog the
    // agent sleeps for ten.
    deaths
        .wait_first(std::slice::from_ref(&id), Duration::from_secs(60))
        .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let running = running_containers_with_label("agentq.job", &id);
        if running.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still running a minute after its worker died: {running:?}\n{said}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Row 3: `.git/HEAD` made a FIFO after committing fails the job at once as
/// the agent's doing: one attempt, no retry, and the host is not degraded
/// (three such jobs in a row, then an honest job runs on the same worker,
/// with a cooling period that would outlast the test).
#[tokio::test(flavor = "multi_thread")]
async fn a_fifo_head_fails_the_job_at_once_and_never_degrades_the_host() {
    let env = redteam_env("host_failures = 3\nhost_cooldown_secs = 3600", "");
    let _w = env.worker("w1", 1);
    for _ in 0..3 {
        let id = enqueue_main(&env, "Stall the export @redteam fifo-head");
        let rec = env.wait_final(&id, LONG).await;
        assert_eq!(
            rec.state,
            JobState::Failed,
            "{rec:#?}\n{}",
            env.worker_logs()
        );
        assert!(
            rec.error.contains(".git/HEAD is a FIFO"),
            "not refused as the agent's doing: {rec:#?}"
        );
        assert_eq!((rec.attempt, rec.runs), (1, 1), "retried: {rec:#?}");
    }
    let honest = enqueue_main(&env, "Honest work @redteam commit");
    let rec = env.wait_final(&honest, LONG).await;
    assert_eq!(
        rec.state,
        JobState::Completed,
        "{rec:#?}\n{}",
        env.worker_logs()
    );
    let log = std::fs::read_to_string(&_w.log).unwrap();
    assert!(!log.contains("host degraded"), "the host was degraded");
}

/// Row 3, pools: three fast runs whose commits are refused (a history
/// rewrite) do not pause the pool: no backoff key in Redis, and the next job
/// starts at once and completes.
#[tokio::test(flavor = "multi_thread")]
async fn refused_commits_never_pause_the_pool() {
    let env = redteam_env("", "");
    let _w = env.worker("w1", 1);
    for _ in 0..3 {
        let id = enqueue_main(&env, "Rewrite @redteam orphan-commit");
        let rec = env.wait_final(&id, LONG).await;
        assert_eq!(
            rec.state,
            JobState::Failed,
            "{rec:#?}\n{}",
            env.worker_logs()
        );
        assert!(
            rec.error.contains("does not descend"),
            "not refused for its history: {rec:#?}"
        );
    }
    let mut conn = env.redis.conn();
    let backoff: bool = redis::cmd("EXISTS")
        .arg(env.key("backoff:codex"))
        .query(&mut conn)
        .unwrap();
    assert!(!backoff, "the pool was paused");
    let next = enqueue_main(&env, "Honest work @redteam commit");
    let rec = env.wait_final(&next, LONG).await;
    assert_eq!(
        rec.state,
        JobState::Completed,
        "{rec:#?}\n{}",
        env.worker_logs()
    );
}

/// Row 4: a directory the agent made mode 000 neither hides its bytes from
/// the size check nor breaks the next job on the workspace. (The worker in
/// the tests runs as root, which reads and removes such a tree anyway; the
/// non-root case is `fsutil::tests::an_unreadable_directory_is_over` and
/// `fsutil::tests::a_tree_the_agent_closed_is_removed_by_its_owner`.)
#[tokio::test(flavor = "multi_thread")]
async fn a_chmod_000_directory_hides_nothing_and_breaks_no_later_job() {
    let env = redteam_env("workspace_limit_mb = 16", "");
    let _w = env.worker("w1", 1);
    let hidden = enqueue_main(&env, "Hide @redteam chmod-000 40");
    let rec = env.wait_final(&hidden, LONG).await;
    assert!(
        agent_log(&rec.workspace_dir).contains("redteam-locked is mode 000"),
        "{}",
        agent_log(&rec.workspace_dir)
    );
    assert_eq!(
        rec.state,
        JobState::Failed,
        "{rec:#?}\n{}",
        env.worker_logs()
    );
    assert!(rec.error.contains("over the limit"), "{rec:#?}");
    let small = enqueue_main(&env, "Lock a little @redteam chmod-000 1 @redteam commit");
    let rec = env.wait_final(&small, LONG).await;
    assert_eq!(
        rec.state,
        JobState::Completed,
        "{rec:#?}\n{}",
        env.worker_logs()
    );
    let next = enqueue_main(&env, "Next @redteam commit");
    let rec = env.wait_final(&next, LONG).await;
    assert_eq!(
        rec.state,
        JobState::Completed,
        "{rec:#?}\n{}",
        env.worker_logs()
    );
}
