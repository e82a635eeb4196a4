//! Every Lua file, with its includes, compiles on a real redis-server.

mod common;

use agentq_shared::store::lua;
use common::Redis;

#[tokio::test]
async fn every_lua_file_compiles_on_redis() {
    let redis = Redis::start();
    let store = redis.store("t").await;
    for name in lua::names() {
        let src = lua::source(name);
        let loaded: Result<String, redis::RedisError> = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(&src)
            .query_async(&mut store.conn())
            .await;
        assert!(loaded.is_ok(), "{name}: {loaded:?}");
    }
}

#[test]
fn every_script_rust_runs_is_a_file_with_resolved_includes() {
    for name in lua::names() {
        let src = lua::try_source(name).unwrap_or_else(|e| panic!("{e}"));
        assert!(!src.contains("--- @include"), "{name}");
    }
}
