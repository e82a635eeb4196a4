//! A command whose future stops being polled, without being dropped (a
//! `select!` branch kept for the next round, a stream no one reads while its
//! consumer is busy), holds up no other command on the same connection: the
//! server check and the question to the sentinels run in tasks of their own
//! (`agentq_shared::flight`). Before, the first caller did them inside its
//! own future, holding a lock: a worker's lease renewals all timed out after
//! a Sentinel failover, and its job stayed `running` for good. Real
//! redis-server processes (one as a sentinel); no worker, no Docker.

mod common;

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use agentq_shared::conn::{RedisConn, SentinelUrl, RECHECK_EVERY};
use common::Redis;
use redis::aio::ConnectionManagerConfig;

/// Longer than any answer on loopback takes: a command still waiting then
/// waits on something other than Redis.
const PATIENCE: Duration = Duration::from_secs(10);

fn cfg() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(30)))
}

/// Polls `fut` once, and checks it is waiting (on Redis's answer).
async fn poll_once<F: std::future::Future + Unpin>(fut: &mut F) {
    assert!(
        futures::poll!(fut).is_pending(),
        "a round trip to Redis cannot end within one poll"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_no_one_polls_holds_up_no_other_during_the_server_check() {
    let redis = Redis::start();
    let conn = RedisConn::direct(redis::Client::open(redis.url()).unwrap(), cfg())
        .await
        .unwrap();
    // Every command first checks the server (once per connection): the
    // first one starts that check.
    conn.refuse_evicting();
    let mut parked_conn = conn.clone();
    let ping = redis::cmd("PING");
    let mut parked = Box::pin(ping.query_async::<String>(&mut parked_conn));
    poll_once(&mut parked).await;
    // `parked` is never polled again, and not dropped.
    let mut other = conn.clone();
    let answer = tokio::time::timeout(
        PATIENCE,
        redis::cmd("PING").query_async::<String>(&mut other),
    )
    .await
    .expect("a command waited on another command's future that no one polls");
    assert_eq!(answer.unwrap(), "PONG");
    drop(parked);
}

/// A redis-server in `--sentinel` mode watching `primary`, stopped on drop.
struct Sentinel {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Sentinel {
    fn start(primary: &Redis) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\nsentinel monitor main 127.0.0.1 {} 1\n",
                primary.port
            ),
        )
        .unwrap();
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start redis-server --sentinel: apt-get install -y redis-server");
        let deadline = Instant::now() + PATIENCE;
        loop {
            let known = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
                .and_then(|c| c.get_connection())
                .and_then(|mut c| {
                    redis::cmd("SENTINEL")
                        .arg("get-master-addr-by-name")
                        .arg("main")
                        .query::<Vec<String>>(&mut c)
                });
            if known.is_ok_and(|a| a.len() == 2) {
                break;
            }
            assert!(Instant::now() < deadline, "the sentinel never answered");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_question_to_the_sentinels_no_one_polls_holds_up_no_other() {
    let primary = Redis::start();
    let sentinel = Sentinel::start(&primary);
    let url = SentinelUrl::parse(&format!(
        "redis+sentinel://127.0.0.1:{}/main",
        sentinel.port
    ))
    .unwrap()
    .unwrap();
    let conn = RedisConn::sentinel(url, cfg(), Duration::from_secs(5))
        .await
        .unwrap();
    // Past the least time between two questions: the next call asks.
    tokio::time::sleep(RECHECK_EVERY + Duration::from_millis(100)).await;
    let mut parked = Box::pin(conn.follow_primary());
    poll_once(&mut parked).await;
    // `parked` is never polled again, and not dropped.
    let moved = tokio::time::timeout(PATIENCE, conn.follow_primary())
        .await
        .expect("a question to the sentinels waited on a future that no one polls");
    assert!(!moved, "the primary did not move");
    // And commands go on.
    let mut c = conn.clone();
    let pong: String = redis::cmd("PING").query_async(&mut c).await.unwrap();
    assert_eq!(pong, "PONG");
    drop(parked);
}
