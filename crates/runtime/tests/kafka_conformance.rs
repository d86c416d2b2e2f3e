//! The ledger conformance suite (`runtime::ledger::conformance`) against
//! [`KafkaLedger`] on a real broker: MLPREDICT_KAFKA_BOOTSTRAP, or the
//! project's broker started by scripts/kafka/broker.sh.
//!
//! Each `open()` is a new process: a fresh [`KafkaIo`] with the same group
//! and the same transactional id, so a reopen is a restart of the same
//! instance. Outputs and dead letters are read back with `read_committed`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kafka_io::{KafkaIo, Settings};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use runtime::ledger::conformance::{self, Harness, RECORDS};
use runtime::ledger::kafka::KafkaLedger;

fn broker() -> String {
    if let Ok(b) = std::env::var("MLPREDICT_KAFKA_BOOTSTRAP") {
        return b;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/kafka/broker.sh");
    let out = Command::new(script)
        .arg("start")
        .output()
        .expect("run broker.sh");
    assert!(
        out.status.success(),
        "broker.sh start failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

struct Kafka {
    rt: tokio::runtime::Runtime,
    settings: Settings,
}

impl Kafka {
    /// A fresh input topic of one partition holding [`RECORDS`].
    fn new() -> Self {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let bootstrap = broker();
        let id = format!("{:08x}", rand::random::<u32>());
        let input = format!("conf-in-{id}");
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .unwrap();
        let topic = NewTopic::new(&input, 1, TopicReplication::Fixed(1));
        for r in rt
            .block_on(admin.create_topics([&topic], &AdminOptions::new()))
            .unwrap()
        {
            r.unwrap();
        }
        let p: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .unwrap();
        for (i, r) in RECORDS.iter().enumerate() {
            let key = format!("k{i}");
            p.send(BaseRecord::to(&input).key(&key).payload(*r))
                .map_err(|(e, _)| e)
                .unwrap();
        }
        p.flush(Duration::from_secs(30)).unwrap();
        let settings = Settings {
            bootstrap,
            input_topic: input,
            group_id: format!("conf-g-{id}"),
            output_topic: format!("conf-out-{id}"),
            dlq_topic: Some(format!("conf-dlq-{id}")),
            state_topic: format!("conf-state-{id}"),
            consumer_props: BTreeMap::new(),
            producer_props: BTreeMap::new(),
            // The same on every open: a reopen fences what a crash left.
            transactional_id: format!("conf-t-{id}"),
            group_instance_id: Some(format!("conf-i-{id}")),
            timeout: Duration::from_secs(30),
        };
        Self { rt, settings }
    }

    /// Every committed value of a one-partition topic.
    fn read(&self, topic: &str) -> Vec<Vec<u8>> {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.settings.bootstrap)
            .set("group.id", format!("{topic}-reader"))
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let timeout = Duration::from_secs(10);
        let Ok((low, high)) = c.fetch_watermarks(topic, 0, timeout) else {
            return Vec::new(); // not created yet: nothing committed
        };
        let mut out = Vec::new();
        if high <= low {
            return out;
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Beginning)
            .unwrap();
        c.assign(&tpl).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
                out.push(m.payload().unwrap_or_default().to_vec());
            }
            let at = c.position().unwrap().elements()[0].offset().to_raw();
            // Past the high watermark read at the start, or stopped at the
            // last stable offset (nothing left open: the ledger is closed).
            if at.is_some_and(|o| o >= high) {
                return out;
            }
            assert!(Instant::now() < deadline, "timed out reading {topic}");
        }
    }
}

impl Harness for Kafka {
    type L = KafkaLedger;

    fn open(&mut self) -> KafkaLedger {
        let io = KafkaIo::connect(self.settings.clone(), self.rt.handle()).expect("connect");
        let targets = (
            self.settings.output_topic.clone(),
            self.settings.dlq_topic.clone().unwrap(),
        );
        KafkaLedger::new(io, false, targets)
    }

    fn outputs(&mut self) -> Vec<Vec<u8>> {
        self.read(&self.settings.output_topic.clone())
    }

    fn dead_letters(&mut self) -> Vec<Vec<u8>> {
        self.read(&self.settings.dlq_topic.clone().unwrap())
    }

    fn read_wait(&self) -> Duration {
        Duration::from_millis(200)
    }
}

#[test]
fn kafka_ledger_conforms() {
    let t = Instant::now();
    conformance::run(&mut Kafka::new());
    eprintln!("kafka ledger conformance: {:?}", t.elapsed());
}
