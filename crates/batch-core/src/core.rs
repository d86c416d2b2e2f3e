//! The batch life cycle: events in, actions out.

use std::collections::BTreeMap;

use crate::batch::{Batch, Phase};
use crate::events::{Action, Event, FailureKind};
use crate::gate::{self, Gate, Held};
use crate::lifecycle::{
    event_batch, on_failure, on_remote, persist, retry_later, schedule, step_action, Run, Step,
};
use crate::planner::{self, Lane, OpenRange, RecordCuts};
use crate::{seq_of, CoreConfig, LaneId, Millis, NanoUsd, Position, RequestSize};

/// Where a lane starts after a restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneStart {
    pub lane: LaneId,
    pub watermark: Position,
    /// Sequence number of the lane's next batch (see [`batch_id`]).
    pub next_seq: u64,
}

/// The state machine. One per pipeline instance.
#[derive(Debug)]
pub struct Core {
    cfg: CoreConfig,
    lanes: BTreeMap<LaneId, Lane>,
    runs: BTreeMap<u64, Run>,
    /// Runs with `started` set: kept as a count because the source asks
    /// [`Core::wants_records`] for every record it reads.
    started: usize,
    fatal: bool,
    /// Real cost of the batches emitted so far, as the shell keeps it
    /// durably ([`Core::set_spent`]).
    spent: NanoUsd,
}

impl Core {
    pub fn new(cfg: CoreConfig) -> Self {
        Self {
            cfg,
            lanes: BTreeMap::new(),
            runs: BTreeMap::new(),
            started: 0,
            fatal: false,
            spent: 0,
        }
    }

    /// Rebuild the core from durable state after a start or a crash:
    /// the lanes with their watermarks and next batch sequence numbers, and
    /// the batches not yet emitted.
    pub fn restore(cfg: CoreConfig, lanes: &[LaneStart], batches: Vec<Batch>, now: Millis) -> Self {
        let mut core = Self::new(cfg);
        for l in lanes {
            core.open_lane(l.lane, l.watermark, l.next_seq);
        }
        for batch in batches {
            core.add_batch(batch, now);
        }
        core
    }

    /// Take over a lane (a Kafka partition assigned to this instance) with
    /// its durable state.
    pub fn adopt_lane(&mut self, lane: LaneStart, batches: Vec<Batch>, now: Millis) {
        self.drop_lane(lane.lane);
        self.open_lane(lane.lane, lane.watermark, lane.next_seq);
        for batch in batches {
            self.add_batch(batch, now);
        }
    }

    /// Forget a lane (revoked): its batches are resumed by the new owner.
    pub fn drop_lane(&mut self, lane: LaneId) {
        self.lanes.remove(&lane);
        self.runs.retain(|_, r| r.batch.lane != lane);
        self.started = self.runs.values().filter(|r| r.started).count();
    }

    /// Take in a batch another instance started (decoupled mode: a
    /// poller absorbing a batch the submitter handed off), resumed from its
    /// phase as after a restore. Its lane must be open.
    pub fn absorb(&mut self, batch: Batch, now: Millis) {
        self.add_batch(batch, now);
    }

    /// Whether a batch of this id is open (not yet emitted).
    pub fn contains(&self, id: u64) -> bool {
        self.runs.contains_key(&id)
    }

    fn add_batch(&mut self, batch: Batch, now: Millis) {
        let lane = self
            .lanes
            .entry(batch.lane)
            .or_insert_with(|| Lane::new(batch.first, 1));
        lane.next_seq = lane.next_seq.max(seq_of(batch.id) + 1);
        let step = match batch.phase {
            Phase::Planned => Step::Upload,
            // The create call may have been made: look before creating.
            Phase::Uploaded => Step::Find,
            Phase::Submitted => Step::Poll,
            Phase::Finished => Step::Emit,
            Phase::Emitted => return,
        };
        let mut batch = batch;
        if batch.phase != Phase::Planned && batch.first_submitted_at.is_none() {
            // State written before the field existed.
            batch.first_submitted_at = Some(batch.tried_since());
        }
        let run = Run::new(batch, step, now);
        self.started += usize::from(run.started);
        if let Some(old) = self.runs.insert(run.batch.id, run) {
            self.started -= usize::from(old.started);
        }
    }

    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    /// The real cost of everything emitted so far (durable in the shell's
    /// state): at a start, and after each emission's commit.
    pub fn set_spent(&mut self, spent: NanoUsd) {
        self.spent = spent;
    }

