//! Issue 5's acceptance: QA after the agent (real `go build/vet/test` in a
//! container) and write-back to a simulated Forgejo that follows the API spec;
//! issue 16's: the agent's run time on the issue as tracked times, right with jobs
//! running in parallel on one token.

use std::{path::Path, time::Duration};

use agentq_shared::status::{JobState, QaStatus, StatusFile, WorkspaceStatus};
use agentq_tests::{
    forge_sim::{ForgeSim, SIM_USER},
    *,
};
use redis::Commands;

const LONG: Duration = Duration::from_secs(180);
const TOKEN: &str = "forge-token-5f1d2c9e";

const GO_MOD: &str = "module demo\n\ngo 1.19\n";
const GO_LIB: &str = "package demo\n\n// Add adds.\nfunc Add(a, b int) int { return a + b }\n";
const GO_TEST_OK: &str = "package demo\n\nimport \"testing\"\n\nfunc TestAdd(t *testing.T) {\n\tif Add(2, 2) != 4 {\n\t\tt.Fatal(\"bad\")\n\t}\n}\n";
const GO_TEST_BAD: &str = "package demo\n\nimport \"testing\"\n\nfunc TestAdd(t *testing.T) {\n\tif Add(2, 2) != 5 {\n\t\tt.Fatal(\"2+2 is not 5\")\n\t}\n}\n";

