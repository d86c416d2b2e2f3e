//! A simulated Batch API: time-driven life cycle, faults before and after
//! acting, lost answers, quota and validation failures, expiry, cancel,
//! per-request failures, and the books needed to prove nothing was paid twice.

use std::collections::BTreeMap;

use batch_core::sim::{Fate, Faults};
use batch_core::{
    Batch, BatchFailure, Failure, FailureKind, LaneId, Millis, Position, Remote, RemoteState,
    ResultClass,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::Totals;

#[derive(Debug)]
struct SimBatch {
    number: String,
    attempt: u32,
    lane: LaneId,
    members: Vec<Position>,
    created_at: Millis,
    done_at: Millis,
    fate: Fate,
    cancel_at: Option<Millis>,
    results: Option<BTreeMap<Position, ResultClass>>,
    tokens: u64,
    /// The core gave up on it while it may have been running (after an
    /// unanswered create): the core cannot count what it cannot see, so
    /// the check leaves it out; the provider's `token_limit_exceeded`
    /// covers it.
    abandoned: bool,
}

impl SimBatch {
    /// Whether its tokens count against the enqueued-token limit at `now`:
    /// created and not yet ended.
    fn enqueued(&self, now: Millis) -> bool {
        let end = match (self.fate, self.cancel_at) {
            (Fate::Quota | Fate::Invalid, _) => self.created_at + 20,
            (_, Some(c)) => c.min(self.done_at),
            _ => self.done_at,
        };
        (self.created_at..end).contains(&now)
    }
}

pub struct Provider {
    rng: StdRng,
    faults: Faults,
    /// `[start, end)`: every call fails (429 or no connection), and batches
    /// running at its start expire then (a provider-wide capacity event).
    pub outage: Option<(Millis, Millis)>,
    /// The organisation's enqueued-token limit: a create past it fails the
    /// test (pacing must never send such a batch).
    pub token_limit: Option<u64>,
    next: u64,
    batches: BTreeMap<String, SimBatch>,
    creates: BTreeMap<(String, u32), u32>,
    answered: BTreeMap<(LaneId, Position), u32>,
}

fn fail(kind: FailureKind, code: &str) -> Failure {
    Failure {
        kind,
        retry_after_ms: Some(50),
        code: code.into(),
        message: format!("simulated {code}"),
    }
}

impl Provider {
    pub fn new(seed: u64, faults: Faults) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed ^ 0x5EED_0F_BA7C4),
            faults,
            outage: None,
            token_limit: None,
            next: 0,
            batches: BTreeMap::new(),
            creates: BTreeMap::new(),
            answered: BTreeMap::new(),
        }
    }

    fn roll(&mut self, p: f64) -> bool {
        self.rng.random_bool(p.clamp(0.0, 1.0))
    }

    /// During an outage: a 429 or a refused connection.
    fn down(&mut self, now: Millis) -> Option<Failure> {
        let (start, end) = self.outage?;
        if !(start..end).contains(&now) {
            return None;
        }
        Some(if self.rng.random_bool(0.5) {
            fail(FailureKind::Transient, "rate_limit_exceeded")
        } else {
            fail(FailureKind::Ambiguous, "connection_refused")
        })
    }

    pub fn upload(
        &mut self,
        _batch: &Batch,
        now: Millis,
        _t: &mut Totals,
    ) -> Result<Option<String>, Failure> {
        if let Some(f) = self.down(now) {
            return Err(f);
        }
        if self.roll(self.faults.upload_fail) {
            return Err(fail(FailureKind::Transient, "rate_limit_exceeded"));
        }
        self.next += 1;
        Ok(Some(format!("file-{}", self.next)))
    }

    pub fn create(
        &mut self,
        batch: &Batch,
        members: Vec<Position>,
        now: Millis,
        t: &mut Totals,
    ) -> Result<Remote, Failure> {
        if let Some(mut f) = self.down(now) {
            // Refused before acting.
            f.kind = FailureKind::Transient;
            return Err(f);
        }
        if self.roll(self.faults.create_429) {
            return Err(fail(FailureKind::Transient, "rate_limit_exceeded"));
        }
        if self.roll(self.faults.create_5xx) {
            return Err(fail(FailureKind::Ambiguous, "server_error"));
        }
        assert_eq!(
            members.len() as u32,
            batch.records,
            "batch {} file holds the wrong records",
            batch.number
        );
        let tokens: u64 = members
            .iter()
            .map(|&p| super::tokens_of(batch.lane, p))
            .sum();
        if let Some(limit) = self.token_limit {
            let enqueued: u64 = self
                .batches
                .values()
                .filter(|b| b.enqueued(now) && !b.abandoned)
                .map(|b| b.tokens)
                .sum();
            let held: Vec<_> = self
                .batches
                .values()
                .filter(|b| b.enqueued(now) && !b.abandoned)
                .map(|b| {
                    (
                        &b.number,
                        b.attempt,
                        b.fate,
                        b.created_at,
                        b.done_at,
                        b.cancel_at,
                    )
                })
                .collect();
            assert!(
                enqueued + tokens <= limit || enqueued == 0,
                "batch {} of {tokens} tokens sent at {now} with {enqueued} enqueued ({held:?}): past the limit of {limit}",
                batch.number
            );
        }
        self.next += 1;
        let id = format!("batch_{}", self.next);
        let (mut fate, mut run) = self.faults.fate(&mut self.rng);
        if let Some((start, _)) = self.outage {
            if (now..now + run).contains(&start) && fate == Fate::Complete {
                fate = Fate::Expire;
                run = start - now;
            }
        }
        t.quota_failures += u64::from(fate == Fate::Quota);
        t.expired += u64::from(fate == Fate::Expire);
        *self
            .creates
            .entry((batch.number.clone(), batch.attempt))
            .or_default() += 1;
        self.batches.insert(
            id.clone(),
            SimBatch {
                number: batch.number.clone(),
                attempt: batch.attempt,
                lane: batch.lane,
                members,
                created_at: now,
                done_at: now + run,
                fate,
                cancel_at: None,
                results: None,
                tokens,
                abandoned: false,
            },
        );
        if self.roll(self.faults.create_lost) {
            t.lost_creates += 1;
            return Err(fail(FailureKind::Ambiguous, "connection_reset"));
        }
        Ok(self.view(&id, now))
    }

    pub fn find(
        &mut self,
        batch: &Batch,
        not_before: Millis,
        now: Millis,
        t: &mut Totals,
    ) -> Result<Option<Remote>, Failure> {
        if let Some(f) = self.down(now) {
            return Err(f);
        }
        if self.roll(self.faults.find_fail) {
            return Err(fail(FailureKind::Transient, "server_error"));
        }
        let found = self
            .batches
            .iter()
            .find(|(_, b)| {
                b.number == batch.number && b.attempt == batch.attempt && b.created_at >= not_before
            })
            .map(|(id, b)| (id.clone(), b.created_at));
        Ok(found.map(|(id, at)| {
            t.adoptions += 1;
            self.view(&id, at)
        }))
    }

    pub fn poll(&mut self, id: &str, now: Millis) -> Result<Remote, Failure> {
        if let Some(f) = self.down(now) {
            return Err(f);
        }
        if self.roll(self.faults.poll_fail) {
            return Err(fail(FailureKind::Ambiguous, "server_error"));
        }
        Ok(self.view(id, now))
    }

    pub fn cancel(&mut self, id: &str, now: Millis, t: &mut Totals) -> Result<(), Failure> {
        if let Some(f) = self.down(now) {
            return Err(f);
        }
        let b = self
            .batches
            .get_mut(id)
            .expect("cancel of an unknown batch");
        if b.cancel_at.is_none() && now < b.done_at {
            b.cancel_at = Some(now + 50);
            t.cancelled += 1;
        }
        Ok(())
    }

    pub fn download_fails(&mut self, now: Millis) -> Option<Failure> {
        if let Some(f) = self.down(now) {
            return Some(f);
        }
        self.roll(self.faults.download_fail)
            .then(|| fail(FailureKind::Transient, "server_error"))
    }

    pub fn results(&self, id: &str) -> BTreeMap<Position, ResultClass> {
        self.batches[id]
            .results
            .clone()
            .expect("results of a batch not yet terminal")
    }

    /// The provider's answer at `now`, settling results once terminal.
    fn view(&mut self, id: &str, now: Millis) -> Remote {
        let (state, error) = {
            let b = &self.batches[id];
            match (b.fate, b.cancel_at) {
                (Fate::Quota, _) if now >= b.created_at + 20 => (
                    Some(RemoteState::Failed),
                    Some(BatchFailure {
                        code: "token_limit_exceeded".into(),
                        message: "enqueued token limit reached".into(),
                    }),
                ),
                (Fate::Invalid, _) if now >= b.created_at + 20 => (
                    Some(RemoteState::Failed),
                    Some(BatchFailure {
                        code: "invalid_json_line".into(),
                        message: "line 1 is not valid json".into(),
                    }),
                ),
                (Fate::Quota | Fate::Invalid, _) => (None, None),
                (_, Some(c)) if now >= c && c < b.done_at => (Some(RemoteState::Cancelled), None),
                (Fate::Expire, _) if now >= b.done_at => (Some(RemoteState::Expired), None),
                (Fate::Complete, _) if now >= b.done_at => (Some(RemoteState::Completed), None),
                _ => (None, None),
            }
        };
        if matches!(
            state,
            Some(RemoteState::Completed | RemoteState::Expired | RemoteState::Cancelled)
        ) && self.batches[id].results.is_none()
        {
            self.settle(id, state.unwrap());
        }
        let has_results = self.batches[id].results.is_some();
        Remote {
            id: id.to_owned(),
            state,
            output_file: has_results.then(|| format!("{id}-out")),
            error_file: has_results.then(|| format!("{id}-err")),
            error,
        }
    }

    fn settle(&mut self, id: &str, state: RemoteState) {
        let (retriable, permanent) = (self.faults.req_retriable, self.faults.req_permanent);
        let members = self.batches[id].members.clone();
        let lane = self.batches[id].lane;
        let mut results = BTreeMap::new();
        for p in members {
            let finished = state == RemoteState::Completed || self.rng.random_bool(0.5);
            let class = if !finished {
                if self.rng.random_bool(0.8) {
                    ResultClass::Capacity
                } else {
                    ResultClass::Missing
                }
            } else if self.rng.random_bool(retriable) {
                ResultClass::Retriable
            } else if self.rng.random_bool(permanent) {
                ResultClass::Permanent
            } else {
                ResultClass::Ok
            };
            if class == ResultClass::Ok {
                *self.answered.entry((lane, p)).or_default() += 1;
            }
            results.insert(p, class);
        }
        self.batches.get_mut(id).unwrap().results = Some(results);
    }

    pub fn check_no_double_answers(&self) {
        for ((number, attempt), n) in &self.creates {
            assert_eq!(*n, 1, "batch {number} attempt {attempt} created {n} times");
        }
        for ((lane, p), n) in &self.answered {
            assert_eq!(*n, 1, "record {lane}-{p} answered {n} times: paid twice");
        }
    }

    /// The core gave up on `number`'s `attempt` as a whole.
    pub fn abandon(&mut self, number: &str, attempt: u32) {
        for b in self.batches.values_mut() {
            if b.number == number && b.attempt == attempt {
                b.abandoned = true;
            }
        }
    }

    pub fn answered_ok(&self, lane: LaneId, p: Position) -> bool {
        self.answered.contains_key(&(lane, p))
    }
}
