//! Measures agentq on this machine, with its peers side by side in the same run
//! against the same Redis: batch enqueue (Sidekiq `push_bulk`, RQ
//! `enqueue_many`), single enqueue, the Redis cost of waiting at 10, 1 000 and
//! 10 000 parked jobs, bulk cancel and retry, dispatch overhead beside `docker
//! run --rm` of the same image, worker memory, and workspace preparation of a
//! big repository, and the web console's first page of the job list with
//! 100 000 jobs in Redis. Prints a Markdown table (ratios are agentq ÷ peer).
//!
//! Run it with `scripts/bench`, which installs the peers and builds everything.
//! `AGENTQ_BENCH_ONLY=web` runs the web console row alone (no peers needed),
//! `AGENTQ_BENCH_ONLY=memory` the worker memory row, `AGENTQ_BENCH_ONLY=dispatch`
//! the dispatch row, `AGENTQ_BENCH_ONLY=enqueue` the enqueue rows (peers needed),
//! `AGENTQ_BENCH_ONLY=sandbox` issue 34's committing-job, container-start and
//! QA rows (`sandbox-commit`: without QA's; `sandbox-start`: the container start
//! alone; `sandbox-qa`: QA's alone).
//! `AGENTQ_BENCH_ONLY=idle` the idle rows (see `bench/idle.rs`),
//! `AGENTQ_BENCH_ONLY=flows` scheduled and dependent jobs waiting (`bench/flows.rs`).

use std::{
    process::Command,
    time::{Duration, Instant},
};

use agentq_shared::status::JobState;
use agentq_tests::*;

#[path = "bench/enqueue.rs"]
mod bench_enqueue;
#[path = "bench/flows.rs"]
mod bench_flows;
#[path = "bench/idle.rs"]
mod bench_idle;
/// Issue 34's rows: a committing job, QA with warm caches.
#[path = "../bench_sandbox.rs"]
mod bench_sandbox;

struct Row {
    what: String,
    agentq: String,
    peer: String,
    ratio: String,
}

impl Row {
    fn solo(what: &str, agentq: String) -> Self {
        Self {
            what: what.into(),
            agentq,
            peer: "—".into(),
            ratio: "—".into(),
        }
    }
}

fn ndjson(n: usize, first_issue: usize, task: &str, agent: &str) -> String {
    (first_issue..first_issue + n)
        .map(|i| {
            format!(
                "{{\"repo\":\"demo\",\"task\":\"{task}\",\"issue\":{i},\"agent\":\"{agent}\"}}\n"
            )
        })
        .collect()
}

fn flushall(redis: &Redis) {
    let _: () = redis::cmd("FLUSHALL").query(&mut redis.conn()).unwrap();
}

/// The Redis server's own CPU time so far (user + system, seconds).
fn redis_cpu(redis: &Redis) -> f64 {
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query(&mut redis.conn())
        .unwrap();
    info.lines()
        .filter(|l| l.starts_with("used_cpu_user:") || l.starts_with("used_cpu_sys:"))
        .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
        .sum()
}

