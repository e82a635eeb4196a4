//! Issue 28: the agent's final message becomes the job's `summary`. codex's
//! `-o` file (and every agent's `$AGENTQ_SUMMARY_FILE`) is
//! `/agentq-out/summary.md`, in a per-run output directory the worker reads
//! back as data after the run: on the record, `agentq status` (text and
//! `--json`), `status.json` and the forge comment. A hostile agent's link,
//! FIFO or 100 MiB file there yields no summary or a cut one, never a hang
//! or a host file; what it writes there counts against the working tree's
//! bounds.
//!
//! Needs the test images with the `@agentq-test summary` directive and the
//! red team's `summary-*` and `out-fill` directives (checked first):
//! `scripts/build-test-images`; `AGENTQ_TEST_AGENT_IMAGE` and
//! `AGENTQ_TEST_REDTEAM_IMAGE` name private tags of the same build.

use std::{path::Path, time::Duration};

use agentq_shared::status::{JobState, StatusFile, WorkspaceStatus};
use agentq_tests::{forge_sim::ForgeSim, *};

const LONG: Duration = Duration::from_secs(180);
const TOKEN: &str = "forge-token-summary-4b2e91";

/// The fake agent's image: `agentq-test-agent:latest` or `$AGENTQ_TEST_AGENT_IMAGE`.
fn agent_image() -> String {
    std::env::var("AGENTQ_TEST_AGENT_IMAGE").unwrap_or_else(|_| TEST_IMAGE.into())
}

/// The red team's image: `agentq-redteam:latest` or `$AGENTQ_TEST_REDTEAM_IMAGE`.
fn redteam_image() -> String {
    std::env::var("AGENTQ_TEST_REDTEAM_IMAGE").unwrap_or_else(|_| "agentq-redteam:latest".into())
}

/// Fails loudly unless `image` exists and its agent script knows `directive`.
fn require_directive(image: &str, directive: &str) {
    require_image(image);
    let out = std::process::Command::new("docker")
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "/bin/grep",
            image,
            "-q",
            "-e",
            &format!("    {directive})"),
            "/usr/local/bin/agentq-test-agent",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{image} has no `{directive}` directive: rebuild it with scripts/build-test-images ({})",
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// A world on the simulated forge whose agents (`pools`) run in `image`, with
/// the top-level keys `top` and the keys `pool_keys` in each pool's table.
async fn world(image: &str, pools: &[&str], top: &str, pool_keys: &str) -> (TestEnv, ForgeSim) {
    let agents: String = pools
        .iter()
        .map(|p| format!("[agents.{p}]\nimage = \"{image}\"\n{pool_keys}"))
        .collect();
    let env = TestEnv::with_config(top);
    env.append_config(&format!(
        "[forge]\ntoken_env = \"AGENTQ_TEST_FORGE_TOKEN\"\nmax_retries = 1\nretry_base_ms = 50\n{agents}"
    ));
    let sim = env.start_forge(TOKEN).await;
    env.remotes
        .create("core", "demo", &[("README.md", "# demo\n")]);
    sim.add_repo("core", "demo", "main");
    (env, sim)
}

fn status_json(rec: &agentq_shared::record::JobRecord) -> WorkspaceStatus {
    WorkspaceStatus::read(&Path::new(&rec.workspace_dir).join("status.json")).unwrap()
}

fn out_dir(rec: &agentq_shared::record::JobRecord) -> std::path::PathBuf {
    Path::new(&rec.workspace_dir).join(".meta/agent-out")
}

/// codex writes its last message to its `-o` file, `/agentq-out/summary.md`
/// (the `local` launcher's codex too); the worker reads it back after the run
/// and it is the job's summary everywhere: the record, `agentq status` and
/// `--json`, `status.json`, the forge comment. Every agent is told the file
/// (`$AGENTQ_SUMMARY_FILE`). A retry empties it before the job runs again.
#[tokio::test(flavor = "multi_thread")]
async fn codexs_last_message_is_the_jobs_summary_everywhere() {
    let image = agent_image();
    require_directive(&image, "summary");
    let (env, sim) = world(&image, &["codex", "local", "claude"], "", "").await;
    for n in [1, 2, 3] {
        sim.add_issue("core", "demo", n, &format!("Issue {n}"), "Do it.");
    }
    let summary = "Fixed the flaky test; all 12 tests pass.";
    let codex = env.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        "1",
        "--task",
        &format!("Fix it @agentq-test commit @agentq-test summary {summary}"),
    ]);
    let local = env.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        "2",
        "--agent",
        "local",
        "--task",
        "Fix it @agentq-test summary local says done",
    ]);
    let claude = env.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        "3",
        "--agent",
        "claude",
        "--task",
        "Look @agentq-test env-check AGENTQ_SUMMARY_FILE",
    ]);
    let mut w = env.worker("w1", 3);

    let rec = env.wait_final(&codex, LONG).await;
    assert_eq!(
        rec.state,
        JobState::Completed,
        "{rec:#?}\n{}",
        env.worker_logs()
    );
    assert_eq!(rec.summary, summary, "{rec:#?}");
    assert_eq!(rec.summary_note, "");
    // `agentq status`, text and JSON.
    let text = env.cli_ok(&["status", &codex]);
    assert!(
        text.lines()
            .any(|l| l.starts_with("summary ") && l.ends_with(summary)),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&env.cli_ok(&["status", &codex, "--json"])).unwrap();
    assert_eq!(json["summary"], summary);
    assert!(env.cli_ok(&["inspect", &codex]).contains(summary));
    // The workspace's status.json.
    assert_eq!(status_json(&rec).summary, summary);
    // The forge comment, quoted.
    let comments = sim.comments("core", "demo", 1);
    assert_eq!(comments.len(), 1, "{comments:?}");
    assert!(
        comments[0].body.contains(&format!("> {summary}")),
        "{}",
        comments[0].body
    );
    // The output directory was read and removed.
    assert!(
        !out_dir(&rec).exists(),
        "the output directory is still there"
    );

    let rec = env.wait_final(&local, LONG).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    assert_eq!(rec.summary, "local says done");
    let rec = env.wait_final(&claude, LONG).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    let log = std::fs::read_to_string(Path::new(&rec.workspace_dir).join(".meta/agent-claude.log"))
        .unwrap();
    assert!(log.contains("env AGENTQ_SUMMARY_FILE is set"), "{log}");
    assert_eq!(rec.summary, "", "claude wrote none");

    // A retry empties the summary of the run before.
    w.kill9();
    env.cli_ok(&["retry", &codex]);
    let store = env.store().await;
    let again = store.get(&codex).await.unwrap().unwrap();
    assert_eq!(again.state, JobState::Queued, "{again:#?}");
    assert_eq!(again.summary, "", "{again:#?}");
}

