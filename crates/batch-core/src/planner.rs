//! Cutting lanes into batches: by count (`ml.batch.size`), by bytes
//! (`ml.batch.max.bytes` and the provider's file limit), by age
//! (`ml.batch.max.wait`) and at the end of input.

use crate::batch::{Batch, Phase};
use crate::{LaneId, Millis, NanoUsd, Position};

/// A batch boundary decided by the core. The shell turns the records it
/// buffered since the previous cut into a batch file, writes the range's dead
/// letters, and makes the plan durable before calling the core again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub lane: LaneId,
    pub first: Position,
    pub end: Position,
    pub records: u32,
    pub dead: u32,
    /// The new batch (phase `Planned`), or `None` when the range held only
    /// dead letters: then only the lane watermark and the dead letters are
    /// committed.
    pub batch: Option<Batch>,
}

/// Cuts around one record: `before` applies to the records buffered before
/// it, `after` includes it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecordCuts {
    pub before: Option<Plan>,
    pub after: Option<Plan>,
}

#[derive(Debug, Clone)]
pub(crate) struct OpenRange {
    pub first: Position,
    pub end: Position,
    pub records: u32,
    pub dead: u32,
    pub bytes: u64,
    pub tokens: u64,
    pub cost: NanoUsd,
    pub since: Millis,
}

#[derive(Debug, Clone)]
pub(crate) struct Lane {
    /// End of the last cut: the source resumes here after a restart.
    pub watermark: Position,
    pub open: Option<OpenRange>,
    pub eof: bool,
    /// Sequence number of the next batch id of this lane.
    pub next_seq: u64,
}

impl Lane {
    pub fn new(watermark: Position, next_seq: u64) -> Self {
        Self {
            watermark,
            open: None,
            eof: false,
            next_seq: next_seq.max(1),
        }
    }
}

/// What the limit leaves beside the batches cut and not finished (started
/// or waiting to).
pub(crate) fn token_headroom<'a>(
    limit: u64,
    runs: impl Iterator<Item = &'a crate::lifecycle::Run>,
) -> u64 {
    let held: u64 = runs
        .filter(|r| r.batch.phase != Phase::Finished)
        .map(|r| r.batch.tokens)
        .sum();
    limit.saturating_sub(held)
}

pub(crate) fn batch_number(prefix: &str, lane: LaneId, first: Position, end: Position) -> String {
    format!("{prefix}-{lane}-{first}-{end}")
}

/// Turn the open range of a lane into a plan.
pub(crate) fn cut(prefix: &str, lane_id: LaneId, lane: &mut Lane, now: Millis) -> Option<Plan> {
    let open = lane.open.take()?;
    lane.watermark = open.end;
    let batch = (open.records > 0).then(|| {
        let id = crate::batch_id(lane_id, lane.next_seq);
        lane.next_seq += 1;
        Batch {
            id,
            lane: lane_id,
            number: batch_number(prefix, lane_id, open.first, open.end),
            first: open.first,
            end: open.end,
            members: None,
            generation: 0,
            attempt: 0,
            records: open.records,
            phase: Phase::Planned,
            planned_at: now,
            submitted_at: None,
            file_id: None,
            remote_id: None,
            remote_state: None,
            output_file: None,
            error_file: None,
            failure: None,
            first_submitted_at: None,
            fault_retries: 0,
            submissions: 0,
            tokens: open.tokens,
            estimated_cost: open.cost,
        }
    });
    Some(Plan {
        lane: lane_id,
        first: open.first,
        end: open.end,
        records: open.records,
        dead: open.dead,
        batch,
    })
}
