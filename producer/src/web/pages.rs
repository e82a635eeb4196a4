//! The HTML pages, rendered on the server with maud (which escapes every
//! interpolated string). Forms post to the JSON API with a `next` page to come
//! back to and the session's CSRF token; they appear only to a logged-in
//! operator. `assets/app.js` adds the live parts (log, state, events) and
//! confirmations.

use std::collections::HashMap;

use agentq_shared::{
    readable::{Invalid, Readable},
    record::{JobRecord, RecordView},
    status::{JobState, ALL_STATES},
    store::ops::{cancel_state_refusal, retry_state_refusal, Event},
};
use axum::{
    extract::{Path, Query, State},
    http::{header, HeaderMap, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use maud::{html, Markup, DOCTYPE};

use super::{
    api::{self, Series},
    auth::csrf_of,
    filter_from, local_path,
    sse::hex,
    ApiError, AppState,
};
use crate::cmd::when::short_age;

const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// `GET /assets/app.js`.
pub async fn app_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        APP_JS,
    )
        .into_response()
}

/// `GET /assets/style.css`.
pub async fn style_css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        STYLE_CSS,
    )
        .into_response()
}

/// Who looks: whether the console takes changes, and the CSRF token of a
/// logged-in operator.
struct Viewer {
    read_only: bool,
    csrf: Option<String>,
    /// The page's own path and query: where logging in comes back to.
    here: String,
}

fn viewer(app: &AppState, headers: &HeaderMap, uri: &Uri) -> Viewer {
    Viewer {
        read_only: app.token.is_none(),
        csrf: csrf_of(app, headers),
        here: uri
            .path_and_query()
            .map_or_else(|| "/".to_string(), |p| p.as_str().to_string()),
    }
}

/// The login page's address, coming back to `here` (a local path) after.
fn login_href(here: &str) -> String {
    if here == "/" || !local_path(here) {
        return "/login".into();
    }
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("next", here);
    format!("/login?{}", q.finish())
}

