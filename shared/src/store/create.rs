//! Enqueue: new records in, parked in their pools' lanes, at close to the speed
//! Redis writes plain commands.
//!
//! A chunk of jobs (at most [`ENQUEUE_CHUNK`]) goes in as one `MULTI`/`EXEC`,
//! so all of it is written or none of it, with no Lua per job:
//!
//! 1. Places in line (`order`s, from `INCRBY {ns}:order`) are reserved ahead:
//!    a batch reserves its first two chunks' worth, and each chunk's
//!    transaction reserves the next chunk's ([`Places`]), so a chunk is one
//!    round trip; a lone job reserves its place first.
//! 2. In the transaction: one `HSET` of the chunk's records, each packed as one
//!    JSON string ([`JobRecord::packed`]), into one hash of new jobs
//!    ([`Keys::fresh`](crate::keys::Keys::fresh), id → record), not a key
//!    each; one `ZADD` into the index of all jobs and one per lane for the
//!    whole chunk (the `queued` state's index gets a job when it is opened:
//!    the queued jobs are that index and the hash of new jobs); the lanes'
//!    sets and the pools' wake-ups; then [`FINISH`], one Lua call for what
//!    needs a decision: idempotency keys (a duplicate's record is taken out
//!    again, in the same transaction), dry runs' deliveries (a dry run needs
//!    no slot) and the `enqueued` event.
//!
//! The first script that touches a job moves its record to the job's own hash,
//! field by field ([`OPEN_LUA`]); every script that reads or changes a job
//! opens it first, and the readers of whole records look in both places
//! ([`JobStore::get`]). Measured in `BENCHMARKS.md`: a key and hash per job
//! cost Redis more than the rest of enqueue, and Lua's handling of each
//! argument more than the write.
//!
//! Places in line are given out ahead of the transaction, so two producers
//! enqueueing at the same moment line up in the order they reserved places,
//! which may differ by a chunk or two from the order their transactions
//! landed in; within one producer the order is exact.

use std::{collections::BTreeMap, sync::LazyLock};

use crate::{
    clock::now_ms,
    delivery::new_task_id,
    record::{placement, JobRecord},
    store::{
        lua, now_rfc3339,
        script_args::{FinishArgs, KeyEntry},
        JobStore, StoreError, WAIT_REPLICAS_MS,
    },
};

/// Jobs per [`JobStore::create`] call when enqueueing a batch: each call is one
/// transaction, short enough not to hold Redis up.
pub const ENQUEUE_CHUNK: usize = 500;

/// What happened to one record given to [`JobStore::create`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// Written, with this id.
    New(String),
    /// Not written: a job with the same idempotency key exists, with this id.
    Existing(String),
}

impl Created {
    /// The job's id (new or existing).
    pub fn id(&self) -> &str {
        match self {
            Created::New(id) | Created::Existing(id) => id,
        }
    }
}

/// The `open` snippet (`lua/open.lua`; scripts take it with
/// `--- @include "open"`): `fail_unreadable(job, id, field, why)` fails a job whose
/// record does not parse (error `record unreadable: FIELD: why`, the record
/// kept), and `open(job)` (a job's key, `{ns}:job:{id}`) moves the job's
/// record, if it is still where enqueue wrote it (the hash `{ns}:new`, see
/// [`Keys::fresh`](crate::keys::Keys::fresh)), to the job's own hash, field by
/// field, and enters it in its state's index (`queued`, scored by when it was
/// enqueued); a no-op for any other job. Every script that reads or changes a
/// job (its existence included) calls it first. The names come from the job's
/// key: ids have no `:`. A packed record that is not a JSON object of strings
/// is not opened: its text is kept on the job's hash (`packed`) and the job
/// fails (`record unreadable: packed: ...`); nothing is removed before that
/// check. (`failed` is spelled out here: the prelude stands alone; a unit test
/// holds it to [`JobState::Failed`](crate::status::JobState).)
pub const OPEN_LUA: &str = include_str!("lua/open.lua");

