//! Issue 26, the git rows: what is pushed is what was checked (QA on a clean
//! checkout of the commit, never the agent's working tree; the commit status on
//! that commit), one agent branch per job's work (the same task on two issues
//! makes two branches and two pull requests), and injective workspace names
//! (`--branch rel/1` and `--branch rel-1` are two workspaces with two leases).
//! Real worker, real Docker, real git, the simulated forge.

use std::time::Duration;

use agentq_shared::status::{JobState, QaStatus, StatusFile, WaitReason};
use agentq_tests::{forge_sim::ForgeSim, *};

const LONG: Duration = Duration::from_secs(180);
const TOKEN: &str = "forge-token-git-3b9e51";
/// The red-team image: `agentq-redteam:latest`, or `$AGENTQ_TEST_REDTEAM_IMAGE`
/// (a private tag of the same build, while others rebuild the shared one).
fn redteam_image() -> String {
    std::env::var("AGENTQ_TEST_REDTEAM_IMAGE").unwrap_or_else(|_| "agentq-redteam:latest".into())
}

/// The red-team image with this file's directives (`commit-file`, `write`,
/// `rm`, `commit-zeros`): an image built from an older tree lacks them, and its
/// agent would silently do nothing.
fn require_redteam_directives() {
    require_directives(
        &redteam_image(),
        &["commit-file", "write", "rm", "commit-zeros"],
    );
}

/// A world with the simulated forge; `extra` are config tables (the agents'
/// image, for one).
async fn forge_world(extra: &str) -> (TestEnv, ForgeSim) {
    let env = TestEnv::with_config(&format!(
        "[forge]\ntoken_env = \"AGENTQ_TEST_FORGE_TOKEN\"\nmax_retries = 1\nretry_base_ms = 50\n{extra}"
    ));
    let sim = ForgeSim::start(TOKEN, env.remotes.base.path().to_path_buf()).await;
    env.set_env("AGENTQ_FORGE_URL", sim.url());
    env.set_env("AGENTQ_GIT_BASE", sim.url());
    env.set_env("AGENTQ_TEST_FORGE_TOKEN", TOKEN);
    (env, sim)
}

/// A Node repository (QA runs the test image's stand-ins `npm install` and
/// `npm test`; `npm test` fails when the checked tree's `.qa-fail` says so).
fn node_repo(env: &TestEnv, sim: &ForgeSim, repo: &str, issue: u64) -> std::path::PathBuf {
    let bare = env.remotes.create(
        "core",
        repo,
        &[("package.json", "{}\n"), ("README.md", "# demo\n")],
    );
    sim.add_repo("core", repo, "main");
    sim.add_issue("core", repo, issue, "Change it", "Do it.");
    bare
}

fn statuses(sim: &ForgeSim, repo: &str, sha: &str) -> Vec<String> {
    sim.statuses("core", repo, sha)
        .iter()
        .map(|s| s.state.clone())
        .collect()
}

/// The agent commits a file that breaks `npm test` and deletes `package.json`
/// without committing the deletion. QA used to look at the working tree: no
/// `package.json`, QA skipped, status `success` on a commit that fails. Now QA
/// checks the commit: it fails, and the status of that commit says `failure`.
#[tokio::test(flavor = "multi_thread")]
async fn qa_checks_the_commit_not_a_working_tree_that_hides_the_breakage() {
    require_redteam_directives();
    let (env, sim) = forge_world(&format!(
        "[agents.codex]\nimage = \"{}\"\n",
        redteam_image()
    ))
    .await;
    let bare = node_repo(&env, &sim, "hide", 3);
    let _w = env.worker("w1", 1);
    let id = env.enqueue(&[
        "--repo",
        "hide",
        "--issue",
        "3",
        "--task",
        "go @redteam commit-file .qa-fail npm test @redteam rm package.json",
    ]);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(
        rec.state,
        JobState::Failed,
        "{rec:#?}\n{}",
        env.worker_logs()
    );
    assert_eq!(rec.qa_status, Some(QaStatus::Failed), "{rec:#?}");
    assert!(
        rec.error.starts_with("QA check failed: `npm test`"),
        "{}",
        rec.error
    );
    let head = git(&bare, &["rev-parse", &format!("refs/heads/{}", rec.branch)]);
    assert_eq!(
        git(&bare, &["log", "-1", "--format=%s", &head]),
        "redteam: commit .qa-fail"
    );
    assert_eq!(statuses(&sim, "hide", &head), ["pending", "failure"]);
    assert!(
        sim.pulls("core", "hide").is_empty(),
        "no PR for a failed QA"
    );
    // The checkout QA ran on is gone; the agent's tree is as the agent left it.
    let ws = std::path::Path::new(&rec.workspace_dir);
    assert!(!ws.join(".meta/qa-tree").exists());
    assert!(!ws.join("repo/package.json").exists());
    sim.assert_nothing_dropped();
}

