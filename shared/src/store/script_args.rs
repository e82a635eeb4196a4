//! The arguments of the store's larger Lua scripts, as typed structs.
//!
//! Each struct builds its script's `KEYS` and `ARGV` in one place, in the
//! order the script's header (`lua/NAME.lua`) lists them. Scripts with a few
//! arguments are called where they are used.

use redis::ScriptInvocation;

use crate::{
    delivery::queue_keys,
    keys::Keys,
    status::JobState,
    store::{Move, ParkIn, EVENTS_MAX_LEN},
};

/// A Lua flag: `'1'` for true, `''` for false.
fn flag(b: bool) -> &'static str {
    if b {
        "1"
    } else {
        ""
    }
}

/// A delivery a script pushes.
#[derive(Debug, Clone)]
pub struct Push {
    /// Its apalis task id.
    pub task: String,
    /// When it is due (ms).
    pub run_at_ms: i64,
    /// First in line.
    pub front: bool,
}

/// The `move` script's arguments (`lua/move.lua`).
pub struct MoveArgs<'a> {
    /// The namespace's keys.
    pub keys: &'a Keys,
    /// The job.
    pub id: &'a str,
    /// Now (ms).
    pub now_ms: i64,
    /// Now (RFC 3339).
    pub now: String,
    /// The delivery to push, if any.
    pub push: Option<Push>,
    /// The change.
    pub m: &'a Move<'a>,
}

impl MoveArgs<'_> {
    /// The call of `script` with these arguments.
    pub fn invocation<'s>(&self, script: &'s redis::Script) -> ScriptInvocation<'s> {
        let k = self.keys;
        let m = self.m;
        let mut inv = script.prepare_invoke();
        for q in queue_keys(k) {
            inv.key(q); // KEYS[1..5]
        }
        inv.key(k.job(self.id)) // KEYS[6]
            .key(k.events()) // KEYS[7]
            .key(k.history(self.id)) // KEYS[8]
            .key(k.run_lease(self.id)); // KEYS[9]
        let (task, run_at, front) = match &self.push {
            Some(p) => (p.task.as_str(), p.run_at_ms, p.front),
            None => ("", 0, false),
        };
        inv.arg(k.state_prefix()) // ARGV[1]
            .arg(m.state.as_str()) // ARGV[2]
            .arg(self.now_ms) // ARGV[3]
            .arg(&self.now) // ARGV[4]
            .arg(m.expect_seq.map(|s| s.to_string()).unwrap_or_default()) // ARGV[5]
            .arg(m.token.unwrap_or_default()) // ARGV[6]
            .arg(EVENTS_MAX_LEN) // ARGV[7]
            .arg(task) // ARGV[8]
            .arg(run_at) // ARGV[9]
            .arg(flag(front)) // ARGV[10]
            .arg(flag(m.release)) // ARGV[11]
            .arg(flag(m.bump_attempt)) // ARGV[12]
            .arg(flag(m.quiet)) // ARGV[13]
            .arg(k.namespace()) // ARGV[14]
            .arg(match &m.park {
                None => String::new(),
                Some(ParkIn::Lane) => "lane".to_string(),
                Some(ParkIn::Workspace(ws)) => format!("ws:{ws}"),
            }) // ARGV[15]
            .arg(flag(m.keep_slot)) // ARGV[16]
            .arg(flag(m.reorder)); // ARGV[17]
        for (f, v) in &m.fields {
            inv.arg(*f).arg(v); // ARGV[18..]
        }
        inv
    }
}

/// The `wake` script's arguments (`lua/wake.lua`).
pub struct WakeArgs<'a> {
    /// The namespace's keys.
    pub keys: &'a Keys,
    /// The pool woken.
    pub pool: &'a str,
    /// The pool's pacing as the script takes it
    /// ([`agentq_domain::pacing::Pacing::lua_arg`]), empty for none.
    pub pacing: String,
    /// Slot lease (ms).
    pub lease_ms: u64,
    /// The pool's limit (0: none).
    pub pool_limit: u32,
    /// Room of a pool without a limit.
    pub window: u32,
    /// Pacing between starts (ms, 0: none).
    pub rate_ms: u64,
    /// Task ids for the deliveries it may push (one per grant at most).
    pub tasks: Vec<String>,
    /// Model → its limit.
    pub model_limits: Vec<(&'a str, u32)>,
    /// A lane's head older than this counts one priority level higher (ms,
    /// 0: never; `priority_age_secs`).
    pub priority_age_ms: u64,
}

