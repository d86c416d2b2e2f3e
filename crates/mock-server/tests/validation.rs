//! Input validation (batch `failed` with `errors.data`) and create parameters.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn failed_with(m: &Mock, body: &str, endpoint: &str) -> Vec<Value> {
    let file = m.upload(body).await;
    let b = m.create(&file, endpoint, Value::Null).await;
    let done = m.wait_done(b["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert!(done["failed_at"].is_i64());
    assert_eq!(done["errors"]["object"], "list");
    done["errors"]["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn validation_failures_match_the_real_codes() {
    let m = start(fast()).await;
    let ok = chat_line("a", "x");
    let errs = failed_with(&m, &format!("{ok}\n{{not json\n"), CHAT).await;
    assert_eq!(errs[0]["code"], "invalid_json_line");
    assert_eq!(errs[0]["line"], 2);
    assert_eq!(
        errs[0]["message"],
        "This line is not parseable as valid JSON."
    );

    let errs = failed_with(
        &m,
        &jsonl(&[chat_line("a", "x"), chat_line("a", "y")]),
        CHAT,
    )
    .await;
    assert_eq!(
        (errs[0]["code"].as_str(), errs[0]["line"].as_u64()),
        (Some("duplicate_custom_id"), Some(2))
    );

    let errs = failed_with(&m, &jsonl(&[chat_line("a", "x"), emb_line("b", "y")]), CHAT).await;
    assert_eq!(
        (errs[0]["code"].as_str(), errs[0]["param"].as_str()),
        (Some("invalid_url"), Some("url"))
    );

    let mut other = chat_line("b", "y");
    other["body"]["model"] = json!("gpt-4o");
    let errs = failed_with(&m, &jsonl(&[chat_line("a", "x"), other]), CHAT).await;
    assert_eq!(errs[0]["code"], "model_mismatch");

    let errs = failed_with(&m, "\n", CHAT).await;
    assert_eq!(errs[0]["code"], "empty_file");

    let big = jsonl(&chat_lines("t-", 50_001));
    let errs = failed_with(&m, &big, CHAT).await;
    assert_eq!(errs[0]["code"], "too_many_tasks");

    let mut no_id = chat_line("a", "x");
    no_id.as_object_mut().unwrap().remove("custom_id");
    let mut no_model = chat_line("b", "x");
    no_model["body"].as_object_mut().unwrap().remove("model");
    let errs = failed_with(&m, &jsonl(&[no_id, no_model]), CHAT).await;
    assert_eq!(errs.len(), 2);
    assert_eq!(
        (errs[0]["code"].as_str(), errs[0]["param"].as_str()),
        (Some("missing_required_parameter"), Some("custom_id"))
    );
    assert_eq!(
        (errs[1]["param"].as_str(), errs[1]["line"].as_u64()),
        (Some("body.model"), Some(2))
    );

    // an unknown input file is accepted at create and fails validation, like the real API
    let b = m.create("file-doesnotexist", CHAT, Value::Null).await;
    let done = m.wait_done(b["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "failed");
    assert_eq!(done["errors"]["data"][0]["code"], "invalid_request");
    assert_eq!(done["errors"]["data"][0]["param"], "file_id");
}

#[tokio::test]
async fn create_rejects_bad_parameters_with_400() {
    let m = start(fast()).await;
    let file = m.upload(&jsonl(&chat_lines("c-", 1))).await;
    let base = json!({"input_file_id": file, "endpoint": CHAT, "completion_window": "24h"});
    let cases: Vec<(Value, &str)> = vec![
        (json!({"completion_window": "1h"}), "completion_window"),
        (json!({"endpoint": "/v1/invalid"}), "endpoint"),
        (
            json!({"metadata": (0..17).map(|i| (format!("k{i}"), json!("v"))).collect::<serde_json::Map<_, _>>()}),
            "metadata",
        ),
        (json!({"metadata": {"k".repeat(65): "v"}}), "metadata"),
        (json!({"metadata": {"k": "v".repeat(513)}}), "metadata.k"),
        (json!({"metadata": {"tags": ["a"]}}), "metadata.tags"),
    ];
    for (patch, param) in cases {
        let mut body = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        let r = m.create_raw(body).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{patch}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(envelope(&v)["param"], param, "{v}");
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
    let r = m
        .http
        .post(m.url("/v1/batches"))
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // exactly 16 pairs is fine
    let mut body = base.clone();
    body["metadata"] = json!((0..16)
        .map(|i| (format!("k{i}"), json!("v")))
        .collect::<serde_json::Map<_, _>>());
    assert_eq!(m.create_raw(body).await.status(), StatusCode::OK);
    assert_eq!(m.stats().await.batches_created, 1);
}
