//! Synchronous mode over Kafka: each input partition is a lane with its own
//! window (ORDERED keeps each partition's order). Every commit is ONE Kafka
//! transaction holding the output and dead-letter records emitted since the
//! last one, each lane's state (`lane` with the watermark, `sync/ahead` with
//! the records emitted beyond it) and the consumed offsets (= watermarks).
//! Nothing emitted is visible to `read_committed` readers before its state
//! is, so a crash or an aborted transaction re-sends only what was in flight
//! or answered after the last commit.
//!
//! A rebalance or an aborted transaction rebuilds the lanes from the state
//! topic, as a restart would: requests in flight are stopped and their
//! answers dropped (epochs), what was staged is discarded, and the records
//! are read again from the committed watermarks.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use batch_api::sync::{Client, Done, Job};
use batch_api::wire::RequestTemplate;
use bytes::Bytes;
use kafka_io::{CommitError, KafkaIo, LaneRecord, StateRecord, Txn};
use pipeline_config::{OutputMode, PipelineConfig};
use tokio::runtime::Handle;
use tokio::sync::watch;

use super::window::{self, Kind, Sink, Window};
use super::{Progress, Summary, COMMIT_BYTES, COMMIT_INTERVAL, READ_BURST};
use crate::provider;
use crate::record::Fields;
use crate::runtime::{kafka_dead_letter, kafka_settings};

/// How long a bounded run with no partitions waits for some before it ends.
const IDLE_GRACE: Duration = Duration::from_secs(15);

/// Records fetched ahead of the windows, at most (or twice the window).
const STASH_RECORDS: usize = 2048;

struct Fetched {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
}

/// A Kafka record to emit: key and value.
type Item = (Option<Vec<u8>>, Vec<u8>);

/// What was emitted since the last commit.
#[derive(Default)]
struct Staged {
    outputs: Vec<Item>,
    dead_letters: Vec<Item>,
    bytes: usize,
}

impl Sink<Item> for Staged {
    fn output(&mut self, item: Item) {
        self.bytes += item.1.len();
        self.outputs.push(item);
    }

    fn dead_letter(&mut self, item: Item) {
        self.bytes += item.1.len();
        self.dead_letters.push(item);
    }
}

struct Lane {
    window: Window<Item>,
    /// The next offset this lane expects: an earlier record was read
    /// already (a fetch from before a seek) and is skipped.
    next_offset: i64,
    /// The consumer is not back at the watermark yet: records are ignored
    /// until a seek succeeds (they will be fetched again).
    needs_seek: bool,
    /// Emitted by an earlier run beyond the watermark: skipped when read.
    restored: BTreeSet<u64>,
    /// Bounded runs: the partition's end when the lane was taken, and
    /// whether the lane has read up to it.
    end: Option<i64>,
    input_done: bool,
    /// Batch mode's batch sequence, kept as it is in the lane record.
    next_seq: u64,
    /// What the last commit said: (watermark, ahead).
    committed: (u64, String),
}

struct Shell<'a> {
    cfg: &'a PipelineConfig,
    io: KafkaIo,
    rt: Handle,
    client: Arc<Client>,
    template: RequestTemplate,
    fields: Fields<'a>,
    ordered: bool,
    max_concurrent: usize,
    window_cap: usize,
    until_idle: bool,
    assigned: BTreeSet<i32>,
    lanes: BTreeMap<i32, Lane>,
    staged: Staged,
    /// Records fetched but not in a window yet (the windows are full).
    stash: VecDeque<Fetched>,
    /// Records in the windows, over all lanes (read, not yet emitted).
    held: usize,
    /// Requests read but not sent yet (max-concurrent-operations reached).
    backlog: VecDeque<Job>,
    /// Requests in flight, of every epoch.
    inflight: usize,
    /// Answers carry the epoch they were sent in; a rebuild starts a new
    /// one and drops the answers of the old.
    epoch: u64,
    stop: watch::Sender<bool>,
    tx: Sender<(u64, Done)>,
    stopping: bool,
    fatal: Option<String>,
    summary: Summary,
    body: Vec<u8>,
    last_commit: Instant,
}

