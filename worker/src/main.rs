//! `agentq-worker`: pulls dispatch jobs from Redis (apalis + apalis-redis) and runs
//! each through prep → agent container → finish. Run as many as you like, on as
//! many hosts as you like, against one Redis.

mod background;
mod breaker;
mod caplog;
mod context;
mod deadman;
mod docker;
mod forge;
mod git;
mod guard;
mod hold;
mod housekeeping;
mod http;
mod import;
mod job;
mod metrics;
mod mirror;
mod prep;
mod qa;
mod report;
mod run;
mod save;
mod stages;
mod stop;
mod waker;

use std::{path::PathBuf, sync::Arc, time::Duration};

use agentq_shared::{
    config::Config,
    store::{apalis_config, Delivery, JobStore},
};
use apalis::prelude::*;
use clap::Parser;

use crate::context::{hostname, WorkerCtx};

/// Runs agentq dispatch jobs: clones the repo, runs the agent in Docker, records the outcome.
#[derive(Debug, Parser)]
#[command(name = "agentq-worker", version, about, long_about = None)]
struct Cli {
    /// Jobs this worker runs at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    concurrency: u32,
    /// Redis URL [default: redis://127.0.0.1:6379, or the config file's].
    #[arg(long, env = "AGENTQ_REDIS_URL")]
    redis_url: Option<String>,
    /// Where workspaces are made [default: ~/.agentq/workspace, or the config file's].
    #[arg(long, env = "AGENTQ_WORKSPACE_ROOT")]
    workspace_root: Option<PathBuf>,
    /// Where repos are cloned from: `{git_base}/{org}/{repo}.git` (URL or directory).
    #[arg(long, env = "AGENTQ_GIT_BASE")]
    git_base: Option<String>,
    /// Configuration file [default: $AGENTQ_CONFIG, else ./agentq.toml if present].
    #[arg(long)]
    config: Option<PathBuf>,
    /// On SIGTERM/SIGINT, how long running jobs may go on before their agents are
    /// stopped and the jobs handed back to the queue, seconds.
    #[arg(long, default_value_t = 60)]
    shutdown_timeout: u64,
    /// Serve Prometheus `/metrics` and `/healthz` on this address (e.g. 127.0.0.1:9187).
    #[arg(long)]
    metrics_addr: Option<std::net::SocketAddr>,
    /// This host's name in records, `agentq workers` and worker ids [default:
    /// the machine's host name].
    #[arg(long, env = "AGENTQ_HOST")]
    host: Option<String>,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

async fn handle(delivery: Delivery, ctx: Data<Arc<WorkerCtx>>) -> Result<(), BoxDynError> {
    job::process((*ctx).clone(), delivery).await;
    Ok(())
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    if let Err(e) = run(cli).await {
        eprintln!("agentq-worker: {e:#}");
        std::process::exit(1);
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,apalis=warn,apalis_core=warn,apalis_redis=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut cfg = Config::load(cli.config)?;
    if let Some(u) = cli.redis_url {
        cfg.redis_url = u;
    }
    if let Some(w) = cli.workspace_root {
        cfg.workspace_root = w;
    }
    if let Some(g) = cli.git_base {
        cfg.git_base = g;
    }
    let host = cli.host.clone().unwrap_or_else(hostname);
    cfg.workspace_root = cfg.workspace_root_of(&host);
    std::fs::create_dir_all(&cfg.workspace_root)?;
    cfg.workspace_root = cfg.workspace_root.canonicalize()?;

    let store = JobStore::connect_with_ca(
        &cfg.redis_url,
        cfg.redis_ca_file.as_deref(),
        &cfg.namespace,
        Duration::from_secs(5),
    )
    .await?
    .with_event_log(cfg.workspace_root.join("events.jsonl"));
    let docker = docker::connect().await?;
    // Agents run on agentq's network, referred to by id from here on.
    cfg.docker.network = docker::ensure_network(&docker, &cfg.docker.network).await?;
    // A fresh id on every start: a reused id hides a dead worker from orphan
    // recovery (apalis #504).
    let worker_id = format!("{host}-{}-{}", std::process::id(), ulid::Ulid::new());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(guard::StopReason::None);
    let ctx = Arc::new(WorkerCtx {
        cfg: cfg.clone(),
        store: store.clone(),
        docker,
        worker_id: worker_id.clone(),
        host,
        shutdown: stop_rx,
        running: Default::default(),
        metrics: Default::default(),
        forge: forge::client(&cfg)?,
        breaker: breaker::Breaker::new(
            cfg.host_failures,
            Duration::from_secs(cfg.host_cooldown_secs),
        ),
        watchdog_dir: deadman::install(&cfg.workspace_root)?,
        workspace_bytes: Default::default(),
        window: Default::default(),
        poke: Default::default(),
    });

    if let Some(addr) = cli.metrics_addr {
        let bound = http::serve(addr, ctx.clone()).await?;
        tracing::info!(%bound, "serving /metrics and /healthz");
    }
    background::spawn_registry(ctx.clone(), cli.concurrency);
    let reaped = background::reap(&ctx).await;
    tracing::info!(worker = %worker_id, concurrency = cli.concurrency, reaped, "agentq-worker started");
    background::sweep_orphans_now(&ctx).await;
    waker::spawn(ctx.clone(), cli.concurrency);
    background::spawn_sweeper(ctx.clone());
    background::spawn_janitor(ctx.clone());
    background::spawn_housekeeping(ctx.clone());

    // Shutdown: the first signal stops new work (draining); after the timeout, or a
    // second signal, running agents are stopped and their jobs handed back.
    let (drain_tx, drain_rx) = tokio::sync::watch::channel(false);
    background::spawn_affinity_claimer(ctx.clone(), cli.concurrency, drain_rx.clone());
    let grace = Duration::from_secs(cli.shutdown_timeout);
    let mut signals = ShutdownSignals::listen()?;
    tokio::spawn(async move {
        signals.next().await;
        tracing::info!(
            ?grace,
            "shutdown requested: taking no new jobs, letting running ones finish"
        );
        let _ = drain_tx.send(true);
        tokio::select! {
            _ = tokio::time::sleep(grace) => {}
            _ = signals.next() => {}
        }
        tracing::warn!(
            "shutdown grace period over: stopping running agents and handing their jobs back"
        );
        let _ = stop_tx.send(guard::StopReason::Shutdown);
    });

    let keys = store.keys().clone();
    let poll = Duration::from_millis(cfg.poll_ms.max(50));
    // apalis-redis ends a worker's stream when Redis fails under it (apalis-redis
    // #76): run generation after generation until shutdown.
    for generation in 1u64.. {
        let apalis_cfg = apalis_config(&keys)
            .heartbeat_interval(cfg.heartbeat_every())
            .missed_heartbeats(cfg.apalis_missed_heartbeats())
            // One delivery per fetch: a busy worker does not sit on jobs an idle one could run.
            .batch_size(1);
        let backend = store.queue().with_config(apalis_cfg);
        let worker = WorkerBuilder::new(format!("{worker_id}-g{generation}"))
            .backend(backend)
            .data(ctx.clone())
            .concurrency(cli.concurrency as usize)
            .build(handle);
        let drain = drain_rx.clone();
        let wctx_ctx = ctx.clone();
        let result = worker
            .run_with_ctx(move |wctx| {
                let mut drain = drain.clone();
                let wctx_ctx = wctx_ctx.clone();
                async move {
                    let mut tick = tokio::time::interval(poll);
                    loop {
                        tokio::select! {
                            _ = async {
                                tokio::select! {
                                    _ = tick.tick() => {}
                                    _ = wctx_ctx.poke.notified() => {}
                                }
                            } => {
                                if wctx.is_stopped() || wctx.is_shutting_down() {
                                    return Ok(());
                                }
                                // A degraded host takes nothing (its breaker is open).
                                if wctx_ctx.breaker.degraded().is_some() {
                                    if wctx.is_running() {
                                        let _ = wctx.pause();
                                    }
                                    continue;
                                }
                                // apalis-redis fetches only when woken; wake it to look
                                // for due and newly pushed jobs.
                                // (A worker paused while degraded is resumed here too.)
                                if wctx.is_paused() || (wctx.is_running() && wctx.pause().is_ok()) {
                                    let _ = wctx.resume();
                                }
                            }
                            _ = drain.wait_for(|d| *d) => {
                                let _ = wctx.stop();
                                return Ok(());
                            }
                        }
                    }
                }
            })
            .await;
        if *drain_rx.borrow() {
            break;
        }
        match result {
            Ok(()) => tracing::warn!(generation, "worker stream ended; starting again"),
            Err(e) => {
                tracing::error!(generation, error = %e, "worker stream failed (Redis gone?); starting again in 1 s")
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let _ = ctx.store.worker_gone(&ctx.worker_id).await;
    tracing::info!("agentq-worker stopped");
    Ok(())
}

/// SIGTERM and SIGINT, listened to from the worker's start, so that a second
/// signal sent right after the first is never missed.
struct ShutdownSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn listen() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The next SIGTERM or SIGINT.
    async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}
