//! Atomic batch enqueue from the CLI: per-line results printed only once their
//! chunk is in Redis, invalid UTF-8 refused by line, idempotency keys, exactly
//! which lines did not go in after a Redis failure, brief Redis errors naming
//! the URL, and no panic on a closed stdout. Real redis-server, the built
//! `agentq` binary; no worker and no Docker.

use std::{
    collections::{BTreeMap, HashSet},
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    os::unix::process::ExitStatusExt,
    path::Path,
    process::{Child, ChildStdout, Command, Output, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use agentq_shared::status::JobState;
use agentq_tests::*;
use redis::Commands;
use serde_json::Value;

/// Longest any one CLI process may take before the test kills it and fails.
const CLI_LIMIT: Duration = Duration::from_secs(120);

/// NDJSON line `i` (1-based): a valid job for issue `i`, with key `demo#i`
/// when `keyed`.
fn job_line(i: usize, keyed: bool) -> String {
    if keyed {
        format!(r#"{{"repo":"demo","task":"job {i}","issue":{i},"key":"demo#{i}"}}"#)
    } else {
        format!(r#"{{"repo":"demo","task":"job {i}","issue":{i}}}"#)
    }
}

fn lines(range: std::ops::RangeInclusive<usize>, keyed: bool) -> String {
    range.map(|i| job_line(i, keyed) + "\n").collect()
}

/// Kills process `pid` if it is still running after `limit` (a test that hangs
/// fails instead of waiting forever). Disarmed on drop.
struct Watchdog(Option<mpsc::Sender<()>>);

impl Watchdog {
    fn new(pid: u32, limit: Duration) -> Self {
        let (tx, rx) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            if rx.recv_timeout(limit) == Err(mpsc::RecvTimeoutError::Timeout) {
                eprintln!("agentq (pid {pid}) still running after {limit:?}: killing it");
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        });
        Self(Some(tx))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// `agentq args...` with stdin, stdout and stderr piped.
fn spawn(env: &TestEnv, args: &[&str]) -> Child {
    Command::new(bin("agentq"))
        .args(args)
        .envs(env.env())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start agentq")
}

/// Runs `agentq args...` with `input` (any bytes) on stdin.
fn run(env: &TestEnv, args: &[&str], input: &[u8]) -> Output {
    let mut child = spawn(env, args);
    let _dog = Watchdog::new(child.id(), CLI_LIMIT);
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    // Fed from another thread: the CLI writes results while it reads.
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn json_lines(out: &[u8]) -> Vec<Value> {
    text(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Every job id in this world's Redis.
fn ids_in_redis(env: &TestEnv) -> HashSet<String> {
    let ids: Vec<String> = env.redis.conn().zrange(env.key("jobs"), 0, -1).unwrap();
    ids.into_iter().collect()
}

/// Deliveries waiting on the apalis queue.
async fn queue_depth(env: &TestEnv) -> u64 {
    env.store().await.queue_depth().await.unwrap()
}

/// Reads stderr to the end on a thread, so a full pipe never blocks the CLI.
fn drain(mut r: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

/// Reads `n` lines from the CLI's stdout (blocking until it printed them).
fn read_lines(out: &mut BufReader<ChildStdout>, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let mut l = String::new();
            let got = out.read_line(&mut l).unwrap();
            assert!(got > 0, "stdout ended after {i} of {n} lines");
            l.trim_end().to_string()
        })
        .collect()
}

/// `line N: queued ID` → (N, ID).
fn queued(line: &str) -> (usize, String) {
    let rest = line
        .strip_prefix("line ")
        .unwrap_or_else(|| panic!("{line}"));
    let (n, rest) = rest
        .split_once(": queued ")
        .unwrap_or_else(|| panic!("{line}"));
    (n.parse().unwrap(), rest.to_string())
}

/// Line numbers of `line N: {suffix}` lines.
fn numbered(text: &str, suffix: &str) -> Vec<usize> {
    text.lines()
        .filter_map(|l| l.strip_prefix("line ")?.strip_suffix(suffix)?.parse().ok())
        .collect()
}

/// The JSON results with `status`, as line numbers.
fn with_status(results: &[Value], status: &str) -> Vec<usize> {
    results
        .iter()
        .filter(|r| r["status"] == status)
        .map(|r| r["line"].as_u64().unwrap() as usize)
        .collect()
}

/// After a whole keyed file (lines 1..=total) is resubmitted: exactly `total`
/// jobs, one per key, each key naming its job, one delivery each; the lines
/// already in (`before`: line → id) print `exists` with the same id.
async fn resubmit_all_with_keys(env: &TestEnv, total: usize, before: &BTreeMap<usize, String>) {
    let out = run(
        env,
        &["enqueue", "-", "--json"],
        lines(1..=total, true).as_bytes(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let results = json_lines(&out.stdout);
    assert_eq!(results.len(), total);
    for r in &results {
        let n = r["line"].as_u64().unwrap() as usize;
        let id = r["id"].as_str().unwrap();
        assert_eq!(r["key"], format!("demo#{n}"), "{r}");
        match before.get(&n) {
            Some(old) => {
                assert_eq!(r["status"], "exists", "{r}");
                assert_eq!(id, old, "line {n} names the job it already is");
            }
            None => assert_eq!(r["status"], "queued", "{r}"),
        }
    }
    let ids = ids_in_redis(env);
    assert_eq!(ids.len(), total, "one job per line, no duplicates");
    let mut conn = env.redis.conn();
    let owners: HashSet<String> = (1..=total)
        .map(|i| {
            conn.get::<_, String>(env.key(&format!("key:demo#{i}")))
                .unwrap()
        })
        .collect();
    assert_eq!(owners, ids, "every key names its own job");
    assert_eq!(queue_depth(env).await, total as u64, "one delivery per job");
    // The CLI agrees.
    let listed = json_lines(env.cli_ok(&["list", "--json", "--limit", "0"]).as_bytes());
    assert_eq!(listed.len(), total);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_line_that_is_not_utf8_is_refused_by_number_and_the_others_go_in() {
    let env = TestEnv::new();
    // 50 good lines, an empty one (skipped, but counted) and a bad one.
    let mut input = Vec::new();
    for i in 1..=50 {
        if i == 20 {
            input.extend_from_slice(b"\n");
        }
        if i == 30 {
            input.extend_from_slice(b"{\"repo\":\"demo\",\"task\":\"caf\xe9\",\"issue\":1}\n");
        }
        input.extend_from_slice(job_line(i, false).as_bytes());
        input.push(b'\n');
    }
    let out = run(&env, &["enqueue", "-"], &input);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let queued: Vec<(usize, String)> = stdout
        .lines()
        .filter(|l| l.contains(": queued "))
        .map(queued)
        .collect();
    assert_eq!(queued.len(), 50, "{stdout}");
    // Lines 1-19, then (empty line 20) 21-30, (bad line 31) 32-52.
    let numbers: Vec<usize> = queued.iter().map(|(n, _)| *n).collect();
    let expected: Vec<usize> = (1..=52).filter(|n| *n != 20 && *n != 31).collect();
    assert_eq!(numbers, expected);
    let refused: Vec<&str> = stdout.lines().filter(|l| l.contains("refused")).collect();
    assert_eq!(
        refused,
        ["line 31: refused: json: not valid UTF-8 (at byte 27)"],
        "{stdout}"
    );
    assert!(
        text(&out.stderr).contains("50 enqueued, 1 refused"),
        "{}",
        text(&out.stderr)
    );
    let ids: HashSet<String> = queued.into_iter().map(|(_, id)| id).collect();
    assert_eq!(ids_in_redis(&env), ids);
    assert_eq!(queue_depth(&env).await, 50);

    // JSON: the same refusal, with its field.
    let out = run(
        &env,
        &["enqueue", "-", "--json"],
        b"{\"repo\":\"demo\",\"task\":\"\xff\",\"issue\":1}\n",
    );
    assert_eq!(out.status.code(), Some(1));
    let r = &json_lines(&out.stdout)[0];
    assert_eq!(
        (
            r["line"].as_u64(),
            r["status"].as_str(),
            r["field"].as_str()
        ),
        (Some(1), Some("refused"), Some("json")),
        "{r}"
    );
    assert_eq!(ids_in_redis(&env).len(), 50);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_makes_enqueueing_again_a_no_op() {
    let env = TestEnv::new();
    let job = [
        "enqueue", "--repo", "demo", "--task", "fix", "--issue", "15", "--key", "demo#15",
    ];
    let first = env.cli_ok(&job);
    let out = env.cli(&job, None);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout).trim(),
        first,
        "the existing id, alone on stdout"
    );
    assert!(
        text(&out.stderr).contains(&format!("{first} (already enqueued with key demo#15)")),
        "{}",
        text(&out.stderr)
    );
    let mut json_args = job.to_vec();
    json_args.push("--json");
    let r: Value = serde_json::from_str(&env.cli_ok(&json_args)).unwrap();
    assert_eq!(
        r,
        serde_json::json!({"id": first, "status": "exists", "key": "demo#15"})
    );
    assert_eq!(ids_in_redis(&env).len(), 1);
    let rec = env.store().await.get(&first).await.unwrap().unwrap();
    assert_eq!(rec.key, "demo#15");
    let input = serde_json::to_string(&rec.input).unwrap();
    assert!(
        !input.contains("demo#15"),
        "the key is not part of the job's input: {input}"
    );

    // Bad keys are refused, naming the field.
    for bad in ["", "a b", "tab\there", &"k".repeat(201)] {
        let out = env.cli(
            &[
                "enqueue", "--repo", "demo", "--task", "t", "--issue", "1", "--key", bad,
            ],
            None,
        );
        assert_eq!(out.status.code(), Some(1), "{bad:?}");
        assert!(
            text(&out.stderr).contains("refused: key: "),
            "{bad:?}: {}",
            text(&out.stderr)
        );
    }
    assert_eq!(ids_in_redis(&env).len(), 1);

    // NDJSON: keys per line; a duplicate inside the batch is the first line's job.
    let batch = format!(
        "{}\n{}\n{}\n{}\n",
        job_line(1, true),
        job_line(2, true),
        job_line(1, true),
        r#"{"repo":"demo","task":"t","issue":3,"key":"has space"}"#
    );
    let out = run(&env, &["enqueue", "-", "--json"], batch.as_bytes());
    assert_eq!(out.status.code(), Some(1), "line 4 is refused");
    let r = json_lines(&out.stdout);
    assert_eq!(with_status(&r, "queued"), [1, 2]);
    assert_eq!(with_status(&r, "exists"), [3]);
    assert_eq!(r[2]["id"], r[0]["id"]);
    assert_eq!(with_status(&r, "refused"), [4]);
    assert_eq!(r[3]["field"], "key");
    assert_eq!(ids_in_redis(&env).len(), 3);

    // The same batch again (the bad line fixed): nothing new.
    let again = format!(
        "{}\n{}\n{}\n",
        job_line(1, true),
        job_line(2, true),
        job_line(1, true)
    );
    let out = run(&env, &["enqueue", "-"], again.as_bytes());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout.lines().filter(|l| l.contains(": exists ")).count(),
        3,
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "line 1: exists {} (already enqueued with key demo#1)",
            r[0]["id"].as_str().unwrap()
        )),
        "{stdout}"
    );
    assert!(text(&out.stderr).contains("0 enqueued, 3 already enqueued"));
    let listed = json_lines(env.cli_ok(&["list", "--json", "--limit", "0"]).as_bytes());
    assert_eq!(listed.len(), 3, "no new jobs");
    assert_eq!(queue_depth(&env).await, 3);
}

/// Feeds lines 1..=600 of a keyed 1,200-line file, waits until the CLI printed
/// the 500 results of its first chunk, calls `break_redis`, feeds the rest and
/// closes stdin. Returns (exit code, stdout lines, stderr).
fn interrupted_batch(
    env: &TestEnv,
    args: &[&str],
    break_redis: impl FnOnce(),
) -> (Option<i32>, Vec<String>, String) {
    let mut child = spawn(env, args);
    let _dog = Watchdog::new(child.id(), CLI_LIMIT);
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    stdin.write_all(lines(1..=600, true).as_bytes()).unwrap();
    stdin.flush().unwrap();
    // The first chunk (500 jobs) went in: its 500 results are printed. The CLI
    // now holds lines 501-600 and waits for more input.
    let mut out = read_lines(&mut stdout, 500);
    break_redis();
    stdin.write_all(lines(601..=1200, true).as_bytes()).unwrap();
    drop(stdin);
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    out.extend(rest.lines().map(str::to_string));
    let status = child.wait().unwrap();
    (status.code(), out, stderr.join().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn after_redis_refuses_a_chunk_the_cli_says_exactly_which_lines_went_in() {
    let env = TestEnv::new();
    let (code, out, err) = interrupted_batch(&env, &["enqueue", "-"], || {
        // Redis now refuses every write (OOM), as a full Redis does.
        env.redis.refuse_writes(true);
    });
    assert_eq!(code, Some(2), "the Redis-failure exit code\n{err}");
    // stdout is exactly what went in: the first chunk.
    let printed: BTreeMap<usize, String> = out.iter().map(|l| queued(l)).collect();
    assert_eq!(out.len(), 500, "{out:?}");
    assert_eq!(
        printed.keys().copied().collect::<Vec<_>>(),
        (1..=500).collect::<Vec<_>>()
    );
    let printed_ids: HashSet<String> = printed.values().cloned().collect();
    assert_eq!(
        ids_in_redis(&env),
        printed_ids,
        "every printed id is in Redis, and nothing else (no ghosts)"
    );
    assert_eq!(queue_depth(&env).await, 500);
    // Every other line is reported not enqueued, on stderr.
    assert_eq!(
        numbered(&err, ": not enqueued (redis error)"),
        (501..=1200).collect::<Vec<_>>(),
        "{err}"
    );
    let summary = err.lines().last().unwrap();
    assert!(
        summary.starts_with("agentq: 500 enqueued, 0 refused, 700 not enqueued: ")
            && summary.contains(&format!("Redis at redis://127.0.0.1:{}", env.redis.port))
            && summary.contains("OOM")
            && summary.ends_with(
                "resubmit the lines not enqueued (with keys, resubmitting everything is safe)"
            ),
        "{summary}"
    );

    // Healed, the whole file again: the 700 go in, the 500 are not doubled.
    env.redis.refuse_writes(false);
    resubmit_all_with_keys(&env, 1200, &printed).await;
}

/// A redis-server that keeps its data on disk (AOF, fsync always), so it can be
/// killed and started again with what it had acknowledged.
struct DurableRedis {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl DurableRedis {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        Self {
            child: Self::spawn(port, dir.path()),
            port,
            dir,
        }
    }

    fn spawn(port: u16, dir: &Path) -> Child {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}): install it with `apt-get install -y redis-server`")
            });
        let url = format!("redis://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        // Ready when it answers PING (after loading its AOF).
        while redis::Client::open(url.as_str())
            .and_then(|c| c.get_connection())
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "redis-server on port {port} did not answer within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn restart(&mut self) {
        self.kill9();
        self.child = Self::spawn(self.port, self.dir.path());
    }
}

impl Drop for DurableRedis {
    fn drop(&mut self) {
        self.kill9();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn after_redis_dies_mid_batch_nothing_is_claimed_that_is_not_in() {
    let env = TestEnv::new();
    let mut durable = DurableRedis::start();
    env.set_env("AGENTQ_REDIS_URL", durable.url());
    let (code, out, err) = interrupted_batch(&env, &["enqueue", "-", "--json"], || durable.kill9());
    assert_eq!(code, Some(2), "{err}");
    let results: Vec<Value> = out
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let printed: BTreeMap<usize, String> = results
        .iter()
        .filter(|r| r["status"] == "queued")
        .map(|r| {
            (
                r["line"].as_u64().unwrap() as usize,
                r["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        printed.keys().copied().collect::<Vec<_>>(),
        (1..=500).collect::<Vec<_>>()
    );
    // The chunk being written when the connection broke cannot be told (Redis
    // is gone): "unknown", never "queued"; the lines after it: not enqueued.
    assert_eq!(
        with_status(&results, "unknown"),
        (501..=1000).collect::<Vec<_>>()
    );
    assert_eq!(
        with_status(&results, "not_enqueued"),
        (1001..=1200).collect::<Vec<_>>()
    );
    assert_eq!(results.len(), 1200);
    let summary = err.lines().last().unwrap();
    assert!(
        summary.contains("500 enqueued, 0 refused, 200 not enqueued, 500 unknown")
            && summary.contains(&durable.url())
            && summary.contains("resubmitting everything is safe"),
        "{summary}"
    );

    // Redis back with what it acknowledged: exactly the printed jobs.
    durable.restart();
    let mut conn = redis::Client::open(durable.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let ids: Vec<String> = conn.zrange(env.key("jobs"), 0, -1).unwrap();
    let ids: HashSet<String> = ids.into_iter().collect();
    assert_eq!(ids, printed.values().cloned().collect::<HashSet<_>>());

    // The whole file again, with keys: 1,200 jobs, none twice.
    let out = run(
        &env,
        &["enqueue", "-", "--json"],
        lines(1..=1200, true).as_bytes(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let r = json_lines(&out.stdout);
    assert_eq!(with_status(&r, "exists"), (1..=500).collect::<Vec<_>>());
    assert_eq!(with_status(&r, "queued"), (501..=1200).collect::<Vec<_>>());
    let total: u64 = conn.zcard(env.key("jobs")).unwrap();
    assert_eq!(total, 1200);
}

/// A TCP proxy to Redis that, when armed, drops the connection on the answer
/// to the next transaction (the `EXEC` reply, the first `*` after a `+QUEUED`)
/// instead of passing it on: the transaction ran, the client never hears so.
struct CuttingProxy {
    port: u16,
    armed: Arc<AtomicBool>,
}

impl CuttingProxy {
    fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let armed = Arc::new(AtomicBool::new(false));
        let flag = armed.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let server = TcpStream::connect(("127.0.0.1", upstream)).unwrap();
                let (mut c_in, mut s_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_in, &mut s_out);
                    let _ = s_out.shutdown(std::net::Shutdown::Write);
                });
                let flag = flag.clone();
                std::thread::spawn(move || {
                    let (mut s_in, mut c_out) = (server, client);
                    let mut buf = [0u8; 64 * 1024];
                    const EXEC_REPLY: &[u8] = b"+QUEUED\r\n*";
                    // The end of the previous read, for a match across reads.
                    let mut tail: Vec<u8> = Vec::new();
                    loop {
                        let n = match s_in.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        tail.extend_from_slice(&buf[..n]);
                        let exec = tail.windows(EXEC_REPLY.len()).any(|w| w == EXEC_REPLY);
                        tail.drain(..tail.len().saturating_sub(EXEC_REPLY.len()));
                        if exec && flag.swap(false, Ordering::SeqCst) {
                            let _ = c_out.shutdown(std::net::Shutdown::Both);
                            let _ = s_in.shutdown(std::net::Shutdown::Both);
                            return;
                        }
                        if c_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = c_out.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        Self { port, armed }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chunk_that_went_in_before_the_connection_broke_is_reported_in() {
    let env = TestEnv::new();
    let proxy = CuttingProxy::start(env.redis.port);
    env.set_env("AGENTQ_REDIS_URL", proxy.url());
    let (code, out, err) = interrupted_batch(&env, &["enqueue", "-"], || {
        proxy.armed.store(true, Ordering::SeqCst)
    });
    assert_eq!(code, Some(2), "the batch still stops\n{err}");
    // Redis ran the second chunk; the CLI lost the answer, asked Redis on a new
    // connection, and reports those lines queued too.
    let printed: BTreeMap<usize, String> = out.iter().map(|l| queued(l)).collect();
    assert_eq!(
        printed.keys().copied().collect::<Vec<_>>(),
        (1..=1000).collect::<Vec<_>>(),
        "{err}"
    );
    assert_eq!(
        ids_in_redis(&env),
        printed.values().cloned().collect::<HashSet<_>>(),
        "printed is exactly what is in Redis"
    );
    assert_eq!(
        queue_depth(&env).await,
        1000,
        "the script ran once: one place in line per job"
    );
    assert_eq!(
        numbered(&err, ": not enqueued (redis error)"),
        (1001..=1200).collect::<Vec<_>>(),
        "{err}"
    );
    assert!(numbered(
        &err,
        ": unknown (the connection to Redis broke during its write)"
    )
    .is_empty());
    assert!(
        err.lines()
            .last()
            .unwrap()
            .starts_with("agentq: 1000 enqueued, 0 refused, 200 not enqueued: Redis at "),
        "{err}"
    );
    resubmit_all_with_keys(&env, 1200, &printed).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_stdout_ends_the_cli_quietly() {
    let env = TestEnv::new();
    let ids = env.enqueue_ndjson(&lines(1..=1500, false));
    assert_eq!(ids.len(), 1500);
    for args in [
        &["list", "--json", "--limit", "0"][..],
        &["list", "--limit", "0"][..],
    ] {
        // Far more output than a pipe holds (64 KiB), so the CLI is still
        // writing when the reader goes away.
        let all = env.cli(args, None);
        assert!(
            all.stdout.len() > 128 * 1024,
            "{args:?}: {} bytes",
            all.stdout.len()
        );
        let mut child = spawn(&env, args);
        let _dog = Watchdog::new(child.id(), CLI_LIMIT);
        drop(child.stdin.take());
        let stderr = drain(child.stderr.take().unwrap());
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let first = read_lines(&mut stdout, 1);
        assert!(!first[0].is_empty());
        drop(stdout);
        let status = child.wait().unwrap();
        let err = stderr.join().unwrap();
        assert_eq!(err, "", "{args:?}: nothing on stderr");
        assert_eq!(
            status.signal(),
            Some(13),
            "{args:?}: ended by SIGPIPE, like other tools"
        );
    }
    // As people type it.
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#""$0" list --json | head -1"#)
        .arg(bin("agentq"))
        .envs(env.env())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(text(&out.stdout).lines().count(), 1);
    let err = text(&out.stderr);
    assert!(!err.contains("panicked") && err.is_empty(), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn purge_frees_the_idempotency_key() {
    let env = TestEnv::new();
    let job = [
        "enqueue", "--repo", "demo", "--task", "t", "--issue", "1", "--key", "demo#1",
    ];
    let first = env.cli_ok(&job);
    let keep = env.cli_ok(&[
        "enqueue", "--repo", "demo", "--task", "t", "--issue", "2", "--key", "demo#2",
    ]);
    env.cli_ok(&["cancel", &first]);
    assert_eq!(
        env.cli_ok(&["purge", "--state", "cancelled", "--older-than", "0s"]),
        "purged 1 cancelled job(s)"
    );
    let mut conn = env.redis.conn();
    let gone: Option<String> = conn.get(env.key("key:demo#1")).unwrap();
    assert_eq!(gone, None, "the purged job's key is deleted");
    let kept: Option<String> = conn.get(env.key("key:demo#2")).unwrap();
    assert_eq!(kept.as_deref(), Some(keep.as_str()), "other keys stay");
    // The key can be used again: a new job.
    let second = env.cli_ok(&job);
    assert_ne!(second, first);
    assert_eq!(ids_in_redis(&env).len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_errors_name_the_url_without_its_password_and_are_brief() {
    let env = TestEnv::with_config_and_redis_password("", "s3cret-pw");
    env.redis.refuse_writes(true);
    let out = env.cli(
        &["enqueue", "--repo", "demo", "--task", "t", "--issue", "1"],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    let url = format!("redis://***@127.0.0.1:{}", env.redis.port);
    assert!(
        err.starts_with(&format!("agentq: not enqueued: Redis at {url}: ")) && err.contains("OOM"),
        "{err}"
    );
    assert!(!err.contains("s3cret-pw"), "{err}");
    assert!(
        err.lines().count() <= 3 && err.chars().count() <= 320,
        "{err}"
    );
    assert_eq!(ids_in_redis(&env).len(), 0);

    // Unreachable: the same URL, a hint, exit 2.
    env.set_env(
        "AGENTQ_REDIS_URL",
        format!("redis://:s3cret-pw@127.0.0.1:{}", free_port()),
    );
    let out = env.cli(&["list"], None);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("cannot reach Redis at redis://***@127.0.0.1:"),
        "{err}"
    );
    assert!(
        !err.contains("s3cret-pw") && err.lines().count() <= 3,
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_record_is_packed_until_its_first_change_and_reads_the_same_both_ways() {
    let env = TestEnv::new();
    let id = env.cli_ok(&[
        "enqueue",
        "--repo",
        "demo",
        "--task",
        "pack me",
        "--issue",
        "7",
        "--agent",
        "claude:opus",
        "--key",
        "demo#7",
    ]);
    let own = |env: &TestEnv| -> BTreeMap<String, String> {
        env.redis
            .conn()
            .hgetall(env.key(&format!("job:{id}")))
            .unwrap()
    };
    let packed =
        |env: &TestEnv| -> Option<String> { env.redis.conn().hget(env.key("new"), &id).unwrap() };
    // As enqueue writes it: one packed record in the hash of new jobs, no key
    // of its own.
    assert!(own(&env).is_empty());
    let fields: BTreeMap<String, String> =
        serde_json::from_str(&packed(&env).expect("in the hash of new jobs")).unwrap();
    assert_eq!(fields["state"], "queued");
    assert_eq!(fields["pool"], "claude");
    let store = env.store().await;
    let before = store.get(&id).await.unwrap().unwrap();
    assert_eq!(before.id, id);
    assert_eq!(before.state, JobState::Queued);
    assert_eq!(before.input.task, "pack me");
    assert_eq!(before.input.agent, "claude:opus");
    assert_eq!(before.key, "demo#7");
    assert_eq!(before.seq, 1);
    assert!(before.max_attempts > 0 && before.created_at.ms() > 0);
    assert_eq!(store.state_of(&id).await.unwrap(), Some(JobState::Queued));
    let listed = store
        .list(&agentq_shared::store::ops::ListFilter::default())
        .await
        .unwrap();
    assert_eq!(listed, vec![before.clone()], "listed the same");
    // Found, listed and counted as queued, though in no state's index yet.
    let queued = agentq_shared::store::ops::ListFilter {
        state: Some(JobState::Queued),
        ..Default::default()
    };
    assert_eq!(store.list(&queued).await.unwrap(), vec![before.clone()]);
    let page = store.list_page(&queued, None).await.unwrap();
    assert_eq!(page.jobs, vec![before.clone()], "the console's page");
    assert_eq!(
        store.ids_in_state(JobState::Queued).await.unwrap(),
        vec![id.clone()]
    );
    let counts = store.state_counts().await.unwrap();
    assert!(counts.contains(&(JobState::Queued, 1)), "{counts:?}");

    // The first change (a cancel, in Lua) moves it to its own hash.
    env.cli_ok(&["cancel", &id]);
    assert_eq!(packed(&env), None);
    let plain = own(&env);
    for field in [
        "id",
        "input",
        "key",
        "seq",
        "order",
        "pool",
        "model",
        "created_at",
    ] {
        assert!(plain.contains_key(field), "{field} missing: {plain:?}");
    }
    assert_eq!(plain["pool"], "claude");
    assert_eq!(plain["model"], "opus");
    let after = store.get(&id).await.unwrap().unwrap();
    assert_eq!(after.state, JobState::Cancelled);
    let counts = store.state_counts().await.unwrap();
    assert!(
        counts.contains(&(JobState::Queued, 0)) && counts.contains(&(JobState::Cancelled, 1)),
        "{counts:?}"
    );
    assert_eq!(
        (
            &after.input,
            &after.key,
            after.seq,
            after.max_attempts,
            &after.created_at
        ),
        (
            &before.input,
            &before.key,
            before.seq,
            before.max_attempts,
            &before.created_at
        ),
        "the same record, read packed and unpacked"
    );
    // The key still names the job.
    let again = env.cli_ok(&[
        "enqueue", "--repo", "demo", "--task", "pack me", "--issue", "7", "--key", "demo#7",
    ]);
    assert_eq!(again, id);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_waits_in_line_in_input_order_across_chunks_written_side_by_side() {
    let env = TestEnv::new();
    // Four chunks, two written at a time, places in line reserved ahead; and
    // a lone job enqueued after it goes behind all of them.
    let ids = env.enqueue_ndjson(&lines(1..=1_800, false));
    assert_eq!(ids.len(), 1_800);
    let last = env.enqueue(&["--repo", "demo", "--task", "after", "--issue", "9999"]);
    let lane: Vec<String> = env
        .redis
        .conn()
        .zrange(env.key("lane:codex:-"), 0, -1)
        .unwrap();
    let mut expected = ids.clone();
    expected.push(last);
    assert_eq!(lane, expected, "the lane holds the jobs in input order");
    // Every record is there, in state queued.
    let store = env.store().await;
    for id in [&ids[0], &ids[899], &ids[1_799]] {
        let rec = store.get(id).await.unwrap().unwrap();
        assert_eq!(rec.state, JobState::Queued);
    }
}

/// Issue 34: a batch's lines are read in one pass into a typed struct whose
/// strings borrow from the line; what that reading cannot take as it stands
/// goes through the field-naming reader. Escaped strings come out exactly,
/// every bad field is still named, and a repeated field still takes the last.
#[tokio::test(flavor = "multi_thread")]
async fn a_batch_reads_escapes_exactly_and_names_each_bad_field() {
    let env = TestEnv::new();
    let task = "say \"hi\" \\ then\nnewline, tab\t, é, 😀, </tag>";
    let good = serde_json::json!({"repo": "demo", "task": task, "issue": 1,
        "variables": {"k": "v \"q\""}, "key": "demo#esc"})
    .to_string();
    let input = [
        good.as_str(),
        // \u escapes and an escaped slash: the same task.
        r#"{"repo":"demo","task":"say \"hi\" \\ then\u000anewline, tab\u0009, \u00e9, \ud83d\ude00, <\/tag>","issue":2}"#,
        r#"{"repo":"demo","task":"t","issue":3,"agent":"gpt"}"#,
        r#"{"repo":"demo","task":"t","issue":1.0}"#,
        r#"{"repo":"demo","task":"t","issue":5,"colour":"red"}"#,
        r#"{"repo":"demo","task":"t","issue":6,"variables":null}"#,
        r#"{"repo":"elsewhere","repo":"demo","task":"last wins","issue":7}"#,
        r#"{"repo":"demo","task":"t","issue":8,"priority":"urgent"}"#,
    ]
    .join("\n");
    let out = run(&env, &["enqueue", "-", "--json"], input.as_bytes());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let r = json_lines(&out.stdout);
    assert_eq!(with_status(&r, "queued"), [1, 2, 7]);
    let fields: Vec<(u64, &str)> = r
        .iter()
        .filter(|v| v["status"] == "refused")
        .map(|v| (v["line"].as_u64().unwrap(), v["field"].as_str().unwrap()))
        .collect();
    assert_eq!(
        fields,
        [
            (3, "agent"),
            (4, "issue"),
            (5, "colour"),
            (6, "variables"),
            (8, "priority")
        ]
    );
    let store = env.store().await;
    let id = |line: u64| {
        r.iter().find(|v| v["line"] == line).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let one = store.get(&id(1)).await.unwrap().unwrap();
    assert_eq!(one.input.task, task);
    assert_eq!(one.input.variables["k"], "v \"q\"");
    assert_eq!(one.key, "demo#esc");
    let two = store.get(&id(2)).await.unwrap().unwrap();
    assert_eq!(two.input.task, task);
    let seven = store.get(&id(7)).await.unwrap().unwrap();
    assert_eq!(
        (seven.input.repo.as_str(), seven.input.task.as_str()),
        ("demo", "last wins")
    );
}
