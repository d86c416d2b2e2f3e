use serde::{Deserialize, Serialize};

use crate::budget::is_capacity_code;
use crate::{LaneId, Millis, NanoUsd, Position};

/// Life-cycle phase of a batch; each is durable (DESIGN.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Its members are fixed; nothing outside knows it yet.
    Planned,
    /// The file is at the provider (`file_id`, if the provider has files);
    /// a batch may or may not have been created for this attempt.
    Uploaded,
    /// The provider batch `remote_id` exists for this attempt.
    Submitted,
    /// The provider batch reached a terminal state; results not yet emitted.
    Finished,
    /// Results written downstream and committed. Terminal.
    Emitted,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Planned => "planned",
            Phase::Uploaded => "uploaded",
            Phase::Submitted => "submitted",
            Phase::Finished => "finished",
            Phase::Emitted => "emitted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "planned" => Phase::Planned,
            "uploaded" => Phase::Uploaded,
            "submitted" => Phase::Submitted,
            "finished" => Phase::Finished,
            "emitted" => Phase::Emitted,
            _ => return None,
        })
    }
}

/// Terminal state of a provider batch, as far as emission cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RemoteState {
    Completed,
    Expired,
    Cancelled,
    /// Failed as a whole; see [`Batch::failure`].
    Failed,
}

impl RemoteState {
    pub fn as_str(self) -> &'static str {
        match self {
            RemoteState::Completed => "completed",
            RemoteState::Expired => "expired",
            RemoteState::Cancelled => "cancelled",
            RemoteState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "completed" => RemoteState::Completed,
            "expired" => RemoteState::Expired,
            "cancelled" => RemoteState::Cancelled,
            "failed" => RemoteState::Failed,
            _ => return None,
        })
    }
}

/// Why a whole batch gave up: every member is emitted with this error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchFailure {
    pub code: String,
    pub message: String,
}

/// The durable record of one batch. The shell stores exactly these fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub id: u64,
    pub lane: LaneId,
    /// The FLIP's batch_number: `{prefix}-{lane}-{first}-{end}`, plus
    /// `-r{generation}` for retry batches. Deterministic, so a replay after a
    /// crash rebuilds the same name.
    pub number: String,
    /// Lane range `[first, end)` the batch was cut from.
    pub first: Position,
    pub end: Position,
    /// Retry batches list their members; `None` = every valid record of the
    /// range.
    pub members: Option<Vec<Position>>,
    /// 0 for a batch cut from the source, n for the n-th retry of its records.
    pub generation: u32,
    /// Provider submission attempt, starting at 0; goes into the metadata so
    /// that adoption finds exactly this attempt.
    pub attempt: u32,
    /// Requests in the batch file.
    pub records: u32,
    pub phase: Phase,
    pub planned_at: Millis,
    pub submitted_at: Option<Millis>,
    pub file_id: Option<String>,
    pub remote_id: Option<String>,
    pub remote_state: Option<RemoteState>,
    pub output_file: Option<String>,
    pub error_file: Option<String>,
    /// Set when the batch gives up as a whole (its members become errors).
    pub failure: Option<BatchFailure>,
    /// When its records were first handed to the provider (the first
    /// upload of the batch they were cut into): `ml.batch.retry.deadline`
    /// counts from here. Retry batches inherit it. `None` in state written
    /// before it existed (then `submitted_at`, else `planned_at`, stand in).
    #[serde(default)]
    pub first_submitted_at: Option<Millis>,
    /// Retries charged against `ml.batch.max.retries`: the ones caused by a
    /// request's own failure. Capacity retries are not counted.
    #[serde(default)]
    pub fault_retries: u32,
    /// Provider batches created for these records so far, this one and its
    /// predecessors included: how often they were tried.
    #[serde(default)]
    pub submissions: u32,
    /// Estimated tokens the provider counts against its enqueued-token
    /// limit (`ml.batch.max.enqueued-tokens`); 0 when not estimated. A
    /// retry batch keeps its parent's figure: an upper bound for a subset.
    #[serde(default)]
    pub tokens: u64,
    /// Estimated cost of the batch in nano-USD (`ml.budget.max-usd`); 0
    /// when not priced. Kept by retry batches, like `tokens`.
    #[serde(default)]
    pub estimated_cost: NanoUsd,
}

impl Batch {
    /// Members of a range batch are the valid records of the range: the
    /// shell knows which positions are valid by re-reading the source.
    pub fn is_retry(&self) -> bool {
        self.members.is_some()
    }

    /// Where `ml.batch.retry.deadline` counts from (see
    /// [`Batch::first_submitted_at`]).
    pub fn tried_since(&self) -> Millis {
        self.first_submitted_at
            .or(self.submitted_at)
            .unwrap_or(self.planned_at)
    }
}

impl Batch {
    /// The batch that retries this one's members listed in `retry`
    /// (their requests failed retriably): the next generation, a first
    /// attempt, its own id and number.
    /// `charged`: some of them failed by their own fault, so the retry
    /// counts against `ml.batch.max.retries` (a batch has one count, so
    /// its capacity-failed members share it).
    pub fn retry_of(
        &self,
        retry: &[Position],
        charged: bool,
        id: u64,
        number: String,
        now: Millis,
    ) -> Option<Batch> {
        (!retry.is_empty()).then(|| Batch {
            id,
            number,
            records: retry.len() as u32,
            members: Some(retry.to_vec()),
            generation: self.generation + 1,
            fault_retries: self.fault_retries + u32::from(charged),
            first_submitted_at: Some(self.tried_since()),
            attempt: 0,
            phase: Phase::Planned,
            planned_at: now,
            submitted_at: None,
            file_id: None,
            remote_id: None,
            remote_state: None,
            output_file: None,
            error_file: None,
            failure: None,
            ..self.clone()
        })
    }
}

/// What a single result line says about its request (from the wire parser).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultClass {
    Ok,
    /// Failed by its own fault, and repeating may succeed (a 5xx line).
    Retriable,
    /// Not done for lack of provider capacity: expired, cancelled, rate or
    /// quota limited. Retried until `ml.batch.retry.deadline`.
    Capacity,
    /// Failed for good (4xx line).
    Permanent,
    /// No line for this request in any result file: the request's fault
    /// when the batch completed, a capacity failure when it expired or was
    /// cancelled.
    Missing,
}

impl ResultClass {
    /// The class of a failed result line.
    pub fn of_failure(code: &str, retriable: bool) -> ResultClass {
        match (retriable, is_capacity_code(code)) {
            (false, _) => ResultClass::Permanent,
            (true, true) => ResultClass::Capacity,
            (true, false) => ResultClass::Retriable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_and_states_round_trip() {
        for p in [
            Phase::Planned,
            Phase::Uploaded,
            Phase::Submitted,
            Phase::Finished,
            Phase::Emitted,
        ] {
            assert_eq!(Phase::parse(p.as_str()), Some(p));
        }
        for s in [
            RemoteState::Completed,
            RemoteState::Expired,
            RemoteState::Cancelled,
            RemoteState::Failed,
        ] {
            assert_eq!(RemoteState::parse(s.as_str()), Some(s));
        }
        assert_eq!(Phase::parse("nope"), None);
    }
}
