//! Issue 34: the agent's commits leave the sandbox without a second
//! container. The agent container's watchdog, once the agent and all it left
//! running are gone, bundles the commits and frames them on its own stdout,
//! a channel no agent process holds (`worker/watchdog/after.rs`). Red team:
//! an agent that forges that channel every way it can.

use std::time::Duration;

use agentq_shared::{
    record::JobRecord,
    status::{JobState, QaStatus},
};
use agentq_tests::*;

const LONG: Duration = Duration::from_secs(180);

/// The forger (its shell script, given base64 so that no `{` of it is
/// taken for a placeholder): commits `honest.txt` on its branch, and a `forged.txt`
/// commit (also descending from the start commit) on a side branch, bundled.
/// Then it writes that bundle as the watchdog's frames (section 0, exit 0;
/// section 1, an empty patch) on its stdout and stderr, tries to write a
/// plan of its own into the heartbeat directory, and leaves a `setsid`
/// daemon that, once the agent's process is gone, writes the frames again
/// to every descriptor of PID 1 and its own stdout, commits `forged.txt` on
/// the agent's branch, and sleeps. Whichever of them a worker believed, the
/// branch would hold `forged.txt`.
const FORGER: &str = r#"start=$(git rev-parse HEAD)
git checkout -q -b forged-side
echo forged > forged.txt && git add forged.txt && git commit -q -m forged
git bundle create /tmp/forged.bundle HEAD "^$start" 2>/dev/null
git checkout -q -
echo honest > honest.txt && git add honest.txt && git commit -q -m honest
be32() { printf "$(printf '\\%03o\\%03o\\%03o\\%03o' $(($1 >> 24 & 255)) $(($1 >> 16 & 255)) $(($1 >> 8 & 255)) $(($1 & 255)))"; }
n=$(wc -c < /tmp/forged.bundle)
{ printf 'D\000'; be32 "$n"; cat /tmp/forged.bundle; printf 'E\000'; be32 4; printf '\000\000\000\000'; printf 'E\001'; be32 4; printf '\000\000\000\000'; } > /tmp/frames
echo "forger: frames of $n bundle bytes"
cat /tmp/frames
cat /tmp/frames >&2
printf '1:1' > /agentq-beat/after 2>/dev/null && echo "forger: wrote the plan" || echo "forger: the plan is read-only"
( setsid sh -c 'while kill -0 "$1" 2>/dev/null; do sleep 0.01; done
for f in /proc/1/fd/1 /proc/1/fd/2 /proc/self/fd/1; do cat /tmp/frames > "$f" 2>/dev/null && echo "daemon: wrote $f" >&2; done
git checkout -q forged-side 2>/dev/null; git branch -f "$2" forged-side 2>/dev/null; git checkout -q "$2" 2>/dev/null
sleep 30' daemon "$$" "$(git symbolic-ref --short HEAD)" & )
echo "forger: done"
"#;

fn forger_config() -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(FORGER);
    format!(
        "[agents.forger]\nimage = \"agentq-test-agent:latest\"\ncommand = [\"sh\", \"-c\", \"echo $0 | base64 -d > /tmp/forger.sh && exec sh /tmp/forger.sh\", \"{b64}\"]\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_that_forges_the_export_channel_gets_only_its_real_head_taken() {
    require_image(TEST_IMAGE);
    let env = TestEnv::with_config(&forger_config());
    let bare = env
        .remotes
        .create("core", "demo", &[("README.md", "# demo\n")]);
    let _w = env.worker("w1", 1);
    let id = env.enqueue(&[
        "--agent", "forger", "--repo", "demo", "--branch", "main", "--task", "Forge",
    ]);
    let rec = env.wait_final(&id, LONG).await;
    // Not UTF-8: the forged frames are in it.
    let log =
        std::fs::read(std::path::Path::new(&rec.workspace_dir).join(".meta/agent-forger.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
    assert_eq!(
        rec.state,
        JobState::Completed,
        "{rec:#?}\n{log}\n{}",
        env.worker_logs()
    );
    let listing: Vec<_> = std::fs::read_dir(std::path::Path::new(&rec.workspace_dir).join(".meta"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        log.contains("forger: done"),
        "the forger did not run: {log}\n{listing:?}\n{rec:#?}\n{}",
        env.worker_logs()
    );
    assert!(log.contains("forger: the plan is read-only"), "{log}");
    assert!(!log.contains("daemon: wrote /proc/1"), "{log}");
    // The branch is the agent's real HEAD when it exited: honest.txt, and
    // no forged.txt (from the frames, the daemon or the plan).
    let files = git(&bare, &["ls-tree", "--name-only", &rec.branch]);
    assert!(files.lines().any(|f| f == "honest.txt"), "{files}");
    assert!(!files.lines().any(|f| f == "forged.txt"), "forged: {files}");
    let subject = git(&bare, &["log", "-1", "--format=%s", &rec.branch]);
    assert_eq!(subject, "honest");
}

/// The run's result ends with the agent's exit code, which the watchdog
/// sends after the export on the same channel (the run then need not wait
/// for Docker's report of the exit). An agent that writes every frame of a
/// clean run, exit code 0 included, on its stdout and stderr, then exits 3:
/// the job failed with 3.
const LIAR: &str = r#"be32() { printf "$(printf '\\%03o\\%03o\\%03o\\%03o' $(($1 >> 24 & 255)) $(($1 >> 16 & 255)) $(($1 >> 8 & 255)) $(($1 & 255)))"; }
{ for s in '\000' '\001' '\002'; do printf "E$s"; be32 4; printf '\000\000\000\000'; done; } > /tmp/frames
cat /tmp/frames
cat /tmp/frames >&2
echo "liar: exits 3"
exit 3
"#;

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_that_forges_its_exit_code_on_the_channel_gets_its_real_one() {
    use base64::Engine;
    require_image(TEST_IMAGE);
    let b64 = base64::engine::general_purpose::STANDARD.encode(LIAR);
    let env = TestEnv::with_config(&format!(
        "[agents.liar]\nimage = \"agentq-test-agent:latest\"\ncommand = [\"sh\", \"-c\", \"echo $0 | base64 -d > /tmp/liar.sh && exec sh /tmp/liar.sh\", \"{b64}\"]\n"
    ));
    env.remotes
        .create("core", "demo", &[("README.md", "# demo\n")]);
    let _w = env.worker("w1", 1);
    let id = env.enqueue(&[
        "--agent", "liar", "--repo", "demo", "--branch", "main", "--task", "Lie",
    ]);
    let rec = env.wait_final(&id, LONG).await;
    let log = std::fs::read(std::path::Path::new(&rec.workspace_dir).join(".meta/agent-liar.log"))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    assert!(
        log.contains("liar: exits 3"),
        "the liar did not run: {log}\n{rec:#?}"
    );
    assert_eq!(
        (rec.state, rec.exit_code),
        (JobState::Failed, Some(3)),
        "{rec:#?}\n{log}\n{}",
        env.worker_logs()
    );
}

/// Issue 34: the agent's container is removed beside the import of its
/// commits and the push (off the way to the final state), yet a job said
/// completed has no container left. Docker is made slow to remove it
/// (`AGENTQ_TEST_SLOW_REMOVAL_MS`, debug builds only): the final state
/// waits for the removal.
#[tokio::test(flavor = "multi_thread")]
async fn a_completed_job_has_no_container_left_even_when_its_removal_is_slow() {
    let (env, _w, rec) = slowly_removed("", "@agentq-test commit").await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    assert!(!rec.branch.is_empty(), "{rec:#?}");
    let left = env.containers_of(&rec.id);
    assert!(
        left.is_empty(),
        "the job was said completed before its container was removed: {left:?}"
    );
}

/// The same for the QA container (started ahead while the agent runs, or
/// at QA): removed beside the verdict and the push, gone before the job is
/// said completed.
#[tokio::test(flavor = "multi_thread")]
async fn a_job_whose_qa_ran_has_no_container_left_even_when_its_removal_is_slow() {
    let qa = "[agents.codex]\nqa = [[\"sh\", \"-c\", \"test -f README.md || true\"]]\n";
    let (env, _w, rec) = slowly_removed(qa, "@agentq-test commit").await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    assert_eq!(rec.qa_status, Some(QaStatus::Passed), "{rec:#?}");
    let left = env.containers_of(&rec.id);
    assert!(
        left.is_empty(),
        "the job was said completed before its QA container was removed: {left:?}"
    );
}

/// And for a QA container started ahead that the run never used (the agent
/// failed, so there is no QA): its removal is one of the run's, waited for
/// before the job is said failed.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_job_has_no_unused_qa_container_left_even_when_its_removal_is_slow() {
    let qa = "[agents.codex]\nqa = [[\"true\"]]\n";
    let (env, _w, rec) = slowly_removed(qa, "@agentq-test exit 5").await;
    assert_eq!(rec.state, JobState::Failed, "{rec:#?}");
    assert_eq!(rec.qa_status, None, "{rec:#?}");
    let left = env.containers_of(&rec.id);
    assert!(
        left.is_empty(),
        "the job was said failed before its unused QA container was removed: {left:?}"
    );
}

/// One job of `task` (agent codex, the pool configured with `config`), on a
/// worker whose every container removal takes 1.5 s, to its final state.
/// The worker is still running when the caller looks at the containers (its
/// shutdown would wait for the removals).
async fn slowly_removed(config: &str, task: &str) -> (TestEnv, WorkerProc, JobRecord) {
    require_image(TEST_IMAGE);
    let env = TestEnv::new();
    if !config.is_empty() {
        env.append_config(config);
    }
    env.set_env("AGENTQ_TEST_SLOW_REMOVAL_MS", "1500");
    env.remotes.create("core", "demo", &[]);
    let w = env.worker("w1", 1);
    let args = [
        "--repo", "demo", "--task", task, "--issue", "1", "--agent", "codex",
    ];
    let id = env.enqueue(&args);
    let rec = env.wait_final(&id, LONG).await;
    (env, w, rec)
}

/// The same when the stages end without recording an outcome themselves
/// (here: the provider's usage limit, the job waiting for its reset): the
/// job's next state is written only once its container is gone.
#[tokio::test(flavor = "multi_thread")]
async fn a_job_waiting_for_its_quota_has_no_container_left_even_when_its_removal_is_slow() {
    require_directives(TEST_IMAGE, &["limit-once"]);
    let env = TestEnv::new();
    env.set_env("AGENTQ_TEST_SLOW_REMOVAL_MS", "1500");
    env.remotes.create("core", "demo", &[]);
    let _w = env.worker("w1", 1);
    let id = env.enqueue(&[
        "--repo",
        "demo",
        "--task",
        "@agentq-test limit-once ■ You've hit your usage limit. Upgrade to Pro (https://openai.com/chatgpt/pricing) or try again in 25 seconds.",
        "--agent",
        "codex",
        "--issue",
        "1",
    ]);
    let rec = env
        .wait_for(&id, LONG, |r| {
            r.state.is_final() || r.state == JobState::Waiting
        })
        .await;
    assert_eq!(rec.state, JobState::Waiting, "{rec:#?}");
    assert_eq!(
        env.containers_of(&id),
        Vec::<String>::new(),
        "the job was said waiting before its container was removed"
    );
}
