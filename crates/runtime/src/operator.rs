//! The [`Operator`] seam: a mode (batch or synchronous) as a unit that
//! turns records and answers into outputs, state changes and calls. It
//! does no durable IO itself: what must last goes into the [`Turn`], and
//! calls that depend on it wait until the driver reports the commit.

use batch_core::{LaneId, Millis};

use crate::ledger::{BatchRecords, LaneState, Record};
use crate::{Summary, Turn};

pub trait Operator {
    /// An answer to one of the operator's calls, sent back through the
    /// driver's channel tagged with the epoch it was asked in.
    type Answer: Send + 'static;

    /// Start, or start again, from the committed state of every lane held
    /// now (the lanes it had before are gone). `epoch` tags its calls from
    /// now on; answers of older epochs never reach it.
    fn open(&mut self, lanes: Vec<LaneState>, epoch: u64, now: Millis) -> anyhow::Result<()>;

    fn wants_records(&self) -> bool;

    fn on_record(&mut self, record: Record<'_>, turn: &mut Turn, now: Millis)
        -> anyhow::Result<()>;

    /// The lane has no more records.
    fn on_end(&mut self, lane: LaneId, turn: &mut Turn, now: Millis) -> anyhow::Result<()>;

    fn on_answer(
        &mut self,
        answer: Self::Answer,
        turn: &mut Turn,
        records: &mut dyn BatchRecords,
        now: Millis,
    ) -> anyhow::Result<()>;

    /// Time passed: timers, polls.
    fn tick(
        &mut self,
        turn: &mut Turn,
        records: &mut dyn BatchRecords,
        now: Millis,
    ) -> anyhow::Result<()>;

    /// Everything the operator put into turns so far is durable: release
    /// what waited for it. May put more into `turn`.
    fn committed(
        &mut self,
        turn: &mut Turn,
        records: &mut dyn BatchRecords,
        now: Millis,
    ) -> anyhow::Result<()>;

    /// A stop was requested (SIGINT/SIGTERM). Called at every turn from
    /// then on until it answers true; then the driver commits the turn and
    /// ends. The default ends at once: what is in flight is resumed by the
    /// next run. An operator whose calls answer soon (synchronous mode)
    /// starts none any more and waits for those in flight, so that no
    /// answer is paid for twice.
    fn stop(&mut self, _turn: &mut Turn, _now: Millis) -> bool {
        true
    }

    /// When [`tick`](Self::tick) has something to do next.
    fn next_wake(&self) -> Option<Millis>;

    /// Nothing in flight, nothing waiting.
    fn is_idle(&self) -> bool;

    /// `(in flight, queued)`, for progress lines and gauges.
    fn load(&self) -> (usize, usize);

    /// Add this operator's counts to the run summary.
    fn summarize(&self, summary: &mut Summary);

    /// The run ends; `cancel_inflight`: cancel what runs at the provider.
    fn finish(&mut self, cancel_inflight: bool);
}
