//! The handoff of decoupled mode (the FLIP's Option 2, DESIGN.md §13):
//! one JSON line per batch the submitter created (or gave up before
//! creating), read by the poller, which rebuilds the batch from it and
//! owns everything after. In file mode the submitter also writes an end
//! marker per lane once the lane's input is done and handed off.
//!
//! The line holds no secret: never an API key, only the endpoint's URL.

use batch_core::{Batch, BatchFailure, LaneId, Millis, Phase, Position, RemoteState};
use serde::{Deserialize, Serialize};

/// Meta key of a submitter's lane: the watermark at which it wrote the
/// lane's end marker (a resumed run with more input writes another).
pub const END_AT: &str = "handoff.end";
/// Meta key of a poller's lane: `"1"` when the last handoff record it
/// consumed on the lane is an end marker.
pub const END_SEEN: &str = "handoff.end_seen";

/// Batch ids a poller gives its retry batches: per-lane sequence numbers
/// from here on (a submitter's never get there), so they cannot collide
/// with ids of batches the submitter hands off later.
pub const RETRY_SEQ_BASE: u64 = 1 << 39;

/// What the submitter's wiring knows that every handoff record repeats.
#[derive(Debug, Clone, Default)]
pub struct HandoffSettings {
    /// `pipeline.name`.
    pub pipeline: String,
    /// `model.provider` (e.g. `openai`).
    pub provider: String,
    /// The provider's base URL (`model.endpoint`): never a key.
    pub api_endpoint: String,
    /// The source: its path (file pipelines) ...
    pub input_file: Option<String>,
    /// ... or its topic (Kafka pipelines).
    pub input_topic: Option<String>,
    /// Where the poller emits: the sink's topic, or its path.
    pub results_topic: String,
    /// Write an end marker per lane when its input is done and handed off
    /// (file mode: the poller exits 0 once it read it and emitted all).
    pub end_marker: bool,
}

/// One line of the handoff topic or file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HandoffLine {
    Batch(Box<HandoffRecord>),
    End(EndOfHandoff),
}

/// `status` of a handed-off batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HandoffStatus {
    /// Created at the provider (`batch_id` set): the poller polls it.
    Submitted,
    /// Given up before a provider batch existed (its calls kept failing
    /// past `ml.batch.retry.deadline`, or were refused for good): the
    /// poller emits every member as an error with `failure`.
    Failed,
}

/// A batch handed from the submitter to the poller: the FLIP's metadata,
/// then what the poller needs to resume the batch exactly where the
/// submitter left it (DESIGN.md §13 documents each field).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoffRecord {
    /// The provider's batch id; `None` when `status` is `failed`.
    pub batch_id: Option<String>,
    pub batch_number: String,
    pub status: HandoffStatus,
    /// When the provider batch was created (ms since the Unix epoch).
    pub submitted_at: Option<Millis>,
    pub record_count: u32,
    pub input_file: Option<String>,
    pub input_topic: Option<String>,
    pub results_topic: String,
    pub api_endpoint: String,
    pub provider: String,
    pub pipeline: String,
    /// The input lane (file: 0; Kafka: the input partition). The record
    /// travels on the handoff lane of the same number.
    pub lane: LaneId,
    /// The input range `[first_position, end_position)` the batch was cut
    /// from (byte offsets of a file, offsets of a partition).
    pub first_position: Position,
    pub end_position: Position,
    /// A retry batch's members; `None`: every valid record of the range.
    pub members: Option<Vec<Position>>,
    /// Provider submission attempt (in the provider batch's metadata).
    pub attempt: u32,
    /// 0 for a batch cut from the input, n for the n-th retry.
    pub generation: u32,
    /// The submitter's internal batch id (lane-scoped).
    pub internal_id: u64,
    /// The uploaded request file (providers with files).
    pub file_id: Option<String>,
    pub planned_at: Millis,
    /// When its records first reached the provider: the retry deadline
    /// counts from here.
    pub first_submitted_at: Option<Millis>,
    /// Retries spent against `ml.batch.max.retries`.
    pub fault_retries: u32,
    /// Provider batches created for these records so far.
    pub submissions: u32,
    /// Why it failed, when `status` is `failed`.
    pub failure: Option<BatchFailure>,
    /// When the submitter committed the handoff (ms since the Unix epoch).
    pub handed_off_at: Millis,
    /// Estimated tokens (the enqueued-token limit) and cost in nano-USD
    /// (`ml.budget.max-usd`); 0 when not estimated.
    #[serde(default)]
    pub tokens: u64,
    #[serde(default)]
    pub estimated_cost: u64,
}

/// The submitter's input lane is done up to `position`, and every batch
/// of it before is handed off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndOfHandoff {
    pub pipeline: String,
    pub lane: LaneId,
    pub position: Position,
    pub at: Millis,
}

