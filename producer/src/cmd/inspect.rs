//! `agentq inspect ID`: the whole record, its history and the log's last lines.

use agentq_shared::config::Config;
use serde_json::json;

use crate::{output, Failure};

/// Lines of the agent log shown by inspect.
const LOG_LINES: usize = 20;

/// The job and `--json`, as `agentq status` takes them.
pub use super::status::Args;

/// Runs the command.
pub async fn run(cfg: &Config, args: Args) -> Result<u8, Failure> {
    let store = crate::connect(cfg).await?;
    let Some(rec) = crate::corrupt::readable_or_print(&store, &args.id, args.json).await? else {
        return Ok(crate::corrupt::EXIT_CORRUPT);
    };
    let history = store.history(&rec.id).await?;
    let (_, log) = store.read_log(&rec.id, "0", None).await?;
    let log = String::from_utf8_lossy(&log);
    let lines: Vec<&str> = log.lines().collect();
    let tail = lines[lines.len().saturating_sub(LOG_LINES)..].join("\n");
    if args.json {
        output::print_json(&json!({"record": rec, "history": history, "log_tail": tail}));
        return Ok(0);
    }
    output::print_record(&rec);
    outln!(
        "\ninput        {}",
        serde_json::to_string(&rec.input).unwrap_or_default()
    );
    outln!("\nhistory");
    for h in &history {
        let mut extra = String::new();
        if !h.reason.is_empty() {
            extra.push_str(&format!(" ({})", h.reason));
        }
        if let Some(e) = h.error.as_deref().filter(|e| !e.is_empty()) {
            extra.push_str(&format!(" error: {e}"));
        }
        if let Some(q) = h.question.as_deref().filter(|q| !q.is_empty()) {
            extra.push_str(&format!(" question: {q}"));
        }
        let host = if h.host.is_empty() { "-" } else { &h.host };
        outln!(
            "  {}  {:<10} attempt {} on {}{}",
            h.at,
            h.state,
            h.attempt,
            host,
            extra
        );
    }
    if !tail.is_empty() {
        outln!("\nlog (last {LOG_LINES} lines)\n{tail}");
    }
    if let Some(path) = output::host_log(&rec) {
        outln!("\nfull log on host {} at {}", rec.host, path.display());
    }
    Ok(0)
}
