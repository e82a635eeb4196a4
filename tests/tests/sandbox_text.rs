//! Red-team tests for agent-made text (issue 26): output is bounded everywhere
//! (Redis, `agentq logs`, the console's job page), control bytes reach a
//! terminal only made visible (`--raw` gives them back) and never reach a
//! forge comment, and prompt inputs are bounded at the door (answers checked
//! like tasks; issue bodies and commit subjects cut with a marker).

use std::{path::Path, time::Duration};

use agentq_shared::status::JobState;
use agentq_tests::{forge_sim::ForgeSim, *};
use reqwest::StatusCode;

const LONG: Duration = Duration::from_secs(300);
const TOKEN: &str = "forge-token-text-5b1e";
const WEB_TOKEN: &str = "operator-token-for-text-tests-0123456789";
const REDTEAM_IMAGE: &str = "agentq-redteam:latest";
/// The bound of a job's log tail in Redis, and of what `agentq logs` prints.
const TAIL_BOUND: usize = 4 * 1024 * 1024;

/// A world whose codex agents are `image`, with the simulated forge.
async fn forge_env(image: &str) -> (TestEnv, ForgeSim) {
    require_image(image);
    let env = TestEnv::with_config(&format!(
        "[agents.codex]\nimage = \"{image}\"\n[forge]\ntoken_env = \"AGENTQ_TEST_FORGE_TOKEN\"\nmax_retries = 1\nretry_base_ms = 50\n"
    ));
    let sim = ForgeSim::start(TOKEN, env.remotes.base.path().to_path_buf()).await;
    env.set_env("AGENTQ_FORGE_URL", sim.url());
    env.set_env("AGENTQ_GIT_BASE", sim.url());
    env.set_env("AGENTQ_TEST_FORGE_TOKEN", TOKEN);
    env.remotes
        .create("core", "demo", &[("README.md", "# demo\n")]);
    sim.add_repo("core", "demo", "main");
    (env, sim)
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

fn has_control_bytes(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|b| *b == 0x1b || *b == 0x9b)
}

