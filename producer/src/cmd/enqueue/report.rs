//! What a batch prints for its lines (stdout, or stderr for the lines not
//! enqueued) and the counts of its summary.

use std::fmt::Write as _;

use agentq_shared::input::InvalidInput;
use serde_json::json;

use crate::output;

/// Counts for the summary.
#[derive(Default)]
pub struct Tally {
    /// Lines enqueued as new jobs.
    pub new: usize,
    /// Lines whose key an earlier job has.
    pub existing: usize,
    /// Lines refused (not a valid job).
    pub refused: usize,
    /// Lines not enqueued after a Redis failure.
    pub not_enqueued: usize,
    /// Lines that may or may not be in (the write's outcome is not known).
    pub unknown: usize,
}

impl Tally {
    /// `N enqueued, N already enqueued (same key), N refused`.
    pub fn summary(&self) -> String {
        let mut s = format!("{} enqueued", self.new);
        if self.existing > 0 {
            s.push_str(&format!(", {} already enqueued (same key)", self.existing));
        }
        s.push_str(&format!(", {} refused", self.refused));
        s
    }
}

/// Prints a refused line's result.
pub fn print_refused(n: usize, e: &InvalidInput, json: bool, tally: &mut Tally) {
    let mut out = String::new();
    refused_line(&mut out, n, e, json, tally);
    out!("{out}");
}

/// Adds a refused line's result to `out`.
pub fn refused_line(out: &mut String, n: usize, e: &InvalidInput, json: bool, tally: &mut Tally) {
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
pub fn json_line(out: &mut String, value: &serde_json::Value) {
    out.push_str(&value.to_string());
    out.push('\n');
}

/// Prints (stderr, or JSON on stdout) a line not enqueued.
pub fn print_not_enqueued(n: usize, json: bool, tally: &mut Tally) {
    tally.not_enqueued += 1;
    if json {
        output::print_json(&json!({"line": n, "status": "not_enqueued"}));
    } else {
        errln!("line {n}: not enqueued (redis error)");
    }
}

/// Prints (stderr, or JSON on stdout) a line that may or may not be in.
pub fn print_unknown(n: usize, json: bool, tally: &mut Tally) {
    tally.unknown += 1;
    if json {
        output::print_json(&json!({"line": n, "status": "unknown"}));
    } else {
        errln!("line {n}: unknown (the connection to Redis broke during its write)");
    }
}
