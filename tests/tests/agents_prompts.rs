//! Issue 3's acceptance: agents, workspaces and prompts, end to end.

use std::{path::Path, time::Duration};

use agentq_shared::status::{JobState, StatusFile};
use agentq_tests::*;

const LONG: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread")]
async fn shell_text_in_a_task_never_runs_for_any_agent() {
    require_docker();
    let env = TestEnv::new();
    env.remotes.create("core", "demo", &[]);
    let host_marker = format!("/tmp/agentq-pwned-{}", env.ns);
    let _ = std::fs::remove_file(&host_marker);
    let task = format!(
        "Do nothing $(touch {host_marker}) $(touch /workspace/pwned-dollar) `touch /workspace/pwned-tick` ; touch /workspace/pwned-semi"
    );
    let mut ids = Vec::new();
    for (i, agent) in [
        "local",
        "codex",
        "claude",
        "gemini",
        "coderabbit",
        "local:qwen3",
        "codex:gpt-5",
    ]
    .iter()
    .enumerate()
    {
        let id = env.enqueue(&[
            "--repo",
            "demo",
            "--task",
            &task,
            "--agent",
            agent,
            "--issue",
            &(i + 1).to_string(),
        ]);
        ids.push((agent.to_string(), id));
    }
    let _w = env.worker("w1", 4);
    for (agent, id) in &ids {
        let rec = env.wait_final(id, LONG).await;
        assert_eq!(rec.state, JobState::Completed, "{agent}: {rec:#?}");
        let meta = Path::new(&rec.workspace_dir).join(".meta");
        let repo = Path::new(&rec.workspace_dir).join("repo");
        for f in ["pwned-dollar", "pwned-tick", "pwned-semi"] {
            assert!(
                !repo.join(f).exists(),
                "{agent}: {f} was created inside the container"
            );
        }
        let pool = agent.split(':').next().unwrap();
        let log = std::fs::read_to_string(meta.join(format!("agent-{pool}.log"))).unwrap();
        if pool != "coderabbit" {
            // The prompt reached the agent as one literal argument.
            assert!(
                log.contains(&format!("$(touch {host_marker})")),
                "{agent}: {log}"
            );
            assert!(
                log.contains("`touch /workspace/pwned-tick`"),
                "{agent}: {log}"
            );
        }
        if pool == "local" {
            let model = agent.split(':').nth(1).unwrap_or("devstral-24b");
            assert!(
                log.contains("--oss") && log.contains(&format!("={model}\n")),
                "{agent}: {log}"
            );
        }
    }
    assert!(
        !Path::new(&host_marker).exists(),
        "a task's shell text ran on the host"
    );
}

fn dry_run_prompt(env: &TestEnv, args: &[&str]) -> String {
    let mut all = vec!["enqueue", "--repo", "demo", "--dry-run", "--wait"];
    all.extend_from_slice(args);
    env.cli_ok(&all)
}

