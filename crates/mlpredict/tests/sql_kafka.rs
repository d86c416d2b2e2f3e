//! A Flink SQL job over Kafka topics on the real broker: in batch mode
//! (the FLIP's keys) and, without them, per record; both sinks hold every
//! record once, and the same rows but for the metadata.

mod common;
mod kafka_common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{blocking, MODEL};
use kafka_common::*;
use mock_server::MockServer;
use serde_json::Value;

fn kafka_job(
    dir: &Path,
    bootstrap: &str,
    base: &str,
    input: &str,
    output: &str,
    map: &str,
) -> String {
    let d = dir.display();
    format!(
        "SET 'pipeline.name' = '{output}';
SET 'ml.batch.local.dir' = '{d}/local';
CREATE TABLE reviews (id BIGINT, `text` STRING) WITH (
  'connector' = 'kafka', 'topic' = '{input}', 'properties.bootstrap.servers' = '{bootstrap}',
  'properties.group.id' = '{output}', 'scan.startup.mode' = 'earliest-offset', 'format' = 'json');
CREATE TABLE rated (id BIGINT, `text` STRING, prediction STRING, ml_predict STRING) WITH (
  'connector' = 'kafka', 'topic' = '{output}', 'properties.bootstrap.servers' = '{bootstrap}',
  'sink.delivery-guarantee' = 'exactly-once', 'format' = 'json');
CREATE MODEL rater INPUT (`text` STRING) OUTPUT (prediction STRING) WITH (
  'provider' = 'openai', 'endpoint' = '{base}/v1/chat/completions', 'api-key' = 'sk-test',
  'model' = '{MODEL}', 'system-prompt' = 'Rate the review.');
INSERT INTO rated SELECT * FROM ML_PREDICT(TABLE reviews, MODEL rater, DESCRIPTOR(`text`){map});
"
    )
}

/// The sink's rows by id, each exactly the sink's columns, without `ml_predict`.
fn rows(bootstrap: &str, topic: &str) -> BTreeMap<u64, Value> {
    read_all(bootstrap, topic, 3)
        .into_iter()
        .map(|(_, v)| {
            let mut v: Value = serde_json::from_str(&v).unwrap();
            let obj = v.as_object_mut().unwrap();
            let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
            assert_eq!(keys, ["id", "ml_predict", "prediction", "text"]);
            obj.remove("ml_predict");
            (v["id"].as_u64().unwrap(), v)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_job_in_batch_mode_and_per_record_writes_the_same_rows() {
    let _serial = serial();
    let n = 300;
    let bootstrap = blocking(broker).await;
    let server = MockServer::start(common::batch_mock(100)).await.unwrap();
    let input = unique("sql-in");
    create_topic(&bootstrap, &input, 3).await;
    let (b, i) = (bootstrap.clone(), input.clone());
    blocking(move || produce(&b, &i, &records(n))).await;
    let dir = test_dir();
    let base = server.base_url();
    let batch_map = format!(
        ", MAP['batch', 'true', 'ml.batch.api.endpoint', '{base}/v1', 'ml.batch.size', '50', 'ml.batch.poll.interval', '50ms', 'ml.batch.max.wait', '300ms']"
    );
    let mut outputs = Vec::new();
    for (name, map) in [("batch", batch_map.as_str()), ("sync", "")] {
        let output = unique(&format!("sql-out-{name}"));
        let job = dir.path.join(format!("{name}.sql"));
        std::fs::write(
            &job,
            kafka_job(&dir.path, &bootstrap, &base, &input, &output, map),
        )
        .unwrap();
        blocking(move || wait_ok(spawn(&job, true), name)).await;
        let (ok, err) = blocking({
            let (b, o) = (bootstrap.clone(), output.clone());
            move || check(&b, &o, n)
        })
        .await;
        assert_eq!((ok, err), (n, 0), "{name}");
        outputs.push(output);
    }
    assert!(server.stats().batches_created >= 6);
    let (b, o) = (bootstrap.clone(), outputs.clone());
    let (batch, sync) = blocking(move || (rows(&b, &o[0]), rows(&b, &o[1]))).await;
    assert_eq!(batch.len(), n);
    assert_eq!(batch, sync, "the same rows but for ml_predict");
}
