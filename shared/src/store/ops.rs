//! What operators do with the queue: list, history, log tails, cancel, purge,
//! events, and the live-worker registry.

use std::{collections::HashMap, time::Duration};

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use crate::{
    record::{JobRecord, RecordView, Unreadable},
    status::JobState,
    store::{bulk::BulkResult, lua, JobStore, StoreError},
};

/// Log chunks kept per job in Redis (the full log stays in the workspace).
pub const LOG_TAIL_MAX: usize = 2_000;
/// Most bytes of output in one log chunk: a longer write is split, so the
/// tail holds at most [`LOG_TAIL_BYTES`] whatever the writes are.
/// Three fit in one of Redis's stream nodes (`stream-node-max-bytes`, 4096 by
/// default, each node allocated whole), so the key takes at most about 670
/// nodes of 4 KiB: under 3 MiB in Redis for 2.6 MB of output.
pub const LOG_CHUNK_BYTES: usize = 1_300;
/// Most bytes of output a job's log tail in Redis holds (2.6 MB; the key stays
/// under 4 MiB with Redis's own overhead).
pub const LOG_TAIL_BYTES: usize = LOG_TAIL_MAX * LOG_CHUNK_BYTES;
/// How long a finished job's log tail stays in Redis.
pub const LOG_TAIL_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The `purge_many` script (`lua/purge_many.lua`).
static PURGE_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| lua::script("purge_many"));

/// What [`JobStore::purge`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Purged {
    /// Jobs deleted.
    pub purged: usize,
    /// Jobs selected but left: no longer in the state purged when the script
    /// reached them (retried, resumed or purged meanwhile).
    pub skipped: Vec<String>,
}

/// The `log_tail_info` script (`lua/log_tail_info.lua`).
static LOG_TAIL_INFO_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| lua::script("log_tail_info"));

/// How much of a job's output its log tail in Redis still holds (it keeps the
/// last [`LOG_TAIL_MAX`] chunks; the whole log stays in the workspace).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LogTailInfo {
    /// Chunks kept.
    pub kept: u64,
    /// Chunks dropped from its start to keep it short (0: it holds the whole
    /// output), `None` when Redis does not say (before 7.0).
    pub dropped: Option<u64>,
}

/// Which jobs `agentq list` shows.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only this state.
    pub state: Option<JobState>,
    /// Only this agent pool (`claude`) or exact agent (`claude:opus`).
    pub agent: Option<String>,
    /// Only this repo (`repo` or `org/repo`).
    pub repo: Option<String>,
    /// Only jobs created at or after this time (ms since the epoch).
    pub since_ms: Option<i64>,
    /// At most this many.
    pub limit: usize,
    /// Only jobs whose id starts with this, whose task contains it (any
    /// case), or whose issue or PR is this number (`12`, `#12`), or whose PR
    /// URL contains it.
    pub search: Option<String>,
}

/// One page of [`JobStore::list_page`].
#[derive(Debug, Clone, Serialize)]
pub struct JobPage {
    /// The jobs, in index order (newest first).
    pub jobs: Vec<JobRecord>,
    /// Where the next page starts (a [`PageCursor`]), `None` at the end.
    pub next: Option<String>,
    /// Index entries read for this page.
    pub scanned: u64,
    /// The page's jobs whose record does not parse, in index order (not in
    /// `jobs`: they match no filter but the state's index or none).
    pub corrupt: Vec<CorruptJob>,
}

/// A job whose record does not parse, as lists show it (see
/// [`RecordView::Unreadable`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CorruptJob {
    /// The job's id.
    pub id: String,
    /// The field that does not parse.
    pub field: String,
    /// `record unreadable: FIELD: why`.
    pub error: String,
}

impl CorruptJob {
    /// The row of an unreadable job; `None` for a readable one.
    pub fn of(view: &RecordView) -> Option<Self> {
        match view {
            RecordView::Ok(_) => None,
            RecordView::Unreadable { id, problem } => Some(Self {
                id: id.clone(),
                field: problem.field.clone(),
                error: problem.to_string(),
            }),
        }
    }
}

/// Where a page of [`JobStore::list_page`] ends: the last index entry it read
/// (its score and id), written `SCORE-ID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageCursor {
    /// The entry's score in the index (ms).
    pub score: i64,
    /// The job id.
    pub id: String,
}