fn require_go_image() {
    let ok = std::process::Command::new("docker")
        .args(["image", "inspect", "agentq-test-go:latest"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "agentq-test-go:latest is missing: install golang-go and run scripts/build-test-images"
    );
}

async fn world() -> (TestEnv, ForgeSim) {
    world_with("").await
}

/// The world with more `[forge]` keys.
async fn world_with(forge_keys: &str) -> (TestEnv, ForgeSim) {
    require_docker();
    require_go_image();
    let env = TestEnv::with_config(&format!(
        "[forge]\ntoken_env = \"AGENTQ_TEST_FORGE_TOKEN\"\nmax_retries = 3\nretry_base_ms = 50\n{forge_keys}\n[agents.codex]\nimage = \"agentq-test-go:latest\"\n",
    ));
    // Allow Go a little more memory than the base test config.
    let cfg_path = env.dir.path().join("agentq.toml");
    let cfg = std::fs::read_to_string(&cfg_path)
        .unwrap()
        .replace("memory_mb = 256", "memory_mb = 1024");
    std::fs::write(&cfg_path, cfg).unwrap();
    let sim = ForgeSim::start(TOKEN, env.remotes.base.path().to_path_buf()).await;
    env.set_env("AGENTQ_FORGE_URL", sim.url());
    env.set_env("AGENTQ_GIT_BASE", sim.url());
    env.set_env("AGENTQ_TEST_FORGE_TOKEN", TOKEN);
    (env, sim)
}

fn bare(env: &TestEnv, repo: &str) -> std::path::PathBuf {
    env.remotes
        .base
        .path()
        .join("core")
        .join(format!("{repo}.git"))
}

/// Every file under `dir` and every Redis value: none may hold the token.
fn assert_token_nowhere(env: &TestEnv) {
    let mut conn = env.redis.conn();
    let keys: Vec<String> = conn.keys("*").unwrap();
    for key in keys {
        let dump: Vec<u8> = redis::cmd("DUMP").arg(&key).query(&mut conn).unwrap();
        assert!(
            !dump.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()),
            "the forge token is in Redis key {key}"
        );
    }
    fn walk(dir: &Path) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                if p.file_name().is_some_and(|n| n == "objects") {
                    continue;
                }
                walk(&p);
            } else if ft.is_file() {
                let bytes = std::fs::read(&p).unwrap();
                assert!(
                    !bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()),
                    "the forge token is in {}",
                    p.display()
                );
            }
        }
    }
    walk(env.dir.path());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_completed_job_is_checked_pushed_and_reported_once() {
    let (env, sim) = world().await;
    env.remotes.create(
        "core",
        "demo",
        &[
            ("go.mod", GO_MOD),
            ("demo.go", GO_LIB),
            ("demo_test.go", GO_TEST_OK),
        ],
    );
    sim.add_repo("core", "demo", "main");
    sim.add_issue(
        "core",
        "demo",
        5,
        "Add a change",
        "Please add a change file.",
    );
    let _w = env.worker("w1", 2);
    let id = env.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        "5",
        "--task",
        "Add a change @agentq-test commit",
    ]);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(
        rec.state,
        JobState::Completed,
        "{rec:#?}\n{}",
        env.worker_logs()
    );
    assert_eq!(rec.qa_status, Some(QaStatus::Passed), "{rec:#?}");
    assert!(rec.forge_error.is_empty(), "{}", rec.forge_error);

    // The prompt had the issue from the forge.
    let prompt =
        std::fs::read_to_string(Path::new(&rec.workspace_dir).join(".meta/input/prompt.md"))
            .unwrap();
    assert!(
        prompt.contains("## ISSUE\n\n# Add a change\n\nPlease add a change file."),
        "{prompt}"
    );

    // The run's time is on the issue, as a tracked time (no stopwatch).
    let times = sim.tracked_times("core", "demo", 5);
    assert_eq!(times.len(), 1, "{times:?}");
    assert_eq!(times[0].user, SIM_USER);
    assert!(
        times[0].seconds >= 1 && !times[0].from_stopwatch,
        "{times:?}"
    );
    assert!(sim.stopwatch_events("core", "demo", 5).is_empty());
    assert_eq!(rec.time_tracked, 1);
    // The branch is on the remote with the agent's commit.
    let head = git(
        &bare(&env, "demo"),
        &["rev-parse", &format!("refs/heads/{}", rec.branch)],
    );
    let subject = git(&bare(&env, "demo"), &["log", "-1", "--format=%s", &head]);
    assert_eq!(subject, "agentq test: change by codex");
    let pulls = sim.pulls("core", "demo");
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    assert!(pulls[0].body.contains("Closes #5"), "{}", pulls[0].body);
    assert_eq!(pulls[0].head, rec.branch);
    // Every field of the pull request as agentq means it (none dropped).
    assert_eq!(pulls[0].base, "main");
    assert_eq!(
        pulls[0].title,
        "[agent/codex] Add a change @agentq-test commit"
    );
    assert!(
        pulls[0].body.starts_with(&format!(
            "## Task\n\nAdd a change @agentq-test commit\n\nCloses #5\n\n**Agent:** codex\n**Commits:** 1\n**Branch:** `{}`\n**Job:** `{id}`\n",
            rec.branch
        )),
        "{}",
        pulls[0].body
    );
    assert_eq!(
        rec.pr_url,
        format!("{}/core/demo/pulls/{}", sim.url(), pulls[0].number)
    );
    let comments = sim.comments("core", "demo", 5);
    assert_eq!(comments.len(), 1);
    assert!(
        comments[0].body.contains(&id) && comments[0].body.contains("completed"),
        "{}",
        comments[0].body
    );
    let states: Vec<String> = sim
        .statuses("core", "demo", &head)
        .iter()
        .map(|s| s.state.clone())
        .collect();
    assert_eq!(states, ["pending", "success"]);
    let st = WorkspaceStatus::read(&Path::new(&rec.workspace_dir).join("status.json")).unwrap();
    assert_eq!(st.pr_url, rec.pr_url);
    assert_eq!(st.qa.unwrap().status.as_str(), "passed");

    // Running the same job again makes no second PR or comment.
    env.cli_ok(&["retry", &id]);
    let again = env
        .wait_for(&id, LONG, |r| r.attempt == 2 && r.state.is_final())
        .await;
    assert_eq!(again.state, JobState::Completed, "{again:#?}");
    assert_eq!(sim.pulls("core", "demo").len(), 1);
    assert_eq!(sim.comments("core", "demo", 5).len(), 1);
    assert_eq!(again.pr_url, rec.pr_url);
    // The second run has its own time; the first one's is not added again.
    assert_eq!(sim.tracked_times("core", "demo", 5).len(), 2);
    assert_eq!(again.time_tracked, 2);

    assert_token_nowhere(&env);
    sim.assert_nothing_dropped();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_test_fails_the_job_without_a_pull_request() {
    let (env, sim) = world().await;
    env.remotes.create(
        "core",
        "broken",
        &[
            ("go.mod", GO_MOD),
            ("demo.go", GO_LIB),
            ("demo_test.go", GO_TEST_BAD),
        ],
    );
    sim.add_repo("core", "broken", "main");
    sim.add_issue("core", "broken", 6, "Fix it", "");
    let _w = env.worker("w1", 1);
    let id = env.enqueue(&[
        "--repo",
        "broken",
        "--issue",
        "6",
        "--task",
        "Try @agentq-test commit",
    ]);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Failed, "{rec:#?}");
    assert_eq!(rec.qa_status, Some(QaStatus::Failed));
    assert!(
        rec.error.starts_with("QA check failed: `go test"),
        "{}",
        rec.error
    );
    assert!(rec.qa_output.contains("2+2 is not 5"), "{}", rec.qa_output);
    assert!(
        sim.pulls("core", "broken").is_empty(),
        "no PR for a failed QA"
    );
    let head = git(
        &bare(&env, "broken"),
        &["rev-parse", &format!("refs/heads/{}", rec.branch)],
    );
    let states: Vec<String> = sim
        .statuses("core", "broken", &head)
        .iter()
        .map(|s| s.state.clone())
        .collect();
    assert_eq!(states, ["pending", "failure"]);
    let comments = sim.comments("core", "broken", 6);
    assert_eq!(comments.len(), 1);
    assert!(
        comments[0].body.contains("QA check failed"),
        "{}",
        comments[0].body
    );
    assert_token_nowhere(&env);
    sim.assert_nothing_dropped();
}

