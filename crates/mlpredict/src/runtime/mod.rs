//! The thin IO shell around the core for file pipelines: it reads the
//! source, writes batch files, runs provider calls on the async runtime,
//! joins results and commits — always in the order the core's actions say.

mod batch_file;
mod calls;
mod kafka;
mod progress;
mod record_file;

pub use kafka::run_kafka;
pub(crate) use kafka::{dead_letter as kafka_dead_letter, settings as kafka_settings};

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use batch_api::wire::{RequestTemplate, Task, WireFormat};
use batch_core::{
    seq_of, write_custom_id, Action, Batch, Core, CoreConfig, Event, LaneStart, Millis, Phase,
    Plan, RemoteState,
};
use pipeline_config::{PipelineConfig, SinkConfig, SourceConfig};
use state_store::Store;
use tokio::runtime::Handle;

use crate::emit::{self, JoinInput, OutputShape};
use crate::files::LocalDir;
use crate::provider;
use crate::record::Fields;
use crate::sink::FileSink;
use crate::source::{self, FileSource};
pub use calls::CallCounts;
use calls::{Caller, Msg};

const LANE: u32 = 0;

/// How a run ended and what it did, for the summary and for tests.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub records_read: u64,
    pub ok: u64,
    pub errors: u64,
    pub dead_letters: u64,
    pub retried: u64,
    pub batches_submitted: u64,
    pub batches_emitted: u64,
    pub api_calls: u64,
    pub api_errors: u64,
    pub tokens: u64,
    pub wall: Duration,
    pub output: PathBuf,
    pub dlq: PathBuf,
    pub interrupted: bool,
}

pub struct Options {
    pub cancel_inflight: bool,
    pub shutdown: Arc<AtomicBool>,
    pub progress: bool,
}

pub fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `list_polling`: the provider's listing reports full batch states (the
/// generic protocol's listing is our extension and may not).
pub fn core_config(
    cfg: &PipelineConfig,
    limits: batch_api::Limits,
    list_polling: bool,
) -> CoreConfig {
    let b = &cfg.batch;
    CoreConfig {
        prefix: cfg.batch_number_prefix().to_owned(),
        batch_size: b
            .size
            .min(limits.max_requests.min(u32::MAX as u64) as u32)
            .max(1),
        // Leave room under the provider's file limit for the last line.
        max_bytes: b
            .max_bytes
            .min(limits.max_bytes.saturating_sub(1 << 20))
            .max(1),
        max_wait_ms: b.max_wait.as_millis() as u64,
        max_inflight: b.max_inflight.max(1),
        poll_interval_ms: b.poll_interval.as_millis() as u64,
        poll_max_interval_ms: b.poll_max_interval.as_millis() as u64,
        job_timeout_ms: b.job_timeout.as_millis() as u64,
        max_retries: b.max_retries,
        backoff_base_ms: 500,
        backoff_cap_ms: 60_000,
        list_poll_min: if list_polling { 3 } else { 0 },
    }
}

/// Where a pipeline keeps its state and batch files.
pub fn state_dir(cfg: &PipelineConfig) -> PathBuf {
    cfg.batch.local_dir.join(&cfg.name)
}

struct Shell<'a> {
    cfg: &'a PipelineConfig,
    store: Store,
    local: LocalDir,
    output: FileSink,
    dlq: FileSink,
    source_file: File,
    template: RequestTemplate,
    format: WireFormat,
    task: Task,
    fields: Fields<'a>,
    shape: OutputShape,
    caller: Caller,
    lane_writer: Option<BufWriter<File>>,
    checkpoints: source::Checkpoints,
    dead: Vec<u8>,
    dead_count: u64,
    out_buf: Vec<u8>,
    /// Persists and cuts not yet committed: they go into the next
    /// transaction, which is made before any provider call (write-ahead by
    /// deferral), at the latest before the loop waits.
    pending: Vec<Batch>,
    cut: Option<StagedCut>,
    /// Emissions appended to the output but not yet synced and committed;
    /// always committed together before `execute` returns.
    staged: Vec<Staged>,
    summary: Summary,
}

/// The last cut not yet committed: the lane's new watermark. Its batch row
/// is in `pending`, its batch file sealed but the directory not yet synced,
/// its dead letters appended but not yet synced.
struct StagedCut {
    lane: u32,
    end: u64,
    fingerprint: Option<String>,
    dir_unsynced: bool,
    dlq_unsynced: bool,
}

