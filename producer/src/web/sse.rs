//! Server-sent events: a job's agent output as it comes (from the log tail in
//! Redis, as `agentq logs -f` reads it) with its state changes, and the event
//! stream (as `agentq events -f`). They poll the store a few times a second
//! without blocking commands, so a stream never holds up the connection the
//! other requests share.

use std::{collections::HashMap, convert::Infallible, time::Duration};

use agentq_shared::{
    readable::{Invalid, Readable, PENDING_MAX},
    status::JobState,
};
use axum::{
    extract::{Path, Query, State},
    response::sse::{Event, KeepAlive, Sse},
};
use futures::Stream;

use super::{error::ApiError, params::stream_id_param, state::AppState};

/// How often a stream looks for news.
const POLL: Duration = Duration::from_millis(250);

struct LogCursor {
    app: AppState,
    id: String,
    last: String,
    /// The start of a UTF-8 character whose other bytes have not come yet.
    partial: Vec<u8>,
    /// `view=text`: the output made readable, as the job page shows it.
    shown: Option<Readable>,
    state: Option<JobState>,
    ended: bool,
}

/// Decodes `buf` as UTF-8 up to its last whole character and leaves in `buf`
/// only the start of a character cut off at its end (at most 3 bytes), to be
/// completed by the next chunk of output. Bytes that can never be UTF-8
/// become U+FFFD, as [`String::from_utf8_lossy`] makes them.
pub fn take_utf8(buf: &mut Vec<u8>) -> String {
    let mut out = String::new();
    let mut rest: &[u8] = buf;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                rest = &[];
                break;
            }
            Err(e) => {
                let (ok, bad) = rest.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(ok).unwrap_or_default());
                match e.error_len() {
                    Some(n) => {
                        out.push(char::REPLACEMENT_CHARACTER);
                        rest = &bad[n..];
                    }
                    None => {
                        rest = bad;
                        break;
                    }
                }
            }
        }
    }
    *buf = rest.to_vec();
    out
}

/// Bytes written as hex (the `partial` of a job page's stream URL).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `partial` query parameter: the hex bytes (up to 3) of a character the
/// caller got only the start of; none when absent.
///
/// # Errors
/// A 400 for anything but up to 3 bytes as hex.
pub fn partial_param(q: &HashMap<String, String>) -> Result<Vec<u8>, ApiError> {
    partial_up_to(q, 3)
}

/// [`partial_param`] with up to `max` bytes.
fn partial_up_to(q: &HashMap<String, String>, max: usize) -> Result<Vec<u8>, ApiError> {
    match q.get("partial").filter(|p| !p.is_empty()) {
        None => Ok(Vec::new()),
        Some(p) => {
            unhex(p, max).ok_or_else(|| ApiError::bad(format!("partial: up to {max} bytes as hex")))
        }
    }
}

/// The `view` query parameter of a log stream: `bytes` (the default: the
/// output as it is) or `text` (made readable, as the job page shows it).
fn view_param(q: &HashMap<String, String>) -> Result<bool, ApiError> {
    match q.get("view").map(String::as_str) {
        None | Some("bytes") => Ok(false),
        Some("text") => Ok(true),
        Some(_) => Err(ApiError::bad("view: `bytes` or `text`")),
    }
}

