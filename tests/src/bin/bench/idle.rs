//! The idle rows (issue 34): what an idle worker costs Redis, alone and as a
//! fleet of 1 000, and how fast an idle worker takes a job.
//!
//! The fleet is one process emulating 1 000 idle workers (the machine has
//! two cores: 1 000 worker processes, each with its Docker client and
//! preflight, do not fit). Each emulated worker does what the idle loops of
//! `agentq-worker` do to Redis, with the same store calls and the default
//! config's periods: its own connections (a multiplexed one and a pub/sub one
//! on the channels the waker listens to), the registry heartbeat
//! (`worker_heartbeat`, tidy every 30 beats, five pools served), the sweep
//! lock each heartbeat (and, for the one that holds it, the sweep's rounds:
//! orphans, dead workspaces, parked pools, the window, lost deliveries every
//! `sweep_secs`), the timer wait (`due_timers`, then wait for the first due
//! time, a publish, or 30 s), and a real apalis worker on the same backend
//! and config as the intake (its heartbeat every three heartbeats, a fetch
//! after each, the `poll_ms` safety poll). The row before it is one real
//! worker process measured the same way, for each emulated one to be held
//! against. The job latency is measured on a real worker (a namespace of its
//! own) while the emulated fleet idles on the same Redis.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use agentq_shared::{
    config::Config,
    store::{ops::WorkerInfo, Delivery, JobStore},
};
use agentq_tests::*;
use apalis_core::{backend::ext::BackendExt, error::BoxDynError, worker::builder::WorkerBuilder};
use futures::StreamExt;
use redis::Commands;

use super::{redis_cpu, Row};

/// Emulated idle workers in the fleet row.
const FLEET: usize = 1_000;
/// Jobs whose start is timed on the idle fleet.
const JOBS: usize = 50;

/// Every idle row.
pub async fn rows() -> Vec<Row> {
    require_docker();
    let mut rows = vec![one_real_worker().await];
    rows.push(enqueue_wait().await);
    rows.extend(fleet().await);
    rows
}

