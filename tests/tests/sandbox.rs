//! Red-team tests: the workspace is hostile. Each test runs a hostile agent
//! (`agentq-redteam:latest`, `tests/image/redteam-agent.sh`) through the real
//! worker, real Docker, real git and the simulated forge, and checks that nothing
//! it planted reaches the worker host, its secrets or the queue.

use std::{
    io::Read,
    net::TcpListener,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use agentq_shared::status::JobState;
use agentq_tests::{forge_sim::ForgeSim, *};
use redis::Commands;

const LONG: Duration = Duration::from_secs(120);
const TOKEN: &str = "forge-token-redteam-7c41a0";
const REDTEAM_IMAGE: &str = "agentq-redteam:latest";

/// A world whose agents are the red team, with `extra` config tables.
fn redteam_env(extra: &str) -> TestEnv {
    require_image(REDTEAM_IMAGE);
    TestEnv::with_config(&format!(
        "[agents.codex]\nimage = \"{REDTEAM_IMAGE}\"\n{extra}"
    ))
}

/// The red-team world plus the simulated forge (push, PR, comments).
async fn redteam_forge(extra: &str) -> (TestEnv, ForgeSim) {
    let env = redteam_env(&format!(
        "[forge]\ntoken_env = \"AGENTQ_TEST_FORGE_TOKEN\"\nmax_retries = 1\nretry_base_ms = 50\n{extra}"
    ));
    let sim = ForgeSim::start(TOKEN, env.remotes.base.path().to_path_buf()).await;
    env.set_env("AGENTQ_FORGE_URL", sim.url());
    env.set_env("AGENTQ_GIT_BASE", sim.url());
    env.set_env("AGENTQ_TEST_FORGE_TOKEN", TOKEN);
    (env, sim)
}

fn demo_repo(env: &TestEnv, sim: Option<&ForgeSim>, issues: &[u64]) {
    env.remotes
        .create("core", "demo", &[("README.md", "# demo\n")]);
    if let Some(sim) = sim {
        sim.add_repo("core", "demo", "main");
        for n in issues {
            sim.add_issue("core", "demo", *n, &format!("Issue {n}"), "Do it.");
        }
    }
}

/// The Redis key holding `needle`, if any.
fn redis_key_containing(env: &TestEnv, needle: &str) -> Option<String> {
    let mut conn = env.redis.conn();
    let keys: Vec<String> = conn.keys("*").unwrap();
    keys.into_iter().find(|key| {
        let dump: Vec<u8> = redis::cmd("DUMP").arg(key).query(&mut conn).unwrap();
        dump.windows(needle.len()).any(|w| w == needle.as_bytes())
    })
}

/// Worker-written files under `dir` (not the agent's repository) holding `needle`.
fn worker_files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in rd.flatten() {
        let p = e.path();
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            if p.file_name().is_some_and(|n| n == "repo" || n == "objects") {
                continue;
            }
            found.extend(worker_files_containing(&p, needle));
        } else if ft.is_file() {
            let bytes = std::fs::read(&p).unwrap_or_default();
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                found.push(p);
            }
        }
    }
    found
}

fn agent_log(rec: &agentq_shared::record::JobRecord) -> String {
    std::fs::read_to_string(Path::new(&rec.workspace_dir).join(".meta/agent-codex.log"))
        .unwrap_or_default()
}

