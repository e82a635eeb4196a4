//! `agentq enqueue`: one job from flags, or NDJSON from stdin.
//!
//! A batch goes into Redis in chunks of [`ENQUEUE_CHUNK`] jobs, each chunk one
//! transaction (records, lanes and deliveries together). A thread reads and
//! checks chunks while the next chunk's transaction is built and the last one
//! is written, one at a time. A line's
//! result is printed only once its chunk is in, so stdout says exactly which
//! lines went in; after a Redis failure every line that did not go in is named.

use std::{collections::BTreeMap, fmt::Write as _, io::BufRead};

use tokio::task::JoinHandle;

use agentq_shared::{
    agent::AgentTable,
    config::Config,
    input::{check_idempotency_key, DispatchInput, InvalidInput},
    record::JobRecord,
    store::{
        create::{CreateTx, Places},
        now_rfc3339, Created, JobStore, StoreError, ENQUEUE_CHUNK,
    },
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
issue, pr, branch, tag, dry_run) plus an optional idempotency "key". Empty lines
are skipped; a line that is not valid UTF-8 is refused (field json). Jobs go in
in chunks of 500, each one atomic transaction; a line's result is printed once its
chunk is in:
  line N: queued ID                                {"id":ID,"line":N,"status":"queued"}
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
    /// Wait until the job is final and print its record (the prompt, for a dry
    /// run). Exit code 0 completed, 3 failed, 4 blocked, 5 cancelled, 6 timed out.
    #[arg(long, conflicts_with = "stdin")]
    pub wait: bool,
    /// Print JSON: one object per job.
    #[arg(long)]
    pub json: bool,
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))
}

