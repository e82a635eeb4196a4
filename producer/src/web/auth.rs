//! The operator token and CSRF tokens: who may change things, logging in and
//! out.
//!
//! Reading needs nothing. A state-changing request (always a POST) needs the
//! operator token, either as `Authorization: Bearer TOKEN` (scripts), or as a
//! session cookie set by the login form (HttpOnly, SameSite=Strict) together
//! with that session's CSRF token (a `csrf` form field or an `X-CSRF-Token`
//! header). Without `--token-env` every POST is refused. Tokens are compared in
//! constant time; none is ever rendered (the CSRF token, which is not a
//! secret from the page's own user, aside).

use std::collections::HashMap;

use axum::{
    body::Bytes,
    extract::{FromRequest, Request, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Redirect, Response},
};

use super::{
    error::ApiError,
    params::{local_path, parse_params},
    session::{self, csrf_of, COOKIE, SESSION_TTL},
    state::AppState,
    tokens::ct_eq,
    views,
};

/// A state-changing request that [`authorize`] let through: its form or JSON
/// fields. As a handler's last argument, it reads the body, parses it and
/// checks the token (and CSRF token) before the handler runs.
pub struct Authorized(pub HashMap<String, String>);

impl FromRequest<AppState> for Authorized {
    type Rejection = ApiError;

    async fn from_request(req: Request, app: &AppState) -> Result<Self, ApiError> {
        let headers = req.headers().clone();
        let body = Bytes::from_request(req, app)
            .await
            .map_err(|e| ApiError::bad(format!("body: {e}")))?;
        let params = parse_params(&headers, &body)?;
        authorize(app, &headers, &params)?;
        Ok(Self(params))
    }
}

/// Checks that a state-changing request may go ahead; `params` are its form
/// or JSON fields (for the `csrf` field).
///
/// # Errors
/// 403 when read-only or the CSRF token is missing or wrong, 401 without a
/// valid token or session.
pub fn authorize(
    app: &AppState,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
) -> Result<(), ApiError> {
    let Some(token) = app.token.as_deref() else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "read-only console: start `agentq web --token-env NAME` to allow changes",
        ));
    };
    if let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let given = auth.strip_prefix("Bearer ").unwrap_or("");
        return if ct_eq(given.trim().as_bytes(), token.as_bytes()) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "wrong operator token",
            ))
        };
    }
    let Some(csrf) = csrf_of(app, headers) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the operator token is needed: log in at /login or send Authorization: Bearer TOKEN",
        ));
    };
    let given = params
        .get("csrf")
        .cloned()
        .or_else(|| {
            headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    if ct_eq(given.as_bytes(), csrf.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "CSRF token missing or wrong: reload the page and try again",
        ))
    }
}

/// `POST /login`: the form's `token`; on success a session cookie and a
/// redirect to `next` (a local path: `/…`, not `//…`; else the overview).
pub async fn login(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let params = match parse_params(&headers, &body) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let next = params.get("next").map(String::as_str);
    let Some(token) = app.token.as_deref() else {
        return (
            StatusCode::FORBIDDEN,
            views::login_page(
                true,
                Some("This console is read-only; there is nothing to log in to."),
                next,
            ),
        )
            .into_response();
    };
    let given = params.get("token").map(|s| s.trim()).unwrap_or("");
    if !ct_eq(given.as_bytes(), token.as_bytes()) {
        return (
            StatusCode::UNAUTHORIZED,
            views::login_page(false, Some("Wrong token."), next),
        )
            .into_response();
    }
    let sid = session::open(&app);
    let next = params
        .get("next")
        .filter(|n| local_path(n))
        .cloned()
        .unwrap_or_else(|| "/".into());
    (
        [(
            header::SET_COOKIE,
            format!(
                "{COOKIE}={sid}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
                SESSION_TTL.as_secs()
            ),
        )],
        Redirect::to(&next),
    )
        .into_response()
}

/// `POST /logout`: forgets the session (with its CSRF token).
pub async fn logout(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let params = match parse_params(&headers, &body) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = authorize(&app, &headers, &params) {
        return e.into_response();
    }
    session::close(&app, &headers);
    (
        [(
            header::SET_COOKIE,
            format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
        )],
        Redirect::to("/"),
    )
        .into_response()
}
