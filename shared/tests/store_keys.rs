//! The `keys` include (`lua::keys_lua`): every key name a script builds with
//! `K.NAME(...)` is the one Rust builds (`agentq_domain::keys::Keys`), run in
//! a real redis-server: no worker, no Docker.

mod common;

use agentq_shared::store::lua::{self, KEY_FNS};
use common::{query, Redis};

#[tokio::test]
async fn every_key_a_script_builds_is_the_one_rust_builds() {
    let redis = Redis::start();
    let store = redis.store("t:ns").await;
    // Arguments with the characters pool, model and workspace names have.
    let args = ["claude-2", "opus:4.1"];
    let mut src = lua::keys_lua();
    src.push_str("local K = keys_for(ARGV[1])\nreturn {\n");
    for f in KEY_FNS {
        let call_args: Vec<String> = args[..f.arity].iter().map(|a| format!("'{a}'")).collect();
        src.push_str(&format!("  K.{}({}),\n", f.name, call_args.join(", ")));
    }
    src.push_str("}\n");
    let from_lua: Vec<String> = query(
        &store,
        redis::cmd("EVAL")
            .arg(&src)
            .arg(0)
            .arg(store.keys().namespace()),
    )
    .await;
    let from_rust: Vec<String> = KEY_FNS
        .iter()
        .map(|f| (f.build)(store.keys(), &args[..f.arity]))
        .collect();
    assert_eq!(from_lua, from_rust, "the Lua was:\n{src}");
    assert!(from_rust.contains(&"t:ns:lane:claude-2:opus:4.1".to_string()));
    assert!(from_rust.contains(&"t:ns:starts:claude-2:opus:4.1".to_string()));
}

/// A script that builds its keys from `K` runs with them (the wake, whose
/// keys all come from Rust): its pool's operator pause, read under
/// `Keys::fleet_paused`, stops it granting.
#[tokio::test]
async fn the_wake_reads_the_fleet_pause_under_the_rust_key_name() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    common::enqueue(&store, "codex").await;
    let _: i64 = query(
        &store,
        redis::cmd("SADD")
            .arg(store.keys().fleet_paused())
            .arg("codex"),
    )
    .await;
    let cfg = agentq_shared::admission::AdmissionConfig::default();
    let wake = || store.wake_pool(&cfg, "codex", std::time::Duration::from_secs(60), 10);
    assert_eq!(wake().await.unwrap(), 0, "paused: nothing granted");
    let _: i64 = query(&store, redis::cmd("DEL").arg(store.keys().fleet_paused())).await;
    assert_eq!(wake().await.unwrap(), 1, "unpaused: the job is granted");
}