/// Row "100 MB of output on one line": the Redis tail stays under 4 MiB, `agentq
/// logs` prints at most that and says where the full log is, and the console's
/// job page answers with a bounded body.
#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_megabyte_line_leaves_a_bounded_tail_everywhere() {
    let (env, sim) = forge_env(REDTEAM_IMAGE).await;
    sim.add_issue("core", "demo", 1, "Flood", "Flood it.");
    let _w = env.worker("w1", 1);
    let id = env.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        "1",
        "--task",
        "@redteam flood-line 100",
    ]);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(
        rec.state,
        JobState::Completed,
        "{rec:#?}\n{}",
        env.worker_logs()
    );

    let usage = tail_bytes(&env, &id);
    assert!(
        usage <= TAIL_BOUND,
        "the log tail in Redis takes {usage} bytes"
    );

    let out = env.cli(&["logs", &id], None);
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stdout.len() <= TAIL_BOUND,
        "`agentq logs` printed {} bytes",
        out.stdout.len()
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("FLOOD-START"), "the line's start is gone");
    assert!(text.contains("[cut "), "no marker where the line was cut");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let log = Path::new(&rec.workspace_dir).join(".meta/agent-codex.log");
    assert!(
        stderr.contains(&format!(
            "full log on host {} at {}",
            rec.host,
            log.display()
        )),
        "{stderr}"
    );
    // `--full` here (the worker's host) streams the host's log file.
    let full = env.cli(&["logs", "--full", &id], None);
    assert!(full.status.success(), "{full:?}");
    let host_log = std::fs::read(&log).unwrap();
    assert_eq!(full.stdout.len(), host_log.len());

    let web = env.web(None);
    let r = http()
        .get(format!("{}/jobs/{id}", web.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body = r.bytes().await.unwrap();
    assert!(
        body.len() <= 1024 * 1024,
        "the job page is {} bytes",
        body.len()
    );
    let page = String::from_utf8_lossy(&body);
    assert!(page.contains("FLOOD-END"), "the output's end is not shown");
    assert!(
        page.contains(&format!(
            "Full log on host {} at <code>{}</code>",
            rec.host,
            log.display()
        )),
        "the page does not say where the full log is"
    );

    // Short lines, many of them: the bound holds in bytes, not only in lines.
    let id = env.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        "1",
        "--task",
        "@redteam flood 24",
    ]);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    let usage = tail_bytes(&env, &id);
    assert!(
        usage <= TAIL_BOUND,
        "the log tail in Redis takes {usage} bytes"
    );
    let out = env.cli(&["logs", &id], None);
    assert!(out.stdout.len() <= TAIL_BOUND, "{} bytes", out.stdout.len());
    assert!(String::from_utf8_lossy(&out.stdout).contains("FLOOD-END"));
    // The job page embeds only the end of that tail, and says so.
    let r = http()
        .get(format!("{}/jobs/{id}", web.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body = r.bytes().await.unwrap();
    assert!(
        body.len() <= 1024 * 1024,
        "the job page is {} bytes",
        body.len()
    );
    let page = String::from_utf8_lossy(&body);
    assert!(
        page.contains("FLOOD-END") && page.contains("Showing the last 256 KiB"),
        "{}",
        &page[..page.len().min(3000)]
    );
    sim.assert_nothing_dropped();
}

/// What job `id`'s log tail takes in Redis (`MEMORY USAGE`, every entry).
fn tail_bytes(env: &TestEnv, id: &str) -> usize {
    let usage: Option<usize> = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(env.key(&format!("log:{id}")))
        .arg("SAMPLES")
        .arg(0)
        .query(&mut env.redis.conn())
        .unwrap();
    usage.expect("the job has a log tail in Redis")
}

/// Row "ANSI/OSC escapes in BLOCKED.md and output": `agentq status`,
/// `inspect`, `list` and `logs` write no ESC (0x1b) and no C1 CSI (0x9b) but
/// their visible form; `--raw` gives the bytes back; JSON escapes both; the
/// forge comment has no control bytes at all.
#[tokio::test(flavor = "multi_thread")]
async fn control_bytes_reach_a_terminal_only_visible() {
    let (env, sim) = forge_env(REDTEAM_IMAGE).await;
    sim.add_issue("core", "demo", 1, "Escapes", "Escape.");
    let _w = env.worker("w1", 1);
    let id = env.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        "1",
        "--task",
        "Escape @redteam escapes @redteam commit-escapes @redteam block-escapes",
    ]);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Blocked, "{rec:#?}");
    assert!(rec.question.contains('\u{1b}'), "{:?}", rec.question);

    for args in [
        vec!["status", id.as_str()],
        vec!["inspect", id.as_str()],
        vec!["list"],
        vec!["logs", id.as_str()],
    ] {
        let out = env.cli(&args, None);
        assert!(out.status.success(), "{args:?}: {out:?}");
        for (what, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            assert_eq!(
                has_control_bytes(bytes),
                None,
                "`agentq {}` wrote a raw control byte to {what}: {:?}",
                args.join(" "),
                String::from_utf8_lossy(bytes)
            );
            assert!(
                !bytes.contains(&b'\r'),
                "`agentq {}` wrote a carriage return",
                args.join(" ")
            );
        }
        let text = String::from_utf8_lossy(&out.stdout);
        if args[0] != "list" {
            assert!(
                text.contains("\\e]52;c;") && text.contains("\\e[2J") && text.contains("^M"),
                "`agentq {}` does not show the escapes: {text}",
                args.join(" ")
            );
        }
    }
    let raw = env.cli(&["status", &id, "--raw"], None);
    assert!(raw.status.success(), "{raw:?}");
    assert!(
        raw.stdout.contains(&0x1b),
        "--raw did not give the bytes back"
    );
    let raw = env.cli(&["logs", &id, "--raw"], None);
    assert!(raw.stdout.windows(2).any(|w| w == [0xc2, 0x9b]), "{raw:?}");

    // JSON: a document with the very text, and no raw 0x1b or 0x9b.
    let json = env.cli(&["status", &id, "--json"], None);
    assert_eq!(has_control_bytes(&json.stdout), None, "{json:?}");
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["question"].as_str().unwrap(), rec.question);

    // The forge comment: no C0 (but newline and tab) and no C1 at all.
    let comments = sim.comments("core", "demo", 1);
    assert!(!comments.is_empty(), "no comment on the issue");
    for c in comments {
        let bad = c
            .body
            .chars()
            .find(|ch| (ch.is_control() && *ch != '\n' && *ch != '\t') || *ch == '\u{7f}');
        assert_eq!(bad, None, "a control character in {:?}", c.body);
        assert!(c.body.contains("ESC-PAYLOAD"), "{:?}", c.body);
    }
    sim.assert_nothing_dropped();
}

/// Row "a NUL byte in an answer through the web API": refused with 400 naming
/// `answer` (it was accepted with 200), and the job is left as it was.
#[tokio::test(flavor = "multi_thread")]
async fn the_web_api_refuses_an_answer_with_a_nul_byte() {
    let env = TestEnv::new();
    let id = env.enqueue(&["--repo", "demo", "--issue", "3", "--task", "Do it"]);
    env.cli_ok(&["cancel", &id]);
    let web = env.web(Some(WEB_TOKEN));
    let post = |answer: String| {
        http()
            .post(format!("{}/api/jobs/{id}/resume", web.url))
            .bearer_auth(WEB_TOKEN)
            .json(&serde_json::json!({ "answer": answer }))
            .send()
    };
    let r = post("yes\0and then".into()).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let text = r.text().await.unwrap();
    let body: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    let error = body["error"].as_str().unwrap();
    assert!(error.starts_with("answer:"), "{error}");
    let r = post(format!("{}\u{1b}]52;c;eA==\u{7}", "a")).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = post("x".repeat(144 * 1024)).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let state = env.store().await.get(&id).await.unwrap().unwrap().state;
    assert_eq!(state, JobState::Cancelled);
    // A good answer (with the CR LF a browser's form sends) still goes in.
    let r = post("yes,\r\ngo on\tplease".into()).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
}

