//! The worker's Prometheus metrics (served by [`crate::http`]).
//!
//! Counters and the duration histogram count what this worker ran; the gauges
//! (running by pool, queue depth, waiting by reason) are read from Redis at scrape
//! time, so every worker reports the same pool-wide picture.

use std::time::Duration;

use agentq_shared::status::{JobState, WaitReason};
use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

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
struct PauseLabels {
    pool: String,
    cause: String,
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
    fenced: Counter,
    paused: Family<PauseLabels, Gauge>,
    quota_resume: Family<PoolLabels, Gauge>,
    scheduled: Gauge,
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
        let fenced = Counter::default();
        registry.register(
            "runs_fenced",
            "Runs of this worker whose write Redis refused because another run owns the job (a takeover after a partition or a stall)",
            fenced.clone(),
        );
        let paused = Family::<PauseLabels, Gauge>::default();
        registry.register(
            "pool_paused",
            "1 while a pool is paused (all hosts), by cause: operator (agentq pause, stop --now, start_paused; no end) or timed (agentq pool pause --for, the fast-failure backoff)",
            paused.clone(),
        );
        let quota_resume = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "pool_quota_resume_seconds",
            "Seconds until a pool paused for its provider's usage limit resumes, by agent pool (0: not paused for a limit; all hosts)",
            quota_resume.clone(),
        );
        let scheduled = Gauge::default();
        registry.register(
            "scheduled",
            "Delayed jobs (enqueued with --at/--in) waiting for their due time (all hosts)",
            scheduled.clone(),
        );
        Self {
            registry,
            scheduled,
            fenced,
            paused,
            quota_resume,
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

    /// Counts a run fenced out: a write of its refused, another run owns the job.
    pub fn run_fenced(&self) {
        self.fenced.inc();
    }

    /// Sets the gauges read from Redis at scrape time.
    pub fn set_gauges(&self, g: &Gauges) {
        self.queue_depth.set(g.queue_depth as i64);
        self.rescued.set(g.rescued as i64);
        self.degraded.set(i64::from(g.degraded));
        self.scheduled.set(g.scheduled as i64);
        for (pool, running) in &g.running {
            self.running
                .get_or_create(&PoolLabels { pool: pool.clone() })
                .set(*running as i64);
        }
        for (pool, operator, timed) in &g.paused {
            for (cause, on) in [("operator", operator), ("timed", timed)] {
                self.paused
                    .get_or_create(&PauseLabels {
                        pool: pool.clone(),
                        cause: cause.into(),
                    })
                    .set(i64::from(*on));
            }
        }
        for (pool, secs) in &g.quota_resume {
            self.quota_resume
                .get_or_create(&PoolLabels { pool: pool.clone() })
                .set(*secs);
        }
        for (reason, n) in &g.waiting {
            self.waiting
                .get_or_create(&ReasonLabels {
                    reason: reason.as_str().into(),
                })
                .set(*n as i64);
        }
    }

    /// The registry in the OpenMetrics text format.
    ///
    /// # Errors
    /// Formatting failed.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut body = String::new();
        encode(&mut body, &self.registry)?;
        Ok(body)
    }
}

/// The pool-wide gauges, read from Redis at scrape time.
#[derive(Debug, Default)]
pub struct Gauges {
    /// Jobs waiting or due for a delivery.
    pub queue_depth: u64,
    /// Jobs rescued from dead workers, in all.
    pub rescued: u64,
    /// Whether this host is degraded.
    pub degraded: bool,
    /// Jobs holding a slot, by pool.
    pub running: Vec<(String, u64)>,
    /// Waiting jobs, by reason.
    pub waiting: Vec<(WaitReason, usize)>,
    /// Pools: (pool, paused by an operator, paused for a time).
    pub paused: Vec<(String, bool, bool)>,
    /// Seconds until each pool paused for its provider's limit resumes (0:
    /// not paused for one), by pool.
    pub quota_resume: Vec<(String, i64)>,
    /// Delayed jobs waiting for their due time.
    pub scheduled: u64,
}
