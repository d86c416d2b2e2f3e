//! A ledger in memory, for the simulation and the conformance suite. The
//! [`MemBroker`] is what survives a crash (shared, like a Kafka cluster or
//! a disk); a [`MemLedger`] is one instance's view of it, and a crash is
//! dropping that view with everything not committed. Lanes are assigned
//! to instances by the broker; a reassignment bumps the generation, and a
//! ledger that has not seen the new one cannot commit (a zombie is fenced,
//! as Kafka fences by group generation).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use batch_core::{Batch, LaneId, Phase, Position};

use super::{BatchRecords, CommitError, Intake, LaneState, Ledger, Record, RecordKind};
use crate::{LaneMark, Turn};

/// What the broker holds for one lane.
#[derive(Debug, Clone, Default)]
pub struct MemLane {
    /// The records: a record's position is its index.
    pub records: Vec<Vec<u8>>,
    pub mark: LaneMark,
    /// Every batch row of the lane, emitted ones too.
    pub batches: BTreeMap<u64, Batch>,
    pub meta: BTreeMap<String, String>,
}

/// The durable side: lanes, sinks, assignment.
#[derive(Debug, Default)]
pub struct Durable {
    pub lanes: BTreeMap<LaneId, MemLane>,
    /// `(key, line)` of every output and dead letter, in commit order.
    pub outputs: Vec<(Option<Vec<u8>>, Vec<u8>)>,
    pub dead_letters: Vec<(Option<Vec<u8>>, Vec<u8>)>,
    /// Which instance holds which lane.
    pub owner: BTreeMap<LaneId, u32>,
    pub generation: u64,
    pub commits: u64,
    /// Fault injection: the next commit of any instance aborts.
    pub abort_next: bool,
    pub aborts: u64,
    pub fenced: u64,
    /// Fault injection: the process dies right after the next commit,
    /// before the calls the commit releases go out.
    pub crash_after_commit: bool,
    /// Fault injection: the lanes move while the next commit is on its
    /// way: the instance committing is a zombie and must be refused.
    pub move_before_commit: bool,
}

impl Durable {
    /// Every lane to the next instance that holds lanes; a new generation.
    pub fn rotate(&mut self) {
        let holders: Vec<u32> = self
            .owner
            .values()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        for owner in self.owner.values_mut() {
            let i = holders.iter().position(|h| h == owner).unwrap_or(0);
            *owner = holders[(i + 1) % holders.len()];
        }
        self.generation += 1;
    }
}

/// The panic payload of an injected crash.
pub const CRASH: &str = "simulated crash";

/// Shared by every instance of a simulated pipeline.
#[derive(Debug, Clone, Default)]
pub struct MemBroker(Arc<Mutex<Durable>>);

impl MemBroker {
    pub fn new(lanes: BTreeMap<LaneId, Vec<Vec<u8>>>) -> Self {
        let lanes = lanes
            .into_iter()
            .map(|(l, records)| {
                let lane = MemLane {
                    records,
                    mark: LaneMark {
                        watermark: 0,
                        next_seq: 1,
                    },
                    ..MemLane::default()
                };
                (l, lane)
            })
            .collect();
        Self(Arc::new(Mutex::new(Durable {
            lanes,
            ..Durable::default()
        })))
    }

    pub fn lock(&self) -> MutexGuard<'_, Durable> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hand the lanes out to `instances` (round robin); a new generation.
    pub fn assign(&self, instances: &[u32]) {
        let mut d = self.lock();
        let lanes: Vec<LaneId> = d.lanes.keys().copied().collect();
        d.owner.clear();
        if !instances.is_empty() {
            for (i, lane) in lanes.into_iter().enumerate() {
                d.owner.insert(lane, instances[i % instances.len()]);
            }
        }
        d.generation += 1;
    }
}

pub struct MemLedger {
    broker: MemBroker,
    instance: u32,
    /// The generation whose assignment this ledger acts on.
    generation: u64,
    /// Read position and end of every lane held.
    cursors: BTreeMap<LaneId, Position>,
    ended: BTreeSet<LaneId>,
    /// Lanes end at their last record (a bounded run).
    bounded: bool,
    /// Where batches' records are read again, when not from the lanes
    /// read (a poller's: the submitter's input).
    records_from: Option<MemBroker>,
}

impl MemLedger {
    pub fn new(broker: MemBroker, instance: u32, bounded: bool) -> Self {
        Self {
            broker,
            instance,
            generation: 0,
            cursors: BTreeMap::new(),
            ended: BTreeSet::new(),
            bounded,
            records_from: None,
        }
    }

    /// Read batches' records again from `records` (decoupled mode's
    /// poller: its lanes are the handoff, its records the input).
    pub fn with_records(mut self, records: MemBroker) -> Self {
        self.records_from = Some(records);
        self
    }

