//! Every Redis key agentq uses, in one place. apalis-redis keeps its own keys under
//! [`Keys::apalis_queue`].

/// Key names under one namespace (default `agentq`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    ns: String,
}

impl Keys {
    /// Keys under `namespace`.
    pub fn new(namespace: impl Into<String>) -> Self {
        Self {
            ns: namespace.into(),
        }
    }

    /// The namespace itself.
    pub fn namespace(&self) -> &str {
        &self.ns
    }

    /// The apalis-redis queue name; apalis derives `{queue}:active`, `:scheduled`, … from it.
    pub fn apalis_queue(&self) -> String {
        format!("{}:q", self.ns)
    }

    /// Hash: one job's record.
    pub fn job(&self, id: &str) -> String {
        format!("{}:job:{id}", self.ns)
    }

    /// Prefix of job hashes (for scripts that build the key themselves).
    pub fn job_prefix(&self) -> String {
        format!("{}:job:", self.ns)
    }

    /// Hash: job id → the packed record of a job nothing has touched since it
    /// was enqueued (see `agentq_domain::record::JobRecord::packed`); the first
    /// script that touches the job moves it to [`Keys::job`].
    pub fn fresh(&self) -> String {
        format!("{}:new", self.ns)
    }

    /// Sorted set: every job id, scored by creation time (ms).
    pub fn jobs(&self) -> String {
        format!("{}:jobs", self.ns)
    }

    /// Sorted set: ids of jobs in `state`, scored by when they got there (ms).
    pub fn state(&self, state: &str) -> String {
        format!("{}:state:{state}", self.ns)
    }

    /// Prefix of the per-state sets.
    pub fn state_prefix(&self) -> String {
        format!("{}:state:", self.ns)
    }

    /// The notification outbox's keys (`store::outbox`): `{ns}:notify:{what}`
    /// for `routes`, `items`, `due`, `age`, `sent`, `dead`, `sent_total`,
    /// `dead_total`, `overflowed`, `lease`.
    pub fn notify(&self, what: &str) -> String {
        format!("{}:notify:{what}", self.ns)
    }

    /// Stream: job events, trimmed to a bounded length.
    pub fn events(&self) -> String {
        format!("{}:events", self.ns)
    }

    /// Sorted set: jobs whose verify stage `agentq verify` asked to run
    /// again, scored by when it asked (ms).
    pub fn verify_requests(&self) -> String {
        format!("{}:verify", self.ns)
    }

    /// List: agent branches of purged jobs to delete if their pull request
    /// was closed without a merge (JSON), taken by a worker.
    pub fn branch_cleanups(&self) -> String {
        format!("{}:verify:branches", self.ns)
    }

    /// Hash: job id → a forge write-back to do again (JSON, the worker's), for
    /// jobs whose write-back ran out of budget (`forge.timeout_secs`).
    pub fn writebacks(&self) -> String {
        format!("{}:writeback", self.ns)
    }

    /// Sorted set: ids of [`Keys::writebacks`], scored by when to try next (ms).
    pub fn writebacks_due(&self) -> String {
        format!("{}:writeback:due", self.ns)
    }

    /// String with TTL: which worker runs the job now (a run lease).
    pub fn run_lease(&self, id: &str) -> String {
        format!("{}:run:{id}", self.ns)
    }

    /// String: a cancel request for a job.
    pub fn cancel(&self, id: &str) -> String {
        format!("{}:cancel:{id}", self.ns)
    }

    /// Counter: the last enqueue `order` given out (a job's place in line).
    pub fn order(&self) -> String {
        format!("{}:order", self.ns)
    }

    /// Sorted set: jobs of pool `pool` and model `model` (empty: none) parked
    /// in line, by `order` (built the same way in
    /// `agentq_shared::store::park::PARK_LUA`).
    pub fn lane(&self, pool: &str, model: &str) -> String {
        let model = if model.is_empty() { "-" } else { model };
        format!("{}:lane:{pool}:{model}", self.ns)
    }

    /// Set: the lanes (models, `-` for none) of pool `pool` that may hold jobs.
    pub fn lanes(&self, pool: &str) -> String {
        format!("{}:lanes:{pool}", self.ns)
    }

    /// Set: pools that may have parked jobs.
    pub fn pools(&self) -> String {
        format!("{}:pools", self.ns)
    }

    /// Sorted set: jobs with a delivery pushed and not yet taken (id → due, ms).
    pub fn transit(&self) -> String {
        format!("{}:transit", self.ns)
    }

