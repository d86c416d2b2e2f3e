//! A Kafka pipeline's ledger: each input partition is a lane of a
//! consumer group; a turn is ONE Kafka transaction holding the output and
//! dead-letter records, the state records (a compacted topic partitioned
//! like the input) and the consumed offsets of every lane held, so an
//! instance that lost its group generation cannot commit anything. A
//! lane's records are read again by offset.
//!
//! A bounded run (`--until-idle`) is finished when the GROUP's input is
//! done, not only this instance's lanes: every input partition committed
//! (by any member) up to the end it had when this instance started, with
//! no batch of those records still open in the state topic. Until then an
//! instance whose lanes are done keeps serving the group, and takes over
//! what a killed member leaves.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use batch_core::{seq_of, Batch, LaneId, Phase, Position};
use kafka_io::{KafkaIo, LaneRecord, StateRecord, Txn};

use super::{BatchRecords, CommitError, Intake, LaneState, Ledger, Record, RecordKind};
use crate::Turn;

/// How often a bounded run whose lanes are done looks at the group's
/// progress.
const GROUP_CHECK: Duration = Duration::from_secs(1);

/// The state topic's key for synchronous mode's records ahead.
const SYNC_AHEAD: &str = crate::batch::SYNC_AHEAD;

#[derive(Default)]
struct Lane {
    /// Bounded runs: the partition's end when the lane was taken.
    end: Option<i64>,
    /// The next offset this lane expects: a record before it was already
    /// read (a fetch from before a seek) and is skipped.
    next_offset: i64,
    /// The consumer is not yet back at the lane's watermark: its records
    /// are ignored until a seek succeeds (they will be fetched again).
    needs_seek: bool,
    ended: bool,
    /// The committed watermark (next offset to consume).
    committed: i64,
}

/// Bounded runs: what is known of the group's progress.
#[derive(Default)]
struct Group {
    /// Every input partition's end when this instance started.
    ends: BTreeMap<i32, i64>,
    /// Partitions known to be done up to their end: that cannot change.
    done: BTreeSet<i32>,
    last_check: Option<Instant>,
}

pub struct KafkaLedger {
    io: KafkaIo,
    assigned: BTreeSet<i32>,
    lanes: BTreeMap<i32, Lane>,
    until_idle: bool,
    /// `None` until the first lane change (bounded runs only).
    group: Option<RefCell<Group>>,
    paused: bool,
    txn: Txn,
    targets: (String, String),
    /// Where batches' records are read again, when not from the input
    /// topic (decoupled mode's poller: its input is the handoff topic).
    records_from: Option<Box<dyn BatchRecords + Send>>,
    /// Decoupled mode's poller: every open batch of a lane's state keeps a
    /// bounded run going (its positions are the input's, not the lane's).
    poller: bool,
    /// Decoupled mode's submitter: each output (a handoff line, keyed by
    /// its lane) goes to the output partition of its lane.
    outputs_by_lane: bool,
}

impl KafkaLedger {
    /// `until_idle`: lanes end at the partition's end seen when taken.
    pub fn new(io: KafkaIo, until_idle: bool, targets: (String, String)) -> Self {
        Self {
            io,
            assigned: BTreeSet::new(),
            lanes: BTreeMap::new(),
            until_idle,
            group: None,
            paused: false,
            txn: Txn::default(),
            targets,
            records_from: None,
            poller: false,
            outputs_by_lane: false,
        }
    }

    /// Decoupled mode's submitter: the output topic is the handoff topic,
    /// partitioned like the input; each handoff line goes to its lane's
    /// partition (its key is the lane).
    pub fn submitter(mut self) -> Self {
        self.outputs_by_lane = true;
        self
    }

    /// Decoupled mode's poller: the input topic is the handoff topic;
    /// batches' records are read again from `records` (the submitter's
    /// input topic, by partition = lane and offset).
    pub fn poller(mut self, records: Box<dyn BatchRecords + Send>) -> Self {
        self.records_from = Some(records);
        self.poller = true;
        self
    }

