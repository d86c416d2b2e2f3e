use serde::{Deserialize, Serialize};

use crate::{LaneId, Millis, Position};

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
}

impl Batch {
    /// Members of a range batch are the valid records of the range: the
    /// shell knows which positions are valid by re-reading the source.
    pub fn is_retry(&self) -> bool {
        self.members.is_some()
    }
}

impl Batch {
    /// The batch that retries this one's members listed in `retry`
    /// (their requests failed retriably): the next generation, a first
    /// attempt, its own id and number.
    pub fn retry_of(
        &self,
        retry: &[Position],
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
    /// Failed, and repeating may succeed (5xx line, expired, cancelled).
    Retriable,
    /// Failed for good (4xx line).
    Permanent,
    /// No line for this request in any result file.
    Missing,
}

/// What the emitter does with one member record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    EmitOk,
    EmitError,
    Retry,
}

impl ResultClass {
    /// The single rule for a member's fate. `final_generation`: the batch is
    /// the last retry allowed (`ml.batch.max.retries`).
    pub fn disposition(self, final_generation: bool) -> Disposition {
        match self {
            ResultClass::Ok => Disposition::EmitOk,
            ResultClass::Permanent => Disposition::EmitError,
            ResultClass::Retriable | ResultClass::Missing if final_generation => {
                Disposition::EmitError
            }
            ResultClass::Retriable | ResultClass::Missing => Disposition::Retry,
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

    #[test]
    fn retriable_results_retry_until_the_last_generation() {
        assert_eq!(
            ResultClass::Retriable.disposition(false),
            Disposition::Retry
        );
        assert_eq!(ResultClass::Missing.disposition(false), Disposition::Retry);
        assert_eq!(
            ResultClass::Retriable.disposition(true),
            Disposition::EmitError
        );
        assert_eq!(
            ResultClass::Permanent.disposition(false),
            Disposition::EmitError
        );
        assert_eq!(ResultClass::Ok.disposition(true), Disposition::EmitOk);
    }
}
