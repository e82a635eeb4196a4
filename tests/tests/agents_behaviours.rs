//! Issue 28: the fake agent behaving as real agents do — `git add -A` of
//! everything, a child that outlives it with stdout open, a `setsid` daemon,
//! progress bars, colours and bytes that are not UTF-8, uncommitted edits,
//! history rewrites, a 1 MiB issue body — each end to end with the real
//! worker, Docker, Redis, git and the simulated forge, checked for what a user
//! would expect to see.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use agentq_shared::{record::JobRecord, status::JobState, verify::Verify};
use agentq_tests::{forge_sim::ForgeSim, *};

/// How long a test waits for a job to end: longer than [`AGENT_TIMEOUT`], so
/// that a run held until its timeout shows as `timed_out`, not as a wait that
/// gave up.
const WAIT: Duration = Duration::from_secs(900);
/// The agents' timeout: a job that ends `completed` did not run into it.
const AGENT_TIMEOUT: u64 = 600;
const TOKEN: &str = "forge-token-behaviours-7c2a";
/// The built-in agents.
const BUILT_IN: [&str; 5] = ["codex", "claude", "gemini", "coderabbit", "local"];

/// The test agent's image: `agentq-test-agent:latest`, or
/// `$AGENTQ_TEST_AGENT_IMAGE` (a private tag of the same build, while others
/// rebuild the shared one).
fn agent_image() -> String {
    std::env::var("AGENTQ_TEST_AGENT_IMAGE").unwrap_or_else(|_| TEST_IMAGE.into())
}

/// A world whose agents (every built-in one, on [`agent_image`]) have a
/// 600 s timeout, behind the simulated forge, with `core/demo` (two commits,
/// so the start commit has a parent) holding `README.md` and
/// `agentq-delete-me.txt`; `extra`: more config (tables).
async fn forge_env(extra: &str) -> (TestEnv, ForgeSim, PathBuf) {
    let image = agent_image();
    require_directives(
        &image,
        &[
            "make-mess",
            "add-all",
            "background",
            "daemon",
            "progress",
            "colours",
            "bad-utf8",
            "reset-unrelated",
            "amend-base",
        ],
    );
    let agents: String = BUILT_IN
        .iter()
        .map(|a| format!("[agents.{a}]\nimage = \"{image}\"\ntimeout_secs = {AGENT_TIMEOUT}\n"))
        .collect();
    let env = TestEnv::with_config(&format!(
        "{agents}[forge]\ntoken_env = \"AGENTQ_TEST_FORGE_TOKEN\"\nmax_retries = 1\nretry_base_ms = 50\n{extra}"
    ));
    let sim = ForgeSim::start(TOKEN, env.remotes.base.path().to_path_buf()).await;
    env.set_env("AGENTQ_FORGE_URL", sim.url());
    env.set_env("AGENTQ_GIT_BASE", sim.url());
    env.set_env("AGENTQ_TEST_FORGE_TOKEN", TOKEN);
    let bare = env.remotes.create(
        "core",
        "demo",
        &[("README.md", "# demo\n"), ("agentq-delete-me.txt", "old\n")],
    );
    // A second commit: the run starts from a commit that has a parent.
    let work = tempfile::tempdir().unwrap();
    git(
        work.path(),
        &["clone", "--quiet", bare.to_str().unwrap(), "."],
    );
    std::fs::write(work.path().join("CHANGES.md"), "v1\n").unwrap();
    git(work.path(), &["add", "CHANGES.md"]);
    git(work.path(), &["commit", "--quiet", "-m", "second"]);
    git(work.path(), &["push", "--quiet", "origin", "main"]);
    sim.add_repo("core", "demo", "main");
    (env, sim, bare)
}

/// Enqueues `task` on issue `issue` of `core/demo` (the issue made on the forge).
fn enqueue_issue(env: &TestEnv, sim: &ForgeSim, issue: u64, task: &str) -> String {
    sim.add_issue("core", "demo", issue, "Behave", "Do as the task says.");
    env.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        &issue.to_string(),
        "--task",
        task,
    ])
}

