//! The JSON API under `/api/` (documented in `producer/openapi.yaml`). Each
//! handler calls the store function its CLI verb calls.

use std::{collections::HashMap, time::Duration};

use agentq_shared::{
    status::JobState,
    store::bulk::BulkResult,
    store::limits::check_pool_name,
    store::ops::{cancel_state_refusal, retry_state_refusal, Event, JobPage, ResumeError},
};
use axum::{
    extract::{Path, Query, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::json;

use super::{
    auth::Authorized,
    error::ApiError,
    models::{job_detail, jobs_page, overview_data, JobDetail, Overview},
    params::{done, filter_from, number_param, only_fields, stream_id_param},
    sse,
    state::AppState,
};

/// The spec, served as is.
pub const OPENAPI: &str = include_str!("../../openapi.yaml");

/// The built-in pools as `producer/openapi.yaml` lists them (a pool name's
/// enum) ...
const SPEC_POOLS: &str = "enum: [codex, claude, gemini, coderabbit, local]";
/// ... and as it matches them in an agent name (resume's `agent`).
const SPEC_AGENT: &str = "^((codex|claude|gemini|coderabbit|local)(:";

/// The spec as this server runs it: the pools of the configured agent table
/// (`[agents.NAME]` adds pools) where the file lists the built-in ones.
pub fn served_spec(table: &agentq_shared::agent::AgentTable) -> String {
    let names = table.names();
    OPENAPI
        .replace(SPEC_POOLS, &format!("enum: [{}]", names.join(", ")))
        .replace(SPEC_AGENT, &format!("^(({})(:", names.join("|")))
}

/// `GET /api/openapi.yaml`: [`served_spec`].
pub async fn openapi(State(app): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/yaml")],
        served_spec(app.cfg.agent_table()),
    )
        .into_response()
}

/// `GET /api/overview`.
pub async fn overview(State(app): State<AppState>) -> Result<Json<Overview>, ApiError> {
    Ok(Json(overview_data(&app).await?))
}

/// `GET /api/jobs?state=&agent=&repo=&q=&since=&cursor=&limit=`.
pub async fn jobs(
    State(app): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<JobPage>, ApiError> {
    Ok(Json(jobs_page(&app, &q).await?))
}

/// `GET /api/jobs/{id}`.
pub async fn job(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobDetail>, ApiError> {
    Ok(Json(job_detail(&app, &id).await?))
}

/// `GET /api/jobs/{id}/log?after=&partial=`: the log tail kept in Redis
/// (after stream id `after`, default all), the id to read on from, and how
/// many chunks the tail keeps and has dropped from its start (`dropped` > 0:
/// `data` read from the start is not the whole output). Decoded across reads:
/// a character cut at the end comes back as `partial` (hex), to pass with the
/// next read.
pub async fn log(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let state = app
        .store
        .state_of(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no job with id {id}")))?;
    let after = stream_id_param(&q, "after")?.unwrap_or_else(|| "0".into());
    let mut pending = sse::partial_param(&q)?;
    let (last, bytes) = app.store.read_log(&id, &after, None).await?;
    let tail = app.store.log_tail_info(&id).await?;
    // Decoded across reads: a character cut at the end waits, as `partial`,
    // for its rest in the next read (all of it once the job is final).
    pending.extend_from_slice(&bytes);
    let mut data = sse::take_utf8(&mut pending);
    if state.is_final() && !pending.is_empty() {
        data.push_str(&String::from_utf8_lossy(&std::mem::take(&mut pending)));
    }
    Ok(Json(json!({
        "id": id,
        "state": state,
        "data": data,
        "partial": sse::hex(&pending),
        "last": last,
        "kept": tail.kept,
        "dropped": tail.dropped,
    })))
}

/// `GET /api/events?after=&count=`: the last `count` events (default 100),
/// or those after stream id `after`.
pub async fn events(
    State(app): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Vec<Event>>, ApiError> {
    let count = number_param(&q, "count", 100, 1..=1_000)?;
    Ok(Json(match stream_id_param(&q, "after")? {
        Some(after) => app.store.events(&after, count, None).await?,
        None => app.store.recent_events(count).await?,
    }))
}

/// Job `id` as the list a bulk operation takes.
fn one(id: &String) -> &[String] {
    std::slice::from_ref(id)
}

/// What a bulk operation did to its one job, which exists.
enum One {
    /// Done: the job is in this state now.
    Done(JobState),
    /// Left as it was, in this state.
    Left(JobState),
}

/// What a bulk operation did to job `id`; no such job is a 404.
fn only(id: &str, results: Vec<BulkResult>) -> Result<One, ApiError> {
    match results.into_iter().next() {
        Some(BulkResult::Done(st)) => Ok(One::Done(st)),
        Some(BulkResult::Left(st)) => Ok(One::Left(st)),
        Some(BulkResult::NoSuchJob) | None => {
            Err(ApiError::not_found(format!("no job with id {id}")))
        }
    }
}

/// `POST /api/jobs/{id}/retry`: what `agentq retry ID` does.
pub async fn retry(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Authorized(params): Authorized,
) -> Result<Response, ApiError> {
    only_fields(&params, &[])?;
    let r = app.store.retry_many(one(&id), &mut |_, _| {}).await?;
    match only(&id, r)? {
        One::Done(st) => Ok(done(&params, json!({"id": id, "state": st}))),
        One::Left(st) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("job {id} is {st}, not finished; only finished jobs can be retried"),
        )),
    }
}

/// `POST /api/jobs/{id}/cancel`: what `agentq cancel ID` does.
pub async fn cancel(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Authorized(params): Authorized,
) -> Result<Response, ApiError> {
    only_fields(&params, &[])?;
    let r = app.store.cancel_many(one(&id), &mut |_, _| {}).await?;
    match only(&id, r)? {
        One::Done(st) => Ok(done(
            &params,
            json!({"id": id, "state": st, "note": "cancelled"}),
        )),
        One::Left(st) if st.is_final() => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("job {id} is {st}: already finished"),
        )),
        One::Left(st) => Ok(done(
            &params,
            json!({"id": id, "state": st, "note": "cancel requested; the worker stops it within seconds"}),
        )),
    }
}

/// `POST /api/jobs/{id}/resume` (`answer`, optional `agent`): what
/// `agentq resume ID --answer TEXT [--agent A]` does.
pub async fn resume(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Authorized(params): Authorized,
) -> Result<Response, ApiError> {
    only_fields(&params, &["answer", "agent"])?;
    let answer = params.get("answer").map(String::as_str).unwrap_or("");
    let agent = params
        .get("agent")
        .map(|a| a.trim())
        .filter(|a| !a.is_empty());
    // A bad agent is the request's fault (400), whatever the job's state.
    if let Some(a) = agent {
        app.cfg
            .agent_table()
            .parse(a)
            .map_err(|e| ApiError::bad(format!("agent: {e}")))?;
    }
    match app
        .store
        .resume_job(&id, answer, agent, app.cfg.agent_table())
        .await
    {
        Ok(rec) => Ok(done(&params, json!({"id": rec.id, "state": "queued"}))),
        Err(ResumeError::Refused(why)) if why.starts_with("no job") => {
            Err(ApiError::not_found(why))
        }
        Err(ResumeError::Refused(why)) => Err(ApiError::new(StatusCode::CONFLICT, why)),
        Err(ResumeError::Invalid(e)) => Err(ApiError::bad(e.to_string())),
        Err(ResumeError::Store(e)) => Err(e.into()),
    }
}

/// `POST /api/jobs/bulk/retry`: see [`bulk`].
pub async fn bulk_retry(
    State(app): State<AppState>,
    Authorized(params): Authorized,
) -> Result<Response, ApiError> {
    bulk(&app, "retry", &params).await
}

/// `POST /api/jobs/bulk/cancel`: see [`bulk`].
pub async fn bulk_cancel(
    State(app): State<AppState>,
    Authorized(params): Authorized,
) -> Result<Response, ApiError> {
    bulk(&app, "cancel", &params).await
}

/// `POST /api/jobs/bulk/{retry|cancel}` with a filter (`state` required,
/// `agent`, `repo`, `q`, `since`): what `agentq retry|cancel --state …` does.
/// With `confirm` (from the confirmation page's form), it acts on exactly the
/// jobs that page counted, not on what the filter matches by then.
async fn bulk(
    app: &AppState,
    op: &str,
    params: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    only_fields(params, &["state", "agent", "repo", "q", "since", "confirm"])?;
    let filter = filter_from(params)?;
    let Some(state) = filter.state else {
        return Err(ApiError::bad("state: a bulk operation needs a state"));
    };
    let refusal = if op == "retry" {
        retry_state_refusal(state)
    } else {
        cancel_state_refusal(state)
    };
    if let Some(why) = refusal {
        return Err(ApiError::bad(why));
    }
    // From a confirmation page: exactly the jobs it counted (each still
    // checked: a job that left the state meanwhile is left as it is).
    // Otherwise the jobs the filter matches now.
    let ids = match params.get("confirm").filter(|c| !c.is_empty()) {
        Some(token) => app.take_bulk(token, op).ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "this confirmation is used or too old: look at the count again",
            )
        })?,
        None => app.store.ids_matching(&filter).await?,
    };
    let results = if op == "retry" {
        app.store
            .retry_selected(&ids, Some(state), &mut |_, _| {})
            .await?
    } else {
        app.store.cancel_many(&ids, &mut |_, _| {}).await?
    };
    let (mut n_done, mut left, mut missing) = (0u64, 0u64, 0u64);
    for r in &results {
        match r {
            BulkResult::Done(_) => n_done += 1,
            BulkResult::Left(_) => left += 1,
            BulkResult::NoSuchJob => missing += 1,
        }
    }
    Ok(done(
        params,
        json!({"op": op, "matched": ids.len(), "done": n_done, "left": left, "missing": missing}),
    ))
}

