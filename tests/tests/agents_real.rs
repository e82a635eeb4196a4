//! Issue 28: what real agent programs need — prompts of any realistic size, a
//! writable HOME in any image, uncommitted work kept.

use std::{path::Path, time::Duration};

use agentq_shared::status::JobState;
use agentq_tests::*;

const LONG: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread")]
async fn a_one_mebibyte_prompt_starts_and_completes_on_every_agent() {
    require_docker();
    let env = TestEnv::new();
    env.remotes.create("core", "demo", &[]);
    env.use_big_plan_templates(132);
    let big = format!("big={}", "b".repeat(8000));
    let agents = ["codex", "claude", "gemini", "coderabbit", "local"];
    let mut ids = Vec::new();
    for (i, agent) in agents.iter().enumerate() {
        let id = env.enqueue(&[
            "--repo",
            "demo",
            "--task",
            "Read the plan @agentq-test print started-ok",
            "--agent",
            agent,
            "--issue",
            &(i + 1).to_string(),
            "--plan-template",
            "big",
            "--var",
            &big,
        ]);
        ids.push((*agent, id));
    }
    let _w = env.worker("w1", 2);
    for (agent, id) in &ids {
        let rec = env.wait_final(id, LONG).await;
        assert_eq!(rec.state, JobState::Completed, "{agent}: {rec:#?}");
        assert!(
            rec.prompt.len() > 1024 * 1024,
            "{agent}: {}",
            rec.prompt.len()
        );
        let meta = Path::new(&rec.workspace_dir).join(".meta");
        let prompt_file = std::fs::read_to_string(meta.join("input/prompt.md")).unwrap();
        assert_eq!(
            prompt_file, rec.prompt,
            "{agent}: the whole prompt is the file"
        );
        let log = std::fs::read_to_string(meta.join(format!("agent-{agent}.log"))).unwrap();
        match *agent {
            // The CLI reads its prompt on stdin: all of it, nothing cut.
            "codex" | "claude" => {
                assert!(
                    log.contains(&format!("stdin-bytes={}\n", rec.prompt.len())),
                    "{agent}: {}",
                    &log[..log.len().min(2000)]
                );
                assert!(log.contains("\nstarted-ok\n"), "{agent}");
                assert_eq!(rec.prompt_cut, "", "{agent}");
                if *agent == "codex" {
                    assert!(
                        log.contains("=-\n"),
                        "codex exec reads `-`: {}",
                        &log[..2000]
                    );
                }
            }
            // One argument: cut at a section boundary, said so on the record
            // and in the prompt, which names the file with all of it.
            "gemini" | "local" => {
                assert!(log.contains("\nstarted-ok\n"), "{agent}");
                assert!(log.contains("## PROMPT CUT"), "{agent}");
                assert!(log.contains("/agentq/prompt.md"), "{agent}");
                assert!(
                    rec.prompt_cut.contains("over the 100 KB")
                        && rec.prompt_cut.contains("PLAN")
                        && rec.prompt_cut.contains("/agentq/prompt.md"),
                    "{agent}: {}",
                    rec.prompt_cut
                );
                assert!(!log.contains("stdin-bytes="), "{agent}");
            }
            // coderabbit reviews with fixed arguments: it starts as ever.
            _ => assert!(log.contains("agentq-test-agent: coderabbit"), "{log}"),
        }
    }
    // `agentq inspect` shows the cut.
    let gemini = &ids[2].1;
    let shown = env.cli_ok(&["inspect", gemini]);
    assert!(shown.contains("prompt cut"), "{shown}");
}