impl HandoffRecord {
    /// The record of a batch that is created (`remote_id` set) or finished
    /// without a provider batch.
    pub fn of(batch: &Batch, s: &HandoffSettings, now: Millis) -> Self {
        let status = if batch.remote_id.is_some() {
            HandoffStatus::Submitted
        } else {
            HandoffStatus::Failed
        };
        Self {
            batch_id: batch.remote_id.clone(),
            batch_number: batch.number.clone(),
            status,
            submitted_at: batch.submitted_at,
            record_count: batch.records,
            input_file: s.input_file.clone(),
            input_topic: s.input_topic.clone(),
            results_topic: s.results_topic.clone(),
            api_endpoint: s.api_endpoint.clone(),
            provider: s.provider.clone(),
            pipeline: s.pipeline.clone(),
            lane: batch.lane,
            first_position: batch.first,
            end_position: batch.end,
            members: batch.members.clone(),
            attempt: batch.attempt,
            generation: batch.generation,
            internal_id: batch.id,
            file_id: batch.file_id.clone(),
            planned_at: batch.planned_at,
            first_submitted_at: batch.first_submitted_at,
            fault_retries: batch.fault_retries,
            submissions: batch.submissions,
            failure: batch.failure.clone(),
            handed_off_at: now,
            tokens: batch.tokens,
            estimated_cost: batch.estimated_cost,
        }
    }

    /// The batch as the poller resumes it: polled when submitted, emitted
    /// (as errors) when it failed before creation.
    pub fn to_batch(&self) -> Batch {
        let failed = self.status == HandoffStatus::Failed;
        Batch {
            id: self.internal_id,
            lane: self.lane,
            number: self.batch_number.clone(),
            first: self.first_position,
            end: self.end_position,
            members: self.members.clone(),
            generation: self.generation,
            attempt: self.attempt,
            records: self.record_count,
            phase: if failed {
                Phase::Finished
            } else {
                Phase::Submitted
            },
            planned_at: self.planned_at,
            submitted_at: self.submitted_at,
            file_id: self.file_id.clone(),
            remote_id: self.batch_id.clone(),
            remote_state: failed.then_some(RemoteState::Failed),
            output_file: None,
            error_file: None,
            failure: if failed {
                Some(self.failure.clone().unwrap_or(BatchFailure {
                    code: "batch_failed".into(),
                    message: "the submitter gave up on the batch".into(),
                }))
            } else {
                None
            },
            first_submitted_at: self.first_submitted_at,
            fault_retries: self.fault_retries,
            submissions: self.submissions,
            tokens: self.tokens,
            estimated_cost: self.estimated_cost,
        }
    }
}

impl HandoffLine {
    /// One line of JSON, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).expect("a handoff line serializes");
        line.push(b'\n');
        line
    }

    /// Parse one line (without or with its newline).
    pub fn parse(line: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(line.trim_ascii_end())
    }

    /// The Kafka key of a handoff line: its lane, in decimal. The handoff
    /// topic is partitioned like the input: the line goes to partition
    /// `lane`.
    pub fn key(lane: LaneId) -> String {
        lane.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> Batch {
        Batch {
            id: 7,
            lane: 2,
            number: "p-2-0-40".into(),
            first: 0,
            end: 40,
            members: Some(vec![3, 9]),
            generation: 1,
            attempt: 2,
            records: 2,
            phase: Phase::Submitted,
            planned_at: 10,
            submitted_at: Some(20),
            file_id: Some("file-1".into()),
            remote_id: Some("batch_1".into()),
            remote_state: None,
            output_file: None,
            error_file: None,
            failure: None,
            first_submitted_at: Some(15),
            fault_retries: 1,
            submissions: 3,
            tokens: 120,
            estimated_cost: 9,
        }
    }

    #[test]
    fn a_submitted_batch_round_trips_through_its_line() {
        let s = HandoffSettings {
            pipeline: "p".into(),
            provider: "openai".into(),
            api_endpoint: "https://api.example".into(),
            input_topic: Some("reviews".into()),
            results_topic: "out".into(),
            ..HandoffSettings::default()
        };
        let b = batch();
        let line = HandoffLine::Batch(Box::new(HandoffRecord::of(&b, &s, 30))).to_line();
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["type"], "batch");
        assert_eq!(v["status"], "submitted");
        assert_eq!(v["batch_id"], "batch_1");
        assert_eq!(v["record_count"], 2);
        assert_eq!(v["input_topic"], "reviews");
        let HandoffLine::Batch(r) = HandoffLine::parse(&line).unwrap() else {
            panic!("a batch line")
        };
        assert_eq!(r.to_batch(), b);
    }

    #[test]
    fn a_batch_given_up_before_creation_is_handed_off_failed() {
        let mut b = batch();
        b.remote_id = None;
        b.phase = Phase::Finished;
        b.remote_state = Some(RemoteState::Failed);
        b.failure = Some(BatchFailure {
            code: "rate_limit_exceeded".into(),
            message: "gave up".into(),
        });
        let r = HandoffRecord::of(&b, &HandoffSettings::default(), 1);
        assert_eq!(r.status, HandoffStatus::Failed);
        assert_eq!(r.to_batch(), b);
        let end = HandoffLine::End(EndOfHandoff {
            pipeline: "p".into(),
            lane: 0,
            position: 99,
            at: 5,
        });
        assert_eq!(HandoffLine::parse(&end.to_line()).unwrap(), end);
    }
}