/// An emission waiting for the group commit.
struct Staged {
    batch: Batch,
    retry: Option<Batch>,
    joined: emit::Joined,
}

pub fn run_batch(cfg: &PipelineConfig, rt: Handle, opts: Options) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let SourceConfig::File { path: input } = &cfg.source else {
        bail!("this build reads file sources only")
    };
    let SinkConfig::File {
        path: out_path,
        dlq_path,
    } = &cfg.sink
    else {
        bail!("this build writes file sinks only")
    };
    let setup = provider::connect(cfg)?;
    let limits = setup.api.limits();
    let list_polling = setup.api.listing_reports_status();
    let dir = state_dir(cfg);
    let store = Store::open(&dir)?;
    let snapshot = store.load()?;
    let output = FileSink::open(out_path, snapshot.sinks.get("output").copied())?;
    let dlq = FileSink::open(dlq_path, snapshot.sinks.get("dlq").copied())?;
    let source_file = File::open(input)
        .with_context(|| format!("cannot open source.path {}", input.display()))?;
    let watermark = snapshot
        .lanes
        .iter()
        .find(|(l, _)| *l == LANE)
        .map_or(0, |(_, w)| *w);
    let source = FileSource::open(input, watermark)
        .with_context(|| format!("cannot read source.path {}", input.display()))?;
    check_source(&store, &source, &source_file, input, watermark)?;

    let local = LocalDir::new(dir);
    let open: BTreeSet<u64> = snapshot.open_batches.iter().map(|b| b.id).collect();
    let removed = local.remove_orphans(&open)?;
    if removed > 0 {
        tracing::info!(removed, "removed local files no batch refers to");
    }
    if !snapshot.open_batches.is_empty() {
        tracing::info!(
            batches = snapshot.open_batches.len(),
            "resuming batches from the last run"
        );
    }
    let (tx, rx) = channel();
    let caller = Caller {
        api: Arc::from(setup.api),
        rt,
        tx,
        counts: Arc::new(CallCounts::default()),
        pipeline: cfg.name.clone(),
        epoch: 0,
        background: Arc::default(),
    };
    let lanes = [LaneStart {
        lane: LANE,
        watermark,
        next_seq: seq_of(snapshot.next_id),
    }];
    let mut core = Core::restore(
        core_config(cfg, limits, list_polling),
        &lanes,
        snapshot.open_batches,
        now_ms(),
    );
    let mut shell = Shell {
        cfg,
        store,
        local,
        source_file,
        template: setup.template,
        format: setup.format,
        task: setup.task,
        fields: Fields {
            input: &cfg.model.input,
            output: &cfg.model.output,
        },
        shape: OutputShape::new(&cfg.model.output),
        caller,
        lane_writer: None,
        checkpoints: source.checkpoints(),
        dead: Vec::new(),
        dead_count: 0,
        out_buf: Vec::new(),
        pending: Vec::new(),
        cut: None,
        staged: Vec::new(),
        summary: Summary {
            output: out_path.clone(),
            dlq: dlq_path.clone(),
            ..Summary::default()
        },
        output,
        dlq,
    };
    // Record the sinks' lengths so a later start knows this pipeline owns them.
    let (o, d) = (shell.output.len(), shell.dlq.len());
    shell.store.set_sinks(&[("output", o), ("dlq", d)])?;
    let mut source = source;
    let result = shell.run(&mut core, &mut source, &rx, &opts);
    if opts.cancel_inflight && opts.shutdown.load(Ordering::SeqCst) {
        shell.cancel_inflight(&core);
    }
    shell.caller.drain(Duration::from_secs(3));
    let mut summary = result?;
    summary.api_calls = shell.caller.counts.total();
    summary.api_errors = shell.caller.counts.errors.load(Ordering::Relaxed);
    summary.wall = started.elapsed();
    Ok(summary)
}

fn check_source(
    store: &Store,
    source: &FileSource,
    file: &File,
    path: &std::path::Path,
    watermark: u64,
) -> anyhow::Result<()> {
    if watermark == 0 {
        return Ok(());
    }
    let len = file.metadata()?.len();
    if len < watermark {
        bail!(
            "source.path {} holds {len} bytes but this pipeline already consumed {watermark}: the input was truncated or replaced; \
             restore it, or start a new pipeline (another pipeline.name or ml.batch.local.dir)",
            path.display()
        );
    }
    let stored = store.lane_fingerprint(LANE)?;
    let now = source.checkpoints().fingerprint(watermark);
    if stored.is_some() && stored != now {
        bail!(
            "source.path {} changed before the position this pipeline already consumed ({watermark} bytes): \
             it was edited or replaced; only appending is allowed while a pipeline resumes",
            path.display()
        );
    }
    Ok(())
}

