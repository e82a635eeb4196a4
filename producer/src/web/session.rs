//! Logged-in sessions: the session cookie, and the CSRF token of the session a
//! request belongs to.

use axum::http::{header, HeaderMap};

use super::{
    state::AppState,
    tokens::{ct_eq, random_hex},
};

/// The session cookie's name.
pub const COOKIE: &str = "agentq_session";
/// Most sessions kept at once (all are forgotten past this).
const MAX_SESSIONS: usize = 1_000;
/// How long a login lasts.
pub const SESSION_TTL: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

/// The session id in the request's cookie, if any.
fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

/// The CSRF token of the request's session, when it is logged in: what pages
/// put in their forms. `None`: show no forms.
pub fn csrf_of(app: &AppState, headers: &HeaderMap) -> Option<String> {
    let sid = session_id(headers)?;
    let sessions = app.sessions.lock().unwrap_or_else(|e| e.into_inner());
    sessions
        .iter()
        .find(|(k, _)| ct_eq(k.as_bytes(), sid.as_bytes()))
        .filter(|(_, (_, at))| at.elapsed() < SESSION_TTL)
        .map(|(_, (c, _))| c.clone())
}

/// Starts a session with a CSRF token of its own; returns its id.
pub fn open(app: &AppState) -> String {
    let sid = random_hex();
    let mut sessions = app.sessions.lock().unwrap_or_else(|e| e.into_inner());
    sessions.retain(|_, (_, at)| at.elapsed() < SESSION_TTL);
    if sessions.len() >= MAX_SESSIONS {
        sessions.clear();
    }
    sessions.insert(sid.clone(), (random_hex(), std::time::Instant::now()));
    sid
}

/// Forgets the request's session (with its CSRF token), if any.
pub fn close(app: &AppState, headers: &HeaderMap) {
    if let Some(sid) = session_id(headers) {
        app.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&sid);
    }
}
