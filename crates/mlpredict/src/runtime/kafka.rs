//! The shell for Kafka lanes (DESIGN.md §5). Same core, same provider calls
//! as the file shell; what differs is durability: every state change, the
//! output and dead-letter records and the consumed offsets of one loop turn
//! go into ONE Kafka transaction, and provider calls that depend on that
//! state are held back until it commits (write-ahead). A rebalance or an
//! aborted transaction rebuilds the core from the state topic, exactly as a
//! restart would; answers to calls made before that are dropped (epochs).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use batch_core::{write_custom_id, Action, Batch, Core, Event, LaneStart, Phase, Plan};
use kafka_io::{CommitError, KafkaIo, LaneRecord, Settings, StateRecord, Txn};
use pipeline_config::{PipelineConfig, SinkConfig, SourceConfig};
use tokio::runtime::Handle;

use super::calls::{CallCounts, Caller, Msg};
use super::progress::Progress;
use super::{
    batch_file, core_config, note_emission, now_ms, record_file, remote_files, result_targets,
    retry_batch, Options, Summary,
};
use crate::emit::{self, BatchRecords, JoinInput, OutputShape};
use crate::files::LocalDir;
use crate::provider;
use crate::record::Fields;

/// How long a bounded run with no partitions waits for some before it ends.
const IDLE_GRACE: Duration = Duration::from_secs(15);

#[derive(Default)]
struct LaneIo {
    writer: Option<BufWriter<File>>,
    records: Option<BufWriter<File>>,
    dead: Vec<(Option<Vec<u8>>, Vec<u8>)>,
    /// Bounded runs: the partition's end when the lane was taken.
    end: Option<i64>,
    /// The next offset this lane expects: a record before it was already
    /// read (a fetch from before a seek) and is skipped.
    next_offset: i64,
    /// The consumer is not yet back at the lane's watermark: its records
    /// are ignored until a seek succeeds (they will be fetched again).
    needs_seek: bool,
    eof_sent: bool,
}

struct Shell<'a> {
    cfg: &'a PipelineConfig,
    local: LocalDir,
    template: batch_api::wire::RequestTemplate,
    format: batch_api::wire::WireFormat,
    task: batch_api::wire::Task,
    fields: Fields<'a>,
    shape: OutputShape,
    caller: Caller,
    core: Core,
    assigned: BTreeSet<i32>,
    lanes: BTreeMap<i32, LaneIo>,
    txn: Txn,
    /// Provider calls waiting for the transaction that makes their
    /// prerequisites durable.
    deferred: Vec<Action>,
    /// Events the core may only see once the transaction committed.
    after_commit: Vec<Event>,
    until_idle: bool,
    summary: Summary,
    buf: Vec<u8>,
}

