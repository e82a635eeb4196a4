//! Issue 28: a real agent program from PyPI end to end. mini-swe-agent, built
//! offline into `agentq-test-mini:latest` (`scripts/build-test-image-mini`),
//! runs as a configured pool, `[agents.mini]` (its command line in
//! `agentq.toml`, the prompt as a file), against a scripted OpenAI-compatible model on the host
//! (`agentq_tests::llm_stub`), reached as `host.docker.internal` the way the
//! `local` pool reaches Ollama. Real worker, Docker, git; the forge simulated.

use std::{path::Path, time::Duration};

use agentq_shared::status::{JobState, QaStatus, StatusFile, WorkspaceStatus};
use agentq_tests::{
    forge_sim::ForgeSim,
    llm_stub::{host_gateway_ip, LlmStub},
    *,
};

const MINI_IMAGE: &str = "agentq-test-mini:latest";
const LONG: Duration = Duration::from_secs(600);
const TOKEN: &str = "forge-token-pypi-41c7";
const API_KEY: &str = "stub-key-0c5e";

/// The model's commands for a job that fixes README.md and commits it.
const FIX_AND_COMMIT: &[&str] = &[
    "cat README.md && git log --oneline -1",
    "printf 'Fixed by mini-swe-agent.\\n' >> README.md && git add README.md && git commit -q -m 'docs: say it is fixed' && git log -1 --format=%s",
];

/// A world whose `mini` pool is mini-swe-agent, talking to a model stub that
/// answers with `script`, with a forge and QA that checks the agent's edit.
async fn world(script: &[&str]) -> (TestEnv, ForgeSim, LlmStub) {
    require_image(MINI_IMAGE);
    // The model stub is on the host, as Ollama is for `local`; the pool
    // reaches it as `host.docker.internal` (its own `host_gateway`), its URL a
    // fixed value of the pool (`env`), its key forwarded by name (`env_keys`).
    let stub = LlmStub::start(&host_gateway_ip(MINI_IMAGE), script).await;
    let env = TestEnv::with_config(&format!(
        "[forge]\ntoken_env = \"AGENTQ_TEST_FORGE_TOKEN\"\n\n\
         [agents.mini]\nimage = \"{MINI_IMAGE}\"\ntimeout_secs = 900\n\
         command = [\"mini-task\", \"{{prompt_file}}\", \"--model\", \"{{model}}\"]\n\
         default_model = \"openai/agentq-stub\"\nhost_gateway = true\n\
         env = {{ OPENAI_API_BASE = \"{base}\", MSWEA_MODEL_RETRY_STOP_AFTER_ATTEMPT = \"1\" }}\n\
         env_keys = [\"OPENAI_API_KEY\"]\n\
         qa = [[\"grep\", \"-q\", \"Fixed by mini-swe-agent\", \"README.md\"]]\n",
        base = stub.container_base_url(),
    ));
    // A Python agent needs more than the fake agent's 256 MiB and half a core.
    let cfg_path = env.config_path().to_path_buf();
    let cfg = std::fs::read_to_string(&cfg_path)
        .unwrap()
        .replace("memory_mb = 256", "memory_mb = 1024")
        .replace("cpus = 0.5", "cpus = 1.0");
    std::fs::write(&cfg_path, cfg).unwrap();
    let sim = ForgeSim::start(TOKEN, env.remotes.base.path().to_path_buf()).await;
    env.set_env("AGENTQ_FORGE_URL", sim.url());
    env.set_env("AGENTQ_GIT_BASE", sim.url());
    env.set_env("AGENTQ_TEST_FORGE_TOKEN", TOKEN);
    env.set_env("OPENAI_API_KEY", API_KEY);
    (env, sim, stub)
}