fn agent_log(rec: &JobRecord, pool: &str) -> String {
    std::fs::read_to_string(Path::new(&rec.workspace_dir).join(format!(".meta/agent-{pool}.log")))
        .unwrap_or_default()
}

/// `{job}.{what}` the fake agent wrote under `/agentq-test`: `start=UPTIME sleep=N`.
fn child_record(env: &TestEnv, id: &str, what: &str) -> (f64, f64) {
    let path = env.dir.path().join("runs").join(format!("{id}.{what}"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let field = |k: &str| -> f64 {
        text.split_whitespace()
            .find_map(|f| f.strip_prefix(k))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {k} in {text:?}"))
    };
    (field("start="), field("sleep="))
}

/// The bytes of `path` at `rev` in the bare repository.
fn blob(bare: &Path, rev: &str, path: &str) -> Option<Vec<u8>> {
    let out = Command::new("git")
        .arg("-C")
        .arg(bare)
        .args(["cat-file", "blob", &format!("{rev}:{path}")])
        .output()
        .unwrap();
    out.status.success().then_some(out.stdout)
}

/// Whether the bare repository has branch `branch`.
fn has_branch(bare: &Path, branch: &str) -> bool {
    Command::new("git")
        .arg("-C")
        .arg(bare)
        .args(["rev-parse", "--verify", "--quiet"])
        .arg(format!("refs/heads/{branch}"))
        .output()
        .unwrap()
        .status
        .success()
}

/// Host processes whose command line is exactly `argv`.
fn host_processes(argv: &[&str]) -> Vec<String> {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == want))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// `git add -A` of everything: a new binary file, a file in a new directory,
/// an edit and a deletion are committed by the agent, imported and pushed,
/// byte for byte; nothing is left over. Not proposed: harvest (issue 32)
/// hands no branch that adds a binary file to the forge's pull requests.
#[tokio::test(flavor = "multi_thread")]
async fn git_add_all_of_everything_is_committed_imported_and_pushed() {
    let (env, sim, bare) = forge_env("").await;
    let _w = env.worker("w1", 1);
    let id = enqueue_issue(
        &env,
        &sim,
        1,
        "Everything @agentq-test make-mess @agentq-test add-all",
    );
    let rec = env.wait_final(&id, WAIT).await;
    let log = agent_log(&rec, "codex");
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}\n{log}");
    assert!(log.contains("staged: D  agentq-delete-me.txt"), "{log}");
    assert_eq!(rec.leftovers, "", "nothing was left: {rec:#?}");
    let branch = &rec.branch;
    assert_eq!(
        blob(&bare, branch, "agentq-binary.bin").as_deref(),
        Some(&b"\x00\x01\x02binary\xff\xfe\xfd\n\x00"[..]),
        "the binary file on the pushed branch"
    );
    assert_eq!(
        blob(&bare, branch, "agentq-new/notes.txt").as_deref(),
        Some(&b"new by codex\n"[..])
    );
    assert_eq!(blob(&bare, branch, "agentq-delete-me.txt"), None, "deleted");
    assert_eq!(
        blob(&bare, branch, "README.md").as_deref(),
        Some(&b"# demo\nedited by codex\n"[..])
    );
    let subjects = git(&bare, &["log", "--format=%s", branch]);
    assert!(
        subjects.starts_with("agentq test: everything by codex\nsecond\ninitial"),
        "{subjects}"
    );
    assert_eq!(rec.verify, Some(Verify::NeedsReview), "{rec:#?}");
    assert_eq!(
        rec.verify_reason,
        "harvest refused the branch: binary file added: agentq-binary.bin"
    );
    let pulls = sim.pulls("core", "demo");
    assert!(pulls.is_empty(), "{pulls:#?}");
}