/// `agentq resume --answer` checks the answer like a task: over the limit or
/// with a control character, it is refused (exit 1) naming `answer`.
#[tokio::test(flavor = "multi_thread")]
async fn the_cli_refuses_an_answer_over_the_limit() {
    let env = TestEnv::new();
    let id = env.enqueue(&["--repo", "demo", "--issue", "3", "--task", "Do it"]);
    env.cli_ok(&["cancel", &id]);
    for answer in ["y".repeat(100 * 1024), "yes\u{1b}[2J".to_string()] {
        let out = env.cli(&["resume", &id, "--answer", &answer], None);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("answer:"), "{stderr}");
    }
    let state = env.store().await.get(&id).await.unwrap().unwrap().state;
    assert_eq!(state, JobState::Cancelled);
}

/// Row "a long issue body": a forge issue with a 1 MiB body reaches the prompt
/// cut, with a marker, and the job runs (it failed with exit 126).
#[tokio::test(flavor = "multi_thread")]
async fn a_megabyte_issue_body_is_cut_in_the_prompt() {
    let (env, sim) = forge_env("agentq-test-agent:latest").await;
    let body = "issue text ".repeat(1024 * 1024 / 11);
    sim.add_issue("core", "demo", 1, "Big", &body);
    let _w = env.worker("w1", 1);
    let id = env.enqueue(&["--repo", "demo", "--issue", "1", "--task", "Read it"]);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(
        rec.state,
        JobState::Completed,
        "{rec:#?}\n{}",
        env.worker_logs()
    );
    let prompt =
        std::fs::read_to_string(Path::new(&rec.workspace_dir).join(".meta/input/prompt.md"))
            .unwrap();
    assert!(prompt.contains("[cut "), "no cut marker in the prompt");
    assert!(
        prompt.len() < 80 * 1024,
        "the prompt is {} bytes",
        prompt.len()
    );
    sim.assert_nothing_dropped();
}

/// Row "an agent's 130 KiB commit subject": the next run on the branch still
/// runs (its prompt's recent changes are cut), where it failed with exit 126.
#[tokio::test(flavor = "multi_thread")]
async fn a_huge_commit_subject_does_not_break_the_next_run() {
    let (env, sim) = forge_env(REDTEAM_IMAGE).await;
    sim.add_issue("core", "demo", 1, "Subject", "Commit.");
    let _w = env.worker("w1", 1);
    let id = env.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        "1",
        "--task",
        "Long subject @redteam commit-subject 130",
    ]);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(
        rec.state,
        JobState::Completed,
        "{rec:#?}\n{}",
        env.worker_logs()
    );
    let runs = rec.runs;
    env.cli_ok(&["retry", &id]);
    let rec = env
        .wait_for(&id, LONG, |r| r.runs > runs && r.state.is_final())
        .await;
    assert_eq!(
        rec.state,
        JobState::Completed,
        "{rec:#?}\n{}",
        env.worker_logs()
    );
    let prompt =
        std::fs::read_to_string(Path::new(&rec.workspace_dir).join(".meta/input/prompt.md"))
            .unwrap();
    assert!(prompt.contains("[cut "), "no cut marker in the prompt");
    assert!(
        prompt.len() < 64 * 1024,
        "the prompt is {} bytes",
        prompt.len()
    );
    sim.assert_nothing_dropped();
}

/// `agentq logs --full` away from the job's host says where the log is and
/// prints nothing else (exit 1).
#[tokio::test(flavor = "multi_thread")]
async fn logs_full_elsewhere_says_where_the_log_is() {
    let env = TestEnv::new();
    let id = env.enqueue(&["--repo", "demo", "--issue", "3", "--task", "Do it"]);
    let store = env.store().await;
    let rec = store.get(&id).await.unwrap().unwrap();
    assert!(store
        .transition(
            &id,
            JobState::Completed,
            Some(rec.seq),
            &[
                ("host", "host-elsewhere".into()),
                ("workspace_dir", "/srv/ws/core/demo/task-3".into()),
            ],
        )
        .await
        .unwrap());
    let out = env.cli(&["logs", "--full", &id], None);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "the full log is on host host-elsewhere at /srv/ws/core/demo/task-3/.meta/agent-codex.log"
        ),
        "{stderr}"
    );
    let out = env.cli(&["inspect", &id], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "full log on host host-elsewhere at /srv/ws/core/demo/task-3/.meta/agent-codex.log"
        ),
        "{text}"
    );
}
