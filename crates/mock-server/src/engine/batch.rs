//! A batch's life, driven by time and evaluated lazily whenever it is read:
//! `validating → in_progress → finalizing → completed`, or `failed`,
//! `expired`, `cancelling → cancelled`. No background task is needed.

use std::collections::HashMap;
use std::time::Instant;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::{Map, Value};

use super::body::BatchError;
use super::faults::Faults;
use super::files::FileTable;
use super::input::{self, Exec, Flavor};
use super::model::Task;
use super::results::RenderFn;
pub(crate) use super::status::Status;
use crate::config::MockConfig;
use crate::stats::StatsRecorder;
use crate::util::{strip_tag, Clock, IdGen};

/// What advancing a batch may touch outside it.
pub(crate) struct Env<'a> {
    pub files: &'a mut FileTable,
    pub seen: &'a mut HashMap<u64, u32>,
    pub enqueued: &'a mut Enqueued,
    pub faults: &'a Faults,
    pub stats: &'a StatsRecorder,
    pub ids: &'a IdGen,
    pub cfg: &'a MockConfig,
}

#[derive(Default, Clone, Copy, Debug)]
pub(crate) struct Stamps {
    pub in_progress_at: Option<i64>,
    pub finalizing_at: Option<i64>,
    pub completed_at: Option<i64>,
    pub failed_at: Option<i64>,
    pub expired_at: Option<i64>,
    pub cancelling_at: Option<i64>,
    pub cancelled_at: Option<i64>,
}

/// The batches holding enqueued tokens: by batch seq, when they passed
/// validation, until when (unknown while they run) and how many.
#[derive(Default)]
pub(crate) struct Enqueued(HashMap<u64, (Instant, Option<Instant>, u64)>);

impl Enqueued {
    /// Tokens held at `t`.
    fn at(&self, t: Instant) -> u64 {
        self.0
            .values()
            .filter(|(from, until, _)| *from <= t && until.is_none_or(|u| u > t))
            .map(|(_, _, n)| n)
            .sum()
    }

    fn end(&mut self, seq: u64, t: Instant) {
        if let Some(hold) = self.0.get_mut(&seq) {
            hold.1 = Some(t);
        }
    }
}

/// Fault decisions taken at create time, applied later.
#[derive(Default, Clone, Copy, Debug)]
pub(crate) struct Fate {
    pub token_limit: bool,
    pub expire: bool,
}

pub(crate) struct Batch {
    pub id: String,
    pub seq: u64,
    pub flavor: Flavor,
    /// The protocol's writer of result lines.
    render: RenderFn,
    pub input_file_id: String,
    pub metadata: Option<Map<String, Value>>,
    /// `metadata.mlpredict_pipeline`, the scope of duplicate-answer detection.
    pub pipeline: String,
    pub clock: Clock,
    pub created_at: i64,
    /// Snapshot of the input file at create (None: no such file).
    input: Option<Bytes>,
    fate: Fate,
    pub status: Status,
    pub model: Option<String>,
    pub errors: Option<Vec<BatchError>>,
    pub stamps: Stamps,
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
    /// Generic protocol: the results JSONL.
    pub results: Option<Bytes>,
    /// In execution (shuffled) order; emptied once the batch ends.
    tasks: Vec<Task>,
    pub total: u64,
    pub completed: u64,
    pub failed: u64,
    /// Of `failed`: requests never run (expired or cancelled batch).
    pub unexecuted: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// When cancel was asked and how many requests had finished by then.
    cancel: Option<(Instant, usize)>,
}

