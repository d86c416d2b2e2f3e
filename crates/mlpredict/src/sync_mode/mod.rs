//! Batch mode off (`ml.batch.enabled = false`): today's ML_PREDICT. Every
//! record is sent on its own to `model.endpoint`, at most
//! `ml.predict.max-concurrent-operations` at once, and emitted in input
//! order (`ORDERED`) or as answers arrive (`ALLOW_UNORDERED`), with the
//! same output contract and dead letters as batch mode.
//!
//! Exactly-once in the same sense as batch mode: output lines are appended
//! and fsynced, then the watermark (the end of the contiguous prefix of
//! emitted records), the sink lengths and, for ALLOW_UNORDERED, the records
//! emitted beyond the watermark are committed in one SQLite transaction —
//! a group commit every [`COMMIT_INTERVAL`]. On start the sinks are cut
//! back to their committed length and reading resumes at the watermark,
//! skipping what was already emitted beyond it, so a crash re-sends only
//! the records that were in flight or answered after the last commit.

mod client;
mod input;
mod state;
mod window;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use pipeline_config::{OutputMode, PipelineConfig, Provider, SinkConfig, SourceConfig};
use state_store::Store;
use tokio::sync::{mpsc, watch};

use crate::provider;
use crate::record::Fields;
use crate::sink::FileSink;
use client::{Answer, Client, Done, Job, Settings};
use window::{Emitted, Kind, Window};

const LANE: u32 = 0;
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
    pub output: PathBuf,
    pub dlq: PathBuf,
    pub interrupted: bool,
}

pub fn run(
    cfg: &PipelineConfig,
    rt: &tokio::runtime::Runtime,
    shutdown: Arc<AtomicBool>,
    progress: bool,
) -> anyhow::Result<Summary> {
    rt.block_on(drive(cfg, shutdown, progress))
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
        s.output.display(),
        s.dlq.display(),
    );
    if s.skipped > 0 {
        println!("  skipped: {} (emitted before a restart)", s.skipped);
    }
    if s.interrupted {
        println!("  interrupted: run the same command again to resume");
    }
}

struct Pipeline {
    window: Window,
    em: Emitted,
    output: FileSink,
    dlq: FileSink,
    prefix: input::PrefixHash,
    committer: state::Committer,
    /// What the last commit said: (watermark, output len, dlq len, ahead).
    committed: (u64, u64, u64, String),
    last_commit: Instant,
}

impl Pipeline {
    /// Append + fsync what was emitted, then commit it with the watermark.
    fn commit(&mut self) -> anyhow::Result<()> {
        if !self.em.out.is_empty() {
            self.output.append(&self.em.out)?;
            self.output.sync()?;
            self.em.out.clear();
        }
        if !self.em.dlq.is_empty() {
            self.dlq.append(&self.em.dlq)?;
            self.dlq.sync()?;
            self.em.dlq.clear();
        }
        self.last_commit = Instant::now();
        let now = (
            self.window.watermark(),
            self.output.len(),
            self.dlq.len(),
            self.window.ahead_meta(),
        );
        if now == self.committed {
            return Ok(());
        }
        crate::failpoint::hit("sync-before-commit");
        let fp = self.prefix.advance_to(now.0)?;
        self.committer.commit(
            LANE,
            now.0,
            &fp,
            &[("output", now.1), ("dlq", now.2)],
            &[(state::AHEAD_KEY, &now.3)],
        )?;
        self.committed = now;
        Ok(())
    }
}

