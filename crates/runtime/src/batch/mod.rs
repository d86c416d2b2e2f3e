//! The batch operator: `batch-core`'s state machine with what turns its
//! actions into turn contents and provider calls. Request lines are
//! written as records arrive ([`spool`]), results joined with the records
//! read again by position ([`emit`]), and every call waits for the commit
//! of the turn it depends on.

pub mod calls;
mod decoupled;
pub mod emit;
pub mod handoff;
pub mod health;
pub mod local;
mod record_file;
pub mod requests;
pub mod spool;
pub mod tokens;
pub mod watch;

pub use decoupled::{PollSettings, Role};

use std::collections::{BTreeMap, BTreeSet};

use anyhow::bail;
use batch_api::wire::{RequestTemplate, Task, WireFormat};
use batch_core::{
    seq_of, Action, Batch, Budget, Core, CoreConfig, Event, LaneId, LaneStart, Millis, Phase, Plan,
    RemoteState, RequestSize,
};

use crate::ledger::{write_dead_letter, BatchRecords, LaneState, Record};
use crate::operator::Operator;
use crate::record::Fields;
use crate::{LaneMark, Lines, Summary, Turn};
use calls::{Caller, Msg};
use emit::{JoinInput, OutputShape};
use spool::Spool;

/// Meta key under which synchronous mode keeps the records it emitted
/// beyond a lane's watermark; batch mode refuses to start over them.
pub const SYNC_AHEAD: &str = "sync.ahead";
/// Meta key of a lane's spend in nano-USD (`ml.budget.max-usd`), committed
/// with each emission.
pub const SPEND: &str = "spend.nano_usd";

/// The parts of a pipeline's configuration the operator needs.
pub struct BatchSettings {
    pub core: CoreConfig,
    pub template: RequestTemplate,
    pub format: WireFormat,
    pub task: Task,
    pub input_field: String,
    pub output_field: String,
    pub cleanup_remote: bool,
    /// Scrubbed from per-request error messages before they are written.
    pub api_key: Option<batch_api::ApiKey>,
    /// Token estimates of requests (for the enqueued-token limit and the
    /// budget); `None` when neither is set.
    pub tokens: Option<requests::Tokens>,
}

pub struct BatchOperator {
    core: Core,
    template: RequestTemplate,
    format: WireFormat,
    task: Task,
    input_field: String,
    output_field: String,
    shape: OutputShape,
    cleanup_remote: bool,
    api_key: Option<batch_api::ApiKey>,
    /// Boxed: rarely set, and the operator is moved around whole.
    tokens: Option<Box<requests::Tokens>>,
    /// Why batches waited at the last tick (logged when it changes).
    waiting: Option<batch_core::Waiting>,
    /// Per lane: what its emitted batches cost, as committed.
    spend: BTreeMap<LaneId, batch_core::NanoUsd>,
    pub caller: Caller,
    spool: Spool,
    /// Per lane: dead letters read since its last cut; they become durable
    /// with the cut that covers them, never before (a restart reads them
    /// again from the watermark).
    dead: BTreeMap<LaneId, Lines>,
    /// Calls waiting for the commit of the turn they depend on.
    deferred: Vec<Action>,
    /// Events the core may only see once the turn is committed.
    after_commit: Vec<Event>,
    actions: Vec<Action>,
    custom_id: String,
    line: Vec<u8>,
    /// What it did, in the run summary's terms.
    counts: Summary,
    role: Role,
    dec: decoupled::Decoupled,
}

impl BatchOperator {
    pub fn new(settings: BatchSettings, caller: Caller, spool: Spool) -> Self {
        Self::with_role(settings, caller, spool, Role::Inline)
    }