/// Runs the command.
pub async fn run(cfg: &Config, args: Args) -> Result<u8, Failure> {
    if args.stdin.is_some() {
        return run_batch(cfg, args.json).await;
    }
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
    };
    let input = input
        .validated_for(cfg.agent_table())
        .map_err(|e| refused(&e, args.json))?;
    if let Some(key) = &args.key {
        check_idempotency_key(key).map_err(|e| refused(&e, args.json))?;
    }
    let key = args.key.unwrap_or_default();
    let store = crate::connect_for_jobs(cfg).await?;
    let mut rec = JobRecord::new(new_id(), input, cfg.max_attempts, &now_rfc3339());
    rec.key = key;
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
    if args.wait {
        if !args.json {
            match &created {
                Created::New(_) => errln!("agentq: enqueued {id}"),
                Created::Existing(_) => errln!("agentq: {}", exists_note(&id, &rec.key)),
            }
        }
        return crate::cmd::wait::wait_and_print(&store, &id, args.json).await;
    }
    match (&created, args.json) {
        (Created::New(_), true) if rec.key.is_empty() => {
            output::print_json(&json!({"id": id, "status": "queued"}))
        }
        (Created::New(_), true) => {
            output::print_json(&json!({"id": id, "status": "queued", "key": rec.key}))
        }
        (Created::Existing(_), true) => {
            output::print_json(&json!({"id": id, "status": "exists", "key": rec.key}))
        }
        (Created::New(_), false) => outln!("{id}"),
        // The id alone on stdout, as for a new job (scripts capture it); the
        // note on stderr.
        (Created::Existing(_), false) => {
            outln!("{id}");
            errln!("agentq: {}", exists_note(&id, &rec.key));
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

/// Most lines (refused ones included) held back waiting for one chunk's write,
/// so a long run of refused lines does not pile up in memory.
const MAX_PENDING_LINES: usize = 4 * ENQUEUE_CHUNK;

/// One non-empty input line: its number and what became of it so far.
enum Line {
    /// A valid job, `records[i]` of its chunk.
    Job(usize, usize),
    /// Refused, with the reason.
    Refused(usize, InvalidInput),
}

/// Counts for the summary.
#[derive(Default)]
struct Tally {
    new: usize,
    existing: usize,
    refused: usize,
    not_enqueued: usize,
    unknown: usize,
}

impl Tally {
    fn summary(&self) -> String {
        let mut s = format!("{} enqueued", self.new);
        if self.existing > 0 {
            s.push_str(&format!(", {} already enqueued (same key)", self.existing));
        }
        s.push_str(&format!(", {} refused", self.refused));
        s
    }
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

/// The lines read since the last chunk went in.
#[derive(Default)]
struct Chunk {
    lines: Vec<Line>,
    records: Vec<JobRecord>,
}

impl Chunk {
    fn full(&self) -> bool {
        self.records.len() >= ENQUEUE_CHUNK || self.lines.len() >= MAX_PENDING_LINES
    }

    /// Prints every line's result: `created[i]` for `records[i]`, `None` when
    /// it is not known. Stdout gets the chunk's lines in one write.
    fn print(&mut self, created: &[Option<Created>], json: bool, tally: &mut Tally) {
        let mut out = String::new();
        for line in self.lines.drain(..) {
            match line {
                Line::Job(n, i) => {
                    let key = &self.records[i].key;
                    match &created[i] {
                        Some(Created::New(id)) => {
                            tally.new += 1;
                            match (json, key.is_empty()) {
                                (true, true) => json_line(
                                    &mut out,
                                    &json!({"line": n, "id": id, "status": "queued"}),
                                ),
                                (true, false) => json_line(
                                    &mut out,
                                    &json!({"line": n, "id": id, "status": "queued", "key": key}),
                                ),
                                (false, _) => {
                                    let _ = writeln!(out, "line {n}: queued {id}");
                                }
                            }
                        }
                        Some(Created::Existing(id)) => {
                            tally.existing += 1;
                            if json {
                                json_line(
                                    &mut out,
                                    &json!({"line": n, "id": id, "status": "exists", "key": key}),
                                );
                            } else {
                                let _ = writeln!(out, "line {n}: exists {}", exists_note(id, key));
                            }
                        }
                        None => print_unknown(n, json, tally),
                    }
                }
                Line::Refused(n, e) => refused_line(&mut out, n, &e, json, tally),
            }
        }
        out!("{out}");
        self.records.clear();
    }

    /// After a failed write: finds out what it left (see [`settle`]) and prints
    /// the chunk's lines accordingly.
    async fn report_failed(
        &mut self,
        store: &JobStore,
        e: &StoreError,
        json: bool,
        tally: &mut Tally,
    ) {
        let known = match settle_failed(store, e, &self.records).await {
            Settled::Written(created) => return self.print(&created, json, tally),
            Settled::NotWritten => true,
            Settled::Unknown => false,
        };
        for line in self.lines.drain(..) {
            match line {
                Line::Job(n, _) if known => print_not_enqueued(n, json, tally),
                Line::Job(n, _) => print_unknown(n, json, tally),
                Line::Refused(n, e) => print_refused(n, &e, json, tally),
            }
        }
        self.records.clear();
    }
}

fn print_refused(n: usize, e: &InvalidInput, json: bool, tally: &mut Tally) {
    let mut out = String::new();
    refused_line(&mut out, n, e, json, tally);
    out!("{out}");
}

/// Adds a refused line's result to `out`.
fn refused_line(out: &mut String, n: usize, e: &InvalidInput, json: bool, tally: &mut Tally) {
    tally.refused += 1;
    if json {
        json_line(
            out,
            &json!({"line": n, "status": "refused", "error": e.to_string(), "field": e.field}),
        );
    } else {
        let _ = writeln!(out, "line {n}: refused: {e}");
    }
}

/// Adds `value` to `out` as one line of JSON.
fn json_line(out: &mut String, value: &serde_json::Value) {
    out.push_str(&value.to_string());
    out.push('\n');
}

fn print_not_enqueued(n: usize, json: bool, tally: &mut Tally) {
    tally.not_enqueued += 1;
    if json {
        output::print_json(&json!({"line": n, "status": "not_enqueued"}));
    } else {
        errln!("line {n}: not enqueued (redis error)");
    }
}

fn print_unknown(n: usize, json: bool, tally: &mut Tally) {
    tally.unknown += 1;
    if json {
        output::print_json(&json!({"line": n, "status": "unknown"}));
    } else {
        errln!("line {n}: unknown (the connection to Redis broke during its write)");
    }
}

/// Reads NDJSON lines as bytes, split on `\n`.
struct Lines<R> {
    input: R,
    buf: Vec<u8>,
    /// Number of the last line read (1-based; empty lines count).
    n: usize,
}

impl<R: BufRead> Lines<R> {
    /// The next non-empty line (without its `\n` or `\r\n`) and its number;
    /// `None` at the end.
    fn next_line(&mut self) -> std::io::Result<Option<(usize, &[u8])>> {
        loop {
            self.buf.clear();
            if self.input.read_until(b'\n', &mut self.buf)? == 0 {
                return Ok(None);
            }
            self.n += 1;
            if self.buf.ends_with(b"\n") {
                self.buf.pop();
                if self.buf.ends_with(b"\r") {
                    self.buf.pop();
                }
            }
            if !self.buf.iter().all(u8::is_ascii_whitespace) {
                return Ok(Some((self.n, &self.buf)));
            }
        }
    }
}

/// Parses and checks one line: a job input and its optional key.
fn parse_line(
    line: &[u8],
    agents: &AgentTable,
) -> Result<(DispatchInput, Option<String>), InvalidInput> {
    let text = std::str::from_utf8(line).map_err(|e| InvalidInput {
        field: "json".into(),
        message: format!("not valid UTF-8 (at byte {})", e.valid_up_to() + 1),
    })?;
    let (input, key) = DispatchInput::from_json_with_key(text)?;
    Ok((input.validated_for(agents)?, key))
}

/// What the reading thread hands over, in input order.
enum Read {
    /// The lines read since the last chunk: a full chunk, or the last one.
    Chunk(Chunk),
    /// The end of the input; with the line after which reading failed, and why.
    End(Option<(usize, std::io::Error)>),
}

/// Reads and checks stdin's lines on a thread of its own, a chunk at a time,
/// so the next chunk is parsed while the last one is written.
fn spawn_reader(max_attempts: u32, agents: AgentTable, tx: tokio::sync::mpsc::Sender<Read>) {
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut lines = Lines {
            input: stdin.lock(),
            buf: Vec::new(),
            n: 0,
        };
        let now = now_rfc3339();
        let mut chunk = Chunk::default();
        let end = loop {
            match lines.next_line() {
                Ok(None) => break None,
                Ok(Some((n, line))) => match parse_line(line, &agents) {
                    Ok((input, key)) => {
                        let mut rec = JobRecord::new(new_id(), input, max_attempts, &now);
                        rec.key = key.unwrap_or_default();
                        chunk.lines.push(Line::Job(n, chunk.records.len()));
                        chunk.records.push(rec);
                    }
                    Err(e) => chunk.lines.push(Line::Refused(n, e)),
                },
                Err(e) => break Some((lines.n, e)),
            }
            if chunk.full()
                && tx
                    .blocking_send(Read::Chunk(std::mem::take(&mut chunk)))
                    .is_err()
            {
                return;
            }
        };
        if tx.blocking_send(Read::Chunk(chunk)).is_ok() {
            let _ = tx.blocking_send(Read::End(end));
        }
    });
}

/// A chunk's write, done or failed, with the places in line it reserved.
struct Written {
    chunk: Chunk,
    result: Result<Vec<Created>, StoreError>,
    places: Places,
}

impl Written {
    /// Prints the chunk's results if its write went through; else hands back
    /// the chunk and the error.
    fn print(self, json: bool, tally: &mut Tally) -> Result<(), (Chunk, StoreError)> {
        let mut chunk = self.chunk;
        match self.result {
            Ok(created) => {
                chunk.print(
                    &created.into_iter().map(Some).collect::<Vec<_>>(),
                    json,
                    tally,
                );
                Ok(())
            }
            Err(e) => Err((chunk, e)),
        }
    }
}

/// Sends a chunk's transaction on a task of its own (a worker thread of the
/// runtime), so the next chunk is built meanwhile.
fn spawn_send(store: &JobStore, chunk: Chunk, tx: CreateTx) -> JoinHandle<Written> {
    let store = store.clone();
    tokio::spawn(async move {
        let mut places = Places::default();
        let result = store.send_create(tx, &mut places).await;
        Written {
            chunk,
            result,
            places,
        }
    })
}

/// The next event of a batch: a write ended, or the reader handed something over.
enum Step {
    Written(Written),
    Read(Option<Read>),
}

async fn run_batch(cfg: &Config, json: bool) -> Result<u8, Failure> {
    let store = crate::connect_for_jobs(cfg).await?;
    // One chunk parsed ahead of the one built ahead of the one being written.
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    spawn_reader(cfg.max_attempts, cfg.agent_table().clone(), tx);
    let mut tally = Tally::default();
    let mut places = Places::default();
    // One write at a time, so that after a failure exactly the chunks not
    // sent are "not enqueued"; the next chunk's transaction is built while
    // Redis runs it, with places in line reserved by the one before.
    let mut writing: Option<JoinHandle<Written>> = None;
    let mut ready: Option<(Chunk, CreateTx)> = None;
    let mut read_error = None;
    let mut reading = true;
    loop {
        if writing.is_none() {
            if let Some((chunk, tx)) = ready.take() {
                writing = Some(spawn_send(&store, chunk, tx));
            }
        }
        if !reading && writing.is_none() {
            break;
        }
        // A finished write is printed at once, even while stdin is quiet.
        let step = tokio::select! {
            biased;
            w = async { writing.as_mut().expect("checked").await }, if writing.is_some() => {
                Step::Written(w.expect("an enqueue write panicked"))
            }
            // A chunk is read while one is written only when its places are
            // reserved already (a chunk holds at most ENQUEUE_CHUNK jobs).
            read = rx.recv(), if reading && ready.is_none()
                && (writing.is_none() || places.len() >= ENQUEUE_CHUNK) => Step::Read(read),
        };
        match step {
            Step::Written(mut w) => {
                writing = None;
                places.append(std::mem::take(&mut w.places));
                if let Err((chunk, e)) = w.print(json, &mut tally) {
                    let rest = ready.take().map(|(c, _)| c);
                    return Err(redis_failed(&store, chunk, rest, &mut rx, &e, json, tally).await);
                }
            }
            Step::Read(Some(Read::Chunk(chunk))) => {
                let n = chunk.records.len();
                if places.len() < n {
                    // At the start (nothing is being written then: see the
                    // select): afterwards each write reserves a chunk's worth.
                    let ahead = 2 * ENQUEUE_CHUNK.max(n);
                    if let Err(e) = store.reserve_places(ahead, &mut places).await {
                        return Err(
                            redis_failed(&store, chunk, None, &mut rx, &e, json, tally).await
                        );
                    }
                }
                let orders = places.take(n).expect("reserved above");
                let tx = store.prepare_create(&chunk.records, &orders, ENQUEUE_CHUNK);
                ready = Some((chunk, tx));
            }
            Step::Read(Some(Read::End(e))) => read_error = e,
            Step::Read(None) => reading = false,
        }
    }
    if let Some((n, e)) = read_error {
        return Err(Failure::refused(format!(
            "{}; cannot read stdin after line {n}: {e}; lines after it were not read",
            tally.summary(),
        )));
    }
    errln!("agentq: {}", tally.summary());
    Ok(if tally.refused > 0 { 1 } else { 0 })
}

/// A chunk failed: report its lines and every later one, then the summary.
async fn redis_failed(
    store: &JobStore,
    mut chunk: Chunk,
    next: Option<Chunk>,
    rx: &mut tokio::sync::mpsc::Receiver<Read>,
    e: &StoreError,
    json: bool,
    mut tally: Tally,
) -> Failure {
    chunk.report_failed(store, e, json, &mut tally).await;
    // Read the rest, so every line is accounted for; nothing more is written.
    let unsent = |rest: Chunk, tally: &mut Tally| {
        for line in rest.lines {
            match line {
                Line::Job(n, _) => print_not_enqueued(n, json, tally),
                Line::Refused(n, e) => print_refused(n, &e, json, tally),
            }
        }
    };
    if let Some(next) = next {
        unsent(next, &mut tally);
    }
    let mut unread = String::new();
    while let Some(read) = rx.recv().await {
        match read {
            Read::Chunk(rest) => unsent(rest, &mut tally),
            Read::End(Some((n, err))) => {
                unread = format!("; cannot read stdin after line {n}: {err}");
            }
            Read::End(None) => {}
        }
    }
    let mut counts = format!("{}, {} not enqueued", tally.summary(), tally.not_enqueued);
    let mut advice =
        "resubmit the lines not enqueued (with keys, resubmitting everything is safe)".to_string();
    if tally.unknown > 0 {
        counts.push_str(&format!(
            ", {} unknown (the connection broke during their write; they may be in)",
            tally.unknown
        ));
        advice.push_str(
            "; without keys, check the unknown ones with `agentq list` before resubmitting them",
        );
    }
    Failure {
        code: EXIT_REDIS,
        message: format!("{counts}: {}{unread}; {advice}", crate::redis_error(e)),
    }
}