    pub fn spent(&self) -> NanoUsd {
        self.spent
    }

    /// The gate's figures and why the next batch waits, if it does.
    pub fn gate(&self) -> Gate {
        let held = Held::of(self.runs.values());
        let waiting = self
            .next_to_start()
            .and_then(|r| gate::may_start(&self.cfg, r, held, self.spent).err());
        Gate {
            enqueued_tokens: held.tokens,
            token_limit: self.cfg.max_enqueued_tokens,
            spent: self.spent,
            committed: self.spent.saturating_add(held.cost),
            budget: self.cfg.budget,
            waiting,
        }
    }

    /// The batch that starts next, once the in-flight limit allows.
    fn next_to_start(&self) -> Option<&crate::lifecycle::Run> {
        self.runs.values().find(|r| !r.started)
    }

    /// Register a lane at its durable watermark (where the source resumes).
    pub fn open_lane(&mut self, lane: LaneId, watermark: Position, next_seq: u64) {
        let l = self
            .lanes
            .entry(lane)
            .or_insert_with(|| Lane::new(watermark, next_seq));
        l.next_seq = l.next_seq.max(next_seq);
    }

    /// The next batch sequence number of a lane (persisted with the lane).
    pub fn lane_next_seq(&self, lane: LaneId) -> Option<u64> {
        self.lanes.get(&lane).map(|l| l.next_seq)
    }

    pub fn lane_watermark(&self, lane: LaneId) -> Option<Position> {
        self.lanes.get(&lane).map(|l| l.watermark)
    }

    /// Batches not yet emitted, in id order.
    pub fn batches(&self) -> impl Iterator<Item = &Batch> {
        self.runs.values().map(|r| &r.batch)
    }

    /// Batches handed to the provider and not yet emitted.
    pub fn inflight(&self) -> usize {
        debug_assert_eq!(
            self.started,
            self.runs.values().filter(|r| r.started).count()
        );
        self.started
    }

    /// Batches the provider holds (uploaded, created or finished, not yet
    /// emitted): what a progress line may call "in flight" — a batch whose
    /// upload keeps failing is started but not there.
    pub fn at_provider(&self) -> usize {
        self.runs
            .values()
            .filter(|r| r.batch.phase != Phase::Planned)
            .count()
    }

    /// Batches cut but not yet started: the source should pause while this
    /// is at the in-flight limit, so that planning cannot run far ahead.
    pub fn queued(&self) -> usize {
        self.runs.len() - self.inflight()
    }

    /// Whether the source may read more: keeps at most one in-flight limit's
    /// worth of planned batches waiting.
    pub fn wants_records(&self) -> bool {
        !self.fatal && self.queued() < self.cfg.max_inflight as usize
    }

    /// Every lane ended, nothing buffered, nothing in flight.
    pub fn is_idle(&self) -> bool {
        self.runs.is_empty() && self.lanes.values().all(|l| l.eof && l.open.is_none())
    }

    /// A record at `position` (the next one starts at `next`) is about to be
    /// appended to its lane's open batch. `bytes` is the size of its request
    /// line; `dead` marks a record that goes to the dead-letter output.
    pub fn on_record(
        &mut self,
        lane_id: LaneId,
        position: Position,
        next: Position,
        size: RequestSize,
        dead: bool,
        now: Millis,
    ) -> RecordCuts {
        let mut cuts = RecordCuts::default();
        let cfg = &self.cfg;
        let runs = &self.runs;
        let lane = self
            .lanes
            .entry(lane_id)
            .or_insert_with(|| Lane::new(position, 1));
        if let Some(open) = &lane.open {
            let full = || {
                open.bytes + size.bytes > cfg.max_bytes
                    || cfg.max_enqueued_tokens.is_some_and(|limit| {
                        over_tokens(limit, open.tokens, size.tokens, || {
                            planner::token_headroom(limit, runs.values())
                        })
                    })
            };
            if !dead && open.records > 0 && full() {
                cuts.before = planner::cut(&cfg.prefix, lane_id, lane, now);
            }
        }
        let open = lane.open.get_or_insert(OpenRange {
            first: position,
            end: position,
            records: 0,
            dead: 0,
            bytes: 0,
            tokens: 0,
            cost: 0,
            since: now,
        });
        open.end = next;
        if dead {
            open.dead += 1;
        } else {
            open.records += 1;
            open.bytes += size.bytes;
            open.tokens += size.tokens;
            open.cost += size.cost;
        }
        if open.records >= cfg.batch_size || open.dead >= cfg.batch_size {
            cuts.after = planner::cut(&cfg.prefix, lane_id, lane, now);
        }
        for plan in [&cuts.before, &cuts.after].into_iter().flatten() {
            if let Some(batch) = &plan.batch {
                self.runs
                    .insert(batch.id, Run::new(batch.clone(), Step::Upload, now));
            }
        }
        cuts
    }

