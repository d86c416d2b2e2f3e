//! Kafka lanes for mlpredict (DESIGN.md §5): a consumer group reads the
//! input topic (one lane per partition, `read_committed`, no auto-commit); a
//! transactional producer writes, in one transaction per commit, the output
//! and dead-letter records, the state records (a compacted topic,
//! partitioned like the input) and the consumed offsets. A second,
//! group-less consumer reads a lane's state on assignment and re-reads a
//! batch's records by offset when they are needed again.

mod state;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

pub use state::{LaneRecord, LaneState, StateRecord};

/// Everything needed to connect, from the pipeline configuration.
#[derive(Clone)]
pub struct Settings {
    pub bootstrap: String,
    pub input_topic: String,
    pub group_id: String,
    pub output_topic: String,
    pub dlq_topic: Option<String>,
    pub state_topic: String,
    /// librdkafka properties passed through (`source.*` / `sink.*` keys).
    pub consumer_props: BTreeMap<String, String>,
    pub producer_props: BTreeMap<String, String>,
    /// Unique per instance; zombies are fenced by the consumer group
    /// generation (KIP-447), not by a shared transactional id.
    pub transactional_id: String,
    pub timeout: Duration,
}

/// Partitions of the input topic gained or lost in a rebalance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaneChange {
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
}

struct RebalanceLog {
    topic: String,
    changes: Mutex<Vec<LaneChange>>,
}

impl ClientContext for RebalanceLog {}

impl ConsumerContext for RebalanceLog {
    fn post_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let parts = |tpl: &TopicPartitionList| {
            tpl.elements()
                .iter()
                .filter(|e| e.topic() == self.topic)
                .map(|e| e.partition())
                .collect::<Vec<_>>()
        };
        let change = match rebalance {
            Rebalance::Assign(tpl) => LaneChange::Assigned(parts(tpl)),
            Rebalance::Revoke(tpl) => LaneChange::Revoked(parts(tpl)),
            Rebalance::Error(e) => {
                tracing::warn!(error = %e, "consumer group rebalance error");
                return;
            }
        };
        self.changes.lock().expect("rebalance log").push(change);
    }
}

/// A record read from the input topic.
pub struct InputRecord<'a> {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
}

/// One commit's worth of writes.
#[derive(Default, Debug)]
pub struct Txn {
    pub outputs: Vec<(Option<Vec<u8>>, Vec<u8>)>,
    pub dead_letters: Vec<(Option<Vec<u8>>, Vec<u8>)>,
    pub state: Vec<StateRecord>,
    /// Next offset to consume, per input partition.
    pub offsets: BTreeMap<i32, i64>,
}

impl Txn {
    pub fn is_empty(&self) -> bool {
        self.outputs.is_empty()
            && self.dead_letters.is_empty()
            && self.state.is_empty()
            && self.offsets.is_empty()
    }

    pub fn clear(&mut self) {
        self.outputs.clear();
        self.dead_letters.clear();
        self.state.clear();
        self.offsets.clear();
    }
}

/// Why a commit failed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The transaction was aborted; nothing of it is visible. The caller
    /// rebuilds its state from Kafka and goes on.
    #[error("kafka transaction aborted: {0}")]
    Aborted(KafkaError),
    /// This producer can never commit again (fenced, or a fatal error).
    #[error("kafka producer failed for good: {0}")]
    Fatal(KafkaError),
    /// Nothing was written: partitions were revoked or assigned since the
    /// caller last looked ([`KafkaIo::update_assignment`]). What is staged
    /// may belong to a partition another instance now owns, and the group
    /// coordinator checks the generation, not who owns a partition: the
    /// caller must rebuild its lanes first.
    #[error("the partition assignment changed before the commit")]
    Rebalanced,
}

pub struct KafkaIo {
    s: Settings,
    consumer: BaseConsumer<RebalanceLog>,
    // Threaded: delivery reports must be served while a transaction is
    // committed or aborted.
    producer: Mutex<ThreadedProducer<DefaultProducerContext>>,
    reader: BaseConsumer,
    input_partitions: i32,
}

fn base_config(bootstrap: &str, props: &BTreeMap<String, String>) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    for (k, v) in props {
        c.set(k, v);
    }
    c
}

