//! The loop: read, answer, tick, commit, release; the same for every
//! ledger and every operator.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Duration;

use batch_core::Millis;

use crate::ledger::{CommitError, Intake, Ledger};
use crate::operator::Operator;
use crate::progress::Progress;
use crate::sink_rows::SinkRows;
use crate::Turn;

/// Output and dead-letter bytes after which a turn is committed before
/// more answers are taken in.
const MAX_TURN_BYTES: usize = 4 << 20;

/// How a run ended and what it did, for the summary and for tests.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub records_read: u64,
    pub ok: u64,
    pub errors: u64,
    pub dead_letters: u64,
    pub retried: u64,
    /// Records emitted before a restart and skipped this time (sync mode).
    pub skipped: u64,
    /// Requests sent again (sync mode: 429, 5xx, timeouts).
    pub retries: u64,
    pub batches_submitted: u64,
    pub batches_emitted: u64,
    /// Decoupled mode's submitter: batches handed to the poller.
    pub batches_handed_off: u64,
    pub api_calls: u64,
    pub api_errors: u64,
    pub tokens: u64,
    pub wall: Duration,
    /// Where the output and the dead letters went (a path or a topic).
    pub output: String,
    pub dlq: String,
    pub interrupted: bool,
}

impl Summary {
    /// Add the counts of `other` (an operator's) to these.
    pub fn add_counts(&mut self, other: &Summary) {
        self.records_read += other.records_read;
        self.ok += other.ok;
        self.errors += other.errors;
        self.dead_letters += other.dead_letters;
        self.retried += other.retried;
        self.skipped += other.skipped;
        self.retries += other.retries;
        self.batches_submitted += other.batches_submitted;
        self.batches_emitted += other.batches_emitted;
        self.batches_handed_off += other.batches_handed_off;
        self.api_calls += other.api_calls;
        self.api_errors += other.api_errors;
        self.tokens += other.tokens;
    }
}

pub struct Options {
    /// Records handed to the operator per turn at most.
    pub read_burst: usize,
    /// How long a turn that read nothing waits for an answer at most.
    pub idle_wait: Duration,
    /// How long a read waits for its first record.
    pub read_wait: Duration,
    pub cancel_inflight: bool,
    pub progress: bool,
}

/// Time, answers and the stop signal: the real ones, or a simulation's.
pub trait Env<A> {
    fn now(&self) -> Millis;
    fn try_answer(&mut self) -> Option<(u64, A)>;
    /// Wait at most `timeout` for an answer.
    fn wait_answer(&mut self, timeout: Duration) -> Option<(u64, A)>;
    fn stop_requested(&self) -> bool;
}

/// The process's clock, its calls' answer channel and SIGTERM.
pub struct RealEnv<A> {
    pub answers: Receiver<(u64, A)>,
    pub shutdown: Arc<AtomicBool>,
}

impl<A> Env<A> for RealEnv<A> {
    fn now(&self) -> Millis {
        crate::now_ms()
    }

    fn try_answer(&mut self) -> Option<(u64, A)> {
        self.answers.try_recv().ok()
    }

    fn wait_answer(&mut self, timeout: Duration) -> Option<(u64, A)> {
        // Timed out, or disconnected (the operator holds a sender for as
        // long as it lives).
        self.answers.recv_timeout(timeout).ok()
    }

    fn stop_requested(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }
}

pub struct Driver<L, O: Operator, E> {
    pub ledger: L,
    pub operator: O,
    pub env: E,
    opts: Options,
    turn: Turn,
    /// Incremented at every rebuild; answers of older epochs are dropped.
    epoch: u64,
    records_read: u64,
    interrupted: bool,
    /// The sink's rows and FAILOVER, when configured.
    rows: Option<SinkRows>,
    /// Output lines of `turn` shaped by `rows` already.
    shaped: usize,
}

impl<L: Ledger, O: Operator, E: Env<O::Answer>> Driver<L, O, E> {
    pub fn new(ledger: L, operator: O, env: E, opts: Options) -> Self {
        Self {
            ledger,
            operator,
            env,
            opts,
            turn: Turn::default(),
            epoch: 0,
            records_read: 0,
            interrupted: false,
            rows: None,
            shaped: 0,
        }
    }

    /// Shape output lines into the sink's rows before each commit.
    pub fn with_sink_rows(mut self, rows: Option<SinkRows>) -> Self {
        self.rows = rows;
        self
    }

    /// Run until the ledger is finished and the operator idle, or until a
    /// stop is requested (then everything staged is committed first).
    pub fn run(&mut self) -> anyhow::Result<Summary> {
        let mut progress = Progress::new(self.opts.progress);
        let result = self.run_loop(&mut progress);
        self.operator
            .finish(self.opts.cancel_inflight && self.interrupted);
        let summary = self.summary();
        progress.finish(&summary);
        result.map(|()| summary)
    }

    /// The counts so far.
    pub fn summary(&self) -> Summary {
        let (output, dlq) = self.ledger.targets();
        let mut s = Summary {
            records_read: self.records_read,
            output,
            dlq,
            interrupted: self.interrupted,
            ..Summary::default()
        };
        self.operator.summarize(&mut s);
        s.dead_letters += self.rows.as_ref().map_or(0, SinkRows::dead_letters);
        s
    }

