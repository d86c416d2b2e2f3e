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
    summary: Summary,
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
    let list_polling = setup.api.name() != "generic";
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
                self.summary.interrupted = true;
                tracing::info!(
                    "stopping: state is committed; run the same command again to resume"
                );
                break;
            }
            while let Ok((_, msg)) = rx.try_recv() {
                self.on_msg(core, msg, &mut actions)?;
            }
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
                break;
            }
            if read == 0 || eof || !core.wants_records() {
                let wait = core
                    .next_wake()
                    .map_or(Duration::from_millis(200), |w| {
                        Duration::from_millis(w.saturating_sub(now_ms()))
                    })
                    .min(Duration::from_millis(200));
                match rx.recv_timeout(wait) {
                    Ok((_, msg)) => self.on_msg(core, msg, &mut actions)?,
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
                files,
            } => {
                self.emit(
                    core,
                    &batch,
                    final_generation,
                    retry_id,
                    retry_number,
                    &files,
                    actions,
                )?;
            }
        }
        self.execute(core, actions)
    }

    fn execute(&mut self, core: &mut Core, actions: &mut Vec<Action>) -> anyhow::Result<()> {
        // Emitting feeds the core, which may add actions: loop until quiet.
        while !actions.is_empty() {
            let batch: Vec<Action> = std::mem::take(actions);
            for action in batch {
                self.execute_one(core, action, actions)?;
            }
        }
        Ok(())
    }

    fn execute_one(
        &mut self,
        core: &mut Core,
        action: Action,
        actions: &mut Vec<Action>,
    ) -> anyhow::Result<()> {
        match action {
            Action::Cut(plan) => self.seal_cut(plan)?,
            Action::Persist(batch) => self.store.persist(&batch)?,
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
            Action::Emit {
                batch,
                final_generation,
                retry_id,
                retry_number,
            } => {
                let targets = result_targets(&self.local, &batch);
                if targets.is_empty() {
                    self.emit(
                        core,
                        &batch,
                        final_generation,
                        retry_id,
                        retry_number,
                        &[],
                        actions,
                    )?;
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

    /// Make a cut durable: the batch file under its final name, the dead
    /// letters of the range, then one commit of batch + watermark + DLQ length.
    fn seal_cut(&mut self, plan: Plan) -> anyhow::Result<()> {
        let tmp = self.local.open_lane(plan.lane);
        match (&plan.batch, self.lane_writer.take()) {
            (Some(b), Some(w)) => self.local.seal(w, &tmp, &self.local.requests(b.id))?,
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
        if !self.dead.is_empty() {
            self.dlq.append(&self.dead)?;
            self.dlq.sync()?;
            self.dead.clear();
            self.summary.dead_letters += self.dead_count;
            metrics::counter!("records_dead_lettered_total").increment(self.dead_count);
            self.dead_count = 0;
        }
        crate::failpoint::hit("after-cut");
        let fp = self.checkpoints.fingerprint(plan.end);
        debug_assert!(fp.is_some(), "cut at {} is not a checkpoint", plan.end);
        let dlq_len = self.dlq.len();
        self.store.commit_cut(
            plan.lane,
            plan.end,
            fp.as_deref(),
            plan.batch.as_ref(),
            &[("dlq", dlq_len)],
        )?;
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

    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        core: &mut Core,
        batch: &Batch,
        final_generation: bool,
        retry_id: u64,
        retry_number: String,
        files: &[PathBuf],
        actions: &mut Vec<Action>,
    ) -> anyhow::Result<()> {
        let results: Vec<Vec<u8>> = files.iter().map(std::fs::read).collect::<Result<_, _>>()?;
        self.out_buf.clear();
        let out_buf = &mut self.out_buf;
        let joined = emit::join(
            &JoinInput {
                batch,
                final_generation,
                results: &results,
                fields: &self.fields,
                format: self.format,
                task: self.task,
                shape: &self.shape,
            },
            &mut source::FileRecords(&self.source_file),
            &mut |_key, line| out_buf.extend_from_slice(line),
        )?;
        self.output.append(&self.out_buf)?;
        self.output.sync()?;
        let now = now_ms();
        let retry = retry_batch(batch, &joined.retry, retry_id, retry_number, now);
        let out_len = self.output.len();
        crate::failpoint::hit("before-emit-commit");
        self.store
            .commit_emit(batch, now, &[("output", out_len)], retry.as_ref())?;
        note_emission(&mut self.summary, batch, &joined, now);
        core.handle(
            Event::Emitted {
                id: batch.id,
                retry,
            },
            now,
            actions,
        );
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

/// Download targets of a finished batch (none when it failed as a whole).
pub(crate) fn result_targets(local: &LocalDir, batch: &Batch) -> Vec<(String, PathBuf)> {
    let mut targets = Vec::new();
    if batch.failure.is_none() {
        for (file, which) in [
            (&batch.output_file, "output"),
            (&batch.error_file, "errors"),
        ] {
            if let Some(f) = file.as_ref().filter(|f| !f.is_empty()) {
                targets.push((f.clone(), local.results(batch.id, which)));
            }
        }
    }
    targets
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
