//! One batch's life cycle step by step: which call its step needs, how an
//! answer or a failure moves it on, when it gives up.

use crate::backoff::backoff_ms;
use crate::batch::{Batch, BatchFailure, Phase, RemoteState};
use crate::budget::{is_capacity_code, out_of_time, Budget};
use crate::events::{Action, Event, Failure, FailureKind, Remote};
use crate::planner::Lane;
use crate::{batch_id, seq_of, CoreConfig, Millis};

/// How far back adoption looks before the plan time, for clock skew.
const FIND_SKEW_MS: Millis = 10 * 60 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Upload,
    Create,
    Find,
    Poll,
    Cancel,
    Emit,
}

#[derive(Debug, Clone)]
pub(crate) struct Run {
    pub(crate) batch: Batch,
    pub(crate) started: bool,
    pub(crate) busy: bool,
    pub(crate) step: Step,
    pub(crate) wake_at: Millis,
    /// Consecutive failed calls, for backoff.
    pub(crate) call_failures: u32,
    /// Whole-batch failures (provider failed the batch, permanent errors).
    pub(crate) batch_failures: u32,
    pub(crate) quota_failures: u32,
    pub(crate) cancel_sent: bool,
    /// `batch.first_submitted_at` is in the durable row.
    pub(crate) first_durable: bool,
}

impl Run {
    pub(crate) fn new(batch: Batch, step: Step, now: Millis) -> Self {
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

pub(crate) fn event_batch(event: &Event) -> u64 {
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

pub(crate) fn step_action(
    cfg: &CoreConfig,
    run: &Run,
    lane: Option<&mut Lane>,
    now: Millis,
) -> Action {
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

pub(crate) fn schedule(run: &mut Run, step: Step, at: Millis) {
    run.step = step;
    run.wake_at = at;
}

pub(crate) fn retry_later(cfg: &CoreConfig, run: &mut Run, step: Step, f: &Failure, now: Millis) {
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

pub(crate) fn on_remote(
    cfg: &CoreConfig,
    run: &mut Run,
    remote: Remote,
    now: Millis,
    out: &mut Vec<Action>,
) {
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

pub(crate) fn persist(run: &mut Run, out: &mut Vec<Action>) {
    run.first_durable = run.batch.first_submitted_at.is_some();
    out.push(Action::Persist(run.batch.clone()));
}

pub(crate) fn on_failure(
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
