//! `agentq`: enqueue AI coding agent dispatch jobs into Redis and inspect them.
//!
//! Exit codes: 0 success; 1 a job or input was refused, or no such job;
//! 2 Redis unreachable or failing, configuration invalid, or stdout unwritable.
//! All output goes through [`output`] (a closed stdout pipe ends the process
//! quietly, by SIGPIPE).

#![deny(clippy::print_stdout, clippy::print_stderr)]

#[macro_use]
mod output;
mod cmd;
mod corrupt;
mod pools;
mod web;
mod when;

use std::{path::PathBuf, process::ExitCode, sync::OnceLock, time::Duration};

use agentq_shared::{
    config::{Config, ConfigFile},
    store::{redact_url, JobStore, StoreError},
};
use clap::{Parser, Subcommand};

/// agentq: a job queue that dispatches AI coding agents (codex, claude, gemini,
/// coderabbit, local) to repositories on a Forgejo forge.
///
/// Jobs go into Redis; `agentq-worker` processes on any number of hosts run them.
///
/// Exit codes: 0 success; 1 input refused or job not found; 2 Redis unreachable
/// or failing (the message names the URL; for a batch, after saying which lines
/// went in), or configuration invalid; with --wait: 3 failed, 4 blocked,
/// 5 cancelled, 6 timed out. A closed stdout pipe (`agentq list | head -1`) ends
/// agentq quietly, by SIGPIPE, like other Unix tools.
#[derive(Debug, Parser)]
#[command(name = "agentq", version, about, long_about)]
struct Cli {
    /// Redis URL (redis:// or rediss://, with auth if needed).
    #[arg(long, global = true, env = "AGENTQ_REDIS_URL")]
    redis_url: Option<String>,
    /// Configuration file [default: $AGENTQ_CONFIG, else ./agentq.toml if present].
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Print agent text (questions, output, errors, commit subjects) as it is,
    /// control bytes included; by default they are made visible (ESC as `\e`,
    /// a carriage return as `^M`, C1 as `\u{9b}`).
    #[arg(long, global = true)]
    raw: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Enqueue one job from flags, or many from NDJSON on stdin (`agentq enqueue -`).
    Enqueue(Box<cmd::enqueue::Args>),
    /// Show one job's record.
    Status(cmd::status::Args),
    /// Answer a blocked job and run it again in the same workspace.
    Resume(cmd::resume::Args),
    /// Pools (running/limit, waiting, paused) and job counts by state.
    Stats(cmd::stats::Args),
    /// Manage agent pools (pause one, lift a pause).
    Pool(cmd::pool::Args),
    /// Notifications: the outbox (`notify list [--failed]`) and a signed
    /// test event (`notify test URL`).
    Notify(cmd::notify::Args),
    /// List jobs, newest first.
    List(cmd::list::Args),
    /// Everything about one job: record, history, attempts, log tail.
    Inspect(cmd::inspect::Args),
    /// A job's agent output, from any host.
    Logs(cmd::logs::Args),
    /// Run finished jobs again (by id, or all in a state).
    Retry(cmd::retry::Args),
    /// Check and merge a completed job's pull request again.
    Verify(cmd::verify::Args),
    /// Cancel jobs (queued: never run; running: agent stopped).
    Cancel(cmd::cancel::Args),
    /// Delete old records of finished jobs.
    Purge(cmd::purge::Args),
    /// Job and pool events.
    Events(cmd::events::Args),
    /// Live workers.
    Workers(cmd::workers::Args),
    /// The periodic jobs of [[schedule]]: next tick and last tick.
    Schedules(cmd::schedules::Args),
    /// The agent pools as the workers run them (built-in and [agents.NAME]).
    Agents(cmd::agents::Args),
    /// Serve the web console and its JSON API (read-only without --token-env).
    Web(cmd::web::Args),
    /// Check Redis and the configuration: reachable, version, maxmemory-policy,
    /// persistence, namespace, replicas, the config file read (exit 1 on a fail).
    Doctor(cmd::doctor::Args),
    /// Pause pools (or --all) on every host until `agentq unpause`: no new
    /// starts; running jobs go on; survives worker restarts.
    Pause(cmd::fleet::PauseArgs),
    /// Lift `agentq pause` (or `stop --now`, `start_paused`) of pools (or --all).
    Unpause(cmd::fleet::UnpauseArgs),
    /// `stop --now`: stop every running agent of pools (or --all) on every
    /// host, their jobs back to queued first in line, the pools paused.
    Stop(cmd::fleet::StopArgs),
    /// Batches of jobs (`enqueue --batch NAME`): `batch status NAME [--wait]`.
    Batch(cmd::batch::Args),
}

/// A command's failure, with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    /// Process exit code.
    pub code: u8,
    /// What to print on stderr.
    pub message: String,
}

impl Failure {
    /// Exit 1: refused input or missing job.
    pub fn refused(message: impl Into<String>) -> Self {
        Self {
            code: 1,
            message: message.into(),
        }
    }
    /// Exit 2: Redis or configuration.
    pub fn setup(message: impl Into<String>) -> Self {
        Self {
            code: 2,
            message: message.into(),
        }
    }
}