pub fn run_kafka(
    cfg: &PipelineConfig,
    rt: Handle,
    opts: Options,
    until_idle: bool,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let instance = format!("{:016x}", rand::random::<u64>());
    let settings = settings(cfg, &instance)?;
    let setup = provider::connect(cfg)?;
    let limits = setup.api.limits();
    let list_polling = setup.api.listing_reports_status();
    let io = KafkaIo::connect(settings, &rt)?;
    // Each instance has its own local directory: lanes move between
    // instances, and a batch file is rebuilt from Kafka when missing.
    let dir = super::state_dir(cfg).join(format!("instance-{instance}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
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
    let mut shell = Shell {
        cfg,
        local: LocalDir::new(dir.clone()),
        template: setup.template,
        format: setup.format,
        task: setup.task,
        fields: Fields {
            input: &cfg.model.input,
            output: &cfg.model.output,
        },
        shape: OutputShape::new(&cfg.model.output),
        caller,
        core: Core::new(core_config(cfg, limits, list_polling)),
        assigned: BTreeSet::new(),
        lanes: BTreeMap::new(),
        txn: Txn::default(),
        deferred: Vec::new(),
        after_commit: Vec::new(),
        until_idle,
        summary: Summary::default(),
        buf: Vec::new(),
    };
    let result = shell.run(&io, &rx, &opts);
    shell.caller.drain(Duration::from_secs(3));
    let _ = std::fs::remove_dir_all(&dir);
    let mut summary = result?;
    summary.api_calls = shell.caller.counts.total();
    summary.api_errors = shell.caller.counts.errors.load(Ordering::Relaxed);
    summary.wall = started.elapsed();
    Ok(summary)
}

/// How to reach Kafka for this pipeline; `instance` makes the
/// transactional id unique (zombies are fenced by the group generation).
pub(crate) fn settings(cfg: &PipelineConfig, instance: &str) -> anyhow::Result<Settings> {
    let SourceConfig::Kafka(src) = &cfg.source else {
        bail!("not a kafka source")
    };
    let SinkConfig::Kafka(sink) = &cfg.sink else {
        bail!("source.type = \"kafka\" needs sink.type = \"kafka\"")
    };
    Ok(Settings {
        bootstrap: src.bootstrap_servers.clone(),
        input_topic: src.topic.clone(),
        group_id: src.group_id.clone(),
        output_topic: sink.topic.clone(),
        dlq_topic: Some(
            sink.dlq_topic
                .clone()
                .unwrap_or_else(|| format!("{}-dlq", sink.topic)),
        ),
        state_topic: format!("mlpredict-{}-state", cfg.name),
        consumer_props: src.properties.clone(),
        producer_props: sink.properties.clone(),
        transactional_id: format!("mlpredict-{}-{instance}", cfg.name),
        timeout: Duration::from_secs(30),
    })
}

/// A Kafka dead letter: where the record was, its key and raw value, why.
pub(crate) fn dead_letter(
    partition: i32,
    offset: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    reason: &str,
) -> Vec<u8> {
    let dead = serde_json::json!({
        "partition": partition,
        "offset": offset,
        "key": key.map(String::from_utf8_lossy),
        "raw": value.map(String::from_utf8_lossy),
        "error": reason,
    });
    serde_json::to_vec(&dead).expect("a json value serializes")
}

impl Shell<'_> {
    fn run(
        &mut self,
        io: &KafkaIo,
        rx: &Receiver<(u64, Msg)>,
        opts: &Options,
    ) -> anyhow::Result<Summary> {
        let mut progress = Progress::new(opts.progress);
        let mut actions = Vec::new();
        let mut last_change = Instant::now();
        let mut paused = false;
        loop {
            if opts.shutdown.load(Ordering::SeqCst) {
                self.commit(io)?;
                self.summary.interrupted = true;
                tracing::info!("stopping: state is committed in kafka; start again to resume");
                break;
            }
            if io.update_assignment(&mut self.assigned) {
                last_change = Instant::now();
                tracing::info!(partitions = ?self.assigned, "partition assignment changed; resuming their lanes");
                // What is staged may belong to revoked lanes and is never
                // committed: the rebuild resumes from what Kafka holds.
                self.rebuild(io)?;
                // librdkafka keeps a partition's pause across a rebalance
                // that hands it back: start every lane unpaused.
                paused = false;
                io.pause(false);
            }
            for (&p, lane) in self.lanes.iter_mut().filter(|(_, l)| l.needs_seek) {
                if io.seek(p, lane.next_offset).is_ok() {
                    lane.needs_seek = false;
                }
            }
            // Hold the source back while the core has enough batches queued,
            // but keep polling so the group sees this instance alive.
            if paused == self.core.wants_records() {
                paused = !paused;
                io.pause(paused);
            }
            while let Ok((epoch, msg)) = rx.try_recv() {
                if epoch == self.caller.epoch {
                    self.on_msg(io, msg, &mut actions)?;
                }
            }
            let mut read = 0;
            // At least one poll per turn, to serve the group even when paused.
            while read < 2048 && (read == 0 || self.core.wants_records()) {
                let timeout = if read == 0 {
                    Duration::from_millis(20)
                } else {
                    Duration::ZERO
                };
                let mut record = None;
                let got = io.poll(timeout, &mut |r| {
                    record = Some((
                        r.partition,
                        r.offset,
                        r.key.map(<[u8]>::to_vec),
                        r.value.map(<[u8]>::to_vec),
                    ));
                });
                let Some((partition, offset, key, value)) = record.filter(|_| got) else {
                    break;
                };
                read += 1;
                self.on_record(partition, offset, key, value.as_deref())?;
            }
            if self.until_idle && read == 0 {
                self.check_ends(io, &mut actions)?;
            }
            let now = now_ms();
            self.core.tick(now, &mut actions);
            self.execute(io, &mut actions)?;
            self.commit(io)?;
            progress.update(&self.summary, self.core.inflight(), self.core.queued());
            metrics::gauge!("batches_in_flight").set(self.core.inflight() as f64);
            // A bounded run ends when its lanes are done, or when the group
            // left it none for a while (more instances than partitions);
            // never in the middle of a rebalance.
            let all_ended = self
                .assigned
                .iter()
                .all(|p| self.lanes.get(p).is_some_and(|l| l.eof_sent));
            let settled = if self.assigned.is_empty() {
                last_change.elapsed() > IDLE_GRACE
            } else {
                true
            };
            if self.until_idle && settled && all_ended && self.core.is_idle() && self.txn.is_empty()
            {
                break;
            }
            if read == 0 {
                if let Ok((epoch, msg)) = rx.recv_timeout(Duration::from_millis(20)) {
                    if epoch == self.caller.epoch {
                        self.on_msg(io, msg, &mut actions)?;
                    }
                }
            }
        }
        progress.finish(&self.summary);
        Ok(self.summary.clone())
    }

    /// Rebuild the core for the assigned lanes from the state topic, as a
    /// restart would.
    fn rebuild(&mut self, io: &KafkaIo) -> anyhow::Result<()> {
        self.caller.epoch += 1;
        self.txn.clear();
        self.deferred.clear();
        self.after_commit.clear();
        for p in self.lanes.keys() {
            let _ = std::fs::remove_file(self.local.open_lane(*p as u32));
            let _ = std::fs::remove_file(self.local.open_lane_records(*p as u32));
        }
        self.lanes.clear();
        let mut starts = Vec::new();
        let mut open = Vec::new();
        for &p in &self.assigned {
            let st = io.read_state(p)?;
            let lane = st.lane.unwrap_or_default();
            if let Some(ahead) = &st.sync_ahead {
                let set = crate::sync_mode::decode_ahead(ahead, lane.watermark as u64)
                    .map_err(anyhow::Error::msg)?;
                if set.is_some_and(|s| !s.is_empty()) {
                    bail!(
                        "partition {p} was left by an interrupted synchronous ALLOW_UNORDERED run with records emitted beyond its watermark; \
                         finish it with ml.batch.enabled = false before switching to batch mode"
                    );
                }
            }
            let next_seq = st
                .batches
                .keys()
                .map(|&id| batch_core::seq_of(id) + 1)
                .max()
                .unwrap_or(1)
                .max(lane.next_seq);
            starts.push(LaneStart {
                lane: p as u32,
                watermark: lane.watermark as u64,
                next_seq,
            });
            open.extend(
                st.batches
                    .into_values()
                    .filter(|b| b.phase != Phase::Emitted),
            );
            let needs_seek = match io.seek(p, lane.watermark) {
                Ok(()) => false,
                Err(e) => {
                    tracing::debug!(partition = p, error = %e, "seek deferred");
                    true
                }
            };
            let end = if self.until_idle {
                Some(io.end_offset(p)?)
            } else {
                None
            };
            self.lanes.insert(
                p,
                LaneIo {
                    end,
                    next_offset: lane.watermark,
                    needs_seek,
                    ..LaneIo::default()
                },
            );
        }
        if !open.is_empty() {
            tracing::info!(
                batches = open.len(),
                "resuming batches of the assigned lanes"
            );
        }
        let cfg = self.core.config().clone();
        self.core = Core::restore(cfg, &starts, open, now_ms());
        Ok(())
    }

    fn on_record(
        &mut self,
        partition: i32,
        offset: i64,
        key: Option<Vec<u8>>,
        value: Option<&[u8]>,
    ) -> anyhow::Result<()> {
        let lane = partition as u32;
        match self.lanes.get_mut(&partition) {
            None => return Ok(()), // fetched just before a revocation
            Some(l) if l.needs_seek => return Ok(()),
            Some(l) if offset < l.next_offset => {
                tracing::debug!(partition, offset, "skipping a record read twice");
                return Ok(());
            }
            // Bounded runs leave what came after the end for the next run.
            Some(l) if l.end.is_some_and(|e| offset >= e) => return Ok(()),
            Some(l) => l.next_offset = offset + 1,
        }
        self.summary.records_read += 1;
        let (pos, next, now) = (offset as u64, offset as u64 + 1, now_ms());
        let parsed = match value {
            None => Err(crate::record::Unusable("record has no value".into())),
            Some(v) => self.fields.parse(v),
        };
        match parsed {
            Ok(usable) => {
                let mut custom_id = String::new();
                write_custom_id(&mut custom_id, lane, pos);
                let input = usable.input.get().as_bytes();
                let bytes = self.template.line_len(&custom_id, input) as u64;
                let cuts = self.core.on_record(lane, pos, next, bytes, false, now);
                if let Some(plan) = cuts.before {
                    self.seal_cut(plan)?;
                }
                self.buf.clear();
                self.template.write_line(&mut self.buf, &custom_id, input);
                let l = self.lanes.get_mut(&partition).expect("lane");
                let w = match &mut l.writer {
                    Some(w) => w,
                    None => l
                        .writer
                        .insert(LocalDir::create(&self.local.open_lane(lane))?),
                };
                w.write_all(&self.buf)?;
                let r = match &mut l.records {
                    Some(r) => r,
                    None => l
                        .records
                        .insert(LocalDir::create(&self.local.open_lane_records(lane))?),
                };
                record_file::write_frame(r, pos, key.as_deref(), value.unwrap_or_default())?;
                if let Some(plan) = cuts.after {
                    self.seal_cut(plan)?;
                }
            }
            Err(reason) => {
                let cuts = self.core.on_record(lane, pos, next, 0, true, now);
                let dead = dead_letter(partition, offset, key.as_deref(), value, &reason.0);
                self.lanes
                    .get_mut(&partition)
                    .expect("lane")
                    .dead
                    .push((key, dead));
                if let Some(plan) = cuts.after {
                    self.seal_cut(plan)?;
                }
            }
        }
        Ok(())
    }

    /// Bounded runs: a lane whose consumer passed the end seen when it was
    /// taken has ended.
    fn check_ends(&mut self, io: &KafkaIo, actions: &mut Vec<Action>) -> anyhow::Result<()> {
        let positions = io.positions();
        for (&p, lane) in self.lanes.iter_mut() {
            let Some(end) = lane.end else { continue };
            if lane.eof_sent || lane.needs_seek {
                continue;
            }
            // What this shell processed is the truth; the consumer's position
            // only adds offsets it skipped without a record (transaction
            // markers), and is trusted only once it was set back by a seek.
            let at = positions
                .get(&p)
                .copied()
                .unwrap_or(0)
                .max(lane.next_offset);
            if at >= end {
                lane.eof_sent = true;
                self.core
                    .handle(Event::EndOfInput { lane: p as u32 }, now_ms(), actions);
            }
        }
        self.execute(io, actions)
    }

    /// Stage a cut: seal the batch file locally, and put the batch, the
    /// lane's new watermark and the range's dead letters into the
    /// transaction.
    fn seal_cut(&mut self, plan: Plan) -> anyhow::Result<()> {
        let p = plan.lane as i32;
        let tmp = self.local.open_lane(plan.lane);
        let tmp_records = self.local.open_lane_records(plan.lane);
        let l = self.lanes.get_mut(&p).expect("lane");
        match (&plan.batch, l.writer.take(), l.records.take()) {
            (Some(b), Some(w), Some(r)) => {
                self.local.seal(w, &tmp, &self.local.requests(b.id))?;
                self.local
                    .seal(r, &tmp_records, &self.local.records(b.id))?;
            }
            (Some(b), _, _) => bail!(
                "internal error: batch {} cut with no records written",
                b.number
            ),
            (None, w, r) => {
                drop((w, r));
                let _ = std::fs::remove_file(&tmp);
                let _ = std::fs::remove_file(&tmp_records);
            }
        }
        self.summary.dead_letters += l.dead.len() as u64;
        metrics::counter!("records_dead_lettered_total").increment(l.dead.len() as u64);
        self.txn.dead_letters.append(&mut l.dead);
        if let Some(b) = &plan.batch {
            self.txn.state.push(StateRecord::batch(p, b));
        }
        let next_seq = self.core.lane_next_seq(plan.lane).unwrap_or(1);
        self.txn.state.push(StateRecord::lane(
            p,
            LaneRecord {
                watermark: plan.end as i64,
                next_seq,
            },
        ));
        Ok(())
    }

    fn on_msg(&mut self, io: &KafkaIo, msg: Msg, actions: &mut Vec<Action>) -> anyhow::Result<()> {
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
                self.core.handle(event, now_ms(), actions);
            }
            Msg::Downloaded {
                batch,
                final_generation,
                retry_id,
                retry_number,
                results,
            } => {
                self.emit(
                    io,
                    &batch,
                    final_generation,
                    retry_id,
                    retry_number,
                    &results,
                )?;
            }
        }
        self.execute(io, actions)
    }

    fn execute(&mut self, io: &KafkaIo, actions: &mut Vec<Action>) -> anyhow::Result<()> {
        while !actions.is_empty() {
            for action in std::mem::take(actions) {
                match action {
                    Action::Cut(plan) => self.seal_cut(plan)?,
                    Action::Persist(batch) => self
                        .txn
                        .state
                        .push(StateRecord::batch(batch.lane as i32, &batch)),
                    Action::Warn(msg) => tracing::warn!("{msg}"),
                    Action::Fatal(msg) => bail!("{msg}"),
                    // Write-ahead: a call waits for the state it depends on.
                    other if !self.txn.is_empty() => self.deferred.push(other),
                    other => self.call(io, other)?,
                }
            }
        }
        Ok(())
    }

    fn call(&mut self, io: &KafkaIo, action: Action) -> anyhow::Result<()> {
        match action {
            Action::Upload(batch) => {
                let path = self.ensure_requests(io, &batch)?;
                self.caller.upload(
                    batch.id,
                    path,
                    format!("{}-a{}.jsonl", batch.number, batch.attempt),
                );
            }
            Action::Create(batch) => {
                let path = self.ensure_requests(io, &batch)?;
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
                let targets = result_targets(&batch);
                if targets.is_empty() {
                    self.emit(io, &batch, final_generation, retry_id, retry_number, &[])?;
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
            Action::Cut(_) | Action::Persist(_) | Action::Warn(_) | Action::Fatal(_) => {
                unreachable!("handled in execute")
            }
        }
        Ok(())
    }

    fn ensure_requests(&mut self, io: &KafkaIo, batch: &Batch) -> anyhow::Result<PathBuf> {
        let mut records = KafkaRecords {
            io,
            local: &self.local,
        };
        batch_file::ensure_requests(
            &self.local,
            &self.template,
            &self.fields,
            batch,
            &mut records,
        )
    }

    /// Stage an emission: output records, the batch `emitted` (a tombstone)
    /// and its retry batch, all in the transaction; the core hears of it
    /// once that commits.
    fn emit(
        &mut self,
        io: &KafkaIo,
        batch: &Batch,
        final_generation: bool,
        retry_id: u64,
        retry_number: String,
        results: &[Vec<u8>],
    ) -> anyhow::Result<()> {
        let outputs = &mut self.txn.outputs;
        let joined = emit::join(
            &JoinInput {
                batch,
                final_generation,
                results,
                fields: &self.fields,
                format: self.format,
                task: self.task,
                shape: &self.shape,
            },
            &mut KafkaRecords {
                io,
                local: &self.local,
            },
            &mut |key, line| {
                outputs.push((
                    key.map(<[u8]>::to_vec),
                    line.strip_suffix(b"\n").unwrap_or(line).to_vec(),
                ))
            },
        )?;
        let now = now_ms();
        let p = batch.lane as i32;
        let retry = retry_batch(batch, &joined.retry, retry_id, retry_number, now);
        let mut done = batch.clone();
        done.phase = Phase::Emitted;
        self.txn.state.push(StateRecord::batch(p, &done));
        if let Some(r) = &retry {
            self.keep_records(batch, r)?;
            self.txn.state.push(StateRecord::batch(p, r));
            let next_seq = self.core.lane_next_seq(batch.lane).unwrap_or(1);
            let watermark = self.core.lane_watermark(batch.lane).unwrap_or(0) as i64;
            self.txn.state.push(StateRecord::lane(
                p,
                LaneRecord {
                    watermark,
                    next_seq,
                },
            ));
        }
        note_emission(&mut self.summary, batch, &joined, now);
        self.after_commit.push(Event::Emitted {
            id: batch.id,
            retry,
        });
        Ok(())
    }

    /// Copy a retry batch's members out of its parent's local records.
    fn keep_records(&self, parent: &Batch, retry: &Batch) -> anyhow::Result<()> {
        let members: BTreeSet<u64> = retry.members.iter().flatten().copied().collect();
        let tmp = self.local.records(retry.id).with_extension("part");
        let mut w = LocalDir::create(&tmp)?;
        let mut result = Ok(());
        let found = record_file::visit(&self.local.records(parent.id), &mut |pos, key, value| {
            if members.contains(&pos) && result.is_ok() {
                result = record_file::write_frame(&mut w, pos, key, value);
            }
        })?;
        result?;
        if found {
            self.local.seal(w, &tmp, &self.local.records(retry.id))?;
        } else {
            drop(w);
            let _ = std::fs::remove_file(&tmp);
        }
        Ok(())
    }

    /// Commit what is staged, then run what waited for it. An aborted
    /// transaction rebuilds the core from Kafka, as a restart would.
    fn commit(&mut self, io: &KafkaIo) -> anyhow::Result<()> {
        loop {
            if self.txn.is_empty() {
                return Ok(());
            }
            // Every transaction carries the assigned lanes' offsets, so a
            // zombie (an instance that lost its lanes) is fenced by the group
            // generation and cannot commit anything.
            for &p in &self.assigned {
                if let Some(w) = self.core.lane_watermark(p as u32) {
                    self.txn.offsets.insert(p, w as i64);
                }
            }
            match io.commit(&self.txn) {
                Ok(()) => {}
                Err(CommitError::Aborted(e)) => {
                    tracing::warn!(error = %e, "kafka transaction aborted; resuming from the committed state");
                    return self.rebuild(io);
                }
                // The next turn rebuilds the lanes, which drops what is staged.
                Err(CommitError::Rebalanced) => return Ok(()),
                Err(e @ CommitError::Fatal(_)) => return Err(e.into()),
            }
            self.txn.clear();
            let mut actions = std::mem::take(&mut self.deferred);
            let now = now_ms();
            for event in std::mem::take(&mut self.after_commit) {
                self.core.handle(event, now, &mut actions);
            }
            self.execute(io, &mut actions)?;
        }
    }
}

/// A batch's records: from its local copy, or read again from its input
/// partition by offset when the copy is gone (the lane moved here).
struct KafkaRecords<'a> {
    io: &'a KafkaIo,
    local: &'a LocalDir,
}

impl BatchRecords for KafkaRecords<'_> {
    fn visit(
        &mut self,
        batch: &Batch,
        f: &mut dyn FnMut(u64, Option<&[u8]>, &[u8]),
    ) -> anyhow::Result<()> {
        if record_file::visit(&self.local.records(batch.id), f)? {
            return Ok(());
        }
        let p = batch.lane as i32;
        let (first, end) = match &batch.members {
            None => (batch.first, batch.end),
            Some(m) => (
                m.iter().copied().min().unwrap_or(batch.first),
                m.iter().copied().max().map_or(batch.first, |x| x + 1),
            ),
        };
        let members: Option<BTreeSet<u64>> =
            batch.members.as_ref().map(|m| m.iter().copied().collect());
        self.io
            .read_input(p, first as i64, end as i64, &mut |offset, key, value| {
                let pos = offset as u64;
                if members.as_ref().is_none_or(|m| m.contains(&pos)) {
                    f(pos, key, value.unwrap_or_default());
                }
            })
    }
}