impl Shell<'_> {
    fn run(
        &mut self,
        core: &mut Core,
        source: &mut FileSource,
        rx: &Receiver<(u64, Msg)>,
        opts: &Options,
    ) -> anyhow::Result<Summary> {
        let mut actions = Vec::new();
        let mut eof = false;
        let mut custom_id = String::new();
        let mut progress = progress::Progress::new(opts.progress);
        // Pick up batches restored from the state at once.
        core.tick(now_ms(), &mut actions);
        self.execute(core, &mut actions)?;
        loop {
            if opts.shutdown.load(Ordering::SeqCst) {
                self.flush()?;
                self.summary.interrupted = true;
                tracing::info!(
                    "stopping: state is committed; run the same command again to resume"
                );
                break;
            }
            // Answers that arrived together are handled together: their
            // persists and emissions share one transaction.
            while let Ok((_, msg)) = rx.try_recv() {
                self.on_msg(core, msg, &mut actions)?;
            }
            self.execute(core, &mut actions)?;
            let mut read = 0;
            while !eof && core.wants_records() && read < 4096 {
                let now = now_ms();
                let Some(line) = source.next_line()? else {
                    eof = true;
                    core.handle(Event::EndOfInput { lane: LANE }, now, &mut actions);
                    self.execute(core, &mut actions)?;
                    break;
                };
                read += 1;
                self.checkpoints = line.checkpoints;
                if line.line.trim_ascii().is_empty() {
                    continue;
                }
                // A record (usable or dead) ends the range a timed cut takes.
                self.checkpoints.record_done();
                self.summary.records_read += 1;
                let (pos, next, line_no) = (line.pos, line.next, line.line_no);
                match self.fields.parse(line.line) {
                    Ok(usable) => {
                        write_custom_id(&mut custom_id, LANE, pos);
                        let input = usable.input.get().as_bytes();
                        let bytes = self.template.line_len(&custom_id, input) as u64;
                        let cuts = core.on_record(LANE, pos, next, bytes, false, now);
                        if let Some(plan) = cuts.before {
                            self.seal_cut(plan)?;
                        }
                        let w = match &mut self.lane_writer {
                            Some(w) => w,
                            None => self
                                .lane_writer
                                .insert(LocalDir::create(&self.local.open_lane(LANE))?),
                        };
                        self.out_buf.clear();
                        self.template
                            .write_line(&mut self.out_buf, &custom_id, input);
                        w.write_all(&self.out_buf)?;
                        if let Some(plan) = cuts.after {
                            self.seal_cut(plan)?;
                        }
                    }
                    Err(reason) => {
                        let cuts = core.on_record(LANE, pos, next, 0, true, now);
                        debug_assert!(cuts.before.is_none());
                        write_dead_letter(&mut self.dead, line_no, pos, line.line, &reason.0);
                        self.dead_count += 1;
                        if let Some(plan) = cuts.after {
                            self.seal_cut(plan)?;
                        }
                    }
                }
                source.mark_record();
            }
            metrics::counter!("records_in_total").increment(read);
            core.tick(now_ms(), &mut actions);
            self.execute(core, &mut actions)?;
            progress.update(&self.summary, core.inflight(), core.queued());
            metrics::gauge!("batches_in_flight").set(core.inflight() as f64);
            if eof && core.is_idle() {
                self.flush()?;
                break;
            }
            if read == 0 || eof || !core.wants_records() {
                // Nothing stays uncommitted while the loop waits.
                self.flush()?;
                let wait = core
                    .next_wake()
                    .map_or(Duration::from_millis(200), |w| {
                        Duration::from_millis(w.saturating_sub(now_ms()))
                    })
                    .min(Duration::from_millis(200));
                match rx.recv_timeout(wait) {
                    Ok((_, msg)) => {
                        self.on_msg(core, msg, &mut actions)?;
                        self.execute(core, &mut actions)?;
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => bail!("provider call channel closed"),
                }
            }
        }
        progress.finish(&self.summary);
        Ok(self.summary.clone())
    }

    fn on_msg(
        &mut self,
        core: &mut Core,
        msg: Msg,
        actions: &mut Vec<Action>,
    ) -> anyhow::Result<()> {
        match msg {
            Msg::Core(event) => {
                if matches!(
                    &event,
                    Event::Created { result: Ok(_), .. }
                        | Event::Found {
                            result: Ok(Some(_)),
                            ..
                        }
                ) {
                    self.summary.batches_submitted += 1;
                }
                core.handle(event, now_ms(), actions);
            }
            Msg::Downloaded {
                batch,
                final_generation,
                retry_id,
                retry_number,
                results,
            } => self.stage_emit(batch, final_generation, retry_id, retry_number, &results)?,
        }
        Ok(())
    }

    /// Execute actions, then commit staged emissions; emitting feeds the
    /// core, which may add actions: loop until quiet.
    fn execute(&mut self, core: &mut Core, actions: &mut Vec<Action>) -> anyhow::Result<()> {
        loop {
            while !actions.is_empty() {
                let batch: Vec<Action> = std::mem::take(actions);
                for action in batch {
                    self.execute_one(action)?;
                }
            }
            if self.staged.is_empty() {
                return Ok(());
            }
            self.commit_emissions(core, actions)?;
        }
    }

    /// Commit the pending persists and cuts (one transaction), before a
    /// provider call that may depend on them.
    fn flush(&mut self) -> anyhow::Result<()> {
        if self.pending.is_empty() && self.cut.is_none() {
            return Ok(());
        }
        self.commit(false)
    }

    /// One transaction for everything staged: cuts (batch files and dead
    /// letters synced first), persists, and with `emissions` the staged
    /// emissions (output synced first).
    fn commit(&mut self, emissions: bool) -> anyhow::Result<()> {
        if let Some(cut) = &mut self.cut {
            if std::mem::take(&mut cut.dir_unsynced) {
                self.local.sync_dir()?;
            }
            if std::mem::take(&mut cut.dlq_unsynced) {
                self.dlq.sync()?;
            }
            crate::failpoint::hit("after-cut");
        }
        let now = now_ms();
        if emissions {
            self.output.sync()?;
            crate::failpoint::hit("before-emit-commit");
        }
        let tx = self.store.begin()?;
        // In the order the core asked for them: a later row of a batch wins.
        for b in &self.pending {
            tx.persist(b)?;
        }
        if let Some(cut) = &self.cut {
            tx.set_watermark(cut.lane, cut.end, cut.fingerprint.as_deref())?;
            tx.set_sinks(&[("dlq", self.dlq.len())])?;
        }
        if emissions {
            for s in &self.staged {
                tx.emitted(&s.batch, now, s.retry.as_ref())?;
            }
            tx.set_sinks(&[("output", self.output.len())])?;
        }
        tx.commit()?;
        self.pending.clear();
        self.cut = None;
        Ok(())
    }

    fn execute_one(&mut self, action: Action) -> anyhow::Result<()> {
        match action {
            Action::Cut(plan) => self.seal_cut(plan)?,
            Action::Persist(batch) => self.pending.push(batch),
            // Calls that create, find, poll or cancel provider batches
            // depend on the state persisted before them. Downloads (reads
            // whose result is committed with everything pending) and
            // cleanups (after a commit) do not.
            Action::Upload(_)
            | Action::Create(_)
            | Action::Find { .. }
            | Action::Poll { .. }
            | Action::PollMany(_)
            | Action::Cancel { .. } => {
                self.flush()?;
                self.call(action)?;
            }
            Action::Emit {
                batch,
                final_generation,
                retry_id,
                retry_number,
            } => {
                let targets = result_targets(&batch);
                if targets.is_empty() {
                    self.stage_emit(batch, final_generation, retry_id, retry_number, &[])?;
                } else {
                    self.caller
                        .download(batch, final_generation, retry_id, retry_number, targets);
                }
            }
            Action::Cleanup(batch) => {
                self.local.remove_batch(batch.id);
                if self.cfg.batch.cleanup_remote {
                    self.caller.delete_files(remote_files(batch));
                }
            }
            Action::Warn(msg) => tracing::warn!("{msg}"),
            Action::Fatal(msg) => bail!("{msg}"),
        }
        Ok(())
    }

    fn call(&mut self, action: Action) -> anyhow::Result<()> {
        match action {
            Action::Upload(batch) => {
                let path = self.ensure_requests(&batch)?;
                self.caller.upload(
                    batch.id,
                    path,
                    format!("{}-a{}.jsonl", batch.number, batch.attempt),
                );
            }
            Action::Create(batch) => {
                let path = self.ensure_requests(&batch)?;
                self.caller.create(batch, path);
            }
            Action::Find { batch, not_before } => self.caller.find(batch, not_before),
            Action::Poll { id, remote_id } => self.caller.poll(id, remote_id),
            Action::PollMany(batches) => self.caller.poll_many(batches),
            Action::Cancel { id, remote_id } => self.caller.cancel(id, remote_id),
            other => unreachable!("not a provider call: {other:?}"),
        }
        Ok(())
    }

    /// Stage a cut: the batch file sealed under its final name, the dead
    /// letters of the range appended; batch, watermark and DLQ length are
    /// committed by the next [`flush`](Self::flush).
    fn seal_cut(&mut self, plan: Plan) -> anyhow::Result<()> {
        let tmp = self.local.open_lane(plan.lane);
        let mut dir_unsynced = false;
        match (&plan.batch, self.lane_writer.take()) {
            (Some(b), Some(w)) => {
                // The directory is synced once for every cut of the turn.
                self.local.seal_file(w, &tmp, &self.local.requests(b.id))?;
                dir_unsynced = true;
            }
            (Some(b), None) => bail!(
                "internal error: batch {} cut with no records written",
                b.number
            ),
            (None, Some(w)) => {
                drop(w);
                let _ = std::fs::remove_file(&tmp);
            }
            (None, None) => {}
        }
        let mut dlq_unsynced = false;
        if !self.dead.is_empty() {
            self.dlq.append(&self.dead)?;
            dlq_unsynced = true;
            self.dead.clear();
            self.summary.dead_letters += self.dead_count;
            metrics::counter!("records_dead_lettered_total").increment(self.dead_count);
            self.dead_count = 0;
        }
        let fp = self.checkpoints.fingerprint(plan.end);
        debug_assert!(fp.is_some(), "cut at {} is not a checkpoint", plan.end);
        // Committed with the next transaction, before the batch is uploaded
        // (write-ahead rules 1 and 4): several cuts of a turn share it.
        self.pending.extend(plan.batch);
        let earlier = self.cut.take();
        debug_assert!(earlier.as_ref().is_none_or(|c| c.lane == plan.lane));
        let (dir_before, dlq_before) =
            earlier.map_or((false, false), |c| (c.dir_unsynced, c.dlq_unsynced));
        self.cut = Some(StagedCut {
            lane: plan.lane,
            end: plan.end,
            fingerprint: fp,
            dir_unsynced: dir_unsynced || dir_before,
            dlq_unsynced: dlq_unsynced || dlq_before,
        });
        Ok(())
    }

    fn ensure_requests(&mut self, batch: &Batch) -> anyhow::Result<PathBuf> {
        let mut records = source::FileRecords(&self.source_file);
        batch_file::ensure_requests(
            &self.local,
            &self.template,
            &self.fields,
            batch,
            &mut records,
        )
    }

    /// Join a downloaded batch and append its output lines; the sync and
    /// the commit of `Emitted` follow in [`commit_emissions`], together
    /// with every other emission of this turn.
    fn stage_emit(
        &mut self,
        batch: Batch,
        final_generation: bool,
        retry_id: u64,
        retry_number: String,
        results: &[Vec<u8>],
    ) -> anyhow::Result<()> {
        self.out_buf.clear();
        let out_buf = &mut self.out_buf;
        let joined = emit::join(
            &JoinInput {
                batch: &batch,
                final_generation,
                results,
                fields: &self.fields,
                format: self.format,
                task: self.task,
                shape: &self.shape,
            },
            &mut source::FileRecords(&self.source_file),
            &mut |_key, line| out_buf.extend_from_slice(line),
        )?;
        self.output.append(&self.out_buf)?;
        let retry = retry_batch(&batch, &joined.retry, retry_id, retry_number, now_ms());
        self.staged.push(Staged {
            batch,
            retry,
            joined,
        });
        Ok(())
    }

    /// One fsync of the output and one transaction for every staged
    /// emission (each batch `Emitted` with its retry batch, the output
    /// length) and the pending persists; then the core hears of each.
    fn commit_emissions(
        &mut self,
        core: &mut Core,
        actions: &mut Vec<Action>,
    ) -> anyhow::Result<()> {
        self.commit(true)?;
        let now = now_ms();
        for s in std::mem::take(&mut self.staged) {
            note_emission(&mut self.summary, &s.batch, &s.joined, now);
            core.handle(
                Event::Emitted {
                    id: s.batch.id,
                    retry: s.retry,
                },
                now,
                actions,
            );
        }
        Ok(())
    }

    fn cancel_inflight(&self, core: &Core) {
        let submitted: Vec<(String, String)> = core
            .batches()
            .filter(|b| b.phase == Phase::Submitted)
            .filter_map(|b| b.remote_id.clone().map(|r| (b.number.clone(), r)))
            .collect();
        for (number, remote_id) in submitted {
            let api = self.caller.api.clone();
            match self
                .caller
                .rt
                .block_on(async move { api.cancel(&remote_id).await })
            {
                Ok(_) => tracing::info!(batch = %number, "cancel requested"),
                Err(e) => tracing::warn!(batch = %number, error = %e, "cancel failed"),
            }
        }
    }
}

