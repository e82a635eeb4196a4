//! `queue_drained`: a pool whose queue became empty with nothing running.
//! The notify lease holder looks every round; a pool seen with work (queued,
//! waiting or running jobs) and then without fires the event once. What a
//! holder saw is forgotten when it loses the lease, and its first look only
//! learns (no event): a drain while no worker held the lease is not told.

use std::collections::HashSet;

use crate::context::WorkerCtx;

/// The pools seen with work at the last look (`None`: not looked yet).
#[derive(Debug, Default)]
pub struct Watch {
    busy: Option<HashSet<String>>,
}

impl Watch {
    /// Looks once; hands a `queue_drained` event over for each pool that had
    /// work at the last look and has none now.
    pub async fn look(&mut self, ctx: &WorkerCtx) {
        let now = match ctx.store.pools_with_work().await {
            Ok(Some(p)) => p,
            // Unknown (fresh jobs not opened yet, or a Redis error): every
            // pool seen busy stays busy.
            Ok(None) | Err(_) => return,
        };
        if let Some(before) = &self.busy {
            for pool in before.difference(&now) {
                if let Err(e) = ctx.store.pool_event("queue_drained", pool, &[]).await {
                    tracing::debug!(pool, error = %e, "queue_drained not recorded; looked at again");
                    return;
                }
            }
        }
        self.busy = Some(now);
    }
}
