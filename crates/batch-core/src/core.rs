//! The batch life cycle: events in, actions out.

use std::collections::BTreeMap;

use crate::backoff::backoff_ms;
use crate::batch::{Batch, BatchFailure, Phase, RemoteState};
use crate::budget::{is_capacity_code, out_of_time, Budget};
use crate::planner::{self, Lane, OpenRange, Plan, RecordCuts};
use crate::{batch_id, seq_of, CoreConfig, LaneId, Millis, Position};

/// How a provider call failed, in the core's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The provider did not act; repeat after a backoff.
    Transient,
    /// The provider may have acted (lost answer, timeout, 5xx).
    Ambiguous,
    /// Repeating the same call will not help.
    Permanent,
    /// The object is gone.
    NotFound,
    /// Credentials refused: nothing will work until the operator fixes them.
    Auth,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub retry_after_ms: Option<Millis>,
    pub code: String,
    pub message: String,
}

impl Failure {
    pub fn new(kind: FailureKind, code: &str, message: &str) -> Self {
        Self {
            kind,
            retry_after_ms: None,
            code: code.to_owned(),
            message: message.to_owned(),
        }
    }
}

/// A provider batch as the core needs to see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    pub id: String,
    /// `None` while validating / in progress / finalizing / cancelling.
    pub state: Option<RemoteState>,
    pub output_file: Option<String>,
    pub error_file: Option<String>,
    /// First batch-level error (for `Failed`).
    pub error: Option<BatchFailure>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Uploaded {
        id: u64,
        result: Result<Option<String>, Failure>,
    },
    Created {
        id: u64,
        result: Result<Remote, Failure>,
    },
    Found {
        id: u64,
        result: Result<Option<Remote>, Failure>,
    },
    Polled {
        id: u64,
        result: Result<Remote, Failure>,
    },
    CancelRequested {
        id: u64,
        result: Result<(), Failure>,
    },
    /// The emit step committed; `retry` is the retry batch it inserted.
    Emitted {
        id: u64,
        retry: Option<Batch>,
    },
    /// The emit step failed before committing (e.g. a download failed).
    EmitFailed {
        id: u64,
        failure: Failure,
    },
    EndOfInput {
        lane: LaneId,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Make this plan durable (see [`Plan`]).
    Cut(Plan),
    /// Store this batch row durably before executing the next action.
    Persist(Batch),
    /// Upload the batch file (rebuilding it from the source if it is gone).
    Upload(Batch),
    /// Create the provider batch for `batch.attempt`.
    Create(Batch),
    /// Look for a provider batch carrying this batch's number and attempt,
    /// created at or after `not_before`.
    Find {
        batch: Batch,
        not_before: Millis,
    },
    Poll {
        id: u64,
        remote_id: String,
    },
    /// Poll several batches with one listing; the shell answers each with
    /// [`Event::Polled`] (falling back to single polls for any it did not
    /// find).
    PollMany(Vec<(u64, String)>),
    Cancel {
        id: u64,
        remote_id: String,
    },
    /// Download, join, append, sync, then commit `Emitted` (and the retry
    /// batch `retry_id`/`retry_number`, if any member is to be retried) in
    /// one transaction. `budget` decides each member's fate
    /// ([`Budget::disposition`]).
    Emit {
        batch: Batch,
        budget: Budget,
        retry_id: u64,
        retry_number: String,
    },
    /// Delete the local files of an emitted batch (and its remote files if
    /// so configured).
    Cleanup(Batch),
    /// Something an operator must see.
    Warn(String),
    /// Stop the pipeline: nothing will work until an operator acts.
    Fatal(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Upload,
    Create,
    Find,
    Poll,
    Cancel,
    Emit,
}

#[derive(Debug, Clone)]
struct Run {
    batch: Batch,
    started: bool,
    busy: bool,
    step: Step,
    wake_at: Millis,
    /// Consecutive failed calls, for backoff.
    call_failures: u32,
    /// Whole-batch failures (provider failed the batch, permanent errors).
    batch_failures: u32,
    quota_failures: u32,
    cancel_sent: bool,
    /// `batch.first_submitted_at` is in the durable row.
    first_durable: bool,
}

impl Run {
    fn new(batch: Batch, step: Step, now: Millis) -> Self {
        let started = batch.phase != Phase::Planned;
        Self {
            started,
            busy: false,
            step,
            wake_at: now,
            call_failures: 0,
            batch_failures: 0,
            quota_failures: 0,
            cancel_sent: false,
            first_durable: batch.first_submitted_at.is_some(),
            batch,
        }
    }
}

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
}