fn layout(title: &str, v: &Viewer, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · agentq" }
                link rel="stylesheet" href="/assets/style.css";
                script src="/assets/app.js" defer {}
            }
            body {
                nav {
                    a.brand href="/" { "agentq" }
                    a href="/" { "Overview" }
                    a href="/jobs" { "Jobs" }
                    a href="/events" { "Events" }
                    span.mode {
                        @if v.read_only {
                            span #mode { "read-only" }
                        } @else if let Some(csrf) = &v.csrf {
                            form.inline method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(csrf);
                                button #logout type="submit" { "Log out" }
                            }
                        } @else {
                            a #login href=(login_href(&v.here)) { "Log in" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A hidden CSRF field and the page to come back to.
fn form_extras(csrf: &str, next: &str) -> Markup {
    html! {
        input type="hidden" name="csrf" value=(csrf);
        input type="hidden" name="next" value=(next);
    }
}

fn error_page(v: &Viewer, e: &ApiError) -> Response {
    (
        e.status,
        layout("Error", v, html! { h1 { "Error" } p.error { (e.message) } }),
    )
        .into_response()
}

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
    let o = match api::overview_data(&app).await {
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
                            td.paused { (p.paused_until.as_deref().unwrap_or("-")) }
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

fn reason_of(j: &JobRecord) -> &str {
    let r = match j.message() {
        "" => &j.input.task,
        m => m,
    };
    r.lines().next().unwrap_or("")
}

fn query_string(q: &HashMap<String, String>, skip: &[&str]) -> String {
    let mut keys: Vec<&String> = q.keys().filter(|k| !skip.contains(&k.as_str())).collect();
    keys.sort();
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for k in keys {
        if !q[k].is_empty() {
            s.append_pair(k, &q[k]);
        }
    }
    s.finish()
}

/// `GET /jobs?state=&agent=&repo=&q=&since=&cursor=&limit=`.
pub async fn jobs(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let v = viewer(&app, &headers, &uri);
    let page = match api::jobs_page(&app, &q).await {
        Ok(p) => p,
        Err(e) => return error_page(&v, &e),
    };
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    let state = get("state");
    let base = query_string(&q, &["cursor"]);
    let body = html! {
        h1 { "Jobs" }
        form.filters method="get" action="/jobs" {
            label { "state " select name="state" {
                option value="" { "any" }
                @for st in ALL_STATES { option value=(st.as_str()) selected[state == st.as_str()] { (st.as_str()) } }
            } }
            label { "agent " input name="agent" value=(get("agent")) placeholder="claude or claude:opus" size="14"; }
            label { "repo " input name="repo" value=(get("repo")) placeholder="org/repo" size="14"; }
            label { "created since " input name="since" value=(get("since")) placeholder="2h" size="5"; }
            label { "search " input name="q" value=(get("q")) placeholder="id, task, issue or PR" size="20"; }
            button type="submit" { "Filter" }
        }
        @if let (Some(_), Some(st)) = (&v.csrf, state.parse::<JobState>().ok()) {
            p.bulk {
                "All " (st.as_str()) " jobs matching this filter: "
                @if st.is_final() {
                    a #bulk-retry href=(format!("/jobs/bulk?op=retry&{base}")) { "retry…" }
                } @else {
                    a #bulk-cancel href=(format!("/jobs/bulk?op=cancel&{base}")) { "cancel…" }
                }
            }
        }
        table #jobs {
            thead { tr { th { "id" } th { "state" } th { "agent" } th { "repo" } th { "age" } th { "att" } th { "task / reason" } } }
            tbody {
                @for j in &page.jobs {
                    tr {
                        td.mono { a href=(format!("/jobs/{}", j.id)) { (j.id) } }
                        td { span.state.(j.state.as_str()) { (j.state.as_str()) } }
                        td { (j.input.agent) }
                        td { (j.input.org) "/" (j.input.repo) }
                        td.num { (short_age(&j.created_at)) }
                        td.num { (j.attempt) }
                        td.reason { (reason_of(j).chars().take(100).collect::<String>()) }
                    }
                }
                @for c in &page.corrupt {
                    tr.corrupt {
                        td.mono { a href=(format!("/jobs/{}", c.id)) { (c.id) } }
                        td { span.state.corrupt { (crate::corrupt::CORRUPT) } }
                        td { "-" } td { "-" } td.num { "-" } td.num { "-" }
                        td.reason { (c.error) }
                    }
                }
            }
        }
        @if page.jobs.is_empty() { p.muted { "No jobs match." } }
        p.pager {
            @if q.get("cursor").is_some_and(|c| !c.is_empty()) {
                a href=(format!("/jobs?{base}")) { "« first page" } " "
            }
            @if let Some(next) = page.next {
                a #next-page href=(format!("/jobs?{}{}cursor={next}", base, if base.is_empty() { "" } else { "&" })) { "next page »" }
            }
        }
    };
    layout("Jobs", &v, body).into_response()
}

/// `GET /jobs/bulk?op=retry|cancel&state=…`: says how many jobs the filter
/// matches and asks to confirm.
pub async fn bulk_confirm(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let v = viewer(&app, &headers, &uri);
    let op = q.get("op").cloned().unwrap_or_default();
    if op != "retry" && op != "cancel" {
        return error_page(&v, &ApiError::bad("op: retry or cancel"));
    }
    let filter = match filter_from(&q) {
        Ok(f) => f,
        Err(e) => return error_page(&v, &e),
    };
    let refusal = match filter.state {
        None => Some("state: a bulk operation needs a state".to_string()),
        Some(st) if op == "retry" => retry_state_refusal(st),
        Some(st) => cancel_state_refusal(st),
    };
    if let Some(why) = refusal {
        return error_page(&v, &ApiError::bad(why));
    }
    let ids = match app.store.ids_matching(&filter).await {
        Ok(ids) => ids,
        Err(e) => return error_page(&v, &e.into()),
    };
    let back = format!("/jobs?{}", query_string(&q, &["op", "cursor"]));
    // The form acts on exactly the jobs counted here.
    let confirm = v.csrf.as_ref().map(|_| app.remember_bulk(&op, ids.clone()));
    let body = html! {
        h1 { "Confirm" }
        p #bulk-count { (op) " " strong { (ids.len()) } " jobs matching " code { (query_string(&q, &["op", "cursor", "limit"])) } "?" }
        @if let Some(csrf) = &v.csrf {
            form method="post" action=(format!("/api/jobs/bulk/{op}")) {
                (form_extras(csrf, &back))
                @if let Some(c) = &confirm { input type="hidden" name="confirm" value=(c); }
                @for k in ["state", "agent", "repo", "q", "since"] {
                    @if let Some(val) = q.get(k) { input type="hidden" name=(k) value=(val); }
                }
                button #bulk-confirm type="submit" { "Yes, " (op) " " (ids.len()) " jobs" }
                " " a href=(back) { "No, go back" }
            }
        } @else {
            p.error { "Log in to do this." }
        }
    };
    layout("Confirm", &v, body).into_response()
}

fn forge_base(app: &AppState) -> Option<url::Url> {
    let mut url = url::Url::parse(app.cfg.forge.url.trim()).ok()?;
    // Never show credentials written into the URL.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    Some(url)
}

/// A link to `base` with `segments` appended to its path, each
/// percent-encoded (a branch named `fix#1?` stays one segment; the `/` of a
/// branch like `agent/one` separate its segments, as the forge reads them).
pub fn forge_link(base: &url::Url, segments: &[&str]) -> String {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty();
        for seg in segments {
            path.extend(seg.split('/'));
        }
    }
    url.to_string()
}

/// Most bytes of output the job page embeds (the last ones).
const PAGE_LOG_BYTES: usize = 256 * 1024;

/// `GET /jobs/{id}`: record, timeline, error, question and answer form,
/// prompt, QA, forge links, output (live while it runs).
pub async fn job(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
) -> Response {
    let v = viewer(&app, &headers, &uri);
    if let Ok(Some(RecordView::Unreadable { id, problem })) = app.store.view(&id).await {
        // The job's problem, shown as such: its record is kept for inspection.
        let body = html! {
            h1 { "Job " span.mono { (id) } }
            p { "State: " span #job-state .state.corrupt { (crate::corrupt::CORRUPT) } }
            table.fields {
                tr { th { "field" } td #corrupt-field { (problem.field) } }
                tr { th { "error" } td.error { (problem.to_string()) } }
            }
        };
        return layout(&format!("Job {id}"), &v, body).into_response();
    }
    let d = match api::job_detail(&app, &id).await {
        Ok(d) => d,
        Err(e) => return error_page(&v, &e),
    };
    let (last, mut bytes) = match app.store.read_log(&id, "0", None).await {
        Ok(lb) => lb,
        Err(e) => return error_page(&v, &e.into()),
    };
    let tail = match app.store.log_tail_info(&id).await {
        Ok(t) => t,
        Err(e) => return error_page(&v, &e.into()),
    };
    // The page embeds at most the last PAGE_LOG_BYTES of the tail (it renders
    // at once whatever the output); the rest is one link away.
    let kept_bytes = bytes.len();
    if kept_bytes > PAGE_LOG_BYTES {
        let mut from = kept_bytes - PAGE_LOG_BYTES;
        while from < kept_bytes && bytes[from] & 0xc0 == 0x80 {
            from += 1;
        }
        bytes.drain(..from);
    }
    let page_cut = kept_bytes - bytes.len();
    let shown_kib = bytes.len() / 1024;
    let r = &d.record;
    let i = &r.input;
    // The output made readable (colours dropped, a progress bar line by
    // line, escapes made visible). A running job's output may end inside a
    // character or an escape sequence: the stream goes on from those bytes
    // (`partial`), so the page never shows one cut.
    let mut shown = Readable::new(Invalid::Replacement);
    let mut log = shown.push(&bytes);
    if r.state.is_final() {
        log.push_str(&shown.finish());
    }
    let partial = shown.pending().to_vec();
    let here = format!("/jobs/{}", r.id);
    let forge = forge_base(&app);
    let link = |f: &url::Url, rest: &[&str]| {
        let mut segs = vec![i.org.as_str(), i.repo.as_str()];
        segs.extend_from_slice(rest);
        forge_link(f, &segs)
    };
    let field = |k: &str, val: String| html! { tr { th { (k) } td { (val) } } };
    let body = html! {
        h1 { "Job " span.mono { (r.id) } }
        p { "State: " span #job-state .state.(r.state.as_str()) { (r.state.as_str()) }
            @if let Some(reason) = r.reason { " (" (reason) ")" } }
        @if let Some(csrf) = &v.csrf {
            div.actions {
                @if r.state.is_final() {
                    form.inline method="post" action=(format!("/api/jobs/{}/retry", r.id)) {
                        (form_extras(csrf, &here))
                        button #retry type="submit" { "Retry" }
                    }
                } @else {
                    form.inline method="post" action=(format!("/api/jobs/{}/cancel", r.id)) data-confirm="Cancel this job?" {
                        (form_extras(csrf, &here))
                        button #cancel type="submit" { "Cancel" }
                    }
                }
            }
        }
        @if !r.question.is_empty() {
            section.question {
                h2 { "Question" }
                pre #question { (r.question) }
                @if let (Some(csrf), true) = (&v.csrf, r.state.is_final()) {
                    form #answer-form method="post" action=(format!("/api/jobs/{}/resume", r.id)) {
                        (form_extras(csrf, &here))
                        label { "Answer" br; textarea #answer name="answer" rows="4" cols="80" required {} }
                        br;
                        label { "Agent this time (optional) " input #answer-agent name="agent" placeholder=(i.agent) size="16"; }
                        " " button #answer-submit type="submit" { "Answer and resume" }
                    }
                }
            }
        }
        @if !r.error.is_empty() {
            section { h2 { "Error" } pre.error #error { (r.error) } }
        }
        @if !r.summary.is_empty() || !r.summary_note.is_empty() {
            section {
                h2 { "Summary" }
                @if !r.summary.is_empty() { pre #summary { (r.summary) } }
                @if !r.summary_note.is_empty() { p.muted #summary-note { (r.summary_note) } }
            }
        }
        section.row {
            table.record {
                (field("task", i.task.clone()))
                (field("agent", i.agent.clone()))
                (field("repo", format!("{}/{}", i.org, i.repo)))
                (field("branch", r.branch.clone()))
                (field("attempt", format!("{} (tries {} of {})", r.attempt, r.tries, r.max_attempts)))
                (field("runs", r.runs.to_string()))
                (field("host", r.host.clone()))
                (field("worker", r.worker.clone()))
                (field("container", r.container.clone()))
                (field("exit code", r.exit_code.map(|c| c.to_string()).unwrap_or_default()))
                (field("created", r.created_at.clone()))
                (field("started", r.started_at.clone()))
                (field("finished", r.finished_at.clone()))
                (field("workspace", r.workspace_dir.clone()))
                @if !r.answer.is_empty() { (field("last answer", r.answer.clone())) }
            }
            div.links {
                h3 { "Forge" }
                ul {
                    @if let Some(f) = &forge {
                        @if i.issue > 0 { li { a href=(link(f, &["issues", &i.issue.to_string()])) { "issue #" (i.issue) } } }
                        @if !r.branch.is_empty() {
                            li { a #branch-link href=(link(f, &["src", "branch", &r.branch])) { "branch " (r.branch) } }
                            li { a #status-link href=(link(f, &["commits", "branch", &r.branch])) { "commit status" } }
                        }
                    } @else {
                        @if i.issue > 0 { li { "issue #" (i.issue) } }
                    }
                    @if r.pr_url.starts_with("https://") || r.pr_url.starts_with("http://") {
                        li { a #pr href=(r.pr_url) { "pull request" } }
                    } @else if !r.pr_url.is_empty() { li { "pull request: " (r.pr_url) } }
                    @else if i.pr > 0 { li { "PR #" (i.pr) } }
                    @if !r.forge_error.is_empty() { li.error { "forge: " (r.forge_error) } }
                }
                @if let Some(qa) = r.qa_status {
                    h3 { "QA: " span #qa-status { (qa) } }
                    p.mono { (r.qa_command) }
                    @if !r.qa_output.is_empty() { pre.qa { (r.qa_output) } }
                }
            }
        }
        section {
            h2 { "History" }
            ol.timeline #history {
                li { time { (r.created_at) } " " span.state.queued { "queued" } span.muted { " enqueued" } }
                @for h in &d.history {
                    li {
                        time { (h.at) } " "
                        span.state.(h.state) { (h.state) }
                        @if !h.from.is_empty() { span.muted { " from " (h.from) } }
                        " attempt " (h.attempt)
                        @if !h.host.is_empty() { " on " (h.host) }
                        @if !h.reason.is_empty() { " (" (h.reason) ")" }
                        @if let Some(e) = h.error.as_deref().filter(|e| !e.is_empty()) { div.error { (e) } }
                        @if let Some(q) = h.question.as_deref().filter(|q| !q.is_empty()) { div { "asked: " (q) } }
                    }
                }
            }
        }
        section {
            h2 { "Agent output" span.muted #log-status { @if !r.state.is_final() { " (live)" } } }
            @if let Some(dropped) = tail.dropped.filter(|n| *n > 0) {
                p.truncated #log-truncated {
                    "Output truncated: showing the last " (tail.kept) " chunks kept in Redis; the "
                    (dropped) " before them are only in the agent's log in the job's workspace"
                    @if !r.host.is_empty() { " on host " (r.host) }
                    " (" code { ".meta/agent-" (i.agent.split(':').next().unwrap_or_default()) ".log" } ")."
                }
            }
            @if let Some(path) = crate::output::host_log(r) {
                p.muted #log-host { "Full log on host " (r.host) " at " code { (path.display()) } }
            }
            @if page_cut > 0 {
                p.truncated #log-page-cut {
                    "Showing the last " (shown_kib) " KiB; the " (page_cut) " bytes before them are in "
                    a href=(format!("/api/jobs/{}/log", r.id)) { "the whole log tail" } "."
                }
            }
            @if r.state.is_final() {
                pre #log { (log) }
            } @else {
                pre #log data-stream=(format!("/api/jobs/{}/log/stream?after={}&view=text&partial={}", r.id, last, hex(&partial))) { (log) }
            }
        }
        @if !r.prompt.is_empty() {
            section { details { summary { "Prompt" } pre #prompt { (r.prompt) } } }
        }
    };
    layout(&format!("Job {}", r.id), &v, body).into_response()
}

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

/// A refused form post, as a page: its status and reason.
pub fn message_page(status: StatusCode, message: &str) -> Markup {
    let v = Viewer {
        read_only: false,
        csrf: None,
        here: "/".into(),
    };
    layout(
        "Refused",
        &v,
        html! {
            h1 { "Not done" }
            p.error #refused { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) ": " (message) }
            p { a href="/" { "Overview" } " · " a href="/jobs" { "Jobs" } }
        },
    )
}

/// The login page; `next`: the page to come back to (a local path, else
/// the overview).
pub fn login_page(read_only: bool, error: Option<&str>, next: Option<&str>) -> Markup {
    let next = next.filter(|n| local_path(n)).unwrap_or("/");
    let v = Viewer {
        read_only,
        csrf: None,
        here: next.to_string(),
    };
    layout(
        "Log in",
        &v,
        html! {
            h1 { "Log in" }
            @if let Some(e) = error { p.error #login-error { (e) } }
            @if !read_only {
                form method="post" action="/login" {
                    input type="hidden" name="next" value=(next);
                    label { "Operator token " input #token type="password" name="token" autocomplete="current-password" required; }
                    " " button #login-submit type="submit" { "Log in" }
                }
            }
        },
    )
}

/// `GET /login?next=`.
pub async fn login(
    State(app): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let ro = app.token.is_none();
    let msg = ro.then_some("This console is read-only (started without --token-env).");
    let next = q.get("next").map(String::as_str);
    (StatusCode::OK, login_page(ro, msg, next)).into_response()
}
