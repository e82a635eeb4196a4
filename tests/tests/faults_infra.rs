//! Issue 27, the host's side: infrastructure is not the agent's fault (a
//! workspace disk that fills during a run, `min_free_gb`), a slow forge slows
//! nothing else, and nothing a dead worker started outlives it.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use agentq_shared::status::JobState;
use agentq_tests::*;
use redis::Commands;

/// The suite's generous bound for an event that must come.
const LONG: Duration = Duration::from_secs(180);

/// A small tmpfs mounted for one test (the tests run as root), unmounted on drop.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    fn mount(mib: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m,mode=0755")])
            .arg("tmpfs")
            .arg(dir.path())
            .status()
            .expect("mount");
        assert!(ok.success(), "cannot mount a tmpfs (the tests run as root)");
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Bytes free, as `df` sees them.
    fn avail(&self) -> u64 {
        let out = Command::new("df")
            .args(["-B1", "--output=avail"])
            .arg(self.path())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// Fills the file system until `left` bytes are free; returns the filler.
    fn fill_to(&self, left: u64) -> PathBuf {
        let filler = self.path().join("filler");
        let size = self.avail().saturating_sub(left);
        let ok = Command::new("fallocate")
            .args(["-l", &size.to_string()])
            .arg(&filler)
            .status()
            .unwrap();
        assert!(ok.success(), "fallocate");
        filler
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

impl SmallFs {
    /// Fills the file system to the last block; returns the fillers.
    fn fill_up(&self) -> Vec<PathBuf> {
        // A margin: whatever is written meanwhile must not make fallocate fail;
        // dd takes the rest.
        let first = self.fill_to(1 << 20);
        let rest = self.path().join("filler2");
        let _ = Command::new("dd")
            .arg("if=/dev/zero")
            .arg(format!("of={}", rest.display()))
            .arg("bs=4096")
            .stderr(std::process::Stdio::null())
            .status();
        vec![first, rest]
    }
}

fn pool_paused(env: &TestEnv, pool: &str) -> bool {
    env.redis
        .conn()
        .exists(env.key(&format!("backoff:{pool}")))
        .unwrap()
}

/// The workspace file system fills while the agent runs (here: the test fills
/// it while the agent holds, and the agent then exits 70 as real agents do
/// on ENOSPC). That run is the host's failure: retried with backoff, never
/// final, and no pool pauses, even with a backoff that pauses on one fast
/// failure. Once there is room again, the same exit on a healthy disk is the
/// agent's own failure (final) and does count: the control.
#[tokio::test(flavor = "multi_thread")]
async fn a_disk_that_fills_during_a_run_retries_the_job_and_pauses_no_pool() {
    require_docker();
    let fs = SmallFs::mount(64);
    // 16 MiB floor.
    let env = TestEnv::with_config(
        "min_free_gb = 0.015625\nhost_cooldown_secs = 1\nauto_qa = false\nmax_attempts = 4\n",
    );
    env.append_config("[backoff]\nfailures = 1\nwindow_secs = 600\npause_secs = 600\n");
    env.set_env(
        "AGENTQ_WORKSPACE_ROOT",
        fs.path().to_string_lossy().into_owned(),
    );
    env.remotes.create("core", "demo", &[]);
    let _w = env.worker("w", 1);
    let id = env.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        "1",
        "--agent",
        "codex",
        "--task",
        "@agentq-test hold @agentq-test exit 70",
    ]);
    env.wait_holding(1).await;
    let filler = fs.fill_to(4 << 20);
    env.release_holds();

    let rec = env
        .wait_for(&id, LONG, |r| {
            r.state.is_final() || r.error.contains("file system filled")
        })
        .await;
    assert!(
        !rec.state.is_final(),
        "a run on a full disk was taken as the agent's outcome: {rec:#?}\n{}",
        env.worker_logs()
    );
    assert!(
        !pool_paused(&env, "codex"),
        "a full disk paused the pool\n{}",
        env.worker_logs()
    );

    // Room again: the retry runs, and its exit 70 is now the agent's own.
    std::fs::remove_file(&filler).unwrap();
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Failed, "{rec:#?}");
    assert!(rec.error.contains("70"), "{rec:#?}");
    assert!(rec.attempt >= 2, "the full-disk run was retried: {rec:#?}");
    assert!(
        pool_paused(&env, "codex"),
        "control: the agent's own fast failure pauses the pool"
    );
}