/// The converse: the commit is good, and an uncommitted file in the working
/// tree would break `npm test`. QA used to fail on it; now it passes, and the
/// status of the pushed commit is `success`.
#[tokio::test(flavor = "multi_thread")]
async fn an_uncommitted_breaking_file_does_not_fail_a_good_commit() {
    require_redteam_directives();
    let (env, sim) = forge_world(&format!(
        "[agents.codex]\nimage = \"{}\"\n",
        redteam_image()
    ))
    .await;
    let bare = node_repo(&env, &sim, "good", 4);
    let _w = env.worker("w1", 1);
    let id = env.enqueue(&[
        "--repo",
        "good",
        "--issue",
        "4",
        "--task",
        "go @redteam commit @redteam write .qa-fail npm test",
    ]);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(
        rec.state,
        JobState::Completed,
        "{rec:#?}\n{}",
        env.worker_logs()
    );
    assert_eq!(rec.qa_status, Some(QaStatus::Passed), "{rec:#?}");
    assert!(
        rec.qa_output
            .contains("fake npm test ran in the agentq test image"),
        "{}",
        rec.qa_output
    );
    let head = git(&bare, &["rev-parse", &format!("refs/heads/{}", rec.branch)]);
    assert_eq!(statuses(&sim, "good", &head), ["pending", "success"]);
    assert_eq!(sim.pulls("core", "good").len(), 1);
    sim.assert_nothing_dropped();
}

/// The same task text on issues 70 and 71, run at the same time: two branches,
/// two pull requests, each closing its own issue, both jobs complete. (One
/// branch per repository and task made the second job fail "remote branch
/// moved", or put its commit into the first issue's pull request.)
#[tokio::test(flavor = "multi_thread")]
async fn the_same_task_on_two_issues_makes_two_branches_and_two_pull_requests() {
    require_image("agentq-test-agent:latest");
    let (env, sim) = forge_world("").await;
    let bare = env
        .remotes
        .create("core", "demo", &[("README.md", "# demo\n")]);
    sim.add_repo("core", "demo", "main");
    for n in [70, 71] {
        sim.add_issue("core", "demo", n, "Same work", "Do it.");
    }
    let _w = env.worker("w1", 2);
    let task = "Tidy up @agentq-test hold @agentq-test commit";
    let a = env.enqueue_for_issue(70, task);
    let b = env.enqueue_for_issue(71, task);
    // Both agents run at once before either commits.
    env.wait_holding(2).await;
    env.release_holds();
    let (ra, rb) = (
        env.wait_final(&a, LONG).await,
        env.wait_final(&b, LONG).await,
    );
    for r in [&ra, &rb] {
        assert_eq!(
            r.state,
            JobState::Completed,
            "{r:#?}\n{}",
            env.worker_logs()
        );
    }
    assert!(
        ra.branch.starts_with("agent/issue-70-tidy-up-"),
        "{}",
        ra.branch
    );
    assert!(
        rb.branch.starts_with("agent/issue-71-tidy-up-"),
        "{}",
        rb.branch
    );
    for r in [&ra, &rb] {
        git(
            &bare,
            &["rev-parse", "--verify", &format!("refs/heads/{}", r.branch)],
        );
    }
    let pulls = sim.pulls("core", "demo");
    assert_eq!(pulls.len(), 2, "{pulls:?}");
    for (r, issue) in [(&ra, 70), (&rb, 71)] {
        let p = pulls
            .iter()
            .find(|p| p.head == r.branch)
            .unwrap_or_else(|| panic!("no PR for {}: {pulls:?}", r.branch));
        assert!(p.body.contains(&format!("Closes #{issue}")), "{}", p.body);
        assert_eq!(
            r.pr_url,
            format!("{}/core/demo/pulls/{}", sim.url(), p.number)
        );
    }
    sim.assert_nothing_dropped();
}