    /// Bounded runs: the end of every input partition, once, at start.
    fn note_group_ends(&mut self) -> anyhow::Result<()> {
        if !self.until_idle || self.group.is_some() {
            return Ok(());
        }
        let mut ends = BTreeMap::new();
        for p in 0..self.io.input_partitions() {
            ends.insert(p, self.io.end_offset(p)?);
        }
        tracing::info!(ends = ?ends, "bounded run: done once the group committed every partition up to these offsets");
        self.group = Some(RefCell::new(Group {
            ends,
            ..Group::default()
        }));
        Ok(())
    }

    /// Whether every input partition is committed up to its end at start
    /// with nothing of it open; looked at every [`GROUP_CHECK`] at most.
    fn group_done(&self) -> bool {
        let Some(group) = &self.group else {
            return false;
        };
        let mut g = group.borrow_mut();
        if g.last_check.is_some_and(|t| t.elapsed() < GROUP_CHECK) {
            return false;
        }
        g.last_check = Some(Instant::now());
        match self.check_group(&mut g) {
            Ok(None) => true,
            Ok(Some(why)) => {
                tracing::debug!(waiting_for = %why, "this instance's lanes are done; the group's are not");
                false
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot look at the group's progress; retrying");
                false
            }
        }
    }

    /// `None` when the group is done, else what it waits for.
    fn check_group(&self, g: &mut Group) -> anyhow::Result<Option<String>> {
        // Offsets first: the state read after them is at least as new.
        let committed = self.io.committed_offsets()?;
        for (&p, &end) in &g.ends.clone() {
            if g.done.contains(&p) {
                continue;
            }
            let at = committed.get(&p).copied().unwrap_or(0).max(0);
            // Below the end only transaction markers may be left.
            if at < end && self.io.input_has_record(p, at, end)? {
                return Ok(Some(format!("partition {p} committed up to {at} of {end}")));
            }
            let st = self.io.read_state(p)?;
            let open = st
                .batches
                .values()
                .filter(|b| b.phase != Phase::Emitted && (self.poller || (b.first as i64) < end))
                .count();
            if open > 0 {
                return Ok(Some(format!("partition {p} has {open} batches open")));
            }
            g.done.insert(p);
        }
        Ok(None)
    }

    /// Bounded runs: a lane whose consumer passed the end seen when it was
    /// taken has ended.
    fn check_ends(
        &mut self,
        f: &mut dyn FnMut(Intake<'_>) -> anyhow::Result<bool>,
    ) -> anyhow::Result<()> {
        let positions = self.io.positions();
        for (&p, lane) in self.lanes.iter_mut() {
            let Some(end) = lane.end else { continue };
            if lane.ended || lane.needs_seek {
                continue;
            }
            // What was handed over is the truth; the consumer's position
            // only adds offsets it skipped without a record (transaction
            // markers), and is trusted only once a seek set it back.
            let at = positions
                .get(&p)
                .copied()
                .unwrap_or(0)
                .max(lane.next_offset);
            if at >= end {
                lane.ended = true;
                f(Intake::End(p as LaneId))?;
            }
        }
        Ok(())
    }

    fn stage(&mut self, turn: &Turn) -> Result<(), CommitError> {
        let txn = &mut self.txn;
        txn.clear();
        let owned = |(k, l): (Option<&[u8]>, &[u8])| (k.map(<[u8]>::to_vec), l.to_vec());
        txn.outputs.extend(turn.outputs.iter().map(owned));
        if self.outputs_by_lane {
            for (key, _) in turn.outputs.iter() {
                let lane = key
                    .and_then(|k| std::str::from_utf8(k).ok())
                    .and_then(|k| k.parse::<i32>().ok());
                let Some(lane) = lane else {
                    return Err(CommitError::Fatal(anyhow::anyhow!(
                        "internal error: a handoff line without its lane as key"
                    )));
                };
                txn.output_partitions.push(lane);
            }
        }
        txn.dead_letters.extend(turn.dead_letters.iter().map(owned));
        for b in &turn.batches {
            txn.state.push(StateRecord::batch(b.lane as i32, b));
        }
        for (&lane, mark) in &turn.lanes {
            let record = LaneRecord {
                watermark: mark.watermark as i64,
                next_seq: mark.next_seq,
            };
            txn.state.push(StateRecord::lane(lane as i32, record));
        }
        for (done, retry) in &turn.emitted {
            // An emitted batch is a tombstone.
            txn.state.push(StateRecord::batch(done.lane as i32, done));
            if let Some(r) = retry {
                txn.state.push(StateRecord::batch(r.lane as i32, r));
            }
        }
        for ((lane, name), value) in &turn.meta {
            // The budget's spend (`spend.nano_usd`) is kept by the file
            // ledger only: a Kafka pipeline's restart starts it again.
            if *name != SYNC_AHEAD {
                continue;
            }
            txn.state.push(StateRecord::sync_ahead(*lane as i32, value));
        }
        // Every lane held, moved or not: a zombie is fenced by the group
        // generation and commits nothing.
        for (&p, lane) in &self.lanes {
            let w = turn
                .lanes
                .get(&(p as LaneId))
                .map_or(lane.committed, |m| m.watermark as i64);
            txn.offsets.insert(p, w);
        }
        Ok(())
    }
}

impl Ledger for KafkaLedger {
    fn lane_changes(&mut self) -> anyhow::Result<Option<Vec<LaneId>>> {
        self.note_group_ends()?;
        if !self.io.update_assignment(&mut self.assigned) {
            return Ok(None);
        }
        self.lanes.clear();
        // librdkafka keeps a partition's pause across a rebalance that
        // hands it back: every lane starts unpaused.
        self.paused = false;
        self.io.pause(false);
        Ok(Some(self.lanes()))
    }