/// `POST /api/pools/{pool}/pause` (`for`: seconds or an age like 10m, default
/// 1h): what `agentq pool pause POOL --for D` does.
pub async fn pause_pool(
    State(app): State<AppState>,
    Path(pool): Path<String>,
    Authorized(params): Authorized,
) -> Result<Response, ApiError> {
    only_fields(&params, &["for"])?;
    check_pool_name(app.cfg.agent_table(), &pool).map_err(ApiError::bad)?;
    let dur = match params.get("for") {
        None => Duration::from_secs(3600),
        Some(d) => pause_for(d)?,
    };
    let until = app.store.pause_pool(&pool, dur).await?;
    Ok(done(&params, json!({"pool": pool, "paused_until": until})))
}

/// A pause's `for`: 1 to 7 digits, no leading 0, then an optional unit
/// (s, m, h, d) — the spec's pattern, so that no pause is long enough to
/// overflow a date.
fn pause_for(d: &str) -> Result<Duration, ApiError> {
    let digits = d.strip_suffix(['s', 'm', 'h', 'd']).unwrap_or(d);
    let ok = (1..=7).contains(&digits.len())
        && !digits.starts_with('0')
        && digits.bytes().all(|b| b.is_ascii_digit());
    if !ok {
        return Err(ApiError::bad(format!(
            "for: `{d}` is not a duration like 45s, 10m, 2h or 7d (up to 7 digits)"
        )));
    }
    crate::when::parse_duration(d).map_err(|e| ApiError::bad(format!("for: {e}")))
}

