//! Decoupled mode (the FLIP's Option 2, DESIGN.md §13): the batch
//! operator as a **submitter** (plans, uploads, creates, then hands each
//! created batch off as one line of its sink and forgets it) or as a
//! **poller** (reads those lines, resumes each batch from it, polls,
//! downloads, joins and emits as inline mode does).
//!
//! Exactly-once at the seam: the submitter's handoff line and the batch's
//! tombstone in its state are one turn (one commit); the poller's absorbed
//! batch row and its handoff watermark are one turn too. A batch is thus
//! at every moment owned by exactly one side's committed state.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context};
use batch_core::{Action, Batch, Event, LaneId, Millis, Phase, Position};

use super::handoff::{
    EndOfHandoff, HandoffLine, HandoffRecord, HandoffSettings, END_AT, END_SEEN, RETRY_SEQ_BASE,
};
use super::BatchOperator;
use crate::ledger::{LaneState, Record};
use crate::{LaneMark, Turn};

/// What the batch operator does.
#[derive(Debug, Clone, Default)]
pub enum Role {
    /// Option 1: everything, polling included, in this pipeline.
    #[default]
    Inline,
    /// Option 2's submitter: its sink is the handoff topic or file.
    Submit(HandoffSettings),
    /// Option 2's poller: its source is the handoff topic or file, its
    /// ledger reads the batches' records from the original input.
    Poll(PollSettings),
}

#[derive(Debug, Clone, Default)]
pub struct PollSettings {
    /// Idle only once every lane held ends with an end marker (file mode:
    /// the submitter is done); else idle whenever no batch is held.
    pub wait_for_end: bool,
}

/// The roles' own state; empty in inline mode.
#[derive(Debug, Default)]
pub(super) struct Decoupled {
    /// Lanes held since the last `open`.
    held: Vec<LaneId>,
    /// Submitter: batches whose handoff is in a turn, until the core
    /// forgot them (after the commit).
    handed: BTreeSet<u64>,
    /// Submitter: lanes whose input ended, and those whose end marker is
    /// written at their watermark.
    ended: BTreeSet<LaneId>,
    marked: BTreeSet<LaneId>,
    /// Poller: the handoff watermark of each lane held.
    marks: BTreeMap<LaneId, Position>,
    /// Poller: lanes whose last handoff record is an end marker.
    end_seen: BTreeSet<LaneId>,
}

impl BatchOperator {
    /// Lowest sequence number of a lane's next own batch.
    pub(super) fn seq_floor(&self) -> u64 {
        match self.role {
            Role::Poll(_) => RETRY_SEQ_BASE,
            _ => 1,
        }
    }

    /// Take the roles' state from the committed lanes.
    pub(super) fn open_role(&mut self, lanes: &[LaneState]) {
        let d = &mut self.dec;
        *d = Decoupled {
            held: lanes.iter().map(|l| l.lane).collect(),
            ..Decoupled::default()
        };
        for l in lanes {
            match &self.role {
                Role::Inline => {}
                Role::Submit(_) => {
                    if l.meta.get(END_AT) == Some(&l.watermark.to_string()) {
                        d.marked.insert(l.lane);
                    }
                }
                Role::Poll(_) => {
                    d.marks.insert(l.lane, l.watermark);
                    if l.meta.get(END_SEEN).is_some_and(|v| v == "1") {
                        d.end_seen.insert(l.lane);
                    }
                }
            }
        }
    }

    /// `None` for a call or row of a batch already handed off (the
    /// poller owns it now); a listing keeps the batches not handed off.
    pub(super) fn unless_handed(&self, action: Action) -> Option<Action> {
        if self.dec.handed.is_empty() {
            return Some(action);
        }
        let handed = |id: u64| self.dec.handed.contains(&id);
        match action {
            Action::Persist(ref b)
            | Action::Upload(ref b)
            | Action::Create(ref b)
            | Action::Find { batch: ref b, .. }
            | Action::Emit { batch: ref b, .. }
                if handed(b.id) =>
            {
                None
            }
            Action::Poll { id, .. } | Action::Cancel { id, .. } if handed(id) => None,
            Action::PollMany(list) => {
                let list: Vec<_> = list.into_iter().filter(|(id, _)| !handed(*id)).collect();
                (!list.is_empty()).then_some(Action::PollMany(list))
            }
            other => Some(other),
        }
    }

    /// Submitter: this row makes the batch the poller's (created, or
    /// given up before creation).
    pub(super) fn hands_off(&self, batch: &Batch) -> bool {
        matches!(self.role, Role::Submit(_))
            && (batch.remote_id.is_some() || batch.phase == Phase::Finished)
    }