/// Issue 34: the branch is pushed beside QA. Here QA is done (nothing to
/// check: skipped) while the forge still holds the `pending` status sent
/// after the push: the final status still comes after it, on the same
/// commit, and the pull request after both. (QA run after the push and its
/// status would never end while the status is held: the forge's budget is
/// ten minutes here.)
#[tokio::test(flavor = "multi_thread")]
async fn qa_done_before_the_pending_status_lands_still_ends_pending_then_success() {
    let (env, sim) = world_with("timeout_secs = 600").await;
    env.remotes
        .create("core", "plain", &[("README.md", "# plain\n")]);
    sim.add_repo("core", "plain", "main");
    sim.add_issue("core", "plain", 7, "A note", "");
    sim.hang_on("POST", "/repos/core/plain/statuses");
    let _w = env.worker("w1", 1);
    let id = env.enqueue(&[
        "--repo",
        "plain",
        "--issue",
        "7",
        "--task",
        "Note @agentq-test commit",
    ]);
    let rec = env
        .wait_for(&id, LONG, |r| !r.workspace_dir.is_empty())
        .await;
    let qa_log = Path::new(&rec.workspace_dir).join(".meta/qa.log");
    let deadline = std::time::Instant::now() + LONG;
    while !std::fs::read_to_string(&qa_log).is_ok_and(|l| l.contains("# QA of commit")) {
        assert!(
            std::time::Instant::now() < deadline,
            "QA did not run while the pending status was held\n{}",
            env.worker_logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        sim.pulls("core", "plain").is_empty(),
        "a pull request before the statuses"
    );
    sim.stop_hanging();
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(
        (rec.state, rec.qa_status),
        (JobState::Completed, Some(QaStatus::Skipped)),
        "{rec:#?}\n{}",
        env.worker_logs()
    );
    assert!(
        rec.forge_error.is_empty(),
        "{}\n{}",
        rec.forge_error,
        env.worker_logs()
    );
    let head = git(
        &bare(&env, "plain"),
        &["rev-parse", &format!("refs/heads/{}", rec.branch)],
    );
    let statuses = sim.statuses("core", "plain", &head);
    let states: Vec<&str> = statuses.iter().map(|s| s.state.as_str()).collect();
    assert_eq!(states, ["pending", "success"], "{statuses:?}");
    assert_eq!(
        statuses[1].description,
        "QA skipped: nothing to build or test"
    );
    assert_eq!(sim.pulls("core", "plain").len(), 1);
    // Nothing to check: no checkout was made (one leaves its attributes
    // override in the worker repository) and no QA tree is left.
    let meta = Path::new(&rec.workspace_dir).join(".meta");
    assert!(!meta.join("git/info/attributes").exists());
    assert!(!meta.join("qa-tree").exists());
    sim.assert_nothing_dropped();
}

#[tokio::test(flavor = "multi_thread")]
async fn forge_trouble_is_retried_or_recorded_never_fatal() {
    let (env, sim) = world().await;
    env.remotes.create("core", "demo", &[]);
    sim.add_repo("core", "demo", "main");
    sim.add_issue("core", "demo", 7, "Flaky", "");
    sim.add_issue("core", "demo", 8, "Down", "");
    sim.fail_next("POST", "/repos/core/demo/issues/7/comments", 503, 2);
    let _w = env.worker("w1", 1);
    let id = env.enqueue(&["--repo", "demo", "--issue", "7", "--task", "plain"]);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    assert!(rec.forge_error.is_empty(), "{}", rec.forge_error);
    assert_eq!(
        sim.comments("core", "demo", 7).len(),
        1,
        "posted after two 503s"
    );
    assert_eq!(rec.qa_status, Some(QaStatus::Skipped));

    // The API alone down (git, the remote, still answers): see forge_strict.rs for
    // the whole forge down.
    sim.set_api_down(true);
    let id = env.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        "8",
        "--task",
        "while down @agentq-test commit",
    ]);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    assert!(rec.forge_error.contains("503"), "{}", rec.forge_error);
    let st = WorkspaceStatus::read(&Path::new(&rec.workspace_dir).join("status.json")).unwrap();
    assert_eq!(st.status.as_str(), "completed");
    assert!(st.forge_error.contains("track time"), "{}", st.forge_error);
    // The worker retries as `[forge] max_retries = 3` says: 4 attempts, not the
    // built-in default's 5.
    assert_eq!(
        sim.count_requests("GET", "/api/v1/repos/core/demo/issues/8"),
        4
    );
    assert_token_nowhere(&env);
    sim.assert_nothing_dropped();
}

