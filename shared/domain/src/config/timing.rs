//! What the configuration's numbers mean in use: the durations, bounds and
//! floors derived from it (lease, heartbeat, sweep and poll periods, retry
//! delays, fencing, disk bounds), one method each on [`Config`].

use std::{path::PathBuf, time::Duration};

use super::{Config, TREE_WALK_BUDGET};

impl Config {
    /// How long a run lease (and a job's slot) lasts without renewal:
    /// `heartbeat_secs × missed_heartbeats`. A dead worker's jobs are taken
    /// over after this.
    pub fn lease_ttl(&self) -> Duration {
        Duration::from_secs(self.heartbeat_secs * u64::from(self.missed_heartbeats))
    }

    /// The workspace root of host `host`: `{host}` in `workspace_root` is
    /// replaced by its name, so that workers sharing one mount (a compose pool
    /// on one machine) each have a root of their own.
    pub fn workspace_root_of(&self, host: &str) -> PathBuf {
        let root = self.workspace_root.to_string_lossy();
        if root.contains("{host}") {
            PathBuf::from(root.replace("{host}", host))
        } else {
            self.workspace_root.clone()
        }
    }

    /// How often a worker beats (registry, apalis heartbeat, sweeps).
    pub fn heartbeat_every(&self) -> Duration {
        Duration::from_secs(self.heartbeat_secs)
    }

    /// How often the lost-delivery sweep runs.
    pub fn sweep_every(&self) -> Duration {
        Duration::from_secs(self.sweep_secs)
    }

    /// How often dead hosts' workspaces are looked for.
    pub fn workspace_sweep_every(&self) -> Duration {
        Duration::from_secs(self.workspace_sweep_secs)
    }

    /// How often apalis's finished deliveries are vacuumed: half of
    /// `vacuum_after_secs`, at least 1 s.
    pub fn vacuum_every(&self) -> Duration {
        (Duration::from_secs(self.vacuum_after_secs) / 2).max(Duration::from_secs(1))
    }

    /// How often an idle intake fetches though nothing told it to (`poll_ms`):
    /// a safety net for a lost publish.
    pub fn poll_every(&self) -> Duration {
        Duration::from_millis(self.poll_ms)
    }

    /// How long a job waits for the live host that holds its workspace
    /// (`affinity_secs`), in ms; 0: no affinity.
    pub fn affinity_grace_ms(&self) -> i64 {
        i64::try_from(self.affinity_secs.saturating_mul(1000)).unwrap_or(i64::MAX)
    }

    /// A worker silent this long is no longer live (`agentq workers`, window,
    /// affinity): the lease TTL, `heartbeat_secs × missed_heartbeats`.
    pub fn worker_stale_after(&self) -> Duration {
        self.lease_ttl()
    }

    /// The wait before the next delivery after the `tries`-th infrastructure
    /// failure: `retry_base_secs * 2^(tries-1)`, at most 300 s.
    pub fn infra_retry_delay(&self, tries: u32) -> Duration {
        crate::backoff::doubling(
            Duration::from_secs(self.retry_base_secs),
            tries.saturating_sub(1),
            Duration::from_secs(300),
        )
    }

    /// How often a running job's lease is renewed: a third of its TTL.
    pub fn lease_renew_every(&self) -> Duration {
        self.lease_ttl() / 3
    }

    /// A run whose lease went unrenewed this long stops its agent (self-fencing),
    /// and the agent's watchdog stops it too if the worker is gone: two thirds
    /// of the TTL, so the agent is down before another worker may take over.
    pub fn fence_after(&self) -> Duration {
        self.lease_ttl() * 2 / 3
    }

    /// apalis-redis's own heartbeat: three of agentq's. Each costs a few
    /// commands and a fetch, and only apalis's own orphan recovery needs it
    /// (agentq's registry, leases and sweep beat with `heartbeat_secs`); the
    /// fetch after it is the intake's second safety net (see `poll_ms`).
    pub fn apalis_heartbeat_every(&self) -> Duration {
        self.heartbeat_every() * 3
    }

    /// apalis-redis's own orphan threshold, in its heartbeats
    /// ([`Config::apalis_heartbeat_every`]): the lease's plus two, i.e.
    /// three times the lease and six of agentq's heartbeats, so agentq's sweep
    /// (which puts orphans first in line, as `orphaned`, and fences the dead
    /// run) always acts first; apalis counts in whole seconds from its own
    /// heartbeat phase, so a margin of a heartbeat or two is not enough.
    /// apalis's recovery is left only for deliveries a dead worker fetched but
    /// never took.
    pub fn apalis_missed_heartbeats(&self) -> usize {
        self.missed_heartbeats as usize + 2
    }

