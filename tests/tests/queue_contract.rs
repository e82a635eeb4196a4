//! The queue contract. agentq writes apalis-redis's task layout itself
//! (shared/src/delivery.rs: `PUSH_LUA`, `queue_keys`), inside the scripts that
//! change a job's record, so it must write what apalis-redis's own push writes.
//!
//! Each test pushes one delivery through apalis-redis's public push
//! (`TaskSink::push_task` on a `RedisStorage`) into one namespace, and one
//! through agentq's writer into another namespace of the same Redis. Then it
//! compares every key under the two queues: its name (relative to the queue),
//! its type, and every field, member and score. Task ids are masked (each writer
//! makes its own); due times are the same second on both sides, so scores are
//! compared as they are.
//!
//! One difference is by design. apalis's push puts even a task due now in the
//! scheduled set (scored with the current second; its next fetch moves it to the
//! active list). agentq puts a delivery due now straight on the active list and
//! signals idle workers. So the due-now test compares the two queues after
//! apalis-redis's own fetch (`queries::fetch_next`) took each delivery, and
//! checks that both fetches read the same task.

use std::collections::{BTreeMap, BTreeSet};

use agentq_shared::{
    delivery::{apalis_config, new_task_id, queue_keys, Delivery, PUSH_LUA},
    keys::Keys,
};
use agentq_tests::*;
use apalis_core::{backend::TaskSink, task::builder::TaskBuilder, worker::context::WorkerContext};
use apalis_redis::{ConnectionManager, RedisStorage};

/// The file to update when apalis-redis's layout moves.
const WRITER: &str =
    "shared/src/delivery.rs (PUSH_LUA, whose text is shared/src/store/lua/push.lua)";

/// One key's type and content, task ids masked.
#[derive(Debug, PartialEq)]
enum Content {
    String(String),
    List(Vec<String>),
    Set(BTreeSet<String>),
    Hash(BTreeMap<String, String>),
    /// Member → score.
    ZSet(BTreeMap<String, String>),
}

impl Content {
    fn type_name(&self) -> &'static str {
        match self {
            Content::String(_) => "string",
            Content::List(_) => "list",
            Content::Set(_) => "set",
            Content::Hash(_) => "hash",
            Content::ZSet(_) => "zset",
        }
    }
}

/// Every key under a queue, by name relative to the queue.
type Layout = BTreeMap<String, Content>;

/// What each side wrote, keyed the same way.
struct Side<'a> {
    layout: &'a Layout,
    name: &'static str,
}

async fn connect(redis: &Redis) -> ConnectionManager {
    apalis_redis::connect(redis.url()).await.unwrap()
}