impl KafkaIo {
    /// Connect, create the state (and output / dead-letter) topics if they
    /// are missing, subscribe to the input topic and start the transactional
    /// producer.
    pub fn connect(s: Settings, rt: &tokio::runtime::Handle) -> anyhow::Result<Self> {
        let mut cc = base_config(&s.bootstrap, &s.consumer_props);
        cc.set("group.id", &s.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false");
        for (k, v) in [
            ("session.timeout.ms", "10000"),
            ("heartbeat.interval.ms", "1000"),
            ("max.poll.interval.ms", "300000"),
        ] {
            if !s.consumer_props.contains_key(k) {
                cc.set(k, v);
            }
        }
        let consumer: BaseConsumer<RebalanceLog> = cc
            .create_with_context(RebalanceLog {
                topic: s.input_topic.clone(),
                changes: Mutex::new(Vec::new()),
            })
            .context("cannot create the kafka consumer")?;
        let metadata = consumer
            .fetch_metadata(Some(&s.input_topic), s.timeout)
            .with_context(|| format!("cannot reach kafka at {}", s.bootstrap))?;
        let input_partitions = metadata
            .topics()
            .iter()
            .find(|t| t.name() == s.input_topic && t.error().is_none())
            .map(|t| t.partitions().len() as i32)
            .filter(|&n| n > 0);
        let Some(input_partitions) = input_partitions else {
            bail!(
                "source.topic `{}` does not exist at {}",
                s.input_topic,
                s.bootstrap
            );
        };
        ensure_topics(&s, input_partitions, rt)?;

        let mut rc = base_config(&s.bootstrap, &s.consumer_props);
        rc.set("group.id", format!("{}-reader", s.group_id))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "false")
            // Short reads of known ranges: do not let the broker hold them.
            .set("fetch.wait.max.ms", "20")
            .set("fetch.error.backoff.ms", "20");
        let reader: BaseConsumer = rc.create().context("cannot create the kafka reader")?;

        let producer = Mutex::new(transactional_producer(&s)?);
        consumer
            .subscribe(&[&s.input_topic])
            .context("cannot subscribe to source.topic")?;
        Ok(Self {
            s,
            consumer,
            producer,
            reader,
            input_partitions,
        })
    }

    pub fn input_partitions(&self) -> i32 {
        self.input_partitions
    }

