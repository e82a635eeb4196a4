//! Issue 32: after the pull request. The verify stage waits for the head's
//! combined status, merges through the forge's merge API (one rebase when
//! the base moved), or flags the pull request `needs-review` with a comment
//! saying why; harvest refuses a branch with a binary file before any pull
//! request; `agentq verify ID` runs the stage again. Real worker, Docker,
//! git and the simulated Forgejo.

use std::time::Duration;

use agentq_shared::{
    status::{JobState, StatusFile},
    verify::Verify,
};
use agentq_tests::{forge_sim::ForgeSim, *};

const LONG: Duration = Duration::from_secs(180);
const TOKEN: &str = "forge-token-verify-7c1e";

/// A world whose codex pool merges automatically, with a forge and repository
/// `core/demo` (issue 9 open), and a worker.
async fn world() -> (TestEnv, ForgeSim, WorkerProc) {
    require_docker();
    let env = TestEnv::with_config(
        "[forge]\ntoken_env = \"AGENTQ_TEST_FORGE_TOKEN\"\nmax_retries = 2\nretry_base_ms = 50\n\n[verify]\nverify_timeout_secs = 60\npoll_ms = 100\n\n[verify.pools.codex]\nauto_merge = true\n",
    );
    let sim = env.start_forge(TOKEN).await;
    env.remotes
        .create("core", "demo", &[("README.md", "demo\n")]);
    sim.add_repo("core", "demo", "main");
    sim.add_issue("core", "demo", 9, "Change it", "Please change it.");
    let w = env.worker("w1", 1);
    (env, sim, w)
}

/// Job `id`'s final record, asserted to be in `state` (the worker's log
/// when it is not).
async fn ended_in(env: &TestEnv, id: &str, state: JobState) -> agentq_shared::record::JobRecord {
    let rec = env.wait_final(id, LONG).await;
    assert_eq!(rec.state, state, "{rec:#?}\n{}", env.worker_logs());
    rec
}

fn enqueue(env: &TestEnv, task: &str) -> String {
    env.enqueue(&[
        "--agent", "codex", "--repo", "demo", "--issue", "9", "--task", task,
    ])
}

fn bare_of(env: &TestEnv) -> std::path::PathBuf {
    env.remotes.base.path().join("core/demo.git")
}

/// The statuses the forge answered merge requests with, in order.
fn merge_answers(sim: &ForgeSim) -> Vec<u16> {
    sim.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/merge"))
        .map(|r| r.status)
        .collect()
}

