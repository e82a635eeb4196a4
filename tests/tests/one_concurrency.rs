//! Issue 30 (part): one worker, one `--concurrency`. A worker takes jobs two
//! ways: its apalis intake (deliveries) and its affinity claimer (jobs other
//! hosts left to it because it has their workspace). Every job it runs counts
//! against the same limit, however it was claimed. Two worker processes with
//! their own host names and workspace roots stand in for two hosts.

use std::{path::PathBuf, time::Duration};

use agentq_shared::status::{JobState, WaitReason};
use agentq_tests::*;

const LONG: Duration = Duration::from_secs(240);

/// A worker standing in for host `name`: its own workspace root.
fn host(env: &TestEnv, name: &str, concurrency: u32) -> (WorkerProc, PathBuf) {
    env.host_worker(name, concurrency)
}

/// Enqueues a job for `agent` on `core/demo` issue `issue` and returns its id.
fn enqueue(env: &TestEnv, agent: &str, issue: u32, task: &str) -> String {
    env.enqueue(&[
        "--repo",
        "demo",
        "--org",
        "core",
        "--issue",
        &issue.to_string(),
        "--task",
        task,
        "--agent",
        agent,
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn affinity_claims_and_deliveries_share_one_concurrency() {
    require_docker();
    // A long grace, so host O never runs the jobs it leaves to host W; a
    // registry entry that stays live for 15 s, so W stays the workspaces' live
    // host while it is stopped for a moment; quick polls, so O takes each
    // due recheck at once and W's own intake rarely gets one first.
    let env = TestEnv::with_config(
        "affinity_secs = 600\nmissed_heartbeats = 15\npoll_ms = 50\nauto_qa = false\n",
    );
    env.remotes.create("core", "demo", &[]);

    // Host W runs a job in workspaces 1 and 2: it has them now.
    let (w, _) = host(&env, "host-w", 2);
    for issue in [1, 2] {
        let id = enqueue(&env, "codex", issue, "mine @agentq-test commit");
        let rec = env.wait_final(&id, LONG).await;
        assert_eq!(
            (rec.state, rec.host.as_str()),
            (JobState::Completed, "host-w")
        );
    }

    // Host O comes up. While W is stopped (still live), O takes the new jobs
    // for those workspaces and leaves them to W.
    let (mut o, _) = host(&env, "host-o", 2);
    wait_live_workers(&env, 2).await;
    w.signal("STOP");
    let left: Vec<String> = [1, 2]
        .iter()
        .map(|&issue| enqueue(&env, "codex", issue, "left @agentq-test hold"))
        .collect();
    for id in &left {
        env.wait_for(id, LONG, |r| {
            r.state == JobState::Waiting && r.reason == Some(WaitReason::Affinity)
        })
        .await;
    }
    w.signal("CONT");
    // W claims them: two affinity jobs run on W, W is full.
    let held = env.wait_holding(2).await;
    let store = env.store().await;
    for id in &left {
        assert!(held.contains(id), "{held:?}\n{}", env.worker_logs());
        let rec = store.get(id).await.unwrap().unwrap();
        assert_eq!(rec.host, "host-w", "{rec:#?}");
    }
    assert!(
        w.log_count("claimed a job left to this host") >= 1,
        "W's affinity claimer took a left job:\n{}",
        env.worker_logs()
    );

    // O goes: W is the only worker when two more jobs come, in another
    // pool (its own slots), as plain deliveries.
    assert!(o.signal_and_wait("TERM", LONG).success());
    let plain: Vec<String> = [31, 32]
        .iter()
        .map(|&issue| enqueue(&env, "claude", issue, "plain @agentq-test hold"))
        .collect();
    // Another host comes up with room: the plain jobs go there, since W has none.
    let (_o2, _) = host(&env, "host-o2", 2);
    let held = env.wait_holding(4).await;
    env.release_holds();

    let mut on_w = Vec::new();
    for id in left.iter().chain(&plain) {
        let rec = env.wait_final(id, LONG).await;
        assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
        assert_eq!(rec.attempt, 1, "{rec:#?}");
        if rec.host == "host-w" {
            on_w.extend(env.agent_spans(id));
        }
    }
    for id in &left {
        let history = store.history(id).await.unwrap();
        assert!(
            history
                .iter()
                .any(|e| e.state == "waiting" && e.reason == "affinity"),
            "{id} was left to W: {history:#?}"
        );
    }
    assert!(
        max_overlap(&on_w) <= 2,
        "W ran {} jobs at once with --concurrency 2 (held together: {held:?}): {on_w:?}\n{}",
        max_overlap(&on_w),
        env.worker_logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_full_of_deliveries_claims_no_left_job() {
    require_docker();
    let env = TestEnv::with_config("affinity_secs = 600\nauto_qa = false\n");
    env.remotes.create("core", "demo", &[]);

    // Host W runs a job in workspaces 1 and 2: it has them now.
    let (_w, _) = host(&env, "host-w", 2);
    for issue in [1, 2] {
        let id = enqueue(&env, "codex", issue, "mine @agentq-test commit");
        let rec = env.wait_final(&id, LONG).await;
        assert_eq!(
            (rec.state, rec.host.as_str()),
            (JobState::Completed, "host-w")
        );
    }
    // W alone takes two plain deliveries: it is full.
    let plain: Vec<String> = [31, 32]
        .iter()
        .map(|&issue| enqueue(&env, "claude", issue, "plain @agentq-test hold"))
        .collect();
    let held = env.wait_holding(2).await;
    assert_eq!(held.len(), 2);
    for id in &plain {
        assert!(held.contains(id), "{held:?}");
    }

    // Host O comes up and takes the new jobs for W's workspaces: it leaves
    // them to W, and looks again every 2 s.
    let (_o, _) = host(&env, "host-o", 2);
    wait_live_workers(&env, 2).await;
    let left: Vec<String> = [1, 2]
        .iter()
        .map(|&issue| enqueue(&env, "codex", issue, "left @agentq-test hold"))
        .collect();
    for id in &left {
        let first = env
            .wait_for(id, LONG, |r| {
                r.state == JobState::Waiting && r.reason == Some(WaitReason::Affinity)
            })
            .await
            .seq;
        // Two more looks by O (two new deliveries) while W is full: W had
        // about eight chances to claim it meanwhile.
        let rec = env
            .wait_for(id, LONG, |r| {
                r.state != JobState::Waiting || r.seq >= first + 2
            })
            .await;
        assert_eq!(
            (rec.state, rec.reason),
            (JobState::Waiting, Some(WaitReason::Affinity)),
            "W, full, took a job left to it: {rec:#?}\n{}",
            env.worker_logs()
        );
    }

    // Once the plain jobs end, W claims the left ones.
    env.release_holds();
    let mut on_w = Vec::new();
    for id in plain.iter().chain(&left) {
        let rec = env.wait_final(id, LONG).await;
        assert_eq!(
            (rec.state, rec.host.as_str()),
            (JobState::Completed, "host-w"),
            "{rec:#?}"
        );
        on_w.extend(env.agent_spans(id));
    }
    assert!(
        max_overlap(&on_w) <= 2,
        "W ran {} jobs at once with --concurrency 2: {on_w:?}",
        max_overlap(&on_w)
    );
}
