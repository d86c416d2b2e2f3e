//! The core's vocabulary: what the shell tells it (events) and what it
//! asks the shell to do (actions), with the provider's answers in its terms.

use crate::batch::{Batch, BatchFailure, RemoteState};
use crate::budget::Budget;
use crate::planner::Plan;
use crate::{LaneId, Millis};

/// How a provider call failed, in the core's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The provider did not act; repeat after a backoff.
    Transient,
    /// The provider may have acted (lost answer, timeout, 5xx).
    Ambiguous,
    /// Repeating the same call will not help.
    Permanent,
    /// The object is gone.
    NotFound,
    /// Credentials refused: nothing will work until the operator fixes them.
    Auth,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub retry_after_ms: Option<Millis>,
    pub code: String,
    pub message: String,
}

impl Failure {
    pub fn new(kind: FailureKind, code: &str, message: &str) -> Self {
        Self {
            kind,
            retry_after_ms: None,
            code: code.to_owned(),
            message: message.to_owned(),
        }
    }
}

/// A provider batch as the core needs to see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    pub id: String,
    /// `None` while validating / in progress / finalizing / cancelling.
    pub state: Option<RemoteState>,
    pub output_file: Option<String>,
    pub error_file: Option<String>,
    /// First batch-level error (for `Failed`).
    pub error: Option<BatchFailure>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Uploaded {
        id: u64,
        result: Result<Option<String>, Failure>,
    },
    Created {
        id: u64,
        result: Result<Remote, Failure>,
    },
    Found {
        id: u64,
        result: Result<Option<Remote>, Failure>,
    },
    Polled {
        id: u64,
        result: Result<Remote, Failure>,
    },
    CancelRequested {
        id: u64,
        result: Result<(), Failure>,
    },
    /// The emit step committed; `retry` is the retry batch it inserted.
    Emitted {
        id: u64,
        retry: Option<Batch>,
    },
    /// The emit step failed before committing (e.g. a download failed).
    EmitFailed {
        id: u64,
        failure: Failure,
    },
    EndOfInput {
        lane: LaneId,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Make this plan durable (see [`Plan`]).
    Cut(Plan),
    /// Store this batch row durably before executing the next action.
    Persist(Batch),
    /// Upload the batch file (rebuilding it from the source if it is gone).
    Upload(Batch),
    /// Create the provider batch for `batch.attempt`.
    Create(Batch),
    /// Look for a provider batch carrying this batch's number and attempt,
    /// created at or after `not_before`.
    Find {
        batch: Batch,
        not_before: Millis,
    },
    Poll {
        id: u64,
        remote_id: String,
    },
    /// Poll several batches with one listing; the shell answers each with
    /// [`Event::Polled`] (falling back to single polls for any it did not
    /// find).
    PollMany(Vec<(u64, String)>),
    Cancel {
        id: u64,
        remote_id: String,
    },
    /// Download, join, append, sync, then commit `Emitted` (and the retry
    /// batch `retry_id`/`retry_number`, if any member is to be retried) in
    /// one transaction. `budget` decides each member's fate
    /// ([`Budget::disposition`]).
    Emit {
        batch: Batch,
        budget: Budget,
        retry_id: u64,
        retry_number: String,
    },
    /// Delete the local files of an emitted batch (and its remote files if
    /// so configured).
    Cleanup(Batch),
    /// Something an operator must see.
    Warn(String),
    /// Stop the pipeline: nothing will work until an operator acts.
    Fatal(String),
}