/// The `finish` script (`lua/finish.lua`, its arguments in
/// [`FinishArgs`](crate::store::script_args::FinishArgs)): the last command of
/// an enqueue transaction (see the module's docs). Sent as `EVAL`, inside the
/// transaction.
static FINISH_SCRIPT: LazyLock<String> = LazyLock::new(|| lua::source("finish"));

/// Where the jobs of one agent (with its model) and priority wait: worked out
/// once per chunk for each such pair, not once per job (issue 34).
struct Spot<'a> {
    agent: &'a str,
    priority: crate::priority::Priority,
    /// Its pool and model (see [`placement`]).
    pool: String,
    model: String,
    /// Its lane's model (see [`Priority::lane`](crate::priority::Priority::lane)).
    lane_model: String,
    /// Its lane's key.
    lane: String,
}

impl<'a> Spot<'a> {
    /// The index in `spots` of `rec`'s spot, added if it is not there yet.
    fn find(spots: &mut Vec<Spot<'a>>, k: &crate::keys::Keys, rec: &'a JobRecord) -> usize {
        let (agent, priority) = (rec.input.agent.as_str(), rec.input.priority);
        if let Some(i) = spots
            .iter()
            .position(|s| s.agent == agent && s.priority == priority)
        {
            return i;
        }
        let (pool, model) = placement(&rec.input);
        let lane_model = priority.lane(&model);
        let lane = k.lane(&pool, &lane_model);
        spots.push(Spot {
            agent,
            priority,
            pool,
            model,
            lane_model,
            lane,
        });
        spots.len() - 1
    }
}

/// One record's part of a chunk.
struct Placed<'a> {
    rec: &'a JobRecord,
    /// Where it waits (its pool and model even when it is in no lane).
    spot: &'a Spot<'a>,
    /// Its lane's key; `None` for a dry run (delivered at once).
    lane: Option<&'a str>,
    /// A dry run's delivery.
    task: Option<String>,
    /// A delayed job's due time (ms): it waits in `{ns}:scheduled`, in no lane.
    due: Option<i64>,
}

/// Places in line (enqueue `order`s) reserved for jobs not yet written, in
/// increasing order: a batch reserves them a chunk or two ahead, so writing a
/// chunk never waits for a round trip of its own to learn its places.
#[derive(Debug, Default)]
pub struct Places {
    /// Reserved ranges, first to last.
    free: std::collections::VecDeque<std::ops::RangeInclusive<i64>>,
}

impl Places {
    /// How many places are reserved and unused.
    pub fn len(&self) -> usize {
        self.free.iter().map(|r| r.clone().count()).sum()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds what `INCRBY {ns}:order n` answered with `last`.
    fn add(&mut self, last: i64, n: usize) {
        if n > 0 {
            self.free.push_back(last - n as i64 + 1..=last);
        }
    }

    /// Adds `other`'s places after these (reserved later, so higher).
    pub fn append(&mut self, other: Places) {
        self.free.extend(other.free);
    }

    /// The next `n` places, if that many are reserved.
    pub fn take(&mut self, n: usize) -> Option<Vec<i64>> {
        if self.len() < n {
            return None;
        }
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let range = self.free.front_mut().expect("counted above");
            let want = (n - out.len()) as i64;
            let end = (*range.start() + want - 1).min(*range.end());
            out.extend(*range.start()..=end);
            if end == *range.end() {
                self.free.pop_front();
            } else {
                *range = end + 1..=*range.end();
            }
        }
        Some(out)
    }
}

