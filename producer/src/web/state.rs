//! The console's shared state: the store, the configuration, the operator
//! token, logged-in sessions and the bulk operations confirmation pages
//! counted.

use std::{collections::HashMap, sync::Arc};

use agentq_shared::{config::Config, store::JobStore};

use super::tokens;

/// The console's shared state.
pub struct App {
    /// The job store.
    pub store: JobStore,
    /// The configuration (pools, limits, forge URL).
    pub cfg: Config,
    /// The operator token; `None`: read-only.
    pub token: Option<String>,
    /// Logged-in sessions: session id → (CSRF token, when it logged in).
    pub sessions: std::sync::Mutex<HashMap<String, (String, std::time::Instant)>>,
    /// Bulk operations confirmed on a page, by confirmation token: the op,
    /// the ids the page counted, when. The form's POST acts on exactly these.
    pub bulk: std::sync::Mutex<HashMap<String, PendingBulk>>,
    /// Host names taken (`127.0.0.1`, `localhost`, `[::1]`, any port) when
    /// bound to loopback, against DNS rebinding; `None`: any.
    pub hosts: Option<Vec<String>>,
}

/// A bulk operation a confirmation page counted, waiting for its POST.
#[derive(Debug, Clone)]
pub struct PendingBulk {
    /// `retry` or `cancel`.
    pub op: String,
    /// The jobs counted.
    pub ids: Vec<String>,
    /// When the page was made.
    pub at: std::time::Instant,
}

/// How long a confirmation page's count stays good.
pub const BULK_TTL: std::time::Duration = std::time::Duration::from_secs(15 * 60);
/// Most confirmation pages kept at once (the oldest go first).
const BULK_MAX: usize = 20;

impl App {
    /// Keeps the ids a confirmation page counted for `op`; returns the token
    /// its form posts back (`confirm`).
    pub fn remember_bulk(&self, op: &str, ids: Vec<String>) -> String {
        let token = tokens::random_hex();
        let mut pending = self.bulk.lock().unwrap_or_else(|e| e.into_inner());
        pending.retain(|_, p| p.at.elapsed() < BULK_TTL);
        while pending.len() >= BULK_MAX {
            let Some(oldest) = pending
                .iter()
                .min_by_key(|(_, p)| p.at)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            pending.remove(&oldest);
        }
        pending.insert(
            token.clone(),
            PendingBulk {
                op: op.to_string(),
                ids,
                at: std::time::Instant::now(),
            },
        );
        token
    }

    /// The ids confirmation `token` counted for `op`, taken (once only);
    /// `None` when unknown, expired or for another op.
    pub fn take_bulk(&self, token: &str, op: &str) -> Option<Vec<String>> {
        let mut pending = self.bulk.lock().unwrap_or_else(|e| e.into_inner());
        let found = pending
            .keys()
            .find(|k| tokens::ct_eq(k.as_bytes(), token.as_bytes()))
            .cloned()?;
        let p = pending.remove(&found)?;
        (p.op == op && p.at.elapsed() < BULK_TTL).then_some(p.ids)
    }
}

/// Shared state as handlers get it.
pub type AppState = Arc<App>;
