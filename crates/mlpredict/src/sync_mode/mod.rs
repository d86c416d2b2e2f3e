//! Batch mode off (`ml.batch.enabled = false`): today's ML_PREDICT. Every
//! record is sent on its own to `model.endpoint`, at most
//! `ml.predict.max-concurrent-operations` at once, and emitted in input
//! order (`ORDERED`) or as answers arrive (`ALLOW_UNORDERED`), with the
//! same output contract and dead letters as batch mode.
//!
//! Exactly-once in the same sense as batch mode: what was emitted is
//! committed together with each lane's watermark (the end of the contiguous
//! prefix of emitted records) and, for ALLOW_UNORDERED, the records emitted
//! beyond the watermark — a group commit every [`COMMIT_INTERVAL`]. A
//! restart resumes at the watermark and skips what was already emitted
//! beyond it, so a crash re-sends only the records that were in flight or
//! answered after the last commit.
//!
//! - File sources ([`file`]): output appended and fsynced, then one SQLite
//!   transaction; on start the sinks are cut back to their committed length.
//! - Kafka sources ([`kafka`]): one Kafka transaction holds the output and
//!   dead-letter records, the lanes' sync state and the consumed offsets.

mod file;
mod input;
mod kafka;
mod window;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use batch_api::sync::{Answer, Auth, Client, Settings};
use batch_api::wire::{Task, WireFormat};
use pipeline_config::{OutputMode, PipelineConfig, Provider, SourceConfig};
use tokio::sync::watch;

/// Group commit: at most this long between an answer and its commit.
const COMMIT_INTERVAL: Duration = Duration::from_millis(200);
/// ...or this many bytes of output, whichever comes first.
const COMMIT_BYTES: usize = 8 << 20;
/// ALLOW_UNORDERED: records read but not yet behind the watermark, as a
/// multiple of max-concurrent-operations. Bounds the `ahead` set (and so
/// the state committed) when one record is stuck in retries.
const UNORDERED_WINDOW_FACTOR: usize = 16;
/// Lines read per turn of the loop before answers are looked at.
const READ_BURST: usize = 1024;

/// How a run ended and what it did.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub records_read: u64,
    pub ok: u64,
    pub errors: u64,
    pub dead_letters: u64,
    /// Records emitted before a restart and skipped this time.
    pub skipped: u64,
    /// Requests sent again (429, 5xx, timeouts).
    pub retries: u64,
    pub api_calls: u64,
    pub api_errors: u64,
    pub tokens: u64,
    pub wall: Duration,
    /// Where the output and the dead letters went (a path or a topic).
    pub output: String,
    pub dlq: String,
    pub interrupted: bool,
}

pub fn run(
    cfg: &PipelineConfig,
    rt: &tokio::runtime::Runtime,
    shutdown: Arc<AtomicBool>,
    progress: bool,
    until_idle: bool,
) -> anyhow::Result<Summary> {
    match &cfg.source {
        SourceConfig::File { .. } => rt.block_on(file::drive(cfg, shutdown, progress)),
        SourceConfig::Kafka(_) => kafka::run(cfg, rt, shutdown, progress, until_idle),
    }
}

/// Before batch mode runs a pipeline: refuse if an interrupted
/// ALLOW_UNORDERED synchronous run left records emitted beyond the
/// watermark, which batch mode would emit again.
pub fn check_no_records_ahead(cfg: &PipelineConfig) -> anyhow::Result<()> {
    file::check_no_records_ahead(cfg)
}

pub fn print_summary(s: &Summary) {
    println!(
        "\n{} records read in {:.1?} (synchronous mode)\n  emitted: {} ok, {} errors\n  dead letters: {}\n  API calls: {} ({} failed, {} retries)\n  tokens: {}\n  output: {}\n  dead letters: {}",
        s.records_read,
        s.wall,
        s.ok,
        s.errors,
        s.dead_letters,
        s.api_calls,
        s.api_errors,
        s.retries,
        s.tokens,
        s.output,
        s.dlq,
    );
    if s.skipped > 0 {
        println!("  skipped: {} (emitted before a restart)", s.skipped);
    }
    if s.interrupted {
        println!("  interrupted: run the same command again to resume");
    }
}

