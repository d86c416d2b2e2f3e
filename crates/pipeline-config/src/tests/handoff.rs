//! `ml.batch.mode` and the handoff keys of decoupled mode.

use super::*;

const BATCH: &[&str] = &[
    "ml.batch.enabled=true",
    "ml.batch.api.endpoint=http://127.0.0.1:8080/v1",
];

fn with<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    BATCH.iter().copied().chain(extra.iter().copied()).collect()
}

#[test]
fn inline_is_the_default_and_has_no_handoff() {
    let c = ok(MIN, BATCH);
    assert_eq!(c.batch.mode, BatchMode::Inline);
    assert_eq!(c.batch.handoff, None);
    assert!(!c.decoupled());
    let c = ok(MIN, &with(&["ml.batch.mode=INLINE"]));
    assert_eq!(c.batch.mode, BatchMode::Inline);
}

#[test]
fn a_file_pipeline_hands_off_beside_its_output_by_default() {
    let c = ok(MIN, &with(&["ml.batch.mode=decoupled"]));
    assert!(c.decoupled());
    assert_eq!(
        c.batch.handoff,
        Some(Handoff::File("out.handoff.jsonl".into()))
    );
    let c = ok(
        MIN,
        &with(&["ml.batch.mode=decoupled", "ml.batch.handoff.path=h/b.jsonl"]),
    );
    assert_eq!(c.batch.handoff, Some(Handoff::File("h/b.jsonl".into())));
    let c = ok(
        MIN,
        &with(&["ml.batch.mode=decoupled", "sink.path=predicted"]),
    );
    assert_eq!(
        c.batch.handoff,
        Some(Handoff::File("predicted.handoff.jsonl".into()))
    );
}

#[test]
fn a_kafka_pipeline_hands_off_to_a_topic_named_after_it_by_default() {
    let c = ok(KAFKA, &with(&["ml.batch.mode=decoupled"]));
    assert_eq!(c.batch.handoff, Some(Handoff::Topic("k1-batches".into())));
    let c = ok(
        KAFKA,
        &with(&["ml.batch.mode=decoupled", "ml.batch.handoff.topic=hand.off"]),
    );
    assert_eq!(c.batch.handoff, Some(Handoff::Topic("hand.off".into())));
}

#[test]
fn decoupled_needs_batch_mode() {
    let e = assert_err_key(MIN, &["ml.batch.mode=decoupled"], "ml.batch.mode");
    assert!(e.to_string().contains("set ml.batch.enabled = true"), "{e}");
    assert_err_key(MIN, &["ml.batch.mode=later"], "ml.batch.mode");
}

#[test]
fn handoff_keys_need_decoupled_mode() {
    assert_err(
        MIN,
        &with(&["ml.batch.handoff.path=h.jsonl"]),
        "ml.batch.handoff.path only applies when ml.batch.mode = \"decoupled\"",
    );
    assert_err(
        KAFKA,
        &with(&["ml.batch.handoff.topic=t"]),
        "ml.batch.handoff.topic only applies when ml.batch.mode = \"decoupled\"",
    );
}

#[test]
fn the_other_kind_of_handoff_is_refused_with_the_key_to_use() {
    assert_err(
        KAFKA,
        &with(&["ml.batch.mode=decoupled", "ml.batch.handoff.path=h.jsonl"]),
        "ml.batch.handoff.path: a kafka pipeline (source.type = \"kafka\") hands its batches off to a topic: use ml.batch.handoff.topic",
    );
    assert_err(
        MIN,
        &with(&["ml.batch.mode=decoupled", "ml.batch.handoff.topic=t"]),
        "ml.batch.handoff.topic: a file pipeline (source.type = \"file\") hands its batches off to a file: use ml.batch.handoff.path",
    );
}

#[test]
fn the_handoff_file_is_none_of_the_pipelines_other_files() {
    for (path, other) in [
        ("in.jsonl", "source.path"),
        ("out.jsonl", "sink.path"),
        ("out.dlq.jsonl", "sink.dlq.path"),
    ] {
        let set = format!("ml.batch.handoff.path={path}");
        assert_err(
            MIN,
            &with(&["ml.batch.mode=decoupled", &set]),
            &format!("ml.batch.handoff.path: must differ from {other}"),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let set = format!("ml.batch.handoff.path={}", dir.path().display());
    let e = assert_err_key(
        MIN,
        &with(&["ml.batch.mode=decoupled", &set]),
        "ml.batch.handoff.path",
    );
    assert!(e.to_string().contains("is a directory"), "{e}");
}

#[test]
fn the_handoff_topic_is_a_legal_new_topic() {
    for (topic, what) in [
        ("in", "source.topic"),
        ("out", "sink.topic"),
        ("out-dlq", "sink.dlq.topic"),
        ("mlpredict-k1-state", "the state topic"),
    ] {
        let set = format!("ml.batch.handoff.topic={topic}");
        assert_err(
            KAFKA,
            &with(&["ml.batch.mode=decoupled", &set]),
            &format!("ml.batch.handoff.topic: must differ from {what} ({topic})"),
        );
    }
    let e = assert_err_key(
        KAFKA,
        &with(&["ml.batch.mode=decoupled", "ml.batch.handoff.topic=a b"]),
        "ml.batch.handoff.topic",
    );
    assert!(e.to_string().contains("not a Kafka topic name"), "{e}");
}
