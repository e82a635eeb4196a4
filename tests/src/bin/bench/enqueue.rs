//! Issue 34's batch enqueue rows: agentq's NDJSON batch beside Sidekiq's
//! `push_bulk`, [`RUNS`] runs each, alternating (agentq, Sidekiq, agentq, ...)
//! against the same Redis, flushed before every run, so that a slow moment of
//! the shared machine falls on both sides alike; then RQ's `enqueue_many` once.
//! Each row says what the run cost the Redis server in CPU per job and, from
//! `INFO commandstats` (reset before each run), which commands that time went
//! to (`usec` per job, Lua's inner calls counted apart from the `EVAL` that
//! made them).

use std::{process::Command, time::Instant};

use agentq_tests::*;

use super::{flushall, ndjson, peer, redis_cpu, Row};

/// Alternating runs of each side.
pub const RUNS: usize = 5;
/// Jobs per run.
const JOBS: usize = 50_000;

/// One side's run.
struct Run {
    jobs_per_s: f64,
    /// Redis server CPU (user + system), µs per job.
    cpu_us: f64,
    /// Redis commands per job.
    commands: f64,
    /// The commands that took the most Redis time, `name usec/job`.
    top: String,
}

/// `INFO commandstats` as (command, calls, usec).
fn commandstats(redis: &Redis) -> Vec<(String, u64, u64)> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut redis.conn())
        .unwrap();
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let num = |k: &str| -> Option<u64> {
                rest.split(',')
                    .find_map(|kv| kv.strip_prefix(k))?
                    .parse()
                    .ok()
            };
            Some((name.to_string(), num("calls=")?, num("usec=")?))
        })
        .collect()
}

/// Runs `f` on a flushed Redis with its statistics reset; what it cost Redis.
fn measured(redis: &Redis, n: usize, f: impl FnOnce() -> f64) -> Run {
    flushall(redis);
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(&mut redis.conn())
        .unwrap();
    let cpu0 = redis_cpu(redis);
    let jobs_per_s = f();
    let cpu_us = (redis_cpu(redis) - cpu0) / n as f64 * 1e6;
    let mut stats: Vec<_> = commandstats(redis)
        .into_iter()
        // The bench's own calls (and a peer's `PING` before its clock starts).
        .filter(|(name, _, _)| {
            !["info", "config", "flushall", "ping"]
                .iter()
                .any(|own| name.split('|').next() == Some(own))
        })
        .collect();
    let commands = stats.iter().map(|s| s.1).sum::<u64>() as f64 / n as f64;
    stats.sort_by_key(|s| std::cmp::Reverse(s.2));
    let top = stats
        .iter()
        .take(4)
        // `a|b` (a subcommand) would split the Markdown cell.
        .map(|(name, _, usec)| format!("{} {:.2}", name.replace('|', " "), *usec as f64 / n as f64))
        .collect::<Vec<_>>()
        .join(", ");
    Run {
        jobs_per_s,
        cpu_us,
        commands,
        top,
    }
}

/// The rows: one per alternating run, the lowest ratio, then RQ.
pub fn rows(env: &TestEnv, peers: &std::path::Path) -> Vec<Row> {
    let lines = ndjson(JOBS, 1, "bench", "claude");
    let ours = || {
        let t = Instant::now();
        let out = env.cli(&["enqueue", "-"], Some(&lines));
        let took = t.elapsed().as_secs_f64();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        JOBS as f64 / took
    };
    let mut version = String::from("?");
    let mut sidekiq = || {
        let p = peer(
            Command::new("ruby")
                .arg(peers.join("sidekiq_push_bulk.rb"))
                .arg(env.redis.url())
                .arg(JOBS.to_string()),
        );
        version = p["version"].as_str().unwrap_or("?").to_string();
        p["jobs_per_s"].as_f64().unwrap()
    };
    let mut runs = Vec::new();
    for _ in 0..RUNS {
        let a = measured(&env.redis, JOBS, ours);
        let s = measured(&env.redis, JOBS, &mut sidekiq);
        runs.push((a, s));
    }
    let mut rows = Vec::new();
    let mut ratios = Vec::new();
    for (i, (a, s)) in runs.iter().enumerate() {
        let ratio = a.jobs_per_s / s.jobs_per_s;
        ratios.push(ratio);
        rows.push(Row {
            what: format!(
                "batch enqueue, {JOBS} jobs, one process (agentq: NDJSON on stdin), run {} of {RUNS}, alternating with Sidekiq",
                i + 1
            ),
            agentq: format!(
                "{:.0} jobs/s, {:.2} Redis commands/job, Redis CPU {:.1} µs/job (usec/job: {})",
                a.jobs_per_s, a.commands, a.cpu_us, a.top
            ),
            peer: format!(
                "Sidekiq {version} `push_bulk`: {:.0} jobs/s, Redis CPU {:.1} µs/job (usec/job: {})",
                s.jobs_per_s, s.cpu_us, s.top
            ),
            ratio: format!("{ratio:.2}×"),
        });
    }
    let min = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let max = ratios.iter().copied().fold(0.0, f64::max);
    rows.push(Row {
        what: format!("batch enqueue beside Sidekiq `push_bulk`: lowest ratio of the {RUNS} runs"),
        agentq: format!(
            "{} runs of {RUNS} at 2× or more",
            ratios.iter().filter(|r| **r >= 2.0).count()
        ),
        peer: format!("highest {max:.2}×"),
        ratio: format!("min {min:.2}×"),
    });
    let ours_last = runs.last().map(|r| r.0.jobs_per_s).unwrap_or(0.0);
    let rq = measured(&env.redis, JOBS, || {
        let p = peer(
            Command::new(peers.join(".venv/bin/python"))
                .arg(peers.join("rq_enqueue_many.py"))
                .arg(env.redis.url())
                .arg(JOBS.to_string()),
        );
        version = p["version"].as_str().unwrap_or("?").to_string();
        p["jobs_per_s"].as_f64().unwrap()
    });
    flushall(&env.redis);
    rows.push(Row {
        what: format!("batch enqueue, {JOBS} jobs, beside RQ (one run, after the above)"),
        agentq: format!("{ours_last:.0} jobs/s (run {RUNS} above)"),
        peer: format!(
            "RQ {version} `enqueue_many`: {:.0} jobs/s, Redis CPU {:.1} µs/job",
            rq.jobs_per_s, rq.cpu_us
        ),
        ratio: format!("{:.2}×", ours_last / rq.jobs_per_s),
    });
    rows
}
