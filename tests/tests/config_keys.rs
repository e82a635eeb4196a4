//! Issue 29: configuration keys and CLI claims whose behaviour had no test of
//! its own. Each test sets the key (or runs the command) and observes what it
//! changes: the agent's tree and identity, Redis's record of a delay, the
//! worker's health, what a command selects. None reads a log line as proof.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use agentq_shared::{clock::now_ms, status::JobState};
use agentq_tests::*;

const LONG: Duration = Duration::from_secs(180);

const REDTEAM_IMAGE: &str = "agentq-redteam:latest";

/// Polls `probe` every 100 ms until it gives a value; fails the test naming
/// `what` after `timeout`.
async fn poll<T>(
    env: &TestEnv,
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    env.poll_until(what, timeout, async || probe()).await
}

/// Puts `keys` (TOML lines) at the top of the world's `[docker]` table.
fn docker_keys(env: &TestEnv, keys: &str) {
    let text = std::fs::read_to_string(env.config_path()).unwrap();
    assert!(text.contains("\n[docker]\n"), "{text}");
    let text = text.replacen("\n[docker]\n", &format!("\n[docker]\n{keys}\n"), 1);
    std::fs::write(env.config_path(), text).unwrap();
}

/// A copy of the world's config with `from` replaced by `to`, for a second
/// worker (`--config`); fails if `from` is not there.
fn config_variant(env: &TestEnv, name: &str, from: &str, to: &str) -> PathBuf {
    let text = std::fs::read_to_string(env.config_path()).unwrap();
    assert!(text.contains(from), "no `{from}` in\n{text}");
    let path = env.dir.path().join(name);
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    path
}

/// Adds `n` commits to `main` of the bare repository `bare`; tags the first
/// one `tag` when given. Returns the tagged commit (or the last one).
fn add_commits(bare: &Path, n: usize, tag: Option<&str>) -> String {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    git(w, &["clone", "--quiet", bare.to_str().unwrap(), "."]);
    let mut tagged = String::new();
    for i in 1..=n {
        std::fs::write(w.join(format!("file-{i}.txt")), format!("{i}\n")).unwrap();
        git(w, &["add", "-A"]);
        git(w, &["commit", "--quiet", "-m", &format!("commit {i}")]);
        if i == 1 {
            if let Some(t) = tag {
                git(w, &["tag", t]);
                tagged = git(w, &["rev-parse", "HEAD"]);
            }
        }
    }
    git(w, &["push", "--quiet", "--tags", "origin", "main"]);
    if tagged.is_empty() {
        tagged = git(w, &["rev-parse", "HEAD"]);
    }
    tagged
}

/// The agent's output as the worker kept it.
fn agent_log(rec: &agentq_shared::record::JobRecord, agent: &str) -> String {
    std::fs::read_to_string(Path::new(&rec.workspace_dir).join(format!(".meta/agent-{agent}.log")))
        .unwrap_or_default()
}

/// `agentq_history_depth = 3` gives the agent a tree with exactly three
/// commits of history; `0` gives it all of them.
#[tokio::test(flavor = "multi_thread")]
async fn agent_history_depth_is_the_history_in_the_agents_tree() {
    require_docker();
    let env = TestEnv::with_config("agent_history_depth = 3\nauto_qa = false\n");
    let bare = env.remotes.create("core", "demo", &[]);
    add_commits(&bare, 6, None);
    let shallow = env.enqueue_for_issue(1, "@agentq-test print shallow");
    let mut w = env.worker("w1", 1);
    let rec = env.wait_final(&shallow, LONG).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    let repo = Path::new(&rec.workspace_dir).join("repo");
    assert_eq!(git(&repo, &["rev-list", "--count", "HEAD"]), "3");
    assert!(repo.join("file-6.txt").exists(), "the tree is at the head");
    w.signal_and_wait("TERM", LONG);

    let all = config_variant(
        &env,
        "all.toml",
        "agent_history_depth = 3",
        "agent_history_depth = 0",
    );
    let _w = env.worker_with_args("w2", &["--config", all.to_str().unwrap()]);
    let full = env.enqueue_for_issue(2, "@agentq-test print full");
    let rec = env.wait_final(&full, LONG).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    let repo = Path::new(&rec.workspace_dir).join("repo");
    assert_eq!(git(&repo, &["rev-list", "--count", "HEAD"]), "7");
}