    fn lanes(&self) -> Vec<LaneId> {
        self.assigned.iter().map(|&p| p as LaneId).collect()
    }

    fn restore(&mut self, lane: LaneId) -> anyhow::Result<LaneState> {
        let p = lane as i32;
        let st = self.io.read_state(p)?;
        let record = st.lane.unwrap_or_default();
        let next_seq = st
            .batches
            .keys()
            .map(|&id| seq_of(id) + 1)
            .max()
            .unwrap_or(1)
            .max(record.next_seq);
        let needs_seek = match self.io.seek(p, record.watermark) {
            Ok(()) => false,
            Err(e) => {
                tracing::debug!(partition = p, error = %e, "seek deferred");
                true
            }
        };
        let end = if self.until_idle {
            Some(self.io.end_offset(p)?)
        } else {
            None
        };
        self.lanes.insert(
            p,
            Lane {
                end,
                next_offset: record.watermark,
                needs_seek,
                ended: false,
                committed: record.watermark,
            },
        );
        let mut meta = BTreeMap::new();
        if let Some(ahead) = st.sync_ahead {
            meta.insert(SYNC_AHEAD.to_owned(), ahead);
        }
        Ok(LaneState {
            lane,
            watermark: record.watermark as Position,
            next_seq,
            batches: st
                .batches
                .into_values()
                .filter(|b| b.phase != Phase::Emitted)
                .collect(),
            meta,
        })
    }