/// A hostile agent's summary file: a link to a host file, a FIFO, 100 MiB.
/// Each job ends, none waits on the FIFO, no host file is read: no summary
/// and a note saying why, or the first 16 KiB with a marker saying it was
/// cut.
#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_summary_file_is_never_followed_waited_on_or_read_whole() {
    let image = redteam_image();
    require_directive(&image, "summary-big");
    let (env, sim) = world(&image, &["codex"], "", "").await;
    for n in [1, 2, 3] {
        sim.add_issue("core", "demo", n, &format!("Issue {n}"), "Do it.");
    }
    // A file on the host, where the link points.
    let secret = env.dir.path().join("host-secret.txt");
    std::fs::write(&secret, "HOST-SECRET-9d1f\n").unwrap();
    let link = env.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        "1",
        "--task",
        &format!("@redteam summary-link {}", secret.display()),
    ]);
    let fifo = env.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        "2",
        "--task",
        "@redteam summary-fifo",
    ]);
    let big = env.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        "3",
        "--task",
        "@redteam summary-big 100",
    ]);
    let _w = env.worker("w1", 3);

    let rec = env.wait_final(&link, LONG).await;
    assert_eq!(
        rec.state,
        JobState::Completed,
        "{rec:#?}\n{}",
        env.worker_logs()
    );
    assert_eq!(rec.summary, "", "{rec:#?}");
    assert!(rec.summary_note.contains("symlink"), "{rec:#?}");
    let shown = env.cli_ok(&["status", &link, "--json"]);
    assert!(!shown.contains("HOST-SECRET"), "{shown}");
    assert!(
        !std::fs::read_to_string(Path::new(&rec.workspace_dir).join("status.json"))
            .unwrap()
            .contains("HOST-SECRET")
    );
    assert!(sim
        .comments("core", "demo", 1)
        .iter()
        .all(|c| !c.body.contains("HOST-SECRET")));
    assert!(!out_dir(&rec).exists());

    let rec = env.wait_final(&fifo, LONG).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    assert_eq!(rec.summary, "");
    assert!(rec.summary_note.contains("a FIFO"), "{rec:#?}");
    assert_eq!(status_json(&rec).summary_note, rec.summary_note);
    assert!(!out_dir(&rec).exists());

    let rec = env.wait_final(&big, LONG).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    assert!(
        rec.summary.starts_with(&"s".repeat(1000)),
        "{}",
        &rec.summary[..rec.summary.len().min(100)]
    );
    assert!(
        rec.summary.len() <= 16 * 1024 + 256,
        "{} bytes",
        rec.summary.len()
    );
    assert!(
        rec.summary.ends_with(&format!(
            "[… summary.md is {} bytes; cut at 16384]",
            100 << 20
        )),
        "{}",
        &rec.summary[rec.summary.len().saturating_sub(100)..]
    );
    let comment = &sim.comments("core", "demo", 3)[0].body;
    assert!(comment.len() < 8 * 1024, "{} bytes", comment.len());
    assert!(!out_dir(&rec).exists(), "100 MiB left behind");
}

/// What an agent writes elsewhere in `/agentq-out` counts against the
/// working tree's bounds: stopped while it runs (it would sleep for an hour,
/// its timeout), and failed by the check after a run that exits at once.
#[tokio::test(flavor = "multi_thread")]
async fn a_huge_file_in_the_output_directory_is_stopped_like_a_huge_tree() {
    let image = redteam_image();
    require_directive(&image, "out-fill");
    let (env, _sim) = world(
        &image,
        &["codex"],
        "workspace_limit_mb = 16",
        "timeout_secs = 3600\n",
    )
    .await;
    let running = env.enqueue(&[
        "--repo",
        "demo",
        "--branch",
        "main",
        "--task",
        "@redteam out-fill 40 @redteam sleep 3600",
    ]);
    let exits = env.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        "9",
        "--task",
        "@redteam out-fill 40",
    ]);
    let _w = env.worker("w1", 2);
    for id in [&running, &exits] {
        let rec = env.wait_final(id, LONG).await;
        assert_eq!(
            rec.state,
            JobState::Failed,
            "{rec:#?}\n{}",
            env.worker_logs()
        );
        assert!(
            rec.error.contains("workspace grew to") && rec.error.contains("over the limit"),
            "{rec:#?}"
        );
        assert!(!out_dir(&rec).exists(), "40 MiB left behind");
    }
}
