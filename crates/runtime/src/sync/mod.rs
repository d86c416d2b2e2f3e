//! The synchronous operator (`ml.batch.enabled = false`): every record is
//! sent on its own (`batch_api::sync`), at most max-concurrent-operations
//! at once, and emitted in input order per lane (ORDERED) or as answers
//! arrive (ALLOW_UNORDERED), through `sync-core`'s windows.
//!
//! Nothing a request needs is durable state, so requests go out at once;
//! what the windows emitted goes into a turn with each lane's watermark
//! (the end of its contiguous emitted prefix) and the records emitted
//! beyond it (`sync.ahead`), so a restart resumes at the watermark and
//! skips those. A crash re-sends only what was in flight or answered after
//! the last commit.

mod calls;

use std::collections::{BTreeMap, BTreeSet};

use anyhow::bail;
use batch_api::sync::{Answer, Done, Job};
use batch_api::wire::RequestTemplate;
use batch_core::{LaneId, Millis, Position};
use bytes::Bytes;
use sync_core::{Admitted, Kind, Limits, Sink, SyncCore};

use crate::batch::SYNC_AHEAD;
use crate::ledger::{write_dead_letter, BatchRecords, LaneState, Record, RecordKind};
use crate::operator::Operator;
use crate::record::{skip_bom, Fields};
use crate::{LaneMark, Lines, Summary, Turn};
pub use calls::{SyncCaller, SyncEndpoint};

/// Group commit: at most this long between an answer and its commit...
pub const COMMIT_INTERVAL_MS: Millis = 200;
/// ...or this many bytes of output, whichever comes first.
pub const COMMIT_BYTES: usize = 8 << 20;

pub struct SyncSettings {
    pub pipeline: String,
    pub ordered: bool,
    pub limits: Limits,
    pub template: RequestTemplate,
    pub input_field: String,
    pub output_field: String,
}

/// A record read, owned: it may wait in the stash, and its request
/// carries it (the output line is built from it).
struct Owned {
    lane: LaneId,
    pos: Position,
    next: Position,
    kind: RecordKind,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
}

impl Owned {
    fn record(&self) -> Record<'_> {
        Record {
            lane: self.lane,
            pos: self.pos,
            next: self.next,
            kind: self.kind,
            key: self.key.as_deref(),
            value: self.value.as_deref(),
        }
    }
}

/// A line to emit (with its newline) and its key.
type Item = (Option<Vec<u8>>, Vec<u8>);

/// What the windows emitted since the last flush into a turn.
#[derive(Default)]
struct Held {
    outputs: Lines,
    dead_letters: Lines,
}

impl Sink<Item> for Held {
    fn output(&mut self, (key, line): Item) {
        self.outputs.push(key.as_deref(), &line);
    }

    fn dead_letter(&mut self, (key, line): Item) {
        self.dead_letters.push(key.as_deref(), &line);
    }
}

impl Held {
    fn bytes(&self) -> usize {
        self.outputs.bytes().len() + self.dead_letters.bytes().len()
    }
}

/// A lane's progress as last put into a turn.
struct Staged {
    watermark: Position,
    ahead: BTreeSet<u64>,
    /// Batch mode's sequence, kept as the lane has it.
    next_seq: u64,
}

pub struct SyncOperator {
    core: SyncCore<Item, Owned>,
    settings: SyncSettings,
    caller: SyncCaller,
    held: Held,
    staged: BTreeMap<LaneId, Staged>,
    /// Lanes whose input ended (a file's end, a bounded Kafka run's).
    ended: BTreeSet<LaneId>,
    /// Something was admitted or answered since the last flush.
    dirty: bool,
    last_flush: Millis,
    stopping: bool,
    /// The first fatal answer (credentials refused): the run ends with it
    /// once what was emitted is committed.
    fatal: Option<String>,
    /// What it did, in the run summary's terms.
    counts: Summary,
    body: Vec<u8>,
}

impl SyncOperator {
    pub fn new(settings: SyncSettings, caller: SyncCaller) -> Self {
        Self {
            core: SyncCore::new(settings.ordered, settings.limits),
            settings,
            caller,
            held: Held::default(),
            staged: BTreeMap::new(),
            ended: BTreeSet::new(),
            dirty: false,
            last_flush: 0,
            stopping: false,
            fatal: None,
            counts: Summary::default(),
            body: Vec::with_capacity(1024),
        }
    }

    fn halted(&self) -> bool {
        self.stopping || self.fatal.is_some()
    }

