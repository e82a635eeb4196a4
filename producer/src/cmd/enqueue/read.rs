//! Reading a batch: stdin's NDJSON lines, parsed and checked on a thread of
//! their own, handed over a chunk at a time.

use std::io::BufRead;

use agentq_shared::{
    agent::AgentTable,
    input::{DispatchInput, InvalidInput},
    record::JobRecord,
    stamp::Stamp,
};

pub use super::flow_line::{FlowDefaults, FlowLine};
use super::{
    chunk::{Chunk, Line},
    new_id,
};

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

/// Parses and checks one line: a job input, its optional key and its flow
/// fields (`after`, `after_any`, `batch`, `unique`: [`super::flow_line`]).
fn parse_line(
    line: &[u8],
    agents: &AgentTable,
) -> Result<(DispatchInput, Option<String>, FlowLine), InvalidInput> {
    let text = std::str::from_utf8(line).map_err(|e| InvalidInput {
        field: "json".into(),
        message: format!("not valid UTF-8 (at byte {})", e.valid_up_to() + 1),
    })?;
    let (text, flow) = super::flow_line::split(text)?;
    let (input, key) = DispatchInput::from_json_with_key(&text)?;
    let input = input.validated_for(agents)?;
    agentq_shared::flow::check_not_delayed(flow.parents(), &input)?;
    Ok((input, key, flow))
}

/// What the reading thread hands over, in input order.
pub enum Read {
    /// The lines read since the last chunk: a full chunk, or the last one.
    Chunk(Chunk),
    /// The end of the input; with the line after which reading failed, and why.
    End(Option<(usize, std::io::Error)>),
}

/// Reads and checks stdin's lines on a thread of its own, a chunk at a time,
/// so the next chunk is parsed while the last one is written.
pub fn spawn_reader(
    max_attempts: u32,
    agents: AgentTable,
    tx: tokio::sync::mpsc::Sender<Read>,
    defaults: FlowDefaults,
) {
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut lines = Lines {
            input: stdin.lock(),
            buf: Vec::new(),
            n: 0,
        };
        let now = Stamp::now();
        let mut chunk = Chunk::default();
        let end = loop {
            match lines.next_line() {
                Ok(None) => break None,
                Ok(Some((n, line))) => match parse_line(line, &agents) {
                    Ok((input, key, flow)) => {
                        let mut rec = JobRecord::new(new_id(), input, max_attempts, now);
                        rec.key = key.unwrap_or_default();
                        flow.apply(&mut rec, &defaults);
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