    /// Hand the next input record to `f`, if one comes within `timeout`.
    /// Returns whether a record came.
    pub fn poll(&self, timeout: Duration, f: &mut dyn FnMut(InputRecord<'_>)) -> bool {
        match self.consumer.poll(timeout) {
            None => false,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "kafka consumer error");
                false
            }
            Some(Ok(m)) => {
                f(InputRecord {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key(),
                    value: m.payload(),
                });
                true
            }
        }
    }

    /// Stop (or restart) fetching every assigned partition, while the
    /// pipeline holds its source back; `poll` keeps serving the group.
    pub fn pause(&self, paused: bool) {
        let Ok(assignment) = self.consumer.assignment() else {
            return;
        };
        let r = if paused {
            self.consumer.pause(&assignment)
        } else {
            self.consumer.resume(&assignment)
        };
        if let Err(e) = r {
            tracing::warn!(error = %e, paused, "cannot pause or resume the source partitions");
        }
    }

    /// Apply the rebalances seen since the last call to `assigned`;
    /// returns whether there were any.
    pub fn update_assignment(&self, assigned: &mut BTreeSet<i32>) -> bool {
        let changes = std::mem::take(
            &mut *self
                .consumer
                .context()
                .changes
                .lock()
                .expect("rebalance log"),
        );
        for c in &changes {
            match c {
                LaneChange::Assigned(ps) => assigned.extend(ps),
                LaneChange::Revoked(ps) => ps.iter().for_each(|p| {
                    assigned.remove(p);
                }),
            }
        }
        !changes.is_empty()
    }

    /// Where the consumer is now, per assigned partition.
    pub fn positions(&self) -> BTreeMap<i32, i64> {
        let mut out = BTreeMap::new();
        if let Ok(tpl) = self.consumer.position() {
            for e in tpl.elements() {
                if let Offset::Offset(o) = e.offset() {
                    out.insert(e.partition(), o);
                }
            }
        }
        out
    }

    /// End of a partition now (its high watermark).
    /// Retried until the timeout: during a broker restart the partition
    /// has no leader for a moment (NotLeaderForPartition).
    pub fn end_offset(&self, partition: i32) -> anyhow::Result<i64> {
        let deadline = Instant::now() + self.s.timeout;
        loop {
            match self
                .consumer
                .fetch_watermarks(&self.s.input_topic, partition, self.s.timeout)
            {
                Ok((_, high)) => return Ok(high),
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(partition, error = %e, "end of a source partition not known yet; retrying");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => {
                    return Err(e).context("cannot read the end of a source partition");
                }
            }
        }
    }

    /// Point the consumer back at a lane's watermark (after a rebuild).
    /// Fails while the partition is not fetched yet or is being revoked;
    /// the caller retries on its next turn.
    pub fn seek(&self, partition: i32, offset: i64) -> anyhow::Result<()> {
        self.consumer
            .seek(
                &self.s.input_topic,
                partition,
                Offset::Offset(offset),
                Duration::from_secs(2),
            )
            .context("cannot seek the source partition")
    }

    /// Read a lane's state to the end of its state partition.
    pub fn read_state(&self, partition: i32) -> anyhow::Result<LaneState> {
        let mut lane = LaneState::default();
        let (low, high) = self
            .reader
            .fetch_watermarks(&self.s.state_topic, partition, self.s.timeout)
            .context("cannot read the state topic")?;
        if high > low {
            self.read_partition(
                &self.s.state_topic,
                partition,
                low,
                high,
                &mut |_, key, value| {
                    lane.apply(key, value);
                },
            )?;
        }
        Ok(lane)
    }

    /// Visit the records of `[first, end)` of an input partition.
    pub fn read_input(
        &self,
        partition: i32,
        first: i64,
        end: i64,
        f: &mut dyn FnMut(i64, Option<&[u8]>, Option<&[u8]>),
    ) -> anyhow::Result<()> {
        self.read_partition(&self.s.input_topic, partition, first, end, f)
    }

    fn read_partition(
        &self,
        topic: &str,
        partition: i32,
        first: i64,
        end: i64,
        f: &mut dyn FnMut(i64, Option<&[u8]>, Option<&[u8]>),
    ) -> anyhow::Result<()> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(first))?;
        self.reader.assign(&tpl)?;
        let deadline = Instant::now() + self.s.timeout.max(Duration::from_secs(30));
        loop {
            match self.reader.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    if m.offset() >= first && m.offset() < end {
                        f(m.offset(), m.key(), m.payload());
                    }
                    if m.offset() + 1 >= end {
                        break;
                    }
                }
                Some(Err(e)) => tracing::warn!(error = %e, topic, partition, "kafka read error"),
                None => {}
            }
            // Control records (transaction markers) occupy offsets too: the
            // position tells when the range is behind us.
            let pos = self
                .reader
                .position()?
                .elements()
                .first()
                .and_then(|e| e.offset().to_raw());
            if pos.is_some_and(|p| p >= end) {
                break;
            }
            if Instant::now() > deadline {
                bail!("timed out reading {topic}[{partition}] offsets {first}..{end}");
            }
        }
        self.reader.unassign()?;
        Ok(())
    }

    /// Write one transaction: outputs, dead letters, state and offsets.
    pub fn commit(&self, txn: &Txn) -> Result<(), CommitError> {
        // Rebalance callbacks run inside `poll`, and nothing polls between
        // this check and the commit: a revocation cannot slip in between.
        if !self
            .consumer
            .context()
            .changes
            .lock()
            .expect("rebalance log")
            .is_empty()
        {
            return Err(CommitError::Rebalanced);
        }
        let mut producer = self.producer.lock().expect("producer lock");
        let p = &*producer;
        let staged = || -> Result<(), KafkaError> {
            p.begin_transaction()?;
            for (key, value) in &txn.outputs {
                send(p, &self.s.output_topic, None, key.as_deref(), Some(value))?;
            }
            if let Some(dlq) = &self.s.dlq_topic {
                for (key, value) in &txn.dead_letters {
                    send(p, dlq, None, key.as_deref(), Some(value))?;
                }
            }
            for r in &txn.state {
                send(
                    p,
                    &self.s.state_topic,
                    Some(r.partition),
                    Some(r.key.as_bytes()),
                    r.value.as_deref(),
                )?;
            }
            if !txn.offsets.is_empty() {
                let mut tpl = TopicPartitionList::new();
                for (&part, &o) in &txn.offsets {
                    tpl.add_partition_offset(&self.s.input_topic, part, Offset::Offset(o))?;
                }
                let cgm = self
                    .consumer
                    .group_metadata()
                    .ok_or(KafkaError::ConsumerCommit(RDKafkaErrorCode::InvalidGroupId))?;
                p.send_offsets_to_transaction(&tpl, &cgm, self.s.timeout)?;
            }
            // rdkafka's commit flushes the ThreadedProducer, and its flush
            // sleeps up to 100 ms for an event the producer's own thread
            // takes first: wait for the deliveries here, in short steps.
            let deadline = Instant::now() + self.s.timeout;
            while p.in_flight_count() > 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_micros(500));
            }
            Ok(())
        };
        let failed = match staged().and_then(|()| self.end_transaction(p, true)) {
            Ok(()) => return Ok(()),
            Err(e) if is_fatal(&e) => e,
            Err(e) => match self.end_transaction(p, false) {
                Ok(()) => return Err(CommitError::Aborted(e)),
                Err(abort) => {
                    tracing::warn!(error = %abort, "kafka abort failed");
                    abort
                }
            },
        };
        // The producer is unusable (e.g. a commit that timed out while the
        // broker restarted left it in an invalid state). A new one with the
        // same transactional id fences the old and aborts what it left
        // open; the caller resumes from the committed state, as after an
        // abort.
        tracing::warn!(error = %failed, "kafka producer failed; starting a new one");
        match transactional_producer(&self.s) {
            Ok(fresh) => {
                *producer = fresh;
                Err(CommitError::Aborted(failed))
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "cannot start a new kafka producer");
                Err(CommitError::Fatal(failed))
            }
        }
    }

    /// Commit or abort the open transaction, retrying what librdkafka
    /// calls retriable (a timeout: the same call is to be made again).
    fn end_transaction(
        &self,
        p: &ThreadedProducer<DefaultProducerContext>,
        commit: bool,
    ) -> Result<(), KafkaError> {
        let deadline = Instant::now() + 2 * self.s.timeout;
        loop {
            let r = if commit {
                p.commit_transaction(self.s.timeout)
            } else {
                p.abort_transaction(self.s.timeout)
            };
            match r {
                Err(KafkaError::Transaction(t))
                    if t.is_retriable() && Instant::now() < deadline =>
                {
                    tracing::debug!(error = %t, commit, "kafka transaction end retried");
                    std::thread::sleep(Duration::from_millis(100));
                }
                r => return r,
            }
        }
    }
}