impl PageCursor {
    /// Whether index entry (`score`, `id`) comes after this cursor, newest
    /// first: a lower score, or the same score and a lower id.
    pub fn is_before(&self, score: i64, id: &str) -> bool {
        score < self.score || (score == self.score && id < self.id.as_str())
    }
}

impl std::fmt::Display for PageCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.score, self.id)
    }
}

impl std::str::FromStr for PageCursor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (score, id) = s
            .split_once('-')
            .ok_or_else(|| "cursor: the `next` of the previous page".to_string())?;
        let score = score
            .parse::<i64>()
            .map_err(|_| "cursor: the `next` of the previous page".to_string())?;
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err("cursor: the `next` of the previous page".into());
        }
        Ok(Self {
            score,
            id: id.to_string(),
        })
    }
}

/// Index entries [`JobStore::list_page`] reads at most for one page (a narrow
/// filter over a big index returns fewer jobs and a cursor to go on from).
pub const PAGE_SCAN_MAX: u64 = 20_000;

impl ListFilter {
    /// Whether a job whose record does not parse stays in the list: only when
    /// nothing but the state (the index walked) is asked for.
    fn keeps_unreadable(&self) -> bool {
        self.agent.is_none()
            && self.repo.is_none()
            && self.since_ms.is_none()
            && self.search.is_none()
    }

    fn matches(&self, rec: &JobRecord) -> bool {
        let i = &rec.input;
        let agent_ok = match &self.agent {
            None => true,
            Some(a) if a.contains(':') => &i.agent == a,
            Some(a) => i.agent.split(':').next() == Some(a.as_str()),
        };
        let repo_ok = match &self.repo {
            None => true,
            Some(r) if r.contains('/') => format!("{}/{}", i.org, i.repo) == *r,
            Some(r) => &i.repo == r,
        };
        agent_ok
            && repo_ok
            && self.state.is_none_or(|s| rec.state == s)
            && self.since_ok(rec)
            && self.search_ok(rec)
    }

    fn since_ok(&self, rec: &JobRecord) -> bool {
        self.since_ms.is_none_or(|since| {
            chrono::DateTime::parse_from_rfc3339(&rec.created_at)
                .map(|t| t.timestamp_millis())
                .unwrap_or(0)
                >= since
        })
    }

    fn search_ok(&self, rec: &JobRecord) -> bool {
        let Some(q) = self
            .search
            .as_deref()
            .map(str::trim)
            .filter(|q| !q.is_empty())
        else {
            return true;
        };
        let i = &rec.input;
        let n = q.trim_start_matches('#').parse::<u64>().ok();
        rec.id.starts_with(&q.to_ascii_uppercase())
            || i.task.to_lowercase().contains(&q.to_lowercase())
            || n.is_some_and(|n| n != 0 && (i.issue == n || i.pr == n))
            || (!rec.pr_url.is_empty() && rec.pr_url.contains(q))
    }
}

/// Why [`JobStore::resume_job`] did not resume a job.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    /// Refused: no such job, not finished, bad agent, or the job changed
    /// meanwhile.
    #[error("{0}")]
    Refused(String),
    /// The answer is not one (empty, too long, NUL or control characters):
    /// names the field.
    #[error(transparent)]
    Invalid(#[from] crate::input::InvalidInput),
    /// Redis failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a bulk retry of the jobs in `state` is refused: only finished jobs run
/// again.
pub fn retry_state_refusal(state: JobState) -> Option<String> {
    (!state.is_final())
        .then(|| format!("state: {state} jobs are not finished; only finished jobs can be retried"))
}

/// Why a bulk cancel of the jobs in `state` is refused: finished jobs are.
pub fn cancel_state_refusal(state: JobState) -> Option<String> {
    state
        .is_final()
        .then(|| format!("state: {state} jobs are finished already; nothing to cancel"))
}

/// One entry of a job's state history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// New state.
    pub state: String,
    /// Previous state.
    #[serde(default)]
    pub from: String,
    /// When (RFC 3339).
    pub at: String,
    /// Attempt at the time.
    #[serde(default)]
    pub attempt: u32,
    /// Host of the worker.
    #[serde(default)]
    pub host: String,
    /// Worker id.
    #[serde(default)]
    pub worker: String,
    /// Waiting reason.
    #[serde(default)]
    pub reason: String,
    /// Error text, for waiting/failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Question, for failed/blocked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question: Option<String>,
}

