//! Issue 28's configurable agent table, end to end: a pool added in
//! `[agents.NAME]` runs through the real worker like a built-in one (its own
//! command, model, fixed env, home dirs and home), `agentq agents` lists it,
//! an unknown pool is refused at enqueue, an invalid table stops `agentq` and
//! the worker with exit 2, and a worker whose table lacks a pool never takes
//! (nor drops) its jobs.

use std::{
    os::unix::fs::PermissionsExt,
    path::Path,
    time::{Duration, Instant},
};

use agentq_shared::status::{JobState, WaitReason};
use agentq_tests::*;

const LONG: Duration = Duration::from_secs(180);

/// `mytool`: the test agent (as `claude -p`, reading its prompt on stdin)
/// behind a wrapper that prints the pool's fixed env value and `{model}`;
/// QA prints what it sees of the same variable. `rohome`: the test agent
/// given `{prompt_file}`, with a home it cannot write.
const POOLS: &str = r#"
[agents.mytool]
image = "agentq-test-agent:latest"
command = ["sh", "-c", 'printf "fixed=%s model=%s\n" "$MYTOOL_FIXED" "$1"; exec claude -p', "sh", "{model}"]
stdin = true
default_model = "stub/default"
env = { MYTOOL_FIXED = "fixed-value-28" }
home_dirs = [".mytool"]
limit_patterns = ["rate limit"]
qa = [["sh", "-c", "echo qa-sees=${MYTOOL_FIXED:-unset}"]]

[agents.rohome]
image = "agentq-test-agent:latest"
command = ["sh", "-c", 'exec codex exec "$(cat "$1")"', "sh", "{prompt_file}"]
writable_home = false
"#;

/// A world with [`POOLS`] and an agent home holding `.mytool/conf`.
fn world() -> TestEnv {
    let env = TestEnv::with_config(POOLS);
    let home = env.dir.path().join("agent-home");
    let dir = home.join(".mytool");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("conf"), "mytool config\n").unwrap();
    for (p, mode) in [(&home, 0o755), (&dir, 0o755), (&dir.join("conf"), 0o644)] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    env.set_env("DIR_HOME", home.to_string_lossy());
    env
}

