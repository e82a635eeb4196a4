//! Prometheus `/metrics` and `/healthz` for one worker.
//!
//! Counters and the duration histogram count what this worker ran; the gauges
//! (running by pool, queue depth, waiting by reason) are read from Redis at scrape
//! time, so every worker reports the same pool-wide picture.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use agentq_shared::{agent::AGENTS, status::JobState};
use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::get, Router};
use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use crate::context::WorkerCtx;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    agent: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

/// The worker's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    jobs: Family<JobLabels, Counter>,
    duration: Family<PoolLabels, Histogram>,
    running: Family<PoolLabels, Gauge>,
    waiting: Family<ReasonLabels, Gauge>,
    queue_depth: Gauge,
    rescued: Gauge,
    degraded: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("agentq");
        let jobs = Family::<JobLabels, Counter>::default();
        registry.register(
            "jobs",
            "Jobs this worker finished, by agent pool and final state",
            jobs.clone(),
        );
        let duration = Family::<PoolLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0])
        });
        registry.register(
            "job_duration_seconds",
            "Time from prep to final state, by agent pool",
            duration.clone(),
        );
        let running = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "running",
            "Jobs holding a slot, by agent pool (all hosts)",
            running.clone(),
        );
        let waiting = Family::<ReasonLabels, Gauge>::default();
        registry.register(
            "waiting",
            "Jobs waiting, by reason (all hosts)",
            waiting.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Deliveries in the queue, due or scheduled",
            queue_depth.clone(),
        );
        let rescued = Gauge::default();
        registry.register(
            "jobs_rescued",
            "Jobs the safety sweep found with neither a delivery nor a live run, since the namespace began (should stay 0)",
            rescued.clone(),
        );
        let degraded = Gauge::default();
        registry.register(
            "worker_degraded",
            "1 while this worker's host circuit breaker is open (it takes no jobs)",
            degraded.clone(),
        );
        Self {
            registry,
            rescued,
            degraded,
            jobs,
            duration,
            running,
            waiting,
            queue_depth,
        }
    }
}

impl Metrics {
    /// Counts a job that reached `state` after `took`.
    pub fn job_finished(&self, pool: &str, state: JobState, took: Duration) {
        self.jobs
            .get_or_create(&JobLabels {
                agent: pool.to_string(),
                state: state.to_string(),
            })
            .inc();
        self.duration
            .get_or_create(&PoolLabels {
                pool: pool.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    async fn refresh(&self, ctx: &WorkerCtx) -> anyhow::Result<()> {
        let store = &ctx.store;
        self.queue_depth.set(store.queue_depth().await? as i64);
        self.rescued.set(store.rescued_total().await? as i64);
        self.degraded
            .set(i64::from(ctx.breaker.degraded().is_some()));
        let pools: Vec<String> = AGENTS.iter().map(|s| s.to_string()).collect();
        for p in store.pool_stats(&ctx.cfg.admission, &pools).await? {
            self.running
                .get_or_create(&PoolLabels { pool: p.pool })
                .set(p.running as i64);
        }
        for (reason, n) in store.waiting_by_reason(10_000).await? {
            self.waiting
                .get_or_create(&ReasonLabels {
                    reason: reason.as_str().into(),
                })
                .set(n as i64);
        }
        Ok(())
    }
}

async fn metrics(State(ctx): State<Arc<WorkerCtx>>) -> impl IntoResponse {
    if let Err(e) = ctx.metrics.refresh(&ctx).await {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot read Redis: {e}\n"),
        )
            .into_response();
    }
    let mut body = String::new();
    if let Err(e) = encode(&mut body, &ctx.metrics.registry) {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
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

/// Serves `/metrics` and `/healthz` on `addr` until the process ends.
///
/// # Errors
/// The address cannot be bound.
pub async fn serve(addr: SocketAddr, ctx: Arc<WorkerCtx>) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(ctx);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    Ok(bound)
}