/// `docker.git_user_name` / `git_user_email` are the author and committer
/// of the agent's commit, as imported and saved to the remote.
#[tokio::test(flavor = "multi_thread")]
async fn git_user_name_and_email_sign_the_agents_commits() {
    require_docker();
    let env = TestEnv::with_config("auto_qa = false\n");
    docker_keys(
        &env,
        "git_user_name = \"Keys Tester\"\ngit_user_email = \"keys@example.org\"",
    );
    let bare = env.remotes.create("core", "demo", &[]);
    let id = env.enqueue_for_issue(1, "@agentq-test commit");
    let _w = env.worker("w1", 1);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    assert!(!rec.branch.is_empty(), "{rec:#?}");
    let who = git(
        &bare,
        &["log", "-1", "--format=%an|%ae|%cn|%ce|%s", &rec.branch],
    );
    assert_eq!(
        who,
        "Keys Tester|keys@example.org|Keys Tester|keys@example.org|agentq test: change by codex"
    );
}

/// `docker.agent_user` is the uid:gid the agent runs as, and `agent_home`'s
/// config directories are inside its HOME, read-only: a file there can be
/// neither removed nor added, even in a directory open to everyone.
#[tokio::test(flavor = "multi_thread")]
async fn agent_user_is_the_agents_uid_and_agent_home_is_mounted_read_only() {
    require_image(REDTEAM_IMAGE);
    let env = TestEnv::with_config("auto_qa = false\n");
    let home = env.dir.path().join("operator-home");
    let codex = home.join(".codex");
    std::fs::create_dir_all(&codex).unwrap();
    std::fs::write(codex.join("keys-marker"), "operator's\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&codex, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::set_permissions(
            codex.join("keys-marker"),
            std::fs::Permissions::from_mode(0o666),
        )
        .unwrap();
    }
    docker_keys(
        &env,
        &format!(
            "agent_user = \"4321:4322\"\nagent_home = \"{}\"",
            home.display()
        ),
    );
    env.append_config(&format!("[agents.codex]\nimage = \"{REDTEAM_IMAGE}\"\n"));
    env.remotes.create("core", "demo", &[]);
    let id = env.enqueue_for_issue(
        1,
        "@redteam whoami @redteam rm /agentq-home/.codex/keys-marker @redteam write /agentq-home/.codex/planted x",
    );
    let _w = env.worker("w1", 1);
    let rec = env.wait_final(&id, LONG).await;
    let log = agent_log(&rec, "codex");
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}\n{log}");
    assert!(log.contains("uid=4321 gid=4322"), "{log}");
    // `rm -f` of a file that is not there succeeds: its failure shows the
    // operator's file was there, and read-only.
    assert!(
        !log.contains("removed /agentq-home/.codex/keys-marker"),
        "{log}"
    );
    assert!(!log.contains("wrote /agentq-home/.codex/planted"), "{log}");
    assert_eq!(
        std::fs::read_to_string(codex.join("keys-marker")).unwrap(),
        "operator's\n"
    );
    assert!(!codex.join("planted").exists());
}

/// The working tree is measured every 10 s while the agent runs: an agent that
/// grows it past `workspace_limit_mb` and then waits is stopped for it, long
/// before its time limit (an hour here), and the job fails saying so.
#[tokio::test(flavor = "multi_thread")]
async fn a_tree_over_workspace_limit_mb_stops_the_agent_while_it_runs() {
    require_image(REDTEAM_IMAGE);
    let env = TestEnv::with_config("workspace_limit_mb = 16\nauto_qa = false\n");
    let text = std::fs::read_to_string(env.config_path()).unwrap();
    std::fs::write(
        env.config_path(),
        text.replacen("timeout_secs = 120", "timeout_secs = 3600", 1),
    )
    .unwrap();
    env.append_config(&format!("[agents.codex]\nimage = \"{REDTEAM_IMAGE}\"\n"));
    env.remotes.create("core", "demo", &[]);
    let id = env.enqueue_for_issue(1, "@redteam fill 40 @redteam sleep 3000");
    let _w = env.worker("w1", 1);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Failed, "{rec:#?}");
    assert!(
        rec.error.contains("workspace grew to") && rec.error.contains("over the limit"),
        "{rec:#?}"
    );
    assert_eq!(rec.attempt, 1, "{rec:#?}");
    assert!(agent_log(&rec, "codex").contains("filled 40 MiB"));
}