fn needs_review_events(env: &TestEnv, id: &str) -> Vec<String> {
    use redis::Commands;
    let mut conn = env.redis.conn();
    let entries: redis::streams::StreamRangeReply =
        conn.xrange_all(format!("{}:events", env.ns)).unwrap();
    entries
        .ids
        .iter()
        .filter(|e| {
            e.get::<String>("event").as_deref() == Some("needs_review")
                && e.get::<String>("job").as_deref() == Some(id)
        })
        .filter_map(|e| e.get::<String>("reason"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pull_request_whose_checks_pass_is_merged_and_its_branch_deleted() {
    let (env, sim, _w) = world().await;
    sim.set_ci("core", "demo", "ci/build", "success");
    let id = enqueue(&env, "Change it @agentq-test commit");
    let rec = ended_in(&env, &id, JobState::Merged).await;
    assert_eq!(rec.verify, Some(Verify::Merged));
    let pulls = sim.pulls("core", "demo");
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    assert!(pulls[0].merged && pulls[0].state == "closed", "{pulls:?}");
    // Upstream's body, plus the job.
    assert!(
        pulls[0].body.starts_with("## Task\n\n"),
        "{}",
        pulls[0].body
    );
    assert!(
        pulls[0].body.contains("**Commits:** 1\n"),
        "{}",
        pulls[0].body
    );
    assert!(
        pulls[0].body.contains(&format!("**Job:** `{id}`")),
        "{}",
        pulls[0].body
    );
    assert!(
        pulls[0].body.contains("Co-Authored-By: "),
        "{}",
        pulls[0].body
    );
    // The agent branch is gone from the forge; the change is on main.
    assert!(!sim.branch_exists("core", "demo", &rec.branch));
    let bare = env.remotes.base.path().join("core/demo.git");
    let on_main = git(&bare, &["show", "main:agentq-change.txt"]);
    assert!(on_main.contains("change by codex"), "{on_main}");
    // The merge asked what Forgejo's option type defines, nothing dropped.
    let merges = sim.accepted_bodies("MergePullRequestOption");
    assert_eq!(merges.len(), 1, "{merges:?}");
    assert_eq!(merges[0]["Do"], "merge");
    assert_eq!(merges[0]["delete_branch_after_merge"], true);
    sim.assert_nothing_dropped();
    // The workspace's status.json says so too.
    let status = agentq_shared::status::WorkspaceStatus::read(
        &std::path::Path::new(&rec.workspace_dir).join("status.json"),
    )
    .unwrap();
    assert_eq!(status.status, JobState::Merged, "{status:?}");
    // `list --state merged`.
    let listed = env.cli_ok(&["list", "--state", "merged", "--json"]);
    assert!(listed.contains(&id), "{listed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_checks_need_review_and_agentq_verify_merges_once_they_are_fixed() {
    let (env, sim, _w) = world().await;
    sim.set_ci("core", "demo", "ci/build", "failure");
    let id = enqueue(&env, "Change it @agentq-test commit");
    let rec = ended_in(&env, &id, JobState::Completed).await;
    assert_eq!(rec.verify, Some(Verify::NeedsReview), "{rec:#?}");
    assert_eq!(rec.verify_reason, "checks failed: ci/build (failure)");
    let pulls = sim.pulls("core", "demo");
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    assert!(!pulls[0].merged, "{pulls:?}");
    assert_eq!(pulls[0].labels, ["needs-review"], "{pulls:?}");
    let comments = sim.comments("core", "demo", pulls[0].number);
    assert_eq!(comments.len(), 1, "{comments:?}");
    assert!(
        comments[0].body.contains("## Needs review")
            && comments[0].body.contains("`ci/build (failure)`"),
        "{}",
        comments[0].body
    );
    assert_eq!(
        needs_review_events(&env, &id),
        ["checks failed: ci/build (failure)"]
    );
    assert!(sim.branch_exists("core", "demo", &rec.branch));

    // A person fixes the checks; `agentq verify` merges it.
    sim.set_ci("core", "demo", "ci/build", "success");
    let out = env.cli(&["verify", &id, "--wait"], None);
    assert_eq!(out.status.code(), Some(0), "{out:?}\n{}", env.worker_logs());
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(
        (rec.state, rec.verify),
        (JobState::Merged, Some(Verify::Merged))
    );
    assert!(sim.pulls("core", "demo")[0].merged);
    assert!(!sim.branch_exists("core", "demo", &rec.branch));
    // Asked again: nothing more happens (merged already).
    let again = env.cli(&["verify", &id], None);
    assert_eq!(again.status.code(), Some(0), "{again:?}");
    assert_eq!(sim.accepted_bodies("MergePullRequestOption").len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_merge_refused_because_the_base_moved_is_rebased_once_and_merged() {
    let (env, sim, _w) = world().await;
    sim.block_outdated_branches("core", "demo", true);
    sim.advance_base_on_next_merge("core", "demo", "someone-else.txt", "theirs\n");
    let id = enqueue(&env, "Change it @agentq-test commit");
    ended_in(&env, &id, JobState::Merged).await;
    // Two merge requests: the refused one (405: behind the base) and the
    // one after the rebase, for the rebased head.
    assert_eq!(merge_answers(&sim), [405, 200]);
    let merged = sim.accepted_bodies("MergePullRequestOption");
    assert_eq!(merged.len(), 1, "{merged:?}");
    let head = git(&bare_of(&env), &["rev-parse", "main^2"]);
    assert_eq!(merged[0]["head_commit_id"], head.as_str());
    let bare = bare_of(&env);
    assert_eq!(git(&bare, &["show", "main:someone-else.txt"]), "theirs");
    // The rebased head sits on the moved base.
    assert_eq!(
        git(&bare, &["rev-parse", "main^2^"]),
        git(&bare, &["rev-parse", "main^1"])
    );
    assert!(git(&bare, &["show", "main:agentq-change.txt"]).contains("change by codex"));
    // The rebased head was pushed over the old one (the compare-and-swap), and
    // the agent's tree was never touched: its branch is still the old head.
    let pushes = sim.pushes();
    assert!(pushes.len() >= 2, "{pushes:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rebase_that_conflicts_needs_review() {
    let (env, sim, _w) = world().await;
    sim.advance_base_on_next_merge("core", "demo", "agentq-change.txt", "theirs\n");
    let id = enqueue(&env, "Change it @agentq-test commit");
    let rec = ended_in(&env, &id, JobState::Completed).await;
    assert_eq!(rec.verify, Some(Verify::NeedsReview));
    assert!(
        rec.verify_reason.starts_with("conflict after one rebase"),
        "{}",
        rec.verify_reason
    );
    let pulls = sim.pulls("core", "demo");
    assert_eq!(pulls[0].labels, ["needs-review"], "{pulls:?}");
    let comments = sim.comments("core", "demo", pulls[0].number);
    assert!(
        comments
            .iter()
            .any(|c| c.body.contains("conflict after one rebase")),
        "{comments:?}"
    );
    // One merge request (refused: not mergeable), one rebase, no second try.
    assert_eq!(merge_answers(&sim), [405]);
}

#[tokio::test(flavor = "multi_thread")]
async fn harvest_refuses_a_branch_that_adds_a_binary_file() {
    let (env, sim, _w) = world().await;
    let id = enqueue(
        &env,
        "Change it @agentq-test make-mess @agentq-test add-all",
    );
    let rec = ended_in(&env, &id, JobState::Completed).await;
    assert_eq!(rec.verify, Some(Verify::NeedsReview));
    assert_eq!(
        rec.verify_reason,
        "harvest refused the branch: binary file added: agentq-binary.bin"
    );
    // No pull request; the commits are kept on the shared remote.
    assert!(sim.pulls("core", "demo").is_empty());
    assert!(sim.branch_exists("core", "demo", &rec.branch));
    assert_eq!(
        needs_review_events(&env, &id),
        ["harvest refused the branch: binary file added: agentq-binary.bin"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn purge_deletes_the_branch_of_a_pull_request_closed_without_a_merge() {
    let (env, sim, _w) = world().await;
    sim.add_issue("core", "demo", 10, "Two", "Two.");
    sim.add_issue("core", "demo", 11, "Three", "Three.");
    sim.set_ci("core", "demo", "ci/build", "failure");
    let run = async |issue: &str| {
        let id = env.enqueue(&[
            "--agent",
            "codex",
            "--repo",
            "demo",
            "--issue",
            issue,
            "--task",
            "Change @agentq-test commit",
        ]);
        let rec = env.wait_final(&id, LONG).await;
        assert_eq!(rec.verify, Some(Verify::NeedsReview), "{rec:#?}");
        let n = sim
            .pulls("core", "demo")
            .iter()
            .find(|p| p.head == rec.branch)
            .map(|p| p.number)
            .unwrap();
        (rec, n)
    };
    // `--keep-branches`: the job goes, its branch stays.
    let (a, na) = run("9").await;
    sim.close_pull("core", "demo", na);
    let out = env.cli_ok(&[
        "purge",
        "--state",
        "completed",
        "--older-than",
        "0s",
        "--keep-branches",
    ]);
    assert!(
        out.contains("purged 1 completed") && !out.contains("left to the workers"),
        "{out}"
    );
    // Closed without a merge: deleted with the job; an open one's branch stays.
    let (open, _) = run("10").await;
    let (closed, nc) = run("11").await;
    sim.close_pull("core", "demo", nc);
    let out = env.cli_ok(&["purge", "--state", "completed", "--older-than", "0s"]);
    assert!(
        out.contains("2 agent branch(es) left to the workers"),
        "{out}"
    );
    assert!(out.contains("purged 2 completed"), "{out}");
    env.poll_until("the closed pull request's branch to go", LONG, async || {
        (!sim.branch_exists("core", "demo", &closed.branch)).then_some(())
    })
    .await;
    // Both entries were taken (the queue is empty), and only that one went.
    let mut conn = env.redis.conn();
    let key = format!("{}:verify:branches", env.ns);
    env.poll_until("the branch cleanups to be taken", LONG, async || {
        let left: usize = redis::Commands::llen(&mut conn, &key).unwrap();
        (left == 0).then_some(())
    })
    .await;
    assert!(sim.branch_exists("core", "demo", &open.branch));
    assert!(sim.branch_exists("core", "demo", &a.branch));
}

/// A job's `auto_merge` is over its pool's: `--auto-merge` merges a claude
/// job (its pool does not merge), `--no-auto-merge` leaves a codex job's pull
/// request open (its pool merges), and neither is flagged.
#[tokio::test(flavor = "multi_thread")]
async fn a_jobs_auto_merge_is_over_its_pools() {
    let (env, sim, _w) = world().await;
    sim.add_issue("core", "demo", 10, "Change more", "Please change more.");
    sim.set_ci("core", "demo", "ci/build", "success");
    let merged = env.enqueue(&[
        "--agent",
        "claude",
        "--repo",
        "demo",
        "--issue",
        "9",
        "--auto-merge",
        "--task",
        "Change it @agentq-test commit",
    ]);
    ended_in(&env, &merged, JobState::Merged).await;
    let kept = env.enqueue(&[
        "--agent",
        "codex",
        "--repo",
        "demo",
        "--issue",
        "10",
        "--no-auto-merge",
        "--task",
        "Change more @agentq-test commit",
    ]);
    let rec = ended_in(&env, &kept, JobState::Completed).await;
    assert_eq!(rec.verify, None, "{rec:#?}");
    let pulls = sim.pulls("core", "demo");
    assert_eq!(pulls.len(), 2, "{pulls:?}");
    let open: Vec<_> = pulls.iter().filter(|p| !p.merged).collect();
    assert_eq!(open.len(), 1, "{pulls:?}");
    assert!(open[0].labels.is_empty(), "{pulls:?}");
    assert_eq!(merge_answers(&sim), [200], "one merge, the claude job's");
}

/// The verify stage's outcomes reach a `[[notify]]` receiver, signed: a
/// `merged` event for the job merged, a `needs_review` event with the reason
/// for the job whose checks failed (both through the outbox, as every other
/// event).
#[tokio::test(flavor = "multi_thread")]
async fn merged_and_needs_review_reach_a_webhook_receiver_signed() {
    const SECRET: &str = "verify-hook-secret";
    let hook = HookReceiver::start(HookMode::Ok).await;
    let (env, sim, w) = world().await;
    drop(w);
    env.append_config(&format!(
        "[[notify]]\nurl = \"{}\"\nevents = [\"merged\", \"needs_review\"]\nsecret_env = \"AGENTQ_TEST_HOOK_SECRET\"\nallow_private = true\n",
        hook.url
    ));
    env.set_env("AGENTQ_TEST_HOOK_SECRET", SECRET);
    let _w = env.worker("w2", 1);
    sim.add_issue("core", "demo", 10, "Change more", "Please change more.");
    sim.set_ci("core", "demo", "ci/build", "success");
    let merged = enqueue(&env, "Change it @agentq-test commit");
    let rec = env.wait_final(&merged, LONG).await;
    assert_eq!(rec.state, JobState::Merged, "{rec:#?}");
    sim.set_ci("core", "demo", "ci/build", "failure");
    let flagged = env.enqueue(&[
        "--agent",
        "codex",
        "--repo",
        "demo",
        "--issue",
        "10",
        "--task",
        "Change more @agentq-test commit",
    ]);
    let rec = env.wait_final(&flagged, LONG).await;
    assert_eq!(rec.verify, Some(Verify::NeedsReview), "{rec:#?}");
    let got = poll_until("both events at the receiver", LONG, async || {
        let taken = hook.taken();
        let find = |event: &str, id: &str| {
            taken
                .iter()
                .find(|r| r.json()["event"] == event && r.json()["job"] == id)
                .cloned()
        };
        Some((find("merged", &merged)?, find("needs_review", &flagged)?))
    })
    .await;
    let (m, n) = got;
    assert!(m.signed_with(SECRET) && n.signed_with(SECRET));
    assert_eq!(m.json()["state"], "merged", "{}", m.json());
    assert_eq!(
        n.json()["reason"],
        "checks failed: ci/build (failure)",
        "{}",
        n.json()
    );
    assert_eq!(n.json()["pool"], "codex", "{}", n.json());
}