/// Exit code of a Redis failure (unreachable, or a command failed).
pub const EXIT_REDIS: u8 = 2;

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        // A record that does not parse is that job's problem, not Redis's.
        let corrupt = matches!(e, StoreError::Corrupt(..));
        Self {
            code: if corrupt {
                corrupt::EXIT_CORRUPT
            } else {
                EXIT_REDIS
            },
            message: redis_error(&e),
        }
    }
}

/// The configured Redis URL without its password (set by [`load_config`]).
static REDIS_URL: OnceLock<String> = OnceLock::new();

/// A store error as the CLI prints it: naming the Redis URL (without password),
/// at most a few lines (see [`output::brief`]).
pub fn redis_error(e: &StoreError) -> String {
    let url = REDIS_URL
        .get()
        .map(String::as_str)
        .unwrap_or("(not configured)");
    output::store_error(e, url)
}

/// Loads the configuration and applies global flags.
pub fn load_config(
    cli_config: Option<PathBuf>,
    redis_url: Option<String>,
) -> Result<Config, Failure> {
    let mut cfg = Config::load(cli_config).map_err(|e| Failure::setup(e.to_string()))?;
    if let Some(u) = redis_url {
        cfg.redis_url = u;
    }
    let _ = REDIS_URL.set(redact_url(&cfg.redis_url));
    Ok(cfg)
}

/// Reads job `id`, or refuses (exit 1) with a hint when there is no such job.
pub async fn job_or_refuse(
    store: &JobStore,
    id: &str,
) -> Result<agentq_shared::record::JobRecord, Failure> {
    store
        .get(id)
        .await?
        .ok_or_else(|| Failure::refused(format!("no job with id {id} (see `agentq list`)")))
}

/// Connects to the store, failing within a few seconds with exit code 2.
pub async fn connect(cfg: &Config) -> Result<JobStore, Failure> {
    Ok(JobStore::connect_with_ca(
        &cfg.redis_url,
        cfg.redis_ca_file.as_deref(),
        &cfg.namespace,
        Duration::from_secs(3),
    )
    .await?
    .with_min_replicas(cfg.min_replicas()))
}

/// [`connect`] for commands that add jobs or run them again (`enqueue`,
/// `retry`, `resume`): refuses (exit 2, naming the
/// setting and the fix) a Redis whose `maxmemory-policy` evicts keys, before
/// anything is written, and refuses every later command if it starts to
/// (see `agentq_shared::conn`).
pub async fn connect_for_jobs(cfg: &Config) -> Result<JobStore, Failure> {
    let store = connect(cfg).await?;
    let check = store
        .conn()
        .server_check()
        .await
        .map_err(|e| Failure::from(agentq_shared::store::StoreError::from(e)))?;
    if let Some(why) = check.refusal() {
        return Err(Failure {
            code: EXIT_REDIS,
            message: format!(
                "refusing Redis at {}: {why}; nothing written",
                redact_url(&cfg.redis_url)
            ),
        });
    }
    store.conn().refuse_evicting();
    Ok(store)
}

// Two workers: a batch's write runs on one while the next chunk is built.
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version print and succeed; anything else is input
            // refused (exit 1, as the README says), clap's message naming the flag.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    output::set_raw(cli.raw);
    let result = async {
        let file = agentq_shared::config::Config::file(cli.config.clone());
        let cfg = load_config(cli.config, cli.redis_url)?;
        match cli.command {
            Command::Enqueue(a) => cmd::enqueue::run(&cfg, *a).await,
            Command::Status(a) => cmd::status::run(&cfg, a).await,
            Command::Resume(a) => cmd::resume::run(&cfg, a).await,
            Command::Stats(a) => cmd::stats::run(&cfg, a).await,
            Command::Batch(a) => cmd::batch::run(&cfg, a).await,
            Command::Pool(a) => cmd::pool::run(&cfg, a).await,
            Command::Notify(a) => cmd::notify::run(&cfg, a).await,
            Command::List(a) => cmd::list::run(&cfg, a).await,
            Command::Inspect(a) => cmd::inspect::run(&cfg, a).await,
            Command::Logs(a) => cmd::logs::run(&cfg, a).await,
            Command::Retry(a) => cmd::retry::run(&cfg, a).await,
            Command::Verify(a) => cmd::verify::run(&cfg, a).await,
            Command::Cancel(a) => cmd::cancel::run(&cfg, a).await,
            Command::Purge(a) => cmd::purge::run(&cfg, a).await,
            Command::Events(a) => cmd::events::run(&cfg, a).await,
            Command::Workers(a) => cmd::workers::run(&cfg, a).await,
            Command::Schedules(a) => cmd::schedules::run(&cfg, a).await,
            Command::Agents(a) => cmd::agents::run(&cfg, a).await,
            Command::Web(a) => cmd::web::run(&cfg, a).await,
            Command::Doctor(a) => cmd::doctor::run(&cfg, file.as_deref(), a).await,
            Command::Pause(a) => cmd::fleet::pause(&cfg, a).await,
            Command::Unpause(a) => cmd::fleet::unpause(&cfg, a).await,
            Command::Stop(a) => cmd::fleet::stop(&cfg, a).await,
        }
    }
    .await;
    match result {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            errln!("agentq: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}