/// `--branch rel/1` and `--branch rel-1` of one repository: two workspace
/// directories, and both jobs hold their workspace leases at once (they used to
/// share one directory, so the second waited for the first's workspace).
#[tokio::test(flavor = "multi_thread")]
async fn branches_rel_slash_1_and_rel_dash_1_are_two_workspaces() {
    require_image("agentq-test-agent:latest");
    let env = TestEnv::new();
    let bare = env
        .remotes
        .create("core", "demo", &[("README.md", "# demo\n")]);
    git(&bare, &["branch", "rel/1", "main"]);
    git(&bare, &["branch", "rel-1", "main"]);
    let _w = env.worker("w1", 2);
    let job = |branch: &str| {
        env.enqueue(&[
            "--repo",
            "demo",
            "--branch",
            branch,
            "--task",
            "Check it @agentq-test hold",
        ])
    };
    let (slash, dash) = (job("rel/1"), job("rel-1"));
    // Both agents hold at once: each job holds its own workspace lease. A job
    // parked on the other's workspace is the old, shared name.
    let store = env.store().await;
    let deadline = std::time::Instant::now() + LONG;
    while env.holding().len() < 2 {
        for id in [&slash, &dash] {
            let rec = store.get(id).await.unwrap().unwrap();
            assert_ne!(
                rec.reason,
                Some(WaitReason::Workspace),
                "{id} waits for the other job's workspace: {rec:#?}"
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}\n{}",
            env.holding(),
            env.worker_logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    env.release_holds();
    let (rs, rd) = (
        env.wait_final(&slash, LONG).await,
        env.wait_final(&dash, LONG).await,
    );
    for r in [&rs, &rd] {
        assert_eq!(r.state, JobState::Completed, "{r:#?}");
    }
    let root = env.workspace_root();
    assert_eq!(
        std::path::Path::new(&rs.workspace_dir),
        root.join("core/demo/branch-rel%2F1")
    );
    assert_eq!(
        std::path::Path::new(&rd.workspace_dir),
        root.join("core/demo/branch-rel-1")
    );
    assert_ne!(rs.branch, rd.branch);
}

/// A commit whose files add up to more than the workspace limit (64 MiB of
/// zeros: a few KiB of git objects, the file itself deleted from the tree) is
/// never written out for QA: QA fails on it, as the agent's doing. (QA on the
/// working tree used to pass it; a checkout would have written it all.)
#[tokio::test(flavor = "multi_thread")]
async fn a_commit_over_the_workspace_limit_is_not_checked_out() {
    require_redteam_directives();
    let env = TestEnv::with_config("workspace_limit_mb = 16");
    env.append_config(&format!(
        "[agents.codex]\nimage = \"{}\"\n",
        redteam_image()
    ));
    env.remotes
        .create("core", "demo", &[("package.json", "{}\n")]);
    let _w = env.worker("w1", 1);
    let id = env.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        "5",
        "--task",
        "go @redteam commit-zeros 64",
    ]);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(
        rec.state,
        JobState::Failed,
        "{rec:#?}\n{}",
        env.worker_logs()
    );
    assert_eq!(rec.qa_status, Some(QaStatus::Failed), "{rec:#?}");
    assert!(
        rec.error
            .contains("over 16777216 bytes (the workspace limit)"),
        "{}",
        rec.error
    );
    let ws = std::path::Path::new(&rec.workspace_dir);
    assert!(!ws.join(".meta/qa-tree").exists());
}