    /// A submitter or a poller of decoupled mode (see [`Role`]).
    pub fn with_role(settings: BatchSettings, caller: Caller, spool: Spool, role: Role) -> Self {
        Self {
            core: Core::new(settings.core),
            shape: OutputShape::new(&settings.output_field),
            template: settings.template,
            format: settings.format,
            task: settings.task,
            input_field: settings.input_field,
            output_field: settings.output_field,
            cleanup_remote: settings.cleanup_remote,
            api_key: settings.api_key,
            tokens: settings.tokens.map(Box::new),
            waiting: None,
            spend: BTreeMap::new(),
            caller,
            spool,
            dead: BTreeMap::new(),
            deferred: Vec::new(),
            after_commit: Vec::new(),
            actions: Vec::new(),
            custom_id: String::new(),
            line: Vec::new(),
            counts: Summary::default(),
            role,
            dec: decoupled::Decoupled::default(),
        }
    }

    pub fn core(&self) -> &Core {
        &self.core
    }

    fn requests(&self) -> requests::Requests<'_> {
        requests::Requests {
            fields: Fields {
                input: &self.input_field,
                output: &self.output_field,
            },
            template: &self.template,
            max_bytes: self.core.config().max_bytes,
            tokens: self.tokens.as_deref(),
        }
    }

    /// Carry out the core's actions: state into the turn, calls now when
    /// the turn holds nothing they could depend on, else after its commit.
    fn execute(
        &mut self,
        turn: &mut Turn,
        records: &mut dyn BatchRecords,
        now: Millis,
    ) -> anyhow::Result<()> {
        while !self.actions.is_empty() {
            for action in std::mem::take(&mut self.actions) {
                let Some(action) = self.unless_handed(action) else {
                    continue;
                };
                match action {
                    Action::Cut(plan) => self.seal_cut(plan, turn)?,
                    Action::Persist(batch) if self.hands_off(&batch) => {
                        self.hand_off(batch, turn, now)
                    }
                    Action::Persist(batch) => turn.batches.push(batch),
                    Action::Warn(msg) => tracing::warn!("{msg}"),
                    Action::Fatal(msg) => bail!("{msg}"),
                    // Write-ahead: a call waits for the state it depends on.
                    other if !turn.is_empty() => self.deferred.push(other),
                    other => self.call(other, turn, records, now)?,
                }
            }
        }
        Ok(())
    }

    fn call(
        &mut self,
        action: Action,
        turn: &mut Turn,
        records: &mut dyn BatchRecords,
        now: Millis,
    ) -> anyhow::Result<()> {
        match action {
            Action::Upload(batch) => {
                let path = self.ensure_requests(&batch, records)?;
                let name = format!("{}-a{}.jsonl", batch.number, batch.attempt);
                self.caller.upload(batch.id, path, name);
            }
            Action::Create(batch) => {
                let path = self.ensure_requests(&batch, records)?;
                self.caller.create(batch, path);
            }
            Action::Find { batch, not_before } => self.caller.find(batch, not_before),
            Action::Poll { id, remote_id } => self.caller.poll(id, remote_id),
            Action::PollMany(batches) => self.caller.poll_many(batches),
            Action::Cancel { id, remote_id } => self.caller.cancel(id, remote_id),
            Action::Emit {
                batch,
                budget,
                retry_id,
                retry_number,
            } => {
                let targets = result_targets(&batch);
                if targets.is_empty() {
                    let emit = Emission {
                        batch,
                        budget,
                        retry_id,
                        retry_number,
                    };
                    self.emit(emit, &[], turn, records, now)?;
                } else {
                    self.caller
                        .download(batch, budget, retry_id, retry_number, targets);
                }
            }
            Action::Cleanup(batch) => {
                self.spool.local.remove_batch(batch.id);
                // A handed-off batch's remote files are the poller's.
                let handed = self.forget_handed(batch.id);
                if self.cleanup_remote && !handed {
                    self.caller.delete_files(remote_files(batch));
                }
            }
            Action::Cut(_) | Action::Persist(_) | Action::Warn(_) | Action::Fatal(_) => {
                unreachable!("handled in execute")
            }
        }
        Ok(())
    }

    fn ensure_requests(
        &self,
        batch: &Batch,
        records: &mut dyn BatchRecords,
    ) -> anyhow::Result<std::path::PathBuf> {
        let mut records = self.spool.records(records);
        requests::ensure_requests(&self.spool.local, &self.requests(), batch, &mut records)
    }

    /// A cut: the batch's files sealed; the batch, the lane's new
    /// watermark and the range's dead letters go into the turn.
    fn seal_cut(&mut self, plan: Plan, turn: &mut Turn) -> anyhow::Result<()> {
        self.spool.seal(plan.lane, plan.batch.as_ref())?;
        if let Some(dead) = self.dead.get_mut(&plan.lane) {
            let n = dead.len() as u64;
            self.counts.dead_letters += n;
            metrics::counter!("records_dead_lettered_total").increment(n);
            turn.dead_letters.append(dead);
        }
        turn.batches.extend(plan.batch);
        let next_seq = self.core.lane_next_seq(plan.lane).unwrap_or(1);
        turn.lanes.insert(
            plan.lane,
            LaneMark {
                watermark: plan.end,
                next_seq,
            },
        );
        Ok(())
    }

    /// Join a finished batch's results into the turn's outputs, with the
    /// batch `Emitted` and its retry batch; the core hears of it once the
    /// turn is committed.
    fn emit(
        &mut self,
        e: Emission,
        results: &[Vec<u8>],
        turn: &mut Turn,
        records: &mut dyn BatchRecords,
        now: Millis,
    ) -> anyhow::Result<()> {
        let requests = self.requests();
        let outputs = &mut turn.outputs;
        let joined = emit::join(
            &JoinInput {
                batch: &e.batch,
                budget: &e.budget,
                results,
                requests: &requests,
                format: self.format,
                task: self.task,
                shape: &self.shape,
                api_key: self.api_key.as_ref(),
            },
            &mut self.spool.records(records),
            &mut |key, line| outputs.push(key, line),
        )?;
        let retry = e.batch.retry_of(
            &joined.retry,
            joined.charged,
            e.retry_id,
            e.retry_number,
            now,
        );
        let lane = e.batch.lane;
        if let Some(r) = &retry {
            self.spool.keep_for_retry(&e.batch, r)?;
            // The retry batch took a sequence number of the lane.
            turn.lanes.insert(lane, self.lane_mark(lane));
        }
        self.note_emission(&e.batch, &joined, now);
        if let Some(price) = self.tokens.as_ref().and_then(|t| t.price) {
            let spent = self.spend.entry(lane).or_default();
            *spent += price.at_most(joined.counts.tokens);
            turn.meta.insert((lane, SPEND), spent.to_string());
        }
        let mut done = e.batch;
        done.phase = Phase::Emitted;
        self.after_commit.push(Event::Emitted {
            id: done.id,
            retry: retry.clone(),
        });
        turn.emitted.push((done, retry));
        Ok(())
    }

    /// Counters and metrics of one emission.
    fn note_emission(&mut self, batch: &Batch, joined: &emit::Joined, now: Millis) {
        let c = joined.counts;
        self.counts.ok += c.ok;
        self.counts.errors += c.errors;
        self.counts.tokens += c.tokens;
        self.counts.retried += joined.retry.len() as u64;
        self.counts.batches_emitted += 1;
        metrics::counter!("records_out_total", "status" => "ok").increment(c.ok);
        metrics::counter!("records_out_total", "status" => "error").increment(c.errors);
        metrics::counter!("tokens_total").increment(c.tokens);
        metrics::histogram!("batch_records_per_job").record(f64::from(batch.records));
        if batch.remote_state == Some(RemoteState::Completed) && batch.failure.is_none() {
            metrics::counter!("batch_jobs_completed_total").increment(1);
        } else {
            metrics::counter!("batch_jobs_failed_total").increment(1);
        }
        if let Some(at) = batch.submitted_at {
            metrics::histogram!("batch_job_latency_ms").record(now.saturating_sub(at) as f64);
        }
        if c.malformed_results > 0 {
            tracing::warn!(batch = %batch.number, lines = c.malformed_results, "result lines that could not be read; their records are retried");
        }
        if !joined.retry.is_empty() {
            tracing::info!(batch = %batch.number, records = joined.retry.len(), "retrying failed requests in a new batch");
        }
    }

    /// Gauges of the gate, and a line when batches start or stop waiting.
    fn note_gate(&mut self) {
        let cfg = self.core.config();
        if cfg.max_enqueued_tokens.is_none() && cfg.budget.is_none() {
            return;
        }
        let gate = self.core.gate();
        metrics::gauge!("batch_enqueued_tokens").set(gate.enqueued_tokens as f64);
        if let Some(budget) = gate.budget {
            let left = budget.saturating_sub(gate.committed) as f64 / 1e9;
            metrics::gauge!("budget_remaining_usd").set(left);
            let out = matches!(
                gate.waiting,
                Some(batch_core::Waiting::Budget {
                    exhausted: true,
                    ..
                })
            );
            metrics::gauge!("budget_exhausted").set(if out { 1.0 } else { 0.0 });
        }
        if gate.waiting == self.waiting {
            return;
        }
        self.waiting = gate.waiting;
        match gate.waiting {
            Some(batch_core::Waiting::Tokens { next }) => tracing::info!(
                enqueued = gate.enqueued_tokens,
                limit = gate.token_limit.unwrap_or(0),
                next,
                "the next batch waits for room under ml.batch.max.enqueued-tokens"
            ),
            Some(batch_core::Waiting::Budget {
                exhausted: false, ..
            }) => tracing::debug!(
                committed_usd = gate.committed as f64 / 1e9,
                "the next batch waits for batches in flight to be emitted at their cost (ml.budget.max-usd)"
            ),
            Some(batch_core::Waiting::Budget { next, .. }) => tracing::warn!(
                spent_usd = gate.spent as f64 / 1e9,
                committed_usd = gate.committed as f64 / 1e9,
                budget_usd = gate.budget.unwrap_or(0) as f64 / 1e9,
                next_batch_usd = next as f64 / 1e9,
                "budget reached (ml.budget.max-usd): batches in flight finish, no new batch is submitted and no record is read; raise the budget and restart to go on"
            ),
            None => tracing::debug!("batches start again"),
        }
    }

    fn cancel_inflight(&self) {
        let submitted: Vec<(String, String)> = self
            .core
            .batches()
            .filter(|b| b.phase == Phase::Submitted)
            // A handed-off batch is the poller's.
            .filter(|b| !self.dec_handed(b.id))
            .filter_map(|b| b.remote_id.clone().map(|r| (b.number.clone(), r)))
            .collect();
        for (number, remote_id) in submitted {
            match self.caller.cancel_now(&remote_id) {
                Ok(()) => tracing::info!(batch = %number, "cancel requested"),
                Err(e) => tracing::warn!(batch = %number, error = %e, "cancel failed"),
            }
        }
    }
}

