//! Which jobs lists show: `agentq list`'s filter, the console's pages
//! (newest first, with a cursor), and the counts by reason and by bucket.

use redis::AsyncCommands;
use serde::Serialize;

use crate::{
    record::{JobRecord, RecordView, Unreadable},
    status::JobState,
    store::{JobStore, StoreError},
};

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
    /// Only this priority.
    pub priority: Option<crate::priority::Priority>,
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
            && self.priority.is_none_or(|p| rec.input.priority == p)
    }

    fn since_ok(&self, rec: &JobRecord) -> bool {
        self.since_ms
            .is_none_or(|since| rec.created_at.ms() >= since)
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
        if let (Some(state), None, None, None, None, None) = (
            filter.state,
            &filter.agent,
            &filter.repo,
            filter.since_ms,
            &filter.search,
            filter.priority,
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
}