/// Reads every key under `keys`' apalis queue, masking `task_id`.
async fn layout(conn: &mut ConnectionManager, keys: &Keys, task_id: &str) -> Layout {
    let queue = keys.apalis_queue();
    let mask = |s: &str| s.replace(task_id, "<task-id>");
    let names: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{queue}:*"))
        .query_async(conn)
        .await
        .unwrap();
    let mut out = Layout::new();
    for key in names {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(conn)
            .await
            .unwrap();
        let content = match kind.as_str() {
            "string" => {
                let v: String = redis::cmd("GET").arg(&key).query_async(conn).await.unwrap();
                Content::String(mask(&v))
            }
            "list" => {
                let v: Vec<String> = redis::cmd("LRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .query_async(conn)
                    .await
                    .unwrap();
                Content::List(v.iter().map(|m| mask(m)).collect())
            }
            "set" => {
                let v: Vec<String> = redis::cmd("SMEMBERS")
                    .arg(&key)
                    .query_async(conn)
                    .await
                    .unwrap();
                Content::Set(v.iter().map(|m| mask(m)).collect())
            }
            "hash" => {
                let v: BTreeMap<String, String> = redis::cmd("HGETALL")
                    .arg(&key)
                    .query_async(conn)
                    .await
                    .unwrap();
                Content::Hash(v.iter().map(|(f, v)| (mask(f), mask(v))).collect())
            }
            "zset" => {
                let v: Vec<(String, String)> = redis::cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES")
                    .query_async(conn)
                    .await
                    .unwrap();
                Content::ZSet(v.iter().map(|(m, s)| (mask(m), s.clone())).collect())
            }
            other => panic!("key {key}: unexpected type {other}"),
        };
        let relative = key.strip_prefix(&queue).unwrap();
        out.insert(mask(relative), content);
    }
    out
}

/// Two values agree: equal text, or equal JSON (Lua's cjson orders object
/// fields as it likes; apalis reads them with serde).
fn same_value(a: &str, b: &str) -> bool {
    a == b
        || matches!(
            (serde_json::from_str::<serde_json::Value>(a), serde_json::from_str::<serde_json::Value>(b)),
            (Ok(x), Ok(y)) if x == y
        )
}

/// Every difference between the two layouts, one line each.
fn differences(apalis: Side<'_>, agentq: Side<'_>) -> Vec<String> {
    let mut out = Vec::new();
    let names: BTreeSet<&String> = apalis.layout.keys().chain(agentq.layout.keys()).collect();
    for key in names {
        let (a, b) = match (apalis.layout.get(key), agentq.layout.get(key)) {
            (Some(a), Some(b)) => (a, b),
            (Some(a), None) => {
                out.push(format!(
                    "key `{{queue}}{key}` ({}): {} writes it, {} does not",
                    a.type_name(),
                    apalis.name,
                    agentq.name
                ));
                continue;
            }
            (None, Some(b)) => {
                out.push(format!(
                    "key `{{queue}}{key}` ({}): {} writes it, {} does not",
                    b.type_name(),
                    agentq.name,
                    apalis.name
                ));
                continue;
            }
            (None, None) => unreachable!(),
        };
        match (a, b) {
            (Content::Hash(x), Content::Hash(y)) | (Content::ZSet(x), Content::ZSet(y)) => {
                let what = if a.type_name() == "hash" {
                    "field"
                } else {
                    "member"
                };
                let fields: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for f in fields {
                    match (x.get(f), y.get(f)) {
                        (Some(v), Some(w)) if same_value(v, w) => {}
                        (v, w) => out.push(format!(
                            "key `{{queue}}{key}` {what} `{f}`: {} writes {v:?}, {} writes {w:?}",
                            apalis.name, agentq.name
                        )),
                    }
                }
            }
            (x, y) if x.type_name() != y.type_name() => out.push(format!(
                "key `{{queue}}{key}`: {} writes a {}, {} a {}",
                apalis.name,
                x.type_name(),
                agentq.name,
                y.type_name()
            )),
            (x, y) if x != y => out.push(format!(
                "key `{{queue}}{key}`: {} writes {x:?}, {} writes {y:?}",
                apalis.name, agentq.name
            )),
            _ => {}
        }
    }
    out
}

/// Fails, naming the file to update, when the layouts differ.
fn assert_same_layout(apalis: &Layout, agentq: &Layout) {
    assert!(!apalis.is_empty(), "apalis-redis's push wrote nothing");
    let diffs = differences(
        Side {
            layout: apalis,
            name: "apalis-redis",
        },
        Side {
            layout: agentq,
            name: "agentq",
        },
    );
    assert!(
        diffs.is_empty(),
        "agentq's delivery writer no longer writes apalis-redis's task layout \
         (the version pinned in the workspace Cargo.toml). Update {WRITER} \
         (PUSH_LUA, queue_keys) to write what apalis-redis writes:\n  {}",
        diffs.join("\n  ")
    );
}

/// Pushes `delivery` through apalis-redis's own public push.
async fn apalis_push(conn: &ConnectionManager, keys: &Keys, delivery: &Delivery, run_at_s: u64) {
    let mut storage: RedisStorage<Delivery, ConnectionManager> =
        RedisStorage::new(conn.clone()).with_config(apalis_config(keys));
    let mut task = TaskBuilder::new(delivery.clone());
    if run_at_s > 0 {
        task = task.run_at_timestamp(run_at_s);
    }
    TaskSink::push_task(&mut storage, task.build())
        .await
        .unwrap();
}

/// Pushes `delivery` through agentq's writer ([`PUSH_LUA`], as the store's
/// scripts use it); `run_at_ms` 0 is due now.
async fn agentq_push(
    conn: &mut ConnectionManager,
    keys: &Keys,
    task_id: &str,
    delivery: &Delivery,
    run_at_ms: u64,
) {
    let script = redis::Script::new(&format!(
        "{PUSH_LUA}\npush_delivery(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], false)\nwake()\nreturn 1\n"
    ));
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut inv = script.prepare_invoke();
    for k in queue_keys(keys) {
        inv.key(k);
    }
    let _: i64 = inv
        .arg(task_id)
        .arg(&delivery.job_id)
        .arg(delivery.seq)
        .arg(run_at_ms)
        .arg(now_ms)
        .invoke_async(conn)
        .await
        .unwrap();
}

/// The one task id apalis-redis's push made (its task data hash's only field).
async fn apalis_task_id(conn: &mut ConnectionManager, keys: &Keys) -> String {
    let ids: Vec<String> = redis::cmd("HKEYS")
        .arg(apalis_config(keys).job_data_hash())
        .query_async(conn)
        .await
        .unwrap();
    assert_eq!(ids.len(), 1, "apalis-redis's push wrote {ids:?}");
    ids[0].clone()
}

fn delivery() -> Delivery {
    Delivery {
        job_id: ulid::Ulid::new().to_string(),
        seq: 7,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delayed_delivery_is_written_as_apalis_redis_writes_it() {
    let redis = Redis::start();
    let mut conn = connect(&redis).await;
    let (theirs, ours) = (Keys::new("contract-apalis"), Keys::new("contract-agentq"));
    let d = delivery();
    // Due in an hour, on a whole second: apalis schedules in seconds, agentq in
    // milliseconds rounded up, so both must score it the same.
    let due_s = chrono::Utc::now().timestamp() as u64 + 3600;

    apalis_push(&conn, &theirs, &d, due_s).await;
    let our_id = new_task_id();
    agentq_push(&mut conn, &ours, &our_id, &d, due_s * 1000).await;

    let their_id = apalis_task_id(&mut conn, &theirs).await;
    let apalis = layout(&mut conn, &theirs, &their_id).await;
    let agentq = layout(&mut conn, &ours, &our_id).await;
    assert!(
        apalis.contains_key(":scheduled"),
        "apalis-redis did not schedule it: {apalis:?}"
    );
    assert_same_layout(&apalis, &agentq);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delivery_due_now_is_fetched_as_apalis_redis_fetches_its_own() {
    let redis = Redis::start();
    let mut conn = connect(&redis).await;
    let (theirs, ours) = (Keys::new("contract-apalis"), Keys::new("contract-agentq"));
    let d = delivery();

    apalis_push(&conn, &theirs, &d, 0).await;
    let our_id = new_task_id();
    agentq_push(&mut conn, &ours, &our_id, &d, 0).await;
    let their_id = apalis_task_id(&mut conn, &theirs).await;

    // One worker, registered the same way in both queues (what apalis's
    // fetch_next checks), fetches from each.
    let worker = WorkerContext::new("contract-worker");
    let mut fetched = Vec::new();
    for keys in [&theirs, &ours] {
        let cfg = apalis_config(keys);
        let _: i64 = redis::cmd("ZADD")
            .arg(cfg.workers_set())
            .arg(1)
            .arg(worker.name())
            .query_async(&mut conn)
            .await
            .unwrap();
        let tasks = apalis_redis::queries::fetch_next(&mut conn, &worker, &cfg)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "apalis cannot fetch the delivery {}'s writer wrote ({e}); update {WRITER}",
                    keys.namespace()
                )
            });
        assert_eq!(
            tasks.len(),
            1,
            "apalis fetched {} tasks from {}",
            tasks.len(),
            keys.namespace()
        );
        let t = &tasks[0];
        let args: Delivery = serde_json::from_slice(&t.args).unwrap_or_else(|e| {
            panic!(
                "apalis cannot read the delivery {}'s writer wrote ({e}); update {WRITER}",
                keys.namespace()
            )
        });
        fetched.push((
            args,
            t.attempt(),
            t.max_attempts(),
            t.status(),
            t.idempotency_key().map(str::to_string),
            t.metadata().clone(),
        ));
    }
    assert_eq!(
        fetched[0], fetched[1],
        "apalis fetched different tasks (apalis-redis's, then agentq's); update {WRITER}"
    );
    assert_eq!(fetched[0].0, d);

    let apalis = layout(&mut conn, &theirs, &their_id).await;
    let agentq = layout(&mut conn, &ours, &our_id).await;
    assert_same_layout(&apalis, &agentq);
}
