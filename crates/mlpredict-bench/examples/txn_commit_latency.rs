//! What a Kafka transaction commit costs with rdkafka's `ThreadedProducer`
//! (the producer kafka-io uses), and with the deliveries awaited first.
//!
//! rdkafka 0.39's `commit_transaction` calls `flush`, which, while messages
//! are in flight, polls the producer's queue for up to 100 ms; the
//! `ThreadedProducer`'s own thread serves that queue, so the poll is not
//! woken and a commit costs ~100 ms. Waiting until `in_flight_count() == 0`
//! first takes it to a few ms (scenario (e) of docs/BENCHMARKS.md pays it
//! once per transaction with output).
//!
//! ```sh
//! scripts/kafka/broker.sh topic create txn-latency 4
//! MLPREDICT_KAFKA_BOOTSTRAP=127.0.0.1:19092 cargo run --release -p mlpredict-bench --example txn_commit_latency txn-latency
//! ```
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

fn main() {
    let bootstrap = std::env::var("MLPREDICT_KAFKA_BOOTSTRAP").expect("MLPREDICT_KAFKA_BOOTSTRAP");
    let topic = std::env::args()
        .nth(1)
        .expect("usage: txn_commit_latency TOPIC");
    for wait_first in [false, true, false, true] {
        let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set(
                "transactional.id",
                format!("txn-commit-latency-{wait_first}"),
            )
            .set("enable.idempotence", "true")
            .create()
            .unwrap();
        p.init_transactions(Duration::from_secs(30)).unwrap();
        let (mut commit, mut total) = (Duration::ZERO, Instant::now());
        let n = 40;
        for t in 0..n {
            p.begin_transaction().unwrap();
            for i in 0..1000 {
                let v = format!("{t}-{i}-{}", "x".repeat(300));
                p.send(BaseRecord::<str, str>::to(&topic).key("k").payload(&v))
                    .unwrap();
            }
            let c = Instant::now();
            if wait_first {
                while p.in_flight_count() > 0 {
                    std::thread::sleep(Duration::from_micros(500));
                }
            }
            p.commit_transaction(Duration::from_secs(30)).unwrap();
            commit += c.elapsed();
            if t == 0 {
                total = Instant::now();
                commit = Duration::ZERO;
            }
        }
        println!(
            "wait for deliveries first: {wait_first}: commit {:.1} ms avg, {:.1} ms per transaction",
            commit.as_secs_f64() * 1e3 / (n - 1) as f64,
            total.elapsed().as_secs_f64() * 1e3 / (n - 1) as f64
        );
    }
}