/// Attack 1: hooks, `core.hooksPath`, `core.fsmonitor`, receive-pack, ssh and
/// `ext::` remotes planted in the workspace never run on the host: not at push
/// time, not when the next job prepares the same workspace.
#[tokio::test(flavor = "multi_thread")]
async fn git_on_the_host_never_runs_the_workspaces_hooks_or_config() {
    let (env, sim) = redteam_forge("").await;
    demo_repo(&env, Some(&sim), &[1]);
    let markers = env.dir.path().join("markers");
    let marker = markers.join("pwned");
    let _w = env.worker("w1", 1);
    let task = format!("Plant hooks @redteam hooks {}", marker.display());
    let a = env.enqueue(&["--repo", "demo", "--issue", "1", "--task", &task]);
    let ra = env.wait_final(&a, LONG).await;
    assert_eq!(
        ra.state,
        JobState::Completed,
        "{ra:#?}\n{}",
        env.worker_logs()
    );
    assert!(
        agent_log(&ra).contains("planted hooks"),
        "{}",
        agent_log(&ra)
    );
    // The normal flow still works: the agent's commit went to the forge.
    assert!(
        sim.pushes().iter().any(|p| p.success),
        "no successful push: {:?}",
        sim.pushes()
    );
    // A second job on the same workspace: prep must not run anything planted.
    let b = env.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        "1",
        "--task",
        "Another change @redteam commit",
    ]);
    let rb = env.wait_final(&b, LONG).await;
    assert_eq!(
        rb.state,
        JobState::Completed,
        "{rb:#?}\n{}",
        env.worker_logs()
    );
    let fired: Vec<_> = std::fs::read_dir(&markers)
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        fired.is_empty(),
        "planted git hooks/config ran on the worker host: {fired:?}"
    );
    sim.assert_nothing_dropped();
}

/// A TCP server that counts connections and keeps what they sent.
fn evil_server() -> (u16, Arc<AtomicUsize>, Arc<std::sync::Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (h, s) = (hits.clone(), seen.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            h.fetch_add(1, Ordering::SeqCst);
            let mut stream = stream;
            stream
                .set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let mut buf = [0u8; 8192];
            if let Ok(n) = stream.read(&mut buf) {
                s.lock().unwrap().extend_from_slice(&buf[..n]);
            }
            use std::io::Write;
            let _ = stream.write_all(
                b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"x\"\r\nContent-Length: 0\r\n\r\n",
            );
        }
    });
    (port, hits, seen)
}

/// Attack 2: the agent points `origin` (and `insteadOf` rules) at its own
/// server. The worker pushes only to the configured forge, and the token goes
/// nowhere else.
#[tokio::test(flavor = "multi_thread")]
async fn the_token_is_only_ever_offered_to_the_configured_forge() {
    let (env, sim) = redteam_forge("").await;
    demo_repo(&env, Some(&sim), &[2]);
    let (port, hits, seen) = evil_server();
    let _w = env.worker("w1", 1);
    let task = format!("Exfiltrate @redteam exfil http://127.0.0.1:{port}/core/demo.git");
    let id = env.enqueue(&["--repo", "demo", "--issue", "2", "--task", &task]);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(
        rec.state,
        JobState::Completed,
        "{rec:#?}\n{}",
        env.worker_logs()
    );
    assert!(
        agent_log(&rec).contains("origin now"),
        "{}",
        agent_log(&rec)
    );
    let sent = String::from_utf8_lossy(&seen.lock().unwrap()).to_string();
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the worker connected to the agent's server; it sent: {sent}"
    );
    assert!(
        sim.pushes().iter().any(|p| p.success && p.repo == "demo"),
        "the branch was not pushed to the forge: {:?}",
        sim.pushes()
    );
    sim.assert_nothing_dropped();
}