impl WakeArgs<'_> {
    /// The call of `script` with these arguments.
    pub fn invocation<'s>(&self, script: &'s redis::Script) -> ScriptInvocation<'s> {
        let k = self.keys;
        let mut inv = script.prepare_invoke();
        for q in queue_keys(k) {
            inv.key(q); // KEYS[1..5]
        }
        inv.arg(k.namespace()) // ARGV[1]
            .arg(k.job_prefix()) // ARGV[2]
            .arg(self.pool) // ARGV[3]
            .arg(&self.pacing) // ARGV[4]
            .arg(self.lease_ms) // ARGV[5]
            .arg(self.pool_limit) // ARGV[6]
            .arg(self.window) // ARGV[7]
            .arg(self.rate_ms) // ARGV[8]
            .arg(self.priority_age_ms) // ARGV[9]
            .arg(self.tasks.len()); // ARGV[10]
        for t in &self.tasks {
            inv.arg(t); // ARGV[11..10+n]
        }
        for (model, n) in &self.model_limits {
            inv.arg(*model).arg(*n); // ARGV[11+n..]
        }
        inv
    }
}

/// The `rescue` script's arguments (`lua/rescue.lua`).
pub struct RescueArgs<'a> {
    /// The namespace's keys.
    pub keys: &'a Keys,
    /// The job.
    pub id: &'a str,
    /// apalis's set of registered workers.
    pub workers: String,
    /// The prefix of apalis's in-flight sets (one per worker).
    pub inflight_prefix: String,
    /// Now (ms).
    pub now_ms: i64,
    /// Now (RFC 3339).
    pub now: String,
    /// How long a delivery may be overdue before it counts as lost (ms).
    pub grace_ms: u64,
}

impl RescueArgs<'_> {
    /// The call of `script` with these arguments.
    pub fn invocation<'s>(&self, script: &'s redis::Script) -> ScriptInvocation<'s> {
        let k = self.keys;
        let mut inv = script.prepare_invoke();
        for q in queue_keys(k) {
            inv.key(q); // KEYS[1..5]
        }
        inv.key(k.job(self.id)) // KEYS[6]
            .key(k.run_lease(self.id)) // KEYS[7]
            .key(k.events()) // KEYS[8]
            .key(k.history(self.id)) // KEYS[9]
            .key(&self.workers) // KEYS[10]
            .key(k.rescued()) // KEYS[11]
            .arg(k.state_prefix()) // ARGV[1]
            .arg(self.now_ms) // ARGV[2]
            .arg(&self.now) // ARGV[3]
            .arg(EVENTS_MAX_LEN) // ARGV[4]
            .arg(self.grace_ms) // ARGV[5]
            .arg(k.namespace()) // ARGV[6]
            .arg(&self.inflight_prefix); // ARGV[7]
        inv
    }
}

/// One job of an enqueue chunk, for idempotency keys.
pub struct KeyEntry<'a> {
    /// The job's id.
    pub id: &'a str,
    /// Its idempotency key, or ''.
    pub key: &'a str,
    /// Its lane's key, or '' (a dry run).
    pub lane: &'a str,
}

/// The `finish` script's arguments (`lua/finish.lua`).
pub struct FinishArgs<'a> {
    /// The namespace's keys.
    pub keys: &'a Keys,
    /// Now (ms), as text.
    pub now_ms: &'a str,
    /// Created at (RFC 3339).
    pub created: &'a str,
    /// The chunk's first id.
    pub first: &'a str,
    /// The chunk's last id.
    pub last: &'a str,
    /// Jobs in the chunk.
    pub count: i64,
    /// Every job in input order, when any has a key (`None` otherwise).
    pub keyed: Option<Vec<KeyEntry<'a>>>,
    /// Dry runs' (id, task id): delivered at once.
    pub dry_runs: Vec<(&'a str, &'a str)>,
}

