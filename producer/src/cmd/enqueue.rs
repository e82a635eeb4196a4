//! `agentq enqueue`: one job from flags, or NDJSON from stdin.
//!
//! A batch ([`batch`]) goes into Redis in chunks of
//! [`ENQUEUE_CHUNK`](agentq_shared::store::ENQUEUE_CHUNK) jobs, each chunk one
//! transaction (records, lanes and deliveries together). A thread reads and
//! checks chunks while the next chunk's transaction is built and the last one
//! is written, one at a time. A line's
//! result is printed only once its chunk is in, so stdout says exactly which
//! lines went in; after a Redis failure every line that did not go in is named.

mod batch;
mod chunk;
mod flow_line;
mod read;
mod report;

use std::collections::BTreeMap;

use agentq_shared::{
    config::Config,
    flow,
    input::{check_idempotency_key, DispatchInput, InvalidInput},
    record::JobRecord,
    stamp::Stamp,
    store::{Created, JobStore, StoreError},
};
use serde_json::json;

use crate::{output, Failure, EXIT_REDIS};

/// Examples, shown by `-h` and `--help`.
const EXAMPLES: &str = "Examples:
  agentq enqueue --repo go-io --task 'Fix the failing tests' --issue 15 --key go-io#15
  agentq enqueue --repo go-io --task 'Review' --agent codex:review --pr 7 --json
  jq -c '.[] | . + {key: \"\\(.repo)#\\(.issue)\"}' jobs.json | agentq enqueue -";

/// How a batch goes in and what it prints, shown by `--help`.
const BATCH_HELP: &str = r#"Batch (`agentq enqueue -`): NDJSON on stdin, one job per line, with the seed's
field names (repo, org, task, agent, template, plan_template, variables, persona,
issue, pr, branch, tag, dry_run, auto_merge, priority, at, in) plus an optional
idempotency "key". Empty lines
are skipped; a line that is not valid UTF-8 is refused (field json). Jobs go in
in chunks of 500, each one atomic transaction; a line's result is printed once its
chunk is in:
  line N: queued ID                                {"id":ID,"line":N,"status":"queued"}
  line N: scheduled ID (with at or in)             {"id":ID,"line":N,"status":"scheduled"}
  line N: exists ID (already enqueued with key K)  {"id":ID,"key":K,"line":N,"status":"exists"}
  line N: refused: FIELD: why                      {"error":E,"field":F,"line":N,"status":"refused"}
Exit code 0 when every line is in (new or already there), 1 if any was refused.

If Redis fails mid-batch, agentq stops writing and names every line that did
not go in: the failed chunk's lines and all later ones (refused lines are still
shown as refused):
  line N: not enqueued (redis error)   (stderr)    {"line":N,"status":"not_enqueued"}
If the connection broke during a write, agentq asks Redis whether the chunk went
in; if Redis cannot answer, or the chunk reached the primary but not
`redis_min_replicas` replicas, its lines are
  line N: unknown (...)                (stderr)    {"line":N,"status":"unknown"}
then a summary with the error on stderr, exit code 2. Stdout lists as queued
exactly what is in Redis. Resubmit the lines not enqueued; with a key on every
line, resubmitting the whole input is safe (lines already in print exists)."#;

