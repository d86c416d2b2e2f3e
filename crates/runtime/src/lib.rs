//! The one driver of mlpredict (DESIGN.md §12).
//!
//! A pipeline is a [`Driver`] running one [`Operator`] (a mode: the batch
//! operator around `batch-core`, or the synchronous one) over one
//! [`Ledger`] (where records come from and where a turn is made durable:
//! files + SQLite, Kafka transactions, or memory for simulation). The
//! driver owns every rule that makes exactly-once true around the
//! operator, once:
//!
//! - a [`Turn`] collects what one loop turn produced (outputs, dead
//!   letters, state changes); the ledger commits it as ONE atomic unit;
//! - provider calls that depend on a turn are released only after the
//!   ledger committed it (write-ahead by deferral);
//! - an aborted commit or a lane change (Kafka rebalance) rebuilds the
//!   operator from the ledger, as a restart would, and answers to calls
//!   made before that carry an older epoch and are dropped;
//! - graceful shutdown, `--until-idle`, progress and the run summary.

pub mod ahead;
pub mod batch;
mod driver;
pub mod failpoint;
pub mod ledger;
mod operator;
pub mod progress;
pub mod provider;
pub mod record;
pub mod sink_rows;
pub mod sync;
mod turn;

pub use driver::{Driver, Env, Options, RealEnv, Summary};
pub use ledger::{CommitError, Intake, LaneState, Ledger, Record, RecordKind};
pub use operator::Operator;
pub use turn::{LaneMark, Lines, Turn};

/// Milliseconds since the Unix epoch, from the system clock.
pub fn now_ms() -> batch_core::Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