/// Attack 3: `BLOCKED.md` is a symlink to a host file (a canary file, and the
/// worker's own `/proc/self/environ`). The job fails saying so, and the host
/// file's text is nowhere: not in Redis, `status.json` or the forge.
#[tokio::test(flavor = "multi_thread")]
async fn a_symlinked_blocked_md_is_refused_and_host_files_stay_secret() {
    let (env, sim) = redteam_forge("").await;
    demo_repo(&env, Some(&sim), &[3, 4]);
    let canary = "CANARY-FILE-61b7e0d2";
    let env_canary = "CANARY-ENV-93c2aa17";
    let canary_file = env.dir.path().join("secret.txt");
    std::fs::write(&canary_file, format!("{canary}\n")).unwrap();
    env.set_env("AGENTQ_TEST_CANARY", env_canary);
    let _w = env.worker("w1", 2);
    let t1 = format!("Leak @redteam symlink-blocked {}", canary_file.display());
    let a = env.enqueue(&["--repo", "demo", "--issue", "3", "--task", &t1]);
    let b = env.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        "4",
        "--task",
        "Leak env @redteam symlink-blocked /proc/self/environ",
    ]);
    for id in [&a, &b] {
        let rec = env.wait_final(id, LONG).await;
        assert_eq!(
            rec.state,
            JobState::Failed,
            "{rec:#?}\n{}",
            env.worker_logs()
        );
        assert!(
            rec.error.contains("BLOCKED.md is a symlink"),
            "error should say why: {rec:#?}"
        );
    }
    for needle in [canary, env_canary, TOKEN] {
        assert_eq!(
            redis_key_containing(&env, needle),
            None,
            "{needle} leaked to Redis"
        );
        let files = worker_files_containing(&env.workspace_root(), needle);
        assert!(files.is_empty(), "{needle} leaked into {files:?}");
        for n in [3, 4] {
            for c in sim.comments("core", "demo", n) {
                assert!(
                    !c.body.contains(needle),
                    "{needle} leaked to the forge: {}",
                    c.body
                );
            }
        }
    }
    sim.assert_nothing_dropped();
}

/// Attack 4: symlinks planted where the worker writes (logs, prompt, answer,
/// temp files, status) never make it write to a host file, also on a resume.
#[tokio::test(flavor = "multi_thread")]
async fn planted_symlinks_never_redirect_the_workers_writes() {
    let env = redteam_env("qa = [[\"true\"]]\n");
    demo_repo(&env, None, &[]);
    let victim = env.dir.path().join("victim.txt");
    std::fs::write(&victim, "VICTIM-ORIGINAL\n").unwrap();
    let _w = env.worker("w1", 1);
    let v = victim.display();
    let task = format!(
        "Plant @redteam commit-answer-link {v} @redteam plant-meta {v} @redteam block Which one?"
    );
    let id = env.enqueue(&["--repo", "demo", "--branch", "main", "--task", &task]);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(
        rec.state,
        JobState::Blocked,
        "{rec:#?}\n{}",
        env.worker_logs()
    );
    env.cli_ok(&["resume", &id, "--answer", "OVERWRITTEN-BY-ANSWER"]);
    let rec = env
        .wait_for(&id, LONG, |r| r.state.is_final() && r.runs >= 2)
        .await;
    assert!(rec.state.is_final(), "{rec:#?}");
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "VICTIM-ORIGINAL\n",
        "a host file was written through a planted symlink"
    );
}

/// Attack 5: `BLOCKED.md` is a FIFO. The worker never blocks on it: the job
/// fails with a reason, in bounded time, and frees its slot.
#[tokio::test(flavor = "multi_thread")]
async fn a_fifo_blocked_md_fails_the_job_instead_of_hanging_it() {
    let env = redteam_env("");
    demo_repo(&env, None, &[]);
    let _w = env.worker("w1", 1);
    let id = env.enqueue(&[
        "--repo",
        "demo",
        "--branch",
        "main",
        "--task",
        "Hang @redteam fifo-blocked",
    ]);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(
        rec.state,
        JobState::Failed,
        "{rec:#?}\n{}",
        env.worker_logs()
    );
    assert!(
        rec.error.contains("BLOCKED.md is not a regular file"),
        "{rec:#?}"
    );
    // The slot is free: the next job runs.
    let next = env.enqueue(&[
        "--repo",
        "demo",
        "--branch",
        "main",
        "--task",
        "Next @redteam commit",
    ]);
    assert_eq!(env.wait_final(&next, LONG).await.state, JobState::Completed);
}