    fn read(
        &mut self,
        max: usize,
        wait: Duration,
        f: &mut dyn FnMut(Intake<'_>) -> anyhow::Result<bool>,
    ) -> anyhow::Result<usize> {
        for (&p, lane) in self.lanes.iter_mut().filter(|(_, l)| l.needs_seek) {
            if self.io.seek(p, lane.next_offset).is_ok() {
                lane.needs_seek = false;
            }
        }
        let mut read = 0;
        let mut result = Ok(true);
        // At least one poll per call, to serve the group even when paused.
        let mut first = true;
        while (first || read < max) && matches!(result, Ok(true)) {
            let timeout = if first { wait } else { Duration::ZERO };
            first = false;
            let lanes = &mut self.lanes;
            let got = self.io.poll(timeout, &mut |r| {
                let lane = match lanes.get_mut(&r.partition) {
                    None => return, // fetched just before a revocation
                    Some(l) if l.needs_seek => return,
                    Some(l) if r.offset < l.next_offset => {
                        tracing::debug!(
                            partition = r.partition,
                            offset = r.offset,
                            "skipping a record read twice"
                        );
                        return;
                    }
                    // Bounded runs leave what came after the end for later.
                    Some(l) if l.end.is_some_and(|e| r.offset >= e) => return,
                    Some(l) => l,
                };
                lane.next_offset = r.offset + 1;
                read += 1;
                result = f(Intake::Record(Record {
                    lane: r.partition as LaneId,
                    pos: r.offset as Position,
                    next: r.offset as Position + 1,
                    kind: RecordKind::Kafka,
                    key: r.key,
                    value: r.value,
                }));
            })?;
            if !got {
                break;
            }
        }
        result?;
        if self.until_idle && read == 0 {
            self.check_ends(f)?;
        }
        Ok(read)
    }

    fn pause(&mut self, paused: bool) {
        if self.paused != paused {
            self.paused = paused;
            self.io.pause(paused);
        }
    }

    // `if let` here is refused by the borrow checker (returning the borrow).
    #[allow(clippy::unnecessary_unwrap)]
    fn records(&mut self) -> &mut dyn BatchRecords {
        if self.records_from.is_some() {
            return self.records_from.as_mut().expect("just checked").as_mut();
        }
        self
    }

    fn commit(&mut self, turn: &Turn) -> Result<(), CommitError> {
        self.stage(turn)?;
        match self.io.commit(&self.txn) {
            Ok(()) => {}
            Err(kafka_io::CommitError::Aborted(e)) => {
                return Err(CommitError::Aborted(e.to_string()))
            }
            Err(kafka_io::CommitError::Rebalanced) => return Err(CommitError::Rebalanced),
            Err(e @ kafka_io::CommitError::Fatal(_)) => return Err(CommitError::Fatal(e.into())),
        }
        for (&lane, mark) in &turn.lanes {
            if let Some(l) = self.lanes.get_mut(&(lane as i32)) {
                l.committed = mark.watermark as i64;
            }
        }
        Ok(())
    }

    fn finished(&self) -> bool {
        if !self.until_idle {
            return false;
        }
        // This instance's lanes first (cheap), then the whole group's.
        self.assigned
            .iter()
            .all(|p| self.lanes.get(p).is_some_and(|l| l.ended))
            && self.group_done()
    }

    fn targets(&self) -> (String, String) {
        self.targets.clone()
    }
}

impl BatchRecords for KafkaLedger {
    fn visit(
        &mut self,
        batch: &Batch,
        f: &mut crate::ledger::VisitRecord<'_>,
    ) -> anyhow::Result<()> {
        let io = &self.io;
        visit_partition(batch, f, &mut |p, first, end, v| {
            io.read_input(p, first, end, v)
        })
    }
}

/// Decoupled mode's poller: batches' records read again from the
/// submitter's input topic (partition = lane), for [`KafkaLedger::poller`].
pub struct KafkaRecords(pub kafka_io::TopicReader);

impl BatchRecords for KafkaRecords {
    fn visit(
        &mut self,
        batch: &Batch,
        f: &mut crate::ledger::VisitRecord<'_>,
    ) -> anyhow::Result<()> {
        let r = &self.0;
        visit_partition(batch, f, &mut |p, first, end, v| r.read(p, first, end, v))
    }
}

type ReadRange<'a> = dyn FnMut(i32, i64, i64, &mut kafka_io::Visit<'_>) -> anyhow::Result<()> + 'a;

/// A batch's records by offset: its range, or the span of its members.
fn visit_partition(
    batch: &Batch,
    f: &mut crate::ledger::VisitRecord<'_>,
    read: &mut ReadRange<'_>,
) -> anyhow::Result<()> {
    let p = batch.lane as i32;
    let (first, end) = match &batch.members {
        None => (batch.first, batch.end),
        Some(m) => (
            m.iter().copied().min().unwrap_or(batch.first),
            m.iter().copied().max().map_or(batch.first, |x| x + 1),
        ),
    };
    let members: Option<BTreeSet<u64>> =
        batch.members.as_ref().map(|m| m.iter().copied().collect());
    read(p, first as i64, end as i64, &mut |offset, key, value| {
        let pos = offset as u64;
        if members.as_ref().is_none_or(|m| m.contains(&pos)) {
            f(pos, key, value.unwrap_or_default());
        }
    })
}
