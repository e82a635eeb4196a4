//! Issue 5's acceptance: QA after the agent (real `go build/vet/test` in a
//! container) and write-back to a simulated Forgejo that follows the API spec.

use std::{path::Path, time::Duration};

use agentq_shared::status::{JobState, WorkspaceStatus};
use agentq_tests::{forge_sim::ForgeSim, *};
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
    require_docker();
    require_go_image();
    let env = TestEnv::with_config(
        "[forge]\ntoken_env = \"AGENTQ_TEST_FORGE_TOKEN\"\nmax_retries = 3\nretry_base_ms = 50\n\n[agents.codex]\nimage = \"agentq-test-go:latest\"\n",
    );
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
    assert_eq!(rec.qa_status, "passed", "{rec:#?}");
    assert!(rec.forge_error.is_empty(), "{}", rec.forge_error);

    // The prompt had the issue from the forge.
    let prompt =
        std::fs::read_to_string(Path::new(&rec.workspace_dir).join(".meta/input/prompt.md"))
            .unwrap();
    assert!(
        prompt.contains("## ISSUE\n\n# Add a change\n\nPlease add a change file."),
        "{prompt}"
    );

    assert_eq!(sim.stopwatch_events("core", "demo", 5), ["start", "stop"]);
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
    assert!(
        pulls[0].title.starts_with("[agent/codex] Add a change"),
        "{}",
        pulls[0].title
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
    assert_eq!(st.qa.unwrap().status, "passed");

    // Running the same job again makes no second PR or comment.
    env.cli_ok(&["retry", &id]);
    let again = env
        .wait_for(&id, LONG, |r| r.attempt == 2 && r.state.is_final())
        .await;
    assert_eq!(again.state, JobState::Completed, "{again:#?}");
    assert_eq!(sim.pulls("core", "demo").len(), 1);
    assert_eq!(sim.comments("core", "demo", 5).len(), 1);
    assert_eq!(again.pr_url, rec.pr_url);

    assert_token_nowhere(&env);
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
    assert_eq!(rec.qa_status, "failed");
    assert!(
        rec.question.starts_with("QA check failed: `go test"),
        "{}",
        rec.question
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
    assert_eq!(rec.qa_status, "skipped");

    sim.set_down(true);
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
    assert_eq!(st.status, "completed");
    assert!(st.forge_error.contains("stopwatch"), "{}", st.forge_error);
    assert_token_nowhere(&env);
}
