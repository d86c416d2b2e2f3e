//! `mlpredict`: ML_PREDICT with a batch mode, as a stream processor.

mod logging;
mod metrics_setup;
mod quickstart;
mod runtime;
mod sql_cmd;
mod status;
mod sync_mode;

use ::runtime::provider;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "mlpredict",
    version,
    about = "Stream records through provider Batch APIs, exactly once"
)]
#[command(after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format on stderr: `text` (coloured only on a terminal; NO_COLOR
    /// turns colour off) or `json` (one object per line, for log shippers).
    /// The level is set by MLPREDICT_LOG (default `info`; e.g. `debug`,
    /// `warn,mlpredict=debug`).
    #[arg(long, global = true, value_enum, default_value_t = logging::Format::Text, env = "MLPREDICT_LOG_FORMAT")]
    log_format: logging::Format,
}

const EXIT_CODES: &str = "\
Exit codes: 0 done (a file pipeline: every record emitted), 1 error (the message says \
what to do), 2 bad command line, 130 interrupted by SIGINT, 143 interrupted by SIGTERM \
(state committed: run the same command again to resume).";

/// 128 + the signal number, as shells report a process killed by it.
const EXIT_SIGINT: u8 = 130;
const EXIT_SIGTERM: u8 = 143;

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline described by a TOML file.
    #[command(after_help = EXIT_CODES)]
    Run {
        /// The pipeline's TOML file (every key: docs/CONFIG.md).
        #[arg(long, short)]
        config: PathBuf,
        /// Override a configuration key, Flink style: -D ml.batch.size=500
        /// (repeatable; later ones win).
        #[arg(short = 'D', value_name = "KEY=VALUE")]
        define: Vec<String>,
        /// On SIGINT/SIGTERM, also cancel the batches in flight at the
        /// provider (by default they are resumed at the next start).
        #[arg(long)]
        cancel_inflight: bool,
        /// Kafka sources: stop once the group's input is done: every
        /// partition committed (by any instance) up to the end it had when
        /// this one started, no batch of it open (tests, backfills). File
        /// sources always stop at the end of the file.
        #[arg(long)]
        until_idle: bool,
        /// Kafka sources: this instance's id, the same at every restart
        /// (it names the transactional producer and the static group
        /// member, so a restart fences what a killed run left open). Unique
        /// per running instance, e.g. a StatefulSet pod's name. Default:
        /// {hostname}-{N}, N the lowest slot free on this machine.
        #[arg(long, env = "MLPREDICT_INSTANCE_ID", value_name = "ID")]
        instance_id: Option<String>,
    },
    /// Run a Flink SQL job (SET, CREATE TABLE, CREATE MODEL, INSERT INTO ...
    /// SELECT ... FROM ML_PREDICT(...)): README "Flink SQL".
    #[command(after_help = EXIT_CODES)]
    Sql(sql_cmd::SqlArgs),
    /// Show a pipeline's batches from its state database (or topic); with
    /// --serve, as the status page.
    #[command(after_help = STATUS_COLUMNS)]
    Status {
        /// The pipeline's TOML file, as given to `run`.
        #[arg(long, short)]
        config: PathBuf,
        /// Override a configuration key, as for `run` (use the same ones,
        /// so that the state is found where `run` keeps it).
        #[arg(short = 'D', value_name = "KEY=VALUE")]
        define: Vec<String>,
        /// Show every batch, not only the last 20 and the open ones.
        #[arg(long)]
        all: bool,
        /// Serve the status page on this port (HTML at /, JSON at
        /// /status.json; 0: any free port, logged) until interrupted,
        /// instead of printing once. Listens on `ui.bind`.
        #[arg(long, value_name = "PORT")]
        serve: Option<u16>,
    },
    /// Serve a mock Batch API: OpenAI-compatible, Azure OpenAI, Anthropic
    /// Message Batches and the FLIP's protocol, plus synchronous endpoints.
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

const STATUS_COLUMNS: &str = "\
Columns: id = the batch's row in the state database; batch_number = the FLIP's id \
({pipeline}-{lane}-{first}-{end}, -rN for the N-th retry); phase = planned, uploaded, \
submitted, finished (at the provider, results not yet emitted) or emitted; records = \
requests in the batch; gen = 0 for a batch cut from the input, N for the N-th retry \
batch of its records; att = provider submission attempt, from 0; age = since the batch \
was cut; provider batch = the provider's batch id; state / failure = the provider's \
last state, or why the batch failed.";

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

