//! The input side: the group consumer (assignment, poll, pause, seek,
//! positions, end offsets) and the group-less reader of known ranges (a
//! lane's state partition, a batch's input records).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::metadata::Metadata;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::{KafkaIo, LaneHistory, LaneState, Settings};

/// Partitions of the input topic gained or lost in a rebalance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaneChange {
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
}

pub(crate) struct RebalanceLog {
    topic: String,
    pub(crate) changes: Mutex<Vec<LaneChange>>,
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

/// What a read of a range is given, per record: its offset, key and value.
pub type Visit<'f> = dyn FnMut(i64, Option<&[u8]>, Option<&[u8]>) + 'f;

/// [`Visit`] that answers whether to go on.
type Scan<'f> = dyn FnMut(i64, Option<&[u8]>, Option<&[u8]>) -> bool + 'f;

/// A record read from the input topic.
pub struct InputRecord<'a> {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
}

pub(crate) fn base_config(bootstrap: &str, props: &BTreeMap<String, String>) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    for (k, v) in props {
        c.set(k, v);
    }
    c
}

/// Our group timing defaults, for the keys the user did not set, chosen so
/// that they agree with the ones the user did set (librdkafka refuses
/// `heartbeat.interval.ms >= session.timeout.ms` and `max.poll.interval.ms <
/// session.timeout.ms` in every consumer, grouped or not).
fn group_timing_defaults(props: &BTreeMap<String, String>) -> Vec<(&'static str, String)> {
    let user = |k: &str| props.get(k).and_then(|v| v.trim().parse::<u64>().ok());
    let max_poll = user("max.poll.interval.ms");
    let session =
        user("session.timeout.ms").unwrap_or_else(|| max_poll.map_or(10_000, |m| m.min(10_000)));
    let defaults = [
        ("session.timeout.ms", session),
        ("heartbeat.interval.ms", (session / 3).clamp(1, 1000)),
        ("max.poll.interval.ms", session.max(300_000)),
    ];
    defaults
        .into_iter()
        .filter(|(k, _)| !props.contains_key(*k))
        .map(|(k, v)| (k, v.to_string()))
        .collect()
}

/// Every consumer we create starts from this: the user's `source.*`
/// properties (security, timeouts, …) and our timing defaults that agree
/// with them.
pub(crate) fn consumer_config(bootstrap: &str, props: &BTreeMap<String, String>) -> ClientConfig {
    let mut c = base_config(bootstrap, props);
    for (k, v) in group_timing_defaults(props) {
        c.set(k, v);
    }
    c
}

/// The group consumer of the input topic.
pub(crate) fn group_config(s: &Settings) -> ClientConfig {
    let mut cc = consumer_config(&s.bootstrap, &s.consumer_props);
    cc.set("group.id", &s.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false");
    match (
        s.consumer_props.get("group.instance.id"),
        &s.group_instance_id,
    ) {
        (Some(user), _) if user.is_empty() => {
            cc.remove("group.instance.id");
        }
        (None, Some(id)) => {
            cc.set("group.instance.id", id);
        }
        _ => {}
    }
    cc
}

pub(crate) fn group_consumer(s: &Settings) -> anyhow::Result<BaseConsumer<RebalanceLog>> {
    group_config(s)
        .create_with_context(RebalanceLog {
            topic: s.input_topic.clone(),
            changes: Mutex::new(Vec::new()),
        })
        .context("cannot create the kafka consumer")
}

/// The group-less consumer that reads known ranges by offset.
pub(crate) fn reader_config(s: &Settings) -> ClientConfig {
    let mut rc = consumer_config(&s.bootstrap, &s.consumer_props);
    rc.set("group.id", format!("{}-reader", s.group_id))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "false")
        // Short reads of known ranges: do not let the broker hold them.
        .set("fetch.wait.max.ms", "20")
        .set("fetch.error.backoff.ms", "20");
    rc
}