/// How far back adoption looks before the plan time, for clock skew.
const FIND_SKEW_MS: Millis = 10 * 60 * 1000;

impl Core {
    pub fn new(cfg: CoreConfig) -> Self {
        Self {
            cfg,
            lanes: BTreeMap::new(),
            runs: BTreeMap::new(),
            started: 0,
            fatal: false,
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
        bytes: u64,
        dead: bool,
        now: Millis,
    ) -> RecordCuts {
        let mut cuts = RecordCuts::default();
        let cfg = &self.cfg;
        let lane = self
            .lanes
            .entry(lane_id)
            .or_insert_with(|| Lane::new(position, 1));
        if let Some(open) = &lane.open {
            if !dead && open.records > 0 && open.bytes + bytes > cfg.max_bytes {
                cuts.before = planner::cut(&cfg.prefix, lane_id, lane, now);
            }
        }
        let open = lane.open.get_or_insert(OpenRange {
            first: position,
            end: position,
            records: 0,
            dead: 0,
            bytes: 0,
            since: now,
        });
        open.end = next;
        if dead {
            open.dead += 1;
        } else {
            open.records += 1;
            open.bytes += bytes;
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
            .then(|| self.runs.values().find(|r| !r.started).map(|r| r.wake_at))
            .flatten();
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
        let (mut due_polls, mut waiting_polls) = (Vec::new(), Vec::new());
        for run in self.runs.values_mut() {
            if !run.started {
                if inflight >= self.cfg.max_inflight as usize {
                    continue;
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

fn event_batch(event: &Event) -> u64 {
    match event {
        Event::Uploaded { id, .. }
        | Event::Created { id, .. }
        | Event::Found { id, .. }
        | Event::Polled { id, .. }
        | Event::CancelRequested { id, .. }
        | Event::Emitted { id, .. }
        | Event::EmitFailed { id, .. } => *id,
        Event::EndOfInput { .. } => u64::MAX,
    }
}

fn step_action(cfg: &CoreConfig, run: &Run, lane: Option<&mut Lane>, now: Millis) -> Action {
    let batch = &run.batch;
    match run.step {
        Step::Upload => Action::Upload(batch.clone()),
        Step::Create => Action::Create(batch.clone()),
        Step::Find => Action::Find {
            batch: batch.clone(),
            not_before: batch.planned_at.saturating_sub(FIND_SKEW_MS),
        },
        Step::Poll => Action::Poll {
            id: batch.id,
            remote_id: batch.remote_id.clone().unwrap_or_default(),
        },
        Step::Cancel => Action::Cancel {
            id: batch.id,
            remote_id: batch.remote_id.clone().unwrap_or_default(),
        },
        Step::Emit => {
            // A lane always exists for a batch's lane; the fallback only
            // keeps this total.
            let retry_id = match lane {
                Some(l) => {
                    l.next_seq += 1;
                    batch_id(batch.lane, l.next_seq - 1)
                }
                None => batch_id(batch.lane, seq_of(batch.id) + (1 << 20)),
            };
            let base = batch
                .number
                .rsplit_once("-r")
                .map_or(batch.number.as_str(), |(b, g)| {
                    if g.parse::<u32>().is_ok() {
                        b
                    } else {
                        &batch.number
                    }
                });
            Action::Emit {
                batch: batch.clone(),
                budget: Budget {
                    retries_spent: batch.fault_retries >= cfg.max_retries,
                    out_of_time: out_of_time(cfg, batch, now),
                    completed: batch.remote_state == Some(RemoteState::Completed),
                },
                retry_id,
                retry_number: format!("{base}-r{}", batch.generation + 1),
            }
        }
    }
}

fn schedule(run: &mut Run, step: Step, at: Millis) {
    run.step = step;
    run.wake_at = at;
}

fn retry_later(cfg: &CoreConfig, run: &mut Run, step: Step, f: &Failure, now: Millis) {
    let wait = backoff_ms(
        cfg.backoff_base_ms,
        cfg.backoff_cap_ms,
        run.call_failures,
        run.batch.id,
    );
    run.call_failures += 1;
    schedule(run, step, now + wait.max(f.retry_after_ms.unwrap_or(0)));
}

/// Poll interval that stretches for long-running batches: a tenth of the
/// batch's age, between `poll.interval` and `poll.max-interval`.
fn poll_interval(cfg: &CoreConfig, run: &Run, now: Millis) -> Millis {
    let age = now.saturating_sub(run.batch.submitted_at.unwrap_or(now));
    (age / 10).clamp(
        cfg.poll_interval_ms,
        cfg.poll_max_interval_ms.max(cfg.poll_interval_ms),
    )
}

fn on_remote(cfg: &CoreConfig, run: &mut Run, remote: Remote, now: Millis, out: &mut Vec<Action>) {
    match remote.state {
        None => {
            let age = now.saturating_sub(run.batch.submitted_at.unwrap_or(now));
            if age > cfg.job_timeout_ms && !run.cancel_sent {
                out.push(Action::Warn(format!(
                    "batch {} ({}) ran past ml.batch.job.timeout; cancelling it",
                    run.batch.number, remote.id
                )));
                schedule(run, Step::Cancel, now);
            } else {
                schedule(run, Step::Poll, now + poll_interval(cfg, run, now));
            }
        }
        Some(RemoteState::Failed) => {
            let error = remote.error.unwrap_or(BatchFailure {
                code: "batch_failed".into(),
                message: "the provider failed the batch without saying why".into(),
            });
            let quota = is_quota_error(&error.code);
            if quota {
                run.quota_failures += 1;
            } else {
                run.batch_failures += 1;
                out.push(Action::Warn(format!(
                    "provider rejected batch {} ({}): {}: {}; this means mlpredict wrote a bad batch file or the provider changed its rules",
                    run.batch.number, remote.id, error.code, error.message
                )));
            }
            // Quota is the provider's capacity: it never uses up
            // max.retries, only the retry deadline.
            let give_up = if quota {
                out_of_time(cfg, &run.batch, now).map(|note| BatchFailure {
                    message: format!("{}; {note}", error.message),
                    code: error.code.clone(),
                })
            } else {
                (run.batch_failures > cfg.max_retries).then(|| error.clone())
            };
            if let Some(error) = give_up {
                finish(run, RemoteState::Failed, None, None, Some(error), now, out);
            } else {
                run.batch.attempt += 1;
                run.batch.phase = Phase::Uploaded;
                run.batch.remote_id = None;
                run.batch.submitted_at = None;
                persist(run, out);
                let n = run.quota_failures + run.batch_failures;
                let base = cfg.backoff_base_ms.max(cfg.poll_interval_ms);
                let cap = cfg.backoff_cap_ms.max(cfg.poll_max_interval_ms);
                let wait = backoff_ms(base, cap, n, run.batch.id);
                // A fresh attempt is created only after looking for it, in
                // case the previous create of this attempt got through.
                schedule(run, Step::Find, now + wait);
            }
        }
        Some(state) => finish(
            run,
            state,
            remote.output_file,
            remote.error_file,
            None,
            now,
            out,
        ),
    }
}

fn finish(
    run: &mut Run,
    state: RemoteState,
    output_file: Option<String>,
    error_file: Option<String>,
    failure: Option<BatchFailure>,
    now: Millis,
    out: &mut Vec<Action>,
) {
    run.batch.phase = Phase::Finished;
    run.batch.remote_state = Some(state);
    run.batch.output_file = output_file;
    run.batch.error_file = error_file;
    run.batch.failure = failure;
    persist(run, out);
    schedule(run, Step::Emit, now);
}

fn is_quota_error(code: &str) -> bool {
    is_capacity_code(code)
}

fn persist(run: &mut Run, out: &mut Vec<Action>) {
    run.first_durable = run.batch.first_submitted_at.is_some();
    out.push(Action::Persist(run.batch.clone()));
}

fn on_failure(
    cfg: &CoreConfig,
    run: &mut Run,
    step: Step,
    f: Failure,
    now: Millis,
    out: &mut Vec<Action>,
) {
    match f.kind {
        FailureKind::Auth => {
            out.push(Action::Fatal(format!(
                "the provider refused our credentials ({}: {}); check model.api-key",
                f.code, f.message
            )));
        }
        FailureKind::Ambiguous if step == Step::Create => {
            // The create may have gone through: find it before paying twice.
            retry_later(cfg, run, Step::Find, &f, now);
        }
        // Nothing runs at the provider for these records: past the retry
        // deadline they are given up. (A submitted batch is polled on: its
        // job timeout ends it, and its results may be paid for already.)
        FailureKind::Transient | FailureKind::Ambiguous
            if matches!(step, Step::Upload | Step::Create | Step::Find)
                && out_of_time(cfg, &run.batch, now).is_some() =>
        {
            let note = out_of_time(cfg, &run.batch, now).unwrap_or_default();
            let failure = BatchFailure {
                message: format!(
                    "{}; {note}, the last {} calls failing",
                    f.message,
                    run.call_failures + 1
                ),
                code: f.code.clone(),
            };
            let warning = format!(
                "giving up on batch {}: {}: {}",
                run.batch.number, failure.code, failure.message
            );
            give_up(run, failure, warning, now, out);
        }
        FailureKind::Transient | FailureKind::Ambiguous => {
            if !run.first_durable && run.batch.first_submitted_at.is_some() {
                // The deadline's start must survive a crash even while
                // nothing gets through.
                persist(run, out);
            }
            retry_later(cfg, run, step, &f, now)
        }
        FailureKind::NotFound if step == Step::Find => {
            // Listing is unavailable (e.g. a generic server without the jobs
            // extension): nothing to adopt.
            out.push(Action::Warn(format!(
                "cannot look up batch {} at the provider ({}); creating it again",
                run.batch.number, f.message
            )));
            schedule(run, Step::Create, now);
        }
        FailureKind::NotFound | FailureKind::Permanent => {
            run.batch_failures += 1;
            if run.batch_failures > cfg.max_retries {
                let failure = BatchFailure {
                    code: f.code.clone(),
                    message: f.message.clone(),
                };
                let warning = format!(
                    "giving up on batch {} after {} failures: {}: {}",
                    run.batch.number, run.batch_failures, f.code, f.message
                );
                give_up(run, failure, warning, now, out);
                return;
            }
            out.push(Action::Warn(format!(
                "batch {}: {} failed: {}: {}; starting a new attempt",
                run.batch.number,
                step_name(step),
                f.code,
                f.message
            )));
            // The provider lost or refused our file or batch: start over
            // with a fresh upload and a new attempt number.
            run.batch.attempt += 1;
            run.batch.phase = Phase::Planned;
            run.batch.file_id = None;
            run.batch.remote_id = None;
            run.batch.submitted_at = None;
            persist(run, out);
            retry_later(cfg, run, Step::Upload, &f, now);
        }
    }
}

/// The batch fails as a whole: every member is emitted with `failure`.
fn give_up(
    run: &mut Run,
    failure: BatchFailure,
    warning: String,
    now: Millis,
    out: &mut Vec<Action>,
) {
    out.push(Action::Warn(warning));
    finish(
        run,
        RemoteState::Failed,
        None,
        None,
        Some(failure),
        now,
        out,
    );
}

fn step_name(step: Step) -> &'static str {
    match step {
        Step::Upload => "upload",
        Step::Create => "create",
        Step::Find => "lookup",
        Step::Poll => "poll",
        Step::Cancel => "cancel",
        Step::Emit => "emit",
    }
}
