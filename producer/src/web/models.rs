//! What the pages and the API both show: the overview's numbers, a page of
//! the job list, a job with its history.

use std::collections::HashMap;

use agentq_shared::{
    record::{JobRecord, RecordView},
    status::{JobState, WaitReason},
    store::limits::PoolStats,
    store::ops::{HistoryEntry, JobPage, PageCursor, WorkerInfo},
};
use axum::http::StatusCode;
use serde::Serialize;

use super::{error::ApiError, params::filter_from, state::AppState};

/// Jobs finished per bucket, oldest first.
#[derive(Debug, Serialize)]
pub struct Series {
    /// Bucket width, seconds.
    pub bucket_secs: u64,
    /// Jobs completed per bucket.
    pub completed: Vec<u64>,
    /// Jobs failed or timed out per bucket.
    pub failed: Vec<u64>,
}

/// A pool as the overview shows it.
#[derive(Debug, Serialize)]
pub struct PoolRow {
    /// Running/limit, waiting (jobs in its lanes), paused until.
    #[serde(flatten)]
    pub stats: PoolStats,
    /// Its `waiting` by why they wait: (reason, jobs), nonzero only, adding
    /// up to `waiting` (see [`agentq_shared::store::park::ParkedReasons`]).
    pub waiting_by_reason: Vec<(String, u64)>,
}

/// Jobs read per pool lane for [`PoolRow::waiting_by_reason`] (the rest are
/// counted as `not read`).
const REASONS_READ_PER_LANE: usize = 5_000;

/// What the overview shows.
#[derive(Debug, Serialize)]
pub struct Overview {
    /// Pools: running/limit, waiting by reason, paused until.
    pub pools: Vec<PoolRow>,
    /// Jobs per state.
    pub states: Vec<(JobState, u64)>,
    /// Deliveries queued for workers.
    pub queue_depth: u64,
    /// Jobs in state `waiting` in every pool, per reason, parked in a lane or
    /// not (a workspace's line, a retry's delay); the newest 10 000 looked at.
    pub waiting: Vec<(WaitReason, u64)>,
    /// Live workers.
    pub workers: Vec<WorkerInfo>,
    /// The last hour, 5-minute buckets.
    pub hour: Series,
    /// The last day, 1-hour buckets.
    pub day: Series,
}

async fn series(app: &AppState, bucket_secs: u64, n: usize) -> Result<Series, ApiError> {
    let ms = bucket_secs as i64 * 1000;
    let completed = app
        .store
        .entered_per_bucket(JobState::Completed, ms, n)
        .await?;
    let failed = app
        .store
        .entered_per_bucket(JobState::Failed, ms, n)
        .await?;
    let timed_out = app
        .store
        .entered_per_bucket(JobState::TimedOut, ms, n)
        .await?;
    let merged = app
        .store
        .entered_per_bucket(JobState::Merged, ms, n)
        .await?;
    Ok(Series {
        bucket_secs,
        completed: completed.iter().zip(&merged).map(|(a, b)| a + b).collect(),
        failed: failed.iter().zip(&timed_out).map(|(a, b)| a + b).collect(),
    })
}

/// The overview's numbers (what `agentq stats` and `agentq workers` show, and
/// the charts).
pub async fn overview_data(app: &AppState) -> Result<Overview, ApiError> {
    let pools = crate::pools::reported(&app.cfg);
    let mut rows = Vec::new();
    for mut stats in app.store.pool_stats(&app.cfg.admission, &pools).await? {
        let parked = app
            .store
            .parked_by_reason(&stats.pool, REASONS_READ_PER_LANE)
            .await?;
        // One read for the total and its parts, so they agree.
        stats.waiting = parked.total;
        rows.push(PoolRow {
            stats,
            waiting_by_reason: parked.reasons,
        });
    }
    Ok(Overview {
        pools: rows,
        states: app.store.state_counts().await?,
        queue_depth: app.store.queue_depth().await?,
        waiting: app.store.waiting_by_reason(10_000).await?,
        workers: app.store.live_workers().await?,
        hour: series(app, 300, 12).await?,
        day: series(app, 3600, 24).await?,
    })
}

/// One page of the job list for these query parameters.
pub async fn jobs_page(app: &AppState, q: &HashMap<String, String>) -> Result<JobPage, ApiError> {
    let filter = filter_from(q)?;
    let cursor = match q.get("cursor").map(|c| c.trim()).filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(c.parse::<PageCursor>().map_err(ApiError::bad)?),
    };
    Ok(app.store.list_page(&filter, cursor.as_ref()).await?)
}

/// A job with its history and its log tail.
#[derive(Debug, Serialize)]
pub struct JobDetail {
    /// The record.
    pub record: JobRecord,
    /// State history, oldest first.
    pub history: Vec<HistoryEntry>,
}

/// Reads job `id` with its history, or 404.
pub async fn job_detail(app: &AppState, id: &str) -> Result<JobDetail, ApiError> {
    let record = match app.store.view(id).await? {
        Some(RecordView::Ok(record)) => record,
        // A record that does not parse is the record's problem, not an
        // outage: 422, naming the field (state `corrupt` in the CLI).
        Some(RecordView::Unreadable { problem, .. }) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                problem.to_string(),
            ))
        }
        None => return Err(ApiError::not_found(format!("no job with id {id}"))),
    };
    let history = app.store.history(id).await?;
    Ok(JobDetail { record, history })
}
