//! The output side: the transactional producer, one transaction per commit
//! (outputs, dead letters, state records and consumed offsets), its
//! retries, and the replacement of a producer left unusable.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

use crate::consumer::base_config;
use crate::{KafkaIo, Settings, StateRecord};

/// One commit's worth of writes.
#[derive(Default, Debug)]
pub struct Txn {
    pub outputs: Vec<(Option<Vec<u8>>, Vec<u8>)>,
    /// The output partition of each output, when chosen by the caller
    /// (decoupled mode's handoff: the lane's); empty: by key.
    pub output_partitions: Vec<i32>,
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
        self.output_partitions.clear();
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

pub(crate) type TxProducer = ThreadedProducer<DefaultProducerContext>;

impl KafkaIo {
    /// Write one transaction: outputs, dead letters, state and offsets.
    pub fn commit(&self, txn: &Txn) -> Result<(), CommitError> {
        // Rebalance callbacks run inside `poll`, and nothing polls between
        // this check and the commit: a revocation cannot slip in between.
        if self.rebalance_pending() {
            return Err(CommitError::Rebalanced);
        }
        let mut producer = self.producer.lock().expect("producer lock");
        let p = &*producer;
        let failed = match self
            .stage(p, txn)
            .and_then(|()| self.end_transaction(p, true))
        {
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

    /// Begin a transaction and send everything of `txn` into it.
    fn stage(&self, p: &TxProducer, txn: &Txn) -> Result<(), KafkaError> {
        p.begin_transaction()?;
        for (i, (key, value)) in txn.outputs.iter().enumerate() {
            let partition = txn.output_partitions.get(i).copied();
            send(
                p,
                &self.s.output_topic,
                partition,
                key.as_deref(),
                Some(value),
            )?;
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
    }

    /// Commit or abort the open transaction, retrying what librdkafka
    /// calls retriable (a timeout: the same call is to be made again).
    fn end_transaction(&self, p: &TxProducer, commit: bool) -> Result<(), KafkaError> {
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
pub(crate) fn transactional_producer(s: &Settings) -> anyhow::Result<TxProducer> {
    let mut pc = base_config(&s.bootstrap, &s.producer_props);
    pc.set("transactional.id", &s.transactional_id)
        .set("enable.idempotence", "true");
    if !s.producer_props.contains_key("transaction.timeout.ms") {
        // A crashed instance's open transaction blocks read_committed
        // readers of its partitions until it times out: keep it short.
        pc.set("transaction.timeout.ms", "10000");
    }
    let producer: TxProducer = pc.create().context("cannot create the kafka producer")?;
    producer
        .init_transactions(s.timeout)
        .context("cannot initialise kafka transactions")?;
    Ok(producer)
}

fn send(
    producer: &TxProducer,
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