    /// The earliest time at which [`Core::tick`] has something to do.
    pub fn next_wake(&self) -> Option<Millis> {
        let lanes = self
            .lanes
            .values()
            .filter_map(|l| l.open.as_ref().map(|o| o.since + self.cfg.max_wait_ms));
        let runs = self
            .runs
            .values()
            .filter(|r| r.started && !r.busy)
            .map(|r| r.wake_at);
        let start = (self.inflight() < self.cfg.max_inflight as usize)
            .then(|| self.next_to_start())
            .flatten()
            .filter(|r| {
                !gate::gated(&self.cfg)
                    || gate::may_start(&self.cfg, r, Held::of(self.runs.values()), self.spent)
                        .is_ok()
            })
            .map(|r| r.wake_at);
        lanes.chain(runs).chain(start).min()
    }

    /// Fire what is due: cuts by age, batch starts within the in-flight
    /// limit, and every batch step whose time has come.
    pub fn tick(&mut self, now: Millis, out: &mut Vec<Action>) {
        if self.fatal {
            return;
        }
        let lane_ids: Vec<LaneId> = self
            .lanes
            .iter()
            .filter(|(_, l)| {
                l.open
                    .as_ref()
                    .is_some_and(|o| o.since + self.cfg.max_wait_ms <= now)
            })
            .map(|(&id, _)| id)
            .collect();
        for lane in lane_ids {
            self.cut_lane(lane, now, out);
        }
        let mut inflight = self.inflight();
        let gated = gate::gated(&self.cfg);
        let mut held = if gated {
            Held::of(self.runs.values())
        } else {
            Held::default()
        };
        // Batches start in id order: once one must wait, so do the rest.
        let mut blocked = false;
        let (mut due_polls, mut waiting_polls) = (Vec::new(), Vec::new());
        for run in self.runs.values_mut() {
            if !run.started {
                if blocked || inflight >= self.cfg.max_inflight as usize {
                    continue;
                }
                if gated {
                    if gate::may_start(&self.cfg, run, held, self.spent).is_err() {
                        blocked = true;
                        continue;
                    }
                    held.add(run);
                }
                run.started = true;
                self.started += 1;
                inflight += 1;
            }
            if run.busy {
                continue;
            }
            if run.step == Step::Poll {
                let remote = run.batch.remote_id.clone().unwrap_or_default();
                if run.wake_at <= now {
                    due_polls.push((run.batch.id, remote));
                } else {
                    waiting_polls.push((run.batch.id, remote));
                }
                continue;
            }
            if run.wake_at > now {
                continue;
            }
            run.busy = true;
            if run.step == Step::Upload && run.batch.first_submitted_at.is_none() {
                // Durable with the next row of this batch (its upload's).
                run.batch.first_submitted_at = Some(now);
            }
            let lane = self.lanes.get_mut(&run.batch.lane);
            out.push(step_action(&self.cfg, run, lane, now));
        }
        if due_polls.is_empty() {
            return;
        }
        // One listing answers for every batch waiting to be polled: when
        // one is due and enough are waiting, poll them all at once.
        let min = self.cfg.list_poll_min;
        if min > 0 && due_polls.len() + waiting_polls.len() >= min {
            due_polls.append(&mut waiting_polls);
            for (id, _) in &due_polls {
                self.runs.get_mut(id).expect("run").busy = true;
            }
            out.push(Action::PollMany(due_polls));
        } else {
            for (id, remote_id) in due_polls {
                self.runs.get_mut(&id).expect("run").busy = true;
                out.push(Action::Poll { id, remote_id });
            }
        }
    }

