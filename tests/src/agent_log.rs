//! What the test agent logs of its runs (start, end, holds), and arithmetic on
//! those runs' spans.

use std::time::Duration;

use crate::*;

impl TestEnv {
    /// The test agent's start log of job `id` (one line per start), empty if it
    /// never ran.
    pub fn agent_starts(&self, id: &str) -> String {
        std::fs::read_to_string(
            self.dir
                .path()
                .join("runs")
                .join(format!("{id}.starts.log")),
        )
        .unwrap_or_default()
    }

    /// The agent's own run log for job `id`: one line per finished or stopped run.
    pub fn agent_runs(&self, id: &str) -> String {
        std::fs::read_to_string(self.dir.path().join("runs").join(format!("{id}.runs.log")))
            .unwrap_or_default()
    }

    /// (start, end) of every finished agent run of job `id`, from the test
    /// agent's own log (host-wide uptime, so runs in different containers and
    /// on different "hosts" compare).
    pub fn agent_intervals(&self, id: &str) -> Vec<(f64, f64)> {
        self.agent_runs(id)
            .lines()
            .map(|l| {
                let field = |k: &str| -> f64 {
                    l.split_whitespace()
                        .find_map(|w| w.strip_prefix(k))
                        .and_then(|v| v.parse().ok())
                        .unwrap_or_else(|| panic!("no {k} in the agent's run line {l:?}"))
                };
                (field("start="), field("end="))
            })
            .collect()
    }

    /// (start, end) of every run of job `id` that started, from the test agent's
    /// own logs: a run that never logged its end (killed, or still running)
    /// lasts forever.
    pub fn agent_spans(&self, id: &str) -> Vec<(f64, f64)> {
        let field = |l: &str, k: &str| -> Option<f64> {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .and_then(|v| v.parse().ok())
        };
        let ended: Vec<(f64, f64)> = self
            .agent_runs(id)
            .lines()
            .filter_map(|l| Some((field(l, "start=")?, field(l, "end=")?)))
            .collect();
        self.agent_starts(id)
            .lines()
            .filter_map(|l| field(l, "start="))
            .map(|s| {
                ended
                    .iter()
                    .find(|(st, _)| (*st - s).abs() < 1e-6)
                    .copied()
                    .unwrap_or((s, f64::INFINITY))
            })
            .collect()
    }

    /// Jobs whose test agent is at an `@agentq-test hold` now (or was, before
    /// [`TestEnv::release_holds`]).
    pub fn holding(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(self.dir.path().join("runs"))
            .map(|d| {
                d.filter_map(|e| {
                    let name = e.ok()?.file_name().to_string_lossy().into_owned();
                    name.strip_suffix(".holding").map(str::to_string)
                })
                .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// Lets every test agent at an `@agentq-test hold` (and every later one) go on.
    pub fn release_holds(&self) {
        std::fs::write(self.dir.path().join("runs").join("release"), "").unwrap();
    }

    /// Waits (checking every 100 ms, failing after 4 minutes) until `n` test
    /// agents are at an `@agentq-test hold` together.
    pub async fn wait_holding(&self, n: usize) -> Vec<String> {
        let what = format!("{n} agents held together");
        self.poll_until(&what, Duration::from_secs(240), async || {
            let h = self.holding();
            if h.len() >= n {
                Ok(h)
            } else {
                Err(h)
            }
        })
        .await
    }
}

/// The most of the (start, end) intervals that overlap at any instant (ends
/// before starts at the same instant: touching is not overlapping).
pub fn max_overlap(iv: &[(f64, f64)]) -> usize {
    let mut points: Vec<(f64, i32)> = iv.iter().flat_map(|(s, e)| [(*s, 1), (*e, -1)]).collect();
    points.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap().then(a.1.cmp(&b.1)));
    let (mut cur, mut max) = (0i32, 0i32);
    for (_, d) in points {
        cur += d;
        max = max.max(cur);
    }
    max as usize
}

/// The kernel's uptime in seconds: the clock the test agent logs its runs on
/// (host-wide, so it compares with runs in any container).
pub fn uptime() -> f64 {
    std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// `spans` (see [`TestEnv::agent_spans`]) with every run that started before
/// `gone` ending by then at the latest: for a test that saw, at [`uptime`]
/// `gone`, the containers of those runs stopped, though a run killed before it
/// could log its end seems to last forever.
pub fn ended_by(spans: Vec<(f64, f64)>, gone: f64) -> Vec<(f64, f64)> {
    spans
        .into_iter()
        .map(|(start, end)| (start, if start < gone { end.min(gone) } else { end }))
        .collect()
}
