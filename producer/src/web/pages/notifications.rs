//! The notifications page: the outbox (waiting, with the last error), the
//! dead letters (with why), the last sent, and the counters (see `agentq
//! notify list`).

use agentq_shared::store::outbox::Notification;
use axum::{
    extract::State,
    http::{HeaderMap, Uri},
    response::{IntoResponse, Response},
};
use maud::{html, Markup};

use crate::web::{
    state::AppState,
    views::{error_page, layout, viewer},
};

/// Most items of each list shown.
const SHOWN: usize = 50;

fn table(
    id: &str,
    items: &[Notification],
    shown: impl Fn(&str) -> String,
    why: fn(&Notification) -> String,
) -> Markup {
    html! {
        table id=(id) {
            thead { tr { th { "event id" } th { "event" } th { "job / pool" } th { "receiver" } th { "tries" } th { "why" } } }
            tbody {
                @for n in items {
                    tr {
                        td.mono { (n.id) }
                        td { (n.event) }
                        td {
                            @if n.job.is_empty() { (n.pool) }
                            @else { a.mono href=(format!("/jobs/{}", n.job)) { (n.job) } }
                        }
                        td { (shown(&n.receiver)) }
                        td { (n.tries) }
                        td { (why(n)) }
                    }
                }
            }
        }
    }
}

/// `GET /notifications`.
pub async fn notifications(State(app): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let v = viewer(&app, &headers, &uri);
    let view = match app.store.outbox(SHOWN).await {
        Ok(o) => o,
        Err(e) => return error_page(&v, &e.into()),
    };
    let shown = |rid: &str| agentq_shared::webhook::receiver_of(&app.cfg.notify, rid);
    let body = html! {
        h1 { "Notifications" }
        p #notify-counts {
            (view.pending.len()) " waiting · " (view.sent_total) " sent · "
            (view.dead_total) " dead-lettered (" (view.overflowed) " for a full outbox)"
        }
        h2 { "Waiting" }
        (table("notify-pending", &view.pending, shown, |n| n.last_error.clone()))
        h2 { "Dead-lettered" }
        (table("notify-dead", &view.dead, shown, |n| n.dead_reason.clone().unwrap_or_default()))
        h2 { "Sent" }
        (table("notify-sent", &view.sent, shown, |n| n.last_status.clone()))
    };
    layout("Notifications", &v, body).into_response()
}
