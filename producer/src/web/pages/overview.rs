//! The overview: pools, jobs per state, workers, charts.

use axum::{
    extract::State,
    http::{HeaderMap, Uri},
    response::{IntoResponse, Response},
};
use maud::{html, Markup};

use crate::{
    web::{
        models::{overview_data, Series},
        state::AppState,
        views::{error_page, form_extras, layout, viewer},
    },
    when::short_age,
};

/// A bar chart of `values` (oldest first) as inline SVG.
fn bars(label: &str, values: &[u64], class: &str) -> Markup {
    let (w, h) = (240.0_f64, 60.0_f64);
    let max = values.iter().copied().max().unwrap_or(0).max(1) as f64;
    let bw = w / values.len().max(1) as f64;
    let total: u64 = values.iter().sum();
    html! {
        figure.chart {
            svg width=(w) height=(h + 2.0) viewBox=(format!("0 0 {w} {}", h + 2.0)) role="img" aria-label=(format!("{label}: {total}")) {
                line x1="0" y1=(h) x2=(w) y2=(h) class="axis" {}
                @for (i, v) in values.iter().enumerate() {
                    @let bh = (*v as f64 / max) * (h - 4.0);
                    rect class=(class) x=(format!("{:.1}", i as f64 * bw + 1.0)) y=(format!("{:.1}", h - bh))
                        width=(format!("{:.1}", (bw - 2.0).max(1.0))) height=(format!("{:.1}", bh)) {
                        title { (v) }
                    }
                }
            }
            figcaption { (label) ": " strong { (total) } }
        }
    }
}

fn charts(title: &str, s: &Series) -> Markup {
    html! {
        div.charts {
            h3 { (title) }
            (bars("completed", &s.completed, "ok"))
            (bars("failed or timed out", &s.failed, "bad"))
        }
    }
}

/// `GET /`: pools, jobs per state, workers, charts.
pub async fn overview(State(app): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let v = viewer(&app, &headers, &uri);
    let o = match overview_data(&app).await {
        Ok(o) => o,
        Err(e) => return error_page(&v, &e),
    };
    let body = html! {
        h1 { "Overview" }
        div #overview data-refresh="3000" {
        section #ov-pools data-live {
            h2 { "Pools" }
            table #pools {
                thead { tr { th { "pool" } th { "running / limit" } th { "waiting" } th { "waiting for" } th { "paused until" } th {} } }
                tbody {
                    @for row in &o.pools {
                        @let p = &row.stats;
                        tr data-pool=(p.pool) {
                            td { (p.pool) }
                            td.num { (p.running) " / " @if p.limit == 0 { "∞" } @else { (p.limit) } }
                            td.num { (p.waiting) }
                            td.reasons {
                                @for (i, (reason, n)) in row.waiting_by_reason.iter().enumerate() {
                                    @if i > 0 { " · " }
                                    span.reason data-reason=(reason) { (reason) " " strong { (n) } }
                                }
                            }
                            td.paused data-operator=(p.operator_paused) {
                                @if p.operator_paused {
                                    "by operator (no end)"
                                    @if let Some(until) = &p.paused_until { "; " (until) }
                                } @else {
                                    (p.paused_until.as_deref().unwrap_or("-"))
                                }
                                @if let Some(cause) = p.pause_cause {
                                    " " span.pause-cause data-cause=(cause.as_str()) { "(" (cause.as_str()) ")" }
                                }
                            }
                            td {
                                @if let Some(csrf) = &v.csrf {
                                    @if p.paused_until.is_some() {
                                        form.inline method="post" action=(format!("/api/pools/{}/resume", p.pool)) {
                                            (form_extras(csrf, "/"))
                                            button.resume-pool type="submit" { "Resume" }
                                        }
                                    } @else {
                                        form.inline method="post" action=(format!("/api/pools/{}/pause", p.pool))
                                            data-confirm=(format!("Pause pool {} for an hour on every host?", p.pool)) {
                                            (form_extras(csrf, "/"))
                                            input type="hidden" name="for" value="1h";
                                            button.pause-pool type="submit" { "Pause 1h" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            p #waiting-reasons {
                "Jobs in state waiting, all pools (in lanes, workspace lines, retry delays), by reason: "
                @let nonzero: Vec<_> = o.waiting.iter().filter(|(_, n)| *n > 0).collect();
                @if nonzero.is_empty() { span.muted { "none" } }
                @for (reason, n) in nonzero { span.reason { (reason.as_str()) " " strong { (n) } } " " }
                span.muted { " · deliveries queued for workers: " (o.queue_depth) }
            }
        }
        section #ov-states data-live {
            h2 { "Jobs by state" }
            ul.states #states {
                @for (st, n) in &o.states {
                    li { a href=(format!("/jobs?state={st}")) { span.state.(st.as_str()) { (st.as_str()) } " " strong { (n) } } }
                }
            }
        }
        section.row #ov-charts data-live {
            (charts("Last hour (5-minute bars)", &o.hour))
            (charts("Last day (1-hour bars)", &o.day))
        }
        section #ov-workers data-live {
            h2 { "Workers" }
            @if o.workers.is_empty() {
                p.muted #no-workers { "No live workers." }
            } @else {
                table #workers {
                    thead { tr { th { "host" } th { "id" } th { "heartbeat" } th { "concurrency" } th { "running jobs" } } }
                    tbody {
                        @for w in &o.workers {
                            tr {
                                td { (w.host) }
                                td.mono { (w.id) }
                                td { (short_age(&w.heartbeat_at)) " ago" }
                                td.num { (w.running.len()) " / " (w.concurrency) }
                                td {
                                    @for id in &w.running { a.mono href=(format!("/jobs/{id}")) { (id) } " " }
                                    @if !w.degraded.is_empty() { span.error { "degraded: " (w.degraded) } }
                                }
                            }
                        }
                    }
                }
            }
        }
        }
    };
    layout("Overview", &v, body).into_response()
}
