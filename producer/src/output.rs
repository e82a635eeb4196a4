//! Printing records for people and for scripts, and the one place that writes to
//! stdout and stderr: every command prints through [`outln!`], [`out!`] and
//! [`errln!`].
//!
//! A closed stdout (`agentq list --json | head -1`) ends the process the way it
//! ends any Unix tool, by SIGPIPE, quietly; any other write error on stdout is
//! reported on stderr (exit 2). Rust ignores SIGPIPE by default, and agentq keeps
//! it ignored for everything else (a Redis connection closed mid-write must come
//! back as an error the CLI can report, not kill the process).
//!
//! Agents write much of what agentq prints (questions, output, errors, commit
//! subjects): every text goes out with its control characters made visible
//! ([`agentq_shared::text::visible`]: ESC as `\e`, `\r` as `^M`, C1 as
//! `\u{9b}`; newline and tab kept), unless `--raw` ([`set_raw`]). JSON is
//! escaped by JSON, C1 included ([`agentq_shared::text::json_safe`]).

use std::{
    io::Write,
    sync::atomic::{AtomicBool, Ordering},
};

use agentq_shared::{readable::Readable, text};

use agentq_shared::{record::JobRecord, store::StoreError};

/// Like `println!`, through [`write_stdout`].
macro_rules! outln {
    () => { $crate::output::write_stdout(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::output::write_stdout(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Like `print!`, through [`write_stdout`].
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::write_stdout(format_args!($($arg)*)) };
}

/// Like `eprintln!`, through [`write_stderr`].
macro_rules! errln {
    ($($arg:tt)*) => { $crate::output::write_stderr(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Whether control characters go out as they are (`--raw`).
static RAW: AtomicBool = AtomicBool::new(false);

/// `--raw`: print agent text as it is, control bytes included.
pub fn set_raw(raw: bool) {
    RAW.store(raw, Ordering::Relaxed);
}

fn raw() -> bool {
    RAW.load(Ordering::Relaxed)
}

/// `args` as text for a terminal: control characters made visible unless
/// `--raw`.
fn shown(args: std::fmt::Arguments<'_>) -> String {
    let s = args.to_string();
    if raw() {
        s
    } else {
        text::visible(&s)
    }
}

/// Writes to stdout, control characters made visible (unless `--raw`). A
/// closed pipe ends the process by SIGPIPE (no message, no panic); another
/// error is reported on stderr and exits with code 2.
pub fn write_stdout(args: std::fmt::Arguments<'_>) {
    let s = shown(args);
    let mut out = std::io::stdout().lock();
    stdout_result(out.write_all(s.as_bytes()).and_then(|()| out.flush()));
}

/// [`write_stdout`] of a text already made (not formatted into a string of
/// its own first).
pub fn write_stdout_text(s: &str) {
    let shown;
    let s = if raw() {
        s
    } else {
        shown = text::visible(s);
        shown.as_str()
    };
    let mut out = std::io::stdout().lock();
    stdout_result(out.write_all(s.as_bytes()).and_then(|()| out.flush()));
}

/// Writes an agent's output to stdout made readable
/// ([`agentq_shared::readable`]: colours dropped, a progress bar line by line,
/// other escapes made visible, bytes that are not UTF-8 as `\xNN`), or as it
/// is with `--raw`. `shown` keeps its place across chunks; `last`: no chunk
/// follows.
pub fn write_stdout_bytes(shown: &mut Readable, bytes: &[u8], last: bool) {
    let mut out = std::io::stdout().lock();
    if raw() {
        stdout_result(out.write_all(bytes).and_then(|()| out.flush()));
        return;
    }
    let mut s = shown.push(bytes);
    if last {
        s.push_str(&shown.finish());
    }
    stdout_result(out.write_all(s.as_bytes()).and_then(|()| out.flush()));
}

fn stdout_result(r: std::io::Result<()>) {
    if let Err(e) = r {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            // SAFETY: restoring a signal's default action and raising it in our
            // own process; nothing runs after (the default action ends it).
            unsafe {
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
                libc::raise(libc::SIGPIPE);
            }
            std::process::exit(141);
        }
        write_stderr(format_args!("agentq: cannot write to stdout: {e}\n"));
        std::process::exit(2);
    }
}

/// Writes to stderr, control characters made visible (unless `--raw`);
/// errors are ignored (there is nowhere left to report them).
pub fn write_stderr(args: std::fmt::Arguments<'_>) {
    let s = shown(args);
    let _ = std::io::stderr().lock().write_all(s.as_bytes());
}

/// Writes agentq's own text to stderr as it is (the progress line's `\r`).
fn write_stderr_own(args: std::fmt::Arguments<'_>) {
    let _ = std::io::stderr().lock().write_fmt(args);
}

/// A progress reporter for long bulk work: `{verb} {done}/{total}` on one
/// rewritten stderr line, only when stderr is a terminal and the work is large
/// enough to be worth it (scripts and pipes see nothing).
pub fn progress(verb: &'static str) -> impl FnMut(usize, usize) {
    use std::io::IsTerminal;
    let tty = std::io::stderr().is_terminal();
    move |done, total| {
        if tty && total > 500 {
            write_stderr_own(format_args!("\ragentq: {verb} {done}/{total}"));
            if done == total {
                write_stderr_own(format_args!("\n"));
            }
        }
    }
}

/// Most lines of an error message shown by [`brief`].
pub const BRIEF_LINES: usize = 3;
/// Most characters of an error message shown by [`brief`] (with the `…`).
pub const BRIEF_CHARS: usize = 300;

/// `text` cut to at most [`BRIEF_LINES`] lines and [`BRIEF_CHARS`] characters,
/// ending in `…` when something was cut.
pub fn brief(text: &str) -> String {
    let text = text.trim();
    let mut lines = text.lines();
    let mut out = lines
        .by_ref()
        .take(BRIEF_LINES)
        .collect::<Vec<_>>()
        .join("\n");
    let mut cut = lines.next().is_some();
    if out.chars().count() > BRIEF_CHARS {
        out = out.chars().take(BRIEF_CHARS - 1).collect();
        cut = true;
    }
    if cut {
        out.truncate(out.trim_end().len());
        out.push('…');
    }
    out
}

/// A store error for people: names the Redis URL (`redacted_url`, without its
/// password) and is [`brief`].
pub fn store_error(e: &StoreError, redacted_url: &str) -> String {
    brief(&match e {
        // Already names the URL, with a hint.
        StoreError::Unreachable { .. } => e.to_string(),
        StoreError::Redis(r) => format!("Redis at {redacted_url}: {r}"),
        other => format!("Redis at {redacted_url}: {other}"),
    })
}

/// What a waiting job waits for, in words (empty unless it waits).
pub fn waits_for(rec: &JobRecord) -> String {
    use agentq_shared::status::{JobState, WaitReason};
    if rec.state != JobState::Waiting {
        return String::new();
    }
    let pool = rec.input.agent.split(':').next().unwrap_or_default();
    match rec.reason {
        Some(WaitReason::Workspace) if rec.waiting_on.is_empty() => {
            "its workspace (older jobs for it are first in line)".to_string()
        }
        Some(WaitReason::Workspace) => {
            format!("its workspace, held by job {}", rec.waiting_on)
        }
        Some(WaitReason::Affinity) => format!(
            "host {}, which has its workspace (for a few seconds, then any host)",
            rec.waiting_on
        ),
        Some(WaitReason::Slot) => format!("a slot in the {pool} pool"),
        Some(WaitReason::Backoff) => format!("the {pool} pool's pause to end"),
        Some(WaitReason::Quota) => match rec.resume_at {
            Some(at) => format!(
                "the {pool} provider's usage limit to reset: {}",
                agentq_shared::quota::describe_resume(at.to_utc(), chrono::Utc::now())
            ),
            None => format!("the {pool} provider's usage limit to reset"),
        },
        _ => String::new(),
    }
}

/// Where the full agent log of `rec` is on the host that ran it (`None`: it
/// has not run).
pub fn host_log(rec: &JobRecord) -> Option<std::path::PathBuf> {
    if rec.host.is_empty() || rec.workspace_dir.is_empty() {
        return None;
    }
    let ws = agentq_shared::workspace::Workspace {
        dir: rec.workspace_dir.clone().into(),
    };
    Some(ws.agent_log(rec.input.agent.split(':').next().unwrap_or_default()))
}

/// One record, as `key: value` lines, empty fields left out.
pub fn print_record(rec: &JobRecord) {
    let i = &rec.input;
    let mut rows: Vec<(&str, String)> = vec![
        ("id", rec.id.clone()),
        ("state", rec.state.to_string()),
        (
            "reason",
            rec.reason.map(|r| r.to_string()).unwrap_or_default(),
        ),
        ("waits for", waits_for(rec)),
        ("agent", i.agent.clone()),
        ("repo", format!("{}/{}", i.org, i.repo)),
        ("task", first_line(&i.task)),
        (
            "attempt",
            format!("{} of {}", rec.attempt, rec.max_attempts),
        ),
        ("runs", rec.runs.to_string()),
        ("host", rec.host.clone()),
        ("worker", rec.worker.clone()),
        ("container", rec.container.clone()),
        (
            "exit_code",
            rec.exit_code.map(|c| c.to_string()).unwrap_or_default(),
        ),
        ("question", rec.question.clone()),
        ("error", rec.error.clone()),
        ("prompt cut", rec.prompt_cut.clone()),
        ("uncommitted", rec.leftovers.clone()),
        ("summary", continued(&rec.summary)),
        ("summary note", rec.summary_note.clone()),
        ("branch", rec.branch.clone()),
        ("workspace", rec.workspace_dir.clone()),
        ("created_at", rec.created_at.to_string()),
        ("started_at", moment(rec.started_at)),
        ("finished_at", moment(rec.finished_at)),
        ("updated_at", rec.updated_at.to_string()),
    ];
    if i.issue > 0 {
        rows.push(("issue", i.issue.to_string()));
    }
    if i.pr > 0 {
        rows.push(("pr", i.pr.to_string()));
    }
    rows.push(("resume_at", moment(rec.resume_at)));
    for (k, v) in rows {
        if !v.is_empty() {
            outln!("{k:<12} {v}");
        }
    }
}

/// A value of several lines for [`print_record`]: the lines after the first
/// indented under it.
/// A moment as `show` prints it: empty (the row is left out) for none.
fn moment(at: Option<agentq_shared::stamp::Stamp>) -> String {
    at.map(|t| t.to_string()).unwrap_or_default()
}

fn continued(s: &str) -> String {
    s.replace('\n', &format!("\n{:13}", ""))
}

fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("");
    if line.chars().count() > 100 {
        format!("{}…", line.chars().take(100).collect::<String>())
    } else {
        line.to_string()
    }
}

/// One JSON document on one line, C1 and DEL escaped as well (serde_json
/// writes them raw; a terminal takes U+009B for CSI).
pub fn print_json(value: &impl serde::Serialize) {
    outln!(
        "{}",
        text::json_safe(
            &serde_json::to_string(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        )
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentq_shared::{
        input::DispatchInput,
        status::{JobState, WaitReason},
    };

    #[test]
    fn a_waiting_job_says_what_it_waits_for() {
        let input = DispatchInput {
            agent: "claude:opus".into(),
            ..Default::default()
        };
        let mut rec = JobRecord::new(
            "01J".into(),
            input,
            3,
            "2026-01-01T00:00:00Z".parse().unwrap(),
        );
        assert_eq!(waits_for(&rec), "");
        rec.state = JobState::Waiting;
        rec.reason = Some(WaitReason::Workspace);
        rec.waiting_on = "01HOLDER".into();
        assert_eq!(waits_for(&rec), "its workspace, held by job 01HOLDER");
        rec.reason = Some(WaitReason::Slot);
        assert_eq!(waits_for(&rec), "a slot in the claude pool");
        rec.reason = Some(WaitReason::Affinity);
        rec.waiting_on = "host-a".into();
        assert!(waits_for(&rec).starts_with("host host-a"));
        rec.reason = Some(WaitReason::Quota);
        rec.resume_at = Some((chrono::Utc::now() + chrono::Duration::minutes(90)).into());
        let w = waits_for(&rec);
        assert!(
            w.starts_with("the claude provider's usage limit to reset: resumes ")
                && w.contains("(in 1h"),
            "{w}"
        );
    }

    #[test]
    fn brief_keeps_short_text_and_cuts_long_text() {
        assert_eq!(brief("ERR short\n"), "ERR short");
        assert_eq!(brief("a\nb\nc"), "a\nb\nc");
        assert_eq!(brief("a\nb\nc\nd"), "a\nb\nc…");
        let long = "x".repeat(1000);
        let b = brief(&long);
        assert_eq!(b.chars().count(), BRIEF_CHARS);
        assert!(b.ends_with('…'));
        let wide = "é".repeat(400);
        assert_eq!(brief(&wide).chars().count(), BRIEF_CHARS);
    }

    #[test]
    fn store_errors_name_the_url_and_are_brief() {
        let e = StoreError::Redis(redis::RedisError::from((
            redis::ErrorKind::Io,
            "connection lost",
            "line\n".repeat(100),
        )));
        let text = store_error(&e, "redis://***@db:6379");
        assert!(text.starts_with("Redis at redis://***@db:6379: "), "{text}");
        assert!(text.lines().count() <= BRIEF_LINES, "{text}");
        assert!(text.chars().count() <= BRIEF_CHARS, "{text}");
        assert!(text.ends_with('…'), "{text}");
    }
}