/// `POST /api/pools/{pool}/resume`: what `agentq pool resume POOL` does.
pub async fn resume_pool(
    State(app): State<AppState>,
    Path(pool): Path<String>,
    Authorized(params): Authorized,
) -> Result<Response, ApiError> {
    only_fields(&params, &[])?;
    check_pool_name(app.cfg.agent_table(), &pool).map_err(ApiError::bad)?;
    let was_paused = app.store.resume_pool(&pool).await?;
    Ok(done(
        &params,
        json!({"pool": pool, "was_paused": was_paused}),
    ))
}

#[cfg(test)]
mod tests {
    use agentq_shared::config::Config;

    use super::*;

    #[test]
    fn the_served_spec_lists_the_configured_pools() {
        // The file's built-in lists are what `served_spec` replaces: if
        // either text changes there, the spec would silently stay built-in.
        assert!(OPENAPI.contains(SPEC_POOLS), "{SPEC_POOLS}");
        assert!(OPENAPI.contains(SPEC_AGENT), "{SPEC_AGENT}");
        let cfg = Config::from_toml(
            "[agents.mytool]\nimage = \"x\"\ncommand = [\"t\", \"{prompt_file}\"]\n",
        )
        .unwrap();
        let spec = served_spec(cfg.agent_table());
        assert!(!spec.contains(SPEC_POOLS) && !spec.contains(SPEC_AGENT));
        assert!(spec.contains(", mytool]"), "pool enum");
        assert!(spec.contains("|mytool)(:"), "agent pattern");
        // Built-in pools only: the file as it is.
        assert_eq!(served_spec(Config::default().agent_table()), OPENAPI);
    }
}
