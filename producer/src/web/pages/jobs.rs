//! The job list with its filter, and the confirmation page of a bulk retry or
//! cancel.

use std::collections::HashMap;

use agentq_shared::{
    record::JobRecord,
    status::{JobState, ALL_STATES},
    store::ops::{cancel_state_refusal, retry_state_refusal},
};
use axum::{
    extract::{Query, State},
    http::{HeaderMap, Uri},
    response::{IntoResponse, Response},
};
use maud::html;

use crate::{
    web::{
        error::ApiError,
        models::jobs_page,
        params::filter_from,
        state::AppState,
        views::{error_page, form_extras, layout, viewer},
    },
    when::age,
};

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
    let page = match jobs_page(&app, &q).await {
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
                        td.num { (age(j.created_at)) }
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