#[tokio::test(flavor = "multi_thread")]
async fn parallel_jobs_on_one_token_each_track_their_own_time() {
    let (env, sim) = world().await;
    env.remotes.create("core", "demo", &[]);
    sim.add_repo("core", "demo", "main");
    sim.add_issue("core", "demo", 5, "Long", "");
    sim.add_issue("core", "demo", 6, "Short", "");
    let _w = env.worker("w1", 2);
    let long = env.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        "5",
        "--task",
        "long @agentq-test sleep 5",
    ]);
    let short = env.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        "6",
        "--task",
        "short @agentq-test sleep 2",
    ]);
    let long_rec = env.wait_final(&long, LONG).await;
    let short_rec = env.wait_final(&short, LONG).await;
    for rec in [&long_rec, &short_rec] {
        assert_eq!(
            rec.state,
            JobState::Completed,
            "{rec:#?}\n{}",
            env.worker_logs()
        );
        assert!(rec.forge_error.is_empty(), "{}", rec.forge_error);
        assert_eq!(rec.time_tracked, 1);
    }
    let on5 = sim.tracked_times("core", "demo", 5);
    let on6 = sim.tracked_times("core", "demo", 6);
    assert_eq!((on5.len(), on6.len()), (1, 1), "{on5:?} {on6:?}");
    let (a, b) = (&on5[0], &on6[0]);
    assert!(a.seconds >= 5 && a.seconds < 60, "{a:?}");
    assert!(b.seconds >= 2 && b.seconds < a.seconds, "{b:?}");
    assert!(a.user == SIM_USER && b.user == SIM_USER);
    // The runs overlapped: with a per-user stopwatch one would have cut the other.
    let overlap = a.created_unix.max(b.created_unix)
        < (a.created_unix + a.seconds).min(b.created_unix + b.seconds);
    assert!(overlap, "the two runs did not overlap: {a:?} {b:?}");
    assert!(sim.stopwatch_events("core", "demo", 5).is_empty());
    assert!(sim.stopwatch_events("core", "demo", 6).is_empty());

    // A repository without time tracking: one note, on the first job only.
    env.remotes.create("core", "quiet", &[]);
    sim.add_repo("core", "quiet", "main");
    sim.set_time_tracking("core", "quiet", false);
    sim.add_issue("core", "quiet", 1, "One", "");
    sim.add_issue("core", "quiet", 2, "Two", "");
    let first = env.enqueue(&["--repo", "quiet", "--issue", "1", "--task", "plain"]);
    let first = env.wait_final(&first, LONG).await;
    let second = env.enqueue(&["--repo", "quiet", "--issue", "2", "--task", "plain"]);
    let second = env.wait_final(&second, LONG).await;
    assert_eq!(first.state, JobState::Completed, "{first:#?}");
    assert_eq!(second.state, JobState::Completed, "{second:#?}");
    assert!(
        first
            .forge_error
            .starts_with("note: time not tracked on core/quiet: time tracking is disabled"),
        "{}",
        first.forge_error
    );
    assert!(second.forge_error.is_empty(), "{}", second.forge_error);
    assert_eq!(
        sim.count_requests("POST", "/api/v1/repos/core/quiet/issues/1/times")
            + sim.count_requests("POST", "/api/v1/repos/core/quiet/issues/2/times"),
        1
    );
    assert_eq!(sim.comments("core", "quiet", 2).len(), 1);
    assert_token_nowhere(&env);
    sim.assert_nothing_dropped();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stopwatch_remains_an_option_for_one_job_at_a_time() {
    let (env, sim) = world_with("time_tracking = \"stopwatch\"\n").await;
    env.remotes.create("core", "demo", &[]);
    sim.add_repo("core", "demo", "main");
    sim.add_issue("core", "demo", 3, "Timed", "");
    let _w = env.worker("w1", 1);
    let id = env.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        "3",
        "--task",
        "timed @agentq-test sleep 1",
    ]);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    assert!(rec.forge_error.is_empty(), "{}", rec.forge_error);
    assert_eq!(sim.stopwatch_events("core", "demo", 3), ["start", "stop"]);
    let times = sim.tracked_times("core", "demo", 3);
    assert_eq!(times.len(), 1, "{times:?}");
    assert!(times[0].from_stopwatch);
    assert!(sim
        .requests()
        .iter()
        .all(|r| !(r.method == "POST" && r.path.ends_with("/times"))));
    sim.assert_nothing_dropped();
}