/// An agent of this test's own: prints the files `$AGENTQ_PROMPT_FILE` and
/// `$AGENTQ_ANSWER_FILE` name, each line as `NAME| line`, and blocks until
/// there is an answer.
const FILES_AGENT: &str = r#"#!/bin/sh
show() {
  if [ -n "$2" ] && [ -f "$2" ]; then sed "s/^/$1| /" "$2"; echo; else echo "$1: no file"; fi
}
show AGENTQ_PROMPT_FILE "$AGENTQ_PROMPT_FILE"
show AGENTQ_ANSWER_FILE "$AGENTQ_ANSWER_FILE"
[ -n "$AGENTQ_ANSWER_FILE" ] && [ -s "$AGENTQ_ANSWER_FILE" ] || echo "Which colour?" > BLOCKED.md
"#;

/// `$AGENTQ_PROMPT_FILE` names the prompt the agent was given and
/// `$AGENTQ_ANSWER_FILE` the answer of a resumed job (no file before).
#[tokio::test(flavor = "multi_thread")]
async fn the_prompt_and_answer_files_are_named_by_their_variables() {
    require_docker();
    let env = TestEnv::with_config("auto_qa = false\n");
    let agent = env.dir.path().join("files-agent.sh");
    std::fs::write(&agent, FILES_AGENT).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // Mounted over the test image's `codex`, beside the world's own mount.
    let text = std::fs::read_to_string(env.config_path()).unwrap();
    let text = text.replacen(
        "mounts = [{",
        &format!(
            "mounts = [{{ source = \"{}\", target = \"/usr/local/bin/codex\", read_only = true }}, {{",
            agent.display()
        ),
        1,
    );
    std::fs::write(env.config_path(), text).unwrap();
    env.remotes.create("core", "demo", &[]);
    let id = env.enqueue_for_issue(1, "keys-prompt-marker");
    let _w = env.worker("w1", 1);
    let rec = env.wait_final(&id, LONG).await;
    let log = agent_log(&rec, "codex");
    assert_eq!(rec.state, JobState::Blocked, "{rec:#?}\n{log}");
    assert!(
        log.lines()
            .any(|l| l.starts_with("AGENTQ_PROMPT_FILE| ") && l.contains("keys-prompt-marker")),
        "{log}"
    );
    assert!(log.contains("AGENTQ_ANSWER_FILE: no file"), "{log}");

    env.cli_ok(&["resume", &id, "--answer", "keys-answer-magenta"]);
    let rec = env
        .wait_for(&id, LONG, |r| r.runs == 2 && r.state.is_final())
        .await;
    let log = agent_log(&rec, "codex");
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}\n{log}");
    assert!(
        log.lines()
            .any(|l| l.starts_with("AGENTQ_ANSWER_FILE| ") && l.contains("keys-answer-magenta")),
        "{log}"
    );
}

/// Enqueues a job for `issue` on a repository that does not exist: every
/// prep fails, an infrastructure error.
fn enqueue_missing(env: &TestEnv, issue: u32) -> String {
    env.enqueue(&[
        "--repo",
        "missing",
        "--task",
        "t",
        "--issue",
        &issue.to_string(),
    ])
}

/// A job's `tries`, `state`, `reason` and `task_at` as its hash holds them.
type JobFields = (Option<u32>, Option<String>, Option<String>, Option<i64>);

/// Reads `{ns}:job:{id}`'s `tries`, `state`, `reason`, `task_at` and the
/// job's due time in `{ns}:transit` in one transaction.
fn delivery_view(env: &TestEnv, id: &str) -> (u32, String, String, i64, Option<i64>) {
    let mut c = env.redis.conn();
    let ((tries, state, reason, task_at), due): (JobFields, Option<i64>) = redis::pipe()
        .atomic()
        .cmd("HMGET")
        .arg(env.key(&format!("job:{id}")))
        .arg(&["tries", "state", "reason", "task_at"])
        .cmd("ZSCORE")
        .arg(env.key("transit"))
        .arg(id)
        .query(&mut c)
        .unwrap();
    (
        tries.unwrap_or(0),
        state.unwrap_or_default(),
        reason.unwrap_or_default(),
        task_at.unwrap_or(0),
        due,
    )
}

