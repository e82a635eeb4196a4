//! The web console of `agentq web`: server-rendered pages ([`pages`], drawn
//! with the helpers of [`views`]), the JSON API they and scripts use ([`api`],
//! documented in `producer/openapi.yaml`), live output and events over
//! server-sent events ([`sse`]), and the operator token with its sessions and
//! CSRF tokens ([`auth`], [`session`]). Pages and API show the same
//! [`models`]. Below them: the shared [`state`], a request's [`params`], the
//! [`error`] answer, random [`tokens`], and the [`guard`] every request
//! passes. This file is the router. It calls the same store functions as the
//! CLI verbs; nothing here talks Redis directly.

pub mod api;
pub mod auth;
pub mod error;
pub mod guard;
pub mod models;
pub mod pages;
pub mod params;
pub mod session;
pub mod sse;
pub mod state;
pub mod tokens;
pub mod views;

use std::{net::SocketAddr, sync::Arc};

use agentq_shared::{config::Config, store::JobStore};
use axum::{
    http::StatusCode,
    routing::{get, post},
    Router,
};

use crate::Failure;
use error::ApiError;
use state::{App, AppState};

/// The router: pages, assets, API.
pub fn router(app: AppState) -> Router {
    Router::new()
        .route("/", get(pages::overview))
        .route("/jobs", get(pages::jobs))
        .route("/jobs/bulk", get(pages::bulk_confirm))
        .route("/jobs/{id}", get(pages::job))
        .route("/events", get(pages::events))
        .route("/notifications", get(pages::notifications))
        .route("/login", get(pages::login).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/assets/app.js", get(pages::app_js))
        .route("/assets/style.css", get(pages::style_css))
        .route("/api/openapi.yaml", get(api::openapi))
        .route("/api/overview", get(api::overview))
        .route("/api/jobs", get(api::jobs))
        .route("/api/jobs/{id}", get(api::job))
        .route("/api/jobs/{id}/log", get(api::log))
        .route("/api/jobs/{id}/log/stream", get(sse::log_stream))
        .route("/api/jobs/{id}/retry", post(api::retry))
        .route("/api/jobs/{id}/cancel", post(api::cancel))
        .route("/api/jobs/{id}/resume", post(api::resume))
        .route("/api/jobs/bulk/retry", post(api::bulk_retry))
        .route("/api/jobs/bulk/cancel", post(api::bulk_cancel))
        .route("/api/pools/{pool}/pause", post(api::pause_pool))
        .route("/api/pools/{pool}/resume", post(api::resume_pool))
        .route("/api/events", get(api::events))
        .route("/api/events/stream", get(sse::events_stream))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such page") })
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            guard::guard,
        ))
        .with_state(app)
}

/// Serves the console on `addr` until the process is stopped.
pub async fn serve(
    cfg: Config,
    store: JobStore,
    token: Option<String>,
    addr: SocketAddr,
) -> Result<u8, Failure> {
    let read_only = token.is_none();
    let app = Arc::new(App {
        store,
        cfg,
        token,
        sessions: Default::default(),
        bulk: Default::default(),
        hosts: guard::loopback_hosts(addr),
    });
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Failure::setup(format!("addr: cannot listen on {addr}: {e}")))?;
    let local = listener.local_addr().unwrap_or(addr);
    outln!(
        "agentq web: listening on http://{local}/ ({})",
        if read_only {
            "read-only: no --token-env"
        } else {
            "changes need the operator token"
        }
    );
    axum::serve(listener, router(app))
        .await
        .map_err(|e| Failure::setup(format!("web server: {e}")))?;
    Ok(0)
}
