//! `agentq-worker`: pulls dispatch jobs from Redis (apalis + apalis-redis) and runs
//! each through prep → agent container → finish. Run as many as you like, on as
//! many hosts as you like, against one Redis.

mod affinity;
mod breaker;
mod caplog;
mod checkout;
mod context;
mod deadman;
mod docker;
mod fault;
mod forge;
mod fuse_root;
mod git;
mod guard;
mod hold;
mod housekeeping;
mod http;
mod image_usr;
mod import;
mod intake;
mod janitor;
mod job;
mod leftovers;
mod memory;
mod metrics;
mod mirror;
mod notify;
mod orphans;
mod preflight;
mod prep;
mod qa;
mod qa_cache;
mod qa_held;
mod qa_together;
mod quota;
mod redischeck;
mod registry;
mod report;
mod room;
mod run;
mod save;
mod schedules;
mod services;
mod shutdown;
mod space;
mod stages;
mod stop;
mod summary;
mod sweeper;
mod task;
mod verify;
mod waker;
mod writeback;

use std::{path::PathBuf, sync::Arc, time::Duration};

use agentq_shared::{
    config::{Config, ConfigError, ConfigFile},
    store::JobStore,
};
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
    /// Remove every agentq container on this Docker engine (any namespace)
    /// whose run is not held, with its heartbeat directory; print what was
    /// removed, and exit.
    #[arg(long)]
    cleanup: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() {
    memory::limit_arenas();
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot start the async runtime");
    if let Err(e) = runtime.block_on(run(cli)) {
        eprintln!("agentq-worker: {e:#}");
        // A host that cannot run agents (preflight) is a configuration problem,
        // and so is an invalid configuration.
        let code = if e.downcast_ref::<preflight::Unfit>().is_some()
            || e.downcast_ref::<redischeck::Refused>().is_some()
            || e.downcast_ref::<ConfigError>().is_some()
        {
            2
        } else {
            1
        };
        std::process::exit(code);
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
    if cli.cleanup {
        return orphans::cleanup(&cfg).await;
    }
    let host = cli.host.clone().unwrap_or_else(hostname);
    cfg.workspace_root = cfg.workspace_root_of(&host);
    cfg.workspace_root = preflight::make_workspace_root(&cfg.workspace_root)?;

    let store = JobStore::connect_with_ca(
        &cfg.redis_url,
        cfg.redis_ca_file.as_deref(),
        &cfg.namespace,
        Duration::from_secs(5),
    )
    .await?
    .with_event_log(cfg.workspace_root.join("events.jsonl"));
    redischeck::check(&store, &cfg.redis_url).await?;
    // A fresh fleet with `start_paused` runs nothing until `agentq unpause --all`.
    if store.first_start(cfg.start_paused).await? {
        tracing::warn!("start_paused: this is the fleet's first start; every pool is paused until `agentq unpause --all`");
    }
    let docker = docker::connect().await?;
    // Agents run on agentq's network, named in their containers (a create
    // that cannot find it makes it again: see `docker::create`).
    docker::ensure_network(&docker, &cfg.docker.network).await?;
    // A fresh id on every start: a reused id hides a dead worker from orphan
    // recovery (apalis #504).
    let worker_id = format!("{host}-{}-{}", std::process::id(), ulid::Ulid::new());
    // The background services: `main` owns them, stops them and waits for them.
    let services = services::Services::new();
    let shutdown = shutdown::listen(Duration::from_secs(cli.shutdown_timeout), &services)?;
    let forge = forge::client(&cfg)?;
    let served = preflight::check(&cfg, &docker).await?;
    let fuse_rootfs = fuse_root::detect(&docker).await;
    preflight::spawn_forge_check(&cfg, forge.clone(), &services);
    let ctx = Arc::new(WorkerCtx {
        cfg: cfg.clone(),
        store: store.clone(),
        docker,
        worker_id: worker_id.clone(),
        host,
        shutdown: shutdown.stop.clone(),
        running: Default::default(),
        metrics: Default::default(),
        forge,
        served,
        breaker: breaker::Breaker::new(
            cfg.host_failures,
            Duration::from_secs(cfg.host_cooldown_secs),
        ),
        watchdog_dir: deadman::install(&cfg.workspace_root)?,
        fuse_rootfs,
        workspace_bytes: Default::default(),
        window: Default::default(),
        poke: Default::default(),
        room: room::Room::new(cli.concurrency),
        services: services.clone(),
        jobs: Default::default(),
        wakes: Default::default(),
    });

    if let Some(addr) = cli.metrics_addr {
        let bound = http::serve(addr, ctx.clone()).await?;
        tracing::info!(%bound, "serving /metrics and /healthz");
    }
    space::degrade_if_full(&ctx);
    image_usr::prepare(&ctx);
    registry::spawn_registry(ctx.clone(), cli.concurrency);
    let reaped = janitor::reap_own(&ctx).await;
    tracing::info!(worker = %worker_id, concurrency = cli.concurrency, reaped, "agentq-worker started");
    sweeper::sweep_orphans_now(&ctx).await;
    waker::spawn(ctx.clone(), cli.concurrency);
    sweeper::spawn_sweeper(ctx.clone());
    janitor::spawn_janitor(ctx.clone());
    housekeeping::spawn(ctx.clone());
    writeback::spawn(ctx.clone());
    notify::spawn(ctx.clone());
    verify::again::spawn(ctx.clone());
    schedules::spawn(ctx.clone());

    affinity::spawn_affinity_claimer(ctx.clone(), shutdown.drain.clone());
    intake::run(ctx.clone(), shutdown.drain.clone()).await;
    wind_down(&ctx, &services, shutdown.stop.clone()).await;
    tracing::info!("agentq-worker stopped");
    Ok(())
}

/// How long the background services have to stop before they are aborted.
const SERVICES_STOP: Duration = Duration::from_secs(10);

/// After the intake has drained: waits for the jobs, stops the background
/// services and waits for them, then takes this worker out of the registry
/// (after the registry's loop stopped, so no late heartbeat puts it back).
async fn wind_down(
    ctx: &Arc<WorkerCtx>,
    services: &services::Services,
    stop: tokio::sync::watch::Receiver<stop::StopReason>,
) {
    let grace = Duration::from_secs(ctx.cfg.docker.stop_grace_secs);
    if !shutdown::wait_for_jobs(&ctx.jobs, stop, grace).await {
        tracing::error!(
            jobs = ctx.jobs.len(),
            "jobs still running long after their agents were told to stop; leaving them (the sweep puts them back)"
        );
    }
    let stopped = services.stop(SERVICES_STOP).await;
    if stopped.aborted.is_empty() {
        tracing::info!("all background tasks stopped");
    } else {
        tracing::warn!(aborted = ?stopped.aborted, within = ?SERVICES_STOP, "background tasks did not stop in time and were aborted");
    }
    let _ = ctx
        .store
        .worker_gone(&ctx.worker_id, &ctx.cfg.agent_table().names())
        .await;
}