/// Reads known offset ranges of a partition with `read_committed`, without
/// joining a group.
pub(crate) struct Reader {
    consumer: BaseConsumer,
    timeout: Duration,
}

impl Reader {
    pub(crate) fn new(s: &Settings) -> anyhow::Result<Self> {
        Ok(Self {
            consumer: reader_config(s)
                .create()
                .context("cannot create the kafka reader")?,
            timeout: s.timeout,
        })
    }

    /// Read a lane's state to the end of its state partition.
    pub(crate) fn read_state(&self, topic: &str, partition: i32) -> anyhow::Result<LaneState> {
        let mut lane = LaneState::default();
        self.read_all(topic, partition, &mut |_, key, value| {
            lane.apply(key, value)
        })?;
        Ok(lane)
    }

    /// Visit a whole partition, as far as it is now.
    fn read_all(&self, topic: &str, partition: i32, f: &mut Visit<'_>) -> anyhow::Result<()> {
        let (low, high) = self
            .consumer
            .fetch_watermarks(topic, partition, self.timeout)
            .with_context(|| format!("cannot read the state topic {topic}"))?;
        if high > low {
            self.read_partition(topic, partition, low, high, f)?;
        }
        Ok(())
    }

    /// Visit the records of `[first, end)` of a partition.
    pub(crate) fn read_partition(
        &self,
        topic: &str,
        partition: i32,
        first: i64,
        end: i64,
        f: &mut Visit<'_>,
    ) -> anyhow::Result<()> {
        self.scan(topic, partition, first, end, &mut |o, k, v| {
            f(o, k, v);
            true
        })
    }

    /// Whether `[first, end)` of a partition holds a committed record (not
    /// only transaction markers or aborted records).
    pub(crate) fn any_record(
        &self,
        topic: &str,
        partition: i32,
        first: i64,
        end: i64,
    ) -> anyhow::Result<bool> {
        let mut found = false;
        self.scan(topic, partition, first, end, &mut |_, _, _| {
            found = true;
            false
        })?;
        Ok(found)
    }

    /// [`Self::read_partition`], until `f` answers false.
    fn scan(
        &self,
        topic: &str,
        partition: i32,
        first: i64,
        end: i64,
        f: &mut Scan<'_>,
    ) -> anyhow::Result<()> {
        if first >= end {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(first))?;
        self.consumer.assign(&tpl)?;
        let deadline = Instant::now() + self.timeout.max(Duration::from_secs(30));
        loop {
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    if m.offset() >= first
                        && m.offset() < end
                        && !f(m.offset(), m.key(), m.payload())
                    {
                        break;
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
                .consumer
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
        self.consumer.unassign()?;
        Ok(())
    }

    /// The partitions of `topic`; `None` when the topic does not exist.
    fn partitions(&self, topic: &str) -> anyhow::Result<Option<i32>> {
        let metadata = self
            .consumer
            .fetch_metadata(Some(topic), self.timeout)
            .context("cannot reach kafka")?;
        Ok(partition_count(&metadata, topic))
    }
}

/// How many partitions `topic` has in `metadata`; `None` if it does not
/// exist.
pub(crate) fn partition_count(metadata: &Metadata, topic: &str) -> Option<i32> {
    metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().len() as i32)
        .filter(|&n| n > 0)
}

/// Reads a pipeline's state topic without joining its group or starting a
/// producer (`mlpredict status`: it must not disturb running instances).
pub struct StateReader {
    reader: Reader,
    topic: String,
}

impl StateReader {
    /// Only `bootstrap`, `group_id`, `state_topic`, `consumer_props` and
    /// `timeout` of `s` are used.
    pub fn connect(s: &Settings) -> anyhow::Result<Self> {
        Ok(Self {
            reader: Reader::new(s)?,
            topic: s.state_topic.clone(),
        })
    }

    /// How many partitions the state topic has; `None` when it does not
    /// exist (the pipeline never ran against this cluster).
    pub fn partitions(&self) -> anyhow::Result<Option<i32>> {
        self.reader
            .partitions(&self.topic)
            .with_context(|| format!("cannot read the metadata of {}", self.topic))
    }