#[tokio::test(flavor = "multi_thread")]
async fn templates_plans_and_personas_shape_the_prompt() {
    require_docker();
    let env = TestEnv::new();
    env.remotes.create(
        "core",
        "demo",
        &[("go.mod", "module demo\n"), ("main.go", "package main\n")],
    );
    // Forgejo publishes refs/pull/N/head; prep of a --pr job fetches it.
    env.remotes.publish_pull("core", "demo", 4);
    let _w = env.worker("w1", 2);

    let coding = dry_run_prompt(
        &env,
        &[
            "--task",
            "Tidy up",
            "--branch",
            "main",
            "--template",
            "coding",
        ],
    );
    let security = dry_run_prompt(
        &env,
        &[
            "--task",
            "Tidy up",
            "--issue",
            "2",
            "--template",
            "security",
        ],
    );
    assert_ne!(coding, security);
    assert!(security.contains("security review"), "{security}");
    assert!(coding.contains("## TASK\n\nTidy up"), "{coding}");
    assert!(
        coding.contains("Language: Go")
            && coding.contains("`go test ./... -count=1 -timeout 120s`"),
        "{coding}"
    );
    assert!(
        coding.contains("## RECENT CHANGES") && coding.contains("initial"),
        "{coding}"
    );
    assert!(!coding.contains("## PLAN"));

    let planned = dry_run_prompt(
        &env,
        &[
            "--task",
            "Fix login",
            "--pr",
            "4",
            "--plan-template",
            "bug-fix",
            "--var",
            "bug=the login crash",
            "--persona",
            "reviewer",
        ],
    );
    assert!(planned.contains("## PLAN"), "{planned}");
    assert!(planned.contains("### Phase 1: Reproduce"), "{planned}");
    assert!(
        planned.contains("- [ ] Write a test that shows the login crash"),
        "{planned}"
    );
    assert!(
        planned.contains("## PERSONA\n\nYou are an exacting code reviewer"),
        "{planned}"
    );

    // A dry run is prepped in a throwaway copy but runs no agent; its record has
    // the prompt, and the real workspace is not touched (here: never made).
    let id = env.enqueue(&[
        "--repo",
        "demo",
        "--task",
        "Peek",
        "--issue",
        "3",
        "--dry-run",
    ]);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Completed);
    assert_eq!(rec.runs, 0);
    assert!(rec.prompt.contains("Peek"));
    assert!(
        rec.prompt.contains("Language: Go\n"),
        "prep saw the repository (go.mod): {}",
        rec.prompt
    );
    assert_eq!(rec.workspace_dir, "");
    assert!(!env.workspace_root().join("core/demo/task-3").exists());
    assert!(!env
        .workspace_root()
        .join(".agentq-run/dry")
        .join(id.to_lowercase())
        .exists());

    // Missing persona or plan variables: a clear error on the job, no retry.
    let id = env.enqueue(&[
        "--repo",
        "demo",
        "--task",
        "x",
        "--issue",
        "4",
        "--persona",
        "nobody",
    ]);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Failed);
    assert!(rec.error.contains("persona `nobody` not found"), "{rec:#?}");
    assert_eq!(rec.attempt, 1);
    // The agent's container, started while prep ran, is gone with it.
    assert_eq!(env.containers_of(&id), Vec::<String>::new());
    let id = env.enqueue(&[
        "--repo",
        "demo",
        "--task",
        "x",
        "--issue",
        "5",
        "--plan-template",
        "bug-fix",
    ]);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Failed);
    assert!(
        rec.error.contains("needs variables") && rec.error.contains("bug"),
        "{rec:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wait_exits_by_outcome() {
    require_docker();
    let env = TestEnv::new();
    env.remotes.create("core", "demo", &[]);
    let _w = env.worker("w1", 2);
    let ok = env.cli(
        &[
            "enqueue", "--repo", "demo", "--task", "fine", "--issue", "1", "--wait", "--json",
        ],
        None,
    );
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    let rec: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(rec["state"], "completed");
    let failed = env.cli(
        &[
            "enqueue",
            "--repo",
            "demo",
            "--task",
            "@agentq-test exit 2",
            "--issue",
            "2",
            "--wait",
        ],
        None,
    );
    assert_eq!(failed.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&failed.stdout).contains("Agent exited with code 2"));
    let blocked = env.cli(
        &[
            "enqueue",
            "--repo",
            "demo",
            "--task",
            "@agentq-test block \"why?\"",
            "--issue",
            "3",
            "--wait",
        ],
        None,
    );
    assert_eq!(blocked.status.code(), Some(4));
}

