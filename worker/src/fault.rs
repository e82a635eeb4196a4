//! Test-only fault injection: a panic at a named stage of every run, so the
//! end-to-end tests can check that a panic is an outcome of its job (see
//! [`crate::job`]), not a wedged worker.
//!
//! Compiled only into debug builds (what `cargo build --workspace --bins`
//! makes and the tests run); a release build has no hook at all. Even in a
//! debug build nothing happens unless `AGENTQ_TEST_PANIC_AT` names a stage.

/// The variable naming the stage to panic at (`admit`, before a run is
/// admitted; `prep`; `agent`).
#[cfg(debug_assertions)]
const PANIC_AT: &str = "AGENTQ_TEST_PANIC_AT";

/// Panics when the tests asked for a panic at `stage`.
#[cfg(debug_assertions)]
pub(crate) fn panic_at(stage: &str) {
    if std::env::var(PANIC_AT).is_ok_and(|s| s == stage) {
        panic!("injected fault at stage {stage}");
    }
}

/// Release builds: no hook.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub(crate) fn panic_at(_stage: &str) {}

/// The variable that makes every removal of a stopped agent container
/// ([`crate::run::Removals`]) wait this many milliseconds first, so the
/// tests can check that a job's end waits for it.
#[cfg(debug_assertions)]
const SLOW_REMOVAL: &str = "AGENTQ_TEST_SLOW_REMOVAL_MS";

/// Waits as long as the tests asked a container's removal to wait.
#[cfg(debug_assertions)]
pub(crate) async fn slow_removal() {
    if let Some(ms) = std::env::var(SLOW_REMOVAL)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
}

/// Release builds: no hook.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub(crate) async fn slow_removal() {}