async fn drive(
    cfg: &PipelineConfig,
    shutdown: Arc<AtomicBool>,
    progress_on_terminal: bool,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let SourceConfig::File { path: input_path } = &cfg.source else {
        bail!("synchronous mode (ml.batch.enabled = false) reads file sources only in this build")
    };
    let SinkConfig::File {
        path: out_path,
        dlq_path,
    } = &cfg.sink
    else {
        bail!("synchronous mode (ml.batch.enabled = false) writes file sinks only in this build")
    };
    let (format, task) = provider::wire_of(&cfg.model)?;
    let template = provider::template(&cfg.model, format, task);
    let sync = &cfg.sync;
    let ordered = sync.output_mode == OutputMode::Ordered;
    let max_concurrent = sync.max_concurrent_operations.max(1) as usize;
    let window_cap = if ordered {
        max_concurrent
    } else {
        max_concurrent * UNORDERED_WINDOW_FACTOR
    };

    // State: the same database and layout as batch mode.
    let dir = cfg.batch.local_dir.join(&cfg.name);
    let store = Store::open(&dir)?;
    let snap = store.load()?;
    if !snap.open_batches.is_empty() {
        bail!(
            "pipeline `{}` has {} batches from batch mode not yet emitted; finish them with ml.batch.enabled = true before running it in synchronous mode",
            cfg.name,
            snap.open_batches.len()
        );
    }
    let watermark = snap
        .lanes
        .iter()
        .find(|(l, _)| *l == LANE)
        .map_or(0, |(_, w)| *w);
    let source_len = std::fs::metadata(input_path)
        .with_context(|| format!("cannot open source.path {}", input_path.display()))?
        .len();
    if source_len < watermark {
        bail!(
            "source.path {} holds {source_len} bytes but this pipeline already consumed {watermark}: the input was truncated or replaced; \
             restore it, or start a new pipeline (another pipeline.name or ml.batch.local.dir)",
            input_path.display()
        );
    }
    let (mut input, prefix) = input::open(input_path, watermark)
        .with_context(|| format!("cannot read source.path {}", input_path.display()))?;
    if watermark > 0 {
        let stored = store.lane_fingerprint(LANE)?;
        if stored.is_some_and(|s| s != prefix.fingerprint()) {
            bail!(
                "source.path {} changed before the position this pipeline already consumed ({watermark} bytes): \
                 it was edited or replaced; only appending is allowed while a pipeline resumes",
                input_path.display()
            );
        }
    }
    let mut restored = match store.meta(state::AHEAD_KEY)? {
        Some(v) => match window::decode_ahead(&v, watermark).map_err(anyhow::Error::msg)? {
            Some(set) => set,
            None => {
                tracing::warn!("records emitted out of order by an earlier synchronous run no longer apply (the watermark moved since); ignoring them");
                BTreeSet::new()
            }
        },
        None => BTreeSet::new(),
    };
    let output = FileSink::open(out_path, snap.sinks.get("output").copied())?;
    let dlq = FileSink::open(dlq_path, snap.sinks.get("dlq").copied())?;
    let committer = state::Committer::open(store.path())?;
    drop(store);
    if watermark > 0 || !restored.is_empty() {
        tracing::info!(
            watermark,
            already_emitted_ahead = restored.len(),
            "resuming from the last commit"
        );
    }

    let client = Arc::new(Client::new(&Settings {
        endpoint: &cfg.model.endpoint,
        api_key: cfg.model.api_key.as_ref().map(|k| k.expose()),
        auth: match cfg.model.provider {
            Provider::AzureOpenAi => client::Auth::Azure {
                api_version: cfg.model.api_version.as_deref(),
            },
            Provider::Anthropic => client::Auth::Anthropic {
                version: &cfg.model.anthropic_version,
            },
            Provider::OpenAi | Provider::Generic => client::Auth::Bearer,
        },
        pipeline: &cfg.name,
        lane: LANE,
        output_field: &cfg.model.output,
        task,
        format,
        timeout: sync.timeout,
        max_retries: sync.max_retries,
        max_concurrent,
    })?);
    let fields = Fields {
        input: &cfg.model.input,
        output: &cfg.model.output,
    };

    let mut p = Pipeline {
        window: Window::new(ordered, watermark),
        em: Emitted::default(),
        output,
        dlq,
        prefix,
        committer,
        committed: (u64::MAX, 0, 0, String::new()),
        last_commit: Instant::now(),
    };
    // Owns the sinks from now on, even if nothing is emitted.
    {
        let ahead = window::encode_ahead(watermark, &restored);
        let fp = p.prefix.advance_to(watermark)?;
        let (o, d) = (p.output.len(), p.dlq.len());
        p.committer.commit(
            LANE,
            watermark,
            &fp,
            &[("output", o), ("dlq", d)],
            &[(state::AHEAD_KEY, &ahead)],
        )?;
        p.committed = (watermark, o, d, ahead);
    }

    let mut summary = Summary {
        output: out_path.clone(),
        dlq: dlq_path.clone(),
        ..Summary::default()
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<Done>();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut inflight = 0usize;
    let mut eof = false;
    let mut stopping = false;
    let mut fatal: Option<String> = None;
    let mut body = Vec::with_capacity(1024);
    let mut progress = Progress::new(progress_on_terminal);

    loop {
        if !stopping && shutdown.load(Ordering::SeqCst) {
            stopping = true;
            summary.interrupted = true;
            let _ = stop_tx.send(true);
            tracing::info!(
                inflight,
                "stopping: waiting for the requests in flight, then committing"
            );
        }
        // Read while there is room in the window.
        let mut read = 0;
        while !eof
            && !stopping
            && fatal.is_none()
            && inflight < max_concurrent
            && p.window.records() < window_cap
            && read < READ_BURST
        {
            let Some(line) = input.next_line()? else {
                eof = true;
                break;
            };
            read += 1;
            let (pos, next) = (line.pos, line.next);
            if line.line.trim_ascii().is_empty() {
                p.window.push(pos, next, Kind::Blank, &mut p.em);
                continue;
            }
            summary.records_read += 1;
            if restored.remove(&pos) {
                summary.skipped += 1;
                p.window.push(pos, next, Kind::Skip, &mut p.em);
                continue;
            }
            match fields.parse(line.line) {
                Ok(usable) => {
                    body.clear();
                    template.write_sync_body(&mut body, usable.input.get().as_bytes());
                    let job = Job {
                        seq: p.window.push(pos, next, Kind::Request, &mut p.em),
                        pos,
                        record: line.line.to_vec(),
                        body: Bytes::copy_from_slice(&body),
                    };
                    inflight += 1;
                    let (c, stop, tx) = (client.clone(), stop_rx.clone(), tx.clone());
                    tokio::spawn(async move {
                        let _ = tx.send(c.call(job, stop).await);
                    });
                }
                Err(reason) => {
                    let mut dead = Vec::with_capacity(line.line.len() + 96);
                    write_dead_letter(&mut dead, line.line_no, pos, line.line, &reason.0);
                    summary.dead_letters += 1;
                    p.window.push(pos, next, Kind::Dead(dead), &mut p.em);
                }
            }
        }
        metrics::counter!("records_in_total").increment(read as u64);

        while let Ok(done) = rx.try_recv() {
            inflight -= 1;
            on_done(done, &mut p, &mut summary, &mut fatal, &stop_tx);
        }
        if inflight == 0 && (eof || stopping || fatal.is_some()) {
            break;
        }
        if p.em.len() >= COMMIT_BYTES || p.last_commit.elapsed() >= COMMIT_INTERVAL {
            p.commit()?;
            summary.api_calls = client.calls.load(Ordering::Relaxed);
            progress.update(&summary, inflight);
        }
        let can_read = !eof
            && !stopping
            && fatal.is_none()
            && inflight < max_concurrent
            && p.window.records() < window_cap;
        if !can_read {
            let wait = COMMIT_INTERVAL
                .saturating_sub(p.last_commit.elapsed())
                .min(Duration::from_millis(50));
            tokio::select! {
                Some(done) = rx.recv() => {
                    inflight -= 1;
                    on_done(done, &mut p, &mut summary, &mut fatal, &stop_tx);
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
    p.commit()?;
    summary.api_calls = client.calls.load(Ordering::Relaxed);
    summary.api_errors = client.failed_calls.load(Ordering::Relaxed);
    summary.wall = started.elapsed();
    progress.finish();
    if let Some(msg) = fatal {
        bail!("{msg} (what was emitted is committed; run again to resume)");
    }
    if eof && !stopping && !p.window.is_empty() {
        bail!("internal error: input finished with records neither emitted nor in flight");
    }
    Ok(summary)
}

fn on_done(
    done: Done,
    p: &mut Pipeline,
    summary: &mut Summary,
    fatal: &mut Option<String>,
    stop: &watch::Sender<bool>,
) {
    match done.answer {
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
            p.window.complete(done.seq, line, &mut p.em);
        }
        Answer::Dropped => {}
        Answer::Fatal(msg) => {
            if fatal.is_none() {
                tracing::error!("{msg}");
                *fatal = Some(msg);
                let _ = stop.send(true);
            }
        }
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