/// The image's uid 1000 is `node` with home `/home/node` and there is no
/// `/home/dev`: the agent's HOME is still a directory it can write, with its
/// config directories from `agent_home` inside it, read-only.
#[tokio::test(flavor = "multi_thread")]
async fn an_image_whose_user_is_node_gets_a_writable_home() {
    require_docker();
    let env = TestEnv::with_config("[agents.claude]\nimage = \"agentq-test-node:latest\"\n");
    env.remotes.create("core", "demo", &[]);
    let home = env.dir.path().join("agent-home");
    std::fs::create_dir_all(home.join(".claude")).unwrap();
    std::fs::write(home.join(".claude/settings.json"), "{}\n").unwrap();
    env.set_env("DIR_HOME", home.to_string_lossy().into_owned());
    let id = env.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        "1",
        "--agent",
        "claude",
        "--task",
        "Use HOME @agentq-test write-home @agentq-test require /agentq-home/.claude/settings.json @agentq-test commit",
    ]);
    let _w = env.worker("w1", 1);
    let rec = env.wait_final(&id, LONG).await;
    let log = std::fs::read_to_string(Path::new(&rec.workspace_dir).join(".meta/agent-claude.log"))
        .unwrap_or_default();
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}\n{log}");
    assert!(log.contains("home writable: /agentq-home"), "{log}");
    assert!(log.contains("committed"), "{log}");
    // Nothing of the run's home is left on the host.
    assert!(
        !home.join(".agentq-home-check").exists()
            && !home.join(".claude/.agentq-home-check").exists()
    );
}

/// The agent commits one change and leaves two uncommitted (an edit of a
/// tracked file, a new file): they are kept as a patch, the record says so,
/// and the agent's own index is untouched.
#[tokio::test(flavor = "multi_thread")]
async fn uncommitted_work_is_kept_as_a_patch_and_said_so() {
    require_docker();
    let env = TestEnv::new();
    env.remotes
        .create("core", "demo", &[("README.md", "# demo\n")]);
    let id = env.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        "1",
        "--task",
        "Edit @agentq-test commit @agentq-test leave-uncommitted",
    ]);
    let _w = env.worker("w1", 1);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    let patch = kept_leftovers_patch(&rec, 2);
    let ws = Path::new(&rec.workspace_dir);
    assert!(
        patch.contains("diff --git a/README.md b/README.md")
            && patch.contains("+edited by codex, not committed")
            && patch.contains("diff --git a/agentq-uncommitted.txt b/agentq-uncommitted.txt")
            && !patch.contains("agentq-change.txt"),
        "{patch}"
    );
    // The agent's index is as it left it: nothing staged.
    let repo = ws.join("repo");
    assert_eq!(git(&repo, &["diff", "--cached", "--name-only"]), "");
    let status = git(&repo, &["status", "--porcelain"]);
    assert!(
        status.contains("M README.md") && status.contains("?? agentq-uncommitted.txt"),
        "{status}"
    );
    // Shown by inspect and the one-line views.
    let shown = env.cli_ok(&["inspect", &id]);
    assert!(
        shown.contains("uncommitted  agent left 2 files uncommitted"),
        "{shown}"
    );
    let list = env.cli_ok(&["list"]);
    assert!(list.contains("agent left 2 files uncommitted"), "{list}");

    // A question in BLOCKED.md is the outcome, not uncommitted work.
    let blocked = env.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        "2",
        "--task",
        "Ask @agentq-test block \"Which way?\"",
    ]);
    let rec = env.wait_final(&blocked, LONG).await;
    assert_eq!(rec.state, JobState::Blocked, "{rec:#?}");
    assert_eq!(rec.leftovers, "", "{rec:#?}");
}

/// `commit_leftovers = true`: the worker commits what the agent left on the
/// agent branch, and it is pushed with the agent's own commit.
#[tokio::test(flavor = "multi_thread")]
async fn commit_leftovers_puts_uncommitted_work_on_the_pushed_branch() {
    require_docker();
    let env = TestEnv::with_config("commit_leftovers = true");
    let bare = env
        .remotes
        .create("core", "demo", &[("README.md", "# demo\n")]);
    let id = env.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        "1",
        "--task",
        "Edit @agentq-test commit @agentq-test leave-uncommitted",
    ]);
    let _w = env.worker("w1", 1);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    assert!(
        rec.leftovers
            .starts_with("agent left 2 files uncommitted; committed on the agent branch as "),
        "{rec:#?}"
    );
    let subjects = git(&bare, &["log", "--format=%s", &rec.branch]);
    assert!(
        subjects
            .starts_with("agentq: work the agent left uncommitted\nagentq test: change by codex"),
        "{subjects}"
    );
    let file = git(
        &bare,
        &["show", &format!("{}:agentq-uncommitted.txt", rec.branch)],
    );
    assert_eq!(file, "left by codex");
    let readme = git(&bare, &["show", &format!("{}:README.md", rec.branch)]);
    assert!(
        readme.ends_with("edited by codex, not committed"),
        "{readme}"
    );
}