struct Emission {
    batch: Batch,
    budget: Budget,
    retry_id: u64,
    retry_number: String,
}

impl Operator for BatchOperator {
    type Answer = Msg;

    fn open(&mut self, lanes: Vec<LaneState>, epoch: u64, now: Millis) -> anyhow::Result<()> {
        let mut starts = Vec::with_capacity(lanes.len());
        let mut open = Vec::new();
        self.spend.clear();
        self.open_role(&lanes);
        let floor = self.seq_floor();
        for lane in lanes {
            refuse_records_ahead(&lane)?;
            if let Some(spent) = lane.meta.get(SPEND).and_then(|s| s.parse().ok()) {
                self.spend.insert(lane.lane, spent);
            }
            let next_seq = lane
                .batches
                .iter()
                .map(|b| seq_of(b.id) + 1)
                .max()
                .unwrap_or(1)
                .max(lane.next_seq)
                .max(floor);
            starts.push(LaneStart {
                lane: lane.lane,
                watermark: lane.watermark,
                next_seq,
            });
            open.extend(
                lane.batches
                    .into_iter()
                    .filter(|b| b.phase != Phase::Emitted),
            );
        }
        if !open.is_empty() {
            tracing::info!(
                batches = open.len(),
                "resuming batches from the committed state"
            );
        }
        let ids: BTreeSet<u64> = open.iter().map(|b| b.id).collect();
        self.spool.reset(&ids)?;
        self.dead.clear();
        self.deferred.clear();
        self.after_commit.clear();
        self.actions.clear();
        self.caller.epoch = epoch;
        let cfg = self.core.config().clone();
        self.core = Core::restore(cfg, &starts, open, now);
        self.core.set_spent(self.spend.values().sum());
        self.waiting = None;
        Ok(())
    }

