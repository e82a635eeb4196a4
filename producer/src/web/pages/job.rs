//! A job's page: record, timeline, error, question and answer form, prompt,
//! QA, forge links, output (live while it runs).

use agentq_shared::{
    readable::{Invalid, Readable},
    record::RecordView,
};
use axum::{
    extract::{Path, State},
    http::{HeaderMap, Uri},
    response::{IntoResponse, Response},
};
use maud::html;

use crate::web::{
    models::job_detail,
    sse::hex,
    state::AppState,
    views::{error_page, form_extras, layout, viewer},
};

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
    let d = match job_detail(&app, &id).await {
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
                (field("created", r.created_at.to_string()))
                (field("started", r.started_at.map(|t| t.to_string()).unwrap_or_default()))
                (field("finished", r.finished_at.map(|t| t.to_string()).unwrap_or_default()))
                (field("workspace", r.workspace_dir.clone()))
                @if !r.answer.is_empty() { (field("last answer", r.answer.clone())) }
                (field("priority", i.priority.as_str().to_string()))
                @if let Some(at) = i.at { (field("due", at.to_string())) }
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