impl FinishArgs<'_> {
    /// Adds `EVAL script` with these arguments to `pipe`.
    pub fn add_eval(&self, pipe: &mut redis::Pipeline, script: &str) {
        let k = self.keys;
        let eval = pipe.cmd("EVAL").arg(script).arg(8);
        for q in queue_keys(k) {
            eval.arg(q); // KEYS[1..5]
        }
        let keyed = self.keyed.as_deref().unwrap_or_default();
        eval.arg(k.events()) // KEYS[6]
            .arg(k.jobs()) // KEYS[7]
            .arg(k.fresh()) // KEYS[8]
            .arg(k.namespace()) // ARGV[1]
            .arg(k.idempotency("")) // ARGV[2]
            .arg(k.job_prefix()) // ARGV[3]
            .arg(self.now_ms) // ARGV[4]
            .arg(self.created) // ARGV[5]
            .arg(EVENTS_MAX_LEN) // ARGV[6]
            .arg(self.first) // ARGV[7]
            .arg(self.last) // ARGV[8]
            .arg(self.count) // ARGV[9]
            .arg(keyed.len()); // ARGV[10]
        for e in keyed {
            eval.arg(e.id).arg(e.key).arg(e.lane); // ARGV[11..]: n x (id, key, lane)
        }
        for (id, task) in &self.dry_runs {
            eval.arg(*id).arg(*task); // then (id, task id) pairs
        }
    }
}

/// The arguments of the bulk scripts, `cancel_many` and `retry_many` (their
/// `bulk` snippet, `lua/bulk.lua`).
pub struct BulkArgs<'a> {
    /// The namespace's keys.
    pub keys: &'a Keys,
    /// Now (ms).
    pub now_ms: i64,
    /// Now (RFC 3339).
    pub now: String,
    /// The state the jobs were selected in (`None`: named by id).
    pub selected: Option<JobState>,
    /// The jobs.
    pub ids: &'a [String],
}

impl BulkArgs<'_> {
    /// The call of `script` with these arguments.
    pub fn invocation<'s>(&self, script: &'s redis::Script) -> ScriptInvocation<'s> {
        let k = self.keys;
        let mut inv = script.prepare_invoke();
        inv.key(k.events()) // KEYS[1]
            .arg(k.namespace()) // ARGV[1]
            .arg(k.job_prefix()) // ARGV[2]
            .arg(k.state_prefix()) // ARGV[3]
            .arg(self.now_ms) // ARGV[4]
            .arg(&self.now) // ARGV[5]
            .arg(k.run_lease("")) // ARGV[6]
            .arg(k.cancel("")) // ARGV[7]
            .arg(k.history("")) // ARGV[8]
            .arg(EVENTS_MAX_LEN) // ARGV[9]
            .arg(self.selected.map_or("", JobState::as_str)); // ARGV[10]
        for id in self.ids {
            inv.arg(id); // ARGV[11..]
        }
        inv
    }
}

/// The `purge_many` script's arguments (`lua/purge_many.lua`): one chunk of
/// the jobs a purge selected.
pub struct PurgeArgs<'a> {
    /// The namespace's keys.
    pub keys: &'a Keys,
    /// The state purged.
    pub state: JobState,
    /// Only jobs in `state` since before this (ms).
    pub before_ms: i64,
    /// The jobs.
    pub ids: &'a [String],
}

impl PurgeArgs<'_> {
    /// The call of `script` with these arguments.
    pub fn invocation<'s>(&self, script: &'s redis::Script) -> ScriptInvocation<'s> {
        let k = self.keys;
        let state = self.state.as_str();
        let mut inv = script.prepare_invoke();
        inv.key(k.jobs()) // KEYS[1]
            .key(k.state(state)) // KEYS[2]
            .arg(k.job_prefix()) // ARGV[1]
            .arg(k.history("")) // ARGV[2]
            .arg(k.log_tail("")) // ARGV[3]
            .arg(k.cancel("")) // ARGV[4]
            .arg(k.idempotency("")) // ARGV[5]
            .arg(state) // ARGV[6]
            .arg(self.before_ms); // ARGV[7]
        for id in self.ids {
            inv.arg(id); // ARGV[8..]
        }
        inv
    }
}