/// Rewrites the world's config file with `f`.
fn edit_config(env: &TestEnv, f: impl FnOnce(String) -> String) {
    let path = env.config_path().to_path_buf();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, f(text)).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn with_auto_qa_off_a_completed_run_is_not_checked_and_gets_its_pull_request() {
    let (env, sim) = world().await;
    edit_config(&env, |t| format!("auto_qa = false\n{t}"));
    env.remotes.create(
        "core",
        "broken",
        &[
            ("go.mod", GO_MOD),
            ("demo.go", GO_LIB),
            ("demo_test.go", GO_TEST_BAD),
        ],
    );
    sim.add_repo("core", "broken", "main");
    sim.add_issue("core", "broken", 6, "Fix it", "");
    let _w = env.worker("w1", 1);
    let id = env.enqueue(&[
        "--repo",
        "broken",
        "--issue",
        "6",
        "--task",
        "Try @agentq-test commit",
    ]);
    let rec = env.wait_final(&id, LONG).await;
    // The failing test was never run: no QA state, no QA result, a PR.
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    assert_eq!(rec.qa_status, None, "{rec:#?}");
    let history = env.store().await.history(&id).await.unwrap();
    assert!(!history.iter().any(|h| h.state == "qa"), "{history:#?}");
    assert_eq!(sim.pulls("core", "broken").len(), 1);
    sim.assert_nothing_dropped();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pools_own_qa_commands_replace_detection_and_pr_on_qa_failure_opens_a_pull_request() {
    let (env, sim) = world_with("pr_on_qa_failure = true").await;
    // `go vet` on a package that does not exist fails; `go test` (detected)
    // would pass on this repository.
    edit_config(&env, |t| {
        t.replace(
            "image = \"agentq-test-go:latest\"",
            "image = \"agentq-test-go:latest\"\nqa = [[\"go\", \"vet\", \"./no/such/package\"]]",
        )
    });
    env.remotes.create(
        "core",
        "demo",
        &[
            ("go.mod", GO_MOD),
            ("demo.go", GO_LIB),
            ("demo_test.go", GO_TEST_OK),
        ],
    );
    sim.add_repo("core", "demo", "main");
    sim.add_issue("core", "demo", 5, "Add a change", "");
    let _w = env.worker("w1", 1);
    let id = env.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        "5",
        "--task",
        "Add a change @agentq-test commit",
    ]);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Failed, "{rec:#?}");
    assert_eq!(rec.qa_status, Some(QaStatus::Failed));
    assert!(
        rec.error
            .starts_with("QA check failed: `go vet ./no/such/package`"),
        "{}",
        rec.error
    );
    assert_eq!(
        sim.pulls("core", "demo").len(),
        1,
        "pr_on_qa_failure opens the PR anyway"
    );
    sim.assert_nothing_dropped();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_outcome_comment_is_edited_when_a_resumed_run_ends_differently() {
    let (env, sim) = world().await;
    env.remotes.create("core", "demo", &[]);
    sim.add_repo("core", "demo", "main");
    sim.add_issue("core", "demo", 9, "Which way", "");
    let _w = env.worker("w1", 1);
    let id = env.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        "9",
        "--task",
        "go @agentq-test block-unless /agentq/ANSWER.md \"Left or right?\" @agentq-test commit",
    ]);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Blocked, "{rec:#?}");
    let first = sim.comments("core", "demo", 9);
    assert_eq!(first.len(), 1);
    assert!(
        first[0].body.contains("blocked") && first[0].body.contains("Left or right?"),
        "{}",
        first[0].body
    );

    env.cli_ok(&["resume", &id, "--answer", "left"]);
    let rec = env
        .wait_for(&id, LONG, |r| r.runs == 2 && r.state.is_final())
        .await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    let after = sim.comments("core", "demo", 9);
    assert_eq!(after.len(), 1, "the same comment, not a second one");
    assert_eq!(after[0].id, first[0].id);
    assert!(
        after[0].body.contains("completed") && !after[0].body.contains("Left or right?"),
        "edited to the new outcome: {}",
        after[0].body
    );
    sim.assert_nothing_dropped();
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_pr_off_saves_the_branch_but_opens_no_pull_request() {
    let (env, sim) = world_with("auto_pr = false").await;
    env.remotes.create("core", "demo", &[]);
    sim.add_repo("core", "demo", "main");
    sim.add_issue("core", "demo", 3, "No PR", "");
    let _w = env.worker("w1", 1);
    let id = env.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        "3",
        "--task",
        "Change @agentq-test commit",
    ]);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    assert!(sim.pulls("core", "demo").is_empty(), "no pull request");
    assert!(rec.pr_url.is_empty(), "{rec:#?}");
    // The agent's commit is still saved on the shared remote, as agentq's own
    // branch, and the outcome is still told on the issue.
    let head = git(
        &bare(&env, "demo"),
        &["rev-parse", &format!("refs/heads/{}", rec.branch)],
    );
    let subject = git(&bare(&env, "demo"), &["log", "-1", "--format=%s", &head]);
    assert_eq!(subject, "agentq test: change by codex");
    assert_eq!(sim.comments("core", "demo", 3).len(), 1);
    sim.assert_nothing_dropped();
}