    /// Pub/sub channel: a pool's name, when that pool may have room or new jobs.
    pub fn wake(&self) -> String {
        format!("{}:wake", self.ns)
    }

    /// Pub/sub channel: deliveries were pushed (their number): intakes look
    /// at once.
    pub fn deliver(&self) -> String {
        format!("{}:deliver", self.ns)
    }

    /// Sorted set: pool → when (ms, Redis's clock) to wake it again (a pause
    /// or a pacing gap ends).
    pub fn timers(&self) -> String {
        format!("{}:timers", self.ns)
    }

    /// String: the id of the job enqueued with idempotency key `key`.
    pub fn idempotency(&self, key: &str) -> String {
        format!("{}:key:{key}", self.ns)
    }

    /// Set: the ids of the jobs enqueued `--after` job `id` that still wait
    /// for it (see `agentq_shared::store::flow`); read and deleted by the
    /// script that ends `id`.
    pub fn dependants(&self, id: &str) -> String {
        format!("{}:dependants:{id}", self.ns)
    }

    /// Hash: batch `name`'s own fields (`sealed`, `fired`).
    pub fn batch(&self, name: &str) -> String {
        format!("{}:batch:{name}", self.ns)
    }

    /// Set: the ids of batch `name`'s jobs.
    pub fn batch_jobs(&self, name: &str) -> String {
        format!("{}:batchjobs:{name}", self.ns)
    }

    /// Hash: batch `name`'s jobs that reached a final state → that state.
    pub fn batch_done(&self, name: &str) -> String {
        format!("{}:batchdone:{name}", self.ns)
    }

    /// String with TTL: held by the worker running the safety sweep now.
    pub fn sweep_lock(&self) -> String {
        format!("{}:sweep", self.ns)
    }

    /// Counter: jobs the sweep found with neither a delivery nor a live run
    /// (should stay 0).
    pub fn rescued(&self) -> String {
        format!("{}:rescued", self.ns)
    }

    /// Hash: live workers (id → JSON with host, concurrency, heartbeat).
    pub fn workers(&self) -> String {
        format!("{}:workers", self.ns)
    }

    /// Sorted set: live workers (id → heartbeat expiry, ms), for the wake.
    pub fn servers(&self) -> String {
        format!("{}:servers", self.ns)
    }

    /// Sorted set: live workers that can run pool `pool` (id → heartbeat
    /// expiry, ms). A pool no live worker serves gets no slot while others are
    /// live (see `agentq_shared::store::park`).
    pub fn serves(&self, pool: &str) -> String {
        format!("{}:serves:{pool}", self.ns)
    }

    /// Sorted set: slot leases of a pool (job id → lease expiry, ms).
    pub fn limit(&self, pool: &str) -> String {
        format!("{}:limit:{pool}", self.ns)
    }

    /// Sorted set: slot leases of one model of a pool.
    pub fn limit_model(&self, pool: &str, model: &str) -> String {
        format!("{}:limit:{pool}:{model}", self.ns)
    }

    /// String with TTL: the pool is paused while it exists.
    pub fn backoff(&self, pool: &str) -> String {
        format!("{}:backoff:{pool}", self.ns)
    }

    /// String with TTL: the job running in workspace `ws` (`{org}/{repo}/{name}`).
    pub fn workspace_lease(&self, ws: &str) -> String {
        format!("{}:ws:{ws}", self.ns)
    }

    /// Sorted set: jobs parked until workspace `ws` is free, by enqueue order.
    pub fn workspace_waiters(&self, ws: &str) -> String {
        format!("{}:wsq:{ws}", self.ns)
    }

    /// Set: the workspaces that have a line ([`Keys::workspace_waiters`]).
    pub fn queued_workspaces(&self) -> String {
        format!("{}:wsqueued", self.ns)
    }

    /// Hash: workspace (`{org}/{repo}/{name}`) → the host that last ran a job in it.
    pub fn workspace_hosts(&self) -> String {
        format!("{}:wshost", self.ns)
    }

    /// Hash: workspace (`{org}/{repo}/{name}`) → the last job run in it.
    pub fn workspace_jobs(&self) -> String {
        format!("{}:wsjob", self.ns)
    }

    /// Sorted set: jobs another host left to `host` because it has their
    /// workspace (job id → until when, ms).
    pub fn affinity(&self, host: &str) -> String {
        format!("{}:affinity:{host}", self.ns)
    }