    fn wants_records(&self) -> bool {
        // Out of budget: nothing is read until a restart with a larger one.
        self.core.wants_records()
            && !matches!(
                self.waiting,
                Some(batch_core::Waiting::Budget {
                    exhausted: true,
                    ..
                })
            )
    }

    fn on_record(&mut self, r: Record<'_>, turn: &mut Turn, now: Millis) -> anyhow::Result<()> {
        if matches!(self.role, Role::Poll(_)) {
            self.absorb(r, turn, now)?;
            // What it absorbed is resumed at the next tick.
            return Ok(());
        }
        let (mut line, mut custom_id) = (
            std::mem::take(&mut self.line),
            std::mem::take(&mut self.custom_id),
        );
        let parsed =
            self.requests()
                .line_with(r.lane, r.pos, r.value, &mut custom_id, &mut line, true);
        (self.line, self.custom_id) = (line, custom_id);
        match parsed {
            Ok(tokens) => {
                let price = self.tokens.as_ref().and_then(|t| t.price);
                let size = RequestSize {
                    bytes: self.line.len() as u64,
                    tokens,
                    cost: price.map_or(0, |p| p.estimate(tokens)),
                };
                let cuts = self.core.on_record(r.lane, r.pos, r.next, size, false, now);
                if let Some(plan) = cuts.before {
                    self.seal_cut(plan, turn)?;
                }
                let value = r.value.unwrap_or_default();
                self.spool.append(r.lane, r.pos, r.key, value, &self.line)?;
                if let Some(plan) = cuts.after {
                    self.seal_cut(plan, turn)?;
                }
            }
            Err(reason) => {
                let cuts =
                    self.core
                        .on_record(r.lane, r.pos, r.next, RequestSize::default(), true, now);
                debug_assert!(cuts.before.is_none());
                self.line.clear();
                write_dead_letter(&mut self.line, &r, &reason.0);
                self.dead.entry(r.lane).or_default().push(r.key, &self.line);
                if let Some(plan) = cuts.after {
                    self.seal_cut(plan, turn)?;
                }
            }
        }
        Ok(())
    }