/// A live worker, as it reports itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Worker id.
    pub id: String,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// Jobs it runs at once.
    pub concurrency: u32,
    /// Ids of the jobs it runs now.
    pub running: Vec<String>,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// Its last heartbeat (RFC 3339).
    pub heartbeat_at: String,
    /// Its last heartbeat, ms since the epoch.
    pub heartbeat_ms: i64,
    /// After this many ms without a heartbeat it counts as gone.
    pub stale_after_ms: i64,
    /// Why the worker takes no jobs now (its host circuit breaker is open), or
    /// empty.
    #[serde(default)]
    pub degraded: String,
    /// Bytes this host's workspaces and git mirrors use (at its last look).
    #[serde(default)]
    pub workspace_bytes: u64,
    /// The agent pools it runs (those whose image it has).
    #[serde(default)]
    pub pools: Vec<String>,
}

/// One event from the events stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Stream entry id.
    pub id: String,
    /// The entry's fields (`job`, `state`, `from`, `attempt`, `host`, `at`, or
    /// `event`, `pool`, … for pool events).
    pub fields: HashMap<String, String>,
}

impl From<redis::streams::StreamId> for Event {
    fn from(e: redis::streams::StreamId) -> Self {
        let fields = e
            .map
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    redis::from_redis_value::<String>(v.clone()).unwrap_or_default(),
                )
            })
            .collect();
        Self { id: e.id, fields }
    }
}