/// Upgrading: a workspace whose `status.json` (written by the old version)
/// names an old-style branch `agent/{slug of task}` for the same task keeps
/// that branch: the new job builds on its commits, and its record names it
/// from then on (retries and resumes keep it).
#[tokio::test(flavor = "multi_thread")]
async fn an_old_workspaces_branch_of_the_same_task_is_kept() {
    require_image("agentq-test-agent:latest");
    let env = TestEnv::new();
    let bare = env
        .remotes
        .create("core", "demo", &[("README.md", "# demo\n")]);
    let task = "carry on @agentq-test commit";
    let legacy = "agent/carry-on-agentq-test-commit";
    // The old version's branch on the remote, with one commit on it.
    let work = tempfile::tempdir().unwrap();
    git(work.path(), &["clone", "-q", bare.to_str().unwrap(), "."]);
    git(work.path(), &["checkout", "-q", "-b", legacy]);
    std::fs::write(work.path().join("old.txt"), "old work\n").unwrap();
    git(work.path(), &["add", "old.txt"]);
    git(work.path(), &["commit", "-q", "-m", "old work"]);
    git(work.path(), &["push", "-q", "origin", legacy]);
    let old_head = git(&bare, &["rev-parse", &format!("refs/heads/{legacy}")]);
    // The old version's workspace for issue 9 says so.
    let ws = env.workspace_root().join("core/demo/task-9");
    std::fs::create_dir_all(&ws).unwrap();
    agentq_shared::status::WorkspaceStatus {
        task: task.into(),
        branch: legacy.into(),
        issue: 9,
        ..Default::default()
    }
    .write_atomic(&ws.join("status.json"))
    .unwrap();
    let _w = env.worker("w1", 1);
    let id = env.enqueue_for_issue(9, task);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(
        rec.state,
        JobState::Completed,
        "{rec:#?}\n{}",
        env.worker_logs()
    );
    assert_eq!(rec.branch, legacy);
    let head = git(&bare, &["rev-parse", &format!("refs/heads/{legacy}")]);
    assert_eq!(git(&bare, &["rev-parse", &format!("{head}~1")]), old_head);
    // Another task in the same workspace gets the new naming.
    let other = env.enqueue_for_issue(9, "something else");
    let rec = env.wait_final(&other, LONG).await;
    assert_eq!(rec.branch, "agent/issue-9-something-else", "{rec:#?}");
}

/// The agent commits `.gitattributes` asking for a filter driver that the
/// worker host's git configuration defines (as git-lfs does): the worker's git
/// never runs it, neither when QA checks the commit out nor when the next run
/// of the job builds its working tree from the branch.
#[tokio::test(flavor = "multi_thread")]
async fn a_committed_gitattributes_never_runs_a_hosts_filter_driver() {
    require_redteam_directives();
    let env = TestEnv::with_config(&format!(
        "[agents.codex]\nimage = \"{}\"\n",
        redteam_image()
    ));
    let home = env.dir.path().join("home");
    let marker = env.dir.path().join("filter-ran");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(
        home.join(".gitconfig"),
        format!(
            "[filter \"evil\"]\n\tsmudge = touch {} && cat\n",
            marker.display()
        ),
    )
    .unwrap();
    env.set_env("HOME", home.to_string_lossy());
    env.remotes
        .create("core", "demo", &[("README.md", "# demo\n")]);
    let _w = env.worker("w1", 1);
    let id = env.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        "6",
        "--task",
        "go @redteam commit-file .gitattributes * filter=evil",
    ]);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(
        rec.state,
        JobState::Completed,
        "{rec:#?}\n{}",
        env.worker_logs()
    );
    assert!(!marker.exists(), "QA's checkout ran the filter driver");
    // The next run builds its tree from the branch that has the attributes.
    env.cli_ok(&["retry", &id]);
    let rec = env
        .wait_for(&id, LONG, |r| r.attempt == 2 && r.state.is_final())
        .await;
    assert_eq!(
        rec.state,
        JobState::Completed,
        "{rec:#?}\n{}",
        env.worker_logs()
    );
    assert!(!marker.exists(), "prep's checkout ran the filter driver");
}