#[tokio::test(flavor = "multi_thread")]
async fn wait_exits_6_for_a_timeout_and_5_for_a_cancel() {
    require_docker();
    let env = TestEnv::with_config("[agents.codex]\ntimeout_secs = 2\n");
    env.remotes.create("core", "demo", &[]);
    let _w = env.worker("w1", 2);
    let timed_out = env.cli(
        &[
            "enqueue",
            "--repo",
            "demo",
            "--agent",
            "codex",
            "--task",
            "@agentq-test sleep 60",
            "--issue",
            "1",
            "--wait",
        ],
        None,
    );
    assert_eq!(
        timed_out.status.code(),
        Some(6),
        "{}{}",
        String::from_utf8_lossy(&timed_out.stdout),
        String::from_utf8_lossy(&timed_out.stderr)
    );
    assert!(String::from_utf8_lossy(&timed_out.stdout).contains("timeout of 2s"));

    // A second `agentq` waits for a job that a third one cancels.
    let waiting = std::process::Command::new(bin("agentq"))
        .envs(env.env())
        .args([
            "enqueue",
            "--repo",
            "demo",
            "--task",
            "@agentq-test sleep 60",
            "--issue",
            "2",
            "--wait",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let store = env.store().await;
    let started = std::time::Instant::now();
    let id = loop {
        let running = store.ids_in_state(JobState::Running).await.unwrap();
        if let Some(id) = running.into_iter().next() {
            break id;
        }
        assert!(started.elapsed() < LONG, "the job never ran");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    env.cli_ok(&["cancel", &id]);
    let out = waiting.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blocked_job_resumes_with_an_answer() {
    require_docker();
    let env = TestEnv::new();
    env.remotes.create("core", "demo", &[]);
    let _w = env.worker("w1", 1);
    let id = env.enqueue(&[
        "--repo", "demo", "--issue", "8",
        "--task", "Pick a database @agentq-test block-unless /agentq/ANSWER.md \"Postgres or SQLite?\" @agentq-test commit",
    ]);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Blocked, "{rec:#?}");
    assert_eq!(rec.question, "Postgres or SQLite?");

    let out = env.cli(
        &["resume", &id, "--answer", "Use SQLite", "--wait", "--json"],
        None,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    assert_eq!(rec.runs, 2);
    assert!(rec.resumed);
    let ws = Path::new(&rec.workspace_dir);
    assert_eq!(
        std::fs::read_to_string(ws.join(".meta/input/ANSWER.md")).unwrap(),
        "Use SQLite\n"
    );
    assert!(!ws.join("repo/BLOCKED.md").exists());
    assert!(
        !ws.join("repo/ANSWER.md").exists(),
        "agentq's files stay out of the repository"
    );
    let prompt = std::fs::read_to_string(ws.join(".meta/input/prompt.md")).unwrap();
    assert!(
        prompt.starts_with("## RESUME\n\nResume from where you left off."),
        "{prompt}"
    );
    let log = std::fs::read_to_string(ws.join(".meta/agent-codex.log")).unwrap();
    assert!(log.contains("found /agentq/ANSWER.md: Use SQLite"), "{log}");
    let status = agentq_shared::status::WorkspaceStatus::read(&ws.join("status.json")).unwrap();
    assert_eq!((status.status.as_str(), status.runs), ("completed", 2));

    // A job that is not finished cannot be resumed.
    let running = env.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        "9",
        "--task",
        "@agentq-test sleep 30",
    ]);
    env.wait_for(&running, LONG, |r| r.state == JobState::Running)
        .await;
    let out = env.cli(&["resume", &running, "--answer", "x"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("only a finished job"));
}

#[tokio::test(flavor = "multi_thread")]
async fn templates_dir_overrides_sets_personas_and_plans_and_adds_new_ones() {
    require_docker();
    let env = TestEnv::new();
    env.remotes.create("core", "demo", &[]);
    let dir = env.dir.path().join("my-templates");
    for sub in ["sets", "personas", "plans"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    std::fs::write(dir.join("sets/coding.md"), "OUR CODING RULES\n").unwrap();
    std::fs::write(dir.join("personas/engineer.md"), "OUR ENGINEER\n").unwrap();
    std::fs::write(dir.join("personas/gardener.md"), "A NEW GARDENER\n").unwrap();
    std::fs::write(
        dir.join("plans/bug-fix.toml"),
        "title = \"Our fix\"\ndescription = \"Squash {{ bug }}\"\n\n[[phases]]\nname = \"Squash\"\ntasks = [\"Step on {{ bug }}\"]\n",
    )
    .unwrap();
    // A top-level key: before the config's tables.
    let path = env.config_path().to_path_buf();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        format!("templates_dir = \"{}\"\n{text}", dir.display()),
    )
    .unwrap();
    let _w = env.worker("w1", 1);

    let coding = dry_run_prompt(
        &env,
        &[
            "--task",
            "Tidy",
            "--issue",
            "1",
            "--template",
            "coding",
            "--persona",
            "engineer",
        ],
    );
    assert!(coding.contains("OUR CODING RULES"), "{coding}");
    assert!(coding.contains("OUR ENGINEER"), "{coding}");
    let added = dry_run_prompt(
        &env,
        &["--task", "Tidy", "--issue", "2", "--persona", "gardener"],
    );
    assert!(added.contains("A NEW GARDENER"), "{added}");
    let plan = dry_run_prompt(
        &env,
        &[
            "--task",
            "Fix",
            "--issue",
            "3",
            "--plan-template",
            "bug-fix",
            "--var",
            "bug=the crash",
        ],
    );
    assert!(
        plan.contains("Squash") && plan.contains("Step on the crash"),
        "{plan}"
    );
    assert!(
        !plan.contains("Reproduce"),
        "the shipped plan was used: {plan}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn resume_with_another_agent_runs_that_agent_in_the_same_workspace() {
    require_docker();
    let env = TestEnv::new();
    env.remotes.create("core", "demo", &[]);
    let _w = env.worker("w1", 1);
    let id = env.enqueue(&[
        "--repo", "demo", "--issue", "8", "--agent", "codex",
        "--task", "Pick @agentq-test block-unless /agentq/ANSWER.md \"Postgres or SQLite?\" @agentq-test commit",
    ]);
    let blocked = env.wait_final(&id, LONG).await;
    assert_eq!(blocked.state, JobState::Blocked, "{blocked:#?}");
    env.cli_ok(&["resume", &id, "--answer", "SQLite", "--agent", "claude"]);
    let rec = env
        .wait_for(&id, LONG, |r| r.runs == 2 && r.state.is_final())
        .await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    assert_eq!(rec.input.agent, "claude");
    assert!(rec.resumed, "{rec:#?}");
    assert_eq!(rec.workspace_dir, blocked.workspace_dir);
    // The agents' own run log: codex ran first, then claude, as each says.
    let agents: Vec<String> = env
        .agent_runs(&id)
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        .collect();
    assert_eq!(agents, ["codex", "claude"]);
}
