//! The benchmark suite of issue 5: the real `mlpredict` binary and its mock
//! server as separate processes, measured from outside.
//!
//! - (a) operator overhead: records/s and CPU µs/record through the file
//!   pipeline against `mock-server --instant`, by batch size and record size;
//! - (b) peak RSS with 100k / 1M / 5M records in flight;
//! - (c) API calls per 1,000 records by batch size and in-flight count;
//! - (d) batch vs synchronous mode on the same input under an RPM limit;
//! - (e) Kafka mode end to end (transactions, 1 and 2 instances of one
//!   consumer group) against the project's broker, every record counted.
//!
//! `run` returns a [`Report`]; `report::render` turns it into the Markdown
//! written to docs/BENCHMARKS.md. `--smoke` runs every scenario at a tiny
//! size in seconds (CI runs it through the crate's test; it never asserts
//! timings).
//!
//! Layout: `scenario/` holds one module per scenario; they share `ctx` (the
//! options, the processes of a run and the report being filled), `procs`
//! (running and measuring processes), `measure` (figures, the machine),
//! `config` (pipeline configurations, through the `toml` crate), `gen`
//! (inputs), `kafka` (topics, producing, counting), `rows` and `report` (the
//! report and its Markdown).

pub mod gen;
pub mod kafka;
pub mod procs;
pub mod report;

mod config;
mod ctx;
mod measure;
mod rows;
mod scenario;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::bail;

use ctx::Ctx;
pub use rows::*;
pub use scenario::e_kafka::KAFKA_PARTITIONS;

pub struct Options {
    /// The `mlpredict` binary (release build for real figures).
    pub bin: PathBuf,
    /// Scratch directory (inputs, outputs, logs); large in the full run.
    pub work: PathBuf,
    pub smoke: bool,
    /// Scenarios to run: any of `a`, `b`, `c`, `d`, `e`.
    pub only: String,
    /// Profile one (a) run with `perf record` (if perf is installed).
    pub perf: bool,
    /// The Kafka broker of (e) (`MLPREDICT_KAFKA_BOOTSTRAP`; scripts/bench.sh
    /// starts scripts/kafka/broker.sh). Without it (e) fails, or is skipped
    /// with a message at smoke sizes.
    pub kafka_bootstrap: Option<String>,
    /// The broker's pid file (scripts/kafka/broker.sh's `<data>/broker.pid`),
    /// if known: (e) reports the broker's CPU during each run.
    pub kafka_broker_pid_file: Option<PathBuf>,
}

/// (a) runs every cell this often and keeps the fastest run.
pub const OVERHEAD_REPEATS: usize = 2;

/// Synchronous rows of (a): requests in flight.
pub const SYNC_CONCURRENCY: u64 = 64;

/// The price table used for (d): gpt-4o-mini list prices, USD per 1M tokens.
pub const PRICE_INPUT_PER_M: f64 = 0.15;
pub const PRICE_OUTPUT_PER_M: f64 = 0.60;
/// The Batch API's discount.
pub const BATCH_DISCOUNT: f64 = 0.5;

pub fn run(o: &Options) -> anyhow::Result<Report> {
    let started = Instant::now();
    if !o.bin.exists() {
        bail!(
            "{} does not exist: build it first (cargo build --release -p mlpredict)",
            o.bin.display()
        );
    }
    let inputs = o.work.join("inputs");
    let logs = o.work.join("logs");
    std::fs::create_dir_all(&inputs)?;
    std::fs::create_dir_all(&logs)?;
    let mut cx = Ctx {
        o,
        inputs,
        logs,
        report: Report {
            smoke: o.smoke,
            machine: measure::machine(&o.bin),
            ..Report::default()
        },
    };
    if o.only.contains('a') {
        scenario::a_overhead::overhead(&mut cx)?;
        if o.perf {
            cx.report.profile = scenario::a_overhead::profile(&mut cx)?;
        }
    }
    if o.only.contains('b') {
        scenario::b_memory::memory(&mut cx)?;
    }
    if o.only.contains('c') {
        scenario::c_economy::economy(&mut cx)?;
    }
    if o.only.contains('d') {
        scenario::d_modes::modes(&mut cx)?;
    }
    if o.only.contains('e') {
        match o.kafka_bootstrap.clone() {
            Some(bootstrap) => scenario::e_kafka::kafka_e2e(&mut cx, &bootstrap)?,
            None if o.smoke => {
                let why = "no Kafka broker: MLPREDICT_KAFKA_BOOTSTRAP is not set \
                           (scripts/bench.sh and scripts/test.sh start one)";
                eprintln!("!! SKIPPING scenario (e), Kafka mode: {why}");
                cx.report.kafka_skipped = Some(why.into());
            }
            None => bail!(
                "scenario (e) needs a Kafka broker: set MLPREDICT_KAFKA_BOOTSTRAP \
                 (scripts/bench.sh starts scripts/kafka/broker.sh when e is selected)"
            ),
        }
    }
    cx.report.total_wall_s = started.elapsed().as_secs_f64();
    Ok(cx.report)
}
