//! The worker's HTTP endpoint: Prometheus `/metrics` (the counters of
//! [`crate::metrics`], the gauges read from Redis at scrape time) and
//! `/healthz`.

use std::{net::SocketAddr, sync::Arc};

use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::get, Router};

use crate::{context::WorkerCtx, metrics::Gauges};

/// Reads the pool-wide gauges from Redis.
async fn gauges(ctx: &WorkerCtx) -> anyhow::Result<Gauges> {
    let store = &ctx.store;
    let pools = ctx.cfg.agent_table().names();
    let stats = store.pool_stats(&ctx.cfg.admission, &pools).await?;
    let paused = stats
        .iter()
        .map(|p| (p.pool.clone(), p.operator_paused, p.paused_until.is_some()))
        .collect();
    let now = chrono::Utc::now();
    let quota_resume = stats
        .iter()
        .map(|p| {
            let secs = match (p.pause_cause, &p.paused_until) {
                (Some(agentq_shared::quota::PauseCause::Quota), Some(until)) => {
                    chrono::DateTime::parse_from_rfc3339(until)
                        .map(|u| (u.to_utc() - now).num_seconds().max(1))
                        .unwrap_or(1)
                }
                _ => 0,
            };
            (p.pool.clone(), secs)
        })
        .collect();
    let running = stats.into_iter().map(|p| (p.pool, p.running)).collect();
    let waiting = store
        .waiting_by_reason(10_000)
        .await?
        .into_iter()
        .map(|(reason, n)| (reason, n as usize))
        .collect();
    Ok(Gauges {
        queue_depth: store.queue_depth().await?,
        rescued: store.rescued_total().await?,
        degraded: ctx.breaker.degraded().is_some(),
        running,
        waiting,
        paused,
        quota_resume,
        scheduled: store.scheduled_count().await?.0,
    })
}

async fn metrics(State(ctx): State<Arc<WorkerCtx>>) -> impl IntoResponse {
    match gauges(&ctx).await {
        Ok(g) => ctx.metrics.set_gauges(&g),
        Err(e) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot read Redis: {e}\n"),
            )
                .into_response()
        }
    }
    let body = match ctx.metrics.encode() {
        Ok(b) => b,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn healthz(State(ctx): State<Arc<WorkerCtx>>) -> impl IntoResponse {
    if let Some((why, left)) = ctx.breaker.degraded() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("degraded for {}s more: {why}\n", left.as_secs()),
        );
    }
    match ctx.store.queue_depth().await {
        Ok(_) => (StatusCode::OK, "ok\n".to_string()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("redis: {e}\n")),
    }
}

/// Serves `/metrics` and `/healthz` on `addr` until the services stop.
///
/// # Errors
/// The address cannot be bound.
pub async fn serve(addr: SocketAddr, ctx: Arc<WorkerCtx>) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(ctx.clone());
    ctx.services.clone().spawn_loop("http", |stop| async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    Ok(bound)
}