    fn apply(d: &mut Durable, turn: &Turn) {
        d.outputs.extend(
            turn.outputs
                .iter()
                .map(|(k, l)| (k.map(<[u8]>::to_vec), l.to_vec())),
        );
        d.dead_letters.extend(
            turn.dead_letters
                .iter()
                .map(|(k, l)| (k.map(<[u8]>::to_vec), l.to_vec())),
        );
        fn lane(d: &mut Durable, l: LaneId) -> &mut MemLane {
            d.lanes.get_mut(&l).expect("a lane of the broker")
        }
        for b in &turn.batches {
            lane(d, b.lane).batches.insert(b.id, b.clone());
        }
        for (&l, mark) in &turn.lanes {
            lane(d, l).mark = *mark;
        }
        for (done, retry) in &turn.emitted {
            debug_assert_eq!(done.phase, Phase::Emitted);
            lane(d, done.lane).batches.insert(done.id, done.clone());
            if let Some(r) = retry {
                lane(d, r.lane).batches.insert(r.id, r.clone());
            }
        }
        for ((l, name), value) in &turn.meta {
            lane(d, *l).meta.insert((*name).to_owned(), value.clone());
        }
        d.commits += 1;
    }
}

impl Ledger for MemLedger {
    fn lane_changes(&mut self) -> anyhow::Result<Option<Vec<LaneId>>> {
        let d = self.broker.lock();
        if d.generation == self.generation {
            return Ok(None);
        }
        self.generation = d.generation;
        self.cursors.clear();
        self.ended.clear();
        let mine = d
            .owner
            .iter()
            .filter(|(_, &o)| o == self.instance)
            .map(|(&l, _)| l)
            .collect();
        Ok(Some(mine))
    }

    fn lanes(&self) -> Vec<LaneId> {
        self.cursors.keys().copied().collect()
    }

    fn restore(&mut self, lane: LaneId) -> anyhow::Result<LaneState> {
        let d = self.broker.lock();
        let l = d
            .lanes
            .get(&lane)
            .ok_or_else(|| anyhow::anyhow!("no lane {lane}"))?;
        self.cursors.insert(lane, l.mark.watermark);
        self.ended.remove(&lane);
        Ok(LaneState {
            lane,
            watermark: l.mark.watermark,
            next_seq: l.mark.next_seq,
            batches: l
                .batches
                .values()
                .filter(|b| b.phase != Phase::Emitted)
                .cloned()
                .collect(),
            meta: l.meta.clone(),
        })
    }

    fn read(
        &mut self,
        max: usize,
        _wait: Duration,
        f: &mut dyn FnMut(Intake<'_>) -> anyhow::Result<bool>,
    ) -> anyhow::Result<usize> {
        let broker = self.broker.clone();
        let d = broker.lock();
        let mut read = 0;
        // Lanes take turns, one record each, as a consumer interleaves
        // partitions.
        let mut more = true;
        while more && read < max {
            let mut progressed = false;
            for (&lane, cursor) in self.cursors.iter_mut() {
                let records = &d.lanes[&lane].records;
                let pos = *cursor as usize;
                if pos >= records.len() {
                    if self.bounded && self.ended.insert(lane) {
                        f(Intake::End(lane))?;
                    }
                    continue;
                }
                *cursor += 1;
                read += 1;
                progressed = true;
                let key = format!("k{pos}");
                more = f(Intake::Record(Record {
                    lane,
                    pos: pos as Position,
                    next: pos as Position + 1,
                    kind: RecordKind::Kafka,
                    key: Some(key.as_bytes()),
                    value: Some(&records[pos]),
                }))?;
                if !more || read >= max {
                    break;
                }
            }
            if !progressed {
                break;
            }
        }
        Ok(read)
    }

    fn records(&mut self) -> &mut dyn BatchRecords {
        self
    }

    fn commit(&mut self, turn: &Turn) -> Result<(), CommitError> {
        let mut d = self.broker.lock();
        if std::mem::take(&mut d.move_before_commit) {
            d.rotate();
        }
        if d.generation != self.generation {
            d.fenced += 1;
            return Err(CommitError::Rebalanced);
        }
        if std::mem::take(&mut d.abort_next) {
            d.aborts += 1;
            return Err(CommitError::Aborted("injected abort".into()));
        }
        Self::apply(&mut d, turn);
        if std::mem::take(&mut d.crash_after_commit) {
            drop(d);
            std::panic::panic_any(CRASH);
        }
        Ok(())
    }

    fn finished(&self) -> bool {
        self.bounded && self.cursors.keys().all(|l| self.ended.contains(l))
    }

    fn targets(&self) -> (String, String) {
        ("memory".into(), "memory (dead letters)".into())
    }
}

impl BatchRecords for MemLedger {
    fn visit(&mut self, batch: &Batch, f: &mut super::VisitRecord<'_>) -> anyhow::Result<()> {
        let d = self.records_from.as_ref().unwrap_or(&self.broker).lock();
        let Some(lane) = d.lanes.get(&batch.lane) else {
            anyhow::bail!("no input lane {} for batch {}", batch.lane, batch.number);
        };
        let records = &lane.records;
        let key = |p: Position| format!("k{p}");
        match &batch.members {
            None => {
                for p in batch.first..batch.end.min(records.len() as u64) {
                    f(p, Some(key(p).as_bytes()), &records[p as usize]);
                }
            }
            Some(members) => {
                for &p in members {
                    f(p, Some(key(p).as_bytes()), &records[p as usize]);
                }
            }
        }
        Ok(())
    }
}