/// Waits until job `id` waits for its retry after its `tries`-th failure;
/// returns (task_at, due) in ms.
async fn wait_retry(env: &TestEnv, id: &str, tries: u32) -> (i64, i64) {
    poll(
        env,
        &format!("{id} waiting for retry {tries}"),
        LONG,
        || {
            let (t, state, reason, at, due) = delivery_view(env, id);
            (t == tries && state == "waiting" && reason == "retry")
                .then_some(())
                .and(due.map(|d| (at, d)))
        },
    )
    .await
}

/// `retry_base_secs` is the first retry delay, doubled for the second: the
/// delivery's due time in Redis is exactly that far from when it was pushed.
#[tokio::test(flavor = "multi_thread")]
async fn retry_base_secs_is_the_first_retry_delay_and_it_doubles() {
    require_docker();
    let env = TestEnv::with_config("retry_base_secs = 7\nmax_attempts = 3\n");
    let id = enqueue_missing(&env, 1);
    let _w = env.worker("w1", 1);
    let (at, due) = wait_retry(&env, &id, 1).await;
    assert_eq!(due - at, 7_000);
    let (at, due) = wait_retry(&env, &id, 2).await;
    assert_eq!(due - at, 14_000);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Failed, "{rec:#?}");
    assert_eq!(rec.attempt, 3, "{rec:#?}");
}

/// Takes the `@deliveries` timer (a due retry's wake-up) out of
/// `{ns}:timers`, as if its publish and timer were lost.
fn lose_the_retry_timer(env: &TestEnv) {
    let removed: i64 = redis::cmd("ZREM")
        .arg(env.key("timers"))
        .arg(agentq_shared::store::park::DELIVERIES_TIMER)
        .query(&mut env.redis.conn())
        .unwrap();
    assert_eq!(
        removed, 1,
        "the retry's timer fired before the test could lose it"
    );
}