/// Runs a job whose agent leaves `what` (`background` or `daemon`, the fake
/// agent's directive) sleeping for hours with stdout open, then `then`; checks
/// that the run ended when the agent's own process did — `completed` with its
/// exit 0 (not `timed_out` at 600 s) while that sleep would still be running —
/// and that nothing of the job is left on the engine (by its label) or the
/// host (its `sleep` process). Returns the agent's log.
async fn leaves_nothing_behind(what: &str, then: &str) -> String {
    let (env, sim, _bare) = forge_env("").await;
    let _w = env.worker("w1", 1);
    // A number of seconds no other test sleeps: its process is told apart.
    let secs =
        36_000 + u64::from(std::process::id() % 9_000) + u64::from(what == "daemon") * 10_000;
    let id = enqueue_issue(
        &env,
        &sim,
        1,
        &format!("Leave it @agentq-test {what} {secs} {then}"),
    );
    let rec = env.wait_final(&id, WAIT).await;
    let now = uptime();
    let log = agent_log(&rec, "codex");
    assert_eq!(
        rec.state,
        JobState::Completed,
        "{rec:#?}\n{log}\n{}",
        env.worker_logs()
    );
    assert_eq!(rec.exit_code, Some(0));
    let (start, sleep) = child_record(&env, &id, if what == "daemon" { "daemon" } else { "child" });
    assert!(
        now < start + sleep,
        "the job ended at {now}, after the {what}'s sleep ({start} + {sleep})"
    );
    assert!(
        containers_with_label("agentq.job", &id).is_empty(),
        "a container of the job was left"
    );
    assert!(
        host_processes(&["sleep", &secs.to_string()]).is_empty(),
        "the {what} outlived the job"
    );
    log
}

/// A child that keeps stdout and stderr open and sleeps for hours does not
/// hold the job (see [`leaves_nothing_behind`]); it goes with the container.
#[tokio::test(flavor = "multi_thread")]
async fn a_child_holding_stdout_open_does_not_hold_the_job() {
    let log = leaves_nothing_behind("background", "@agentq-test print main-exits").await;
    assert!(
        log.contains("child: started") && log.contains("main-exits"),
        "{log}"
    );
    assert!(!log.contains("child: woke up"), "{log}");
}

/// A daemon (double fork, `setsid`: a session of its own, out of the agent's
/// process group) with stdout still open: the same, and the run's commit is
/// kept.
#[tokio::test(flavor = "multi_thread")]
async fn a_setsid_daemon_does_not_hold_the_job_and_nothing_is_left() {
    let log = leaves_nothing_behind("daemon", "@agentq-test commit").await;
    assert!(
        log.contains("daemon: started in session") && log.contains("committed"),
        "{log}"
    );
    assert!(!log.contains("daemon: woke up"), "{log}");
}

/// The `<pre id="log">` of a job page, unescaped.
fn page_log(page: &str) -> String {
    let start = page.find("<pre id=\"log\"").expect("a log on the page");
    let body = &page[start..];
    let body = &body[body.find('>').unwrap() + 1..body.find("</pre>").unwrap()];
    body.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#10;", "\n")
        .replace("&amp;", "&")
}