/// Enqueue a dispatch job: from flags, or NDJSON on stdin with `-`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES, after_long_help = format!("{BATCH_HELP}\n\n{EXAMPLES}"))]
pub struct Args {
    /// `-` to read NDJSON jobs from stdin.
    #[arg(value_parser = ["-"])]
    pub stdin: Option<String>,
    /// Idempotency key (e.g. go-io#15; 1-200 characters, no whitespace or control
    /// characters). If a job with this key exists, no job is added: its id is
    /// printed (JSON: "status":"exists") and the exit code is 0. In NDJSON: "key".
    #[arg(long, conflicts_with = "stdin", allow_hyphen_values = true)]
    pub key: Option<String>,
    /// Target repository (e.g. go-io).
    #[arg(long, required_unless_present = "stdin", allow_hyphen_values = true)]
    pub repo: Option<String>,
    /// What the agent should do.
    #[arg(long, required_unless_present = "stdin", allow_hyphen_values = true)]
    pub task: Option<String>,
    /// Forge organisation [default: core].
    #[arg(long, allow_hyphen_values = true)]
    pub org: Option<String>,
    /// codex (default), claude, gemini, coderabbit, local or a pool of
    /// [agents.NAME] (see `agentq agents`), with an optional :model (split at
    /// the first `:`, e.g. local:devstral:24b).
    #[arg(long, allow_hyphen_values = true)]
    pub agent: Option<String>,
    /// Prompt template set: coding (default), conventions or security.
    #[arg(long, allow_hyphen_values = true)]
    pub template: Option<String>,
    /// Forge issue number (workspace task-N).
    #[arg(long)]
    pub issue: Option<u64>,
    /// Pull request number (workspace pr-N).
    #[arg(long)]
    pub pr: Option<u64>,
    /// Branch to work from (workspace named after it).
    #[arg(long, allow_hyphen_values = true)]
    pub branch: Option<String>,
    /// Tag to work from (workspace named after it).
    #[arg(long, allow_hyphen_values = true)]
    pub tag: Option<String>,
    /// Persona slug.
    #[arg(long, allow_hyphen_values = true)]
    pub persona: Option<String>,
    /// Plan template slug.
    #[arg(long, allow_hyphen_values = true)]
    pub plan_template: Option<String>,
    /// Template variable, KEY=VALUE; repeatable.
    #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// Prepare the workspace and prompt only; run no agent.
    #[arg(long)]
    pub dry_run: bool,
    /// Merge the pull request once its checks pass, whatever the pool's
    /// `[verify]` says (see "The verify stage" in README).
    #[arg(long, conflicts_with = "no_auto_merge")]
    pub auto_merge: bool,
    /// Never merge this job's pull request, whatever the pool says.
    #[arg(long)]
    pub no_auto_merge: bool,
    /// Wait until the job is final and print its record (the prompt, for a dry
    /// run). Exit code 0 completed, 3 failed, 4 blocked, 5 cancelled, 6 timed out.
    #[arg(long, conflicts_with = "stdin")]
    pub wait: bool,
    /// Print JSON: one object per job.
    #[arg(long)]
    pub json: bool,
    /// high, normal (default) or low: within its pool a higher priority job
    /// takes the next free slot first (see "Scheduling" in README). In
    /// NDJSON: "priority".
    #[arg(long, conflicts_with = "stdin", allow_hyphen_values = true)]
    pub priority: Option<String>,
    /// Run no earlier than this time (e.g. 2026-12-07T06:00Z): the job is
    /// `scheduled` until then. In NDJSON: "at".
    #[arg(long, conflicts_with_all = ["stdin", "in_"], allow_hyphen_values = true)]
    pub at: Option<String>,
    /// Run no earlier than this long from now (e.g. 2h, 30m, 1h30m). In
    /// NDJSON: "in".
    #[arg(
        long = "in",
        id = "in_",
        conflicts_with = "stdin",
        allow_hyphen_values = true
    )]
    pub in_: Option<String>,
    /// Run only after these jobs (ids, comma-separated or repeated) completed:
    /// the job waits (reason dependency) at no cost; a parent that fails, is
    /// cancelled or times out cancels it. In NDJSON: "after": [ids].
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "ID[,ID...]",
        conflicts_with = "stdin"
    )]
    pub after: Vec<String>,
    /// With --after: run once every parent is final, however it ended.
    /// In NDJSON: "after_any": true.
    #[arg(long, requires = "after")]
    pub after_any: bool,
    /// Put the job (with `-`: every line without its own "batch") in batch
    /// NAME: `agentq batch status NAME`, one batch_done event when all ended.
    #[arg(long, value_name = "NAME", allow_hyphen_values = true)]
    pub batch: Option<String>,
    /// Refuse the job (exit 0, status exists, the existing id) while a job with
    /// the same key is queued, waiting or running; allowed again once it ended.
    /// The key is --key, else the agent, org, repo, issue, pr and task.
    /// In NDJSON: "unique": true.
    #[arg(long)]
    pub unique: bool,
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))
}