/// The `pool_outcome` script's arguments (`lua/pool_outcome.lua`): how one run
/// of a pool went, for its backoff.
pub struct PoolOutcomeArgs<'a> {
    /// The namespace's keys.
    pub keys: &'a Keys,
    /// The pool.
    pub pool: &'a str,
    /// The run failed fast (counts towards a pause); else the count starts
    /// over.
    pub fast_failure: bool,
    /// Fast failures in a row that pause the pool.
    pub failures_to_pause: u32,
    /// How long a pause lasts (ms).
    pub pause_ms: u64,
    /// When a pause begun now ends (RFC 3339).
    pub until: String,
    /// Now (RFC 3339).
    pub now: String,
}

impl PoolOutcomeArgs<'_> {
    /// The call of `script` with these arguments.
    pub fn invocation<'s>(&self, script: &'s redis::Script) -> ScriptInvocation<'s> {
        let k = self.keys;
        let mut inv = script.prepare_invoke();
        inv.key(k.fails(self.pool)) // KEYS[1]
            .key(k.backoff(self.pool)) // KEYS[2]
            .key(k.events()) // KEYS[3]
            .arg(if self.fast_failure { "1" } else { "0" }) // ARGV[1]
            .arg(self.failures_to_pause) // ARGV[2]
            .arg(self.pause_ms) // ARGV[3]
            .arg(&self.until) // ARGV[4]
            .arg(self.pool) // ARGV[5]
            .arg(EVENTS_MAX_LEN) // ARGV[6]
            .arg(&self.now); // ARGV[7]
        inv
    }
}

/// The `release_scheduled` script's arguments (`lua/release_scheduled.lua`).
pub struct ReleaseScheduledArgs<'a> {
    /// The namespace's keys.
    pub keys: &'a Keys,
    /// Most jobs one call moves.
    pub most: usize,
    /// Now (RFC 3339), for the records.
    pub now: String,
}

impl ReleaseScheduledArgs<'_> {
    /// The call of `script` with these arguments.
    pub fn invocation<'s>(&self, script: &'s redis::Script) -> ScriptInvocation<'s> {
        let k = self.keys;
        let mut inv = script.prepare_invoke();
        inv.key(k.events()) // KEYS[1]
            .arg(k.namespace()) // ARGV[1]
            .arg(k.job_prefix()) // ARGV[2]
            .arg(self.most) // ARGV[3]
            .arg(&self.now) // ARGV[4]
            .arg(crate::keys::SCHEDULED_TIMER) // ARGV[5]
            .arg(EVENTS_MAX_LEN); // ARGV[6]
        inv
    }
}

/// The `flow_add` script's arguments (`lua/flow_add.lua`): the jobs of one
/// enqueue chunk that have parents or a batch.
pub struct FlowAddArgs<'a> {
    /// The namespace's keys.
    pub keys: &'a Keys,
    /// Per job: id, parents (comma-separated), after_any, batch.
    pub jobs: Vec<(&'a str, &'a str, bool, &'a str)>,
}

impl FlowAddArgs<'_> {
    /// Adds `EVAL script` with these arguments to `pipe`, its answer ignored.
    pub fn add_eval(&self, pipe: &mut redis::Pipeline, script: &str) {
        let eval = pipe.cmd("EVAL").arg(script).arg(0);
        eval.arg(self.keys.namespace()) // ARGV[1]
            .arg(EVENTS_MAX_LEN); // ARGV[2]
        for (id, after, any, batch) in &self.jobs {
            eval.arg(*id).arg(*after).arg(flag(*any)).arg(*batch); // ARGV[3..]
        }
        pipe.ignore();
    }
}
