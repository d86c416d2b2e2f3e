//! Kafka sources and sinks: pass-through properties, scopes, loops.

use super::*;

#[test]
fn kafka_source_and_sink() {
    let c = ok(KAFKA, &[]);
    let SourceConfig::Kafka(s) = &c.source else {
        panic!()
    };
    assert_eq!(s.topic, "in");
    assert_eq!(s.bootstrap_servers, "broker:9092");
    assert_eq!(s.group_id, "mlpredict-k1");
    assert_eq!(
        s.properties
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
        vec![
            ("enable.partition.eof", "false"),
            ("fetch.min.bytes", "1"),
            ("sasl.password", "hunter2-kafka"),
            ("security.protocol", "SASL_SSL"),
        ]
    );
    let SinkConfig::Kafka(k) = &c.sink else {
        panic!()
    };
    assert_eq!(k.topic, "out");
    assert_eq!(k.bootstrap_servers, "broker:9092");
    assert_eq!(k.dlq_topic.as_deref(), Some("out-dlq"));
    assert_eq!(
        k.properties.get("compression.type").map(String::as_str),
        Some("zstd")
    );
    assert_eq!(k.properties.len(), 1);
    assert_eq!(c.model.task, Task::Embeddings);
}

#[test]
fn kafka_pass_through_via_overrides_quoted_keys_and_env() {
    let text = KAFKA.replace(
        "security.protocol = \"SASL_SSL\"",
        "\"security.protocol\" = \"SSL\"\nsasl.username = \"${TEST_HOST}\"",
    );
    let c = ok(
        &text,
        &[
            "source.group.id=g",
            "sink.bootstrap.servers=other:9092",
            "sink.linger.ms=5",
            "source.fetch.min.bytes=1e3",
        ],
    );
    let SourceConfig::Kafka(s) = &c.source else {
        panic!()
    };
    assert_eq!(s.group_id, "g");
    assert_eq!(s.properties["security.protocol"], "SSL");
    assert_eq!(s.properties["sasl.username"], "127.0.0.1");
    // -D values pass through as written
    assert_eq!(s.properties["fetch.min.bytes"], "1e3");
    let SinkConfig::Kafka(k) = &c.sink else {
        panic!()
    };
    assert_eq!(k.bootstrap_servers, "other:9092");
    assert_eq!(k.properties["linger.ms"], "5");
}

#[test]
fn kafka_required_keys() {
    assert_err(
        &KAFKA.replace("topic = \"in\"\n", ""),
        &[],
        "missing required key `source.topic`",
    );
    assert_err(
        &KAFKA.replace("bootstrap.servers = \"broker:9092\"\n", ""),
        &[],
        "missing required key `source.bootstrap.servers`",
    );
    assert_err(
        &KAFKA.replace("topic = \"out\"\n", ""),
        &[],
        "missing required key `sink.topic`",
    );
}

#[test]
fn kafka_sink_after_file_source_needs_brokers() {
    let e = err(MIN, &["sink.type=kafka", "sink.topic=out"]);
    // sink.path is a file-sink key
    assert_eq!(
        e.to_string(),
        "sink.path only applies when sink.type = \"file\""
    );
    let text = MIN.replace(
        "type = \"file\"\npath = \"out.jsonl\"",
        "type = \"kafka\"\ntopic = \"out\"",
    );
    assert_err(
        &text,
        &[],
        "sink.bootstrap.servers is required when source.type = \"file\"",
    );
    let c = ok(&text, &["sink.bootstrap.servers=b:9092"]);
    assert!(
        matches!(c.sink, SinkConfig::Kafka(ref k) if k.dlq_topic.is_none() && k.properties.is_empty())
    );
}

#[test]
fn keys_outside_their_scope_are_rejected() {
    let e = assert_err(
        MIN,
        &["source.topic=t"],
        "source.topic only applies when source.type = \"kafka\"",
    );
    assert_eq!(e.key(), Some("source.topic"));
    assert_err(
        MIN,
        &["sink.dlq.topic=t"],
        "sink.dlq.topic only applies when sink.type = \"kafka\"",
    );
    assert_err(
        KAFKA,
        &["source.path=x.jsonl"],
        "source.path only applies when source.type = \"file\"",
    );
}

#[test]
fn managed_kafka_properties_are_rejected() {
    let e = assert_err_key(
        KAFKA,
        &["source.enable.auto.commit=true"],
        "source.enable.auto.commit",
    );
    assert!(e.to_string().contains("managed by mlpredict"), "{e}");
    assert_err_key(KAFKA, &["sink.transactional.id=x"], "sink.transactional.id");
}

#[test]
fn kafka_topics_must_not_loop() {
    assert_err(
        KAFKA,
        &["sink.topic=in"],
        "sink.topic: must differ from source.topic on the same cluster",
    );
    ok(
        KAFKA,
        &["sink.topic=in", "sink.bootstrap.servers=other:9092"],
    );
    assert_err(
        KAFKA,
        &["sink.dlq.topic=out"],
        "sink.dlq.topic: must differ from sink.topic",
    );
}

#[test]
fn kafka_property_must_be_a_scalar() {
    let text = KAFKA.replace("fetch.min.bytes = 1", "fetch.min.bytes = [1]");
    assert_err(
        &text,
        &[],
        "source.fetch.min.bytes: expected a string, number or boolean (a Kafka client property), got an array",
    );
}

#[test]
fn source_type_value_is_checked_before_unknown_keys() {
    assert_err(
        &KAFKA.replace("\"kafka\"\ntopic = \"in\"", "\"kafk\"\ntopic = \"in\""),
        &[],
        "source.type: expected one of \"file\", \"kafka\", got \"kafk\"",
    );
}