    fn run_loop(&mut self, progress: &mut Progress) -> anyhow::Result<()> {
        loop {
            if !self.step()? {
                return Ok(());
            }
            let (inflight, queued) = self.operator.load();
            if progress.due() {
                progress.update(&self.summary(), inflight, queued);
            }
            metrics::gauge!("batches_in_flight").set(inflight as f64);
        }
    }

    /// One turn; false once the run is over.
    pub fn step(&mut self) -> anyhow::Result<bool> {
        if self.env.stop_requested() {
            let now = self.env.now();
            if self.operator.stop(&mut self.turn, now) {
                self.commit()?;
                self.interrupted = true;
                tracing::info!(
                    "stopping: state is committed; run the same command again to resume"
                );
                return Ok(false);
            }
        }
        if let Some(lanes) = self.ledger.lane_changes()? {
            tracing::info!(lanes = ?lanes, "lanes assigned; resuming them from the committed state");
            self.rebuild(lanes)?;
        }
        // Answers that arrived together are handled together: what they
        // lead to shares one commit.
        while let Some((epoch, answer)) = self.env.try_answer() {
            self.answer(epoch, answer)?;
            // Memory stays flat: a turn holds at most a few MB of output
            // (downloads keep arriving while answers are drained).
            if self.turn.bytes() >= MAX_TURN_BYTES {
                self.commit()?;
            }
        }
        let read = self.read()?;
        let now = self.env.now();
        self.operator
            .tick(&mut self.turn, self.ledger.records(), now)?;
        self.commit()?;
        // The ledger last: a Kafka ledger may ask the group.
        if self.operator.is_idle() && self.turn.is_empty() && self.ledger.finished() {
            return Ok(false);
        }
        if read == 0 {
            let now = self.env.now();
            let wait = self
                .operator
                .next_wake()
                .map_or(self.opts.idle_wait, |w| {
                    Duration::from_millis(w.saturating_sub(now))
                })
                .min(self.opts.idle_wait);
            if let Some((epoch, answer)) = self.env.wait_answer(wait) {
                self.answer(epoch, answer)?;
                self.commit()?;
            }
        }
        Ok(true)
    }

    fn answer(&mut self, epoch: u64, answer: O::Answer) -> anyhow::Result<()> {
        if epoch != self.epoch {
            return Ok(()); // asked before a rebuild: its lane state is gone
        }
        let now = self.env.now();
        self.operator
            .on_answer(answer, &mut self.turn, self.ledger.records(), now)
    }

    fn read(&mut self) -> anyhow::Result<usize> {
        let wants = self.operator.wants_records();
        self.ledger.pause(!wants);
        let max = if wants { self.opts.read_burst } else { 0 };
        let (op, turn, env) = (&mut self.operator, &mut self.turn, &self.env);
        let read = self.ledger.read(max, self.opts.read_wait, &mut |intake| {
            let now = env.now();
            match intake {
                Intake::Record(r) => op.on_record(r, turn, now)?,
                Intake::End(lane) => op.on_end(lane, turn, now)?,
            }
            Ok(op.wants_records())
        })?;
        self.records_read += read as u64;
        metrics::counter!("records_in_total").increment(read as u64);
        Ok(read)
    }

    /// Commit the turn, then release what waited for it; what that
    /// produces is committed in the same way until nothing is left.
    fn commit(&mut self) -> anyhow::Result<()> {
        while !self.turn.is_empty() {
            if let Some(rows) = &mut self.rows {
                // A failover leaves the turn uncommitted: a rerun resumes
                // from the last commit, as after a crash.
                rows.apply(&mut self.turn, self.shaped)?;
                self.shaped = self.turn.outputs.len();
            }
            match self.ledger.commit(&self.turn) {
                Ok(()) => {
                    self.turn.clear();
                    self.shaped = 0;
                    let now = self.env.now();
                    self.operator
                        .committed(&mut self.turn, self.ledger.records(), now)?;
                }
                Err(CommitError::Aborted(e)) => {
                    tracing::warn!(error = %e, "commit aborted; resuming from the committed state");
                    let lanes = self.ledger.lanes();
                    return self.rebuild(lanes);
                }
                // The next turn rebuilds for the new lanes, dropping this one.
                Err(CommitError::Rebalanced) => return Ok(()),
                Err(CommitError::Fatal(e)) => return Err(e),
            }
        }
        Ok(())
    }

    /// Start the operator again from what the ledger holds, as a restart
    /// would: what was staged is dropped, answers in flight are ignored.
    fn rebuild(&mut self, lanes: Vec<batch_core::LaneId>) -> anyhow::Result<()> {
        self.epoch += 1;
        self.turn.clear();
        self.shaped = 0;
        let mut states = Vec::with_capacity(lanes.len());
        for lane in lanes {
            states.push(self.ledger.restore(lane)?);
        }
        let now = self.env.now();
        self.operator.open(states, self.epoch, now)
    }
}