/// `poll_ms` is the safety poll (issue 34): how often an idle worker fetches
/// though nothing told it to. A due retry needs no poll: its delivery is a
/// timer (`@deliveries` in `{ns}:timers`), so with ten-minute heartbeats and
/// polls it is taken when due, with no other work. With its timer lost, a
/// worker polling every ten minutes leaves it (its due time on the clock the
/// sweep uses) until new work wakes the worker at once; one polling every
/// 200 ms takes it.
#[tokio::test(flavor = "multi_thread")]
async fn poll_ms_is_the_safety_poll_and_a_due_retry_needs_none() {
    require_docker();
    let env = TestEnv::with_config(
        "heartbeat_secs = 600\npoll_ms = 600000\nretry_base_secs = 3\nmax_attempts = 4\n",
    );
    env.remotes.create("core", "demo", &[]);
    let late = enqueue_missing(&env, 1);
    let mut w = env.worker("w1", 1);
    wait_retry(&env, &late, 1).await;
    // Taken when due, though nothing polls.
    env.wait_for(&late, LONG, |r| r.tries >= 2).await;
    let (_, due) = wait_retry(&env, &late, 2).await;
    lose_the_retry_timer(&env);
    // Past its due time (apalis rounds it up to a whole second) by 8 s, the
    // retry has not been taken.
    poll(&env, "8 s past the retry's due time", LONG, || {
        let (tries, state, ..) = delivery_view(&env, &late);
        assert!(
            tries == 2 && state == "waiting",
            "the idle worker took a retry whose timer was lost before its poll_ms: tries {tries}, {state}\n{}",
            env.worker_logs()
        );
        (now_ms() > due + 9_000).then_some(())
    })
    .await;
    // New work wakes the worker at once, and it takes the due retry too.
    let fresh = env.enqueue_for_issue(2, "@agentq-test print hi");
    let rec = env.wait_final(&fresh, LONG).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    env.wait_for(&late, LONG, |r| r.tries >= 3).await;
    w.signal_and_wait("TERM", LONG);

    let quick = config_variant(&env, "quick.toml", "poll_ms = 600000", "poll_ms = 200");
    let _w = env.worker_with_args(
        "w2",
        &["--concurrency", "1", "--config", quick.to_str().unwrap()],
    );
    let other = enqueue_missing(&env, 3);
    wait_retry(&env, &other, 1).await;
    lose_the_retry_timer(&env);
    env.wait_for(&other, LONG, |r| r.tries >= 2).await;
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Polls `http://{addr}{path}` until its answer satisfies `want`.
async fn wait_http(
    env: &TestEnv,
    addr: &str,
    path: &str,
    want: impl Fn(u16, &str) -> bool,
) -> (u16, String) {
    let what = format!("{path} on {addr} as expected");
    env.poll_until(&what, LONG, async || {
        let r = reqwest::get(format!("http://{addr}{path}"))
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        if want(status, &text) {
            Ok((status, text))
        } else {
            Err(format!("{status}: {text}"))
        }
    })
    .await
}

/// A waiting job whose delivery was lost (removed from apalis's scheduled set)
/// is put back by the sweep every `sweep_secs`: a worker sweeping hourly
/// leaves it, one sweeping every second puts it back, counted in
/// `{ns}:rescued` and `agentq_jobs_rescued`, and the job then runs.
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_delivery_is_rescued_every_sweep_secs_and_counted() {
    require_docker();
    let env = TestEnv::with_config(
        "sweep_secs = 3600\nretry_base_secs = 10\nmax_attempts = 3\nauto_qa = false\n",
    );
    let id = env.enqueue(&[
        "--repo",
        "late",
        "--task",
        "@agentq-test print rescued",
        "--issue",
        "1",
    ]);
    let hourly_started = now_ms();
    let mut hourly = env.worker("hourly", 1);
    wait_retry(&env, &id, 1).await;
    // Lose the delivery: take it out of the scheduled set.
    let task: String = redis::cmd("HGET")
        .arg(env.key(&format!("job:{id}")))
        .arg("task")
        .query(&mut env.redis.conn())
        .unwrap();
    let scheduled =
        agentq_shared::delivery::queue_keys(&agentq_shared::keys::Keys::new(&env.ns))[4].clone();
    let removed: i64 = redis::cmd("ZREM")
        .arg(&scheduled)
        .arg(&task)
        .query(&mut env.redis.conn())
        .unwrap();
    assert_eq!(
        removed, 1,
        "the delivery was taken before the test could lose it"
    );
    let (_, _, _, at, due) = delivery_view(&env, &id);
    let due = due.unwrap();
    // The sweep's grace: twice the lease (3 s) and 5 s.
    let overdue = due.max(at) + 11_000;
    // Overdue past the grace, and the hourly worker up for 45 s: never rescued.
    poll(&env, "the lost job overdue", LONG, || {
        let (tries, state, reason, ..) = delivery_view(&env, &id);
        assert!(
            tries == 1 && state == "waiting" && reason == "retry",
            "a worker with sweep_secs = 3600 rescued the job: {state} {reason}\n{}",
            env.worker_logs()
        );
        (now_ms() > overdue + 3_000 && now_ms() > hourly_started + 45_000).then_some(())
    })
    .await;
    let rescued: Option<u64> = redis::cmd("GET")
        .arg(env.key("rescued"))
        .query(&mut env.redis.conn())
        .unwrap();
    assert_eq!(rescued, None);
    hourly.signal_and_wait("TERM", LONG);

    env.remotes.create("core", "late", &[]);
    let every = config_variant(&env, "every.toml", "sweep_secs = 3600", "sweep_secs = 1");
    let addr = format!("127.0.0.1:{}", free_port());
    let _w = env.worker_with_args(
        "every",
        &["--config", every.to_str().unwrap(), "--metrics-addr", &addr],
    );
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    let history = env.store().await.history(&id).await.unwrap();
    assert!(
        history
            .iter()
            .any(|h| h.state == "waiting" && h.reason == "lost"),
        "{history:#?}"
    );
    let rescued: Option<u64> = redis::cmd("GET")
        .arg(env.key("rescued"))
        .query(&mut env.redis.conn())
        .unwrap();
    assert_eq!(rescued, Some(1));
    let (_, text) = wait_http(&env, &addr, "/metrics", |s, _| s == 200).await;
    assert_eq!(metric(&text, "agentq_jobs_rescued"), Some(1.0), "{text}");
}

/// `host_failures = 1`: one infrastructure failure degrades the host for
/// `host_cooldown_secs` (`/healthz` says how long still: about an hour here);
/// with 3 s, the next job starts only after those 3 s, by the jobs' own
/// history.
#[tokio::test(flavor = "multi_thread")]
async fn host_cooldown_secs_is_how_long_a_degraded_host_takes_nothing() {
    require_docker();
    let env = TestEnv::with_config(
        "host_failures = 1\nhost_cooldown_secs = 3600\nmax_attempts = 1\nauto_qa = false\n",
    );
    env.remotes.create("core", "demo", &[]);
    let addr = format!("127.0.0.1:{}", free_port());
    let mut w = env.worker_with_args("hour", &["--concurrency", "1", "--metrics-addr", &addr]);
    let broken = enqueue_missing(&env, 1);
    env.wait_final(&broken, LONG).await;
    let (_, text) = wait_http(&env, &addr, "/healthz", |s, t| {
        s == 503 && t.starts_with("degraded for ")
    })
    .await;
    let left: u64 = text
        .strip_prefix("degraded for ")
        .and_then(|t| t.split('s').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!((3000..=3600).contains(&left), "{text}");
    w.signal_and_wait("TERM", LONG);

    let short = config_variant(
        &env,
        "short.toml",
        "host_cooldown_secs = 3600",
        "host_cooldown_secs = 3",
    );
    let _w = env.worker_with_args(
        "short",
        &["--concurrency", "1", "--config", short.to_str().unwrap()],
    );
    let broken = enqueue_missing(&env, 2);
    let failed = env.wait_final(&broken, LONG).await;
    let next = env.enqueue_for_issue(3, "@agentq-test print after");
    let rec = env.wait_final(&next, LONG).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    let ms = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .unwrap()
            .timestamp_millis()
    };
    let history = env.store().await.history(&next).await.unwrap();
    let started = history
        .iter()
        .find(|h| h.state == "preparing")
        .unwrap_or_else(|| panic!("{history:#?}"));
    // The breaker opened just before the failed job's record was written.
    assert!(
        ms(&started.at) - failed.finished_at.expect("finished").ms() >= 2_500,
        "started {} after a failure at {:?}",
        started.at,
        failed.finished_at
    );
}

/// `workspace_budget_gb`: over it, housekeeping removes the least recently
/// used workspaces first until the rest fit, and no more.
#[tokio::test(flavor = "multi_thread")]
async fn workspace_budget_gb_removes_the_least_recently_used_workspaces() {
    require_docker();
    let env = TestEnv::with_config("workspace_sweep_secs = 1\nauto_qa = false\n");
    env.remotes.create("core", "demo", &[]);
    let ids: Vec<String> = (1..=3)
        .map(|i| env.enqueue_for_issue(i, "@agentq-test commit"))
        .collect();
    let mut w = env.worker("w1", 1);
    let mut dirs = Vec::new();
    for id in &ids {
        let rec = env.wait_final(id, LONG).await;
        assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
        dirs.push(PathBuf::from(rec.workspace_dir));
    }
    w.signal_and_wait("TERM", LONG);
    assert!(dirs.iter().all(|d| d.is_dir()), "no budget: all kept");
    // Last used: task-1 longest ago, task-3 most recently.
    let now = std::time::SystemTime::now();
    for (i, d) in dirs.iter().enumerate() {
        let f = std::fs::File::options()
            .write(true)
            .open(d.join("status.json"))
            .unwrap();
        f.set_modified(now - Duration::from_secs(300 - 100 * i as u64))
            .unwrap();
    }
    let sizes: Vec<u64> = dirs
        .iter()
        .map(|d| agentq_shared::fsutil::tree_size(d))
        .collect();
    // Room for the two most recent and half the oldest: exactly one goes.
    let budget = sizes[1] + sizes[2] + sizes[0] / 2;
    let text = std::fs::read_to_string(env.config_path()).unwrap();
    let cfg = env.dir.path().join("budget.toml");
    std::fs::write(
        &cfg,
        format!(
            "workspace_budget_gb = {}\n{text}",
            budget as f64 / (1u64 << 30) as f64
        ),
    )
    .unwrap();
    let root_before = agentq_shared::fsutil::tree_size(&env.workspace_root());
    let budgeted = env.worker_with_args(
        "budget",
        &["--concurrency", "1", "--config", cfg.to_str().unwrap()],
    );
    poll(&env, "the oldest workspace removed", LONG, || {
        (!dirs[0].exists()).then_some(())
    })
    .await;
    // The round that removed it is over once the worker reports what is left.
    poll(&env, "the round's measure", LONG, || {
        let out = env.cli_ok(&["workers", "--json"]);
        let bytes = out
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|w| w["pid"] == budgeted.pid())?["workspace_bytes"]
            .as_u64()?;
        (bytes > 0 && bytes < root_before - sizes[0] / 2).then_some(())
    })
    .await;
    assert!(
        dirs[1].is_dir() && dirs[2].is_dir(),
        "more than the oldest removed"
    );
}

