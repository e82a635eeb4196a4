//! Redis Sentinel: a primary, a replica and three sentinels on loopback ports
//! (real redis-server processes, the sentinels in `--sentinel` mode). The
//! primary is killed (SIGKILL) in the middle of a batch enqueue and while a
//! worker runs a job; every job the CLI reported queued is on the promoted
//! replica, the running job completes there, and the worker takes new jobs.

use std::{
    io::{BufRead, BufReader, Write},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use agentq_shared::{status::JobState, store::JobStore};
use agentq_tests::*;

const PASSWORD: &str = "sentinel-node-pw-41d2";
const SERVICE: &str = "agentqprimary";
const LONG: Duration = Duration::from_secs(120);

/// One redis-server process, killed on drop.
struct Node {
    child: Option<Child>,
    port: u16,
}

impl Node {
    /// Starts a node on a free port; a port another test's server took
    /// first is given up for another.
    fn start(dir: &Path, name: &str, args: &[String], sentinel_conf: Option<&str>) -> Self {
        for _ in 0..5 {
            if let Some(node) = Self::try_start(dir, name, args, sentinel_conf, free_port()) {
                return node;
            }
        }
        panic!("no free port for {name} after 5 tries");
    }

    fn try_start(
        dir: &Path,
        name: &str,
        args: &[String],
        sentinel_conf: Option<&str>,
        port: u16,
    ) -> Option<Self> {
        let mut cmd = Command::new("redis-server");
        if let Some(conf) = sentinel_conf {
            // Sentinel rewrites its config file: it must be its own, writable.
            let path = dir.join(format!("{name}.conf"));
            std::fs::write(&path, format!("port {port}\nbind 127.0.0.1\n{conf}")).unwrap();
            cmd.arg(&path).arg("--sentinel");
        } else {
            let data = dir.join(name);
            std::fs::create_dir_all(&data).unwrap();
            cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .arg("--dir")
                .arg(&data)
                .args(args);
        }
        let log_path = dir.join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path).unwrap();
        let child = cmd
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot start redis-server: apt-get install -y redis-server");
        let mut node = Self {
            child: Some(child),
            port,
        };
        // Answered by this very process (not another test's server that
        // had the port first).
        let url = match sentinel_conf {
            Some(_) => format!("redis://127.0.0.1:{port}/"),
            None => format!("redis://:{PASSWORD}@127.0.0.1:{port}/"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let child = node.child.as_mut().unwrap();
            if child.try_wait().unwrap().is_some() {
                eprintln!("{name} could not take port {port}; trying another");
                return None;
            }
            match redis_pid(&url) {
                Some(pid) if pid == child.id() => return Some(node),
                Some(pid) => {
                    eprintln!("port {port} is another server's (pid {pid}); trying another");
                    node.kill9();
                    return None;
                }
                None => {}
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not answer on {port} within 10 s:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn conn(&self) -> redis::Connection {
        let url = format!("redis://:{PASSWORD}@127.0.0.1:{}/", self.port);
        redis::Client::open(url).unwrap().get_connection().unwrap()
    }

    /// Sends `sig` (`STOP`, `CONT`) to the server process.
    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("the node runs").id();
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} {pid}");
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A primary (AOF with `appendfsync always`), its replica, three sentinels.
struct Group {
    primary: Node,
    replica: Node,
    sentinels: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl Group {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let auth = |extra: &[&str]| -> Vec<String> {
            let mut a: Vec<String> = [
                "--requirepass",
                PASSWORD,
                "--masterauth",
                PASSWORD,
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            a.extend(extra.iter().map(|s| s.to_string()));
            a
        };
        let primary = Node::start(d, "primary", &auth(&[]), None);
        let replica = Node::start(
            d,
            "replica",
            &auth(&["--replicaof", "127.0.0.1", &primary.port.to_string()]),
            None,
        );
        // The replica has caught up once it reports the link up.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut replica.conn())
                .unwrap();
            if info.contains("master_link_status:up") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the replica never synced: {info}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let conf = format!(
            "sentinel monitor {SERVICE} 127.0.0.1 {} 2\n\
             sentinel auth-pass {SERVICE} {PASSWORD}\n\
             sentinel down-after-milliseconds {SERVICE} 1000\n\
             sentinel failover-timeout {SERVICE} 10000\n\
             sentinel parallel-syncs {SERVICE} 1\n",
            primary.port
        );
        let sentinels = (0..3)
            .map(|i| Node::start(d, &format!("sentinel{i}"), &[], Some(&conf)))
            .collect();
        Self {
            primary,
            replica,
            sentinels,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("redis+sentinel://:{PASSWORD}@{}/{SERVICE}", hosts.join(","))
    }

    /// The primary's port as the sentinels see it.
    fn primary_port_seen(&self) -> Option<u16> {
        let url = format!("redis://127.0.0.1:{}/", self.sentinels[0].port);
        let mut c = redis::Client::open(url).ok()?.get_connection().ok()?;
        let addr: Vec<String> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(SERVICE)
            .query(&mut c)
            .ok()?;
        addr.get(1)?.parse().ok()
    }

    /// Waits until the replica's copy holds everything the primary has.
    fn wait_replica_caught_up(&self) {
        let offset = |n: &Node| -> Option<u64> {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut n.conn())
                .ok()?;
            let key = if n.port == self.primary.port {
                "master_repl_offset:"
            } else {
                "slave_repl_offset:"
            };
            info.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse().ok())
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while offset(&self.primary) != offset(&self.replica) {
            assert!(Instant::now() < deadline, "the replica does not catch up");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Waits until job `id`'s record satisfies `done` (on `store`, which may
/// be a Sentinel group's).
async fn wait_for(
    env: &TestEnv,
    store: &JobStore,
    id: &str,
    done: impl Fn(&agentq_shared::record::JobRecord) -> bool,
) -> agentq_shared::record::JobRecord {
    let deadline = Instant::now() + LONG;
    loop {
        let rec = store.get(id).await.unwrap().unwrap();
        if done(&rec) {
            return rec;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} is stuck: {rec:#?}\n{}",
            env.worker_logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ndjson(n: usize, from: usize) -> String {
    (from..from + n)
        .map(|i| {
            format!(
                "{{\"repo\":\"demo\",\"agent\":\"gemini\",\"task\":\"waits {i}\",\"issue\":{}}}\n",
                1000 + i
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pool_survives_the_loss_of_its_redis_primary_and_no_queued_job_is_lost() {
    require_docker();
    let group = Group::start();
    // Batch jobs go to a paused pool: they wait and cost nothing, so the
    // test counts them without racing a worker.
    // Leases of 15 s (the tests' usual 3 s is shorter than a failover, which
    // takes 2 to 5 s here: the run would rightly fence itself out).
    let env = TestEnv::with_config("heartbeat_secs = 5");
    env.remotes.create("core", "demo", &[]);
    env.set_env("AGENTQ_REDIS_URL", group.url());
    env.cli_ok(&["pool", "pause", "gemini", "--for", "1h"]);
    let mut w1 = env.worker("w1", 2);
    wait_live_workers(&env, 1).await;
    let long = env.enqueue(&[
        "--repo",
        "demo",
        "--issue",
        "1",
        "--task",
        "@agentq-test hold",
    ]);
    let store = JobStore::connect(&group.url(), &env.ns, Duration::from_secs(5))
        .await
        .unwrap();
    wait_for(&env, &store, &long, |r| {
        r.state == JobState::Running && !r.container.is_empty()
    })
    .await;
    // The agent is inside its run, and stays there across the failover.
    env.wait_holding(1).await;

    // A batch: 1 500 lines in (three chunks, reported queued), then the
    // primary dies, then 1 500 more lines.
    let mut cli = Command::new(bin("agentq"))
        .args(["enqueue", "-", "--json"])
        .envs(env.env())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = cli.stdin.take().unwrap();
    stdin.write_all(ndjson(1500, 0).as_bytes()).unwrap();
    stdin.flush().unwrap();
    let mut out = BufReader::new(cli.stdout.take().unwrap());
    let mut lines = Vec::new();
    while lines.len() < 1500 {
        let mut l = String::new();
        assert!(out.read_line(&mut l).unwrap() > 0, "enqueue ended early");
        lines.push(l);
    }
    // Sentinel promotes the replica with the most data; wait until it has
    // everything, so the running job's record survives too (writes after
    // this are lease renewals and heartbeats).
    group.wait_replica_caught_up();
    let old = group.primary.port;
    let mut group = group;
    group.primary.kill9();
    stdin.write_all(ndjson(1500, 1500).as_bytes()).unwrap();
    drop(stdin);
    for l in out.lines() {
        lines.push(format!("{}\n", l.unwrap()));
    }
    let status = cli.wait().unwrap();
    let results: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(results.len(), 3000, "one answer per line");
    let queued: Vec<&str> = results
        .iter()
        .filter(|r| r["status"] == "queued")
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    let others: Vec<&serde_json::Value> =
        results.iter().filter(|r| r["status"] != "queued").collect();
    assert!(
        others
            .iter()
            .all(|r| r["status"] == "not_enqueued" || r["status"] == "unknown"),
        "{others:?}"
    );
    assert!(queued.len() >= 1500, "{} queued", queued.len());
    assert_eq!(
        status.success(),
        others.is_empty(),
        "exit status {status} with {} lines not queued",
        others.len()
    );

    // The sentinels promote the replica.
    let deadline = Instant::now() + Duration::from_secs(60);
    while group.primary_port_seen() != Some(group.replica.port) {
        assert!(
            Instant::now() < deadline,
            "no failover from {old} to {}",
            group.replica.port
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Every job reported queued is on the new primary.
    let store = JobStore::connect(&group.url(), &env.ns, Duration::from_secs(5))
        .await
        .unwrap();
    let mut lost = Vec::new();
    for id in &queued {
        if store.get(id).await.unwrap().is_none() {
            lost.push(*id);
        }
    }
    assert!(lost.is_empty(), "{} queued jobs lost: {lost:?}", lost.len());

    // The job that ran across the failover completes, on its first attempt,
    // and the worker, still up, takes new work from the new primary.
    env.release_holds();
    let rec = wait_for(&env, &store, &long, |r| r.state.is_final()).await;
    assert_eq!(
        (rec.state, rec.attempt),
        (JobState::Completed, 1),
        "{rec:#?}\n{}",
        env.worker_logs()
    );
    // The new primary has no replica left (the old primary is dead), so a
    // `WAIT` for one runs out and `enqueue` rightly says "unknown" (exit 2):
    // this producer takes the primary's word.
    env.set_env("AGENTQ_REDIS_MIN_REPLICAS", "0");
    let out = env.cli_ok(&[
        "enqueue",
        "--repo",
        "demo",
        "--issue",
        "2",
        "--task",
        "@agentq-test commit",
        "--wait",
        "--json",
    ]);
    let after: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(after["state"], "completed", "{out}");
    assert!(w1.is_running(), "the worker exited:\n{}", env.worker_logs());
    assert!(
        std::fs::read_to_string(&w1.log)
            .unwrap()
            .contains("Redis primary moved"),
        "the worker says it followed the primary"
    );
}

/// `redis_min_replicas` (1 with a Sentinel URL): `agentq enqueue` says
/// `queued` only once a replica holds the job. With the replica stopped
/// (SIGSTOP: connected, silent), `WAIT` runs out: one job exits 2 saying it is
/// unconfirmed, a batch prints its lines `unknown` and exits 2, and nothing is
/// printed queued. With the replica back, a job reported queued is on it the
/// moment the primary is killed (no waiting for it to catch up): it is on the
/// promoted primary.
#[tokio::test(flavor = "multi_thread")]
async fn a_job_no_replica_confirmed_is_never_reported_queued() {
    let mut group = Group::start();
    let env = TestEnv::new();
    env.set_env("AGENTQ_REDIS_URL", group.url());
    let one = [
        "enqueue", "--repo", "demo", "--issue", "1", "--task", "one", "--json",
    ];

    group.replica.signal("STOP");
    let out = env.cli(&one, None);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(!stdout.contains("queued"), "{stdout}");
    assert!(stderr.contains("replicas"), "{stderr}");
    let out = env.cli(&["enqueue", "-", "--json"], Some(&ndjson(3, 0)));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let statuses: Vec<String> = stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["status"].to_string())
        .collect();
    assert_eq!(statuses, ["\"unknown\""; 3], "{stdout}");
    group.replica.signal("CONT");

    let out = env.cli_ok(&one);
    let queued: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(queued["status"], "queued", "{out}");
    let id = queued["id"].as_str().unwrap().to_string();
    group.primary.kill9();
    let deadline = Instant::now() + Duration::from_secs(60);
    while group.primary_port_seen() != Some(group.replica.port) {
        assert!(Instant::now() < deadline, "no failover");
        std::thread::sleep(Duration::from_millis(100));
    }
    let store = JobStore::connect(&group.url(), &env.ns, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        store.get(&id).await.unwrap().is_some(),
        "job {id}, reported queued, is lost"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_sentinel_url_is_refused_naming_what_is_wrong() {
    let env = TestEnv::new();
    env.set_env("AGENTQ_REDIS_URL", "redis+sentinel://127.0.0.1:26379");
    let out = env.cli(&["stats"], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no service name"), "{err}");
    // No sentinel answers: the sentinels' addresses are named.
    let port = free_port();
    env.set_env(
        "AGENTQ_REDIS_URL",
        format!("redis+sentinel://127.0.0.1:{port}/mymaster"),
    );
    let out = env.cli(&["stats"], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&port.to_string()), "{err}");
}
