//! A chunk of a batch: its lines and the records of its valid ones, and how
//! its lines' results are printed once its write is done or failed.

use std::fmt::Write as _;

use agentq_shared::{
    input::InvalidInput,
    record::JobRecord,
    store::{Created, JobStore, StoreError, ENQUEUE_CHUNK},
};
use serde_json::json;

use super::{
    exists_note,
    report::{json_line, print_not_enqueued, print_refused, print_unknown, refused_line, Tally},
    settle_failed, Settled,
};

/// Most lines (refused ones included) held back waiting for one chunk's write,
/// so a long run of refused lines does not pile up in memory.
const MAX_PENDING_LINES: usize = 4 * ENQUEUE_CHUNK;

/// One non-empty input line: its number and what became of it so far.
pub enum Line {
    /// A valid job, `records[i]` of its chunk.
    Job(usize, usize),
    /// Refused, with the reason.
    Refused(usize, InvalidInput),
}

/// The lines read since the last chunk went in.
#[derive(Default)]
pub struct Chunk {
    /// Its lines, in input order.
    pub lines: Vec<Line>,
    /// The jobs of its valid lines.
    pub records: Vec<JobRecord>,
}

impl Chunk {
    /// An empty chunk with room for a full one's jobs (a record is large:
    /// no moving them as the list grows).
    pub fn with_capacity() -> Self {
        Self {
            lines: Vec::with_capacity(ENQUEUE_CHUNK),
            records: Vec::with_capacity(ENQUEUE_CHUNK),
        }
    }

    /// Whether it is to be written now: a chunk's worth of jobs, or of lines.
    pub fn full(&self) -> bool {
        self.records.len() >= ENQUEUE_CHUNK || self.lines.len() >= MAX_PENDING_LINES
    }

    /// Prints every line's result: `created[i]` for `records[i]`, `None` when
    /// it is not known. Stdout gets the chunk's lines in one write.
    pub fn print(&mut self, created: &[Option<Created>], json: bool, tally: &mut Tally) {
        let mut out = String::new();
        for line in self.lines.drain(..) {
            match line {
                Line::Job(n, i) => {
                    let key = agentq_shared::flow::shown_key(&self.records[i].key);
                    // `queued`, or `scheduled` with a due time (`at`, `in`).
                    let status = self.records[i].state.as_str();
                    match &created[i] {
                        Some(Created::New(id)) => {
                            tally.new += 1;
                            match (json, key.is_empty()) {
                                (true, true) => json_line(
                                    &mut out,
                                    &json!({"line": n, "id": id, "status": status}),
                                ),
                                (true, false) => json_line(
                                    &mut out,
                                    &json!({"line": n, "id": id, "status": status, "key": key}),
                                ),
                                (false, _) => {
                                    // `line {n}: queued {id}`, pieces pushed
                                    // (the line a batch prints most: issue 34).
                                    out.push_str("line ");
                                    let _ = write!(out, "{n}");
                                    out.push_str(": ");
                                    out.push_str(status);
                                    out.push(' ');
                                    out.push_str(id);
                                    out.push('\n');
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
        crate::output::write_stdout_text(&out);
        self.records.clear();
    }

    /// After a failed write: finds out what it left (see
    /// [`settle`](super::settle)) and prints the chunk's lines accordingly.
    pub async fn report_failed(
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
