//! The README's pool of workers, as `docker-compose.yml` runs it with no
//! registry: Redis (password, append-only file on a volume) and three worker
//! containers, each its own host (hostname, network namespace, process table,
//! workspace root). 30 jobs from the host's CLI spread over the three, a pool
//! limit holds across them, `docker kill` of a worker mid-job still ends with
//! every job completed exactly once, and `docker-compose down` leaves no agent
//! container behind.

use std::{
    collections::HashSet,
    process::{Command, Output},
    time::{Duration, Instant},
};

use agentq_shared::{status::JobState, store::JobStore};
use agentq_tests::*;

const LONG: Duration = Duration::from_secs(300);

/// A compose project, taken down (with its volume) on drop.
struct Pool {
    project: String,
    files: Vec<String>,
    env: Vec<(String, String)>,
}

impl Pool {
    fn compose(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("docker-compose");
        cmd.arg("-p").arg(&self.project);
        for f in &self.files {
            cmd.arg("-f").arg(f);
        }
        cmd.args(args).current_dir(repo_root());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.output()
            .expect("docker-compose is missing: apt-get install -y docker-compose")
    }

    fn compose_ok(&self, args: &[&str]) -> String {
        let out = self.compose(args);
        assert!(
            out.status.success(),
            "docker-compose {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The worker containers' ids.
    fn workers(&self) -> Vec<String> {
        self.compose_ok(&["ps", "-q", "worker"])
            .lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let _ = self.compose(&["down", "-v", "--timeout", "5"]);
    }
}

fn require_images() {
    for image in ["agentq-worker:latest", "agentq-redis:latest"] {
        let ok = Command::new("docker")
            .args(["image", "inspect", image])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(ok, "{image} is missing: run scripts/build-images");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_compose_pool_of_three_workers_runs_every_job_exactly_once() {
    require_docker();
    require_images();
    let env = TestEnv::with_config("[limits]\nclaude = 2\n");
    env.remotes.create("core", "demo", &[]);
    let port = free_port();
    let password = format!("pool-{}", env.ns);
    let ws = env.dir.path().join("ws");
    let cfg = env.config_path().display().to_string();
    let remotes = env.remotes.base();
    // The test's own paths, at the same path in the workers as on the host.
    let override_file = env.dir.path().join("compose.test.yml");
    std::fs::write(
        &override_file,
        format!(
            "version: \"3.7\"\nservices:\n  worker:\n    environment:\n      AGENTQ_CONFIG: {cfg}\n      AGENTQ_NAMESPACE: {ns}\n      AGENTQ_GIT_BASE: {remotes}\n      AGENT_DOCKER_IMAGE: {TEST_IMAGE}\n      RUST_LOG: info,agentq_worker=debug\n    volumes:\n      - {cfg}:{cfg}:ro\n      - {remotes}:{remotes}\n",
            ns = env.ns,
        ),
    )
    .unwrap();
    let pool = Pool {
        project: format!(
            "agentqpool{}",
            env.ns.replace(['-', '_', ':'], "").to_lowercase()
        ),
        files: vec![
            "docker-compose.yml".into(),
            override_file.display().to_string(),
        ],
        env: vec![
            ("REDIS_PASSWORD".into(), password.clone()),
            ("AGENTQ_REDIS_PORT".into(), port.to_string()),
            ("AGENTQ_WORKSPACE_ROOT".into(), ws.display().to_string()),
            ("AGENTQ_CONCURRENCY".into(), "4".into()),
        ],
    };
    pool.compose_ok(&["up", "-d", "--scale", "worker=3"]);
    let url = format!("redis://:{password}@127.0.0.1:{port}");
    env.set_env("AGENTQ_REDIS_URL", url.clone());
    wait_live_workers(&env, 3).await;
    let store = JobStore::connect(&url, &env.ns, Duration::from_secs(5))
        .await
        .unwrap();

    // One long job first: its worker is killed while it runs.
    let doomed = env.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        "100",
        "--task",
        "@agentq-test sleep 15",
    ]);
    let lines: String = (1..=29)
        .map(|i| {
            let agent = if i % 3 == 0 { "claude" } else { "codex" };
            format!(
                "{{\"repo\":\"demo\",\"agent\":\"{agent}\",\"task\":\"job {i} @agentq-test sleep 2\",\"issue\":{i}}}\n"
            )
        })
        .collect();
    let mut ids = env.enqueue_ndjson(&lines);
    assert_eq!(ids.len(), 29);
    ids.push(doomed.clone());

    let running = wait_state(&store, &doomed, |r| {
        r.state == JobState::Running && !r.container.is_empty()
    })
    .await;
    // The jobs spread over the three containers (each runs at most 4 at once).
    let deadline = Instant::now() + LONG;
    let spread = loop {
        let mut hosts = HashSet::new();
        for id in &ids {
            if let Ok(Some(r)) = store.get(id).await {
                if !r.host.is_empty() {
                    hosts.insert(r.host);
                }
            }
        }
        if hosts.len() >= 3 {
            break hosts;
        }
        assert!(Instant::now() < deadline, "jobs ran only on {hosts:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(spread.len(), 3, "{spread:?}");
    let victim = running.host.clone();
    assert!(
        pool.workers().iter().any(|c| c.starts_with(&victim)),
        "the job's host {victim} is a worker container: {:?}",
        pool.workers()
    );
    let killed = Command::new("docker")
        .args(["kill", &victim])
        .output()
        .unwrap();
    assert!(killed.status.success(), "{killed:?}");

    for id in &ids {
        let rec = wait_state(&store, id, |r| r.state.is_final()).await;
        assert_eq!(rec.state, JobState::Completed, "{rec:#?}");
        // Completed exactly once: one move into `completed` in the job's
        // history. (A run whose worker was killed after its agent finished is
        // run again: its work died with that host's workspace.) Never two runs
        // of one job at once, by the agent's own log.
        let history = store.history(id).await.unwrap();
        let completions = history.iter().filter(|h| h.state == "completed").count();
        assert_eq!(completions, 1, "job {id}: {history:#?}");
        let runs = env.agent_intervals(id);
        assert!(!runs.is_empty(), "job {id} never ran");
        assert_eq!(max_overlap(&runs), 1, "job {id}: {runs:?}");
    }
    let doomed_rec = store.get(&doomed).await.unwrap().unwrap();
    assert_ne!(doomed_rec.host, victim, "another worker finished it");
    assert_eq!(doomed_rec.attempt, 2, "{doomed_rec:#?}");

    // claude = 2 held across the three containers.
    let claude: Vec<(f64, f64)> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| (i + 1) % 3 == 0 && *i < 29)
        .flat_map(|(_, id)| env.agent_intervals(id))
        .collect();
    assert!(claude.len() >= 9, "{claude:?}");
    assert!(max_overlap(&claude) <= 2, "{claude:?}");

    // Down: no agent container of this namespace is left.
    pool.compose_ok(&["down", "-v", "--timeout", "60"]);
    let deadline = Instant::now() + LONG;
    loop {
        let left = containers_with_label("agentq.namespace", &env.ns);
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "agent containers left: {left:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_state(
    store: &JobStore,
    id: &str,
    cond: impl Fn(&agentq_shared::record::JobRecord) -> bool,
) -> agentq_shared::record::JobRecord {
    let deadline = Instant::now() + LONG;
    let mut last = None;
    loop {
        if let Ok(Some(r)) = store.get(id).await {
            if cond(&r) {
                return r;
            }
            last = Some(r);
        }
        assert!(
            Instant::now() < deadline,
            "job {id} never got there: {last:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
