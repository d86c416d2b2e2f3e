//! The [`Ledger`] seam: where records come from and where a turn becomes
//! durable. One implementation per backend: [`file::FileLedger`] (input
//! file, output and dead-letter files, SQLite state), [`kafka::KafkaLedger`]
//! (consumer group, state topic, one transaction per turn) and
//! [`mem::MemLedger`] (memory; a crash drops what was not committed), all
//! checked by one conformance suite ([`conformance`]).

pub mod conformance;
pub mod file;
pub mod kafka;
pub mod mem;

pub mod sink;
pub mod source;

use std::collections::BTreeMap;
use std::time::Duration;

use batch_core::{Batch, LaneId, Position};

use crate::Turn;

/// How a record is named in a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// A line of a file (1-based line number).
    Line { line_no: u64 },
    /// A Kafka record; its partition is the lane, its offset the position.
    Kafka,
}

/// One record read from a lane.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub lane: LaneId,
    pub pos: Position,
    /// Position of the next record (a file line's end; a Kafka offset + 1).
    pub next: Position,
    pub kind: RecordKind,
    pub key: Option<&'a [u8]>,
    /// `None`: a Kafka record without a value.
    pub value: Option<&'a [u8]>,
}

/// What a read hands to the driver.
pub enum Intake<'a> {
    Record(Record<'a>),
    /// The lane has no more records (end of file; the end a bounded Kafka
    /// run saw when it took the partition).
    End(LaneId),
}

/// The committed state of one lane.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LaneState {
    pub lane: LaneId,
    pub watermark: Position,
    /// Sequence number of the lane's next batch.
    pub next_seq: u64,
    /// Batches of the lane not yet emitted.
    pub batches: Vec<Batch>,
    pub meta: BTreeMap<String, String>,
}

/// Why a commit did not happen. In every case nothing of the turn is
/// durable.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// Retry from the committed state (the driver rebuilds the operator).
    #[error("commit aborted: {0}")]
    Aborted(String),
    /// The lanes moved first; [`Ledger::lane_changes`] tells where to.
    #[error("the lanes were reassigned before the commit")]
    Rebalanced,
    #[error(transparent)]
    Fatal(#[from] anyhow::Error),
}

/// Called with `(position, key, value)` of each record read again.
pub type VisitRecord<'a> = dyn FnMut(Position, Option<&[u8]>, &[u8]) + 'a;

/// Reads a batch's records again from their lane, by position: the file
/// (byte range or offsets) or the Kafka partition (offset range).
pub trait BatchRecords {
    /// Visit `(position, key, value)` of every record in the batch's range
    /// (or of its members, for a retry batch), in order. Blank lines are
    /// skipped; unusable records are visited (callers skip them).
    fn visit(&mut self, batch: &Batch, f: &mut VisitRecord<'_>) -> anyhow::Result<()>;
}

pub trait Ledger {
    /// The lanes this instance holds now, when that changed since the last
    /// call: a file ledger's one lane at the first call, a Kafka ledger's
    /// partitions after a rebalance. A group consumer learns of changes
    /// only while it is read: callers read between calls, as the driver does.
    fn lane_changes(&mut self) -> anyhow::Result<Option<Vec<LaneId>>>;

    /// The lanes held now.
    fn lanes(&self) -> Vec<LaneId>;

    /// The committed state of a lane; reading resumes at its watermark.
    fn restore(&mut self, lane: LaneId) -> anyhow::Result<LaneState>;

    /// Hand up to `max` records to `f`, which answers whether it wants
    /// more. Waits at most `wait` for the first. Returns how many records
    /// were handed over.
    fn read(
        &mut self,
        max: usize,
        wait: Duration,
        f: &mut dyn FnMut(Intake<'_>) -> anyhow::Result<bool>,
    ) -> anyhow::Result<usize>;

    /// Hold the source back while the operator has enough to do (a Kafka
    /// consumer keeps serving its group meanwhile).
    fn pause(&mut self, _paused: bool) {}

    /// Reads records again by position.
    fn records(&mut self) -> &mut dyn BatchRecords;

    /// Make the turn durable, all of it or nothing.
    fn commit(&mut self, turn: &Turn) -> Result<(), CommitError>;

    /// Nothing more will come: every lane held reached its end (and, for a
    /// consumer group, every member's lanes are done: see `kafka`).
    fn finished(&self) -> bool;

    /// Where outputs and dead letters go (a path or a topic), for humans.
    fn targets(&self) -> (String, String);
}

/// The dead letter of a record, in its source's shape: `{line, position,
/// raw, error}` for files, `{partition, offset, key, raw, error}` for
/// Kafka. Always one line of valid JSON.
pub fn write_dead_letter(out: &mut Vec<u8>, r: &Record<'_>, reason: &str) {
    use std::io::Write;
    let raw = r.value.map(String::from_utf8_lossy);
    match r.kind {
        RecordKind::Line { line_no } => {
            let _ = write!(out, "{{\"line\":{line_no},\"position\":{},\"raw\":", r.pos);
        }
        RecordKind::Kafka => {
            let _ = write!(
                out,
                "{{\"partition\":{},\"offset\":{},\"key\":",
                r.lane, r.pos
            );
            let _ = serde_json::to_writer(&mut *out, &r.key.map(String::from_utf8_lossy));
            out.extend_from_slice(b",\"raw\":");
        }
    }
    let _ = serde_json::to_writer(&mut *out, &raw);
    out.extend_from_slice(b",\"error\":");
    let _ = serde_json::to_writer(&mut *out, reason);
    out.extend_from_slice(b"}\n");
}