    /// Counter: consecutive fast failures of a pool.
    pub fn fails(&self, pool: &str) -> String {
        format!("{}:fails:{pool}", self.ns)
    }

    /// String: when a pool last started a job (pacing).
    pub fn rate(&self, pool: &str) -> String {
        format!("{}:rate:{pool}", self.ns)
    }

    /// Counter: the starts a paced pool was granted in the day (see
    /// `crate::pacing`) that began at `day_start_ms`; it expires a minute
    /// after that day. Built the same way in `wake.lua`, which alone knows
    /// the day on Redis's clock.
    pub fn starts(&self, pool: &str, day_start_ms: i64) -> String {
        format!("{}:starts:{pool}:{day_start_ms}", self.ns)
    }

    /// Stream: the bounded agent-log tail of a job (chunks of output).
    pub fn log_tail(&self, id: &str) -> String {
        format!("{}:log:{id}", self.ns)
    }

    /// List: a job's state history (JSON entries, bounded).
    pub fn history(&self, id: &str) -> String {
        format!("{}:history:{id}", self.ns)
    }

    /// Set: pools an operator paused (`agentq pause POOL`), with no end: no
    /// wake grants them a slot until `agentq unpause` (no expiry, so it
    /// survives every worker's restart).
    pub fn fleet_paused(&self) -> String {
        format!("{}:fleet:paused", self.ns)
    }

    /// String: present while the whole fleet is paused (`agentq pause --all`,
    /// or `start_paused` on a fleet's first start).
    pub fn fleet_paused_all(&self) -> String {
        format!("{}:fleet:paused_all", self.ns)
    }

    /// Hash: pool (or `*` for every pool) → when (Redis ms) an operator
    /// stopped its running agents (`agentq stop --now`): a run admitted before
    /// that is stopped and handed back.
    pub fn fleet_stop(&self) -> String {
        format!("{}:fleet:stop", self.ns)
    }

    /// String: set by the first worker that ever started in this namespace
    /// (`start_paused` pauses the fleet only then).
    pub fn fleet_started(&self) -> String {
        format!("{}:fleet:started", self.ns)
    }

    /// Sorted set: jobs enqueued with a due time (`--at`/`--in`, state
    /// `scheduled`), job id → when due (ms). Its earliest due time is the
    /// member [`SCHEDULED_TIMER`] of [`Keys::timers`].
    pub fn scheduled(&self) -> String {
        format!("{}:scheduled", self.ns)
    }

    /// String: the last tick (Unix seconds) of periodic schedule `name`
    /// (`[[schedule]]`) a worker enqueued a job for.
    pub fn schedule_tick(&self, name: &str) -> String {
        format!("{}:schedule:{name}", self.ns)
    }

    /// Pub/sub channel: a timer was added to [`Keys::timers`] that is due
    /// before every other (its due time, ms): the workers' timer loops, which
    /// wait for the first due time only, look again.
    pub fn timer_wake(&self) -> String {
        format!("{}:timer", self.ns)
    }

    /// Pub/sub channel: a job was left to `host` ([`Keys::affinity`]): that
    /// host's affinity claimer looks at once.
    pub fn affinity_wake(&self, host: &str) -> String {
        format!("{}:affinity-wake:{host}", self.ns)
    }

    /// Pub/sub channel: a verify request or a branch cleanup was queued
    /// ([`Keys::verify_requests`], [`Keys::branch_cleanups`]).
    pub fn verify_wake(&self) -> String {
        format!("{}:verify-wake", self.ns)
    }

    /// Pub/sub channel: job `id` moved (the new state): `--wait` wakes on it
    /// instead of polling the record.
    pub fn moved(&self, id: &str) -> String {
        format!("{}:moved:{id}", self.ns)
    }

    /// String with TTL: the live workers' total concurrency (the room of a
    /// pool without a limit), written by the sweep's holder each heartbeat
    /// and read by every worker with its heartbeat.
    pub fn window(&self) -> String {
        format!("{}:window", self.ns)
    }
}

/// The member of [`Keys::timers`] whose score is the earliest due time in
/// [`Keys::scheduled`]: a name no pool can have (pools are `[a-z][a-z0-9_-]*`).
pub const SCHEDULED_TIMER: &str = "@scheduled";

impl Default for Keys {
    fn default() -> Self {
        Self::new("agentq")
    }
}