/// No floor (`min_free_gb = 0`), and the disk full to the last block when
/// the agent ends: the worker cannot write the run's `status.json` (ENOSPC),
/// and that is the host's failure: the job is retried, and completes once
/// there is room.
#[tokio::test(flavor = "multi_thread")]
async fn enospc_in_the_workers_own_writes_retries_the_job() {
    require_docker();
    let fs = SmallFs::mount(64);
    let env = TestEnv::with_config(
        "min_free_gb = 0\nhost_cooldown_secs = 1\nauto_qa = false\nmax_attempts = 4\n",
    );
    env.set_env(
        "AGENTQ_WORKSPACE_ROOT",
        fs.path().to_string_lossy().into_owned(),
    );
    env.remotes.create("core", "demo", &[]);
    let _w = env.worker("w", 1);
    let id = env.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        "1",
        "--agent",
        "codex",
        "--task",
        "@agentq-test hold",
    ]);
    env.wait_holding(1).await;
    let fillers = fs.fill_up();
    env.release_holds();
    let rec = env
        .wait_for(&id, LONG, |r| r.state.is_final() || !r.error.is_empty())
        .await;
    assert!(
        !rec.state.is_final(),
        "a run whose status could not be written for a full disk was final: {rec:#?}\n{}",
        env.worker_logs()
    );
    for f in fillers {
        let _ = std::fs::remove_file(f);
    }
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    assert!(rec.attempt >= 2, "{rec:#?}");
}

/// The host degrades while an agent runs (another job's infrastructure
/// failure opens its breaker, `host_failures = 1`); the agent then fails.
/// That run is the host's failure: retried, not final, no pool paused.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_failing_on_a_host_that_degraded_meanwhile_is_retried() {
    require_docker();
    let env = TestEnv::with_config(
        "host_failures = 1\nhost_cooldown_secs = 600\nauto_qa = false\nmax_attempts = 4\n",
    );
    env.append_config("[backoff]\nfailures = 1\nwindow_secs = 600\npause_secs = 600\n");
    env.remotes.create("core", "demo", &[]);
    let w = env.worker("w", 2);
    let id = env.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        "1",
        "--agent",
        "codex",
        "--task",
        "@agentq-test hold @agentq-test exit 70",
    ]);
    env.wait_holding(1).await;
    // A repository that does not exist: its clone fails, the host degrades.
    env.enqueue(&[
        "--repo",
        "missing",
        "--issue",
        "2",
        "--agent",
        "gemini",
        "--task",
        "@agentq-test print hi",
    ]);
    // The breaker is open once the registry shows the worker degraded.
    wait_degraded(&env, "", &w).await;
    env.release_holds();
    let rec = env
        .wait_for(&id, LONG, |r| {
            r.state.is_final() || r.error.contains("degraded during the run")
        })
        .await;
    assert!(
        !rec.state.is_final(),
        "a failure on a degraded host was taken as the agent's: {rec:#?}\n{}",
        env.worker_logs()
    );
    assert!(!pool_paused(&env, "codex"), "{}", env.worker_logs());
}

