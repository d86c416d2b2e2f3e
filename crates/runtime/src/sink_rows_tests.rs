use pipeline_config::{OnError, OutputConfig};
use serde_json::{json, Value};

use super::*;

fn stage(columns: &str, on_error: OnError, kafka: bool) -> SinkRows {
    let columns = (!columns.is_empty()).then(|| {
        // Parsed as the configuration parses it.
        let cfg = pipeline_config::parse_str_with_env(
            &format!(
                "[source]\ntype = \"file\"\npath = \"in.jsonl\"\n[sink]\ntype = \"file\"\npath = \"out.jsonl\"\ncolumns = {columns:?}\n[model]\nendpoint = \"http://h/v1/chat/completions\"\nmodel = \"m\"\ninput = \"text\"\n"
            ),
            &[],
            &|_| None,
        )
        .unwrap();
        cfg.output.columns.unwrap()
    });
    SinkRows::new(&OutputConfig { columns, on_error }, kafka).unwrap()
}

const OK: &str = r#"{"id":7,"text":"great","meta":{"n":7,"extra":1},"big":1.50,"prediction":"5/5","ml_predict":{"batch_number":null,"batch_id":null,"retries":0,"custom_id":"0-120","status":"ok","error":null}}"#;
const FAILED: &str = r#"{"id":8,"text":"bad","prediction":null,"ml_predict":{"batch_number":null,"batch_id":null,"retries":0,"custom_id":"0-160","status":"error","error":{"code":"invalid_request","message":"no"}}}"#;

fn turn(lines: &[&str]) -> Turn {
    let mut t = Turn::default();
    for l in lines {
        t.outputs.push(Some(b"k"), format!("{l}\n").as_bytes());
    }
    t
}

fn rows(t: &Turn) -> Vec<Value> {
    t.outputs
        .iter()
        .map(|(_, l)| serde_json::from_slice(l).unwrap())
        .collect()
}

#[test]
fn rows_hold_exactly_the_columns_renamed_in_order_with_nulls() {
    let mut s = stage(
        "id BIGINT, review STRING FROM text, rating STRING FROM prediction, meta ROW<n BIGINT, gone STRING>, big DOUBLE, missing INT, ml_predict ROW<status STRING, custom_id STRING>",
        OnError::Emit,
        false,
    );
    let mut t = turn(&[OK]);
    s.apply(&mut t, 0).unwrap();
    let line = String::from_utf8(t.outputs.bytes().to_vec()).unwrap();
    assert_eq!(
        line,
        "{\"id\":7,\"review\":\"great\",\"rating\":\"5/5\",\"meta\":{\"n\":7,\"gone\":null},\"big\":1.50,\"missing\":null,\"ml_predict\":{\"status\":\"ok\",\"custom_id\":\"0-120\"}}\n",
        "values copied as they are (1.50), in the columns' order"
    );
    assert!(t.dead_letters.is_empty());
}

#[test]
fn a_string_metadata_column_holds_the_whole_object() {
    let mut s = stage("id BIGINT, ml_predict STRING", OnError::Emit, false);
    let mut t = turn(&[OK]);
    s.apply(&mut t, 0).unwrap();
    let row = &rows(&t)[0];
    assert_eq!(row["ml_predict"]["custom_id"], "0-120");
    assert_eq!(row["ml_predict"]["batch_number"], Value::Null);
}

#[test]
fn a_value_that_does_not_fit_goes_to_the_dead_letters_with_the_column() {
    for (columns, column, reason) in [
        (
            "id INT, text BIGINT",
            "text",
            "column `text` is BIGINT: got a string",
        ),
        ("id STRING", "id", "column `id` is STRING: got the number 7"),
        (
            "big BIGINT",
            "big",
            "column `big` is BIGINT: got the number 1.5",
        ),
        (
            "meta ROW<n STRING>",
            "meta",
            "column `meta` is ROW<`n` STRING>: .n should be STRING, got the number 7",
        ),
        (
            "meta ARRAY<INT>",
            "meta",
            "column `meta` is ARRAY<INT>: got an object",
        ),
    ] {
        let mut s = stage(columns, OnError::Emit, false);
        let mut t = turn(&[OK, OK]);
        s.apply(&mut t, 1).unwrap();
        assert_eq!(
            t.outputs.len(),
            1,
            "{columns}: the line shaped before stays"
        );
        let dead: Vec<Value> = t
            .dead_letters
            .iter()
            .map(|(_, l)| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(dead.len(), 1, "{columns}");
        assert_eq!(dead[0]["column"], column, "{columns}");
        assert_eq!(dead[0]["error"], reason, "{columns}");
        assert_eq!(dead[0]["position"], 120);
        assert_eq!(dead[0]["raw"], OK, "the paid prediction is kept");
        assert_eq!(s.dead_letters(), 1);
    }
    let mut s = stage("id STRING", OnError::Emit, true);
    let mut t = turn(&[OK]);
    s.apply(&mut t, 0).unwrap();
    let dead: Value = serde_json::from_slice(t.dead_letters.iter().next().unwrap().1).unwrap();
    assert_eq!(
        (&dead["partition"], &dead["offset"], &dead["key"]),
        (&json!(0), &json!(120), &json!("k"))
    );
}

#[test]
fn failover_stops_at_a_failed_record_and_emit_writes_it() {
    let mut s = stage("", OnError::Failover, false);
    let mut t = turn(&[OK, FAILED]);
    let e = s.apply(&mut t, 0).unwrap_err();
    assert_eq!(
        (e.custom_id.as_str(), e.code.as_str()),
        ("0-160", "invalid_request")
    );
    assert!(
        e.to_string()
            .starts_with("record 0-160 failed (invalid_request: no)"),
        "{e}"
    );
    let before = t.outputs.bytes().to_vec();
    assert_eq!(
        before,
        format!("{OK}\n{FAILED}\n").as_bytes(),
        "nothing shaped"
    );

    let mut s = stage("id BIGINT, prediction STRING", OnError::Emit, false);
    let mut t = turn(&[FAILED]);
    s.apply(&mut t, 0).unwrap();
    assert_eq!(rows(&t), vec![json!({"id": 8, "prediction": null})]);
}

#[test]
fn no_configuration_means_no_stage() {
    let none = OutputConfig {
        columns: None,
        on_error: OnError::Emit,
    };
    assert!(SinkRows::new(&none, false).is_none());
}
