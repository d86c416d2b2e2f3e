//! A real Kafka broker for tests (scripts/kafka/broker.sh), and helpers to
//! produce input and read the output with `read_committed`; [`run`]: Kafka
//! pipelines of the real binary over it.
//!
//! Uses the file tests' `common` module: declare both (`mod common; mod
//! kafka_common;`).
#![allow(dead_code)]

mod run;

pub use run::*;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Kafka tests share one broker and one of them restarts it: one at a time.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Start (or find) the project's broker; returns its bootstrap address.
pub fn broker() -> String {
    if let Ok(b) = std::env::var("MLPREDICT_KAFKA_BOOTSTRAP") {
        return b;
    }
    broker_cmd(&["start"]).trim().to_owned()
}

/// `scripts/kafka/broker.sh args…`, which must succeed; its stdout.
pub fn broker_cmd(args: &[&str]) -> String {
    let out = Command::new(repo().join("scripts/kafka/broker.sh"))
        .args(args)
        .output()
        .expect("run broker.sh");
    assert!(
        out.status.success(),
        "broker.sh {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

pub async fn create_topic(bootstrap: &str, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let t = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let r = admin
        .create_topics([&t], &AdminOptions::new())
        .await
        .unwrap();
    r.into_iter().for_each(|x| {
        x.unwrap();
    });
}

/// Produce `values` with keys `k{i}`, spread over partitions by key.
pub fn produce(bootstrap: &str, topic: &str, values: &[(String, String)]) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for (k, v) in values {
        let mut rec = BaseRecord::to(topic).key(k.as_str()).payload(v.as_str());
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((_, back)) => {
                    rec = back;
                    p.poll(Duration::from_millis(20));
                }
            }
        }
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

/// A consumer that sees only committed records.
fn committed_reader(bootstrap: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("reader"))
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap()
}

/// Every committed record of a topic: (key, value).
pub fn read_all(bootstrap: &str, topic: &str, partitions: i32) -> Vec<(Option<String>, String)> {
    let c = committed_reader(bootstrap);
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
        let (low, high) = c
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .unwrap();
        if high > low {
            ends.insert(p, high);
        }
    }
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            out.push((
                m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
            ));
        }
        let pos = c.position().unwrap();
        let done = pos.elements().iter().all(|e| {
            ends.get(&e.partition())
                .is_none_or(|&end| e.offset().to_raw().unwrap_or(0) >= end)
        });
        if done {
            return out;
        }
        assert!(Instant::now() < deadline, "timed out reading {topic}");
    }
}

/// The committed values of one partition, in offset order.
pub fn read_partition(bootstrap: &str, topic: &str, partition: i32) -> Vec<String> {
    let c = committed_reader(bootstrap);
    let (low, high) = c
        .fetch_watermarks(topic, partition, Duration::from_secs(10))
        .unwrap();
    let mut out = Vec::new();
    if high <= low {
        return out;
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            out.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
        let at = c
            .position()
            .unwrap()
            .elements()
            .first()
            .and_then(|e| e.offset().to_raw());
        if at.is_some_and(|o| o >= high) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "timed out reading {topic}[{partition}]"
        );
    }
}

pub fn kafka_config(
    dir: &Path,
    bootstrap: &str,
    mock: &str,
    input: &str,
    output: &str,
    group: &str,
    extra: &str,
) -> PathBuf {
    let toml = format!(
        r#"[pipeline]
name = "{group}"

[source]
type = "kafka"
bootstrap.servers = "{bootstrap}"
topic = "{input}"
group.id = "{group}"

[sink]
type = "kafka"
topic = "{output}"
dlq.topic = "{output}-dlq"

{model}
{batch}{extra}
"#,
        model = crate::common::openai_model(mock, "sk-test"),
        batch = crate::common::ml_batch(mock, &format!("{}/local", dir.display()), "300ms"),
    );
    crate::common::write_config(dir, &format!("{group}.toml"), &toml)
}