    /// Put a record into its window: skipped, dead-lettered, or its
    /// request sent.
    fn admit(&mut self, o: Owned) {
        let fields = Fields {
            input: &self.settings.input_field,
            output: &self.settings.output_field,
        };
        let (template, body) = (&self.settings.template, &mut self.body);
        let kind = || match fields.parse_value(o.value.as_deref()) {
            Ok(usable) => {
                body.clear();
                template.write_sync_body(body, usable.input.get().as_bytes());
                Kind::Request
            }
            Err(reason) => {
                let mut line = Vec::with_capacity(o.value.as_ref().map_or(0, Vec::len) + 96);
                write_dead_letter(&mut line, &o.record(), &reason.0);
                Kind::Dead((o.key.clone(), line))
            }
        };
        let admitted = self.core.admit(o.lane, o.pos, o.next, kind, &mut self.held);
        self.dirty = true;
        match admitted {
            Admitted::Request(seq) => {
                let mut record = o.value.unwrap_or_default();
                let bom = record.len() - skip_bom(&record).len();
                record.drain(..bom);
                self.caller.send(Job {
                    seq,
                    lane: o.lane,
                    pos: o.pos,
                    key: o.key,
                    record,
                    body: Bytes::copy_from_slice(&self.body),
                });
            }
            Admitted::Dead => {
                self.counts.dead_letters += 1;
                metrics::counter!("records_dead_lettered_total").increment(1);
            }
            Admitted::Skipped => self.counts.skipped += 1,
            Admitted::NoLane => {}
        }
    }

    /// Admit stashed records while there is room.
    fn pump(&mut self) {
        while !self.halted() {
            let Some(o) = self.core.next_admissible() else {
                return;
            };
            self.admit(o);
        }
    }

    /// Group commit. The driver commits every turn that holds something,
    /// so emitted lines are held here and put into a turn only once
    /// [`COMMIT_INTERVAL_MS`] passed since the last flush or
    /// [`COMMIT_BYTES`] are waiting, or when no answer can come any more
    /// before the run ends (every lane ended, or stopping, with nothing in
    /// flight): one fsync + transaction (file) or one Kafka transaction per
    /// interval, not per answer.
    fn flush_due(&self, now: Millis) -> bool {
        if !self.dirty && self.held.bytes() == 0 {
            return false;
        }
        let all_ended = self.staged.keys().all(|l| self.ended.contains(l));
        now >= self.last_flush + COMMIT_INTERVAL_MS
            || self.held.bytes() >= COMMIT_BYTES
            || (self.core.inflight() == 0 && (all_ended || self.halted()))
    }

    /// Move what was emitted, and each lane's progress where it changed,
    /// into the turn.
    fn flush(&mut self, turn: &mut Turn, now: Millis) {
        turn.outputs.append(&mut self.held.outputs);
        turn.dead_letters.append(&mut self.held.dead_letters);
        for mark in self.core.marks() {
            let Some(st) = self.staged.get_mut(&mark.lane) else {
                continue;
            };
            if st.watermark == mark.watermark && st.ahead == mark.ahead {
                continue;
            }
            turn.lanes.insert(
                mark.lane,
                LaneMark {
                    watermark: mark.watermark,
                    next_seq: st.next_seq,
                },
            );
            let ahead = crate::ahead::encode(mark.watermark, &mark.ahead);
            turn.meta.insert((mark.lane, SYNC_AHEAD), ahead);
            st.watermark = mark.watermark;
            st.ahead = mark.ahead;
        }
        self.dirty = false;
        self.last_flush = now;
        metrics::gauge!("requests_in_flight").set(self.core.inflight() as f64);
    }

    fn take_answer(&mut self, done: Done) {
        let item = match done.answer {
            Answer::Emit {
                line,
                ok,
                tokens,
                retries,
            } => {
                if ok {
                    self.counts.ok += 1;
                } else {
                    self.counts.errors += 1;
                }
                self.counts.tokens += tokens;
                self.counts.retries += u64::from(retries);
                let status = if ok { "ok" } else { "error" };
                metrics::counter!("records_out_total", "status" => status).increment(1);
                metrics::counter!("tokens_total").increment(tokens);
                Some((done.key, line))
            }
            Answer::Dropped => None,
            Answer::Fatal(msg) => {
                if self.fatal.is_none() {
                    tracing::error!("{msg}");
                    self.fatal = Some(msg);
                    self.caller.halt();
                    self.core.clear_stash();
                }
                None
            }
        };
        self.core
            .answered(done.lane, done.seq, item, &mut self.held);
        self.dirty = true;
    }
}

/// The `ahead` set a lane was committed with, if it still applies.
fn restored_ahead(lane: &LaneState) -> anyhow::Result<BTreeSet<u64>> {
    let Some(meta) = lane.meta.get(SYNC_AHEAD) else {
        return Ok(BTreeSet::new());
    };
    match crate::ahead::decode(meta, lane.watermark).map_err(anyhow::Error::msg)? {
        Some(set) => Ok(set),
        None => {
            tracing::warn!(lane = lane.lane, "records emitted out of order by an earlier synchronous run no longer apply (the watermark moved since); ignoring them");
            Ok(BTreeSet::new())
        }
    }
}

