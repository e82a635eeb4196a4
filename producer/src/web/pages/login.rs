//! The login page.

use std::collections::HashMap;

use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};

use crate::web::{state::AppState, views::login_page};

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