/// Exit code of a run: 0 when done, 128 + the signal when it stopped
/// because of one (resumable).
fn run_exit_code(interrupted: bool) -> std::process::ExitCode {
    if !interrupted {
        return std::process::ExitCode::SUCCESS;
    }
    match SIGNAL.load(Ordering::SeqCst) {
        SIGINT => std::process::ExitCode::from(EXIT_SIGINT),
        _ => std::process::ExitCode::from(EXIT_SIGTERM),
    }
}

fn load_config(
    config: &std::path::Path,
    define: &[String],
) -> anyhow::Result<pipeline_config::PipelineConfig> {
    load_config_with(pipeline_config::load, config, define)
}

/// `load`: [`pipeline_config::load`] or one of its variants.
fn load_config_with(
    load: fn(
        &std::path::Path,
        &[String],
    ) -> Result<pipeline_config::PipelineConfig, pipeline_config::ConfigError>,
    config: &std::path::Path,
    define: &[String],
) -> anyhow::Result<pipeline_config::PipelineConfig> {
    load(config, define).map_err(|e| match e.origin(config, define) {
        Some(origin) => anyhow::Error::new(e).context(origin),
        None => anyhow::Error::new(e),
    })
}

fn real_main(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
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
            instance_id,
        } => {
            let cfg = load_config(&config, &define)?;
            run_pipeline(
                &cfg,
                &rt,
                cancel_inflight,
                until_idle,
                instance_id.as_deref(),
            )
        }
        Command::Sql(args) => sql_cmd::run(args, &rt),
        Command::Status {
            config,
            define,
            all,
            serve,
        } => {
            // Status only reads state: the API key's variable need not be set.
            let cfg = load_config_with(pipeline_config::load_without_secrets, &config, &define)?;
            match serve {
                Some(port) => status::serve::run(&cfg, port, &rt)?,
                None => status::text::print(&status::read(&cfg)?, all),
            }
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

/// Run a validated pipeline: the `run` command, and `sql` without
/// `--explain`.
fn run_pipeline(
    cfg: &pipeline_config::PipelineConfig,
    rt: &tokio::runtime::Runtime,
    cancel_inflight: bool,
    until_idle: bool,
    instance_id: Option<&str>,
) -> anyhow::Result<std::process::ExitCode> {
    if cfg.decoupled() {
        // Until the submitter is wired, running inline would poll and emit
        // what a poller is configured to emit.
        anyhow::bail!(
            "ml.batch.mode = \"decoupled\" is not available in this build yet; use \"inline\""
        );
    }
    let file_source = matches!(cfg.source, pipeline_config::SourceConfig::File { .. });
    if cancel_inflight && !(cfg.batch.enabled && file_source) {
        // Kafka lanes move to other instances, which resume their
        // batches; synchronous mode finishes its requests anyway.
        anyhow::bail!(
            "--cancel-inflight applies to batch mode with a file source only (this pipeline: {})",
            if cfg.batch.enabled {
                "kafka source"
            } else {
                "ml.batch.enabled = false"
            }
        );
    }
    metrics_setup::install(cfg, rt)?;
    let live = Arc::new(status::live::Live::new());
    status::serve::spawn(cfg, live.clone(), rt)?;
    let shutdown = shutdown_flag(rt);
    let opts = runtime::Options {
        cancel_inflight,
        shutdown,
        progress: std::io::stderr().is_terminal(),
        live,
    };
    if !cfg.batch.enabled {
        let summary = sync_mode::run(cfg, rt.handle().clone(), opts, until_idle, instance_id)?;
        sync_mode::print_summary(&summary);
        return Ok(run_exit_code(summary.interrupted));
    }
    let summary = match &cfg.source {
        pipeline_config::SourceConfig::Kafka(_) => {
            runtime::run_kafka(cfg, rt.handle().clone(), opts, until_idle, instance_id)?
        }
        // The batch operator refuses a lane an interrupted
        // ALLOW_UNORDERED synchronous run left records ahead in.
        pipeline_config::SourceConfig::File { .. } => {
            runtime::run_batch(cfg, rt.handle().clone(), opts)?
        }
    };
    quickstart::print_summary(&summary);
    Ok(run_exit_code(summary.interrupted))
}

const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;
/// The first signal received (0: none): it decides the exit code.
static SIGNAL: AtomicI32 = AtomicI32::new(0);

/// Set on SIGINT or SIGTERM; the pipeline stops reading, leaves its state
/// committed and exits 130 or 143. A second signal exits at once.
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
            let sig = tokio::select! {
                _ = term.recv() => SIGTERM,
                _ = int.recv() => SIGINT,
            };
            let _ = SIGNAL.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
            if f.swap(true, Ordering::SeqCst) {
                eprintln!("second signal: exiting now; state stays resumable");
                std::process::exit(128 + sig);
            }
        }
    });
    flag
}
