//! What the provider last said about each batch (`request_counts`) and
//! which errors its calls got, for the status page: figures the state does
//! not keep. Fed by the [`Caller`](super::calls::Caller), read by anyone
//! holding the `Arc`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use batch_api::{ApiError, RemoteBatch, RemoteStatus};
use serde::Serialize;

/// Batches remembered before finished ones are forgotten.
const KEEP: usize = 4096;

/// A provider batch at its last poll.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// The provider's status, e.g. `in_progress`.
    pub provider_state: &'static str,
    pub total: u64,
    pub completed: u64,
    pub failed: u64,
}

#[derive(Default)]
struct State {
    by_remote: HashMap<String, Progress>,
    errors: BTreeMap<String, u64>,
}

#[derive(Default)]
pub struct Watch {
    state: Mutex<State>,
}

impl Watch {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A provider batch as a call returned it.
    pub fn note_batch(&self, b: &RemoteBatch) {
        let counts = b.counts.unwrap_or_default();
        let p = Progress {
            provider_state: status_str(b.status),
            total: counts.total,
            completed: counts.completed,
            failed: counts.failed,
        };
        let mut s = self.lock();
        if s.by_remote.len() >= KEEP {
            s.by_remote.retain(|_, p| !is_terminal(p.provider_state));
        }
        s.by_remote.insert(b.id.clone(), p);
    }

    /// A failed call, counted by `{call}: {code}` (the provider's error
    /// code, else the HTTP status, else the error class).
    pub fn note_error(&self, call: &str, e: &ApiError) {
        let code = match (&e.code, e.status) {
            (Some(code), _) => code.clone(),
            (None, Some(status)) => format!("http {status}"),
            (None, None) => format!("{:?}", e.class).to_lowercase(),
        };
        *self
            .lock()
            .errors
            .entry(format!("{call}: {code}"))
            .or_default() += 1;
    }

    pub fn progress(&self, remote_id: &str) -> Option<Progress> {
        self.lock().by_remote.get(remote_id).cloned()
    }

    pub fn errors(&self) -> BTreeMap<String, u64> {
        self.lock().errors.clone()
    }
}

fn status_str(s: RemoteStatus) -> &'static str {
    match s {
        RemoteStatus::Validating => "validating",
        RemoteStatus::InProgress => "in_progress",
        RemoteStatus::Finalizing => "finalizing",
        RemoteStatus::Completed => "completed",
        RemoteStatus::Failed => "failed",
        RemoteStatus::Expired => "expired",
        RemoteStatus::Cancelling => "cancelling",
        RemoteStatus::Cancelled => "cancelled",
    }
}

fn is_terminal(state: &str) -> bool {
    matches!(state, "completed" | "failed" | "expired" | "cancelled")
}

#[cfg(test)]
mod tests {
    use super::*;
    use batch_api::{ErrorClass, RequestCounts};

    fn batch(id: &str, status: RemoteStatus, completed: u64) -> RemoteBatch {
        RemoteBatch {
            id: id.into(),
            status,
            output_file: None,
            error_file: None,
            errors: Vec::new(),
            counts: Some(RequestCounts {
                total: 50,
                completed,
                failed: 1,
            }),
            created_at: None,
            meta: None,
            total_tokens: None,
        }
    }

    #[test]
    fn keeps_the_last_counts_per_batch_and_errors_by_code() {
        let w = Watch::default();
        w.note_batch(&batch("b1", RemoteStatus::InProgress, 10));
        w.note_batch(&batch("b1", RemoteStatus::InProgress, 30));
        let p = w.progress("b1").unwrap();
        assert_eq!(
            (p.provider_state, p.completed, p.total),
            ("in_progress", 30, 50)
        );
        assert_eq!(w.progress("b2"), None);
        let mut e = ApiError::new(ErrorClass::Transient, "slow down");
        e.status = Some(429);
        w.note_error("poll", &e);
        w.note_error("poll", &e);
        e.code = Some("rate_limit_exceeded".into());
        w.note_error("create", &e);
        w.note_error("upload", &ApiError::new(ErrorClass::Ambiguous, "reset"));
        let errors: Vec<(String, u64)> = w.errors().into_iter().collect();
        assert_eq!(
            errors,
            [
                ("create: rate_limit_exceeded".to_owned(), 1),
                ("poll: http 429".to_owned(), 2),
                ("upload: ambiguous".to_owned(), 1)
            ]
        );
    }

    #[test]
    fn finished_batches_are_forgotten_first_when_full() {
        let w = Watch::default();
        for i in 0..KEEP {
            w.note_batch(&batch(&format!("done{i}"), RemoteStatus::Completed, 50));
        }
        w.note_batch(&batch("running", RemoteStatus::InProgress, 5));
        w.note_batch(&batch("next", RemoteStatus::Validating, 0));
        assert!(w.progress("running").is_some() && w.progress("next").is_some());
        assert_eq!(w.progress("done0"), None);
    }
}
