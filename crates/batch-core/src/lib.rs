//! The sans-IO core of mlpredict: every decision — when to cut a batch,
//! when to upload, create, poll, cancel, retry, emit — is made here, by a
//! deterministic state machine that does no IO and reads no clock. The shell
//! (file or Kafka runtime, or the simulator in `tests/`) feeds it events and
//! carries out the actions it returns, in order.
//!
//! Durability contract with the shell (DESIGN.md §4):
//! - a [`Plan`] returned by [`Core::on_record`] / [`Action::Cut`] must be made
//!   durable (batch row `Planned` + lane watermark + dead letters) before the
//!   shell calls the core again;
//! - [`Action::Persist`] must be durable before the next action is executed;
//! - [`Action::Emit`] is one atomic step: output appended and synced, then the
//!   batch marked `Emitted` (and its retry batch inserted) in one commit.

mod backoff;
mod batch;
mod budget;
mod core;
mod events;
mod gate;
mod lifecycle;
mod planner;
#[cfg(feature = "sim")]
pub mod sim;

pub use crate::backoff::backoff_ms;
pub use crate::batch::{Batch, BatchFailure, Phase, RemoteState, ResultClass};
pub use crate::budget::{fmt_duration, is_capacity_code, Budget, Disposition};
pub use crate::core::{Core, LaneStart};
pub use crate::events::{Action, Event, Failure, FailureKind, Remote};
pub use crate::gate::{Gate, Waiting};
pub use crate::planner::{Plan, RecordCuts};

/// One ordered, replayable input sequence: a Kafka partition or an input file.
pub type LaneId = u32;
/// Position of a record in its lane: a byte offset or a Kafka offset. Never
/// changes on replay.
pub type Position = u64;
/// Milliseconds since the Unix epoch. The core never reads a clock: the shell
/// passes `now` in (the simulator passes virtual time).
pub type Millis = u64;
/// Money in billionths of a US dollar: integer sums never drift, and the
/// cheapest price per token still rounds to a whole unit per request.
pub type NanoUsd = u64;

/// What one request adds to its batch: the size of its line, its token
/// estimate (`ml.batch.max.enqueued-tokens`) and its estimated cost
/// (`ml.budget.max-usd`). Dead letters add nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestSize {
    pub bytes: u64,
    pub tokens: u64,
    pub cost: NanoUsd,
}

/// Policy knobs, from `ml.batch.*` plus provider limits.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Prefix of batch numbers: the pipeline name or `batch_number`.
    pub prefix: String,
    pub batch_size: u32,
    pub max_bytes: u64,
    pub max_wait_ms: Millis,
    pub max_inflight: u32,
    pub poll_interval_ms: Millis,
    pub poll_max_interval_ms: Millis,
    pub job_timeout_ms: Millis,
    /// Retries of a request's own failures (`ml.batch.max.retries`).
    pub max_retries: u32,
    /// How long capacity failures are retried, from a record's first
    /// submission (`ml.batch.retry.deadline`).
    pub retry_deadline_ms: Millis,
    /// Base of exponential backoff for failed calls.
    pub backoff_base_ms: Millis,
    pub backoff_cap_ms: Millis,
    /// With at least this many batches waiting to be polled, poll them all
    /// with one listing ([`Action::PollMany`]) instead of one call each;
    /// 0 turns list polling off (providers without a usable listing).
    pub list_poll_min: usize,
    /// The organisation's enqueued-token limit for the model
    /// (`ml.batch.max.enqueued-tokens`): the tokens of batches submitted
    /// but not finished stay under it. `None`: no pacing.
    pub max_enqueued_tokens: Option<u64>,
    /// `ml.budget.max-usd` in nano-USD: no batch starts that would take
    /// the estimated spend past it. `None`: no budget.
    pub budget: Option<NanoUsd>,
}

impl CoreConfig {
    /// Reasonable values for tests and the simulator.
    pub fn for_tests(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            batch_size: 10,
            max_bytes: 1 << 20,
            max_wait_ms: 500,
            max_inflight: 4,
            poll_interval_ms: 200,
            poll_max_interval_ms: 2_000,
            job_timeout_ms: 60_000,
            max_retries: 3,
            retry_deadline_ms: 72 * 3600 * 1000,
            backoff_base_ms: 100,
            backoff_cap_ms: 5_000,
            list_poll_min: 3,
            max_enqueued_tokens: None,
            budget: None,
        }
    }
}

/// Batch ids are unique per pipeline across lanes (Kafka partitions may move
/// between instances): the lane in the high bits, a per-lane sequence in the
/// low 40. Lane 0's ids are plain sequence numbers.
pub fn batch_id(lane: LaneId, seq: u64) -> u64 {
    (u64::from(lane) << 40) | (seq & ((1 << 40) - 1))
}

/// The per-lane sequence number of a batch id.
pub fn seq_of(id: u64) -> u64 {
    id & ((1 << 40) - 1)
}

/// `custom_id` of a record: `{lane}-{position}` (portable: `[A-Za-z0-9_-]`).
pub fn custom_id(lane: LaneId, position: Position) -> String {
    format!("{lane}-{position}")
}

/// Write a `custom_id` into a reusable buffer (hot path: no allocation).
pub fn write_custom_id(out: &mut String, lane: LaneId, position: Position) {
    use std::fmt::Write;
    out.clear();
    let _ = write!(out, "{lane}-{position}");
}

/// Parse a `custom_id` back into lane and position.
pub fn parse_custom_id(id: &str) -> Option<(LaneId, Position)> {
    let (lane, pos) = id.split_once('-')?;
    Some((lane.parse().ok()?, pos.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_id_round_trips() {
        let id = custom_id(3, 18_446_744_073_709_551_615);
        assert_eq!(parse_custom_id(&id), Some((3, u64::MAX)));
        assert_eq!(parse_custom_id("x-1"), None);
        assert_eq!(parse_custom_id("1"), None);
        let mut buf = String::from("junk");
        write_custom_id(&mut buf, 0, 42);
        assert_eq!(buf, "0-42");
    }
}