/// `min_free_gb` above the workspace root's free space: the worker degrades
/// at once, says why on `/healthz` and in its log, and takes no job; a
/// worker with room takes it.
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_under_min_free_gb_degrades_and_takes_no_job() {
    require_docker();
    let env = TestEnv::with_config("min_free_gb = 1000000\nauto_qa = false\n");
    env.remotes.create("core", "demo", &[]);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let full = env.worker_with_args(
        "full",
        &[
            "--concurrency",
            "1",
            "--host",
            "full",
            "--metrics-addr",
            &addr,
        ],
    );
    // The registry shows it degraded for its disk, and /healthz says so.
    wait_degraded(&env, "min_free_gb", &full).await;
    let client = reqwest::Client::new();
    let deadline = Instant::now() + LONG;
    let health = loop {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
        {
            break r;
        }
        assert!(Instant::now() < deadline, "no /healthz");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(health.status(), 503);
    let text = health.text().await.unwrap();
    assert!(
        text.contains("degraded") && text.contains("min_free_gb"),
        "{text}"
    );
    let id = env.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        "1",
        "--agent",
        "codex",
        "--task",
        "@agentq-test print hi",
    ]);
    // `agentq workers` shows the reason (the registry's next beat)…
    let deadline = Instant::now() + LONG;
    loop {
        let out = env.cli_ok(&["workers"]);
        if out.contains("min_free_gb") {
            break;
        }
        assert!(Instant::now() < deadline, "{out}\n{}", env.worker_logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // …and a worker with room runs the job the degraded one left.
    let roomy = tempfile::tempdir().unwrap();
    let cfg = std::fs::read_to_string(env.config_path())
        .unwrap()
        .replace("min_free_gb = 1000000", "min_free_gb = 0");
    let cfg_path = roomy.path().join("agentq.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    env.set_env("AGENTQ_CONFIG", cfg_path.to_string_lossy().into_owned());
    let _ok = env.worker_with_args("roomy", &["--concurrency", "1", "--host", "roomy"]);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    assert_eq!(rec.host, "roomy", "{rec:#?}");
    // The degraded host never ran it: its history shows "full" at most
    // handing it back.
    let history = env.store().await.history(&id).await.unwrap();
    let ran_on_full: Vec<_> = history
        .iter()
        .filter(|e| e.host == "full" && !matches!(e.state.as_str(), "queued" | "waiting"))
        .collect();
    assert!(ran_on_full.is_empty(), "{history:#?}");
}

/// Waits until `agentq workers --json` shows a worker degraded, for a reason
/// holding `why`; returns the reason.
async fn wait_degraded(env: &TestEnv, why: &str, w: &WorkerProc) -> String {
    let deadline = Instant::now() + LONG;
    loop {
        let out = env.cli_ok(&["workers", "--json"]);
        let found = out
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["degraded"].as_str().map(str::to_string))
            .find(|d| !d.is_empty() && d.contains(why));
        if let Some(reason) = found {
            return reason;
        }
        assert!(
            Instant::now() < deadline,
            "no worker degraded ({why:?}) after {LONG:?}: {out}\n{}",
            std::fs::read_to_string(&w.log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const FORGE_TOKEN: &str = "infra-test-token-0123456789";

/// A world with a forge (3 s budget, write-backs retried every second) that
/// has `core/demo` and its issues 1 and 2.
async fn forge_world() -> (TestEnv, agentq_tests::forge_sim::ForgeSim) {
    require_docker();
    let env = TestEnv::with_config("auto_qa = false\n");
    env.append_config(
        "[forge]\ntoken_env = \"AGENTQ_TEST_FORGE_TOKEN\"\ntimeout_secs = 3\nwriteback_retry_secs = 1\n",
    );
    env.remotes.create("core", "demo", &[]);
    let sim = agentq_tests::forge_sim::ForgeSim::start(
        FORGE_TOKEN,
        env.remotes.base.path().to_path_buf(),
    )
    .await;
    sim.add_repo("core", "demo", "main");
    sim.add_issue("core", "demo", 1, "Fix it", "Please.");
    sim.add_issue("core", "demo", 2, "And this", "Please.");
    env.set_env("AGENTQ_FORGE_URL", sim.url());
    env.set_env("AGENTQ_TEST_FORGE_TOKEN", FORGE_TOKEN);
    (env, sim)
}

/// Waits until the outcome comment of job `id` is on issue `issue`, once,
/// and no write-back waits.
async fn wait_comment(
    env: &TestEnv,
    sim: &agentq_tests::forge_sim::ForgeSim,
    issue: u64,
    id: &str,
) {
    let store = env.store().await;
    let deadline = Instant::now() + LONG;
    loop {
        let c = sim.comments("core", "demo", issue);
        let waiting = store.writebacks_waiting().await.unwrap();
        if waiting == 0 && !c.is_empty() {
            assert_eq!(c.len(), 1, "{c:?}");
            assert!(c[0].body.contains(id), "{c:?}");
            assert!(c[0].body.contains("completed"), "{c:?}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "write-back not done after the forge came back: {waiting} waiting, {c:?}\n{}",
            env.worker_logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A forge answering 503 to everything: the retries stop within the budget
/// (none begun that could not end in it), `forge_error` names the forge's
/// answer, and the comment comes once the forge is back.
#[tokio::test(flavor = "multi_thread")]
async fn a_forge_failing_for_now_stops_retrying_within_the_budget() {
    let (env, sim) = forge_world().await;
    sim.set_down(true);
    let _w = env.worker("w", 1);
    let id = env.enqueue_for_issue(1, "@agentq-test print hi");
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    assert!(rec.forge_error.contains("forge answered 503"), "{rec:#?}");
    sim.set_down(false);
    wait_comment(&env, &sim, 1, &id).await;
    sim.assert_nothing_dropped();
}

/// A forge that accepts connections and never answers: the worker starts and
/// takes jobs without waiting on it (preflight's check says it did not
/// answer, and does not blame the token); a job whose agent runs in a second
/// finishes within its budget (`forge.timeout_secs`), `forge_error` says so,
/// and the worker's slot is free for the next job; once the forge answers
/// again, the background task posts the outcome comment left undone.
#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_forge_costs_a_job_its_budget_and_the_write_back_comes_later() {
    let (env, sim) = forge_world().await;
    sim.set_hang(true);

    let w = env.worker("w", 1);
    w.wait_log("agentq-worker started", LONG);
    let id = env.enqueue_for_issue(1, "@agentq-test print hi");
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    assert!(rec.forge_error.contains("budget of 3s"), "{rec:#?}");
    // The worker's one slot is free: the next job runs too.
    let next = env.enqueue_for_issue(2, "@agentq-test print again");
    let rec2 = env.wait_final(&next, LONG).await;
    assert_eq!(rec2.state, JobState::Completed, "{rec2:#?}");
    w.wait_log("preflight: the forge did not answer within 3s", LONG);
    assert_eq!(w.log_count("refused this worker's token"), 0);
    let store = env.store().await;
    assert_eq!(store.writebacks_waiting().await.unwrap(), 2);
    assert!(sim.comments("core", "demo", 1).is_empty());

    // The forge answers again: the comments come, each once.
    sim.set_hang(false);
    wait_comment(&env, &sim, 1, &id).await;
    wait_comment(&env, &sim, 2, &next).await;
    sim.assert_nothing_dropped();
}

/// The heartbeat directories under a world's workspace root.
fn beat_dirs(env: &TestEnv) -> Vec<String> {
    std::fs::read_dir(env.workspace_root().join(".agentq-run").join("beat"))
        .map(|d| {
            d.filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// World `a`'s only worker runs a holding agent and is killed with `kill -9`:
/// its job's container and heartbeat directory stay behind. Returns the job.
async fn killed_mid_run(a: &TestEnv) -> String {
    a.remotes.create("core", "demo", &[]);
    let mut wa = a.worker("a", 1);
    let id = a.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        "1",
        "--agent",
        "codex",
        "--task",
        "@agentq-test hold",
    ]);
    a.wait_holding(1).await;
    assert!(!a.containers_of(&id).is_empty());
    assert!(
        !beat_dirs(a).is_empty(),
        "the run has a heartbeat directory"
    );
    wa.kill9();
    id
}

/// Waits until job `id`'s run lease is gone from world `env`'s Redis.
async fn wait_lease_gone(env: &TestEnv, id: &str) {
    let deadline = Instant::now() + LONG;
    let key = env.key(&format!("run:{id}"));
    while env.redis.conn().exists::<_, bool>(&key).unwrap() {
        assert!(Instant::now() < deadline, "run lease of {id} never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `kill -9` of the only worker of its namespace on this host while its agent
/// runs: a live worker of another namespace (its own Redis) on the same
/// engine removes the dead worker's container and heartbeat directory once
/// the run lease is gone from the dead worker's Redis.
#[tokio::test(flavor = "multi_thread")]
async fn a_dead_workers_container_and_heartbeat_dir_are_removed_by_another_namespaces_worker() {
    require_docker();
    let a = TestEnv::new();
    let b = TestEnv::new();
    let id = killed_mid_run(&a).await;
    let _wb = b.worker("b", 1);
    let deadline = Instant::now() + LONG;
    loop {
        let left = a.containers_of(&id);
        let beats = beat_dirs(&a);
        if left.is_empty() && beats.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dead worker's containers {left:?} / heartbeat dirs {beats:?} are still there\n{}",
            b.worker_logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `agentq-worker --cleanup`: removes the dead worker's container and
/// heartbeat directory, says so, and leaves a live run of another namespace
/// alone.
#[tokio::test(flavor = "multi_thread")]
async fn cleanup_removes_dead_runs_containers_and_keeps_held_ones() {
    require_docker();
    let a = TestEnv::new();
    let b = TestEnv::new();
    let id = killed_mid_run(&a).await;
    // A live run of another namespace on the same engine.
    b.remotes.create("core", "demo", &[]);
    let _wb = b.worker("b", 1);
    let live = b.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        "1",
        "--agent",
        "codex",
        "--task",
        "@agentq-test hold",
    ]);
    b.wait_holding(1).await;
    let live_containers = b.containers_of(&live);
    assert!(!live_containers.is_empty());

    wait_lease_gone(&a, &id).await;
    let out = Command::new(bin("agentq-worker"))
        .arg("--cleanup")
        .envs(a.env())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&id), "{stdout}");
    assert!(a.containers_of(&id).is_empty(), "{stdout}");
    assert!(beat_dirs(&a).is_empty(), "{stdout}");
    assert_eq!(
        b.containers_of(&live),
        live_containers,
        "a held run's container was removed"
    );
    assert!(!stdout.contains(&live), "{stdout}");
    b.release_holds();
    let rec = b.wait_final(&live, LONG).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
}

/// The forge hangs from before the run's write-back began, so even the
/// repository's default branch (the pull request's base) is unknown: once the
/// forge answers, the background task looks it up and opens the pull request,
/// and the outcome comment links it.
#[tokio::test(flavor = "multi_thread")]
async fn a_pull_request_the_hanging_forge_kept_from_opening_is_opened_later() {
    let (env, sim) = forge_world().await;
    sim.set_hang(true);
    let _w = env.worker("w", 1);
    let id = env.enqueue_for_issue(1, "@agentq-test commit");
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    assert!(rec.pr_url.is_empty(), "{rec:#?}");
    assert!(sim.pulls("core", "demo").is_empty());
    sim.set_hang(false);
    wait_comment(&env, &sim, 1, &id).await;
    let pulls = sim.pulls("core", "demo");
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    let comment = &sim.comments("core", "demo", 1)[0].body;
    assert!(comment.contains("Pull request: "), "{comment}");
    sim.assert_nothing_dropped();
}

/// A TCP server that accepts every connection and never answers: a frozen
/// Redis. Counts the connections it was asked for.
struct Blackhole {
    port: u16,
    seen: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Blackhole {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = seen.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for s in listener.incoming().flatten() {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.push(s);
            }
        });
        Self { port, seen }
    }

    fn seen(&self) -> usize {
        self.seen.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Containers labelled as other namespaces' runs, removed on drop.
struct Leftovers {
    tag: String,
}

impl Leftovers {
    /// `n` created (never started) containers, each of its own namespace,
    /// whose Redis is `redis_url`.
    fn create(n: usize, redis_url: &str) -> Self {
        let tag = format!("lo{}", std::process::id());
        let handles: Vec<_> = (0..n)
            .collect::<Vec<_>>()
            .chunks(n.div_ceil(8))
            .map(|chunk| {
                let (chunk, tag, url) = (chunk.to_vec(), tag.clone(), redis_url.to_string());
                std::thread::spawn(move || {
                    for i in chunk {
                        let out = Command::new("docker")
                            .args(["create", "--network", "none"])
                            .args(["--label", &format!("agentq.namespace=gone-{tag}-{i}")])
                            .args(["--label", &format!("agentq.job=J{i}")])
                            .args(["--label", "agentq.worker=gone-worker"])
                            .args(["--label", &format!("agentq.redis={url}")])
                            .args(["--label", &format!("agentq.test-leftover={tag}")])
                            .args([TEST_IMAGE, "true"])
                            .output()
                            .expect("docker create");
                        assert!(
                            out.status.success(),
                            "docker create: {}",
                            String::from_utf8_lossy(&out.stderr)
                        );
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        Self { tag }
    }

    fn count(&self) -> usize {
        let out = Command::new("docker")
            .args(["ps", "-aq", "--filter"])
            .arg(format!("label=agentq.test-leftover={}", self.tag))
            .output()
            .expect("docker ps");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .count()
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "docker ps -aq --filter label=agentq.test-leftover={} | xargs -r docker rm -f",
                self.tag
            ))
            .output();
    }
}

/// An engine full of other namespaces' leftovers whose Redis never answers
/// (80 namespaces: asked one after another, 3 s each, that is four minutes)
/// delays neither a worker's start nor its first job: other namespaces are
/// looked at in the background, all at once. They are still asked, and a
/// container whose Redis cannot tell and whose age is unknown is kept.
#[tokio::test(flavor = "multi_thread")]
async fn other_namespaces_whose_redis_never_answers_delay_neither_start_nor_the_first_job() {
    require_docker();
    let hole = Blackhole::start();
    let leftovers = Leftovers::create(80, &format!("redis://127.0.0.1:{}", hole.port));
    assert_eq!(leftovers.count(), 80);
    let env = TestEnv::with_config("auto_qa = false\n");
    env.remotes.create("core", "demo", &[]);
    let id = env.enqueue_for_issue(1, "@agentq-test print first");
    let _w = env.worker("w1", 1);
    let rec = env.wait_final(&id, LONG).await;
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
    let deadline = Instant::now() + LONG;
    while hole.seen() == 0 {
        assert!(
            Instant::now() < deadline,
            "the leftovers' Redis was never asked\n{}",
            env.worker_logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        leftovers.count(),
        80,
        "a container of unknown age was removed"
    );
}