    fn on_end(&mut self, lane: LaneId, turn: &mut Turn, now: Millis) -> anyhow::Result<()> {
        match self.role {
            // The handoff has no end but its markers.
            Role::Poll(_) => return Ok(()),
            Role::Submit(_) => self.lane_ended(lane),
            Role::Inline => {}
        }
        self.core
            .handle(Event::EndOfInput { lane }, now, &mut self.actions);
        // Nothing it produces is a call that reads records.
        let mut none = NoRecords;
        self.execute(turn, &mut none, now)
    }

    fn on_answer(
        &mut self,
        msg: Msg,
        turn: &mut Turn,
        records: &mut dyn BatchRecords,
        now: Millis,
    ) -> anyhow::Result<()> {
        match msg {
            Msg::Core(event) => {
                if matches!(
                    &event,
                    Event::Created { result: Ok(_), .. }
                        | Event::Found {
                            result: Ok(Some(_)),
                            ..
                        }
                ) {
                    self.counts.batches_submitted += 1;
                }
                self.core.handle(event, now, &mut self.actions);
            }
            Msg::Downloaded {
                batch,
                budget,
                retry_id,
                retry_number,
                results,
            } => {
                let emit = Emission {
                    batch,
                    budget,
                    retry_id,
                    retry_number,
                };
                self.emit(emit, &results, turn, records, now)?;
            }
        }
        self.execute(turn, records, now)
    }