/// How many records may be read but not yet emitted, over all lanes.
fn window_cap(cfg: &PipelineConfig) -> usize {
    let max_concurrent = max_concurrent(cfg);
    if cfg.sync.output_mode == OutputMode::Ordered {
        max_concurrent
    } else {
        max_concurrent * UNORDERED_WINDOW_FACTOR
    }
}

fn max_concurrent(cfg: &PipelineConfig) -> usize {
    cfg.sync.max_concurrent_operations.max(1) as usize
}

fn client(cfg: &PipelineConfig, format: WireFormat, task: Task) -> anyhow::Result<Arc<Client>> {
    Ok(Arc::new(Client::new(&Settings {
        endpoint: &cfg.model.endpoint,
        api_key: cfg.model.api_key.as_ref().map(|k| k.expose()),
        auth: match cfg.model.provider {
            Provider::AzureOpenAi => Auth::Azure {
                api_version: cfg.model.api_version.as_deref(),
            },
            Provider::Anthropic => Auth::Anthropic {
                version: &cfg.model.anthropic_version,
            },
            Provider::OpenAi | Provider::Generic => Auth::Bearer,
        },
        pipeline: &cfg.name,
        output_field: &cfg.model.output,
        task,
        format,
        timeout: cfg.sync.timeout,
        max_retries: cfg.sync.max_retries,
        max_concurrent: max_concurrent(cfg),
    })?))
}

/// Count an answer; returns its output line, if it has one. The first
/// fatal answer is kept in `fatal` and stops every request in flight.
fn take_answer(
    answer: Answer,
    summary: &mut Summary,
    fatal: &mut Option<String>,
    stop: &watch::Sender<bool>,
) -> Option<Vec<u8>> {
    match answer {
        Answer::Emit {
            line,
            ok,
            tokens,
            retries,
        } => {
            if ok {
                summary.ok += 1;
            } else {
                summary.errors += 1;
            }
            summary.tokens += tokens;
            summary.retries += u64::from(retries);
            metrics::counter!("records_out_total", "status" => if ok { "ok" } else { "error" })
                .increment(1);
            metrics::counter!("tokens_total").increment(tokens);
            Some(line)
        }
        Answer::Dropped => None,
        Answer::Fatal(msg) => {
            if fatal.is_none() {
                tracing::error!("{msg}");
                *fatal = Some(msg);
                let _ = stop.send(true);
            }
            None
        }
    }
}

fn ensure_finished(fatal: Option<String>) -> anyhow::Result<()> {
    match fatal {
        Some(msg) => bail!("{msg} (what was emitted is committed; run again to resume)"),
        None => Ok(()),
    }
}

/// A spinner on a terminal, a log line every 5 s otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    last_log: Instant,
}

impl Progress {
    fn new(on_terminal: bool) -> Self {
        let bar = on_terminal.then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
            {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Self {
            bar,
            last_log: Instant::now(),
        }
    }

    fn update(&mut self, s: &Summary, inflight: usize) {
        metrics::gauge!("requests_in_flight").set(inflight as f64);
        let msg = format!(
            "read {} · emitted {} ok, {} errors · {} dead letters · {} requests in flight · {} API calls",
            s.records_read, s.ok, s.errors, s.dead_letters, inflight, s.api_calls
        );
        match &self.bar {
            Some(bar) => bar.set_message(msg),
            None if self.last_log.elapsed() >= Duration::from_secs(5) => {
                self.last_log = Instant::now();
                tracing::info!("{msg}");
            }
            None => {}
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// The dead-letter line, in batch mode's shape: `{line, position, raw, error}`.
fn write_dead_letter(out: &mut Vec<u8>, line_no: u64, pos: u64, raw: &[u8], reason: &str) {
    out.extend_from_slice(format!("{{\"line\":{line_no},\"position\":{pos},\"raw\":").as_bytes());
    let _ = serde_json::to_writer(&mut *out, &String::from_utf8_lossy(raw));
    out.extend_from_slice(b",\"error\":");
    let _ = serde_json::to_writer(&mut *out, reason);
    out.extend_from_slice(b"}\n");
}
