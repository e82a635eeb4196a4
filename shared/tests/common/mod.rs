//! The store test tier's harness: a private redis-server per test, on a free
//! loopback port, and a store on it. No worker, no Docker.

#![allow(dead_code)]

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use agentq_shared::{
    admission::AdmissionConfig,
    input::DispatchInput,
    record::JobRecord,
    store::{Delivery, JobStore},
};

/// A redis-server of the test's own, stopped on drop.
pub struct Redis {
    child: Child,
    /// Its port.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    /// Starts redis-server on a free loopback port and waits until it answers.
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server ({e}): install it with `apt-get install -y redis-server`"));
        let r = Self {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut c) = redis::Client::open(r.url()).and_then(|c| c.get_connection()) {
                if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                    return r;
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {port} did not answer within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A store in namespace `ns`.
    pub async fn store(&self, ns: &str) -> JobStore {
        JobStore::connect(&self.url(), ns, Duration::from_secs(5))
            .await
            .unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A new record for agent `agent` (`pool` or `pool:model`).
pub fn record(agent: &str) -> JobRecord {
    let input = DispatchInput {
        repo: "demo".into(),
        org: "core".into(),
        task: "a task".into(),
        issue: 1,
        agent: agent.into(),
        ..Default::default()
    };
    JobRecord::new(
        ulid::Ulid::new().to_string(),
        input,
        3,
        "2026-12-01T00:00:00Z".parse().expect("a time"),
    )
}

/// Enqueues one job for `agent`; returns its id.
pub async fn enqueue(store: &JobStore, agent: &str) -> String {
    let rec = record(agent);
    store.create(std::slice::from_ref(&rec)).await.unwrap();
    rec.id
}

/// Runs a Redis command on the store's connection.
pub async fn query<T: redis::FromRedisValue>(store: &JobStore, cmd: &mut redis::Cmd) -> T {
    cmd.query_async(&mut store.conn()).await.unwrap()
}

/// The deliveries waiting in the apalis queue now (active list), oldest first.
pub async fn deliveries(store: &JobStore) -> Vec<Delivery> {
    let cfg = agentq_shared::store::apalis_config(store.keys());
    let tasks: Vec<String> = query(
        store,
        redis::cmd("LRANGE")
            .arg(cfg.active_jobs_list())
            .arg(0)
            .arg(-1),
    )
    .await;
    let mut out = Vec::new();
    for t in tasks {
        let data: String = query(store, redis::cmd("HGET").arg(cfg.job_data_hash()).arg(&t)).await;
        out.push(serde_json::from_str(&data).unwrap());
    }
    out
}

/// An admission config (`[limits]`, `[rates]`, `[pacing]`) from TOML text.
pub fn admission(toml_text: &str) -> AdmissionConfig {
    toml::from_str(toml_text).unwrap()
}

/// One wake of `pool` (a 60 s slot lease, at most 10 grants): the grants.
pub async fn wake(store: &JobStore, cfg: &AdmissionConfig, pool: &str) -> usize {
    store
        .wake_pool(cfg, pool, Duration::from_secs(60), 10)
        .await
        .unwrap()
}

/// The job ids of deliveries.
pub fn delivered(d: &[Delivery]) -> Vec<String> {
    d.iter().map(|d| d.job_id.clone()).collect()
}