/// The batch that retries an emitted batch's retriable failures.
pub(crate) fn retry_batch(
    batch: &Batch,
    retry: &[u64],
    retry_id: u64,
    retry_number: String,
    now: Millis,
) -> Option<Batch> {
    (!retry.is_empty()).then(|| Batch {
        id: retry_id,
        number: retry_number,
        records: retry.len() as u32,
        members: Some(retry.to_vec()),
        generation: batch.generation + 1,
        attempt: 0,
        phase: Phase::Planned,
        planned_at: now,
        submitted_at: None,
        file_id: None,
        remote_id: None,
        remote_state: None,
        output_file: None,
        error_file: None,
        failure: None,
        ..batch.clone()
    })
}

/// Counters and metrics of one committed emission.
pub(crate) fn note_emission(
    summary: &mut Summary,
    batch: &Batch,
    joined: &emit::Joined,
    now: Millis,
) {
    let c = joined.counts;
    summary.ok += c.ok;
    summary.errors += c.errors;
    summary.tokens += c.tokens;
    summary.retried += joined.retry.len() as u64;
    summary.batches_emitted += 1;
    metrics::counter!("records_out_total", "status" => "ok").increment(c.ok);
    metrics::counter!("records_out_total", "status" => "error").increment(c.errors);
    metrics::counter!("tokens_total").increment(c.tokens);
    metrics::histogram!("batch_records_per_job").record(f64::from(batch.records));
    if batch.remote_state == Some(RemoteState::Completed) && batch.failure.is_none() {
        metrics::counter!("batch_jobs_completed_total").increment(1);
    } else {
        metrics::counter!("batch_jobs_failed_total").increment(1);
    }
    if let Some(at) = batch.submitted_at {
        metrics::histogram!("batch_job_latency_ms").record(now.saturating_sub(at) as f64);
    }
    if c.malformed_results > 0 {
        tracing::warn!(batch = %batch.number, lines = c.malformed_results, "result lines that could not be read; their records are retried");
    }
    if !joined.retry.is_empty() {
        tracing::info!(batch = %batch.number, records = joined.retry.len(), "retrying failed requests in a new batch");
    }
}

/// Result files of a finished batch to download (none when it failed as a
/// whole).
pub(crate) fn result_targets(batch: &Batch) -> Vec<String> {
    if batch.failure.is_some() {
        return Vec::new();
    }
    [&batch.output_file, &batch.error_file]
        .into_iter()
        .flatten()
        .filter(|f| !f.is_empty())
        .cloned()
        .collect()
}

/// Provider files of an emitted batch to delete (`ml.batch.cleanup.remote`).
pub(crate) fn remote_files(batch: Batch) -> Vec<String> {
    [batch.file_id, batch.output_file, batch.error_file]
        .into_iter()
        .flatten()
        .filter(|f| !f.is_empty() && !f.contains("://"))
        .collect()
}

fn write_dead_letter(out: &mut Vec<u8>, line_no: u64, pos: u64, raw: &[u8], reason: &str) {
    out.extend_from_slice(format!("{{\"line\":{line_no},\"position\":{pos},\"raw\":").as_bytes());
    let _ = serde_json::to_writer(&mut *out, &String::from_utf8_lossy(raw));
    out.extend_from_slice(b",\"error\":");
    let _ = serde_json::to_writer(&mut *out, reason);
    out.extend_from_slice(b"}\n");
}