impl JobStore {
    /// Jobs newest first, filtered.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn list(&self, filter: &ListFilter) -> Result<Vec<JobRecord>, StoreError> {
        Ok(self
            .list_views(filter)
            .await?
            .into_iter()
            .filter_map(|v| match v {
                RecordView::Ok(rec) => Some(rec),
                RecordView::Unreadable { .. } => None,
            })
            .collect())
    }

    /// [`JobStore::list`] with the jobs whose record does not parse kept (as
    /// [`RecordView::Unreadable`]) when the filter asks only for a state.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn list_views(&self, filter: &ListFilter) -> Result<Vec<RecordView>, StoreError> {
        if filter.state == Some(JobState::Queued) {
            return self.list_queued(filter).await;
        }
        let key = match filter.state {
            Some(s) => self.keys().state(s.as_str()),
            None => self.keys().jobs(),
        };
        let mut conn = self.conn();
        let mut out = Vec::new();
        let page = 200isize;
        let mut start = 0isize;
        let limit = if filter.limit == 0 {
            usize::MAX
        } else {
            filter.limit
        };
        loop {
            let ids: Vec<String> = conn.zrevrange(&key, start, start + page - 1).await?;
            if ids.is_empty() {
                break;
            }
            for (id, rec) in ids.iter().zip(self.read_records(&ids).await?) {
                let Some(view) = self.keep(filter, id, rec) else {
                    continue;
                };
                out.push(view);
                if out.len() >= limit {
                    out.sort_by(|a, b| b.id().cmp(a.id()));
                    return Ok(out);
                }
            }
            start += page;
        }
        // The per-state sets are scored by when the job got there; order by id
        // (ULIDs sort by creation) so "newest first" means newest job.
        out.sort_by(|a, b| b.id().cmp(a.id()));
        Ok(out)
    }

    /// What a list shows of job `id` as read: its record if `filter` matches
    /// it, or why it does not parse if the filter keeps such jobs.
    fn keep(
        &self,
        filter: &ListFilter,
        id: &str,
        read: Option<Result<JobRecord, String>>,
    ) -> Option<RecordView> {
        match read? {
            Ok(rec) => filter.matches(&rec).then_some(RecordView::Ok(rec)),
            Err(e) => filter.keeps_unreadable().then(|| {
                let problem = Unreadable::from_error(&e);
                tracing::warn!(job = id, error = %problem, "job record unreadable; listed as corrupt");
                RecordView::Unreadable {
                    id: id.to_string(),
                    problem,
                }
            }),
        }
    }

    /// [`JobStore::list`] of queued jobs: those in the state's index and those
    /// nothing has touched since enqueue (see `crate::store::create`).
    async fn list_queued(&self, filter: &ListFilter) -> Result<Vec<RecordView>, StoreError> {
        let limit = if filter.limit == 0 {
            usize::MAX
        } else {
            filter.limit
        };
        let mut ids = self.ids_in_state(JobState::Queued).await?;
        ids.reverse();
        let mut out = Vec::new();
        for page in ids.chunks(200) {
            for (id, rec) in page.iter().zip(self.read_records(page).await?) {
                let Some(view) = self.keep(filter, id, rec) else {
                    continue;
                };
                out.push(view);
                if out.len() >= limit {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }

    /// Ids of the jobs `filter` matches (its `limit` ignored). A filter on the
    /// state alone reads only that state's index, not the records.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn ids_matching(&self, filter: &ListFilter) -> Result<Vec<String>, StoreError> {
        if let (Some(state), None, None, None, None) = (
            filter.state,
            &filter.agent,
            &filter.repo,
            filter.since_ms,
            &filter.search,
        ) {
            return self.ids_in_state(state).await;
        }
        let all = ListFilter {
            limit: 0,
            ..filter.clone()
        };
        Ok(self.list(&all).await?.into_iter().map(|r| r.id).collect())
    }

    /// One page of jobs matching `filter` (its `limit` is the page size, at
    /// least 1), after `cursor` (the previous page's `next`; `None` for the
    /// first page). It walks the state's index when a state is given, else the
    /// index of all jobs, newest first (score, then id, descending), reading
    /// records a batch at a time, so the first page costs the same with 100 or
    /// 100,000 jobs. The cursor is the last index entry read, so jobs added or
    /// leaving the index meanwhile neither repeat nor push rows past a page
    /// boundary. At most [`PAGE_SCAN_MAX`] entries are read per page.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn list_page(
        &self,
        filter: &ListFilter,
        cursor: Option<&PageCursor>,
    ) -> Result<JobPage, StoreError> {
        // Queued jobs nothing has touched since enqueue are in no state's
        // index yet (see `crate::store::create`): they are found in the index
        // of all jobs, by the filter on the state.
        let key = match filter.state {
            Some(s) if s != JobState::Queued => self.keys().state(s.as_str()),
            _ => self.keys().jobs(),
        };
        let limit = filter.limit.max(1);
        let batch = (limit as u64 * 2).clamp(50, 1_000);
        let mut conn = self.conn();
        let mut jobs = Vec::new();
        let mut corrupt = Vec::new();
        let mut after = cursor.cloned();
        let mut scanned = 0u64;
        // Entries at the cursor's own score already passed over (ties of more
        // than a batch).
        let mut skip = 0u64;
        loop {
            let max = after
                .as_ref()
                .map_or_else(|| "+inf".to_string(), |c| c.score.to_string());
            let raw: Vec<(String, f64)> = redis::cmd("ZREVRANGEBYSCORE")
                .arg(&key)
                .arg(&max)
                .arg("-inf")
                .arg("WITHSCORES")
                .arg("LIMIT")
                .arg(skip)
                .arg(batch)
                .query_async(&mut conn)
                .await?;
            let full = raw.len() as u64 == batch;
            // Only entries strictly after the cursor: a lower score, or the
            // same score and a lower id.
            let entries: Vec<(String, i64)> = raw
                .into_iter()
                .map(|(id, score)| (id, score as i64))
                .filter(|(id, score)| after.as_ref().is_none_or(|c| c.is_before(*score, id)))
                .collect();
            if entries.is_empty() {
                if full {
                    skip += batch;
                    continue;
                }
                return Ok(JobPage {
                    jobs,
                    next: None,
                    scanned,
                    corrupt,
                });
            }
            skip = 0;
            let ids: Vec<String> = entries.iter().map(|(id, _)| id.clone()).collect();
            let read = self.read_records(&ids).await?;
            for ((id, score), rec) in entries.into_iter().zip(read) {
                scanned += 1;
                // The index of all jobs stands for the queued state: it
                // cannot say an unreadable job's state.
                let view = match rec {
                    Some(Err(_)) if filter.state == Some(JobState::Queued) => None,
                    rec => self.keep(filter, &id, rec),
                };
                after = Some(PageCursor { score, id });
                match view {
                    Some(RecordView::Ok(rec)) => jobs.push(rec),
                    Some(v) => corrupt.extend(CorruptJob::of(&v)),
                    None => {}
                }
                if jobs.len() >= limit {
                    return Ok(JobPage {
                        jobs,
                        next: after.map(|c| c.to_string()),
                        scanned,
                        corrupt,
                    });
                }
            }
            if !full {
                return Ok(JobPage {
                    jobs,
                    next: None,
                    scanned,
                    corrupt,
                });
            }
            if scanned >= PAGE_SCAN_MAX {
                return Ok(JobPage {
                    jobs,
                    next: after.map(|c| c.to_string()),
                    scanned,
                    corrupt,
                });
            }
        }
    }

    /// Jobs in state `waiting` per reason (every reason, 0 included), from
    /// the newest `limit` of them: what `agentq_waiting` and the console show.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn waiting_by_reason(
        &self,
        limit: usize,
    ) -> Result<Vec<(crate::status::WaitReason, u64)>, StoreError> {
        // Only each job's `reason`, never whole records (a record carries its
        // prompt): one ZREVRANGE and one pipelined HGET per job.
        let mut conn = self.conn();
        let ids: Vec<String> = conn
            .zrevrange(
                self.keys().state(JobState::Waiting.as_str()),
                0,
                limit.max(1) as isize - 1,
            )
            .await?;
        let mut reasons: Vec<Option<String>> = Vec::new();
        if !ids.is_empty() {
            let mut pipe = redis::pipe();
            for id in &ids {
                pipe.hget(self.keys().job(id), "reason");
            }
            reasons = pipe.query_async(&mut conn).await?;
        }
        Ok(crate::status::WAIT_REASONS
            .iter()
            .map(|reason| {
                let n = reasons
                    .iter()
                    .filter(|r| r.as_deref() == Some(reason.as_str()))
                    .count();
                (*reason, n as u64)
            })
            .collect())
    }

    /// How many jobs entered `state` in each of `buckets` consecutive windows
    /// of `bucket_ms` ending now, oldest first (from the state's index, scored
    /// by when the job got there; a job retried since counts no more).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn entered_per_bucket(
        &self,
        state: JobState,
        bucket_ms: i64,
        buckets: usize,
    ) -> Result<Vec<u64>, StoreError> {
        let now = crate::clock::now_ms();
        let start = now - bucket_ms * buckets as i64;
        let key = self.keys().state(state.as_str());
        let mut pipe = redis::pipe();
        for b in 0..buckets as i64 {
            let lo = start + b * bucket_ms;
            pipe.zcount(&key, lo, format!("({}", lo + bucket_ms));
        }
        Ok(pipe.query_async(&mut self.conn()).await?)
    }

    /// Answers finished job `id` (usually blocked) and runs it again in its
    /// workspace, optionally with another agent: what `agentq resume` does.
    /// An answered job keeps its first place in line: a person is waiting.
    ///
    /// `agent` is checked against `agents`, the configured table.
    ///
    /// # Errors
    /// [`ResumeError`]: refused (with the reason) or Redis.
    pub async fn resume_job(
        &self,
        id: &str,
        answer: &str,
        agent: Option<&str>,
        agents: &crate::agent::AgentTable,
    ) -> Result<JobRecord, ResumeError> {
        crate::input::check_answer(answer)?;
        let rec = self.get(id).await?.ok_or_else(|| {
            ResumeError::Refused(format!("no job with id {id} (see `agentq list`)"))
        })?;
        if !rec.state.is_final() {
            return Err(ResumeError::Refused(format!(
                "job {} is {}; only a finished job (blocked, failed, completed, …) can be resumed",
                rec.id, rec.state
            )));
        }
        let mut input = rec.input.clone();
        if let Some(agent) = agent.map(str::trim).filter(|a| !a.is_empty()) {
            agents
                .parse(agent)
                .map_err(|e| ResumeError::Refused(format!("agent: {e}")))?;
            input.agent = agent.to_string();
        }
        let input_json =
            serde_json::to_string(&input).map_err(|e| ResumeError::Refused(e.to_string()))?;
        let (pool, model) = crate::record::placement(&input);
        let rerun = self
            .rerun(
                &rec.id,
                rec.seq,
                &[
                    ("answer", answer.to_string()),
                    ("input", input_json),
                    ("pool", pool),
                    ("model", model),
                ],
                false,
            )
            .await?;
        if !rerun {
            return Err(ResumeError::Refused(format!(
                "job {} changed while resuming it (retried or resumed by someone else?); look at `agentq inspect {}`",
                rec.id, rec.id
            )));
        }
        Ok(rec)
    }

    /// A job's state history, oldest first.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn history(&self, id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        let raw: Vec<String> = self.conn().lrange(self.keys().history(id), 0, -1).await?;
        Ok(raw
            .iter()
            .filter_map(|s| serde_json::from_str(s).ok())
            .collect())
    }

    /// Marks the log tail to expire (after the job's run).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn expire_log(&self, id: &str) -> Result<(), StoreError> {
        let _: bool = self
            .conn()
            .expire(self.keys().log_tail(id), LOG_TAIL_TTL.as_secs() as i64)
            .await?;
        Ok(())
    }

    /// Log chunks after stream id `after` (`0` for all), waiting up to `block` for
    /// new ones: (last id, bytes).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn read_log(
        &self,
        id: &str,
        after: &str,
        block: Option<Duration>,
    ) -> Result<(String, Vec<u8>), StoreError> {
        let mut cmd = redis::cmd("XREAD");
        if let Some(b) = block {
            cmd.arg("BLOCK").arg(b.as_millis() as u64);
        }
        cmd.arg("STREAMS").arg(self.keys().log_tail(id)).arg(after);
        let reply: Option<redis::streams::StreamReadReply> =
            cmd.query_async(&mut self.conn()).await?;
        let mut last = after.to_string();
        let mut bytes = Vec::new();
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            for entry in key.ids {
                if let Some(redis::Value::BulkString(b)) = entry.map.get("d") {
                    bytes.extend_from_slice(b);
                }
                last = entry.id;
            }
        }
        Ok((last, bytes))
    }

    /// How much of job `id`'s output its log tail holds: whether the start of
    /// the output was trimmed away (one script call, reading no output).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn log_tail_info(&self, id: &str) -> Result<LogTailInfo, StoreError> {
        let (kept, added): (i64, i64) = LOG_TAIL_INFO_SCRIPT
            .key(self.keys().log_tail(id))
            .invoke_async(&mut self.conn())
            .await?;
        let kept = kept.max(0) as u64;
        Ok(LogTailInfo {
            kept,
            dropped: (added >= 0).then(|| (added as u64).saturating_sub(kept)),
        })
    }

    /// Asks for job `id` to be cancelled. A queued or waiting job is cancelled at
    /// once; a running one is stopped by its worker within about a second.
    /// Returns the job's state after the request, `None` if there is no such job.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn request_cancel(&self, id: &str) -> Result<Option<JobState>, StoreError> {
        // The bulk script: it re-checks the state where it changes it, so a
        // job that finished or was purged since is left alone (no stray flag).
        let done = self.cancel_many(&[id.to_string()], &mut |_, _| {}).await?;
        Ok(match done.into_iter().next() {
            Some(BulkResult::Done(st) | BulkResult::Left(st)) => Some(st),
            Some(BulkResult::NoSuchJob) | None => None,
        })
    }

    /// Deletes finished jobs in `state` that finished before `before_ms`, with
    /// their history, log tail, cancel request and idempotency key (so the key
    /// can be used again). One Lua call per [`crate::store::bulk::BULK_CHUNK`]
    /// jobs re-checks each job where it deletes it: a job no longer in `state`
    /// since then (retried or resumed by another operator at the same time) is
    /// skipped, never deleted from under its new state.
    ///
    /// # Errors
    /// Redis errors (the chunks before the error were applied).
    pub async fn purge(&self, state: JobState, before_ms: i64) -> Result<Purged, StoreError> {
        let k = self.keys();
        let mut conn = self.conn();
        let ids: Vec<String> = conn
            .zrangebyscore(k.state(state.as_str()), "-inf", before_ms)
            .await?;
        let mut out = Purged::default();
        for chunk in ids.chunks(crate::store::bulk::BULK_CHUNK) {
            let mut inv = PURGE_SCRIPT.prepare_invoke();
            inv.key(k.jobs())
                .key(k.state(state.as_str()))
                .arg(k.job_prefix())
                .arg(k.history(""))
                .arg(k.log_tail(""))
                .arg(k.cancel(""))
                .arg(k.idempotency(""))
                .arg(state.as_str())
                .arg(before_ms);
            for id in chunk {
                inv.arg(id);
            }
            let done: Vec<i64> = inv.invoke_async(&mut conn).await?;
            for (id, d) in chunk.iter().zip(done) {
                if d == 1 {
                    out.purged += 1;
                } else {
                    out.skipped.push(id.clone());
                }
            }
        }
        Ok(out)
    }

    /// Events after stream id `after` (`0` for all, `$` for only new ones), at most
    /// `count`, waiting up to `block` when there are none.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn events(
        &self,
        after: &str,
        count: usize,
        block: Option<Duration>,
    ) -> Result<Vec<Event>, StoreError> {
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT").arg(count.max(1));
        if let Some(b) = block {
            cmd.arg("BLOCK").arg(b.as_millis() as u64);
        }
        cmd.arg("STREAMS").arg(self.keys().events()).arg(after);
        let reply: Option<redis::streams::StreamReadReply> =
            cmd.query_async(&mut self.conn()).await?;
        Ok(reply
            .map(|r| r.keys)
            .unwrap_or_default()
            .into_iter()
            .flat_map(|k| k.ids)
            .map(Event::from)
            .collect())
    }

    /// The last `count` events, oldest first.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn recent_events(&self, count: usize) -> Result<Vec<Event>, StoreError> {
        let reply: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
            .arg(self.keys().events())
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(count.max(1))
            .query_async(&mut self.conn())
            .await?;
        let mut out: Vec<Event> = reply.ids.into_iter().map(Event::from).collect();
        out.reverse();
        Ok(out)
    }

    /// Redis's clock (`TIME`), in ms since the epoch: the one clock of every
    /// score that hosts compare (slots, registry entries, timers).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn redis_now_ms(&self) -> Result<i64, StoreError> {
        let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(&mut self.conn()).await?;
        Ok(secs * 1000 + micros / 1000)
    }

    /// Records a worker's heartbeat in the registry, at Redis's time (its
    /// `heartbeat_ms` is replaced by it), so a host's skewed clock neither
    /// drops other live workers nor keeps a dead one.
    ///
    /// # Errors
    /// `known` is every pool of the worker's table: each it does not serve
    /// (any more) is taken off.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn worker_heartbeat(
        &self,
        info: &WorkerInfo,
        known: &[String],
    ) -> Result<(), StoreError> {
        let mut info = info.clone();
        info.heartbeat_ms = self.redis_now_ms().await?;
        let info = &info;
        let json = serde_json::to_string(info).unwrap_or_default();
        let until = info.heartbeat_ms + info.stale_after_ms;
        let mut pipe = redis::pipe();
        pipe.hset(self.keys().workers(), &info.id, json)
            .ignore()
            .zadd(self.keys().servers(), &info.id, until)
            .ignore()
            .zrembyscore(self.keys().servers(), "-inf", info.heartbeat_ms)
            .ignore();
        for pool in known.iter().chain(&info.pools) {
            let key = self.keys().serves(pool);
            if info.pools.contains(pool) {
                pipe.zadd(&key, &info.id, until).ignore();
            } else {
                pipe.zrem(&key, &info.id).ignore();
            }
            pipe.zrembyscore(&key, "-inf", info.heartbeat_ms).ignore();
        }
        let _: () = pipe.query_async(&mut self.conn()).await?;
        Ok(())
    }

    /// Removes a worker from the registry (on clean shutdown).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn worker_gone(&self, id: &str, known: &[String]) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.hdel(self.keys().workers(), id)
            .ignore()
            .zrem(self.keys().servers(), id)
            .ignore();
        for pool in known {
            pipe.zrem(self.keys().serves(pool), id).ignore();
        }
        let _: () = pipe.query_async(&mut self.conn()).await?;
        Ok(())
    }

    /// Live workers; entries whose heartbeat is older than their own stale limit
    /// are dropped from the registry.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn live_workers(&self) -> Result<Vec<WorkerInfo>, StoreError> {
        let mut conn = self.conn();
        let all: HashMap<String, String> = conn.hgetall(self.keys().workers()).await?;
        let now = self.redis_now_ms().await?;
        let mut live = Vec::new();
        for (id, json) in all {
            match serde_json::from_str::<WorkerInfo>(&json) {
                Ok(w) if now - w.heartbeat_ms <= w.stale_after_ms => live.push(w),
                _ => {
                    let _: () = conn.hdel(self.keys().workers(), &id).await?;
                }
            }
        }
        live.sort_by(|a, b| a.host.cmp(&b.host).then(a.id.cmp(&b.id)));
        Ok(live)
    }
}