/// Runs the command.
pub async fn run(cfg: &Config, args: Args) -> Result<u8, Failure> {
    if let Some(b) = &args.batch {
        flow::check_batch(b).map_err(|e| refused(&e, args.json))?;
    }
    if args.stdin.is_some() {
        let defaults = read::FlowDefaults {
            batch: args.batch.clone().unwrap_or_default(),
            unique: args.unique,
            unique_pools: cfg.unique_pools.clone(),
        };
        return batch::run_batch(cfg, args.json, defaults).await;
    }
    let parents = if args.after.is_empty() {
        Vec::new()
    } else {
        flow::parse_after(args.after.iter().map(String::as_str))
            .map_err(|e| refused(&e, args.json))?
    };
    let input = DispatchInput {
        repo: args.repo.unwrap_or_default(),
        org: args.org.unwrap_or_default(),
        task: args.task.unwrap_or_default(),
        agent: args.agent.unwrap_or_default(),
        template: args.template.unwrap_or_default(),
        plan_template: args.plan_template.unwrap_or_default(),
        variables: args.vars.into_iter().collect::<BTreeMap<_, _>>(),
        persona: args.persona.unwrap_or_default(),
        issue: args.issue.unwrap_or(0),
        pr: args.pr.unwrap_or(0),
        branch: args.branch.unwrap_or_default(),
        tag: args.tag.unwrap_or_default(),
        dry_run: args.dry_run,
        auto_merge: match (args.auto_merge, args.no_auto_merge) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        },
        ..Default::default()
    };
    let input = crate::cmd::enqueue_when::with_schedule(input, &args.priority, &args.at, &args.in_)
        .map_err(|e| refused(&e, args.json))?;
    let input = input
        .validated_for(cfg.agent_table())
        .map_err(|e| refused(&e, args.json))?;
    flow::check_not_delayed(&parents, &input).map_err(|e| refused(&e, args.json))?;
    if let Some(key) = &args.key {
        check_idempotency_key(key).map_err(|e| refused(&e, args.json))?;
    }
    let key = args.key.unwrap_or_default();
    let store = crate::connect_for_jobs(cfg).await?;
    if let Some(missing) = store.first_missing(&parents).await? {
        let e = InvalidInput {
            field: "after".into(),
            message: format!("no job {missing}"),
        };
        return Err(refused(&e, args.json));
    }
    let mut rec = JobRecord::new(new_id(), input, cfg.max_attempts, Stamp::now());
    rec.key = key;
    flow::wait_for(&mut rec, &parents, args.after_any);
    rec.batch = args.batch.clone().unwrap_or_default();
    if args.unique || flow::unique_pool(&rec, &cfg.unique_pools) {
        flow::make_unique(&mut rec);
    }
    let created = match store.create(std::slice::from_ref(&rec)).await {
        Ok(mut c) => c.pop().expect("one answer per record"),
        Err(e) => match settle_failed(&store, &e, std::slice::from_ref(&rec)).await {
            Settled::Written(mut c) if matches!(c.first(), Some(Some(_))) => {
                errln!(
                    "agentq: the job went in, though the answer was lost: {}",
                    crate::redis_error(&e)
                );
                c.swap_remove(0).expect("checked above")
            }
            Settled::NotWritten => {
                return Err(Failure {
                    code: EXIT_REDIS,
                    message: format!("not enqueued: {}", crate::redis_error(&e)),
                })
            }
            _ => {
                return Err(Failure {
                    code: EXIT_REDIS,
                    message: format!(
                        "unknown whether job {} is in to stay (see `agentq status {}`): {}",
                        rec.id,
                        rec.id,
                        crate::redis_error(&e)
                    ),
                })
            }
        },
    };
    let id = created.id().to_string();
    if !rec.batch.is_empty() {
        store.seal_batch(&rec.batch).await?;
    }
    let shown = flow::shown_key(&rec.key).to_string();
    if args.wait {
        if !args.json {
            match &created {
                Created::New(_) => errln!("agentq: enqueued {id}"),
                Created::Existing(_) => errln!("agentq: {}", exists_note(&id, &shown)),
            }
        }
        return crate::cmd::wait::wait_and_print(&store, &id, args.json).await;
    }
    // `queued`, or `scheduled` with a due time (`--at`, `--in`).
    let status = rec.state.as_str();
    match (&created, args.json) {
        (Created::New(_), true) if shown.is_empty() => {
            output::print_json(&json!({"id": id, "status": status}))
        }
        (Created::New(_), true) => {
            output::print_json(&json!({"id": id, "status": status, "key": shown}))
        }
        (Created::Existing(_), true) => {
            output::print_json(&json!({"id": id, "status": "exists", "key": shown}))
        }
        (Created::New(_), false) => outln!("{id}"),
        // The id alone on stdout, as for a new job (scripts capture it); the
        // note on stderr.
        (Created::Existing(_), false) => {
            outln!("{id}");
            errln!("agentq: {}", exists_note(&id, &shown));
        }
    }
    Ok(0)
}

