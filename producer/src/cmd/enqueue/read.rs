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
    match parse_fast(text, agents) {
        Some(read) => Ok(read),
        None => parse_naming_the_field(text, agents),
    }
}

/// [`parse_line`] through a JSON tree, naming the field of any refusal.
fn parse_naming_the_field(
    text: &str,
    agents: &AgentTable,
) -> Result<(DispatchInput, Option<String>, FlowLine), InvalidInput> {
    let (text, flow) = super::flow_line::split(text)?;
    let (input, key) = DispatchInput::from_json_with_key(&text)?;
    let input = input.validated_for(agents)?;
    agentq_shared::flow::check_not_delayed(flow.parents(), &input)?;
    Ok((input, key, flow))
}

/// [`parse_line`] in one pass over the line (strings borrowed from it, no
/// JSON tree: [`read_line`](agentq_shared::input::line::read_line)); `None`
/// for a line it cannot take as it stands, which the field-naming reading
/// then refuses (or takes: a repeated field, the last one winning).
fn parse_fast(
    text: &str,
    agents: &AgentTable,
) -> Option<(DispatchInput, Option<String>, FlowLine)> {
    let f = agentq_shared::input::line::read_line(text)?;
    let flow = FlowLine::from_fields(f.after, f.after_any, f.batch, f.unique).ok()?;
    let input = f.input.validated_for(agents).ok()?;
    agentq_shared::flow::check_not_delayed(flow.parents(), &input).ok()?;
    Some((input, f.key, flow))
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
        let mut chunk = Chunk::with_capacity();
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
                    .blocking_send(Read::Chunk(std::mem::replace(
                        &mut chunk,
                        Chunk::with_capacity(),
                    )))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Both readings of `line`: the fast one (if it took it) and the
    /// field-naming one, as comparable text.
    fn both(line: &str) -> (Option<String>, Result<String, String>) {
        let agents = AgentTable::builtin();
        let show =
            |(i, k, f): (DispatchInput, Option<String>, FlowLine)| format!("{i:?} {k:?} {f:?}");
        let fast = parse_fast(line, &agents).map(show);
        let slow = parse_naming_the_field(line, &agents)
            .map(show)
            .map_err(|e| e.field);
        // What parse_line gives is what the field-naming reading gives.
        let whole = parse_line(line.as_bytes(), &agents)
            .map(show)
            .map_err(|e| e.field);
        assert_eq!(whole, slow, "{line}");
        (fast, slow)
    }

    #[test]
    fn the_fast_reading_gives_what_the_field_naming_one_gives() {
        let a = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
        for line in [
            r#"{"repo":"demo","task":"bench","issue":7,"agent":"claude"}"#.to_string(),
            r#"{"repo":"r","task":"a \"q\" \\ \u00e9\n\/","issue":1,"key":"k#1","variables":{"x":"\"y\""}}"#.to_string(),
            format!(r#"{{"repo":"r","task":"t","issue":1,"after":["{a}"],"after_any":true,"batch":"b1","unique":true}}"#),
            r#"{"repo":"r","task":"t","branch":"main","priority":"low","at":"2026-12-07T06:00Z","dry_run":true}"#.to_string(),
        ] {
            let (fast, slow) = both(&line);
            assert_eq!(fast.as_ref(), Some(slow.as_ref().unwrap()), "{line}");
        }
        // Refused lines: the fast reading gives up, the field is named as before.
        for (line, field) in [
            (r#"{"repo":"r","task":"t"}"#.to_string(), "issue"),
            (
                r#"{"repo":"r","task":"t","issue":"1"}"#.to_string(),
                "issue",
            ),
            (
                r#"{"repo":"r","task":"t","issue":1,"agent":"gpt"}"#.to_string(),
                "agent",
            ),
            (
                r#"{"repo":"r","task":"t","issue":1,"after":["x"]}"#.to_string(),
                "after",
            ),
            (
                r#"{"repo":"r","task":"t","issue":1,"after_any":true}"#.to_string(),
                "after_any",
            ),
            (
                r#"{"repo":"r","task":"t","issue":1,"batch":"a b"}"#.to_string(),
                "batch",
            ),
            (
                r#"{"repo":"r","task":"t","issue":1,"key":"a b"}"#.to_string(),
                "key",
            ),
            (
                format!(r#"{{"repo":"r","task":"t","issue":1,"after":["{a}"],"in":"2h"}}"#),
                "after",
            ),
            (
                r#"{"repo":"r","task":"t","issue":1,"bogus":2}"#.to_string(),
                "bogus",
            ),
        ] {
            let (fast, slow) = both(&line);
            assert_eq!(fast, None, "{line}");
            assert_eq!(slow.unwrap_err(), field, "{line}");
        }
        // A repeated field: the fast reading gives up, the other takes the last.
        let (fast, slow) = both(r#"{"repo":"a","repo":"r","task":"t","issue":1}"#);
        assert_eq!(fast, None);
        assert!(slow.unwrap().contains(r#"repo: "r""#));
    }
}