    /// Submitter: the handoff line and the batch's tombstone into the
    /// turn, as one unit; the core forgets the batch once it is committed.
    pub(super) fn hand_off(&mut self, batch: Batch, turn: &mut Turn, now: Millis) {
        let Role::Submit(s) = &self.role else {
            unreachable!("only a submitter hands off")
        };
        let record = HandoffRecord::of(&batch, s, now);
        let line = HandoffLine::Batch(Box::new(record)).to_line();
        turn.outputs
            .push(Some(HandoffLine::key(batch.lane).as_bytes()), &line);
        tracing::debug!(batch = %batch.number, remote = ?batch.remote_id, "handing the batch off");
        self.dec.handed.insert(batch.id);
        self.after_commit.push(Event::Emitted {
            id: batch.id,
            retry: None,
        });
        let mut done = batch;
        done.phase = Phase::Emitted;
        turn.emitted.push((done, None));
        self.counts.batches_handed_off += 1;
        metrics::counter!("batch_handoffs_total").increment(1);
    }

    /// Submitter: an emitted (handed-off) batch's local files are gone;
    /// its remote files are the poller's.
    pub(super) fn forget_handed(&mut self, id: u64) -> bool {
        self.dec.handed.remove(&id) || matches!(self.role, Role::Submit(_))
    }

    pub(super) fn dec_handed(&self, id: u64) -> bool {
        self.dec.handed.contains(&id)
    }

    pub(super) fn lane_ended(&mut self, lane: LaneId) {
        self.dec.ended.insert(lane);
    }

    /// Submitter, file mode: the end marker of each lane whose input
    /// ended and whose batches are all handed off (their lines are in
    /// this turn or committed before it, so the marker comes after them).
    pub(super) fn end_markers(&mut self, turn: &mut Turn, now: Millis) {
        let Role::Submit(s) = &self.role else { return };
        if !s.end_marker {
            return;
        }
        for &lane in &self.dec.ended {
            if self.dec.marked.contains(&lane) {
                continue;
            }
            let done = self
                .core
                .batches()
                .filter(|b| b.lane == lane)
                .all(|b| self.dec.handed.contains(&b.id));
            if !done {
                continue;
            }
            let position = self.core.lane_watermark(lane).unwrap_or(0);
            let end = HandoffLine::End(EndOfHandoff {
                pipeline: s.pipeline.clone(),
                lane,
                position,
                at: now,
            });
            turn.outputs
                .push(Some(HandoffLine::key(lane).as_bytes()), &end.to_line());
            turn.meta.insert((lane, END_AT), position.to_string());
            self.dec.marked.insert(lane);
            tracing::info!(
                lane,
                position,
                "input done and handed off: end of handoff marked"
            );
        }
    }

    /// Poller: one handoff line: the batch it names is taken in (its row
    /// and the lane's new handoff watermark in one turn), or the lane's
    /// end is noted.
    pub(super) fn absorb(
        &mut self,
        r: Record<'_>,
        turn: &mut Turn,
        now: Millis,
    ) -> anyhow::Result<()> {
        let value = r.value.unwrap_or_default();
        let line = HandoffLine::parse(value).with_context(|| {
            format!(
                "handoff lane {} holds a line at position {} that is not a handoff record: {}",
                r.lane,
                r.pos,
                String::from_utf8_lossy(&value[..value.len().min(200)])
            )
        })?;
        match line {
            HandoffLine::End(_) => {
                self.dec.end_seen.insert(r.lane);
                turn.meta.insert((r.lane, END_SEEN), "1".into());
            }
            HandoffLine::Batch(h) => {
                if h.lane != r.lane {
                    bail!(
                        "handoff record of batch {} names input lane {} but came on handoff lane {}: \
                         the handoff topic must have the input topic's partitions, each batch on its lane's",
                        h.batch_number,
                        h.lane,
                        r.lane
                    );
                }
                let batch = h.to_batch();
                if self.core.contains(batch.id) {
                    bail!("batch {} (id {}) handed off twice", batch.number, batch.id);
                }
                if self.dec.end_seen.remove(&r.lane) {
                    turn.meta.insert((r.lane, END_SEEN), "0".into());
                }
                turn.batches.push(batch.clone());
                self.core.absorb(batch, now);
            }
        }
        self.dec.marks.insert(r.lane, r.next);
        turn.lanes.insert(r.lane, self.lane_mark(r.lane));
        metrics::gauge!("batch_handoff_lag").set(self.core.batches().count() as f64);
        Ok(())
    }

    /// A lane's progress as committed with an emission: the handoff
    /// watermark for a poller, the input's otherwise.
    pub(super) fn lane_mark(&self, lane: LaneId) -> LaneMark {
        let watermark = match self.role {
            Role::Poll(_) => self.dec.marks.get(&lane).copied(),
            _ => self.core.lane_watermark(lane),
        };
        LaneMark {
            watermark: watermark.unwrap_or(0),
            next_seq: self.core.lane_next_seq(lane).unwrap_or(1),
        }
    }

    /// Nothing in flight, nothing waiting, and the role's own end.
    pub(super) fn role_idle(&self) -> bool {
        match &self.role {
            Role::Inline => self.core.is_idle(),
            Role::Submit(s) => {
                self.core.is_idle()
                    && (!s.end_marker || self.dec.held.iter().all(|l| self.dec.marked.contains(l)))
            }
            Role::Poll(p) => {
                self.core.batches().next().is_none()
                    && (!p.wait_for_end
                        || self.dec.held.iter().all(|l| self.dec.end_seen.contains(l)))
            }
        }
    }
}
