//! Whether the provider answers: the `provider_up` gauge, and warnings that
//! stay quiet while it does not. An outage is logged when it starts, at
//! most every [`WARN_EVERY`] while it lasts, and with a summary of what was
//! suppressed when the provider answers again. The core retries with a
//! capped backoff meanwhile; this only decides what an operator sees.
//! With a report file, every change of state is also written there
//! (`provider.json` in the pipeline's local directory) for `mlpredict
//! status`, which runs in another process.

use std::path::{Path, PathBuf};
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
    report: Option<PathBuf>,
}

/// The report file's name in a pipeline's (or instance's) local directory.
pub const REPORT_FILE: &str = "provider.json";

/// What the report file holds: the provider's state as this process saw
/// it last, written at each change of state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Report {
    pub provider_up: bool,
    /// Epoch ms of the first failed call of the current outage.
    pub unavailable_since: Option<Millis>,
    /// Failed calls in the current outage so far.
    pub failed_calls: u64,
    /// Epoch ms of this report.
    pub updated_at: Millis,
}

impl Report {
    /// The last report in `dir`, if a run wrote one and it can be read.
    pub fn read(dir: &Path) -> Option<Self> {
        let bytes = std::fs::read(dir.join(REPORT_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
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
            report: None,
        }
    }

    /// Also write each change of state to [`REPORT_FILE`] in `dir` (which
    /// starts as "up").
    pub fn reporting_to(mut self, dir: &Path) -> Self {
        let _ = std::fs::create_dir_all(dir);
        self.report = Some(dir.join(REPORT_FILE));
        self.write_report(&State::default(), (self.clock)());
        self
    }

    /// Best effort: the report informs, the pipeline does not depend on
    /// it. Written whole and renamed, so a reader never sees half of one.
    fn write_report(&self, s: &State, now: Millis) {
        let Some(path) = &self.report else { return };
        let report = Report {
            provider_up: s.down_since.is_none(),
            unavailable_since: s.down_since,
            failed_calls: s.failed_calls,
            updated_at: now,
        };
        let tmp = path.with_extension("json.tmp");
        let written = serde_json::to_vec(&report)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            tracing::debug!(path = %path.display(), error = %e, "cannot write the provider report");
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
                    self.write_report(&s, now);
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
                    self.write_report(&s, now);
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
                    self.write_report(&s, now);
                }
            }
        }
    }
}

/// A run that ends leaves no report behind: its local directory ends
/// empty, and `status` shows no provider state of a run that is gone. (A
/// killed run's report stays, with the time it was written.)
impl Drop for Health {
    fn drop(&mut self) {
        if let Some(path) = &self.report {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The synchronous client's calls count toward the same health.
impl batch_api::sync::CallObserver for Health {
    fn note(&self, call: &'static str, r: &Result<(), ApiError>) {
        Health::note(self, call, r);
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

    #[test]
    fn the_report_file_follows_each_change_of_state() {
        let dir = tempfile::tempdir().unwrap();
        let t = Arc::new(AtomicU64::new(1_000));
        let clock = t.clone();
        let h =
            Health::new(Arc::new(move || clock.load(Ordering::SeqCst))).reporting_to(dir.path());
        let up = Report::read(dir.path()).unwrap();
        assert!(up.provider_up && up.unavailable_since.is_none());
        let down: Result<(), ApiError> = Err(ApiError::new(ErrorClass::Transient, "refused"));
        t.store(2_000, Ordering::SeqCst);
        h.note("upload", &down);
        t.store(3_000, Ordering::SeqCst);
        h.note("upload", &down);
        let r = Report::read(dir.path()).unwrap();
        assert_eq!((r.provider_up, r.unavailable_since), (false, Some(2_000)));
        t.store(4_000, Ordering::SeqCst);
        h.note("poll", &Ok::<(), ApiError>(()));
        let r = Report::read(dir.path()).unwrap();
        assert_eq!(
            (r.provider_up, r.unavailable_since, r.updated_at),
            (true, None, 4_000)
        );
    }
}
