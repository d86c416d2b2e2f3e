//! Synchronous mode over a file source and file sinks: output appended and
//! fsynced, then the watermark, its fingerprint, the sink lengths and the
//! `ahead` set in one SQLite transaction (`state_store::Txn`; `ahead` is the
//! `meta` entry [`AHEAD_KEY`]).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use batch_api::sync::{Done, Job};
use bytes::Bytes;
use pipeline_config::{OutputMode, PipelineConfig, SinkConfig, SourceConfig};
use state_store::Store;
use tokio::sync::{mpsc, watch};

use super::window::{self, Emitted, Kind, Window};
use super::{input, Progress, Summary, COMMIT_BYTES, COMMIT_INTERVAL, READ_BURST};
use crate::provider;
use crate::record::Fields;
use crate::sink::FileSink;

const LANE: u32 = 0;

/// `meta` key of the records emitted beyond the watermark in
/// ALLOW_UNORDERED mode (`{watermark}:{pos},...`).
const AHEAD_KEY: &str = "sync.ahead";

/// One transaction: the watermark and its fingerprint, the sink lengths and
/// the `ahead` set.
fn save(
    store: &mut Store,
    watermark: u64,
    fingerprint: &str,
    sinks: &[(&str, u64)],
    ahead: &str,
) -> anyhow::Result<()> {
    let tx = store.begin()?;
    tx.set_watermark(LANE, watermark, Some(fingerprint))?;
    tx.set_sinks(sinks)?;
    tx.set_meta(&[(AHEAD_KEY, ahead)])?;
    tx.commit().context("committing sync progress")
}

/// Refuse batch mode while `sync.ahead` lists records emitted beyond the
/// watermark (batch mode would emit them again).
pub fn check_no_records_ahead(cfg: &PipelineConfig) -> anyhow::Result<()> {
    let n = records_ahead(&cfg.batch.local_dir.join(&cfg.name))?;
    if n > 0 {
        bail!(
            "pipeline `{}` was interrupted in synchronous ALLOW_UNORDERED mode with {n} records emitted beyond its watermark; \
             finish it with ml.batch.enabled = false before switching to batch mode",
            cfg.name
        );
    }
    Ok(())
}

/// How many records the stored `sync.ahead` set lists at the current
/// watermark (none when there is no state yet).
fn records_ahead(dir: &Path) -> anyhow::Result<usize> {
    if !dir.join("state.db").exists() {
        return Ok(0);
    }
    let store = Store::open(dir)?;
    let watermark = store
        .load()?
        .lanes
        .iter()
        .find(|(l, _)| *l == LANE)
        .map_or(0, |(_, w)| *w);
    let Some(meta) = store.meta(AHEAD_KEY)? else {
        return Ok(0);
    };
    let ahead = window::decode_ahead(&meta, watermark).map_err(anyhow::Error::msg)?;
    Ok(ahead.map_or(0, |a| a.len()))
}

struct Pipeline {
    window: Window<Vec<u8>>,
    em: Emitted,
    output: FileSink,
    dlq: FileSink,
    prefix: input::PrefixHash,
    store: Store,
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
        save(
            &mut self.store,
            now.0,
            &fp,
            &[("output", now.1), ("dlq", now.2)],
            &now.3,
        )?;
        self.committed = now;
        Ok(())
    }
}

pub async fn drive(
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
    let ordered = cfg.sync.output_mode == OutputMode::Ordered;
    let max_concurrent = super::max_concurrent(cfg);
    let window_cap = super::window_cap(cfg);

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
    let mut restored = match store.meta(AHEAD_KEY)? {
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
    if watermark > 0 || !restored.is_empty() {
        tracing::info!(
            watermark,
            already_emitted_ahead = restored.len(),
            "resuming from the last commit"
        );
    }

    let client = super::client(cfg, format, task)?;
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
        store,
        committed: (u64::MAX, 0, 0, String::new()),
        last_commit: Instant::now(),
    };
    // Owns the sinks from now on, even if nothing is emitted.
    {
        let ahead = window::encode_ahead(watermark, &restored);
        let fp = p.prefix.advance_to(watermark)?;
        let (o, d) = (p.output.len(), p.dlq.len());
        save(
            &mut p.store,
            watermark,
            &fp,
            &[("output", o), ("dlq", d)],
            &ahead,
        )?;
        p.committed = (watermark, o, d, ahead);
    }

    let mut summary = Summary {
        output: out_path.display().to_string(),
        dlq: dlq_path.display().to_string(),
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
                        lane: LANE,
                        pos,
                        key: None,
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
                    super::write_dead_letter(&mut dead, line.line_no, pos, line.line, &reason.0);
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
    super::ensure_finished(fatal)?;
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
    if let Some(line) = super::take_answer(done.answer, summary, fatal, stop) {
        p.window.complete(done.seq, line, &mut p.em);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_ahead_count_only_at_their_watermark() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(records_ahead(dir.path()).unwrap(), 0, "no state yet");
        let mut store = Store::open(dir.path()).unwrap();
        let mut commit =
            |watermark, ahead: &str| save(&mut store, watermark, "fp", &[], ahead).unwrap();
        commit(100, "100:120,130");
        assert_eq!(records_ahead(dir.path()).unwrap(), 2);
        commit(150, "150:");
        assert_eq!(records_ahead(dir.path()).unwrap(), 0);
        // Batch mode moved the watermark since: the set no longer applies.
        commit(200, "150:170");
        assert_eq!(records_ahead(dir.path()).unwrap(), 0);
    }
}