    fn tick(
        &mut self,
        turn: &mut Turn,
        records: &mut dyn BatchRecords,
        now: Millis,
    ) -> anyhow::Result<()> {
        self.core.tick(now, &mut self.actions);
        self.note_gate();
        self.execute(turn, records, now)?;
        self.end_markers(turn, now);
        Ok(())
    }

    fn committed(
        &mut self,
        turn: &mut Turn,
        records: &mut dyn BatchRecords,
        now: Millis,
    ) -> anyhow::Result<()> {
        self.actions.append(&mut self.deferred);
        // The emissions just committed: their cost replaces their estimate.
        self.core.set_spent(self.spend.values().sum());
        for event in std::mem::take(&mut self.after_commit) {
            self.core.handle(event, now, &mut self.actions);
        }
        self.execute(turn, records, now)?;
        self.end_markers(turn, now);
        Ok(())
    }

    fn next_wake(&self) -> Option<Millis> {
        self.core.next_wake()
    }

    fn is_idle(&self) -> bool {
        self.role_idle() && self.deferred.is_empty() && self.after_commit.is_empty()
    }

    /// In flight: batches the provider holds; the rest (cut, or started
    /// but not uploaded yet) are queued.
    fn load(&self) -> (usize, usize) {
        let at_provider = self.core.at_provider();
        let started = self.core.inflight().saturating_sub(at_provider);
        (at_provider, started + self.core.queued())
    }

    fn summarize(&self, s: &mut Summary) {
        s.add_counts(&self.counts);
        s.api_calls += self.caller.counts.total();
        s.api_errors += self
            .caller
            .counts
            .errors
            .load(std::sync::atomic::Ordering::Relaxed);
    }

    fn finish(&mut self, cancel_inflight: bool) {
        if cancel_inflight {
            self.cancel_inflight();
        }
        self.caller.drain(std::time::Duration::from_secs(3));
    }
}

/// Batch mode would emit again the records an interrupted ALLOW_UNORDERED
/// synchronous run emitted beyond the watermark.
fn refuse_records_ahead(lane: &LaneState) -> anyhow::Result<()> {
    let Some(ahead) = lane.meta.get(SYNC_AHEAD) else {
        return Ok(());
    };
    let set = crate::ahead::decode(ahead, lane.watermark).map_err(anyhow::Error::msg)?;
    if set.is_some_and(|s| !s.is_empty()) {
        bail!(
            "lane {} was left by an interrupted synchronous ALLOW_UNORDERED run with records emitted beyond its watermark; \
             finish it with ml.batch.enabled = false before switching to batch mode",
            lane.lane
        );
    }
    Ok(())
}

/// For calls that never read records.
struct NoRecords;

impl BatchRecords for NoRecords {
    fn visit(
        &mut self,
        batch: &Batch,
        _f: &mut crate::ledger::VisitRecord<'_>,
    ) -> anyhow::Result<()> {
        bail!(
            "internal error: records of batch {} read where none are",
            batch.number
        )
    }
}

/// Result files of a finished batch to download (none when it failed as a
/// whole).
fn result_targets(batch: &Batch) -> Vec<String> {
    if batch.failure.is_some() {
        return Vec::new();
    }
    [&batch.output_file, &batch.error_file]
        .into_iter()
        .flatten()
        .filter(|f| !f.is_empty())
        .cloned()
        .collect()
}

/// Provider files of an emitted batch to delete (`ml.batch.cleanup.remote`).
fn remote_files(batch: Batch) -> Vec<String> {
    [batch.file_id, batch.output_file, batch.error_file]
        .into_iter()
        .flatten()
        .filter(|f| !f.is_empty() && !f.contains("://"))
        .collect()
}