fn unhex(s: &str, max: usize) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 2 * max {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A `log` event: the text as a JSON string, so that every byte of it (a
/// newline at its end, a carriage return) reaches the page as it was; SSE
/// itself would turn `\r` and `\r\n` into newlines.
fn log_event(last: &str, text: &str) -> Event {
    Event::default()
        .event("log")
        .id(last)
        .data(serde_json::Value::from(text).to_string())
}

/// `GET /api/jobs/{id}/log/stream?after=&view=&partial=`: `log` events
/// (output after stream id `after`, each a JSON string), a `state` event
/// whenever the job's state changes (the first at once), and `end` once the
/// job is final and its output all sent. `view=text`: the output made
/// readable ([`agentq_shared::readable`], as the job page shows it) instead
/// of as it is. `partial`: the hex bytes the caller got and has not shown
/// yet (the start of a character, or with `view=text` up to 32 bytes of an
/// escape sequence or a carriage return): output goes on from them, so
/// nothing is ever cut in two.
pub async fn log_stream(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    if app.store.state_of(&id).await?.is_none() {
        return Err(ApiError::not_found(format!("no job with id {id}")));
    }
    let text = view_param(&q)?;
    let last = stream_id_param(&q, "after")?.unwrap_or_else(|| "0".into());
    let (partial, shown) = if text {
        let pending = partial_up_to(&q, PENDING_MAX)?;
        (
            Vec::new(),
            Some(Readable::resume(Invalid::Replacement, pending)),
        )
    } else {
        (partial_up_to(&q, PENDING_MAX)?, None)
    };
    let cur = LogCursor {
        app,
        id,
        last,
        partial,
        shown,
        state: None,
        ended: false,
    };
    let stream = futures::stream::unfold(cur, |mut c| async move {
        if c.ended {
            return None;
        }
        loop {
            // Only the state, not the record (which carries the prompt), on
            // every poll of every open job page.
            let state = match c.app.store.state_of(&c.id).await {
                Ok(Some(s)) => s,
                Ok(None) => {
                    c.ended = true;
                    return Some((Ok(Event::default().event("end").data("gone")), c));
                }
                Err(_) => {
                    tokio::time::sleep(POLL).await;
                    continue;
                }
            };
            // Output first, so that `end` comes after the last of it.
            if let Ok((next, bytes)) = c.app.store.read_log(&c.id, &c.last, None).await {
                c.last = next;
                let text = match c.shown.as_mut() {
                    Some(shown) => shown.push(&bytes),
                    None => {
                        c.partial.extend_from_slice(&bytes);
                        take_utf8(&mut c.partial)
                    }
                };
                if !text.is_empty() {
                    return Some((Ok(log_event(&c.last, &text)), c));
                }
            }
            if c.state != Some(state) {
                c.state = Some(state);
                return Some((Ok(Event::default().event("state").data(state.as_str())), c));
            }
            if state.is_final() {
                let rest = c.shown.as_mut().map(Readable::finish).unwrap_or_default();
                if !rest.is_empty() {
                    return Some((Ok(log_event(&c.last, &rest)), c));
                }
                if !c.partial.is_empty() {
                    // The output ended inside a character: what there is of it.
                    let text =
                        String::from_utf8_lossy(&std::mem::take(&mut c.partial)).into_owned();
                    return Some((Ok(log_event(&c.last, &text)), c));
                }
                c.ended = true;
                return Some((Ok(Event::default().event("end").data(state.as_str())), c));
            }
            tokio::time::sleep(POLL).await;
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// `GET /api/events/stream?after=`: one `event` per stream entry after `after`
/// (default: only new ones), its data the entry as JSON (`{"id", "fields"}`).
pub async fn events_stream(
    State(app): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let start = match stream_id_param(&q, "after")? {
        Some(a) => a,
        None => app
            .store
            .recent_events(1)
            .await?
            .pop()
            .map(|e| e.id)
            .unwrap_or_else(|| "0".into()),
    };
    let stream = futures::stream::unfold(
        (app, start, Vec::<Event>::new()),
        |(app, mut last, mut pending)| async move {
            loop {
                if !pending.is_empty() {
                    let ev = pending.remove(0);
                    return Some((Ok(ev), (app, last, pending)));
                }
                if let Ok(evs) = app.store.events(&last, 100, None).await {
                    for e in evs {
                        last = e.id.clone();
                        let data = serde_json::json!({"id": e.id, "fields": e.fields});
                        pending.push(
                            Event::default()
                                .event("event")
                                .id(e.id)
                                .data(data.to_string()),
                        );
                    }
                }
                if pending.is_empty() {
                    tokio::time::sleep(POLL).await;
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_cut_between_chunks_are_decoded_whole() {
        let text = "é€😀 ok\n";
        let bytes = text.as_bytes();
        // Every way of cutting the output in two gives the text back.
        for cut in 0..=bytes.len() {
            let mut buf = bytes[..cut].to_vec();
            let mut out = take_utf8(&mut buf);
            assert!(buf.len() <= 3, "{cut}");
            buf.extend_from_slice(&bytes[cut..]);
            out.push_str(&take_utf8(&mut buf));
            assert!(buf.is_empty());
            assert_eq!(out, text, "cut at {cut}");
        }
        // Bytes that are no UTF-8 become U+FFFD as in from_utf8_lossy.
        let mut bad = b"a\xffb\xe2\x82".to_vec();
        assert_eq!(take_utf8(&mut bad), "a\u{FFFD}b");
        assert_eq!(bad, b"\xe2\x82");
        assert_eq!(unhex(&hex(&bad), 3).unwrap(), bad);
        assert!(
            unhex("e28", 3).is_none() && unhex("e282ac00", 3).is_none() && unhex("zz", 3).is_none()
        );
        assert_eq!(unhex("e282ac00", 4).unwrap(), b"\xe2\x82\xac\x00");
    }
}