    fn cut_lane(&mut self, lane_id: LaneId, now: Millis, out: &mut Vec<Action>) {
        let Some(lane) = self.lanes.get_mut(&lane_id) else {
            return;
        };
        if let Some(plan) = planner::cut(&self.cfg.prefix, lane_id, lane, now) {
            if let Some(batch) = &plan.batch {
                self.runs
                    .insert(batch.id, Run::new(batch.clone(), Step::Upload, now));
            }
            out.push(Action::Cut(plan));
        }
    }

    /// Feed the outcome of an action back.
    pub fn handle(&mut self, event: Event, now: Millis, out: &mut Vec<Action>) {
        if let Event::EndOfInput { lane } = event {
            self.cut_lane(lane, now, out);
            self.lanes
                .entry(lane)
                .or_insert_with(|| Lane::new(0, 1))
                .eof = true;
            return;
        }
        let id = event_batch(&event);
        let Some(run) = self.runs.get_mut(&id) else {
            return;
        };
        run.busy = false;
        let cfg = &self.cfg;
        match event {
            Event::Uploaded {
                result: Ok(file_id),
                ..
            } => {
                run.call_failures = 0;
                run.batch.file_id = file_id;
                run.batch.phase = Phase::Uploaded;
                persist(run, out);
                schedule(run, Step::Create, now);
            }
            Event::Created {
                result: Ok(remote), ..
            }
            | Event::Found {
                result: Ok(Some(remote)),
                ..
            } => {
                run.call_failures = 0;
                run.batch.remote_id = Some(remote.id.clone());
                run.batch.phase = Phase::Submitted;
                run.batch.submitted_at = Some(now);
                run.batch.submissions += 1;
                persist(run, out);
                on_remote(cfg, run, remote, now, out);
            }
            Event::Found {
                result: Ok(None), ..
            } => {
                run.call_failures = 0;
                schedule(run, Step::Create, now);
            }
            Event::Polled {
                result: Ok(remote), ..
            } => {
                run.call_failures = 0;
                on_remote(cfg, run, remote, now, out);
            }
            Event::CancelRequested { result, .. } => {
                run.cancel_sent = true;
                match result {
                    Err(f) if matches!(f.kind, FailureKind::Transient | FailureKind::Ambiguous) => {
                        run.cancel_sent = false;
                        retry_later(cfg, run, Step::Cancel, &f, now);
                    }
                    _ => schedule(run, Step::Poll, now + cfg.poll_interval_ms),
                }
            }
            Event::Emitted { retry, .. } => {
                let done = self.runs.remove(&id).expect("run exists");
                self.started -= usize::from(done.started);
                out.push(Action::Cleanup(done.batch));
                if let Some(batch) = retry {
                    self.add_batch(batch, now);
                }
            }
            Event::EmitFailed { failure, .. } => retry_later(cfg, run, Step::Emit, &failure, now),
            Event::Uploaded { result: Err(f), .. } => {
                on_failure(cfg, run, Step::Upload, f, now, out)
            }
            Event::Created { result: Err(f), .. } => {
                on_failure(cfg, run, Step::Create, f, now, out)
            }
            Event::Found { result: Err(f), .. } => on_failure(cfg, run, Step::Find, f, now, out),
            Event::Polled { result: Err(f), .. } => on_failure(cfg, run, Step::Poll, f, now, out),
            Event::EndOfInput { .. } => unreachable!("handled above"),
        }
        if out.iter().any(|a| matches!(a, Action::Fatal(_))) {
            self.fatal = true;
        }
    }
}

/// Whether a request of `tokens` closes the open range before it: the
/// batch would pass the limit, or it fills the room the limit leaves
/// beside the batches held now (a batch cut smaller that can start at once,
/// rather than a larger one that waits). `headroom` is only computed when
/// the first test does not decide.
fn over_tokens(limit: u64, open: u64, tokens: u64, headroom: impl FnOnce() -> u64) -> bool {
    if open + tokens > limit {
        return true;
    }
    let room = headroom();
    open <= room && open + tokens > room
}
