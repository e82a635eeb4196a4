//! Issue 11's acceptance (its first part): a workspace is used by one job at a
//! time on any host, and its truth lives on the shared remote, so any host can
//! carry on. Two worker processes with their own workspace roots and host names
//! stand in for two hosts.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use agentq_shared::status::{JobState, WaitReason};
use agentq_tests::*;

const LONG: Duration = Duration::from_secs(180);

/// A worker standing in for host `name`: its own workspace root.
fn host(env: &TestEnv, name: &str, concurrency: u32) -> (WorkerProc, PathBuf) {
    env.host_worker(name, concurrency)
}

/// Commits on `branch` of the bare remote `core/demo`, newest first (empty if
/// the branch is not there).
fn remote_log(remote: &Path, branch: &str) -> Vec<String> {
    let out = std::process::Command::new("git")
        .args(["-c", "safe.directory=*", "log", "--format=%H %s"])
        .arg(format!("refs/heads/{branch}"))
        .arg("--")
        .current_dir(remote)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn agent_commits(log: &[String]) -> Vec<String> {
    log.iter()
        .filter(|l| l.contains("agentq test: change by"))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_sharing_a_workspace_run_one_at_a_time_in_order() {
    require_docker();
    let env = TestEnv::new();
    env.remotes.create("core", "demo", &[]);
    let (_a, _) = host(&env, "host-a", 2);
    let ids = [
        env.enqueue_for_issue(1, "first @agentq-test sleep 2 @agentq-test commit"),
        env.enqueue_for_issue(1, "second @agentq-test block \"which way?\""),
        env.enqueue_for_issue(1, "third @agentq-test exit 3"),
    ];
    // While one runs, a waiting one names it as the holder of the workspace.
    let store = env.store().await;
    poll_until("a job waiting for the workspace", LONG, async || {
        for id in &ids {
            let r = store.get(id).await.unwrap().unwrap();
            if r.state == JobState::Waiting
                && r.reason == Some(WaitReason::Workspace)
                && !r.waiting_on.is_empty()
            {
                assert!(ids.contains(&r.waiting_on) && r.waiting_on != *id, "{r:#?}");
                return Some(());
            }
        }
        None
    })
    .await;
    let mut recs = Vec::new();
    for id in &ids {
        recs.push(env.wait_final(id, LONG).await);
    }
    let states: Vec<JobState> = recs.iter().map(|r| r.state).collect();
    assert_eq!(
        states,
        [JobState::Completed, JobState::Blocked, JobState::Failed],
        "{recs:#?}"
    );
    for r in &recs {
        assert_eq!(
            r.attempt, 1,
            "waiting for the workspace spends no attempt: {r:?}"
        );
    }
    let mut all: Vec<(f64, f64)> = ids.iter().flat_map(|id| env.agent_intervals(id)).collect();
    assert_eq!(all.len(), 3);
    all.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    assert!(
        all.windows(2).all(|w| w[0].1 <= w[1].0),
        "no two runs in one workspace overlap: {all:?}"
    );
    let mut histories = Vec::new();
    for id in &ids[1..] {
        histories.push(store.history(id).await.unwrap());
    }
    assert!(
        histories
            .iter()
            .flatten()
            .any(|e| e.state == "waiting" && e.reason == "workspace"),
        "a later job waited for the workspace: {histories:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_on_another_host_starts_from_the_first_hosts_commits() {
    require_docker();
    let env = TestEnv::new();
    let remote = env.remotes.create("core", "demo", &[]);
    let (mut a, _) = host(&env, "host-a", 1);
    let id = env.enqueue_for_issue(
        2,
        "carry on @agentq-test commit @agentq-test block-unless /agentq/ANSWER.md \"which way?\"",
    );
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Blocked, "{rec:#?}");
    assert_eq!(rec.host, "host-a");
    let first = agent_commits(&remote_log(&remote, &rec.branch));
    assert_eq!(first.len(), 1, "the blocked run's commit is on the remote");
    a.kill9();

    let (_b, root_b) = host(&env, "host-b", 1);
    env.cli_ok(&["resume", &id, "--answer", "left"]);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    assert_eq!(rec.host, "host-b");
    assert!(Path::new(&rec.workspace_dir).starts_with(&root_b));
    let both = agent_commits(&remote_log(&remote, &rec.branch));
    assert_eq!(both.len(), 2, "both runs' commits, in order: {both:?}");
    assert_eq!(both[1], first[0], "host B built on host A's commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_on_another_host_keeps_the_failed_runs_commits() {
    require_docker();
    let env = TestEnv::new();
    let remote = env.remotes.create("core", "demo", &[]);
    let (mut a, _) = host(&env, "host-a", 1);
    let id = env.enqueue_for_issue(3, "try again @agentq-test commit @agentq-test exit 3");
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Failed, "{rec:#?}");
    let first = agent_commits(&remote_log(&remote, &rec.branch));
    assert_eq!(first.len(), 1, "the failed run's commit is saved");
    a.kill9();
    let (_b, _) = host(&env, "host-b", 1);
    env.cli_ok(&["retry", &id]);
    let rec = poll_until("the retry to run on host-b", LONG, async || {
        let r = env.wait_final(&id, LONG).await;
        if r.host == "host-b" {
            Ok(r)
        } else {
            Err(r)
        }
    })
    .await;
    assert_eq!(rec.state, JobState::Failed);
    let both = agent_commits(&remote_log(&remote, &rec.branch));
    assert_eq!(both.len(), 2, "{both:?}");
    assert_eq!(
        both[1], first[0],
        "the retry started from the failed run's commit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_branch_that_moved_during_the_run_is_not_overwritten() {
    require_docker();
    let env = TestEnv::new();
    let remote = env.remotes.create("core", "demo", &[]);
    let (_a, _) = host(&env, "host-a", 1);
    let id = env.enqueue_for_issue(4, "race @agentq-test sleep 4 @agentq-test commit");
    let rec = env
        .wait_for(&id, LONG, |r| {
            r.state == JobState::Running && !r.branch.is_empty()
        })
        .await;
    // Someone else pushes to the agent branch while the agent works.
    let other = tempfile::tempdir().unwrap();
    git(
        other.path(),
        &["clone", "-q", remote.to_str().unwrap(), "c"],
    );
    let c = other.path().join("c");
    git(&c, &["checkout", "-q", "-b", &rec.branch]);
    std::fs::write(c.join("theirs.txt"), "theirs\n").unwrap();
    git(&c, &["add", "theirs.txt"]);
    git(
        &c,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "-m",
            "someone else's commit",
        ],
    );
    git(&c, &["push", "-q", "origin", &rec.branch]);
    let theirs = git(&c, &["rev-parse", "HEAD"]);

    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Failed, "{rec:#?}");
    assert!(
        rec.error.contains("moved while the job ran") && rec.error.contains("host-a"),
        "{}",
        rec.error
    );
    // QA ran beside the push that was refused: its result counts for
    // nothing, as if it never ran.
    assert_eq!(rec.qa_status, None, "{rec:#?}");
    let log = remote_log(&remote, &rec.branch);
    assert!(
        log[0].starts_with(theirs.trim()),
        "their commit is still the branch head: {log:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_goes_back_to_the_live_host_that_has_the_workspace() {
    require_docker();
    let env = TestEnv::new();
    env.remotes.create("core", "demo", &[]);
    let (_a, root_a) = host(&env, "host-a", 1);
    let id = env.enqueue_for_issue(
        5,
        "stay @agentq-test block-unless /agentq/ANSWER.md \"which way?\"",
    );
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(
        (rec.state, rec.host.as_str()),
        (JobState::Blocked, "host-a")
    );
    // Host B is up and idle too; the resume still goes to host A.
    let (_b, _) = host(&env, "host-b", 4);
    wait_live_workers(&env, 2).await;
    env.cli_ok(&["resume", &id, "--answer", "left"]);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    let history = env.store().await.history(&id).await.unwrap();
    assert_eq!(rec.host, "host-a", "{history:#?}\n{}", env.worker_logs());
    assert!(Path::new(&rec.workspace_dir).starts_with(&root_a));
}

/// Waits until `cond` holds, or fails saying `what`.
async fn eventually(what: &str, timeout: Duration, cond: impl Fn() -> bool) {
    poll_until(what, timeout, async || cond().then_some(())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purged_jobs_workspace_is_removed_on_the_host_that_has_it() {
    require_docker();
    let env = TestEnv::with_config("workspace_sweep_secs = 1\n");
    env.remotes.create("core", "demo", &[]);
    let (_a, root) = host(&env, "host-a", 2);
    let kept = env.enqueue_for_issue(1, "kept @agentq-test commit");
    let gone = env.enqueue_for_issue(2, "gone @agentq-test exit 3");
    assert_eq!(env.wait_final(&kept, LONG).await.state, JobState::Completed);
    assert_eq!(env.wait_final(&gone, LONG).await.state, JobState::Failed);
    let ws = |n: u32| root.join(format!("core/demo/task-{n}"));
    assert!(ws(1).is_dir() && ws(2).is_dir());
    env.cli_ok(&["purge", "--state", "failed", "--older-than", "0s"]);
    eventually("the purged job's workspace is removed", LONG, || {
        !ws(2).exists()
    })
    .await;
    assert!(
        ws(1).is_dir(),
        "a finished workspace is kept for workspace_keep_secs"
    );
    // The host reports its workspaces' disk use.
    let out = env.cli_ok(&["workers", "--json"]);
    let w: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert!(w["workspace_bytes"].as_u64().unwrap_or(0) > 0, "{w}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_workspaces_go_but_a_blocked_jobs_stays_for_its_resume() {
    require_docker();
    let env = TestEnv::with_config("workspace_sweep_secs = 1\nworkspace_keep_secs = 2\n");
    env.remotes.create("core", "demo", &[]);
    let (_a, root) = host(&env, "host-a", 2);
    let done = env.enqueue_for_issue(1, "old @agentq-test commit");
    let blocked = env.enqueue_for_issue(2, "stuck @agentq-test block \"which way?\"");
    assert_eq!(env.wait_final(&done, LONG).await.state, JobState::Completed);
    assert_eq!(
        env.wait_final(&blocked, LONG).await.state,
        JobState::Blocked
    );
    let ws = |n: u32| root.join(format!("core/demo/task-{n}"));
    eventually("the old workspace is removed", LONG, || !ws(1).exists()).await;
    // Once the blocked job's workspace is unused for longer than
    // `workspace_keep_secs` (its directory's and status.json's times), a
    // housekeeping round that began after that leaves it in place: a round is
    // seen by what it removes (a job finished after that point, its workspace
    // gone once past its own keep time: that round judged both).
    let mtime = |p: PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).unwrap();
    let used = mtime(ws(2)).max(mtime(ws(2).join("status.json")));
    eventually(
        "the blocked job's workspace is past its keep time",
        LONG,
        || used.elapsed().is_ok_and(|e| e > Duration::from_secs(3)),
    )
    .await;
    let later = env.enqueue_for_issue(3, "later @agentq-test commit");
    assert_eq!(
        env.wait_final(&later, LONG).await.state,
        JobState::Completed
    );
    eventually("a later round removes the later workspace", LONG, || {
        !ws(3).exists()
    })
    .await;
    assert!(
        ws(2).is_dir(),
        "a blocked job's workspace is kept for its resume"
    );
}