    /// One lane's state, folded from its state partition.
    pub fn read_state(&self, partition: i32) -> anyhow::Result<LaneState> {
        self.reader.read_state(&self.topic, partition)
    }

    /// One lane's state with the emitted batches still in the partition.
    pub fn read_history(&self, partition: i32) -> anyhow::Result<LaneHistory> {
        let mut lane = LaneHistory::default();
        self.reader
            .read_all(&self.topic, partition, &mut |_, key, value| {
                lane.apply(key, value)
            })?;
        Ok(lane)
    }
}

/// Reads known offset ranges of one topic with `read_committed`, without
/// joining a group (decoupled mode's poller reads the submitter's input).
pub struct TopicReader {
    reader: Reader,
    topic: String,
}

impl TopicReader {
    /// Only `bootstrap`, `group_id`, `consumer_props` and `timeout` of `s`
    /// are used.
    pub fn connect(s: &Settings, topic: &str) -> anyhow::Result<Self> {
        Ok(Self {
            reader: Reader::new(s)?,
            topic: topic.to_owned(),
        })
    }

    /// Visit the records of `[first, end)` of a partition.
    pub fn read(
        &self,
        partition: i32,
        first: i64,
        end: i64,
        f: &mut Visit<'_>,
    ) -> anyhow::Result<()> {
        self.reader
            .read_partition(&self.topic, partition, first, end, f)
    }
}

impl KafkaIo {
    pub fn input_partitions(&self) -> i32 {
        self.input_partitions
    }

    /// Hand the next input record to `f`, if one comes within `timeout`.
    /// Returns whether a record came; an error only when this consumer can
    /// never consume again (another process took its static membership).
    pub fn poll(
        &self,
        timeout: Duration,
        f: &mut dyn FnMut(InputRecord<'_>),
    ) -> anyhow::Result<bool> {
        Ok(match self.consumer.poll(timeout) {
            None => false,
            Some(Err(e))
                if e.rdkafka_error_code()
                    == Some(rdkafka::types::RDKafkaErrorCode::FencedInstanceId) =>
            {
                bail!(
                    "another consumer joined the group with this instance's id ({}): two processes share an instance id; \
                     give each one its own --instance-id (or MLPREDICT_INSTANCE_ID)",
                    self.s.group_instance_id.as_deref().unwrap_or("?")
                )
            }
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
        })
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

    /// Whether rebalances happened that [`Self::update_assignment`] has not
    /// applied yet.
    pub(crate) fn rebalance_pending(&self) -> bool {
        !self
            .consumer
            .context()
            .changes
            .lock()
            .expect("rebalance log")
            .is_empty()
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

    /// The group's committed offset of every input partition (any member's
    /// commits); a partition without one is missing.
    pub fn committed_offsets(&self) -> anyhow::Result<BTreeMap<i32, i64>> {
        let mut tpl = TopicPartitionList::new();
        for p in 0..self.input_partitions {
            tpl.add_partition(&self.s.input_topic, p);
        }
        let got = self
            .consumer
            .committed_offsets(tpl, self.s.timeout)
            .context("cannot read the group's committed offsets")?;
        Ok(got
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect())
    }

    /// Whether `[first, end)` of an input partition holds a committed
    /// record.
    pub fn input_has_record(&self, partition: i32, first: i64, end: i64) -> anyhow::Result<bool> {
        self.reader
            .any_record(&self.s.input_topic, partition, first, end)
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
        self.reader.read_state(&self.s.state_topic, partition)
    }

    /// Visit the records of `[first, end)` of an input partition.
    pub fn read_input(
        &self,
        partition: i32,
        first: i64,
        end: i64,
        f: &mut Visit<'_>,
    ) -> anyhow::Result<()> {
        self.reader
            .read_partition(&self.s.input_topic, partition, first, end, f)
    }
}

#[cfg(test)]
mod tests;