fn is_fatal(e: &KafkaError) -> bool {
    matches!(e, KafkaError::Transaction(t) if t.is_fatal())
}

/// The transactional producer, its transactions initialised.
fn transactional_producer(
    s: &Settings,
) -> anyhow::Result<ThreadedProducer<DefaultProducerContext>> {
    let mut pc = base_config(&s.bootstrap, &s.producer_props);
    pc.set("transactional.id", &s.transactional_id)
        .set("enable.idempotence", "true");
    if !s.producer_props.contains_key("transaction.timeout.ms") {
        // A crashed instance's open transaction blocks read_committed
        // readers of its partitions until it times out: keep it short.
        pc.set("transaction.timeout.ms", "10000");
    }
    let producer: ThreadedProducer<DefaultProducerContext> =
        pc.create().context("cannot create the kafka producer")?;
    producer
        .init_transactions(s.timeout)
        .context("cannot initialise kafka transactions")?;
    Ok(producer)
}

fn send(
    producer: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    partition: Option<i32>,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Result<(), KafkaError> {
    let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic);
    if let Some(p) = partition {
        rec = rec.partition(p);
    }
    if let Some(k) = key {
        rec = rec.key(k);
    }
    if let Some(v) = value {
        rec = rec.payload(v);
    }
    loop {
        match producer.send(rec) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                rec = back;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

fn ensure_topics(s: &Settings, partitions: i32, rt: &tokio::runtime::Handle) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = base_config(&s.bootstrap, &s.producer_props)
        .create()
        .context("cannot create the kafka admin client")?;
    let mut wanted: Vec<NewTopic<'_>> =
        vec![
            NewTopic::new(&s.state_topic, partitions, TopicReplication::Fixed(-1))
                .set("cleanup.policy", "compact")
                .set("min.compaction.lag.ms", "60000"),
        ];
    let mut names: BTreeSet<&str> = BTreeSet::from([s.state_topic.as_str()]);
    for t in [Some(&s.output_topic), s.dlq_topic.as_ref()]
        .into_iter()
        .flatten()
    {
        if names.insert(t) {
            wanted.push(NewTopic::new(t, partitions, TopicReplication::Fixed(-1)));
        }
    }
    let opts = AdminOptions::new().operation_timeout(Some(s.timeout));
    let results = rt
        .block_on(admin.create_topics(wanted.iter(), &opts))
        .context("cannot create kafka topics")?;
    for r in results {
        match r {
            Ok(name) => tracing::info!(topic = %name, "created kafka topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => bail!("cannot create kafka topic {name}: {code}"),
        }
    }
    Ok(())
}
