//! `mlpredict-bench`: run the benchmark suite (see `scripts/bench.sh`).

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use mlpredict_bench::{report, run, Options};

#[derive(Parser)]
#[command(
    name = "mlpredict-bench",
    about = "Benchmarks of mlpredict against its mock server"
)]
struct Cli {
    /// The mlpredict binary; default: `mlpredict` next to this binary.
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Scratch directory (the full run needs a few GB).
    #[arg(long, default_value = "target/bench")]
    work: PathBuf,
    /// Write the results between the markers of this Markdown file
    /// (default: docs/BENCHMARKS.md; with --smoke: WORK/BENCHMARKS.smoke.md).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Tiny sizes: every scenario in seconds, to keep the harness working.
    #[arg(long)]
    smoke: bool,
    /// Which scenarios: any of a (overhead), b (memory), c (API calls), d (batch vs sync),
    /// e (Kafka mode end to end; needs a broker).
    #[arg(long, default_value = "abcde")]
    only: String,
    /// The Kafka broker of scenario e (scripts/bench.sh starts scripts/kafka/broker.sh).
    #[arg(long, env = "MLPREDICT_KAFKA_BOOTSTRAP")]
    kafka_bootstrap: Option<String>,
    /// The broker's pid file, to report its CPU during (e) (scripts/bench.sh sets it).
    #[arg(long, env = "MLPREDICT_KAFKA_BROKER_PID_FILE")]
    kafka_broker_pid_file: Option<PathBuf>,
    /// Profile one (a) run with `perf record` and include the top symbols.
    #[arg(long)]
    perf: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let bin = match cli.bin {
        Some(b) => b,
        None => std::env::current_exe()?
            .parent()
            .context("no directory of the bench binary")?
            .join("mlpredict"),
    };
    let work = cli.work.join(if cli.smoke { "smoke" } else { "full" });
    let opts = Options {
        bin,
        work: work.clone(),
        smoke: cli.smoke,
        only: cli.only,
        perf: cli.perf,
        kafka_bootstrap: cli.kafka_bootstrap.filter(|b| !b.is_empty()),
        kafka_broker_pid_file: cli.kafka_broker_pid_file,
    };
    let rep = run(&opts)?;
    let out = cli.out.unwrap_or_else(|| {
        if cli.smoke {
            work.join("BENCHMARKS.smoke.md")
        } else {
            PathBuf::from("docs/BENCHMARKS.md")
        }
    });
    report::write_into(&out, &report::render(&rep))?;
    std::fs::write(
        work.join("results.json"),
        serde_json::to_string_pretty(&rep)?,
    )?;
    eprintln!(
        "results written to {} (raw: {})",
        out.display(),
        work.join("results.json").display()
    );
    Ok(())
}