/// Batch enqueue of 50 000 jobs, agentq and Sidekiq in alternating runs, then
/// RQ, against the same Redis (flushed between them), with what each cost the
/// Redis server in CPU (`bench/enqueue.rs`); then single enqueue, one process
/// per job.
fn enqueue_rows(peers: &std::path::Path) -> Vec<Row> {
    let env = TestEnv::new();
    let mut rows = bench_enqueue::rows(&env, peers);

    // Single enqueue: one process per job, as a script calling the CLI would.
    let mut single = Vec::new();
    for i in 0..100 {
        let t = Instant::now();
        env.enqueue(&[
            "--repo",
            "demo",
            "--task",
            "one",
            "--issue",
            &(100_000 + i).to_string(),
        ]);
        single.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    rows.push(Row::solo(
        "single enqueue, one `agentq enqueue` process, end to end (p50 of 100)",
        format!("{:.1} ms", median(&mut single)),
    ));
    rows
}

/// Runs a peer benchmark script; its one JSON line.
fn peer(cmd: &mut Command) -> serde_json::Value {
    let out = cmd.output().expect("peer benchmark");
    assert!(
        out.status.success(),
        "peer benchmark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("peer benchmark JSON")
}

/// (user + system CPU seconds, RSS in KiB) of process `pid`.
fn proc_usage(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // Fields 14 and 15 of stat (utime, stime): 11 and 12 after the name.
    let cpu = (ticks(11) + ticks(12)) as f64 / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    (cpu, rss)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// From the run's start to its end, in seconds.
fn run_secs(rec: &agentq_shared::record::JobRecord) -> f64 {
    let at = |t: Option<agentq_shared::stamp::Stamp>| t.expect("a finished run").ms();
    (at(rec.finished_at) - at(rec.started_at)) as f64 / 1000.0
}

async fn wait_parked(env: &TestEnv, pool: &str, n: u64) {
    let store = env.store().await;
    let t = Instant::now();
    while store.parked(pool).await.unwrap().total() < n {
        assert!(t.elapsed() < Duration::from_secs(300), "jobs not parked");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Worker RSS idle (`rss_idle`, KiB, measured by the caller; `None`: here),
/// after 100 jobs and after `AGENTQ_BENCH_MEMORY_JOBS` (2 000; dry runs: a
/// workspace each, no container).
async fn memory(rss_idle: Option<u64>) -> Row {
    let mem_jobs: usize = std::env::var("AGENTQ_BENCH_MEMORY_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let env = TestEnv::new();
    env.remotes.create("core", "demo", &[]);
    let w = env.worker("bench", 4);
    wait_live_workers(&env, 1).await;
    let mut rss = vec![rss_idle.unwrap_or_else(|| proc_usage(w.pid()).1)];
    let mut done = 0usize;
    for target in [100usize, mem_jobs] {
        let lines: String = (done..target)
            .map(|i| {
                format!(
                    "{{\"repo\":\"demo\",\"task\":\"m\",\"issue\":{},\"dry_run\":true}}\n",
                    i + 1
                )
            })
            .collect();
        let ids = env.enqueue_ndjson(&lines);
        for id in &ids {
            env.wait_final(id, Duration::from_secs(600)).await;
        }
        done = target;
        rss.push(proc_usage(w.pid()).1);
        eprintln!("memory: {target} jobs done, RSS {} KiB", rss[rss.len() - 1]);
    }
    Row::solo(
        &format!("worker RSS: idle / after 100 jobs / after {mem_jobs} jobs"),
        format!(
            "{:.1} / {:.1} / {:.1} MiB ({:+.1}% from 100 to {mem_jobs})",
            rss[0] as f64 / 1024.0,
            rss[1] as f64 / 1024.0,
            rss[2] as f64 / 1024.0,
            (rss[2] as f64 / rss[1] as f64 - 1.0) * 100.0
        ),
    )
}

/// One trivial job at a time on a warm mirror, prep start to final state, one
/// kind committing nothing and one committing a file, beside `docker run --rm`
/// of the same image (p50 of 20 each).
/// `AGENTQ_BENCH_TIMELINE=1` prints the worker's log of the last jobs.
async fn dispatch() -> Vec<Row> {
    let env = TestEnv::new();
    env.remotes.create("core", "demo", &[]);
    let timeline = std::env::var_os("AGENTQ_BENCH_TIMELINE").is_some();
    if timeline {
        env.set_env("RUST_LOG", "info,agentq_worker=trace");
    }
    let w = env.worker("bench", 1);
    let warm = env.enqueue(&["--repo", "demo", "--task", "warm", "--issue", "99999"]);
    env.wait_final(&warm, Duration::from_secs(120)).await;
    // Prep start to final state of 20 jobs doing `task`, one at a time.
    let jobs = |task: &'static str, first_issue: usize| {
        let env = &env;
        async move {
            let mut took = Vec::new();
            for i in first_issue..first_issue + 20 {
                let id =
                    env.enqueue(&["--repo", "demo", "--task", task, "--issue", &i.to_string()]);
                let rec = env.wait_final(&id, Duration::from_secs(300)).await;
                assert_eq!(rec.state, JobState::Completed, "{rec:?}");
                took.push(run_secs(&rec));
            }
            median(&mut took)
        }
    };
    let commit_p50 = jobs("trivial @agentq-test commit", 101).await;
    let idle_p50 = jobs("trivial", 1).await;
    // `docker run --rm` of the same image, p50 of 20: as `true`, and as the
    // same agent doing the same trivial task on the agents' network (what
    // Docker alone costs for that container, the agent's own work included).
    let docker_run = |args: &[&str]| {
        let mut took = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            let ok = Command::new("docker")
                .args(["run", "--rm", "--init"])
                .args(args)
                .output()
                .unwrap()
                .status
                .success();
            assert!(ok, "docker run {args:?} failed");
            took.push(t.elapsed().as_secs_f64());
        }
        median(&mut took)
    };
    let docker_p50 = docker_run(&[TEST_IMAGE, "true"]);
    let same_p50 = docker_run(&[
        "--network",
        "agentq-agents",
        TEST_IMAGE,
        "codex",
        "exec",
        "trivial",
    ]);
    if timeline {
        // The worker's log of the last jobs, to see where their time goes.
        let log = std::fs::read_to_string(&w.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().filter(|l| !l.contains("apalis_core")).collect();
        eprintln!("{}", lines[lines.len().saturating_sub(60)..].join("\n"));
    }
    drop(w);
    drop(env);
    let jobs = [
        ("no commit: one container, the agent's", idle_p50),
        (
            "one commit: two containers, the agent's and the export's; the branch pushed",
            commit_p50,
        ),
    ];
    let baselines = [
        ("`docker run --rm` of the same image, `true`", docker_p50),
        (
            "`docker run --rm` of the same image and agent command on the agents' network",
            same_p50,
        ),
    ];
    let mut rows = Vec::new();
    for (what, p50) in jobs {
        for (peer, theirs) in baselines {
            rows.push(Row {
                what: format!(
                    "one trivial job, prep start → final state, p50 of 20 (1 worker, warm mirror; {what})"
                ),
                agentq: format!("{p50:.2} s"),
                peer: format!("{peer}: {theirs:.2} s"),
                ratio: format!("{:.2}× ({:+.0} ms)", p50 / theirs, (p50 - theirs) * 1000.0),
            });
        }
    }
    rows
}

#[tokio::main]
async fn main() {
    match std::env::var("AGENTQ_BENCH_ONLY").as_deref() {
        Ok("web") => return print_rows(web_first_page().await),
        Ok("memory") => return print_rows(vec![memory(None).await]),
        Ok("dispatch") => return print_rows(dispatch().await),
        Ok("sandbox") => return print_rows(bench_sandbox::rows().await),
        Ok("sandbox-commit") => return print_rows(bench_sandbox::commit_rows().await),
        Ok("sandbox-start") => return print_rows(bench_sandbox::container_start().await),
        Ok("sandbox-qa") => return print_rows(bench_sandbox::qa_go().await),
        Ok("enqueue") => return print_rows(enqueue_rows(&repo_root().join("scripts/bench-peers"))),
        Ok("idle") => return print_rows(bench_idle::rows().await),
        Ok("flows") => return print_rows(vec![bench_flows::row().await]),
        _ => {}
    }
    require_docker();
    let peers = repo_root().join("scripts/bench-peers");
    let mut rows: Vec<Row> = Vec::new();

    // 1. Batch enqueue, 50 000 jobs, one process each, same Redis, in turn;
    // 2. single enqueue.
    rows.extend(enqueue_rows(&peers));

    // 3. Waiting: N jobs parked behind `claude = 1` whose slot is held, one idle
    // worker; Redis commands/s of everything (worker heartbeats and polling
    // included), the worker's CPU and memory.
    let env = TestEnv::with_config("[limits]\nclaude = 1\n");
    env.remotes.create("core", "demo", &[]);
    let w = env.worker("bench", 4);
    wait_live_workers(&env, 1).await;
    let rss_idle = Some(proc_usage(w.pid()).1);
    let _: () = redis::cmd("ZADD")
        .arg(env.key("limit:claude"))
        .arg(i64::MAX / 2)
        .arg("held-by-a-long-job")
        .query(&mut env.redis.conn())
        .unwrap();
    let mut waiting = Vec::new();
    let mut queued = 0usize;
    for target in [10usize, 1_000, 10_000] {
        env.enqueue_ndjson(&ndjson(target - queued, 1 + queued, "wait", "claude"));
        queued = target;
        wait_parked(&env, "claude", target as u64).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (c0, k0) = (env.redis.total_commands(), proc_usage(w.pid()).0);
        let t = Instant::now();
        tokio::time::sleep(Duration::from_secs(10)).await;
        let secs = t.elapsed().as_secs_f64();
        let rate = (env.redis.total_commands() - c0) as f64 / secs;
        let cpu = (proc_usage(w.pid()).0 - k0) / secs * 100.0;
        waiting.push((target, rate, cpu));
    }
    rows.push(Row {
        what: "Redis commands/s of the whole pool (1 worker) with 10 / 1 000 / 10 000 jobs waiting"
            .into(),
        agentq: waiting
            .iter()
            .map(|(_, r, _)| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(" / "),
        peer: "before parking: 18 246 with 2 000 waiting (issue 12)".into(),
        ratio: format!("{:.2}× (10 000 ÷ 10)", waiting[2].1 / waiting[0].1),
    });
    rows.push(Row::solo(
        "worker CPU while 10 / 1 000 / 10 000 jobs wait",
        waiting
            .iter()
            .map(|(_, _, c)| format!("{c:.1}%"))
            .collect::<Vec<_>>()
            .join(" / "),
    ));

    // 4. Bulk operations on those 10 000.
    let t = Instant::now();
    env.cli_ok(&["cancel", "--state", "queued"]);
    let cancel = t.elapsed().as_secs_f64();
    let t = Instant::now();
    env.cli_ok(&["retry", "--state", "cancelled"]);
    let retry = t.elapsed().as_secs_f64();
    rows.push(Row::solo(
        "`agentq cancel --state queued` / `agentq retry --state cancelled`, 10 000 jobs",
        format!("{cancel:.2} s / {retry:.2} s"),
    ));
    env.cli_ok(&["cancel", "--state", "queued"]);
    drop(w);
    drop(env);

    // 5. Dispatch overhead: trivial jobs on a warm mirror beside `docker run --rm`.
    rows.extend(dispatch().await);
    rows.extend(bench_sandbox::rows().await);

    // 6. Memory.
    rows.push(memory(rss_idle).await);
    rows.extend(bench_idle::rows().await);
    rows.push(bench_flows::row().await);

    if std::env::var_os("AGENTQ_BENCH_QUICK").is_none() {
        // 8. Preparing workspaces of a big repository on one host (the mirror cache):
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
            prep.push(run_secs(&rec));
        }
        rows.push(Row::solo(
            "prepare a workspace, 5 000-commit ~100 MB repository: first / tenth on one host",
            format!("{:.2} s / {:.2} s", prep[0], prep[9]),
        ));
    }

    rows.extend(web_first_page().await);
    print_rows(rows);
}

fn print_rows(rows: Vec<Row>) {
    println!("| measurement | agentq | side by side | ratio |\n|---|---|---|---|");
    for r in rows {
        println!("| {} | {} | {} | {} |", r.what, r.agentq, r.peer, r.ratio);
    }
}

/// Row 7, the web console: the first page (50 jobs) of the job list with 100 000
/// jobs in Redis, over HTTP from `agentq web`, p50 of 20 requests each: the
/// HTML page unfiltered and by state, the JSON API, and a search that
/// matches nothing (the most a page reads: `PAGE_SCAN_MAX` records).
async fn web_first_page() -> Vec<Row> {
    let env = TestEnv::new();
    let n = 100_000usize;
    for chunk in 0..10 {
        let lines = ndjson(n / 10, 1 + chunk * n / 10, "web bench", "claude");
        let out = env.cli(&["enqueue", "-"], Some(&lines));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let web = env.web(None);
    let client = reqwest::Client::new();
    let mut cells = Vec::new();
    for (label, path) in [
        ("`/jobs`", "/jobs"),
        ("`/jobs?state=queued`", "/jobs?state=queued"),
        ("`/api/jobs`", "/api/jobs"),
        (
            "`/jobs?q=no-such-text` (reads 20 000 records)",
            "/jobs?q=no-such-text",
        ),
    ] {
        let url = format!("{}{path}", web.url);
        let mut times = Vec::new();
        for _ in 0..21 {
            let t = Instant::now();
            let r = client.get(&url).send().await.unwrap();
            assert!(r.status().is_success(), "{path}: {}", r.status());
            let body = r.text().await.unwrap();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            assert!(body.len() > 1_000, "{path}: a page");
        }
        times.remove(0); // the first warms the connection
        cells.push(format!("{label} {:.1} ms", median(&mut times)));
    }
    vec![Row::solo(
        &format!("web console: first page of the job list (50 rows) with {n} jobs in Redis, over HTTP, p50 of 20"),
        cells.join(", "),
    )]
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
