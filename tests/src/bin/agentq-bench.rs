//! Measures agentq on this machine: enqueue throughput (batch and single), the cost
//! of the admission script, and end-to-end dispatch throughput and latency through
//! a real worker, Redis and Docker. Results go to stdout as a Markdown table.
//!
//! Run: `cargo build --release --workspace --bins && cargo run --release -p agentq-tests --bin agentq-bench`

use std::time::{Duration, Instant};

use agentq_shared::{agent::AgentSpec, limits::AdmissionConfig, status::JobState};
use agentq_tests::*;

fn ndjson(n: usize, first_issue: usize, task: &str) -> String {
    (first_issue..first_issue + n)
        .map(|i| format!("{{\"repo\":\"demo\",\"task\":\"{task}\",\"issue\":{i}}}\n"))
        .collect()
}

#[tokio::main]
async fn main() {
    require_docker();
    let mut rows: Vec<(String, String)> = Vec::new();

    // 1. Batch enqueue: 10 000 NDJSON lines through one `agentq enqueue -`.
    let env = TestEnv::new();
    let lines = ndjson(10_000, 1, "bench");
    let t = Instant::now();
    let out = env.cli(&["enqueue", "-"], Some(&lines));
    let took = t.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    rows.push((
        "batch enqueue, 10 000 NDJSON jobs, one process".into(),
        format!(
            "{:.0} jobs/s ({:.2} s)",
            10_000.0 / took.as_secs_f64(),
            took.as_secs_f64()
        ),
    ));

    // 2. Single enqueue: one process per job, as a script calling the CLI would.
    let t = Instant::now();
    for i in 0..100 {
        env.enqueue(&[
            "--repo",
            "demo",
            "--task",
            "one",
            "--issue",
            &(20_000 + i).to_string(),
        ]);
    }
    let took = t.elapsed();
    rows.push((
        "single enqueue, 100 `agentq enqueue` processes".into(),
        format!("{:.1} ms per job", took.as_secs_f64() * 10.0),
    ));

    drop(env);

    // 4. End to end: 60 trivial jobs, one worker, concurrency 4.
    let env = TestEnv::new();
    env.remotes.create("core", "demo", &[]);
    let _w = env.worker("bench", 4);
    // Warm-up: the first job pays for the worker's start.
    let warm = env.enqueue(&["--repo", "demo", "--task", "warm", "--issue", "99999"]);
    env.wait_final(&warm, Duration::from_secs(120)).await;
    let ids: Vec<String> = env.enqueue_ndjson(&ndjson(60, 1, "trivial"));
    let t = Instant::now();
    let mut latencies = Vec::new();
    for id in &ids {
        let rec = env.wait_final(id, Duration::from_secs(600)).await;
        assert_eq!(rec.state, JobState::Completed);
        let ms = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .timestamp_millis()
        };
        latencies.push((ms(&rec.finished_at) - ms(&rec.started_at)) as f64 / 1000.0);
    }
    let took = t.elapsed();
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    rows.push((
        "dispatch: 60 trivial jobs, 1 worker × 4, clone + container + QA skip".into(),
        format!(
            "{:.2} jobs/s ({:.1} s)",
            60.0 / took.as_secs_f64(),
            took.as_secs_f64()
        ),
    ));
    rows.push((
        "per job, prep start → final state (p50 / p95)".into(),
        format!(
            "{:.2} s / {:.2} s",
            latencies[latencies.len() / 2],
            latencies[latencies.len() * 95 / 100]
        ),
    ));

    drop(env);

    // 5. Preparing workspaces of a big repository on one host (the mirror cache):
    // 5 000 commits, ~100 MB of history; ten dry runs, each in a new workspace.
    let env = TestEnv::new();
    let bare = env.remotes.create("core", "big", &[]);
    grow_history(&bare, 5_000, 20 * 1024);
    let _w = env.worker("bench", 1);
    let mut prep = Vec::new();
    for issue in 1..=10 {
        let id = env.enqueue(&[
            "--repo",
            "big",
            "--task",
            "prep",
            "--issue",
            &issue.to_string(),
            "--dry-run",
        ]);
        let rec = env.wait_final(&id, Duration::from_secs(600)).await;
        assert_eq!(rec.state, JobState::Completed, "{rec:?}");
        let ms = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .timestamp_millis()
        };
        prep.push((ms(&rec.finished_at) - ms(&rec.started_at)) as f64 / 1000.0);
    }
    rows.push((
        "prepare a workspace, 5 000-commit ~100 MB repository: first / tenth on one host".into(),
        format!("{:.2} s / {:.2} s", prep[0], prep[9]),
    ));

    println!("| measurement | result |\n|---|---|");
    for (k, v) in rows {
        println!("| {k} | {v} |");
    }
}

/// Adds `commits` commits to `main` of the bare repository `bare`, each with a
/// new file of `size` incompressible bytes (git fast-import).
fn grow_history(bare: &std::path::Path, commits: usize, size: usize) {
    use std::io::Write;
    let mut child = std::process::Command::new("git")
        .args(["fast-import", "--quiet"])
        .current_dir(bare)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("git fast-import");
    let mut input = std::io::BufWriter::new(child.stdin.take().unwrap());
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut data = vec![0u8; size];
    writeln!(input, "reset refs/heads/main\nfrom refs/heads/main^0").unwrap();
    for i in 0..commits {
        for b in data.iter_mut() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *b = seed as u8;
        }
        writeln!(input, "blob\nmark :{}\ndata {}", i + 1, data.len()).unwrap();
        input.write_all(&data).unwrap();
        let msg = format!("commit {i}");
        writeln!(
            input,
            "\ncommit refs/heads/main\ncommitter Bench <b@b> {} +0000\ndata {}\n{msg}\nM 100644 :{} f{}.bin",
            1_700_000_000 + i,
            msg.len(),
            i + 1,
            i % 500
        )
        .unwrap();
    }
    drop(input);
    assert!(child.wait().unwrap().success(), "git fast-import failed");
}

fn toml_limits() -> AdmissionConfig {
    let mut cfg = AdmissionConfig::default();
    cfg.limits.insert(
        "claude".into(),
        agentq_shared::limits::LimitSpec::Detailed(
            [
                ("total".to_string(), 1000u32),
                ("opus".to_string(), 1000u32),
            ]
            .into(),
        ),
    );
    cfg
}