/// The end of the agent's log (mini-swe-agent prints every message, the
/// whole prompt too), for assertion messages.
fn agent_log(rec: &agentq_shared::record::JobRecord) -> String {
    let log = std::fs::read_to_string(Path::new(&rec.workspace_dir).join(".meta/agent-mini.log"))
        .unwrap_or_default();
    let start = log.len().saturating_sub(4000);
    let start = (start..log.len())
        .find(|&i| log.is_char_boundary(i))
        .unwrap_or(0);
    log[start..].to_string()
}

/// What every run must show: the agent asked the stub, with its key, for the
/// task agentq gave it, and ran the model's commands in the workspace.
fn assert_the_agent_used_the_stub(stub: &LlmStub, rec: &agentq_shared::record::JobRecord) {
    let chats = stub.chats();
    assert!(
        chats.len() >= 2,
        "mini-swe-agent never talked to the model stub: {}\nagent log:\n{}",
        stub.summary(),
        agent_log(rec)
    );
    for c in &chats {
        assert_eq!(
            c.authorization.as_deref(),
            Some(format!("Bearer {API_KEY}").as_str())
        );
        assert_eq!(c.body["model"], "agentq-stub", "{}", c.body["model"]);
    }
    // The first command's output came back: it ran in the job's checkout.
    let second = chats[1].body.to_string();
    assert!(
        second.contains("# demo"),
        "the first command's output is not in the next request: {}",
        &second[..second.len().min(4000)]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_agent_edits_commits_and_its_work_is_checked_and_proposed() {
    let (env, sim, stub) = world(FIX_AND_COMMIT).await;
    let bare = env
        .remotes
        .create("core", "demo", &[("README.md", "# demo\n")]);
    sim.add_repo("core", "demo", "main");
    sim.add_issue(
        "core",
        "demo",
        7,
        "Say it is fixed",
        "README.md should say so.",
    );
    let _w = env.worker("w1", 1);
    let id = env.enqueue(&[
        "--agent",
        "mini",
        "--repo",
        "demo",
        "--issue",
        "7",
        "--task",
        "Note in README.md that it is fixed",
    ]);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(
        rec.state,
        JobState::Completed,
        "{rec:#?}\n{}\nagent log:\n{}\n{}",
        stub.summary(),
        agent_log(&rec),
        env.worker_logs()
    );
    assert_the_agent_used_the_stub(&stub, &rec);
    let task = stub.chats()[0].task_text().to_string();
    assert!(
        task.contains("Note in README.md that it is fixed")
            && task.contains("README.md should say so."),
        "the agent's task is not agentq's prompt: {task}"
    );
    // The agent's own commit, imported and pushed.
    assert_eq!(rec.leftovers, "", "{rec:#?}");
    let subject = git(&bare, &["log", "-1", "--format=%s", &rec.branch]);
    assert_eq!(subject, "docs: say it is fixed");
    let readme = git(&bare, &["show", &format!("{}:README.md", rec.branch)]);
    assert_eq!(readme, "# demo\nFixed by mini-swe-agent.");
    // QA ran on it and passed; the PR is open; the record and status.json say so.
    assert_eq!(rec.qa_status, Some(QaStatus::Passed), "{rec:#?}");
    assert!(rec.forge_error.is_empty(), "{}", rec.forge_error);
    let pulls = sim.pulls("core", "demo");
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    assert_eq!(pulls[0].head, rec.branch);
    assert!(pulls[0].body.contains("Closes #7"), "{}", pulls[0].body);
    assert_eq!(
        rec.pr_url,
        format!("{}/core/demo/pulls/{}", sim.url(), pulls[0].number)
    );
    let st = WorkspaceStatus::read(&Path::new(&rec.workspace_dir).join("status.json")).unwrap();
    assert_eq!(st.status, JobState::Completed);
    assert_eq!(st.job_id, id);
    assert_eq!(st.exit_code, Some(0));
    assert_eq!(st.pr_url, rec.pr_url);
    assert_eq!(st.qa.unwrap().status, QaStatus::Passed);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_agents_uncommitted_edit_is_kept_as_a_patch_and_said_so() {
    let (env, sim, stub) = world(&[
        "cat README.md",
        "printf 'Fixed by mini-swe-agent.\\n' >> README.md && printf 'notes\\n' > NOTES.md && git status --short",
    ])
    .await;
    env.remotes
        .create("core", "demo", &[("README.md", "# demo\n")]);
    sim.add_repo("core", "demo", "main");
    let _w = env.worker("w1", 1);
    let id = env.enqueue(&[
        "--agent",
        "mini",
        "--repo",
        "demo",
        "--branch",
        "main",
        "--task",
        "Note in README.md that it is fixed, do not commit",
    ]);
    let rec = env.wait_final(&id, LONG).await;
    // QA checks the commit, which has no edit: the work left uncommitted is
    // not taken for the agent's.
    assert_eq!(
        (rec.state, rec.qa_status),
        (JobState::Failed, Some(QaStatus::Failed)),
        "{rec:#?}\n{}\nagent log:\n{}",
        stub.summary(),
        agent_log(&rec)
    );
    assert_eq!(rec.exit_code, Some(0), "{rec:#?}");
    assert!(
        rec.error
            .starts_with("QA check failed: `grep -q Fixed by mini-swe-agent README.md`"),
        "{}",
        rec.error
    );
    assert_the_agent_used_the_stub(&stub, &rec);
    let patch = kept_leftovers_patch(&rec, 2);
    let ws = Path::new(&rec.workspace_dir);
    assert!(
        patch.contains("diff --git a/README.md b/README.md")
            && patch.contains("+Fixed by mini-swe-agent.")
            && patch.contains("diff --git a/NOTES.md b/NOTES.md"),
        "{patch}"
    );
    let shown = env.cli_ok(&["inspect", &id]);
    assert!(
        shown.contains("uncommitted  agent left 2 files uncommitted"),
        "{shown}"
    );
    let st = WorkspaceStatus::read(&ws.join("status.json")).unwrap();
    assert_eq!(st.status, JobState::Failed);
    assert_eq!(st.qa.unwrap().status, QaStatus::Failed);
    // No PR for a failed check (`pr_on_qa_failure = false`).
    assert!(sim.pulls("core", "demo").is_empty());
}

/// A 1 MiB prompt (a plan of 132 tasks of 8 000 bytes) reaches mini-swe-agent
/// whole (it reads the prompt file; nothing goes through an argument) and, in
/// its first request, the model.
#[tokio::test(flavor = "multi_thread")]
async fn a_real_agent_with_a_one_mebibyte_prompt_completes() {
    let (env, sim, stub) = world(FIX_AND_COMMIT).await;
    env.remotes
        .create("core", "demo", &[("README.md", "# demo\n")]);
    sim.add_repo("core", "demo", "main");
    env.use_big_plan_templates(132);
    let _w = env.worker("w1", 1);
    let id = env.enqueue(&[
        "--agent",
        "mini",
        "--repo",
        "demo",
        "--branch",
        "main",
        "--task",
        "Read the plan",
        "--plan-template",
        "big",
        "--var",
        &format!("big={}", "b".repeat(8000)),
    ]);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(
        rec.state,
        JobState::Completed,
        "{rec:#?}\n{}\nagent log:\n{}",
        stub.summary(),
        agent_log(&rec)
    );
    assert!(rec.prompt.len() > 1024 * 1024, "{}", rec.prompt.len());
    assert_eq!(rec.prompt_cut, "");
    assert_the_agent_used_the_stub(&stub, &rec);
    let task = stub.chats()[0].task_text().to_string();
    assert!(
        task.contains(rec.prompt.trim_end()),
        "the model got {} bytes of the task, not the {}-byte prompt",
        task.len(),
        rec.prompt.len()
    );
    let subject = git(
        &env.remotes.base.path().join("core/demo.git"),
        &["log", "-1", "--format=%s", &rec.branch],
    );
    assert_eq!(subject, "docs: say it is fixed");
}
