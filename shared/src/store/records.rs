//! Reading jobs: one record (packed or its own hash), many in one round
//! trip, a state, the ids and counts per state, the queue's depth, and waiting
//! for a job to finish.

use std::{collections::HashMap, time::Duration};

use redis::AsyncCommands;

use crate::{
    record::{JobRecord, RecordView, Unreadable},
    status::JobState,
    store::{apalis_config, JobStore, StoreError},
};

impl JobStore {
    /// Reads a record, `None` if there is no such job.
    ///
    /// # Errors
    /// Redis errors or a corrupt record.
    pub async fn get(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        let ids = [id.to_string()];
        let read = self.read_records(&ids).await?.pop().flatten();
        read.transpose()
            .map_err(|e| StoreError::Corrupt(id.to_string(), e))
    }

    /// Job `id` as it reads: its record, or, for a record that does not parse,
    /// which field and why (see [`RecordView`]); `None` if there is no such job.
    ///
    /// # Errors
    /// Redis errors only: an unreadable record is the job's problem.
    pub async fn view(&self, id: &str) -> Result<Option<RecordView>, StoreError> {
        let ids = [id.to_string()];
        let read = self.read_records(&ids).await?.pop().flatten();
        Ok(read.map(|r| match r {
            Ok(rec) => RecordView::Ok(rec),
            Err(e) => RecordView::Unreadable {
                id: id.to_string(),
                problem: Unreadable::from_error(&e),
            },
        }))
    }

