//! The simulated world: source, durable store, provider, crashes.

mod check;
mod provider;

use std::collections::{BTreeMap, BTreeSet};

use batch_core::{
    seq_of, Action, Batch, Budget, Core, CoreConfig, Disposition, Event, LaneId, LaneStart, Millis,
    Phase, Position, ResultClass,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use batch_core::sim::Faults;
use provider::Provider;

#[derive(Debug, Default, Clone)]
pub struct Totals {
    pub seeds: u64,
    pub records: u64,
    pub crashes: u64,
    pub lost_creates: u64,
    pub adoptions: u64,
    pub quota_failures: u64,
    pub expired: u64,
    pub cancelled: u64,
    pub retried_records: u64,
    pub whole_batch_errors: u64,
    pub lane_moves: u64,
    pub list_polls: u64,
    pub steps: u64,
    /// Seeds with a provider outage, and the longest one.
    pub outages: u64,
    pub longest_outage_ms: u64,
    /// Records emitted as errors once their retry deadline had passed.
    pub out_of_time: u64,
    /// Records emitted ok that were first submitted before an outage ended.
    pub outage_survivors: u64,
    /// Seeds with an enqueued-token limit, and steps at which a batch
    /// waited for room under it.
    pub paced: u64,
    pub token_waits: u64,
    /// Records too large for the limit (dead-lettered by the shell's rule).
    pub over_limit: u64,
    /// Seeds with a budget, and how often it stopped a run (then raised,
    /// and the world restarted).
    pub budgeted: u64,
    pub budget_stops: u64,
}

fn pending_batch(e: &Event) -> Option<u64> {
    match e {
        Event::Uploaded { id, .. }
        | Event::Created { id, .. }
        | Event::Found { id, .. }
        | Event::Polled { id, .. }
        | Event::CancelRequested { id, .. }
        | Event::Emitted { id, .. }
        | Event::EmitFailed { id, .. } => Some(*id),
        Event::EndOfInput { .. } => None,
    }
}

impl Totals {
    pub fn add(&mut self, o: &Totals) {
        self.seeds += 1;
        self.records += o.records;
        self.crashes += o.crashes;
        self.lost_creates += o.lost_creates;
        self.adoptions += o.adoptions;
        self.quota_failures += o.quota_failures;
        self.expired += o.expired;
        self.cancelled += o.cancelled;
        self.retried_records += o.retried_records;
        self.whole_batch_errors += o.whole_batch_errors;
        self.lane_moves += o.lane_moves;
        self.list_polls += o.list_polls;
        self.steps += o.steps;
        self.outages += o.outages;
        self.longest_outage_ms = self.longest_outage_ms.max(o.longest_outage_ms);
        self.out_of_time += o.out_of_time;
        self.outage_survivors += o.outage_survivors;
        self.paced += o.paced;
        self.token_waits += o.token_waits;
        self.over_limit += o.over_limit;
        self.budgeted += o.budgeted;
        self.budget_stops += o.budget_stops;
    }
}

/// What survives a crash.
#[derive(Debug, Default, Clone)]
struct Durable {
    lanes: BTreeMap<LaneId, Position>,
    batches: BTreeMap<u64, Batch>,
    /// (lane, position, ok?) in emission order.
    output: Vec<(LaneId, Position, bool)>,
    dlq: Vec<(LaneId, Position)>,
    /// What the emitted batches cost (their ok answers).
    spent: u64,
}

struct Pending {
    due: Millis,
    seq: u64,
    event: Event,
}

pub struct World {
    seed: u64,
    rng: StdRng,
    now: Millis,
    cfg: CoreConfig,
    /// Per lane: number of records; a record's position is its index.
    lane_len: BTreeMap<LaneId, u64>,
    dead: BTreeSet<(LaneId, Position)>,
    durable: Durable,
    provider: Provider,
    // Volatile: lost at a crash.
    core: Core,
    cursor: BTreeMap<LaneId, Position>,
    eof_sent: BTreeSet<LaneId>,
    pending: Vec<Pending>,
    seq: u64,
    crash_rate: f64,
    crashes_left: u32,
    totals: Totals,
    /// Members whose generation ran out (emitted as errors after retries).
    max_retries: u32,
    /// When each record was first uploaded, as the world saw it (the
    /// core's own record of it may restart later after a crash, never
    /// earlier).
    first_upload: BTreeMap<(LaneId, Position), Millis>,
    over_limit: u64,
    /// Estimated cost of the batches started and not yet emitted, as the
    /// world saw them start: with the spend, never past the budget.
    started_cost: BTreeMap<u64, u64>,
    budget_set: bool,
}

/// A request's estimated cost (nano-USD), 1 to 5; its real cost when
/// answered ok is the same, else 0.
pub fn cost_of(lane: LaneId, p: Position) -> u64 {
    1 + (p + u64::from(lane)) % 5
}

/// The true token count of a request (the simulated shell's estimate is
/// exact): 1 to 60.
pub fn tokens_of(lane: LaneId, p: Position) -> u64 {
    1 + (p.wrapping_mul(31) + u64::from(lane) * 7) % 60
}

impl World {
    pub fn new(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let lanes = rng.random_range(1..=3u32);
        let mut lane_len = BTreeMap::new();
        let mut dead = BTreeSet::new();
        let dead_rate = [0.0, 0.02, 0.1][rng.random_range(0..3)];
        for lane in 0..lanes {
            let n = rng.random_range(0..250u64);
            lane_len.insert(lane, n);
            for p in 0..n {
                if rng.random_bool(dead_rate) {
                    dead.insert((lane, p));
                }
            }
        }
        let mut cfg = CoreConfig::for_tests("sim");
        cfg.list_poll_min = [0, 2, 3, 5][rng.random_range(0..4)];
        cfg.batch_size = rng.random_range(1..=40);
        cfg.max_bytes = rng.random_range(50..=2_000);
        cfg.max_inflight = rng.random_range(1..=6);
        cfg.max_wait_ms = rng.random_range(10..=2_000);
        cfg.max_retries = rng.random_range(0..=3);
        cfg.job_timeout_ms = rng.random_range(2_000..=60_000);
        cfg.retry_deadline_ms = [30_000, 600_000, 72 * 3_600_000][rng.random_range(0..3)];
        let max_retries = cfg.max_retries;
        let harsh = rng.random_bool(0.3);
        let faults = Faults::random(&mut rng, harsh);
        let now = 1_700_000_000_000;
        // A quarter of the seeds lose the provider for a while: seconds,
        // minutes, or two hours (longer than some deadlines, shorter than
        // others).
        let outage = rng.random_bool(0.25).then(|| {
            let start = now + rng.random_range(0..20_000);
            let len = [
                rng.random_range(5_000..60_000),
                rng.random_range(300_000..1_800_000),
                7_200_000,
            ][rng.random_range(0..3)];
            (start, start + len)
        });
        let crash_rate = [0.0, 0.002, 0.01, 0.05][rng.random_range(0..4)];
        let crashes_left = rng.random_range(0..=12);
        // Drawn last, so that the other draws stay what they were per seed.
        // A limit from below one request's tokens to many batches' worth.
        let mut over_limit = 0;
        cfg.max_enqueued_tokens = rng.random_bool(0.4).then(|| rng.random_range(30..=1_500));
        if let Some(limit) = cfg.max_enqueued_tokens {
            for (&lane, &n) in &lane_len {
                for p in 0..n {
                    // The shell's rule: a request over the limit is a dead letter.
                    if tokens_of(lane, p) > limit && dead.insert((lane, p)) {
                        over_limit += 1;
                    }
                }
            }
        }
        cfg.budget = rng.random_bool(0.3).then(|| rng.random_range(0..=600));
        let budget_set = cfg.budget.is_some();
        let core = Core::new(cfg.clone());
        let mut provider = Provider::new(seed, faults);
        provider.outage = outage;
        provider.token_limit = cfg.max_enqueued_tokens;
        Self {
            seed,
            provider,
            rng,
            now,
            cfg,
            lane_len,
            dead,
            durable: Durable::default(),
            core,
            cursor: BTreeMap::new(),
            eof_sent: BTreeSet::new(),
            pending: Vec::new(),
            seq: 0,
            crash_rate,
            crashes_left,
            totals: Totals::default(),
            max_retries,
            first_upload: BTreeMap::new(),
            over_limit,
            started_cost: BTreeMap::new(),
            budget_set,
        }
        .started()
    }

    fn started(mut self) -> Self {
        self.restart();
        self
    }

    /// Build the volatile half of the world from the durable half, as a
    /// process start does.
    fn restart(&mut self) {
        let lanes: Vec<LaneStart> = self
            .lane_len
            .keys()
            .map(|&lane| LaneStart {
                lane,
                watermark: self.durable.lanes.get(&lane).copied().unwrap_or(0),
                next_seq: self
                    .durable
                    .batches
                    .values()
                    .filter(|b| b.lane == lane)
                    .map(|b| seq_of(b.id) + 1)
                    .max()
                    .unwrap_or(1),
            })
            .collect();
        let open: Vec<Batch> = self
            .durable
            .batches
            .values()
            .filter(|b| b.phase != Phase::Emitted)
            .cloned()
            .collect();
        self.core = Core::restore(self.cfg.clone(), &lanes, open, self.now);
        self.core.set_spent(self.durable.spent);
        // What never reached the provider is no longer started.
        let durable = &self.durable.batches;
        self.started_cost
            .retain(|id, _| durable.get(id).is_some_and(|b| b.phase != Phase::Planned));
        self.cursor.clear();
        for l in &lanes {
            self.cursor.insert(l.lane, l.watermark);
        }
        self.eof_sent.clear();
        self.pending.clear();
    }

    /// A lane taken away and handed back (a Kafka rebalance): only that
    /// lane's volatile state is lost; answers for its batches still in
    /// flight are dropped, as the shell drops answers of an older epoch.
    fn move_lane(&mut self) {
        let lanes: Vec<LaneId> = self.lane_len.keys().copied().collect();
        let lane = lanes[self.rng.random_range(0..lanes.len())];
        self.core.drop_lane(lane);
        let ids: BTreeSet<u64> = self
            .durable
            .batches
            .values()
            .filter(|b| b.lane == lane)
            .map(|b| b.id)
            .collect();
        self.pending
            .retain(|p| !pending_batch(&p.event).is_some_and(|id| ids.contains(&id)));
        let start = LaneStart {
            lane,
            watermark: self.durable.lanes.get(&lane).copied().unwrap_or(0),
            next_seq: ids.iter().map(|&id| seq_of(id) + 1).max().unwrap_or(1),
        };
        let open: Vec<Batch> = self
            .durable
            .batches
            .values()
            .filter(|b| b.lane == lane && b.phase != Phase::Emitted)
            .cloned()
            .collect();
        self.core.adopt_lane(start, open, self.now);
        let durable = &self.durable.batches;
        self.started_cost
            .retain(|id, _| durable.get(id).is_some_and(|b| b.phase != Phase::Planned));
        self.cursor.insert(lane, start.watermark);
        self.eof_sent.remove(&lane);
    }

    pub fn run(&mut self) {
        let mut actions = Vec::new();
        for step in 0.. {
            assert!(
                step < 400_000,
                "no progress after {step} steps (now {})",
                self.now
            );
            self.totals.steps += 1;
            if self.cfg.max_enqueued_tokens.is_some() {
                let gate = self.core.gate();
                assert!(
                    gate.enqueued_tokens <= gate.token_limit.unwrap_or(0)
                        || self.core.inflight() <= 1,
                    "the core holds {} enqueued tokens over its limit: {gate:?}",
                    gate.enqueued_tokens
                );
                if matches!(gate.waiting, Some(batch_core::Waiting::Tokens { .. })) {
                    self.totals.token_waits += 1;
                }
            }
            if self.crashes_left > 0 && self.rng.random_bool(self.crash_rate) {
                self.crashes_left -= 1;
                if self.rng.random_bool(0.3) {
                    self.totals.lane_moves += 1;
                    self.move_lane();
                } else {
                    self.totals.crashes += 1;
                    self.restart();
                }
            }
            // Feed a few records from a random lane while the core wants them.
            let mut lanes: Vec<LaneId> = self
                .lane_len
                .keys()
                .copied()
                .filter(|l| self.cursor[l] < self.lane_len[l])
                .collect();
            if lanes.is_empty() {
                lanes = self
                    .lane_len
                    .keys()
                    .copied()
                    .filter(|l| !self.eof_sent.contains(l))
                    .collect();
            }
            if lanes.is_empty() {
                lanes.push(*self.lane_len.keys().next().expect("a lane"));
            }
            let lane = lanes[self.rng.random_range(0..lanes.len())];
            let len = self.lane_len[&lane];
            let cursor = self.cursor[&lane];
            if self.core.wants_records() && cursor < len {
                let n = self.rng.random_range(1..=8u64).min(len - cursor);
                for p in cursor..cursor + n {
                    let dead = self.dead.contains(&(lane, p));
                    let size = batch_core::RequestSize {
                        bytes: if dead { 0 } else { 20 + (p % 30) },
                        tokens: if dead { 0 } else { tokens_of(lane, p) },
                        cost: if dead { 0 } else { cost_of(lane, p) },
                    };
                    let cuts = self.core.on_record(lane, p, p + 1, size, dead, self.now);
                    for plan in [cuts.before, cuts.after].into_iter().flatten() {
                        self.commit_cut(plan);
                    }
                }
                self.cursor.insert(lane, cursor + n);
                self.now += self.rng.random_range(0..=3);
            } else if cursor >= len && !self.eof_sent.contains(&lane) {
                self.eof_sent.insert(lane);
                self.core
                    .handle(Event::EndOfInput { lane }, self.now, &mut actions);
            } else if self.core.is_idle()
                && self.pending.is_empty()
                && self.eof_sent.len() == self.lane_len.len()
            {
                return;
            } else {
                // Deliver the earliest answer, or let time pass to the next wake.
                let next_event = self.pending.iter().map(|p| (p.due, p.seq)).min();
                let wake = self.core.next_wake();
                match (next_event, wake) {
                    (Some((due, seq)), w) if w.is_none_or(|w| due <= w) => {
                        self.now = self.now.max(due);
                        let i = self
                            .pending
                            .iter()
                            .position(|p| p.seq == seq)
                            .expect("pending");
                        let p = self.pending.swap_remove(i);
                        self.core.handle(p.event, self.now, &mut actions);
                    }
                    (_, Some(w)) => self.now = self.now.max(w),
                    (Some(_), None) => unreachable!("covered by the first arm"),
                    (None, None)
                        if matches!(
                            self.core.gate().waiting,
                            Some(batch_core::Waiting::Budget {
                                exhausted: true,
                                ..
                            })
                        ) =>
                    {
                        // Out of budget: the operator raises it and restarts.
                        self.totals.budget_stops += 1;
                        self.cfg.budget = None;
                        self.restart();
                    }
                    (None, None) => {
                        // Waiting for more records that the core does not want
                        // yet can only happen if something is in flight.
                        assert!(
                            !self.core.wants_records()
                                || self.cursor.iter().all(|(l, c)| *c >= self.lane_len[l]),
                            "stalled: nothing pending, nothing to wake for: {:#?}",
                            self.core
                        );
                        panic!("stalled with the core not wanting records and nothing in flight: {:#?}", self.core);
                    }
                }
            }
            self.core.tick(self.now, &mut actions);
            for action in actions.drain(..) {
                self.execute(action);
            }
        }
    }

    fn commit_cut(&mut self, plan: batch_core::Plan) {
        let start = plan.first;
        for p in start..plan.end {
            if self.dead.contains(&(plan.lane, p)) {
                self.durable.dlq.push((plan.lane, p));
            }
        }
        self.durable.lanes.insert(plan.lane, plan.end);
        if let Some(batch) = plan.batch {
            self.durable.batches.insert(batch.id, batch);
        }
    }

    fn answer(&mut self, latency: Millis, event: Event) {
        self.seq += 1;
        self.pending.push(Pending {
            due: self.now + latency,
            seq: self.seq,
            event,
        });
    }

    fn execute(&mut self, action: Action) {
        let latency = self.rng.random_range(1..=300);
        match action {
            Action::Cut(plan) => self.commit_cut(plan),
            Action::Persist(batch) => {
                if batch.phase == Phase::Finished && batch.failure.is_some() {
                    self.provider.abandon(&batch.number, batch.attempt);
                }
                self.durable.batches.insert(batch.id, batch);
            }
            Action::Upload(batch) => {
                if let Some(budget) = self.cfg.budget {
                    self.started_cost.insert(batch.id, batch.estimated_cost);
                    let held: u64 = self.started_cost.values().sum();
                    assert!(
                        self.durable.spent + held <= budget,
                        "batch {} started with {} spent and {held} held: past the budget of {budget}",
                        batch.number,
                        self.durable.spent
                    );
                }
                for p in self.members(&batch) {
                    self.first_upload.entry((batch.lane, p)).or_insert(self.now);
                }
                let result = self.provider.upload(&batch, self.now, &mut self.totals);
                self.answer(
                    latency,
                    Event::Uploaded {
                        id: batch.id,
                        result,
                    },
                );
            }
            Action::Create(batch) => {
                let members = self.members(&batch);
                let result = self
                    .provider
                    .create(&batch, members, self.now, &mut self.totals);
                self.answer(
                    latency,
                    Event::Created {
                        id: batch.id,
                        result,
                    },
                );
            }
            Action::Find { batch, not_before } => {
                let result = self
                    .provider
                    .find(&batch, not_before, self.now, &mut self.totals);
                self.answer(
                    latency,
                    Event::Found {
                        id: batch.id,
                        result,
                    },
                );
            }
            Action::Poll { id, remote_id } => {
                let result = self.provider.poll(&remote_id, self.now);
                self.answer(latency, Event::Polled { id, result });
            }
            Action::PollMany(batches) => {
                self.totals.list_polls += 1;
                for (id, remote_id) in batches {
                    let result = self.provider.poll(&remote_id, self.now);
                    self.answer(latency, Event::Polled { id, result });
                }
            }
            Action::Cancel { id, remote_id } => {
                let result = self.provider.cancel(&remote_id, self.now, &mut self.totals);
                self.answer(latency, Event::CancelRequested { id, result });
            }
            Action::Emit {
                batch,
                budget,
                retry_id,
                retry_number,
            } => {
                if let Some(failure) = self.provider.download_fails(self.now) {
                    self.answer(
                        latency,
                        Event::EmitFailed {
                            id: batch.id,
                            failure,
                        },
                    );
                    return;
                }
                let retry = self.emit(&batch, &budget, retry_id, retry_number);
                // The commit is durable now; the crash check at the next step
                // may still lose this answer, as a real crash would.
                self.answer(
                    0,
                    Event::Emitted {
                        id: batch.id,
                        retry,
                    },
                );
            }
            Action::Warn(w) if std::env::var("SIM_DEBUG").is_ok_and(|d| w.contains(&d)) => {
                eprintln!("{} warn: {w}", self.now)
            }
            Action::Cleanup(_) | Action::Warn(_) => {}
            Action::Fatal(msg) => panic!("fatal: {msg}"),
        }
    }

    fn members(&self, batch: &Batch) -> Vec<Position> {
        match &batch.members {
            Some(m) => m.clone(),
            None => (batch.first..batch.end)
                .filter(|p| !self.dead.contains(&(batch.lane, *p)))
                .collect(),
        }
    }

    /// The shell's emit step: join, decide each member's fate, commit.
    fn emit(
        &mut self,
        batch: &Batch,
        budget: &Budget,
        retry_id: u64,
        retry_number: String,
    ) -> Option<Batch> {
        let stored = &self.durable.batches[&batch.id];
        assert_eq!(
            stored.phase,
            Phase::Finished,
            "emit of a batch not durably finished: {stored:?}"
        );
        let results = match (&batch.failure, &batch.remote_id) {
            (Some(_), _) | (None, None) => BTreeMap::new(),
            (None, Some(remote)) => self.provider.results(remote),
        };
        let mut retry = Vec::new();
        let mut charged = false;
        // The provider's capacity failed these (not the requests): the
        // simulated provider rejects batches for their lines only with
        // `invalid_json_line`; every other whole-batch failure is quota or
        // an unavailable API.
        let capacity_failure = batch
            .failure
            .as_ref()
            .is_some_and(|f| f.code != "invalid_json_line");
        for p in self.members(batch) {
            let class = match &batch.failure {
                Some(_) => ResultClass::Permanent,
                None => results.get(&p).copied().unwrap_or(ResultClass::Missing),
            };
            let disposition = budget.disposition(class);
            let out_of_time = disposition == Disposition::EmitOutOfTime
                || (capacity_failure && disposition == Disposition::EmitError);
            if out_of_time {
                // Capacity faults never end a record before its deadline.
                let first = self.first_upload[&(batch.lane, p)];
                assert!(
                    self.now >= first + self.cfg.retry_deadline_ms,
                    "{}-{p} emitted as an error for capacity faults {} ms after its first submission, before the deadline of {} ms ({:?})",
                    batch.lane,
                    self.now - first,
                    self.cfg.retry_deadline_ms,
                    batch.failure
                );
                self.totals.out_of_time += 1;
            }
            match disposition {
                Disposition::EmitOk => {
                    let outage_end = self.provider.outage.map_or(0, |o| o.1);
                    if self.first_upload[&(batch.lane, p)] < outage_end {
                        self.totals.outage_survivors += 1;
                    }
                    self.durable.spent += cost_of(batch.lane, p);
                    self.durable.output.push((batch.lane, p, true))
                }
                Disposition::EmitError | Disposition::EmitOutOfTime => {
                    self.durable.output.push((batch.lane, p, false))
                }
                Disposition::Retry { charged: c } => {
                    charged |= c;
                    retry.push(p)
                }
            }
        }
        if batch.failure.is_some() {
            self.totals.whole_batch_errors += 1;
        }
        self.totals.retried_records += retry.len() as u64;
        self.started_cost.remove(&batch.id);
        // The shell's commit carries the new spend; the core hears of it
        // with the emission (here at once: more cautious still).
        self.core.set_spent(self.durable.spent);
        let mut done = batch.clone();
        done.phase = Phase::Emitted;
        self.durable.batches.insert(done.id, done);
        // The retry batch the real shells build (one rule, in the core).
        let retry_batch = batch.retry_of(&retry, charged, retry_id, retry_number, self.now)?;
        assert!(
            !self.durable.batches.contains_key(&retry_id),
            "retry id {retry_id} reused"
        );
        self.durable.batches.insert(retry_id, retry_batch.clone());
        Some(retry_batch)
    }
    pub fn totals(&self) -> Totals {
        let mut t = self.totals.clone();
        t.records = self.lane_len.values().sum();
        t.paced = u64::from(self.cfg.max_enqueued_tokens.is_some());
        t.over_limit = self.over_limit;
        t.budgeted = u64::from(self.budget_set);
        if let Some((start, end)) = self.provider.outage {
            t.outages = 1;
            t.longest_outage_ms = end - start;
        }
        t
    }
}
