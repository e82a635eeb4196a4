//! Issue 2's acceptance: enqueue → Redis → worker → agent container → status, end to
//! end on a real Redis, the real Docker engine and real git remotes.

use std::time::{Duration, Instant};

use agentq_shared::status::{JobState, StatusFile, WorkspaceStatus};
use agentq_tests::*;
use redis::Commands;

const LONG: Duration = Duration::from_secs(120);

fn status_json(rec: &agentq_shared::record::JobRecord) -> WorkspaceStatus {
    WorkspaceStatus::read(&std::path::Path::new(&rec.workspace_dir).join("status.json")).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_worker_runs_commit_block_and_failing_jobs() {
    require_docker();
    let env = TestEnv::new();
    env.remotes.create("core", "demo", &[]);
    let commit = env.enqueue(&[
        "--repo",
        "demo",
        "--task",
        "Add a change @agentq-test commit",
        "--issue",
        "1",
    ]);
    let block = env.enqueue(&[
        "--repo",
        "demo",
        "--task",
        "Ask first @agentq-test block \"Which database should I use?\"",
        "--issue",
        "2",
    ]);
    let fail = env.enqueue(&[
        "--repo",
        "demo",
        "--task",
        "Break @agentq-test exit 3",
        "--issue",
        "3",
        "--agent",
        "claude",
    ]);
    let _w = env.worker("w1", 2);

    let c = env.wait_final(&commit, LONG).await;
    let b = env.wait_final(&block, LONG).await;
    let f = env.wait_final(&fail, LONG).await;

    assert_eq!(c.state, JobState::Completed, "{c:#?}");
    assert_eq!(c.exit_code, Some(0));
    assert_eq!(b.state, JobState::Blocked, "{b:#?}");
    assert_eq!(b.question, "Which database should I use?");
    assert_eq!(f.state, JobState::Failed, "{f:#?}");
    assert_eq!(f.error, "Agent exited with code 3");
    assert_eq!(f.exit_code, Some(3));

    for (rec, state, question) in [
        (&c, "completed", ""),
        (&b, "blocked", "Which database should I use?"),
        (&f, "failed", "Agent exited with code 3"),
    ] {
        assert_eq!(rec.attempt, 1);
        assert_eq!(rec.runs, 1);
        let st = status_json(rec);
        assert_eq!(st.status.as_str(), state);
        assert_eq!(st.question, question);
        assert_eq!(st.repo, "demo");
        assert_eq!(st.org, "core");
        assert_eq!(st.job_id, rec.id);
        assert_eq!(st.runs, 1);
        assert!(st.branch.starts_with("agent/"));
        let pool = rec.input.agent.split(':').next().unwrap();
        let log = std::path::Path::new(&rec.workspace_dir).join(format!(".meta/agent-{pool}.log"));
        let log_text =
            std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        assert!(
            log_text.contains("agentq-test-agent"),
            "agent log: {log_text}"
        );
        assert!(std::path::Path::new(&rec.workspace_dir)
            .join(".meta/input/prompt.md")
            .is_file());
        assert!(
            containers_with_label("agentq.job", &rec.id).is_empty(),
            "container removed"
        );
    }
    assert_eq!(
        c.workspace_dir,
        env.workspace_root()
            .canonicalize()
            .unwrap()
            .join("core/demo/task-1")
            .to_string_lossy()
    );
    assert_eq!(f.input.agent, "claude");

    // The committed change is in the clone, on the agent branch.
    let repo = std::path::Path::new(&c.workspace_dir).join("repo");
    assert_eq!(
        git(&repo, &["rev-parse", "--abbrev-ref", "HEAD"]),
        "agent/issue-1-add-a-change-agentq-test-commit"
    );
    assert_eq!(c.branch, "agent/issue-1-add-a-change-agentq-test-commit");
    let log = git(&repo, &["log", "--format=%s", "origin/main..HEAD"]);
    assert_eq!(log, "agentq test: change by codex");
    assert!(repo.join("agentq-change.txt").is_file());

    // `agentq status` shows the record from a separate process.
    let text = env.cli_ok(&["status", &block]);
    assert!(
        text.contains("blocked") && text.contains("Which database should I use?"),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&env.cli_ok(&["status", &fail, "--json"])).unwrap();
    assert_eq!(json["state"], "failed");
    assert_eq!(json["exit_code"], 3);
    assert_eq!(json["attempt"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_workers_run_twenty_jobs_exactly_once() {
    require_docker();
    let env = TestEnv::new();
    env.remotes.create("core", "demo", &[]);
    let lines: String = (1..=20)
        .map(|i| {
            format!("{{\"repo\":\"demo\",\"task\":\"job {i} @agentq-test hold\",\"issue\":{i}}}\n")
        })
        .collect();
    let _w1 = env.worker("w1", 3);
    let _w2 = env.worker("w2", 3);
    let ids: Vec<String> = env.enqueue_ndjson(&lines);
    assert_eq!(ids.len(), 20);
    // Each worker runs at most 3 jobs at once and every agent holds until
    // released: 6 agents holding together means both workers are running jobs
    // at the same time. Then the rest run as slots free up.
    env.wait_holding(6).await;
    env.release_holds();
    let mut workers = std::collections::HashSet::new();
    for id in &ids {
        let rec = env.wait_final(id, Duration::from_secs(240)).await;
        assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
        assert_eq!(rec.attempt, 1, "job {id} ran more than once: {rec:#?}");
        assert_eq!(rec.runs, 1);
        // The agent itself appends one line per run to the workspace.
        let runs = env.agent_runs(&rec.id);
        assert_eq!(
            runs.lines().count(),
            1,
            "job {id} agent ran {} times",
            runs.lines().count()
        );
        workers.insert(rec.worker.clone());
    }
    assert_eq!(
        env.store()
            .await
            .ids_in_state(JobState::Completed)
            .await
            .unwrap()
            .len(),
        20,
        "none lost"
    );
    assert_eq!(workers.len(), 2, "both workers ran jobs: {workers:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_survives_its_worker_being_killed() {
    require_docker();
    let env = TestEnv::new();
    env.remotes.create("core", "demo", &[]);
    let id = env.enqueue(&[
        "--repo",
        "demo",
        "--task",
        "Slow @agentq-test hold",
        "--issue",
        "9",
    ]);
    let deaths = env.watch_agent_deaths();
    let mut w1 = env.worker("w1", 1);
    assert_eq!(env.wait_holding(1).await, vec![id.clone()]);
    let first = env.store().await.get(&id).await.unwrap().unwrap();
    assert_eq!((first.state, first.attempt), (JobState::Running, 1));
    assert_eq!(
        containers_with_label("agentq.job", &id).len(),
        1,
        "the first attempt's container runs"
    );
    w1.kill9();
    // Another worker at once: it may take the job over once the killed run's
    // lease runs out. The first agent holds until released, so it ends only
    // when agentq stops it; the second run must not start before that.
    let _w2 = env.worker("w2", 1);
    let gone = deaths.wait_first(std::slice::from_ref(&id), LONG).await[&id];
    env.release_holds();
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    assert_eq!(rec.attempt, 2, "re-delivered once after the kill");
    assert_ne!(rec.worker, first.worker);
    assert_eq!(rec.runs, 2, "the agent ran again in the same workspace");
    // The agent's own logs: it started twice and never ran twice at once. A
    // run that logged no end lasts forever, but the first one ended by the
    // time the engine saw its container die.
    let runs = ended_by(env.agent_spans(&id), gone);
    assert_eq!(runs.len(), 2, "the agent started twice: {runs:?}");
    assert!(
        runs[0].0 < gone,
        "died at {gone}, before it started: {runs:?}"
    );
    assert!(runs[1].1.is_finite(), "the second run finished: {runs:?}");
    assert_eq!(max_overlap(&runs), 1, "two runs at once: {runs:?}");
    assert!(rec.resumed, "the second run reused the workspace");
    assert!(
        containers_with_label("agentq.job", &id).is_empty(),
        "no container of either attempt is left"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_with_the_field_named() {
    let env = TestEnv::new();
    let cases: &[(&[&str], &str)] = &[
        (&["enqueue", "--task", "t", "--issue", "1"], "--repo"),
        (
            &["enqueue", "--repo", "r", "--task", "t", "--issue", "seven"],
            "--issue",
        ),
        (
            &[
                "enqueue", "--repo", "r", "--task", "t", "--issue", "1", "--var", "novalue",
            ],
            "novalue",
        ),
        (&["enqueue", "--repo", "r", "--issue", "1"], "--task"),
        (&["enqueue", "--repo", "r", "--task", "t"], "issue"),
        (
            &[
                "enqueue",
                "--repo",
                "../../etc",
                "--task",
                "t",
                "--issue",
                "1",
            ],
            "repo",
        ),
        (
            &[
                "enqueue",
                "--repo",
                "r",
                "--task",
                "t",
                "--branch",
                "--upload-pack=x",
            ],
            "branch",
        ),
        (
            &[
                "enqueue", "--repo", "r", "--task", "t", "--issue", "1", "--agent", "gpt4",
            ],
            "agent",
        ),
        (
            &["enqueue", "--repo", "r", "--task", "", "--issue", "1"],
            "task",
        ),
        (
            &[
                "enqueue",
                "--repo",
                "r",
                "--task",
                "t",
                "--issue",
                "1",
                "--template",
                "x",
            ],
            "template",
        ),
    ];
    for (args, needle) in cases {
        let out = env.cli(args, None);
        // Refused input exits 1, whether clap or agentq refuses it (2 is for
        // Redis and configuration).
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains(needle),
            "{args:?}: error does not name {needle}: {err}"
        );
    }
    // NDJSON: each bad line gets an error line naming its number and field; good lines go in.
    let input = concat!(
        "{\"repo\":\"r\",\"task\":\"ok\",\"issue\":1}\n",
        "{\"repo\":\"r\",\"task\":\"t\",\"issue\":1\n",
        "{\"task\":\"t\",\"issue\":1}\n",
        "{\"repo\":\"r\",\"task\":\"t\",\"issue\":\"seven\"}\n",
        "{\"repo\":\"r\",\"task\":\"t\",\"issue\":1,\"agent\":\"nope\"}\n",
    );
    let out = env.cli(&["enqueue", "-"], Some(input));
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert!(lines[0].starts_with("line 1: queued "), "{text}");
    assert!(
        lines[1].starts_with("line 2: refused: json: malformed JSON"),
        "{text}"
    );
    assert!(lines[2].starts_with("line 3: refused: repo"), "{text}");
    assert!(lines[3].starts_with("line 4: refused: issue"), "{text}");
    assert!(lines[4].starts_with("line 5: refused: agent"), "{text}");
    // Exactly the one good job is in Redis and on the queue.
    let mut conn = env.redis.conn();
    let jobs: u64 = conn.zcard(env.key("jobs")).unwrap();
    let queued = env.store().await.queue_depth().await.unwrap();
    assert_eq!((jobs, queued), (1, 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_down_exits_2_quickly_naming_the_url() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let env = std::collections::HashMap::from([("AGENTQ_REDIS_URL", url.clone())]);
    let started = Instant::now();
    let out = cli_with_env(
        &env,
        &["enqueue", "--repo", "r", "--task", "t", "--issue", "1"],
        None,
    );
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&url), "{err}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn infrastructure_errors_are_retried_then_recorded() {
    require_docker();
    let env = TestEnv::new();
    // No remote repository "missing": every clone fails.
    let id = env.enqueue(&["--repo", "missing", "--task", "t", "--issue", "1"]);
    let _w = env.worker("w1", 1);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Failed, "{rec:#?}");
    assert_eq!(rec.attempt, 3, "max_attempts = 3 in the test config");
    assert!(rec.error.contains("git fetch failed"), "{rec:#?}");
    assert!(rec.error.contains("after 3 attempts"), "{rec:#?}");
    assert_eq!(rec.runs, 0, "no agent ran");
    // Each attempt's agent container, started while prep ran, went with it.
    assert_eq!(env.containers_of(&id), Vec::<String>::new());
}