fn meta_file(rec: &agentq_shared::record::JobRecord, name: &str) -> String {
    let p = Path::new(&rec.workspace_dir).join(".meta").join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configured_pool_runs_its_own_command_through_the_real_worker() {
    require_docker();
    let env = world();
    env.remotes
        .create("core", "demo", &[("README.md", "demo\n")]);

    // `agentq agents` lists the table as the workers run it.
    let json: serde_json::Value = serde_json::from_str(&env.cli_ok(&["agents", "--json"])).unwrap();
    let rows = json.as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["pool"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "codex",
            "claude",
            "gemini",
            "coderabbit",
            "local",
            "mytool",
            "rohome"
        ]
    );
    let mytool = &rows[5];
    assert_eq!(mytool["kind"], "configured");
    assert_eq!(mytool["image"], TEST_IMAGE);
    assert_eq!(mytool["image_present"], "yes", "{mytool}");
    assert_eq!(mytool["prompt"], "stdin");
    assert_eq!(mytool["default_model"], "stub/default");
    assert_eq!(mytool["command"][4], "{model}", "placeholders unexpanded");
    assert_eq!(mytool["env"]["MYTOOL_FIXED"], "fixed-value-28");
    assert_eq!(mytool["home_dirs"], serde_json::json!([".mytool"]));
    assert_eq!(mytool["limit_patterns"], serde_json::json!(["rate limit"]));
    assert_eq!(rows[6]["prompt"], "file");
    assert_eq!(rows[6]["writable_home"], false);
    let text = env.cli_ok(&["agents"]);
    assert!(
        text.contains("mytool (configured)") && text.contains("present: yes"),
        "{text}"
    );

    // An unknown pool is refused at enqueue, before anything is written.
    let out = env.cli(
        &[
            "enqueue", "--repo", "demo", "--task", "t", "--issue", "9", "--agent", "nosuch:m",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("agent") && err.contains("unknown agent `nosuch:m`"),
        "{err}"
    );

    let id = env.enqueue(&[
        "--repo",
        "demo",
        "--agent",
        "mytool:org/model:tag",
        "--task",
        "@agentq-test require /agentq-home/.mytool/conf @agentq-test commit",
        "--issue",
        "1",
    ]);
    let ro = env.enqueue(&[
        "--repo",
        "demo",
        "--agent",
        "rohome",
        "--task",
        "@agentq-test write-home",
        "--issue",
        "2",
    ]);
    let _w = env.worker("w1", 2);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    assert_eq!(rec.input.agent, "mytool:org/model:tag");

    // Its command ran, with the model and the fixed value; the prompt came on
    // stdin (the test agent read its directives there) and the home dir was
    // mounted (`require` found it).
    let log = meta_file(&rec, "agent-mytool.log");
    assert!(
        log.contains("fixed=fixed-value-28 model=org/model:tag"),
        "{log}"
    );
    assert!(
        log.contains("agentq-test-agent: claude") && log.contains("stdin-bytes="),
        "{log}"
    );
    assert!(log.contains("committed"), "{log}");
    // Its commit was imported onto the agent branch.
    let repo = Path::new(&rec.workspace_dir).join("repo");
    let subjects = git(&repo, &["log", "--format=%s", "origin/main..HEAD"]);
    assert_eq!(subjects, "agentq test: change by claude");
    assert_eq!(
        git(&repo, &["rev-parse", "--abbrev-ref", "HEAD"]),
        rec.branch
    );
    // QA ran in the same image without the pool's fixed env.
    let qa = meta_file(&rec, "qa.log");
    assert!(qa.contains("qa-sees=unset"), "{qa}");
    assert!(!qa.contains("fixed-value-28"), "{qa}");

    // `writable_home = false`: the agent cannot write in its home.
    let rec = env.wait_final(&ro, LONG).await;
    assert_eq!(rec.state, JobState::Failed, "{rec:#?}");
    assert_eq!(rec.exit_code, Some(71), "{rec:#?}");
    let log = meta_file(&rec, "agent-rohome.log");
    assert!(log.contains("agentq-test-agent: codex"), "{log}");
    assert!(log.contains("cannot write to HOME=/agentq-home"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_agent_table_makes_agentq_and_the_worker_exit_2_naming_the_key() {
    let env = TestEnv::with_config(
        "[agents.aider]\ncommand = [\"aider\", \"--yes\", \"--model\", \"{foo}\"]\n",
    );
    let out = env.cli(&["agents"], None);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("agents.aider.command[3]: unknown placeholder {foo}"),
        "{err}"
    );
    let out = env.cli(
        &["enqueue", "--repo", "demo", "--task", "t", "--issue", "1"],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let mut w = env.worker("w1", 1);
    let status = w.wait_exit(LONG);
    assert_eq!(status.code(), Some(2), "{}", env.worker_logs());
    assert!(
        env.worker_logs()
            .contains("agents.aider.command[3]: unknown placeholder {foo}"),
        "{}",
        env.worker_logs()
    );
}

/// Waits until `n` workers are live.
async fn wait_live_workers(env: &TestEnv, n: usize) {
    let deadline = Instant::now() + LONG;
    loop {
        let out = env.cli_ok(&["workers", "--json"]);
        if out.lines().filter(|l| !l.trim().is_empty()).count() >= n {
            return;
        }
        assert!(Instant::now() < deadline, "{n} workers never came up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_without_the_pool_never_takes_or_drops_its_jobs() {
    require_docker();
    let env = world();
    env.remotes.create("core", "demo", &[]);
    // This worker's agentq.toml has no [agents.mytool].
    let plain = env.dir.path().join("plain.toml");
    let cfg = std::fs::read_to_string(env.config_path()).unwrap();
    let cut = cfg.find("[agents.mytool]").unwrap();
    std::fs::write(&plain, &cfg[..cut]).unwrap();

    // Enqueued while no worker is live: the job is delivered to the first
    // worker that comes, which does not know its pool.
    let job = env.enqueue(&[
        "--repo",
        "demo",
        "--agent",
        "mytool",
        "--task",
        "@agentq-test commit",
        "--issue",
        "1",
    ]);
    let _w1 = env.worker_with_args(
        "w1",
        &["--concurrency", "1", "--config", plain.to_str().unwrap()],
    );
    wait_live_workers(&env, 1).await;
    // A dry run is delivered at once, to the only worker, which does not know
    // its pool: handed back (waiting, `unserved`), never failed.
    let dry = env.enqueue(&[
        "--repo",
        "demo",
        "--agent",
        "mytool",
        "--task",
        "t",
        "--issue",
        "3",
        "--dry-run",
    ]);
    let rec = env
        .wait_for(&dry, LONG, |r| {
            r.state.is_final() || r.reason == Some(WaitReason::Unserved)
        })
        .await;
    assert!(!rec.state.is_final(), "{rec:#?}");
    let codex = env.enqueue(&["--repo", "demo", "--task", "c", "--issue", "2"]);
    assert_eq!(
        env.wait_final(&codex, LONG).await.state,
        JobState::Completed
    );
    let rec = env.store().await.get(&job).await.unwrap().unwrap();
    assert!(!rec.state.is_final(), "{rec:#?}");
    assert_eq!((rec.attempt, rec.runs), (0, 0), "{rec:#?}");
    assert!(env.agent_starts(&job).is_empty());

    // A worker that has the pool appears: it runs the job.
    let _w2 = env.worker("w2", 1);
    let rec = env.wait_final(&job, LONG).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    let log = meta_file(&rec, "agent-mytool.log");
    assert!(
        log.contains("model=stub/default"),
        "the default model: {log}"
    );
}