/// `--tag v1`: the workspace `tag-v1`, the agent branch `agent/tag-v1-…`, and
/// the tree starts at the tagged commit, not at the default branch.
#[tokio::test(flavor = "multi_thread")]
async fn a_tag_job_starts_at_the_tag_in_its_own_workspace() {
    require_docker();
    let env = TestEnv::with_config("auto_qa = false\n");
    let bare = env.remotes.create("core", "demo", &[]);
    let v1 = add_commits(&bare, 3, Some("v1"));
    let id = env.enqueue(&[
        "--repo",
        "demo",
        "--tag",
        "v1",
        "--task",
        "@agentq-test require file-1.txt @agentq-test commit",
    ]);
    let _w = env.worker("w1", 1);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    assert!(rec.workspace_dir.ends_with("core/demo/tag-v1"), "{rec:#?}");
    assert!(rec.branch.starts_with("agent/tag-v1-"), "{rec:#?}");
    let repo = Path::new(&rec.workspace_dir).join("repo");
    assert!(repo.join("file-1.txt").exists());
    assert!(
        !repo.join("file-2.txt").exists(),
        "the tree is past the tag"
    );
    assert_eq!(git(&bare, &["rev-parse", &format!("{}^", rec.branch)]), v1);
}

/// The `enqueued` event of a batch names its jobs.
fn names(line: &str, id: &str) -> bool {
    line.contains("\"enqueued\"") && line.contains(id)
}

