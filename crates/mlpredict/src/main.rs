//! `mlpredict`: ML_PREDICT with a batch mode, as a stream processor.

mod emit;
mod failpoint;
mod files;
mod metrics_setup;
mod provider;
mod quickstart;
mod record;
mod runtime;
mod sink;
mod source;
mod status;
mod sync_mode;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "mlpredict",
    version,
    about = "Stream records through provider Batch APIs, exactly once"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline described by a TOML file.
    Run {
        #[arg(long, short)]
        config: PathBuf,
        /// Override a configuration key, Flink style: -D ml.batch.size=500
        #[arg(short = 'D', value_name = "KEY=VALUE")]
        define: Vec<String>,
        /// On SIGINT/SIGTERM, also cancel the batches in flight at the
        /// provider (by default they are resumed at the next start).
        #[arg(long)]
        cancel_inflight: bool,
        /// Kafka sources: stop once every assigned partition is processed up
        /// to the end it had when it was assigned (tests, backfills). File
        /// sources always stop at the end of the file.
        #[arg(long)]
        until_idle: bool,
    },
    /// Show a pipeline's batches from its state database.
    Status {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(short = 'D', value_name = "KEY=VALUE")]
        define: Vec<String>,
        /// Show every batch, not only the last 20 and the open ones.
        #[arg(long)]
        all: bool,
    },
    /// Serve a mock OpenAI-compatible Batch API (and the FLIP's protocol).
    MockServer(mock_server::MockArgs),
    /// Run the bundled example end to end against an in-process mock server.
    Quickstart {
        /// Where to write the example's files.
        #[arg(long, default_value = "quickstart-out")]
        dir: PathBuf,
        /// How many example records.
        #[arg(long, default_value_t = 300)]
        records: usize,
    },
}

fn main() -> std::process::ExitCode {
    init_tracing();
    match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("MLPREDICT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

fn real_main() -> anyhow::Result<std::process::ExitCode> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match cli.command {
        Command::Run {
            config,
            define,
            cancel_inflight,
            until_idle,
        } => {
            let cfg = pipeline_config::load(&config, &define)
                .with_context(|| format!("in {}", config.display()))?;
            let file_source = matches!(cfg.source, pipeline_config::SourceConfig::File { .. });
            if cancel_inflight && !(cfg.batch.enabled && file_source) {
                // Kafka lanes move to other instances, which resume their
                // batches; synchronous mode finishes its requests anyway.
                anyhow::bail!(
                    "--cancel-inflight applies to batch mode with a file source only (this pipeline: {})",
                    if cfg.batch.enabled { "kafka source" } else { "ml.batch.enabled = false" }
                );
            }
            metrics_setup::install(&cfg.metrics, &rt)?;
            let shutdown = shutdown_flag(&rt);
            let opts = runtime::Options {
                cancel_inflight,
                shutdown,
                progress: std::io::stderr().is_terminal(),
            };
            if !cfg.batch.enabled {
                let summary =
                    sync_mode::run(&cfg, &rt, opts.shutdown.clone(), opts.progress, until_idle)?;
                sync_mode::print_summary(&summary);
                return Ok(std::process::ExitCode::SUCCESS);
            }
            let summary = match &cfg.source {
                pipeline_config::SourceConfig::Kafka(_) => {
                    runtime::run_kafka(&cfg, rt.handle().clone(), opts, until_idle)?
                }
                pipeline_config::SourceConfig::File { .. } => {
                    sync_mode::check_no_records_ahead(&cfg)?;
                    runtime::run_batch(&cfg, rt.handle().clone(), opts)?
                }
            };
            quickstart::print_summary(&summary);
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Status {
            config,
            define,
            all,
        } => {
            let cfg = pipeline_config::load(&config, &define)
                .with_context(|| format!("in {}", config.display()))?;
            status::print(&cfg, all)?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::MockServer(args) => {
            rt.block_on(mock_server::run_cli(args))?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Quickstart { dir, records } => {
            quickstart::run(&rt, &dir, records)?;
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}

/// Set on SIGINT or SIGTERM; the pipeline stops reading, leaves its state
/// committed and exits 0. A second signal exits at once.
fn shutdown_flag(rt: &tokio::runtime::Runtime) -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    rt.spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        for _ in 0..2 {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            if f.swap(true, Ordering::SeqCst) {
                eprintln!("second signal: exiting now; state stays resumable");
                std::process::exit(130);
            }
        }
    });
    flag
}