pub fn run(
    cfg: &PipelineConfig,
    rt: &tokio::runtime::Runtime,
    shutdown: Arc<AtomicBool>,
    progress: bool,
    until_idle: bool,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let instance = format!("{:016x}", rand::random::<u64>());
    let settings = kafka_settings(cfg, &instance)?;
    let (format, task) = provider::wire_of(&cfg.model)?;
    let summary = Summary {
        output: format!("kafka topic {}", settings.output_topic),
        dlq: format!(
            "kafka topic {}",
            settings.dlq_topic.as_deref().unwrap_or_default()
        ),
        ..Summary::default()
    };
    let io = KafkaIo::connect(settings, rt.handle())?;
    let (tx, rx) = channel();
    let mut shell = Shell {
        cfg,
        io,
        rt: rt.handle().clone(),
        client: super::client(cfg, format, task)?,
        template: provider::template(&cfg.model, format, task),
        fields: Fields {
            input: &cfg.model.input,
            output: &cfg.model.output,
        },
        ordered: cfg.sync.output_mode == OutputMode::Ordered,
        max_concurrent: super::max_concurrent(cfg),
        window_cap: super::window_cap(cfg),
        until_idle,
        assigned: BTreeSet::new(),
        lanes: BTreeMap::new(),
        staged: Staged::default(),
        stash: VecDeque::new(),
        held: 0,
        backlog: VecDeque::new(),
        inflight: 0,
        epoch: 0,
        stop: watch::channel(false).0,
        tx,
        stopping: false,
        fatal: None,
        summary,
        body: Vec::with_capacity(1024),
        last_commit: Instant::now(),
    };
    let result = shell.run(&rx, &shutdown, progress);
    let _ = shell.stop.send(true);
    let mut summary = result?;
    summary.api_calls = shell.client.calls.load(Ordering::Relaxed);
    summary.api_errors = shell.client.failed_calls.load(Ordering::Relaxed);
    summary.wall = started.elapsed();
    super::ensure_finished(shell.fatal.take())?;
    Ok(summary)
}