    /// [`Config::min_free_gb`] in bytes (0: no check).
    pub fn min_free_bytes(&self) -> u64 {
        (self.min_free_gb.max(0.0) * 1024.0 * 1024.0 * 1024.0) as u64
    }

    /// [`Config::workspace_limit_mb`] in bytes, if there is a limit.
    pub fn workspace_limit_bytes(&self) -> Option<u64> {
        (self.workspace_limit_mb > 0).then(|| self.workspace_limit_mb * 1024 * 1024)
    }

    /// The bounds a working tree the agent made is checked against (during
    /// and after the run): `workspace_limit_mb`, `workspace_limit_files`, and
    /// a walk that cannot finish in [`TREE_WALK_BUDGET`] counts as over.
    pub fn tree_bounds(&self) -> crate::tree_bounds::TreeBounds {
        crate::tree_bounds::TreeBounds {
            max_bytes: self.workspace_limit_bytes(),
            max_entries: (self.workspace_limit_files > 0).then_some(self.workspace_limit_files),
            budget: TREE_WALK_BUDGET,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each derived value exactly, from numbers that tell `*` from `+` and
    /// `/` apart (these were tested only end to end, by `config_keys`).
    #[test]
    fn every_derived_duration_and_bound_is_exact() {
        let mut c = Config {
            heartbeat_secs: 7,
            missed_heartbeats: 5,
            sweep_secs: 11,
            workspace_sweep_secs: 13,
            vacuum_after_secs: 10,
            poll_ms: 70,
            affinity_secs: 4,
            retry_base_secs: 3,
            min_free_gb: 1.5,
            workspace_limit_mb: 3,
            workspace_limit_files: 9,
            workspace_root: PathBuf::from("/w/{host}/x"),
            ..Config::default()
        };
        assert_eq!(c.lease_ttl(), Duration::from_secs(35));
        assert_eq!(c.worker_stale_after(), Duration::from_secs(35));
        assert_eq!(c.heartbeat_every(), Duration::from_secs(7));
        assert_eq!(c.sweep_every(), Duration::from_secs(11));
        assert_eq!(c.workspace_sweep_every(), Duration::from_secs(13));
        assert_eq!(c.vacuum_every(), Duration::from_secs(5));
        assert_eq!(c.poll_every(), Duration::from_millis(70));
        assert_eq!(c.affinity_grace_ms(), 4_000);
        assert_eq!(c.lease_renew_every(), Duration::from_secs(35) / 3);
        assert_eq!(c.fence_after(), Duration::from_secs(70) / 3);
        assert_eq!(c.apalis_missed_heartbeats(), 7);
        assert_eq!(c.apalis_heartbeat_every(), Duration::from_secs(21));
        assert_eq!(c.min_free_bytes(), 1_610_612_736);
        assert_eq!(c.workspace_limit_bytes(), Some(3 * 1024 * 1024));
        let bounds = c.tree_bounds();
        assert_eq!(
            (bounds.max_bytes, bounds.max_entries, bounds.budget),
            (Some(3_145_728), Some(9), TREE_WALK_BUDGET)
        );
        assert_eq!(c.workspace_root_of("h1"), PathBuf::from("/w/h1/x"));
        let delays: Vec<u64> = [1, 2, 3, 30]
            .map(|t| c.infra_retry_delay(t).as_secs())
            .to_vec();
        assert_eq!(delays, [3, 6, 12, 300]);

        c.vacuum_after_secs = 1;
        c.affinity_secs = u64::MAX;
        c.min_free_gb = -2.0;
        c.workspace_limit_mb = 0;
        c.workspace_limit_files = 0;
        c.workspace_root = PathBuf::from("/w/plain");
        assert_eq!(c.vacuum_every(), Duration::from_secs(1), "at least 1 s");
        assert_eq!(c.affinity_grace_ms(), i64::MAX);
        assert_eq!(c.min_free_bytes(), 0);
        assert_eq!(c.workspace_limit_bytes(), None);
        let bounds = c.tree_bounds();
        assert_eq!((bounds.max_bytes, bounds.max_entries), (None, None));
        assert_eq!(c.workspace_root_of("h1"), PathBuf::from("/w/plain"));
    }
}