/// Attack 6: the queue is not reachable from an agent. Redis requires a
/// password and also listens on the agent network's gateway; the agent has no
/// `host.docker.internal`, no Redis credentials, and cannot read or change a
/// job record.
#[tokio::test(flavor = "multi_thread")]
async fn an_agent_cannot_reach_the_queue() {
    require_image(REDTEAM_IMAGE);
    let env = TestEnv::with_config_and_redis_password(
        &format!("[agents.codex]\nimage = \"{REDTEAM_IMAGE}\"\n"),
        "redis-pass-d81f",
    );
    demo_repo(&env, None, &[]);
    let w = env.worker("w1", 1);
    // The worker made the agents' network; let Redis listen on its gateway too.
    let gateway = wait_agent_network_gateway(&w);
    let mut conn = env.redis.conn();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("bind")
        .arg(format!("127.0.0.1 {gateway}"))
        .query(&mut conn)
        .unwrap();
    let task = format!("Reach the queue @redteam redis {}", env.redis.port);
    let id = env.enqueue(&["--repo", "demo", "--branch", "main", "--task", &task]);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(
        rec.state,
        JobState::Completed,
        "{rec:#?}\n{}",
        env.worker_logs()
    );
    let log = agent_log(&rec);
    assert!(
        log.contains("redis-reply("),
        "the attack did not run: {log}"
    );
    assert!(
        !log.contains(&format!("{}:job", env.ns)),
        "the agent listed the queue's keys: {log}"
    );
    assert!(!log.contains("+PONG"), "the agent talked to Redis: {log}");
    let resolved = log
        .lines()
        .find(|l| l.starts_with("resolve host.docker.internal:"))
        .unwrap_or_default();
    assert!(
        !resolved.contains("172.") && !resolved.contains("10.") && !resolved.contains("192.168."),
        "host.docker.internal resolves inside the agent: {resolved}"
    );
}

fn wait_agent_network_gateway(w: &WorkerProc) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let out = std::process::Command::new("docker")
            .args([
                "network",
                "inspect",
                "-f",
                "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
                "agentq-agents",
            ])
            .output()
            .unwrap();
        let gw = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !gw.is_empty() {
            return gw;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the worker made no agentq-agents network: {}",
            std::fs::read_to_string(&w.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Attack 7: agentq's own files (prompt, answer, logs, status) are never inside
/// the agent's repository: `git add -A` in the container stages none of them.
#[tokio::test(flavor = "multi_thread")]
async fn git_add_all_in_the_container_stages_nothing_of_agentqs() {
    let env = redteam_env("");
    demo_repo(&env, None, &[]);
    let _w = env.worker("w1", 1);
    let id = env.enqueue(&[
        "--repo",
        "demo",
        "--branch",
        "main",
        "--task",
        "Ask first @redteam block Which way? @redteam git-add-all",
    ]);
    assert_eq!(env.wait_final(&id, LONG).await.state, JobState::Blocked);
    // Resume with an answer, so the prompt and the answer both exist.
    env.cli_ok(&["resume", &id, "--answer", "This way"]);
    let id2 = id.clone();
    let rec = env
        .wait_for(&id2, LONG, |r| r.state.is_final() && r.runs >= 2)
        .await;
    let log = agent_log(&rec);
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}\n{log}");
    assert!(
        log.contains("answered"),
        "the resumed run did not see the answer: {log}"
    );
    let staged: Vec<&str> = log.lines().filter(|l| l.starts_with("staged: ")).collect();
    assert!(
        staged.iter().all(|l| !l.contains(".meta")
            && !l.contains("prompt")
            && !l.contains("ANSWER")
            && !l.contains("status.json")
            && !l.contains("agent-")),
        "git add -A staged agentq's files: {staged:?}"
    );
}

/// Attack 8: agents run unprivileged; the workspace has a size bound and the
/// host log keeps its head and tail within a cap.
#[tokio::test(flavor = "multi_thread")]
async fn agents_run_unprivileged_with_a_bounded_workspace_and_log() {
    require_image(REDTEAM_IMAGE);
    let env = TestEnv::with_config("workspace_limit_mb = 16");
    env.append_config(&format!("[agents.codex]\nimage = \"{REDTEAM_IMAGE}\"\n"));
    demo_repo(&env, None, &[]);
    let _w = env.worker("w1", 2);
    let who = env.enqueue(&[
        "--repo",
        "demo",
        "--branch",
        "main",
        "--task",
        "@redteam whoami",
    ]);
    let rec = env.wait_final(&who, LONG).await;
    let log = agent_log(&rec);
    let uid = log
        .lines()
        .find_map(|l| l.strip_prefix("uid="))
        .unwrap_or_else(|| panic!("no uid line: {log}"));
    assert!(!uid.starts_with("0 "), "the agent ran as root: {uid}");

    let fill = env.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        "8",
        "--task",
        "@redteam fill 40",
    ]);
    let rec = env.wait_final(&fill, LONG).await;
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

    let flood = env.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        "9",
        "--task",
        "@redteam flood 8",
    ]);
    let rec = env.wait_final(&flood, LONG).await;
    let path = Path::new(&rec.workspace_dir).join(".meta/agent-codex.log");
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size <= 5 * 1024 * 1024 + 4096, "host log is {size} bytes");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("FLOOD-START"), "the head was lost");
    assert!(
        text.contains("FLOOD-END"),
        "the tail was lost: {size} bytes, ends {:?}",
        &text[text.len().saturating_sub(300)..]
    );
    assert!(text.contains("bytes cut"), "no marker of what was cut");
}