impl Shell<'_> {
    fn run(
        &mut self,
        rx: &Receiver<(u64, Done)>,
        shutdown: &AtomicBool,
        on_terminal: bool,
    ) -> anyhow::Result<Summary> {
        let mut progress = Progress::new(on_terminal);
        let mut last_change = Instant::now();
        let mut paused = false;
        loop {
            if !self.stopping && shutdown.load(Ordering::SeqCst) {
                self.stopping = true;
                self.summary.interrupted = true;
                tracing::info!(
                    inflight = self.inflight,
                    "stopping: waiting for the requests in flight, then committing"
                );
                self.halt_requests();
            }
            if self.io.update_assignment(&mut self.assigned) {
                last_change = Instant::now();
                tracing::info!(partitions = ?self.assigned, "partition assignment changed; resuming their lanes");
                self.rebuild()?;
                // librdkafka keeps a partition's pause across a rebalance
                // that hands it back: start every lane unpaused.
                paused = false;
                self.io.pause(false);
            }
            for (&p, lane) in self.lanes.iter_mut().filter(|(_, l)| l.needs_seek) {
                if self.io.seek(p, lane.next_offset).is_ok() {
                    lane.needs_seek = false;
                }
            }
            let mut answered = self.drain_answers(rx);
            self.admit();
            // Fetch into the stash; hold the source back while it is full,
            // but keep polling so the group sees this instance alive.
            // (Pausing drops librdkafka's prefetched records, so it must
            // not flap with every record: pause full, resume half empty.)
            let stash_max = STASH_RECORDS.max(2 * self.window_cap);
            let want = if paused {
                self.stash.len() <= stash_max / 2
            } else {
                self.stash.len() < stash_max
            };
            if paused == want {
                paused = !paused;
                self.io.pause(paused);
            }
            let mut read = 0;
            while read < READ_BURST && (read == 0 || self.stash.len() < stash_max) {
                let timeout = if read == 0 && self.inflight == 0 && answered == 0 {
                    Duration::from_millis(20)
                } else {
                    Duration::ZERO
                };
                let mut record = None;
                let got = self.io.poll(timeout, &mut |r| {
                    record = Some(Fetched {
                        partition: r.partition,
                        offset: r.offset,
                        key: r.key.map(<[u8]>::to_vec),
                        value: r.value.map(<[u8]>::to_vec),
                    });
                });
                let Some(fetched) = record.filter(|_| got) else {
                    break;
                };
                read += 1;
                self.stash.push_back(fetched);
                self.admit();
            }
            self.dispatch();
            if self.until_idle && read == 0 && self.stash.is_empty() {
                self.check_ends();
            }
            let halted = self.stopping || self.fatal.is_some();
            if halted && self.inflight == 0 {
                self.commit()?;
                break;
            }
            if self.staged.bytes >= COMMIT_BYTES || self.last_commit.elapsed() >= COMMIT_INTERVAL {
                self.commit()?;
                self.summary.api_calls = self.client.calls.load(Ordering::Relaxed);
                progress.update(&self.summary, self.inflight);
            }
            let settled = !self.assigned.is_empty() || last_change.elapsed() > IDLE_GRACE;
            if self.until_idle && settled && self.all_ended() && self.inflight == 0 {
                self.commit()?;
                if self.all_ended() {
                    break;
                }
            }
            if read == 0 && answered == 0 && self.inflight > 0 {
                match rx.recv_timeout(Duration::from_millis(20)) {
                    Ok((epoch, done)) => {
                        self.on_done(epoch, done);
                        answered += 1;
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => {
                        bail!("internal error: answer channel closed")
                    }
                }
            }
        }
        progress.finish();
        Ok(self.summary.clone())
    }

    /// Move stashed records into the windows while there is room, and send
    /// their requests while max-concurrent-operations allows.
    fn admit(&mut self) {
        while !self.stopping && self.fatal.is_none() && self.held < self.window_cap {
            let Some(f) = self.stash.pop_front() else {
                break;
            };
            self.on_record(f);
        }
        self.dispatch();
    }

    /// Every assigned lane has read its end and emitted everything.
    fn all_ended(&self) -> bool {
        self.assigned.iter().all(|p| {
            self.lanes
                .get(p)
                .is_some_and(|l| l.input_done && l.window.is_empty())
        }) && self.stash.is_empty()
            && self.backlog.is_empty()
            && self.staged.outputs.is_empty()
            && self.staged.dead_letters.is_empty()
    }

    /// Stop every request of this epoch: they answer `Dropped` and their
    /// records are read again later.
    fn halt_requests(&mut self) {
        let _ = self.stop.send(true);
        self.stop = watch::channel(false).0;
        self.backlog.clear();
        self.stash.clear();
    }

    fn drain_answers(&mut self, rx: &Receiver<(u64, Done)>) -> usize {
        let mut n = 0;
        while let Ok((epoch, done)) = rx.try_recv() {
            self.on_done(epoch, done);
            n += 1;
        }
        n
    }

    fn on_done(&mut self, epoch: u64, done: Done) {
        self.inflight -= 1;
        if epoch != self.epoch {
            return;
        }
        let Some(mut line) =
            super::take_answer(done.answer, &mut self.summary, &mut self.fatal, &self.stop)
        else {
            return;
        };
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if let Some(lane) = self.lanes.get_mut(&(done.lane as i32)) {
            let before = lane.window.records();
            lane.window
                .complete(done.seq, (done.key, line), &mut self.staged);
            self.held = self.held + lane.window.records() - before;
        }
    }

    /// Send what waits, up to max-concurrent-operations in flight.
    fn dispatch(&mut self) {
        if self.stopping || self.fatal.is_some() {
            return;
        }
        while self.inflight < self.max_concurrent {
            let Some(job) = self.backlog.pop_front() else {
                return;
            };
            self.inflight += 1;
            let (client, stop, tx, epoch) = (
                self.client.clone(),
                self.stop.subscribe(),
                self.tx.clone(),
                self.epoch,
            );
            self.rt.spawn(async move {
                let _ = tx.send((epoch, client.call(job, stop).await));
            });
        }
    }

    /// Take a fetched record into its lane's window (its value moves into
    /// the request's job: the output is built from it).
    fn on_record(&mut self, fetched: Fetched) {
        let Fetched {
            partition,
            offset,
            key,
            value,
        } = fetched;
        let Some(lane) = self.lanes.get_mut(&partition) else {
            return; // fetched just before a revocation
        };
        if lane.needs_seek || offset < lane.next_offset {
            return;
        }
        // Bounded runs leave what came after the end for the next run.
        if lane.end.is_some_and(|e| offset >= e) {
            return;
        }
        lane.next_offset = offset + 1;
        self.summary.records_read += 1;
        metrics::counter!("records_in_total").increment(1);
        // A push may retire records too: `held` follows the window.
        let before = lane.window.records();
        let (pos, next) = (offset as u64, offset as u64 + 1);
        if lane.restored.remove(&pos) {
            self.summary.skipped += 1;
            lane.window.push(pos, next, Kind::Skip, &mut self.staged);
            self.held = self.held + lane.window.records() - before;
            return;
        }
        let parsed = match &value {
            None => Err(crate::record::Unusable("record has no value".into())),
            Some(v) => self.fields.parse(v),
        };
        match parsed {
            Ok(usable) => {
                self.body.clear();
                self.template
                    .write_sync_body(&mut self.body, usable.input.get().as_bytes());
                let record = value.unwrap_or_default();
                let seq = lane.window.push(pos, next, Kind::Request, &mut self.staged);
                self.held = self.held + lane.window.records() - before;
                self.backlog.push_back(Job {
                    seq,
                    lane: partition as u32,
                    pos,
                    key,
                    record,
                    body: Bytes::copy_from_slice(&self.body),
                });
            }
            Err(reason) => {
                self.summary.dead_letters += 1;
                metrics::counter!("records_dead_lettered_total").increment(1);
                let dead = kafka_dead_letter(
                    partition,
                    offset,
                    key.as_deref(),
                    value.as_deref(),
                    &reason.0,
                );
                lane.window
                    .push(pos, next, Kind::Dead((key, dead)), &mut self.staged);
                self.held = self.held + lane.window.records() - before;
            }
        }
    }

    /// Bounded runs: a lane whose consumer passed the end it had when it
    /// was taken has read all its input.
    fn check_ends(&mut self) {
        let positions = self.io.positions();
        for (p, lane) in self.lanes.iter_mut() {
            let Some(end) = lane.end else { continue };
            if lane.input_done || lane.needs_seek {
                continue;
            }
            // The consumer's position adds offsets it skipped without a
            // record (transaction markers).
            let at = positions.get(p).copied().unwrap_or(0).max(lane.next_offset);
            lane.input_done = at >= end;
        }
    }

    /// Start the assigned lanes from their committed state, as a restart
    /// would.
    fn rebuild(&mut self) -> anyhow::Result<()> {
        self.epoch += 1;
        self.halt_requests();
        self.staged = Staged::default();
        self.lanes.clear();
        self.held = 0;
        for &p in &self.assigned {
            let st = self.io.read_state(p)?;
            let open = st
                .batches
                .values()
                .filter(|b| b.phase != batch_core::Phase::Emitted)
                .count();
            if open > 0 {
                bail!(
                    "partition {p} has {open} batches from batch mode not yet emitted; finish them with ml.batch.enabled = true before running pipeline `{}` in synchronous mode",
                    self.cfg.name
                );
            }
            let record = st.lane.unwrap_or_default();
            let watermark = record.watermark.max(0) as u64;
            let restored = match &st.sync_ahead {
                Some(v) => match window::decode_ahead(v, watermark).map_err(anyhow::Error::msg)? {
                    Some(set) => set,
                    None => {
                        tracing::warn!(partition = p, "records emitted out of order by an earlier synchronous run no longer apply (the watermark moved since); ignoring them");
                        BTreeSet::new()
                    }
                },
                None => BTreeSet::new(),
            };
            if watermark > 0 || !restored.is_empty() {
                tracing::info!(
                    partition = p,
                    watermark,
                    already_emitted_ahead = restored.len(),
                    "resuming from the last commit"
                );
            }
            let needs_seek = self.io.seek(p, watermark as i64).is_err();
            let end = if self.until_idle {
                Some(self.io.end_offset(p)?)
            } else {
                None
            };
            let committed = (watermark, window::encode_ahead(watermark, &restored));
            self.lanes.insert(
                p,
                Lane {
                    window: Window::new(self.ordered, watermark),
                    next_offset: watermark as i64,
                    needs_seek,
                    restored,
                    end,
                    input_done: false,
                    next_seq: record.next_seq,
                    committed,
                },
            );
        }
        Ok(())
    }

    /// One transaction: what was emitted, the lanes whose state moved, and
    /// every assigned lane's offset (so a zombie that lost its lanes is
    /// fenced by the group generation and commits nothing).
    fn commit(&mut self) -> anyhow::Result<()> {
        self.last_commit = Instant::now();
        let mut txn = Txn::default();
        let mut moved = Vec::new();
        for (&p, lane) in &self.lanes {
            let now = (lane.window.watermark(), lane.window.ahead_meta());
            if now != lane.committed {
                txn.state.push(StateRecord::lane(
                    p,
                    LaneRecord {
                        watermark: now.0 as i64,
                        next_seq: lane.next_seq,
                    },
                ));
                txn.state.push(StateRecord::sync_ahead(p, &now.1));
                moved.push((p, now));
            }
        }
        if txn.state.is_empty()
            && self.staged.outputs.is_empty()
            && self.staged.dead_letters.is_empty()
        {
            return Ok(());
        }
        let staged = std::mem::take(&mut self.staged);
        txn.outputs = staged.outputs;
        txn.dead_letters = staged.dead_letters;
        let staged_bytes = staged.bytes;
        for (&p, lane) in &self.lanes {
            txn.offsets.insert(p, lane.window.watermark() as i64);
        }
        crate::failpoint::hit("sync-before-commit");
        match self.io.commit(&txn) {
            Ok(()) => {
                for (p, now) in moved {
                    if let Some(lane) = self.lanes.get_mut(&p) {
                        lane.committed = now;
                    }
                }
                Ok(())
            }
            Err(CommitError::Aborted(e)) => {
                tracing::warn!(error = %e, "kafka transaction aborted; resuming from the committed state");
                self.rebuild()
            }
            // The next turn rebuilds the lanes; until then nothing counts
            // as emitted (a bounded run does not end on it).
            Err(CommitError::Rebalanced) => {
                self.staged = Staged {
                    outputs: txn.outputs,
                    dead_letters: txn.dead_letters,
                    bytes: staged_bytes,
                };
                Ok(())
            }
            Err(e @ CommitError::Fatal(_)) => Err(e.into()),
        }
    }
}
