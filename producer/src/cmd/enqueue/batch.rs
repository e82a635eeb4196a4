//! `agentq enqueue -`: a batch from stdin, written a chunk at a time, one
//! write at a time, with the next chunk's transaction built meanwhile.

use tokio::task::JoinHandle;

use agentq_shared::{
    config::Config,
    store::{
        create::{CreateTx, Places},
        Created, JobStore, StoreError, ENQUEUE_CHUNK,
    },
};

use super::{
    chunk::{Chunk, Line},
    read::{spawn_reader, FlowDefaults, Read},
    report::{print_not_enqueued, print_refused, Tally},
};
use crate::{Failure, EXIT_REDIS};

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

/// Reads, writes and reports a batch; the exit code as `agentq enqueue` has it.
pub async fn run_batch(cfg: &Config, json: bool, defaults: FlowDefaults) -> Result<u8, Failure> {
    let store = crate::connect_for_jobs(cfg).await?;
    // One chunk parsed ahead of the one built ahead of the one being written.
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    // The batches named (`--batch`, "batch"): sealed once all is in (`--batch`
    // even with no line).
    let mut batches = std::collections::BTreeSet::new();
    if !defaults.batch.is_empty() {
        batches.insert(defaults.batch.clone());
    }
    spawn_reader(cfg.max_attempts, cfg.agent_table().clone(), tx, defaults);
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
                if w.result.is_ok() {
                    // The next chunk goes out before this one's lines are
                    // printed, so Redis does not wait on stdout (issue 34);
                    // still one write at a time, and none after a failure.
                    if let Some((chunk, tx)) = ready.take() {
                        writing = Some(spawn_send(&store, chunk, tx));
                    }
                }
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
                batches.extend(
                    chunk
                        .records
                        .iter()
                        .filter(|r| !r.batch.is_empty())
                        .map(|r| r.batch.clone()),
                );
                let orders = places.take(n).expect("reserved above");
                let tx = store.prepare_create(&chunk.records, &orders, ENQUEUE_CHUNK);
                ready = Some((chunk, tx));
            }
            Step::Read(Some(Read::End(e))) => read_error = e,
            Step::Read(None) => reading = false,
        }
    }
    for b in &batches {
        store.seal_batch(b).await?;
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
