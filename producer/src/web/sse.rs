//! Server-sent events: a job's agent output as it comes (from the log tail in
//! Redis, as `agentq logs -f` reads it) with its state changes, and the event
//! stream (as `agentq events -f`). They poll the store a few times a second
//! without blocking commands, so a stream never holds up the connection the
//! other requests share.

use std::{collections::HashMap, convert::Infallible, time::Duration};

use agentq_shared::status::JobState;
use axum::{
    extract::{Path, Query, State},
    response::sse::{Event, KeepAlive, Sse},
};
use futures::Stream;

use super::{ApiError, AppState};

/// How often a stream looks for news.
const POLL: Duration = Duration::from_millis(250);

struct LogCursor {
    app: AppState,
    id: String,
    last: String,
    state: Option<JobState>,
    ended: bool,
}

/// `GET /api/jobs/{id}/log/stream?after=`: `log` events (output after stream
/// id `after`), a `state` event whenever the job's state changes (the first
/// at once), and `end` once the job is final and its output all sent.
pub async fn log_stream(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    if app.store.get(&id).await?.is_none() {
        return Err(ApiError::not_found(format!("no job with id {id}")));
    }
    let cur = LogCursor {
        app,
        id,
        last: q.get("after").cloned().unwrap_or_else(|| "0".into()),
        state: None,
        ended: false,
    };
    let stream = futures::stream::unfold(cur, |mut c| async move {
        if c.ended {
            return None;
        }
        loop {
            let rec = match c.app.store.get(&c.id).await {
                Ok(Some(r)) => r,
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
                if !bytes.is_empty() {
                    let ev = Event::default()
                        .event("log")
                        .id(c.last.clone())
                        .data(String::from_utf8_lossy(&bytes));
                    return Some((Ok(ev), c));
                }
            }
            if c.state != Some(rec.state) {
                c.state = Some(rec.state);
                return Some((
                    Ok(Event::default().event("state").data(rec.state.as_str())),
                    c,
                ));
            }
            if rec.state.is_final() {
                c.ended = true;
                return Some((
                    Ok(Event::default().event("end").data(rec.state.as_str())),
                    c,
                ));
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
    let start = match q.get("after") {
        Some(a) => a.clone(),
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