/// Waits until `n` workers are registered in `ns` and the sweep ran once.
async fn settled(redis: &Redis, ns: &str, n: usize) {
    let keys = agentq_shared::keys::Keys::new(ns);
    let t = Instant::now();
    loop {
        let mut c = redis.conn();
        let workers: usize = c.hlen(keys.workers()).unwrap();
        let swept: bool = c.exists(keys.sweep_lock()).unwrap();
        if workers >= n && swept {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(300),
            "{ns}: {workers} of {n} registered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Redis commands/s and Redis CPU (% of one core) over `secs`.
async fn measure(redis: &Redis, secs: u64) -> (f64, f64) {
    let (c0, k0, t) = (redis.total_commands(), redis_cpu(redis), Instant::now());
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let s = t.elapsed().as_secs_f64();
    (
        (redis.total_commands() - c0) as f64 / s,
        (redis_cpu(redis) - k0) / s * 100.0,
    )
}

/// One real idle worker at the default heartbeat, over 30 s (three beats).
async fn one_real_worker() -> Row {
    let env = TestEnv::with_config("heartbeat_secs = 10\n");
    let _w = env.worker("idle", 2);
    settled(&env.redis, &env.ns, 1).await;
    let (rate, _) = measure(&env.redis, 30).await;
    Row {
        what: "Redis commands/s of one idle worker (`agentq-worker`, default heartbeat, 30 s)"
            .into(),
        agentq: format!("{rate:.2}"),
        peer: "42.9 before issue 34 (same measure, `limits::an_idle_worker…`)".into(),
        ratio: format!("{:.3}×", rate / 42.9),
    }
}

/// p50 / p95 of `xs` (sorted here).
fn p50_p95(xs: &mut [f64]) -> (f64, f64) {
    xs.sort_by(f64::total_cmp);
    let pct = |p: f64| xs[((xs.len() - 1) as f64 * p).round() as usize];
    (pct(0.5), pct(0.95))
}

/// Milliseconds from RFC 3339 `a` to `b` (both written on this machine).
fn ms_between(a: &str, b: &str) -> Option<f64> {
    let a = chrono::DateTime::parse_from_rfc3339(a).ok()?;
    let b = chrono::DateTime::parse_from_rfc3339(b).ok()?;
    Some((b - a).num_milliseconds() as f64)
}

/// `agentq enqueue --wait` on an idle worker, 50 times: from the job's final
/// state written (its last history entry) to the command's return.
async fn enqueue_wait() -> Row {
    let env = TestEnv::with_config("heartbeat_secs = 10\n");
    env.remotes.create("core", "demo", &[]);
    let _w = env.worker("wait", 1);
    settled(&env.redis, &env.ns, 1).await;
    let mut late = Vec::new();
    for i in 0..JOBS {
        let out = env.cli(
            &[
                "enqueue",
                "--repo",
                "demo",
                "--org",
                "core",
                "--issue",
                &(i + 1).to_string(),
                "--task",
                "@agentq-test print hi",
                "--agent",
                "codex",
                "--wait",
                "--json",
            ],
            None,
        );
        let returned = agentq_shared::store::now_rfc3339();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rec: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let id = rec["id"].as_str().unwrap_or_default().to_string();
        let history = env.store().await.history(&id).await.unwrap();
        if let Some(ms) = history.last().and_then(|h| ms_between(&h.at, &returned)) {
            late.push(ms);
        }
    }
    let (p50, p95) = p50_p95(&mut late);
    Row {
        what: format!("`agentq enqueue --wait`: final state written → the command returns, {JOBS} jobs, p50 / p95"),
        agentq: format!("{p50:.0} ms / {p95:.0} ms"),
        peer: "goal ≤ 30 ms; polling every 250 ms before issue 34".into(),
        ratio: format!("{:.2}× the goal (p50)", p50 / 30.0),
    }
}

/// 1 000 emulated idle workers; then a real worker's job starts beside them.
async fn fleet() -> Vec<Row> {
    let env = TestEnv::with_config("heartbeat_secs = 10\n");
    env.remotes.create("core", "demo", &[]);
    let url = env.redis.url();
    let ns = format!("{}-fleet", env.ns);
    let cfg = Arc::new(Config::default());
    for i in 0..FLEET {
        tokio::spawn(emulated(url.clone(), ns.clone(), cfg.clone(), i));
    }
    settled(&env.redis, &ns, FLEET).await;
    // Every loop past its first round (they start within seconds of each other).
    tokio::time::sleep(cfg.heartbeat_every() * 4).await;
    let (rate, cpu) = measure(&env.redis, 60).await;
    let mut rows = vec![Row {
        what: format!(
            "{FLEET} idle workers (one process emulating them, see tests/src/bin/bench/idle.rs): Redis commands/s, Redis CPU"
        ),
        agentq: format!("{rate:.0} commands/s, {cpu:.1}% of a core"),
        peer: "goal ≤ 2 000; ≈ 35 000-49 000 before issue 34 (one worker measured 42.9/s)".into(),
        ratio: format!("{:.2}× the goal", rate / 2_000.0),
    }];
    // A real worker, idle, beside the fleet: enqueue → taken (preparing).
    let _w = env.worker("real", 1);
    settled(&env.redis, &env.ns, 1).await;
    let mut took = Vec::new();
    for i in 0..JOBS {
        let id = env.enqueue_for_issue(i as u32 + 1, "@agentq-test print hi");
        let rec = env.wait_final(&id, Duration::from_secs(120)).await;
        let history = env.store().await.history(&id).await.unwrap();
        let taken = history
            .iter()
            .find(|h| h.state == "preparing")
            .map(|h| h.at.clone())
            .unwrap_or_default();
        if let Some(ms) = ms_between(&rec.created_at.to_string(), &taken) {
            took.push(ms);
        }
    }
    let (p50, p95) = p50_p95(&mut took);
    rows.push(Row {
        what: format!(
            "enqueue → taken by an idle worker beside the {FLEET}-worker fleet, {} jobs, p50 / p95",
            took.len()
        ),
        agentq: format!("{p50:.0} ms / {p95:.0} ms"),
        peer: "goal ≤ 50 ms".into(),
        ratio: format!("{:.2}× the goal (p50)", p50 / 50.0),
    });
    rows
}

/// The pools an emulated worker serves (five, as a worker with the default
/// agent table and its images does).
const POOLS: [&str; 5] = ["claude", "codex", "gemini", "opencode", "aider"];

/// One emulated idle worker: see the module's documentation.
async fn emulated(url: String, ns: String, cfg: Arc<Config>, i: usize) {
    let store = JobStore::connect(&url, &ns, Duration::from_secs(30))
        .await
        .unwrap();
    let id = format!("fleet-{i}");
    tokio::spawn(apalis(store.clone(), cfg.clone(), id.clone()));
    tokio::spawn(timers(store.clone()));
    let every = cfg.heartbeat_every();
    let mut tick = tokio::time::interval(every);
    let (mut beats, mut last_lost) = (0u64, Instant::now());
    let known: Vec<String> = POOLS.iter().map(|p| p.to_string()).collect();
    loop {
        tick.tick().await;
        let info = WorkerInfo {
            id: id.clone(),
            host: id.clone(),
            pid: i as u32,
            concurrency: 1,
            running: vec![],
            started_at: String::new(),
            heartbeat_at: agentq_shared::store::now_rfc3339(),
            heartbeat_ms: 0,
            stale_after_ms: cfg.worker_stale_after().as_millis() as i64,
            degraded: String::new(),
            workspace_bytes: 0,
            pools: known.clone(),
        };
        let _ = store
            .worker_heartbeat(&info, &known, beats.is_multiple_of(30))
            .await;
        beats += 1;
        // The sweep: its lock each beat; its rounds for the one holding it.
        if matches!(store.try_sweep_lock(&id, every).await, Ok(true)) {
            let _ = store.sweep_orphans().await;
            let _ = store.free_dead_workspaces().await;
            let _ = store.parked_pools().await;
            if let Ok(live) = store.live_workers().await {
                let total = live.iter().map(|w| w.concurrency).sum::<u32>();
                let _ = store.set_window(total.max(1), every * 3).await;
            }
            if last_lost.elapsed() >= cfg.sweep_every() {
                last_lost = Instant::now();
                let _ = store
                    .sweep_lost(cfg.lease_ttl() * 2 + Duration::from_secs(5))
                    .await;
            }
        }
    }
}

/// The waker's listener and timer wait of one emulated worker.
async fn timers(store: JobStore) {
    let keys = store.keys().clone();
    let channels = [
        keys.wake(),
        keys.deliver(),
        keys.timer_wake(),
        keys.affinity_wake("fleet"),
        keys.verify_wake(),
    ];
    let ps = store.subscribe(&channels).await.unwrap();
    let mut messages = ps.into_on_message();
    loop {
        let wait = match store.due_timers().await {
            Ok(t) => t
                .next
                .unwrap_or(Duration::from_secs(30))
                .min(Duration::from_secs(30)),
            Err(_) => Duration::from_secs(1),
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = messages.next() => {}
        }
    }
}

async fn never(_d: Delivery) -> Result<(), BoxDynError> {
    Ok(())
}

/// A real apalis worker as the intake runs it, woken by its safety poll only
/// (an idle fleet is told nothing).
async fn apalis(store: JobStore, cfg: Arc<Config>, id: String) {
    let apalis_cfg = agentq_shared::store::apalis_config(store.keys())
        .heartbeat_interval(cfg.apalis_heartbeat_every())
        .missed_heartbeats(cfg.apalis_missed_heartbeats())
        .batch_size(1);
    let (wake, woken) = futures::channel::mpsc::channel::<()>(0);
    let backend = store
        .queue()
        .with_config(apalis_cfg)
        .poll_with_stream(woken);
    let poll = cfg.poll_every();
    let worker = WorkerBuilder::new(id).backend(backend).build(never);
    let _ = worker
        .run_with_ctx(move |_| {
            let mut wake = wake.clone();
            async move {
                let mut tick = tokio::time::interval(poll);
                loop {
                    tick.tick().await;
                    let _ = wake.try_send(());
                }
            }
        })
        .await;
}
