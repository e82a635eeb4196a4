//! Issue 30 (part): no task outlives what it serves. After SIGTERM the worker
//! stops its background services (registry, sweeper, janitor, housekeeping,
//! waker, affinity, HTTP server, signal listener), waits for them, and only
//! then leaves the worker registry and exits.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use agentq_shared::status::JobState;
use agentq_tests::*;
use redis::Commands;

const LONG: Duration = Duration::from_secs(120);

/// The services a worker without a forge runs, by the names it logs.
const SERVICES: &[&str] = &[
    "signals",
    "http",
    "registry",
    "waker listener",
    "waker timers",
    "sweeper",
    "janitor reaper",
    "janitor vacuum",
    "housekeeping",
    "affinity claimer",
];

/// `redis-cli monitor` of `redis`, writing every command Redis runs to `file`;
/// killed on drop.
struct Monitor {
    child: Child,
    file: std::path::PathBuf,
}

impl Monitor {
    fn start(env: &TestEnv) -> Self {
        let file = env.dir.path().join("monitor.log");
        let out = std::fs::File::create(&file).unwrap();
        let child = Command::new("redis-cli")
            .args(["-p", &env.redis.port.to_string(), "monitor"])
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start redis-cli monitor");
        Self { child, file }
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.file)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Waits until a line holds every one of `parts`.
    fn wait_for(&self, parts: &[&str]) {
        let deadline = Instant::now() + LONG;
        while !self
            .lines()
            .iter()
            .any(|l| parts.iter().all(|p| l.contains(p)))
        {
            assert!(
                Instant::now() < deadline,
                "Redis never ran a command with {parts:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The log without its colours.
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// After SIGTERM, with a job running: the job finishes, then every background
/// service logs that it stopped, then the worker says all of them did (none
/// aborted), then it leaves the registry, and exits 0. Redis's own command
/// log shows no heartbeat after the registry entry was removed, and the entry
/// is gone.
#[tokio::test(flavor = "multi_thread")]
async fn after_sigterm_every_background_task_stops_before_the_worker_leaves_the_registry() {
    require_docker();
    let env = TestEnv::new();
    env.remotes.create("core", "demo", &[]);
    env.set_env(
        "RUST_LOG",
        "info,apalis=warn,apalis_core=warn,apalis_redis=warn,agentq_worker::services=debug",
    );
    let monitor = Monitor::start(&env);
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut w = env.worker_with_args("w1", &["--concurrency", "1", "--metrics-addr", &metrics]);
    wait_live_workers(&env, 1).await;
    let workers = env.key("workers");
    monitor.wait_for(&["\"HSET\"", &format!("\"{workers}\"")]);

    let id = env.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        "1",
        "--task",
        "@agentq-test sleep 3",
    ]);
    env.wait_for(&id, LONG, |r| r.state == JobState::Running)
        .await;
    let status = w.signal_and_wait("TERM", LONG);
    assert!(status.success(), "worker exited with {status}");
    // The running job was let finish.
    let rec = env.store().await.get(&id).await.unwrap().unwrap();
    assert_eq!(rec.state, JobState::Completed, "{rec:#?}");

    // The worker's log: each service stopped, then all of them, then the worker.
    let log = plain(&std::fs::read_to_string(&w.log).unwrap());
    let at = |what: &str| {
        log.lines()
            .position(|l| l.contains(what))
            .unwrap_or_else(|| panic!("no {what:?} in the worker's log:\n{log}"))
    };
    let all = at("all background tasks stopped");
    let done = at("agentq-worker stopped");
    assert!(all < done, "{log}");
    for name in SERVICES {
        let stopped = log
            .lines()
            .position(|l| {
                l.contains("background task stopped") && l.contains(&format!("service=\"{name}\""))
            })
            .unwrap_or_else(|| panic!("service {name:?} never logged that it stopped:\n{log}"));
        assert!(
            stopped < all,
            "{name} stopped after the worker said all had:\n{log}"
        );
    }
    assert!(
        !log.contains("did not stop in time"),
        "a service had to be aborted:\n{log}"
    );

    // Redis: the entry was removed once, after the last heartbeat, and is gone.
    monitor.wait_for(&["\"HDEL\"", &format!("\"{workers}\"")]);
    let lines = monitor.lines();
    let removed = lines
        .iter()
        .position(|l| l.contains("\"HDEL\"") && l.contains(&format!("\"{workers}\"")))
        .unwrap();
    let heartbeats: Vec<&String> = lines[removed..]
        .iter()
        .filter(|l| l.contains("\"HSET\"") && l.contains(&format!("\"{workers}\"")))
        .collect();
    assert!(
        heartbeats.is_empty(),
        "a heartbeat came after the worker left the registry: {heartbeats:?}"
    );
    let mut conn = env.redis.conn();
    let left: usize = conn.hlen(&workers).unwrap();
    assert_eq!(left, 0, "the worker's registry entry is still there");
}
