//! The events page: the last 100 events, then new ones as they come.

use agentq_shared::store::ops::Event;
use axum::{
    extract::State,
    http::{HeaderMap, Uri},
    response::{IntoResponse, Response},
};
use maud::html;

use crate::web::{
    state::AppState,
    views::{error_page, layout, viewer},
};

fn event_line(e: &Event) -> String {
    let f = |k: &str| e.fields.get(k).map(String::as_str).unwrap_or("");
    match e.fields.get("event").map(String::as_str) {
        Some("enqueued") => format!(
            "enqueued {} jobs ({} .. {})",
            f("jobs"),
            f("first"),
            f("last")
        ),
        Some(ev @ ("cancelled" | "retried")) => format!("{ev} {} jobs", f("jobs")),
        Some("quota") => format!(
            "quota pool={} resumes {}: {}",
            f("pool"),
            f("resume_at"),
            f("line")
        ),
        Some(ev) => format!("{ev} pool={} {}", f("pool"), f("until")),
        None => format!(
            "{} {} → {} attempt {} {}",
            f("job"),
            f("from"),
            f("state"),
            f("attempt"),
            f("host")
        ),
    }
}

/// `GET /events`: the last 100 events, then new ones as they come.
pub async fn events(State(app): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let v = viewer(&app, &headers, &uri);
    let evs = match app.store.recent_events(100).await {
        Ok(e) => e,
        Err(e) => return error_page(&v, &e.into()),
    };
    let last = evs
        .last()
        .map(|e| e.id.clone())
        .unwrap_or_else(|| "0".into());
    let body = html! {
        h1 { "Events" }
        table #events data-stream=(format!("/api/events/stream?after={last}")) {
            thead { tr { th { "at" } th { "event" } } }
            tbody {
                @for e in evs.iter().rev() {
                    tr {
                        td { (e.fields.get("at").map(String::as_str).unwrap_or("")) }
                        td {
                            @if let Some(job) = e.fields.get("job") { a.mono href=(format!("/jobs/{job}")) { (job) } " " }
                            (event_line(e))
                        }
                    }
                }
            }
        }
    };
    layout("Events", &v, body).into_response()
}
