//! Whether the provider answers: the `provider_up` gauge, and warnings that
//! stay quiet while it does not. An outage is logged when it starts, at
//! most every [`WARN_EVERY`] while it lasts, and with a summary of what was
//! suppressed when the provider answers again. The core retries with a
//! capped backoff meanwhile; this only decides what an operator sees.

use std::sync::{Arc, Mutex};

use batch_api::{ApiError, ErrorClass};
use batch_core::{fmt_duration, Millis};

/// Longest quiet stretch during an outage.
pub const WARN_EVERY: Millis = 5 * 60 * 1000;

/// The clock of the pipeline (the process's, or a simulation's).
pub type Clock = Arc<dyn Fn() -> Millis + Send + Sync>;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HealthCounts {
    /// Outages seen (a failed call after answered ones).
    pub outages: u64,
    /// Warnings logged, and the failed calls that logged none.
    pub warnings: u64,
    pub suppressed: u64,
}

#[derive(Default)]
struct State {
    down_since: Option<Millis>,
    failed_calls: u64,
    suppressed: u64,
    last_warn: Millis,
    counts: HealthCounts,
}

pub struct Health {
    clock: Clock,
    state: Mutex<State>,
}

/// An unavailable or overloaded provider, as opposed to one that answers
/// (even with a refusal).
fn is_outage(e: &ApiError) -> bool {
    matches!(e.class, ErrorClass::Transient | ErrorClass::Ambiguous)
}

impl Health {
    pub fn new(clock: Clock) -> Self {
        metrics::gauge!("provider_up").set(1.0);
        Self {
            clock,
            state: Mutex::default(),
        }
    }

    /// The process clock.
    pub fn real() -> Self {
        Self::new(Arc::new(crate::now_ms))
    }

    pub fn counts(&self) -> HealthCounts {
        self.lock().counts
    }

    /// Since when the provider has not answered, if it has not.
    pub fn down_since(&self) -> Option<Millis> {
        self.lock().down_since
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record the outcome of one call.
    pub fn note<T>(&self, call: &'static str, r: &Result<T, ApiError>) {
        let now = (self.clock)();
        let mut s = self.lock();
        match r {
            Err(e) if is_outage(e) => {
                s.failed_calls += 1;
                let Some(since) = s.down_since else {
                    s.down_since = Some(now);
                    s.last_warn = now;
                    s.counts.outages += 1;
                    s.counts.warnings += 1;
                    metrics::gauge!("provider_up").set(0.0);
                    tracing::warn!(call, error = %e, "provider unavailable or over capacity; retrying with backoff (further failures are summarised)");
                    return;
                };
                if now.saturating_sub(s.last_warn) >= WARN_EVERY {
                    s.last_warn = now;
                    s.counts.warnings += 1;
                    tracing::warn!(
                        call,
                        error = %e,
                        down_for = %fmt_duration(now.saturating_sub(since)),
                        failed_calls = s.failed_calls,
                        suppressed = s.suppressed,
                        "provider still unavailable"
                    );
                } else {
                    s.suppressed += 1;
                    s.counts.suppressed += 1;
                    tracing::debug!(call, error = %e, "provider call failed");
                }
            }
            Err(e) => tracing::debug!(call, error = %e, "provider call failed"),
            Ok(_) => {
                if let Some(since) = s.down_since.take() {
                    metrics::gauge!("provider_up").set(1.0);
                    tracing::info!(
                        down_for = %fmt_duration(now.saturating_sub(since)),
                        failed_calls = s.failed_calls,
                        suppressed_warnings = s.suppressed,
                        "provider answering again"
                    );
                    s.failed_calls = 0;
                    s.suppressed = 0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    #[test]
    fn an_outage_warns_once_then_every_few_minutes_and_sums_up_at_the_end() {
        let t = Arc::new(AtomicU64::new(0));
        let clock = t.clone();
        let h = Health::new(Arc::new(move || clock.load(Ordering::SeqCst)));
        let down: Result<(), ApiError> = Err(ApiError::new(ErrorClass::Transient, "refused"));
        let refused: Result<(), ApiError> = Err(ApiError::permanent("bad request"));
        h.note("poll", &refused);
        assert_eq!(h.down_since(), None, "a refusal is an answer");
        // 85 failures over two minutes: one warning.
        for i in 0..85 {
            t.store(i * 1_400, Ordering::SeqCst);
            h.note("upload", &down);
        }
        assert_eq!(h.down_since(), Some(0));
        let c = h.counts();
        assert_eq!((c.outages, c.warnings, c.suppressed), (1, 1, 84));
        t.store(WARN_EVERY + 1, Ordering::SeqCst);
        h.note("upload", &down);
        assert_eq!(h.counts().warnings, 2);
        h.note("upload", &Ok::<(), ApiError>(()));
        assert_eq!(h.down_since(), None);
        h.note("upload", &down);
        assert_eq!(h.counts().outages, 2);
    }
}