impl Batch {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: String,
        seq: u64,
        flavor: Flavor,
        render: RenderFn,
        input_file_id: String,
        input: Option<Bytes>,
        metadata: Option<Map<String, Value>>,
        fate: Fate,
    ) -> Self {
        let clock = Clock::now();
        let pipeline = metadata
            .as_ref()
            .and_then(|m| m.get("mlpredict_pipeline"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        Batch {
            id,
            seq,
            flavor,
            render,
            input_file_id,
            metadata,
            pipeline,
            created_at: clock.unix(clock.at),
            clock,
            input,
            fate,
            status: Status::Validating,
            model: None,
            errors: None,
            stamps: Stamps::default(),
            output_file_id: None,
            error_file_id: None,
            results: None,
            tasks: Vec::new(),
            total: 0,
            completed: 0,
            failed: 0,
            unexecuted: 0,
            input_tokens: 0,
            output_tokens: 0,
            cancel: None,
        }
    }

    fn t_validated(&self, cfg: &MockConfig) -> Instant {
        // A message batch is in progress from its creation on.
        if self.flavor == Flavor::Anthropic {
            return self.clock.at;
        }
        self.clock.at + cfg.validating
    }

    fn t_processed(&self, cfg: &MockConfig) -> Instant {
        self.t_validated(cfg) + cfg.in_progress
    }

    fn t_finalized(&self, cfg: &MockConfig) -> Instant {
        self.t_processed(cfg) + cfg.finalizing + cfg.faults.slow_finalizing
    }

    /// How many requests have run by `now` while in progress.
    fn done_by(&self, now: Instant, cfg: &MockConfig) -> usize {
        let n = self.tasks.len();
        match self.status {
            Status::InProgress if !cfg.in_progress.is_zero() => {
                let elapsed = now.saturating_duration_since(self.t_validated(cfg));
                let frac = (elapsed.as_secs_f64() / cfg.in_progress.as_secs_f64()).min(1.0);
                ((n as f64) * frac) as usize
            }
            Status::Validating => 0,
            _ => n,
        }
    }

    /// Live `(completed, failed)` counts, including progress while running.
    pub(crate) fn counts(&self, now: Instant, cfg: &MockConfig) -> (u64, u64) {
        match self.status {
            Status::InProgress | Status::Finalizing | Status::Cancelling => {
                let done = match self.cancel {
                    Some((_, d)) => d,
                    None => self.done_by(now, cfg),
                };
                let ok = self.tasks[..done].iter().filter(|t| t.ok()).count() as u64;
                (ok, done as u64 - ok)
            }
            _ => (self.completed, self.failed),
        }
    }

    /// Moves the batch along its timeline up to `now`.
    pub(crate) fn advance(&mut self, now: Instant, env: &mut Env<'_>) {
        let cfg = env.cfg;
        loop {
            match self.status {
                Status::Validating => {
                    let t = self.t_validated(cfg);
                    if now < t {
                        return;
                    }
                    self.validate(t, env);
                }
                Status::InProgress => {
                    let t = self.t_processed(cfg);
                    if now < t {
                        return;
                    }
                    if self.fate.expire {
                        env.stats.fault("expire");
                        let half = self.tasks.len() / 2;
                        self.finish(Status::Expired, t, half, env);
                    } else {
                        self.status = Status::Finalizing;
                        self.stamps.finalizing_at = Some(self.clock.unix(t));
                    }
                }
                Status::Finalizing => {
                    let t = self.t_finalized(cfg);
                    if now < t {
                        return;
                    }
                    let n = self.tasks.len();
                    self.finish(Status::Completed, t, n, env);
                }
                Status::Cancelling => {
                    let (asked, done) = self.cancel.expect("cancelling has a cancel time");
                    let t = asked + cfg.cancelling;
                    if now < t {
                        return;
                    }
                    self.finish(Status::Cancelled, t, done, env);
                }
                Status::Failed | Status::Completed | Status::Expired | Status::Cancelled => return,
            }
        }
    }

    fn fail(&mut self, t: Instant, errors: Vec<BatchError>) {
        self.status = Status::Failed;
        self.stamps.failed_at = Some(self.clock.unix(t));
        self.errors = Some(errors);
        self.input = None;
    }

    fn validate(&mut self, t: Instant, env: &mut Env<'_>) {
        let Some(input) = self.input.clone() else {
            let msg = format!(
                "Cannot find file {}, or organization org-mock does not have access to it.",
                self.input_file_id
            );
            return self.fail(
                t,
                vec![BatchError::new(
                    "invalid_request",
                    msg,
                    Some("file_id"),
                    None,
                )],
            );
        };
        if self.fate.token_limit {
            // like the real one: the file is read (for the model) but nothing runs
            let mut model = None;
            if self.flavor.is_openai() {
                model = input::parse(self.flavor, &input, None)
                    .ok()
                    .and_then(|p| p.model);
            }
            let model = model.unwrap_or_else(|| "mock-model".into());
            env.stats.fault("token_limit");
            let msg = format!(
                "Enqueued token limit reached for {model} in organization org-mock. Limit: 90,000 enqueued \
                 tokens. Please try again once some in_progress batches have been completed."
            );
            self.model = Some(model);
            return self.fail(
                t,
                vec![BatchError::new("token_limit_exceeded", msg, None, None)],
            );
        }
        let mut exec = Exec {
            faults: env.faults,
            pipeline: &self.pipeline,
            seen: env.seen,
            injected_4xx: 0,
            injected_5xx: 0,
            anthropic: self.flavor == Flavor::Anthropic,
        };
        match input::parse(self.flavor, &input, Some(&mut exec)) {
            Err(errors) => self.fail(t, errors),
            Ok(parsed) => {
                if let Some(limit) = env
                    .cfg
                    .max_enqueued_tokens
                    .filter(|_| self.flavor.is_openai())
                {
                    let tokens: u64 = parsed.tasks.iter().map(|t| t.prompt_tokens()).sum();
                    let held = env.enqueued.at(t);
                    if held + tokens > limit {
                        env.stats.fault("token_limit");
                        let model = parsed.model.unwrap_or_else(|| "mock-model".into());
                        let msg = format!(
                            "Enqueued token limit reached for {model} in organization org-mock. Limit: {limit} enqueued \
                             tokens. Please try again once some in_progress batches have been completed."
                        );
                        self.model = Some(model);
                        return self.fail(
                            t,
                            vec![BatchError::new("token_limit_exceeded", msg, None, None)],
                        );
                    }
                    env.enqueued.0.insert(self.seq, (t, None, tokens));
                }
                for _ in 0..exec.injected_4xx {
                    env.stats.fault("request_4xx");
                }
                for _ in 0..exec.injected_5xx {
                    env.stats.fault("request_5xx");
                }
                let mut tasks = parsed.tasks;
                // results come back in no particular order, like the real API
                tasks.shuffle(&mut StdRng::seed_from_u64(
                    env.faults.shuffle_seed(self.seq),
                ));
                self.model = parsed.model;
                self.total = tasks.len() as u64;
                self.tasks = tasks;
                self.input = None;
                self.status = Status::InProgress;
                self.stamps.in_progress_at = Some(self.clock.unix(t));
            }
        }
    }

    /// Ends the batch with the first `done` requests executed.
    fn finish(&mut self, status: Status, t: Instant, done: usize, env: &mut Env<'_>) {
        let tasks = std::mem::take(&mut self.tasks);
        env.enqueued.end(self.seq, t);
        let ts = self.clock.unix(t);
        let out = (self.render)(&self.id, &tasks, done, status, ts);
        // Anthropic ids carry a batch tag: count answers by the public id,
        // so the same record answered in two batches is seen as a duplicate.
        let anthropic = self.flavor == Flavor::Anthropic;
        env.stats.answered(
            &self.pipeline,
            out.answered.iter().map(|&i| {
                let id = tasks[i].custom_id.as_str();
                if anthropic {
                    strip_tag(id)
                } else {
                    id
                }
            }),
        );
        self.completed = out.answered.len() as u64;
        self.failed = tasks.len() as u64 - self.completed;
        self.unexecuted = (tasks.len() - done.min(tasks.len())) as u64;
        self.input_tokens = out.input_tokens;
        self.output_tokens = out.output_tokens;
        match self.flavor {
            Flavor::Generic | Flavor::Anthropic => self.results = Some(Bytes::from(out.output)),
            Flavor::OpenAi(..) => {
                if !out.output.is_empty() {
                    let name = format!("{}_output.jsonl", self.id);
                    self.output_file_id = Some(
                        env.files
                            .add(env.ids, name, "batch_output", out.output.into(), None)
                            .id,
                    );
                }
                if !out.errors.is_empty() {
                    let name = format!("{}_error.jsonl", self.id);
                    self.error_file_id = Some(
                        env.files
                            .add(env.ids, name, "batch_output", out.errors.into(), None)
                            .id,
                    );
                } else if env.cfg.faults.empty_error_file_id {
                    self.error_file_id = Some(String::new());
                }
            }
        }
        self.status = status;
        match status {
            Status::Completed => self.stamps.completed_at = Some(ts),
            Status::Expired => self.stamps.expired_at = Some(ts),
            _ => self.stamps.cancelled_at = Some(ts),
        }
    }

    /// Asks for cancellation (the batch must be up to date); a batch that
    /// has ended cannot be, and its status is the error.
    pub(crate) fn cancel(&mut self, now: Instant, cfg: &MockConfig) -> Result<(), Status> {
        match self.status {
            Status::Validating | Status::InProgress | Status::Finalizing => {
                let done = self.done_by(now, cfg);
                self.cancel = Some((now, done));
                self.status = Status::Cancelling;
                self.stamps.cancelling_at = Some(self.clock.unix(now));
                Ok(())
            }
            Status::Cancelling | Status::Cancelled => Ok(()),
            s => Err(s),
        }
    }
}