impl Operator for SyncOperator {
    type Answer = Done;

    fn open(&mut self, lanes: Vec<LaneState>, epoch: u64, now: Millis) -> anyhow::Result<()> {
        for lane in &lanes {
            if !lane.batches.is_empty() {
                bail!(
                    "pipeline `{}` has {} batches from batch mode not yet emitted (lane {}); finish them with ml.batch.enabled = true before running it in synchronous mode",
                    self.settings.pipeline,
                    lane.batches.len(),
                    lane.lane
                );
            }
        }
        self.caller.restart(epoch);
        self.core.reset();
        self.held = Held::default();
        self.staged.clear();
        self.ended.clear();
        self.dirty = false;
        self.last_flush = now;
        for lane in lanes {
            let restored = restored_ahead(&lane)?;
            if lane.watermark > 0 || !restored.is_empty() {
                tracing::info!(
                    lane = lane.lane,
                    watermark = lane.watermark,
                    already_emitted_ahead = restored.len(),
                    "resuming from the last commit"
                );
            }
            self.core
                .open_lane(lane.lane, lane.watermark, restored.clone());
            self.staged.insert(
                lane.lane,
                Staged {
                    watermark: lane.watermark,
                    ahead: restored,
                    next_seq: lane.next_seq,
                },
            );
        }
        Ok(())
    }

    fn wants_records(&self) -> bool {
        !self.halted() && self.core.wants_records()
    }

    fn on_record(&mut self, r: Record<'_>, _turn: &mut Turn, _now: Millis) -> anyhow::Result<()> {
        if self.halted() {
            return Ok(()); // read again by the next run
        }
        let owned = Owned {
            lane: r.lane,
            pos: r.pos,
            next: r.next,
            kind: r.kind,
            key: r.key.map(<[u8]>::to_vec),
            value: r.value.map(<[u8]>::to_vec),
        };
        if let Some(o) = self.core.offer(owned) {
            self.admit(o);
        }
        Ok(())
    }

    fn on_end(&mut self, lane: LaneId, _turn: &mut Turn, _now: Millis) -> anyhow::Result<()> {
        self.ended.insert(lane);
        self.dirty = true;
        Ok(())
    }

    fn on_answer(
        &mut self,
        done: Done,
        _turn: &mut Turn,
        _records: &mut dyn BatchRecords,
        _now: Millis,
    ) -> anyhow::Result<()> {
        self.take_answer(done);
        self.pump();
        Ok(())
    }

    fn tick(
        &mut self,
        turn: &mut Turn,
        _records: &mut dyn BatchRecords,
        now: Millis,
    ) -> anyhow::Result<()> {
        self.pump();
        if self.flush_due(now) {
            self.flush(turn, now);
            return Ok(());
        }
        if self.core.inflight() > 0 || self.stopping {
            return Ok(());
        }
        if let Some(msg) = &self.fatal {
            // What was emitted was committed with the last turn.
            bail!("{msg} (what was emitted is committed; run again to resume)");
        }
        if self.core.stashed() == 0 && self.core.held() > 0 {
            bail!("internal error: records neither emitted nor in flight");
        }
        Ok(())
    }

    fn committed(
        &mut self,
        _turn: &mut Turn,
        _records: &mut dyn BatchRecords,
        _now: Millis,
    ) -> anyhow::Result<()> {
        // Requests wait for nothing durable: they went out when read.
        Ok(())
    }

    fn stop(&mut self, turn: &mut Turn, now: Millis) -> bool {
        if !self.stopping {
            self.stopping = true;
            tracing::info!(
                inflight = self.core.inflight(),
                "stopping: waiting for the requests in flight, then committing"
            );
            self.caller.halt();
            self.core.clear_stash();
        }
        if self.core.inflight() > 0 {
            return false;
        }
        self.flush(turn, now);
        true
    }

    fn next_wake(&self) -> Option<Millis> {
        (self.dirty || self.held.bytes() > 0).then_some(self.last_flush + COMMIT_INTERVAL_MS)
    }

    fn is_idle(&self) -> bool {
        self.core.is_idle() && !self.dirty && self.held.bytes() == 0
    }

    fn load(&self) -> (usize, usize) {
        (self.core.inflight(), self.core.stashed())
    }

    fn summarize(&self, s: &mut Summary) {
        s.add_counts(&self.counts);
        let (calls, failed) = self.caller.client.counts();
        s.api_calls += calls;
        s.api_errors += failed;
    }

    fn finish(&mut self, _cancel_inflight: bool) {
        self.caller.halt();
    }
}

#[cfg(test)]
mod tests;
