//! Required keys named when missing, unknown keys and their suggestions.

use super::*;
use crate::keys;

#[test]
fn each_mandatory_key_of_a_file_pipeline_is_named_when_missing() {
    for (line, key) in [
        ("path = \"in.jsonl\"", "source.path"),
        ("path = \"out.jsonl\"", "sink.path"),
        ("endpoint =", "model.endpoint"),
        ("model =", "model.model"),
        ("input =", "model.input"),
    ] {
        let e = err(&min_without(line), &[]);
        assert_eq!(
            e.to_string(),
            format!("missing required key `{key}`"),
            "{line}"
        );
        assert_eq!(e.key(), Some(key));
    }
    // source.type / sink.type: both tables have a `type = "file"` line
    let text = MIN.replacen("type = \"file\"\n", "", 1);
    assert_err(&text, &[], "missing required key `source.type`");
    let text = MIN.replacen("type = \"file\"\npath = \"out", "path = \"out", 1);
    assert_err(&text, &[], "missing required key `sink.type`");
}

#[test]
fn model_input_missing_message_is_exact() {
    assert_err(
        &min_without("input ="),
        &[],
        "missing required key `model.input`",
    );
}

#[test]
fn empty_document_asks_for_source_type_first() {
    assert_err("", &[], "missing required key `source.type`");
}

#[test]
fn unknown_key_suggests_by_edit_distance() {
    let e = assert_err(
        &min_with("[ml.batch]\nsise = 5"),
        &[],
        "unknown key `ml.batch.sise` (did you mean `ml.batch.size`?)",
    );
    assert_eq!(e.key(), Some("ml.batch.sise"));
    for (typo, meant) in [
        ("model.api_key", "model.api-key"),
        ("model.system_prompt", "model.system-prompt"),
        ("ml.batch.poll_interval", "ml.batch.poll.interval"),
        ("ml.batch.api_endpoint", "ml.batch.api.endpoint"),
        ("ml.batch.max.inflights", "ml.batch.max.inflight"),
        ("sink.dlq_path", "sink.dlq.path"),
        (
            "ml.predict.max-concurrent-operation",
            "ml.predict.max-concurrent-operations",
        ),
        ("metrics.prot", "metrics.port"),
    ] {
        assert_eq!(keys::suggest(typo), Some(meant), "{typo}");
    }
}

#[test]
fn unknown_key_suggests_by_dotted_suffix() {
    // `[batch]` instead of `[ml.batch]`
    assert_eq!(keys::suggest("batch.size"), Some("ml.batch.size"));
    assert_eq!(keys::suggest("max.inflight"), Some("ml.batch.max.inflight"));
    // top-level `name`
    assert_eq!(keys::suggest("name"), Some("pipeline.name"));
    // ambiguous: model.endpoint or ml.batch.api.endpoint
    assert_eq!(keys::suggest("endpoint"), None);
    assert_eq!(keys::suggest("completely.different"), None);
}

#[test]
fn top_level_key_written_inside_a_table_gets_a_hint() {
    assert_err(
        &min_with("[ml.batch]\nbatch_number = \"x\""),
        &[],
        "unknown key `ml.batch.batch_number` (did you mean `batch_number`? top-level keys go before the first [table])",
    );
}

#[test]
fn unknown_key_without_suggestion() {
    assert_err(
        &min_with("[frobnicate]\nwidgets = 3"),
        &[],
        "unknown key `frobnicate.widgets`",
    );
}

#[test]
fn unknown_key_from_override() {
    assert_err(
        MIN,
        &["ml.batch.sise=5"],
        "unknown key `ml.batch.sise` (did you mean `ml.batch.size`?)",
    );
}

#[test]
fn unknown_source_key_of_a_file_source_is_not_passed_through() {
    let e = err(MIN, &["source.security.protocol=SSL"]);
    assert!(
        matches!(e, ConfigError::UnknownKey { ref key, .. } if key == "source.security.protocol")
    );
}

#[test]
fn typo_in_source_type_is_suggested_not_reported_missing() {
    let text = MIN.replacen("type = \"file\"", "tpye = \"file\"", 1);
    assert_err(
        &text,
        &[],
        "unknown key `source.tpye` (did you mean `source.type`?)",
    );
}

#[test]
fn kafka_properties_without_source_type_report_the_missing_type() {
    let text = KAFKA.replacen("type = \"kafka\"\ntopic = \"in\"", "topic = \"in\"", 1);
    assert_err(&text, &[], "missing required key `source.type`");
}