#[tokio::test(flavor = "multi_thread")]
async fn base_branch_is_the_pull_requests_base() {
    let (env, sim) = world_with("base_branch = \"release\"").await;
    env.remotes.create("core", "demo", &[]);
    git(&bare(&env, "demo"), &["branch", "release", "main"]);
    sim.add_repo("core", "demo", "main");
    sim.add_issue("core", "demo", 4, "Into release", "");
    let _w = env.worker("w1", 1);
    let id = env.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        "4",
        "--task",
        "Change @agentq-test commit",
    ]);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    let pulls = sim.pulls("core", "demo");
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    assert_eq!(pulls[0].base, "release", "{pulls:?}");
    assert_eq!(pulls[0].head, rec.branch);
    sim.assert_nothing_dropped();
}

#[tokio::test(flavor = "multi_thread")]
async fn qa_runs_each_languages_commands_in_order_inside_the_container() {
    require_docker();
    let env = TestEnv::new();
    // The stand-ins for composer, npm, cargo and pytest exist only in the test
    // image; each fails at the command `.qa-fail` names, after the ones before
    // it passed.
    let cases = [
        (
            "php",
            "composer.json",
            "{}",
            "composer test",
            "composer install",
        ),
        ("node", "package.json", "{}", "npm test", "npm install"),
        (
            "rust",
            "Cargo.toml",
            "[package]\nname = \"x\"\n",
            "cargo test",
            "cargo build",
        ),
        (
            "python",
            "pyproject.toml",
            "[project]\nname = \"x\"\n",
            "pytest",
            "",
        ),
    ];
    for (repo, file, text, failing, _) in &cases {
        env.remotes
            .create("core", repo, &[(file, text), (".qa-fail", failing)]);
    }
    let _w = env.worker("w1", 4);
    let ids: Vec<String> = cases
        .iter()
        .enumerate()
        .map(|(i, (repo, ..))| {
            env.enqueue(&[
                "--repo",
                repo,
                "--issue",
                &(i + 1).to_string(),
                "--task",
                "plain",
            ])
        })
        .collect();
    for ((repo, _, _, failing, before), id) in cases.iter().zip(&ids) {
        let rec = env.wait_final(id, LONG).await;
        assert_eq!(rec.state, JobState::Failed, "{repo}: {rec:#?}");
        assert_eq!(rec.qa_status, Some(QaStatus::Failed), "{repo}: {rec:#?}");
        assert!(
            rec.error
                .starts_with(&format!("QA check failed: `{failing}")),
            "{repo}: {}",
            rec.error
        );
        assert!(
            rec.qa_output
                .contains(&format!("fake {failing} ran in the agentq test image")),
            "{repo}: QA did not run in the container: {}",
            rec.qa_output
        );
        let log =
            std::fs::read_to_string(Path::new(&rec.workspace_dir).join(".meta").join("qa.log"))
                .unwrap_or_default();
        if !before.is_empty() {
            assert!(
                log.contains(&format!("fake {before} ran in the agentq test image")),
                "{repo}: `{before}` did not run first: {log}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn qa_timeout_secs_stops_a_qa_command_that_runs_too_long() {
    require_docker();
    let env = TestEnv::with_config("qa_timeout_secs = 2\n");
    env.append_config("[agents.codex]\nqa = [[\"sh\", \"-c\", \"sleep 60\"]]\n");
    env.remotes.create("core", "demo", &[]);
    let _w = env.worker("w1", 1);
    let id = env.enqueue(&["--repo", "demo", "--issue", "1", "--task", "plain"]);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Failed, "{rec:#?}");
    assert_eq!(rec.qa_status, Some(QaStatus::Failed), "{rec:#?}");
    assert_eq!(
        rec.error, "QA check failed: `sh -c sleep 60` ran past 2s",
        "{rec:#?}"
    );
    assert_eq!(rec.qa_command, "sh -c sleep 60", "{rec:#?}");
    assert!(
        containers_with_label("agentq.job", &id).is_empty(),
        "a container of the job (the timed-out QA one?) was left behind"
    );
}