/// Progress bars, colours, cursor moves, a window title and bytes that are
/// not UTF-8: `agentq logs` and the console's job page show readable text
/// (each state of the bar on its line, CR LF a plain line break, colours
/// gone, other escapes made visible, bad bytes as `\xNN` / U+FFFD) and
/// never a raw escape; `--raw` still gives the bytes back.
#[tokio::test(flavor = "multi_thread")]
async fn progress_colours_and_bad_bytes_are_readable_in_logs_and_the_console() {
    let (env, sim, _bare) = forge_env("").await;
    let _w = env.worker("w1", 1);
    let id = enqueue_issue(
        &env,
        &sim,
        1,
        "Be a terminal program @agentq-test progress @agentq-test colours @agentq-test bad-utf8",
    );
    let rec = env.wait_final(&id, WAIT).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");

    let out = env.cli(&["logs", &id], None);
    assert!(out.status.success(), "{out:?}");
    for bad in [0x1b, 0x9b, b'\r', 0x07] {
        assert!(
            !out.stdout.contains(&bad),
            "`agentq logs` wrote byte {bad:#x}: {:?}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let text = String::from_utf8(out.stdout).expect("`agentq logs` writes UTF-8");
    for want in [
        "downloading   0%^M\ndownloading  50%^M\ndownloading 100%\n",
        "step 1/2\nstep 2/2\n",
        "\\e]0;agent-window-title^Ggreen bold then red plain\n",
        "spinner |\\e[1D/\\e[1D-\\e[2K\\e[1Gdone\\e[3A\\e[?25l\\e[?25h\n",
        "bytes \\xff\\xfe here, a cut \\xe2\\x82 char, caf\u{e9} ok\n",
    ] {
        assert!(text.contains(want), "`agentq logs` lacks {want:?}:\n{text}");
    }
    let raw = env.cli(&["logs", &id, "--raw"], None);
    let raw_text = &raw.stdout;
    assert!(
        raw_text.windows(5).any(|w| w == b"\x1b[1;3")
            && raw_text.windows(2).any(|w| w == b"\xff\xfe"),
        "--raw gives the bytes back"
    );

    // The console's job page: the same text, bad bytes as U+FFFD.
    let web = env.web(None);
    let page = reqwest::get(format!("{}/jobs/{id}", web.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let shown = page_log(&page);
    assert!(
        !shown.contains(['\u{1b}', '\u{9b}', '\r', '\u{7}']),
        "a raw control character on the page: {shown:?}"
    );
    for want in [
        "downloading   0%^M\ndownloading  50%^M\ndownloading 100%\n",
        "step 1/2\nstep 2/2\n",
        "\\e]0;agent-window-title^Ggreen bold then red plain\n",
        "bytes \u{fffd}\u{fffd} here, a cut \u{fffd} char, caf\u{e9} ok\n",
    ] {
        assert!(shown.contains(want), "the page lacks {want:?}:\n{shown}");
    }
}

/// Uncommitted edits only (no commit): a new binary file, a file in a new
/// directory, an edited and a deleted tracked file are kept as a patch and
/// said so; nothing of them is pushed.
#[tokio::test(flavor = "multi_thread")]
async fn uncommitted_binary_new_and_deleted_files_are_kept_as_a_patch() {
    let (env, sim, bare) = forge_env("").await;
    let _w = env.worker("w1", 1);
    let id = enqueue_issue(&env, &sim, 1, "Leave it @agentq-test make-mess");
    let rec = env.wait_final(&id, WAIT).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    assert_eq!(
        rec.leftovers,
        "agent left 4 files uncommitted; kept as a patch, not pushed (.meta/leftovers-1.patch)",
        "{rec:#?}"
    );
    let patch =
        std::fs::read_to_string(Path::new(&rec.workspace_dir).join(".meta/leftovers-1.patch"))
            .unwrap();
    assert!(
        patch.contains("diff --git a/agentq-binary.bin b/agentq-binary.bin")
            && patch.contains("GIT binary patch")
            && patch.contains("deleted file mode 100644")
            && patch.contains("+new by codex")
            && patch.contains("+edited by codex"),
        "{patch}"
    );
    assert!(
        !has_branch(&bare, &rec.branch) || blob(&bare, &rec.branch, "agentq-binary.bin").is_none(),
        "uncommitted work was pushed"
    );
    let shown = env.cli_ok(&["status", &id]);
    assert!(shown.contains("agent left 4 files uncommitted"), "{shown}");
}

/// History rewrites — a reset to an unrelated root, an amend of the commit
/// the run started from — are refused with an error that says what happened:
/// the job `failed` at its first attempt (the agent's outcome: no retry),
/// nothing pushed and no pull request, and the pool is not paused even with a
/// backoff that pauses it at one failure: the next job runs and completes.
#[tokio::test(flavor = "multi_thread")]
async fn history_rewrites_are_refused_as_the_agents_doing() {
    let (env, sim, bare) =
        forge_env("[backoff]\nfailures = 1\nwindow_secs = 600\npause_secs = 600\n").await;
    let _w = env.worker("w1", 1);
    for (issue, directive, says) in [
        (
            1,
            "reset-unrelated",
            "shares no commit with it (a reset to an unrelated root",
        ),
        (2, "amend-base", "the agent rewrote that commit (an amend?)"),
    ] {
        let id = enqueue_issue(
            &env,
            &sim,
            issue,
            &format!("Rewrite @agentq-test {directive}"),
        );
        let rec = env.wait_final(&id, WAIT).await;
        let log = agent_log(&rec, "codex");
        assert_eq!(
            rec.state,
            JobState::Failed,
            "{directive}: {rec:#?}\n{log}\n{}",
            env.worker_logs()
        );
        assert!(
            rec.error
                .starts_with("cannot take the agent's commits: the branch's head ")
                && rec.error.contains("does not descend from")
                && rec.error.contains(says),
            "{directive}: {}",
            rec.error
        );
        assert_eq!(
            (rec.attempt, rec.runs),
            (1, 1),
            "{directive}: retried: {rec:#?}"
        );
        assert!(!has_branch(&bare, &rec.branch), "{directive}: pushed");
        let status = env.cli_ok(&["status", &id]);
        assert!(status.contains("does not descend"), "{status}");
        // The outcome was recorded before the job went final.
        let paused: bool = redis::cmd("EXISTS")
            .arg(env.key("backoff:codex"))
            .query(&mut env.redis.conn())
            .unwrap();
        assert!(
            !paused,
            "{directive}: the pool was paused for the agent's rewrite"
        );
    }
    assert!(
        sim.pulls("core", "demo").is_empty(),
        "a pull request was opened"
    );
    let next = enqueue_issue(&env, &sim, 3, "Honest @agentq-test commit");
    let rec = env.wait_final(&next, WAIT).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    assert!(has_branch(&bare, &rec.branch));
}

/// A 1 MiB issue body on the forge, dispatched with `--issue` to every
/// built-in agent: each starts and completes, reading the start of the body
/// (cut in the prompt with a marker); coderabbit reviews with its fixed
/// arguments and starts as ever.
#[tokio::test(flavor = "multi_thread")]
async fn a_one_mebibyte_issue_body_reaches_every_built_in_agent() {
    let (env, sim, _bare) = forge_env("").await;
    let body = format!(
        "@agentq-test print issue-body-read\n{}",
        "issue text ".repeat(1024 * 1024 / 11)
    );
    assert!(body.len() >= 1024 * 1024);
    let mut ids = Vec::new();
    for (i, agent) in BUILT_IN.iter().enumerate() {
        let issue = (i + 1) as u64;
        sim.add_issue("core", "demo", issue, "Big", &body);
        let id = env.enqueue(&[
            "--repo",
            "demo",
            "--issue",
            &issue.to_string(),
            "--agent",
            agent,
            "--task",
            "Read the issue",
        ]);
        ids.push((*agent, id));
    }
    let _w = env.worker("w1", 2);
    for (agent, id) in &ids {
        let rec = env.wait_final(id, WAIT).await;
        let log = agent_log(&rec, agent);
        assert_eq!(
            rec.state,
            JobState::Completed,
            "{agent}: {rec:#?}\n{}",
            &log[..log.len().min(2000)]
        );
        assert!(rec.prompt.contains("[cut "), "{agent}: no cut marker");
        // `local` runs codex against Ollama (socat in the test image does nothing).
        let program = if *agent == "local" { "codex" } else { agent };
        assert!(
            log.contains(&format!("agentq-test-agent: {program}")),
            "{agent} did not start"
        );
        if *agent != "coderabbit" {
            assert!(
                log.contains("\nissue-body-read\n"),
                "{agent} did not read the issue: {}",
                &log[..log.len().min(2000)]
            );
        }
    }
}