    /// The records of `ids`, in one round trip: `None` for no such job, the
    /// reason for a corrupt one. A job is its own hash, or, while nothing has
    /// touched it since enqueue, its packed record in [`Keys::fresh`]; fields
    /// of its own hash win over packed ones.
    ///
    /// # Errors
    /// Redis errors.
    #[allow(clippy::type_complexity)]
    pub async fn read_records(
        &self,
        ids: &[String],
    ) -> Result<Vec<Option<Result<JobRecord, String>>>, StoreError> {
        // The packed record first, then the job's own hash: a job opened in
        // between is seen in one place or both, never in neither.
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.hget(self.keys.fresh(), id).hgetall(self.keys.job(id));
        }
        let read: Vec<(HashMap<String, String>, Option<String>)> = {
            let flat: Vec<redis::Value> = pipe.query_async(&mut self.conn.clone()).await?;
            flat.chunks(2)
                .map(|pair| {
                    Ok((
                        redis::from_redis_value(pair[1].clone())?,
                        redis::from_redis_value(pair[0].clone())?,
                    ))
                })
                .collect::<Result<_, redis::RedisError>>()?
        };
        Ok(read
            .into_iter()
            .map(|(mut fields, packed)| {
                if let Some(packed) = packed {
                    if let Err(e) = JobRecord::unpack_into(&mut fields, &packed) {
                        return Some(Err(e));
                    }
                }
                (!fields.is_empty()).then(|| JobRecord::from_fields(fields))
            })
            .collect())
    }

    /// Only job `id`'s state (not the record), `None` if there is no such job.
    ///
    /// # Errors
    /// Redis errors or a state that is not one.
    pub async fn state_of(&self, id: &str) -> Result<Option<JobState>, StoreError> {
        let mut conn = self.conn.clone();
        // Packed first (see `read_records`).
        let (packed, state): (Option<String>, Option<String>) = redis::pipe()
            .hget(self.keys.fresh(), id)
            .hget(self.keys.job(id), "state")
            .query_async(&mut conn)
            .await?;
        if let (None, Some(packed)) = (&state, packed) {
            return JobRecord::from_packed(&packed)
                .map(|r| Some(r.state))
                .map_err(|e| StoreError::Corrupt(id.to_string(), e));
        }
        state
            .map(|s| {
                s.parse::<JobState>()
                    .map_err(|_| StoreError::Corrupt(id.to_string(), format!("state `{s}`")))
            })
            .transpose()
    }

    /// Waits until job `id` reaches a final state, woken by each of its moves
    /// (pub/sub) and re-reading every `poll` as a safety net; calls `progress`
    /// on each state change. Returns `None` if the job does not exist.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn wait_final(
        &self,
        id: &str,
        poll: Duration,
        mut progress: impl FnMut(&JobRecord),
    ) -> Result<Option<JobRecord>, StoreError> {
        let mut last = None;
        // Told of every move (`move.lua` publishes on `{ns}:moved:{id}`),
        // subscribed before the first read so no move falls between; `poll`
        // is then only a safety re-read (a final state written by another
        // script, a lost message). Without pub/sub, it polls.
        let mut moved = self.subscribe(&[self.keys().moved(id)]).await.ok();
        loop {
            let Some(rec) = self.get(id).await? else {
                return Ok(None);
            };
            if last != Some(rec.state) {
                progress(&rec);
                last = Some(rec.state);
            }
            if rec.state.is_final() {
                return Ok(Some(rec));
            }
            match moved.as_mut() {
                Some(ps) => {
                    let _ =
                        tokio::time::timeout(poll, futures::StreamExt::next(&mut ps.on_message()))
                            .await;
                }
                None => tokio::time::sleep(poll).await,
            }
        }
    }

    /// Deletes apalis's task data of deliveries that finished more than `age` ago
    /// (apalis-redis keeps them forever otherwise). Returns how many.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn vacuum(&self, age: Duration) -> Result<usize, StoreError> {
        use apalis_core::backend::Vacuum;
        let mut queue = self.queue.clone();
        queue
            .vacuum_before(age)
            .await
            .map_err(|e| StoreError::Queue(e.to_string()))
    }

    /// Ids of jobs in `state`, oldest first.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn ids_in_state(&self, state: JobState) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn.clone();
        let index = self.keys.state(state.as_str());
        if state != JobState::Queued {
            return Ok(conn.zrange(index, 0, -1).await?);
        }
        // With the jobs nothing has touched since enqueue, read at the same
        // instant (a job opened meanwhile moves from one to the other).
        let (mut ids, fresh): (Vec<String>, Vec<String>) = redis::pipe()
            .atomic()
            .zrange(index, 0, -1)
            .hkeys(self.keys.fresh())
            .query_async(&mut conn)
            .await?;
        ids.extend(fresh);
        ids.sort();
        Ok(ids)
    }

    /// Number of jobs in each state.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn state_counts(&self) -> Result<Vec<(JobState, u64)>, StoreError> {
        // At one instant: a job opened meanwhile moves from the hash of new
        // jobs to the `queued` index.
        let mut pipe = redis::pipe();
        pipe.atomic();
        for st in crate::status::ALL_STATES {
            pipe.zcard(self.keys.state(st.as_str()));
        }
        pipe.hlen(self.keys.fresh());
        let mut conn = self.conn.clone();
        let mut counts: Vec<u64> = pipe.query_async(&mut conn).await?;
        // Jobs nothing has touched since enqueue are queued, and in no index
        // of a state yet.
        let fresh = counts.pop().unwrap_or(0);
        Ok(crate::status::ALL_STATES
            .iter()
            .copied()
            .zip(counts)
            .map(|(st, n)| (st, if st == JobState::Queued { n + fresh } else { n }))
            .collect())
    }

    /// Jobs waiting to start: parked in a pool's lane (see [`crate::store::park`]) or
    /// as a delivery in the apalis queue (active list plus scheduled set).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn queue_depth(&self) -> Result<u64, StoreError> {
        let cfg = apalis_config(&self.keys);
        let mut conn = self.conn.clone();
        let (active, scheduled): (u64, u64) = redis::pipe()
            .llen(cfg.active_jobs_list())
            .zcard(cfg.scheduled_jobs_set())
            .query_async(&mut conn)
            .await?;
        let mut parked = 0;
        for pool in self.parked_pools().await? {
            parked += self.parked(&pool).await?.total();
        }
        Ok(active + scheduled + parked)
    }
}