/// `agentq events --follow` keeps printing: an event of a job enqueued after
/// it started (and after the past it printed first) arrives on its stream.
#[tokio::test(flavor = "multi_thread")]
async fn events_follow_prints_new_events_as_they_come() {
    let env = TestEnv::new();
    let first = env.enqueue(&["--repo", "demo", "--task", "t", "--issue", "1"]);
    let mut child = Command::new(bin("agentq"))
        .args(["events", "--follow", "--json"])
        .envs(env.env())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let wait_line = |id: &str| -> Result<(), String> {
        let deadline = Instant::now() + LONG;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) if names(&l, id) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(format!("no enqueued event for {id}: {e}")),
            }
        }
    };
    let seen_first = wait_line(&first);
    let second = env.enqueue(&["--repo", "demo", "--task", "t", "--issue", "2"]);
    let seen_second = wait_line(&second);
    let _ = child.kill();
    let _ = child.wait();
    seen_first.unwrap();
    seen_second.unwrap();
}

/// `list --since` and `retry --state … --agent … --since …` select by the
/// job's creation time and agent.
#[tokio::test(flavor = "multi_thread")]
async fn list_since_and_retry_state_agent_since_select_the_right_jobs() {
    let env = TestEnv::new();
    let job = |agent: &str, issue: &str| {
        env.enqueue(&[
            "--repo", "demo", "--agent", agent, "--task", "t", "--issue", issue,
        ])
    };
    let old_codex = job("codex", "1");
    let old_claude = job("claude", "2");
    // A time after both, on a whole second (so any precision of `created_at` compares).
    let store = env.store().await;
    let mut latest = 0;
    for id in [&old_codex, &old_claude] {
        let rec = store.get(id).await.unwrap().unwrap();
        latest = latest.max(rec.created_at.ms());
    }
    let since_ms = (latest / 1000 + 1) * 1000;
    let since = chrono::DateTime::from_timestamp_millis(since_ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    poll(&env, "the clock past --since", LONG, || {
        (now_ms() > since_ms + 10).then_some(())
    })
    .await;
    let new_claude = job("claude", "3");
    let new_codex = job("codex", "4");

    let listed = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["list", "--json"];
        all.extend_from_slice(args);
        json_ids(&env.cli_ok(&all))
    };
    assert_eq!(
        listed(&["--since", &since]),
        [new_codex.clone(), new_claude.clone()]
    );
    assert_eq!(listed(&["--since", "1h"]).len(), 4);

    env.cli_ok(&["cancel", "--state", "queued"]);
    let out: serde_json::Value = serde_json::from_str(&env.cli_ok(&[
        "retry",
        "--state",
        "cancelled",
        "--agent",
        "claude",
        "--since",
        &since,
        "--json",
    ]))
    .unwrap();
    assert_eq!(
        out["retried"],
        serde_json::json!([new_claude.clone()]),
        "{out}"
    );
    for (id, state) in [
        (&old_codex, JobState::Cancelled),
        (&old_claude, JobState::Cancelled),
        (&new_codex, JobState::Cancelled),
        (&new_claude, JobState::Queued),
    ] {
        assert_eq!(store.get(id).await.unwrap().unwrap().state, state, "{id}");
    }
}