impl JobStore {
    /// Writes new records (state `queued`) and parks each in its pool's lane,
    /// in order; a dry run, which needs no slot, gets a delivery at once. A
    /// record whose idempotency key already names an existing job is not
    /// written: its answer is [`Created::Existing`] with that job's id (a key
    /// repeated within `records` names the first one).
    ///
    /// Two round trips (places in line, then the transaction). A batch uses
    /// [`JobStore::reserve_places`] and [`JobStore::create_at`] instead: one.
    ///
    /// # Errors
    /// Redis errors. When Redis itself refused the transaction, nothing of this
    /// call was written.
    pub async fn create(&self, records: &[JobRecord]) -> Result<Vec<Created>, StoreError> {
        let mut places = Places::default();
        self.reserve_places(records.len(), &mut places).await?;
        let orders = places.take(records.len()).expect("reserved above");
        self.create_at(records, &orders, 0, &mut places).await
    }

    /// Reserves `n` more places in line into `places`.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn reserve_places(&self, n: usize, places: &mut Places) -> Result<(), StoreError> {
        if n > 0 {
            let last: i64 = redis::cmd("INCRBY")
                .arg(self.keys().order())
                .arg(n)
                .query_async(&mut self.conn())
                .await?;
            places.add(last, n);
        }
        Ok(())
    }

    /// [`JobStore::create`] at the given places in line (`orders[i]` for
    /// `records[i]`, increasing), in one transaction that also reserves
    /// `reserve` more places into `places` for what comes next: see
    /// [`JobStore::prepare_create`] and [`JobStore::send_create`].
    ///
    /// # Errors
    /// Redis errors. When Redis itself refused the transaction, nothing of this
    /// call was written (and nothing reserved).
    pub async fn create_at(
        &self,
        records: &[JobRecord],
        orders: &[i64],
        reserve: usize,
        places: &mut Places,
    ) -> Result<Vec<Created>, StoreError> {
        let tx = self.prepare_create(records, orders, reserve);
        self.send_create(tx, places).await
    }

    /// Builds the transaction that writes `records` at places `orders`
    /// (`orders[i]` for `records[i]`, increasing) and reserves `reserve` more
    /// places, without sending it: a batch builds the next chunk's while
    /// Redis runs the last one. About one Redis command per chunk: callers
    /// send large batches in chunks (see [`ENQUEUE_CHUNK`]).
    pub fn prepare_create(
        &self,
        records: &[JobRecord],
        orders: &[i64],
        reserve: usize,
    ) -> CreateTx {
        assert_eq!(records.len(), orders.len(), "one place per record");
        let ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
        if records.is_empty() {
            return CreateTx {
                pipe: None,
                ids,
                reserve: 0,
            };
        }
        let k = self.keys();
        let count = records.len() as i64;
        let now = now_ms();
        let now_text = now.to_string();
        let created = now_rfc3339();
        let mut spots = Vec::new();
        let spot_of: Vec<usize> = records
            .iter()
            .map(|rec| Spot::find(&mut spots, k, rec))
            .collect();
        let placed: Vec<Placed> = records
            .iter()
            .zip(spot_of)
            .map(|(rec, spot)| {
                let spot = &spots[spot];
                // Waits for its parents in no lane (store::flow); `--after`
                // with `--at` is refused at enqueue, so a dependent job has no due time.
                let due = if rec.after.is_empty() {
                    crate::store::scheduled::due_ms(rec)
                } else {
                    None
                };
                let (lane, task) = if due.is_some() || !rec.after.is_empty() {
                    (None, None)
                } else if rec.input.dry_run {
                    (None, Some(new_task_id()))
                } else {
                    (Some(spot.lane.as_str()), None)
                };
                Placed {
                    rec,
                    spot,
                    lane,
                    task,
                    due,
                }
            })
            .collect();

        let mut pipe = redis::pipe();
        pipe.atomic();
        let mut lanes: BTreeMap<&str, Vec<(i64, &str)>> = BTreeMap::new();
        // One HSET of the chunk's packed records, each written into one
        // buffer and copied once into the command (issue 34).
        let mut fresh = redis::cmd("HSET");
        fresh.arg(k.fresh());
        let mut packed = 0usize;
        let mut buf = Vec::with_capacity(1024);
        let mut pools: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        let mut scheduled: Vec<(i64, &str)> = Vec::new();
        let mut order_text = String::with_capacity(20);
        for (p, &order) in placed.iter().zip(orders) {
            order_text.clear();
            agentq_domain::flat::push_decimal(&mut order_text, order.into());
            // At most seven fields of the store's own, on the stack.
            let mut extra = Extra::default();
            extra.push("order", &order_text);
            extra.push("task_at", &now_text);
            match (p.lane, &p.task) {
                (Some(lane), _) => {
                    extra.push("parked", "lane");
                    lanes.entry(lane).or_default().push((order, &p.rec.id));
                    let models = pools.entry(p.spot.pool.as_str()).or_default();
                    if !models.contains(&p.spot.lane_model.as_str()) {
                        models.push(&p.spot.lane_model);
                    }
                }
                (None, Some(task)) => extra.push("task", task),
                // Scheduled; without a due time it waits for its parents.
                (None, None) => {
                    if let Some(due) = p.due {
                        extra.push("parked", crate::store::scheduled::PARKED_SCHEDULED);
                        scheduled.push((due, &p.rec.id));
                    }
                }
            }
            if !p.rec.input.priority.is_normal() {
                extra.push("prio", p.rec.input.priority.as_str());
            }
            extra.push("pool", &p.spot.pool);
            extra.push("model", &p.spot.model);
            if p.due.is_some() {
                // Written opened, in its own hash: it is `scheduled`, not one
                // of the queued jobs the hash of new jobs holds.
                let mut fields = p.rec.fields_to_create();
                fields.extend(extra.fields().iter().map(|(f, v)| (*f, v.to_string())));
                pipe.hset_multiple(k.job(&p.rec.id), &fields).ignore();
            } else {
                buf.clear();
                p.rec.pack_into(&mut buf, extra.fields());
                fresh.arg(&p.rec.id).arg(&buf[..]);
                packed += 1;
            }
        }
        if packed > 0 {
            pipe.add_command(fresh).ignore();
        }
        let index: Vec<(i64, &str)> = records.iter().map(|r| (now, r.id.as_str())).collect();
        pipe.zadd_multiple(k.jobs(), &index).ignore();

        for (lane, members) in &lanes {
            pipe.zadd_multiple(*lane, members).ignore();
        }
        crate::store::scheduled::add_to_create(&mut pipe, k, now, &scheduled);
        for (pool, models) in &pools {
            pipe.sadd(k.lanes(pool), models).ignore();
            pipe.sadd(k.pools(), pool).ignore();
            pipe.publish(k.wake(), pool).ignore();
        }

        let keyed = records.iter().any(|r| !r.key.is_empty());
        let scheduled_key = k.scheduled();
        FinishArgs {
            keys: k,
            now_ms: &now_text,
            created: &created,
            first: &records[0].id,
            last: &records[records.len() - 1].id,
            count,
            keyed: keyed.then(|| {
                placed
                    .iter()
                    .map(|p| KeyEntry {
                        id: &p.rec.id,
                        key: &p.rec.key,
                        lane: match (p.lane, p.due) {
                            (Some(lane), _) => lane,
                            (None, Some(_)) => &scheduled_key,
                            (None, None) => "",
                        },
                    })
                    .collect()
            }),
            dry_runs: placed
                .iter()
                .filter_map(|p| Some((p.rec.id.as_str(), p.task.as_deref()?)))
                .collect(),
        }
        .add_eval(&mut pipe, &FINISH_SCRIPT);
        self.add_flow_eval(&mut pipe, records);
        if reserve > 0 {
            pipe.cmd("INCRBY").arg(k.order()).arg(reserve);
        }
        CreateTx {
            pipe: Some(pipe),
            ids,
            reserve,
        }
    }

    /// Sends a transaction [`JobStore::prepare_create`] built; the places it
    /// reserved go into `places`. One answer per record, in order.
    ///
    /// # Errors
    /// Redis errors. When Redis itself refused the transaction, nothing of it
    /// was written (and nothing reserved).
    pub async fn send_create(
        &self,
        tx: CreateTx,
        places: &mut Places,
    ) -> Result<Vec<Created>, StoreError> {
        let CreateTx { pipe, ids, reserve } = tx;
        let Some(pipe) = pipe else {
            return Ok(Vec::new());
        };
        let mut conn = self.conn();
        let existing: Vec<String> = if reserve > 0 {
            let (existing, last): (Vec<String>, i64) = pipe.query_async(&mut conn).await?;
            places.add(last, reserve);
            existing
        } else {
            let (existing,): (Vec<String>,) = pipe.query_async(&mut conn).await?;
            existing
        };
        if self.min_replicas > 0 {
            // WAIT covers every write made on this connection so far, the
            // transaction's included.
            let acked: u32 = redis::cmd("WAIT")
                .arg(self.min_replicas)
                .arg(WAIT_REPLICAS_MS)
                .query_async(&mut conn)
                .await?;
            if acked < self.min_replicas {
                return Err(StoreError::NotReplicated {
                    wanted: self.min_replicas,
                    acked,
                });
            }
        }
        Ok(ids
            .into_iter()
            .enumerate()
            .map(|(n, id)| match existing.get(n) {
                Some(dup) if !dup.is_empty() => Created::Existing(dup.clone()),
                _ => Created::New(id),
            })
            .collect())
    }
}

