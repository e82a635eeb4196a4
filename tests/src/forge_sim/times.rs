//! Time tracking routes: stopwatches and tracked times.

use super::*;

/// Whether `user` may track time on issue `n` (`CanUseTimetracker` in
/// services/context/repo.go: time tracking on, and — with the default
/// `AllowOnlyContributorsToTrackTime` — a writer or the issue's poster).
pub(super) fn can_use_timetracker(st: &SimState, rs: &RepoState, n: u64, user: u64) -> bool {
    rs.time_tracking && (st.can_write(rs, Some(user)) || issue_poster(rs, n) == user)
}

/// Stops `sw`, recording its time on its issue (`FinishIssueStopwatch` in
/// models/issues/stopwatch.go: now minus the start, in seconds).
pub(super) fn finish_stopwatch(st: &mut SimState, user: u64, sw: &StopwatchState, event: &str) {
    let now = now_unix();
    let id = st.next_id();
    st.times.push(TimeState {
        id,
        owner: sw.owner.clone(),
        repo: sw.repo.clone(),
        issue: sw.issue,
        user,
        created_unix: now,
        time: now - sw.started_unix,
        from_stopwatch: true,
    });
    st.stopwatch_events.push((
        sw.owner.clone(),
        sw.repo.clone(),
        sw.issue,
        event.to_string(),
    ));
}

/// routers/api/v1/repo/issue_stopwatch.go (`prepareIssueStopwatch`) and
/// models/issues/stopwatch.go: one stopwatch per user; starting one stops (and
/// records) the one running on another issue.
pub(super) fn stopwatch(
    sh: &Shared,
    o: &str,
    r: &str,
    index: &str,
    user: u64,
    start: bool,
) -> Response {
    let mut st = sh.lock();
    let Some(n) = issue_exists(&st, o, r, index) else {
        return not_found(sh);
    };
    let rs = &st.repos[&key(o, r)];
    if !st.can_write(rs, Some(user)) || !can_use_timetracker(&st, rs, n, user) {
        return empty_response(StatusCode::FORBIDDEN);
    }
    let here = st
        .stopwatches
        .get(&user)
        .is_some_and(|s| s.owner == o && s.repo == r && s.issue == n);
    if here == start {
        let message = if start {
            "cannot start a stopwatch again if it already exists"
        } else {
            "cannot stop/cancel a non existent stopwatch"
        };
        return api_error(sh, StatusCode::CONFLICT, message);
    }
    if start {
        if let Some(other) = st.stopwatches.remove(&user) {
            finish_stopwatch(&mut st, user, &other, "stopped by a start elsewhere");
        }
        st.stopwatches.insert(
            user,
            StopwatchState {
                owner: o.to_string(),
                repo: r.to_string(),
                issue: n,
                started_unix: now_unix(),
            },
        );
        st.stopwatch_events
            .push((o.to_string(), r.to_string(), n, "start".into()));
    } else if let Some(sw) = st.stopwatches.remove(&user) {
        finish_stopwatch(&mut st, user, &sw, "stop");
    }
    empty_response(StatusCode::CREATED)
}

/// routers/api/v1/repo/issue_tracked_time.go, `AddTime`: 400 "time tracking
/// disabled" when it is off, a bare 403 when the user may not track time, else 200
/// with the `TrackedTime` (`created` as given, else now).
pub(super) fn add_time(
    sh: &Shared,
    o: &str,
    r: &str,
    index: &str,
    user: u64,
    body: &Map<String, Value>,
) -> Response {
    let created = match body.get("created").and_then(Value::as_str) {
        None => now_unix(),
        Some(s) => match chrono::DateTime::parse_from_rfc3339(s) {
            Ok(t) => t.timestamp(),
            Err(e) => {
                return validation_error(sh, format!("AddTimeOption: created: {e}"));
            }
        },
    };
    let time = body.get("time").and_then(Value::as_i64).unwrap_or(0);
    let mut st = sh.lock();
    let Some(n) = issue_exists(&st, o, r, index) else {
        return not_found(sh);
    };
    let rs = &st.repos[&key(o, r)];
    if !can_use_timetracker(&st, rs, n, user) {
        if !rs.time_tracking {
            return api_error(sh, StatusCode::BAD_REQUEST, "time tracking disabled");
        }
        return empty_response(StatusCode::FORBIDDEN);
    }
    let id = st.next_id();
    let t = TimeState {
        id,
        owner: o.to_string(),
        repo: r.to_string(),
        issue: n,
        user,
        created_unix: created,
        time,
        from_stopwatch: false,
    };
    let v = tracked_time_json(&st, &t);
    st.times.push(t);
    json_response(StatusCode::OK, v)
}

/// routers/api/v1/repo/issue_tracked_time.go, `ListTrackedTimes`: 404 when time
/// tracking is off; `since`/`before` (RFC 3339) bound `created` inclusively; a user
/// who may not write issues sees only their own times and may not ask for others'.
pub(super) fn list_times(
    sh: &Shared,
    o: &str,
    r: &str,
    index: &str,
    user: u64,
    query: &HashMap<String, String>,
) -> Response {
    let st = sh.lock();
    let rs = &st.repos[&key(o, r)];
    if !rs.time_tracking {
        return not_found_msg(sh, "Timetracker is disabled");
    }
    let Some(n) = issue_exists(&st, o, r, index) else {
        return not_found(sh);
    };
    let mut filter_user = match query.get("user").map(|s| s.trim()) {
        None | Some("") => None,
        Some(login) => match st.users.iter().find(|u| u.login == login) {
            Some(u) => Some(u.id),
            None => return not_found_msg(sh, "User does not exist"),
        },
    };
    let bound = |name: &str| -> Result<Option<i64>, String> {
        match query.get(name).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => chrono::DateTime::parse_from_rfc3339(s)
                .map(|t| Some(t.timestamp()))
                .map_err(|e| format!("{name}: {e}")),
        }
    };
    let (since, before) = match (bound("since"), bound("before")) {
        (Ok(s), Ok(b)) => (s, b),
        (Err(e), _) | (_, Err(e)) => return validation_error(sh, e),
    };
    if !st.can_write(rs, Some(user)) && filter_user != Some(user) {
        if filter_user.is_some() {
            return api_error(
                sh,
                StatusCode::FORBIDDEN,
                "query by user not allowed; not enough rights",
            );
        }
        filter_user = Some(user);
    }
    let selected: Vec<&TimeState> = st
        .times
        .iter()
        .filter(|t| t.owner == o && t.repo == r && t.issue == n)
        .filter(|t| filter_user.is_none_or(|u| t.user == u))
        .filter(|t| since.is_none_or(|s| t.created_unix >= s))
        .filter(|t| before.is_none_or(|b| t.created_unix <= b))
        .collect();
    let (page, limit) = page_and_limit(query);
    let total = selected.len();
    let list: Vec<Value> = selected
        .into_iter()
        .skip((page - 1).saturating_mul(limit))
        .take(limit)
        .map(|t| tracked_time_json(&st, t))
        .collect();
    let mut resp = json_response(StatusCode::OK, Value::Array(list));
    resp.headers_mut()
        .insert("x-total-count", HeaderValue::from(total));
    resp
}