/// An invalid configuration: `agentq` and `agentq-worker` exit 2 naming the key.
#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_config_exits_2_naming_the_key() {
    let env = TestEnv::new();
    let bad = config_variant(
        &env,
        "bad.toml",
        "max_attempts = 3",
        "max_attempts = \"three\"",
    );
    let mut vars = env.env();
    vars.insert("AGENTQ_CONFIG", bad.to_string_lossy().into_owned());
    let out = cli_with_env(&vars, &["list"], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("max_attempts"), "{err}");

    let mut w = env.worker_with_args("bad", &["--config", bad.to_str().unwrap()]);
    let status = w.wait_exit(LONG);
    let log = std::fs::read_to_string(&w.log).unwrap();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(log.contains("max_attempts"), "{log}");
}

/// A read-only file system, mounted by the test, removed on drop.
struct ReadOnlyMount(tempfile::TempDir);

impl ReadOnlyMount {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(ok.success(), "cannot mount a tmpfs (the tests run as root)");
        Self(dir)
    }
}

impl Drop for ReadOnlyMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

/// Preflight: a workspace root the worker cannot write or make, or a host
/// without git, stops the worker at start with exit 2 and one line saying which.
#[tokio::test(flavor = "multi_thread")]
async fn preflight_refuses_an_unwritable_workspace_root_and_a_host_without_git() {
    require_docker();
    let env = TestEnv::new();
    let ro = ReadOnlyMount::new();
    let mut w = env.worker_with_args("ro", &["--workspace-root", ro.0.path().to_str().unwrap()]);
    let status = w.wait_exit(LONG);
    let log = std::fs::read_to_string(&w.log).unwrap();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(
        log.contains(&format!(
            "the workspace root {} is not writable",
            ro.0.path().display()
        )),
        "{log}"
    );

    // A workspace root under a regular file cannot even be made.
    let file = env.dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let root = file.join("ws");
    let mut w = env.worker_with_args("file", &["--workspace-root", root.to_str().unwrap()]);
    let status = w.wait_exit(LONG);
    let log = std::fs::read_to_string(&w.log).unwrap();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(
        log.contains(&format!(
            "cannot make the workspace root {}",
            root.display()
        )),
        "{log}"
    );

    let empty = tempfile::tempdir().unwrap();
    env.set_env("PATH", empty.path().to_string_lossy().into_owned());
    let mut w = env.worker("nogit", 1);
    let status = w.wait_exit(LONG);
    let log = std::fs::read_to_string(&w.log).unwrap();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(log.contains("git is not installed"), "{log}");
}