fn exists_note(id: &str, key: &str) -> String {
    format!("{id} (already enqueued with key {key})")
}

fn refused(e: &InvalidInput, json: bool) -> Failure {
    if json {
        output::print_json(&json!({"status": "refused", "error": e.to_string(), "field": e.field}));
    }
    Failure::refused(format!("refused: {e}"))
}

fn new_id() -> String {
    ulid::Ulid::new().to_string()
}

/// What a failed chunk write left in Redis.
enum Settled {
    /// Nothing of the chunk was written.
    NotWritten,
    /// The write went through before the error reached us: each job's result,
    /// `None` where it could not be told.
    Written(Vec<Option<Created>>),
    /// Redis could not be asked; the chunk may or may not be in.
    Unknown,
}

/// Whether Redis itself answered the write with an error (OOM, a script error):
/// then, by [`JobStore::create`]'s contract, nothing of the call was written.
/// Anything else (connection lost, timeout) may have come after Redis ran it.
fn answered_by_redis(e: &StoreError) -> bool {
    matches!(e, StoreError::Redis(r)
        if matches!(r.kind(), redis::ErrorKind::Server(_) | redis::ErrorKind::Extension))
}

/// What a write that failed with `e` left of `records`: nothing when Redis
/// refused it; unknown when it reached the primary but not
/// `redis_min_replicas` replicas (it may yet be lost with the primary);
/// else what Redis says ([`settle`]).
async fn settle_failed(store: &JobStore, e: &StoreError, records: &[JobRecord]) -> Settled {
    if matches!(e, StoreError::NotReplicated { .. }) {
        Settled::Unknown
    } else if answered_by_redis(e) {
        Settled::NotWritten
    } else {
        settle(store, records).await
    }
}

/// After a write whose outcome is not known: asks Redis (once, on a new
/// connection, within a few seconds) whether the chunk's records exist. The
/// write is one Lua call, so either all of its new records are there or none is.
async fn settle(store: &JobStore, records: &[JobRecord]) -> Settled {
    let ask = async {
        let mut conn = store.own_connection().await?;
        let mut pipe = redis::pipe();
        for r in records {
            // Still new first, then its own hash (see `JobStore::read_records`).
            pipe.hexists(store.keys().fresh(), &r.id);
            pipe.exists(store.keys().job(&r.id));
        }
        let found: Vec<bool> = pipe
            .query_async(&mut conn)
            .await
            .map_err(StoreError::from)?;
        // A job is its own hash, or still the packed record enqueue wrote.
        let exists: Vec<bool> = found.chunks(2).map(|p| p[0] || p[1]).collect();
        if !exists.contains(&true) {
            // Not run, or run with every job a duplicate: nothing new either way.
            return Ok(Settled::NotWritten);
        }
        let mut pipe = redis::pipe();
        for r in records {
            pipe.get(store.keys().idempotency(&r.key));
        }
        let owners: Vec<Option<String>> = pipe
            .query_async(&mut conn)
            .await
            .map_err(StoreError::from)?;
        Ok::<_, StoreError>(Settled::Written(
            records
                .iter()
                .zip(exists)
                .zip(owners)
                .map(|((r, there), owner)| match (there, owner) {
                    (true, _) => Some(Created::New(r.id.clone())),
                    (false, Some(other)) if !r.key.is_empty() => Some(Created::Existing(other)),
                    _ => None,
                })
                .collect(),
        ))
    };
    match tokio::time::timeout(std::time::Duration::from_secs(5), ask).await {
        Ok(Ok(settled)) => settled,
        _ => Settled::Unknown,
    }
}
