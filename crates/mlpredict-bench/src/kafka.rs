//! Scenario (e)'s Kafka side: topics on the project's broker
//! (scripts/kafka/broker.sh), producing the input, and counting the output
//! with `read_committed` so a lost or duplicated record fails the run.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use memchr::memmem;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use crate::gen;

/// Create `name` with `partitions` partitions (replication factor 1).
pub fn create_topic(bootstrap: &str, name: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .context("kafka admin client")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in rt.block_on(admin.create_topics([&topic], &opts))? {
        if let Err((t, code)) = r {
            bail!("cannot create topic {t}: {code}");
        }
    }
    Ok(())
}

/// Delete topics of a finished run (best effort: a failure only warns).
pub fn delete_topics(bootstrap: &str, names: &[&str]) {
    let result = (|| -> anyhow::Result<()> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        for r in rt.block_on(admin.delete_topics(names, &opts))? {
            if let Err((t, code)) = r {
                if code != RDKafkaErrorCode::UnknownTopicOrPartition {
                    eprintln!("warning: cannot delete topic {t}: {code}");
                }
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        eprintln!("warning: cannot delete the run's topics: {e:#}");
    }
}

/// Produce `n` generated records of about `size` bytes, record `i` (key
/// `k{i}`) to partition `i % partitions`; returns the payload bytes.
pub fn produce(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    n: u64,
    size: usize,
) -> anyhow::Result<u64> {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("compression.type", "none")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .context("kafka producer")?;
    let mut buf = Vec::with_capacity(size * 2);
    let mut bytes = 0;
    for i in 0..n {
        buf.clear();
        gen::record(i, size, &mut buf);
        let value = &buf[..buf.len() - 1]; // no newline
        bytes += value.len() as u64;
        let key = format!("k{i}");
        let mut rec = BaseRecord::to(topic)
            .partition((i % partitions as u64) as i32)
            .key(key.as_bytes())
            .payload(value);
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    rec = back;
                    p.poll(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(e).context("produce the input"),
            }
        }
        if i % 10_000 == 0 {
            p.poll(Duration::ZERO);
        }
    }
    p.flush(Duration::from_secs(120))
        .context("flush the input")?;
    Ok(bytes)
}

/// What the output topic holds (under `read_committed` unless asked).
#[derive(Debug, Clone, Default)]
pub struct OutputCount {
    pub messages: u64,
    /// Distinct `ml_predict.custom_id` values.
    pub distinct_custom_ids: u64,
    /// Input ids (`id` field) in `0..n` seen at least once.
    pub distinct_ids: u64,
    pub ok: u64,
    pub bytes: u64,
    /// Offsets that hold no record at this isolation level: transaction
    /// markers (one per transaction per partition written) and, under
    /// read_committed, aborted records.
    pub control_records: u64,
}

/// Read every committed record of `topic` (all partitions, from the
/// beginning, `isolation.level = read_committed`, or every record with
/// `committed = false`); `n` is the input count (ids `0..n`).
pub fn count_output(
    bootstrap: &str,
    topic: &str,
    n: u64,
    committed: bool,
) -> anyhow::Result<OutputCount> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("{topic}-bench-reader"))
        .set(
            "isolation.level",
            if committed {
                "read_committed"
            } else {
                "read_uncommitted"
            },
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760")
        .create()
        .context("kafka consumer")?;
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .context("metadata of the output topic")?;
    let partitions = md
        .topics()
        .first()
        .map(|t| t.partitions().len() as i32)
        .unwrap_or(0);
    if partitions == 0 {
        bail!("output topic {topic} does not exist");
    }
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    let mut span = 0;
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
        let (low, high) = c.fetch_watermarks(topic, p, Duration::from_secs(10))?;
        if high > low {
            ends.insert(p, high);
        }
        span += (high - low).max(0) as u64;
    }
    c.assign(&tpl)?;
    let mut out = OutputCount::default();
    let mut custom_ids: HashSet<(u32, u64)> = HashSet::with_capacity(n as usize);
    let mut ids = vec![false; n as usize];
    let deadline = Instant::now() + Duration::from_secs(600);
    let quiet = Duration::from_secs(5);
    let mut idle_since = Instant::now();
    // Errors (the broker restarting, say) are retried until the deadline.
    let mut last_error: Option<Instant> = None;
    loop {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                idle_since = Instant::now();
                let v = m.payload().unwrap_or_default();
                out.messages += 1;
                out.bytes += v.len() as u64;
                if committed {
                    if let Some((lane, pos)) = custom_id(v) {
                        custom_ids.insert((lane, pos));
                    }
                    if let Some(id) = number_after(v, b"{\"id\":") {
                        if let Some(seen) = ids.get_mut(id as usize) {
                            *seen = true;
                        }
                    }
                    if memmem::find(v, b"\"status\":\"ok\"").is_some() {
                        out.ok += 1;
                    }
                }
                // The positions are worth asking for now and then only.
                if out.messages % 10_000 != 0 {
                    continue;
                }
            }
            Some(Err(e)) => {
                if last_error.is_none() {
                    eprintln!("warning: reading {topic}: {e} (retrying)");
                }
                last_error = Some(Instant::now());
            }
            None => {}
        }
        let pos = c.position()?;
        let done = pos.elements().iter().all(|e| {
            ends.get(&e.partition())
                .is_none_or(|&end| e.offset().to_raw().unwrap_or(0) >= end)
        });
        // Should the position never pass the last transaction marker, stop
        // once nothing came (and nothing failed) for a while.
        let settled =
            idle_since.elapsed() > quiet && last_error.is_none_or(|t| t.elapsed() > quiet);
        if done || settled {
            break;
        }
        if Instant::now() > deadline {
            bail!("timed out reading {topic}");
        }
    }
    out.control_records = span.saturating_sub(out.messages);
    out.distinct_custom_ids = custom_ids.len() as u64;
    out.distinct_ids = ids.iter().filter(|&&b| b).count() as u64;
    Ok(out)
}

/// `"custom_id":"{lane}-{position}"` of an output record.
fn custom_id(v: &[u8]) -> Option<(u32, u64)> {
    let key = b"\"custom_id\":\"";
    let at = memmem::find(v, key)? + key.len();
    let rest = &v[at..];
    let end = rest.iter().position(|&b| b == b'"')?;
    let text = std::str::from_utf8(&rest[..end]).ok()?;
    let (lane, pos) = text.split_once('-')?;
    Some((lane.parse().ok()?, pos.parse().ok()?))
}

fn number_after(v: &[u8], prefix: &[u8]) -> Option<u64> {
    let rest = v.strip_prefix(prefix)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_custom_id_and_id() {
        let v = br#"{"id":42,"text":"x","prediction":"p","ml_predict":{"batch_number":"b","custom_id":"3-1200","status":"ok"}}"#;
        assert_eq!(custom_id(v), Some((3, 1200)));
        assert_eq!(number_after(v, b"{\"id\":"), Some(42));
    }
}
