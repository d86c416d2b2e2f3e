//! What only the running process knows, laid over the state's [`Status`]:
//! each open batch's request progress at its last poll, the provider's
//! health, API calls and their errors by code.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use batch_core::Millis;
use runtime::batch::calls::CallCounts;
use runtime::batch::health::Health;
use runtime::batch::watch::Watch;
use serde::Serialize;

pub use runtime::batch::watch::Progress;

use super::Status;

/// Shared with the batch operator's [`Caller`](runtime::batch::calls::Caller).
pub struct Live {
    /// Made by the operator, which knows where it reports to.
    health: OnceLock<Arc<Health>>,
    pub calls: Arc<CallCounts>,
    pub watch: Arc<Watch>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProviderHealth {
    /// False from a failed call (429, 5xx, no connection) until one succeeds.
    pub up: bool,
    pub down_since_ms: Option<Millis>,
    pub outages: u64,
    pub api_calls: u64,
    pub api_errors: u64,
    /// Failed calls by `{call}: {code}`.
    pub errors_by_code: BTreeMap<String, u64>,
}

impl Default for Live {
    fn default() -> Self {
        Self::new()
    }
}

impl Live {
    pub fn new() -> Self {
        Self {
            health: OnceLock::new(),
            calls: Arc::default(),
            watch: Arc::default(),
        }
    }

    /// The process's provider health: made by `make` the first time.
    pub fn health(&self, make: impl FnOnce() -> Health) -> Arc<Health> {
        self.health.get_or_init(|| Arc::new(make())).clone()
    }

    /// `status` with this process's figures.
    pub fn overlay(&self, status: &mut Status) {
        for b in &mut status.batches {
            if b.phase == "emitted" {
                continue;
            }
            if let Some(remote) = &b.remote_id {
                b.progress = self.watch.progress(remote);
            }
        }
        // Before the operator started (or in synchronous mode): the
        // calls' figures are all there is.
        let health = self.health.get();
        let down_since = health.and_then(|h| h.down_since());
        status.provider = Some(ProviderHealth {
            up: down_since.is_none(),
            down_since_ms: down_since,
            outages: health.map_or(0, |h| h.counts().outages),
            api_calls: self.calls.total(),
            api_errors: self.calls.errors.load(Ordering::Relaxed),
            errors_by_code: self.watch.errors(),
        });
    }
}
