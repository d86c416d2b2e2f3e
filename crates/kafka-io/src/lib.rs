//! Kafka lanes for mlpredict (DESIGN.md §5): a consumer group reads the
//! input topic (one lane per partition, `read_committed`, no auto-commit); a
//! transactional producer writes, in one transaction per commit, the output
//! and dead-letter records, the state records (a compacted topic,
//! partitioned like the input) and the consumed offsets. A second,
//! group-less consumer reads a lane's state on assignment and re-reads a
//! batch's records by offset when they are needed again.
//!
//! Modules: `consumer` (group, assignment, reads), `transactions`
//! (producer and commit), `admin` (topic creation), `state` (the state
//! topic's records).

mod admin;
mod consumer;
mod state;
mod transactions;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context};
use rdkafka::consumer::{BaseConsumer, Consumer};

pub use consumer::{InputRecord, LaneChange, StateReader, TopicReader, Visit};
pub use state::{LaneHistory, LaneRecord, LaneState, StateRecord};
pub use transactions::{CommitError, Txn};

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
    /// Static group membership (KIP-345): a restarted instance with the
    /// same id takes its partitions back without a rebalance. A
    /// `group.instance.id` in `consumer_props` wins (empty: none).
    pub group_instance_id: Option<String>,
    pub timeout: Duration,
}

pub struct KafkaIo {
    s: Settings,
    consumer: BaseConsumer<consumer::RebalanceLog>,
    // Threaded: delivery reports must be served while a transaction is
    // committed or aborted.
    producer: Mutex<transactions::TxProducer>,
    reader: consumer::Reader,
    input_partitions: i32,
}

impl KafkaIo {
    /// Connect, create the state (and output / dead-letter) topics if they
    /// are missing, subscribe to the input topic and start the transactional
    /// producer.
    pub fn connect(s: Settings, rt: &tokio::runtime::Handle) -> anyhow::Result<Self> {
        let consumer = consumer::group_consumer(&s)?;
        let metadata = consumer
            .fetch_metadata(Some(&s.input_topic), s.timeout)
            .with_context(|| format!("cannot reach kafka at {}", s.bootstrap))?;
        let input_partitions = consumer::partition_count(&metadata, &s.input_topic);
        let Some(input_partitions) = input_partitions else {
            bail!(
                "source.topic `{}` does not exist at {}",
                s.input_topic,
                s.bootstrap
            );
        };
        admin::ensure_topics(&s, input_partitions, rt)?;
        let reader = consumer::Reader::new(&s)?;
        let producer = Mutex::new(transactions::transactional_producer(&s)?);
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
}