/// A record's fields that only the store knows (place in line, pool,
/// delivery: see [`JobRecord::pack_into`]), at most [`Extra::MAX`], kept on
/// the stack.
#[derive(Default)]
struct Extra<'a> {
    fields: [(&'static str, &'a str); Extra::MAX],
    len: usize,
}

impl<'a> Extra<'a> {
    const MAX: usize = 7;

    fn push(&mut self, field: &'static str, value: &'a str) {
        self.fields[self.len] = (field, value);
        self.len += 1;
    }

    fn fields(&self) -> &[(&'static str, &'a str)] {
        &self.fields[..self.len]
    }
}

/// An enqueue transaction built and not yet sent (see
/// [`JobStore::prepare_create`]).
pub struct CreateTx {
    /// `None` for no records.
    pipe: Option<redis::Pipeline>,
    /// The records' ids, in order.
    ids: Vec<String>,
    /// Places it reserves.
    reserve: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_prelude_fails_a_job_by_the_failed_state_name() {
        let failed = crate::status::JobState::Failed.as_str();
        assert!(OPEN_LUA.contains(&format!("'state', '{failed}'")));
        assert!(OPEN_LUA.contains(&format!("K.state('{failed}')")));
    }

    #[test]
    fn places_are_taken_in_order_across_reservations() {
        let mut p = Places::default();
        assert_eq!(p.take(1), None);
        p.add(10, 3); // 8..=10
        p.add(20, 2); // 19..=20
        assert_eq!(p.len(), 5);
        assert_eq!(p.take(2), Some(vec![8, 9]));
        assert_eq!(p.take(4), None, "only three left");
        assert_eq!(p.take(3), Some(vec![10, 19, 20]));
        assert!(p.is_empty());
        p.add(0, 0);
        assert!(p.is_empty());
    }

    #[test]
    fn open_finds_new_jobs_where_enqueue_puts_them() {
        let keys = crate::keys::Keys::new("ns");
        // `open` takes the namespace from a job's key (`ns_of_job`, which
        // checks it against `K.job`) and finds new jobs under `K.fresh()`,
        // the key enqueue writes.
        assert_eq!(keys.job("01J"), format!("ns{}01J", ":job:"));
        assert_eq!(":job:".len(), 5);
        assert!(OPEN_LUA.contains("#job - #id - 5)"));
        assert!(OPEN_LUA.contains("local fresh = K.fresh()"));
    }
}