/// Pinned credentials serve prep too: a private repository (anonymous access
/// refused by the forge) is fetched, worked on and pushed.
#[tokio::test(flavor = "multi_thread")]
async fn a_private_repository_is_fetched_and_pushed_with_the_pinned_token() {
    let (env, sim) = redteam_forge("").await;
    demo_repo(&env, Some(&sim), &[11]);
    sim.set_private("core", "demo", true);
    let _w = env.worker("w1", 1);
    let id = env.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        "11",
        "--task",
        "Private work @redteam commit",
    ]);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(
        rec.state,
        JobState::Completed,
        "{rec:#?}\n{}",
        env.worker_logs()
    );
    assert!(rec.forge_error.is_empty(), "{}", rec.forge_error);
    assert!(
        sim.pushes().iter().any(|p| p.success && p.repo == "demo"),
        "the branch was not pushed: {:?}",
        sim.pushes()
    );
    assert_eq!(redis_key_containing(&env, TOKEN), None);
    sim.assert_nothing_dropped();
}

/// API keys pass by name: a key named in a pool's `env_keys` and set on the worker
/// reaches the agent; one named but not set is not passed at all; the value
/// is never written to Redis, the worker's log, `status.json` or any other
/// file the worker keeps.
#[tokio::test(flavor = "multi_thread")]
async fn api_keys_reach_the_agent_by_name_and_are_written_nowhere() {
    require_docker();
    const SECRET: &str = "sk-live-agentq-test-5f0c2e9a81";
    let env = TestEnv::with_config(
        "[agents.codex]\nenv_keys = [\"AGENTQ_TEST_API_KEY\", \"AGENTQ_TEST_UNSET_KEY\"]\n",
    );
    env.set_env("AGENTQ_TEST_API_KEY", SECRET);
    env.remotes
        .create("core", "demo", &[("README.md", "demo\n")]);
    let w = env.worker("w1", 1);
    let id = env.enqueue(&[
        "--agent",
        "codex",
        "--repo",
        "demo",
        "--issue",
        "3",
        "--task",
        "@agentq-test env-check AGENTQ_TEST_API_KEY AGENTQ_TEST_UNSET_KEY",
    ]);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(
        rec.state,
        JobState::Completed,
        "{rec:#?}\n{}",
        env.worker_logs()
    );
    let out = env.cli_ok(&["logs", &id]);
    assert!(out.contains("env AGENTQ_TEST_API_KEY is set"), "{out}");
    assert!(out.contains("env AGENTQ_TEST_UNSET_KEY is unset"), "{out}");
    assert_eq!(redis_key_containing(&env, SECRET), None);
    let ws = Path::new(&rec.workspace_dir);
    let status = std::fs::read_to_string(ws.join("status.json")).unwrap();
    assert!(!status.contains(SECRET), "{status}");
    assert_eq!(
        worker_files_containing(&env.workspace_root(), SECRET),
        Vec::<PathBuf>::new()
    );
    let log = std::fs::read_to_string(&w.log).unwrap();
    assert!(!log.contains(SECRET), "the worker logged the key");
}
