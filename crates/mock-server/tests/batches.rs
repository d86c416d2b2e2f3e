//! OpenAI Files + Batches: life cycle, results, validation, cancel, lists, 404s.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use mock_server::{fake, MockConfig};
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test]
async fn life_cycle_goes_through_every_status_and_output_matches_fake_model() {
    let m = start(MockConfig {
        validating: Duration::from_millis(150),
        in_progress: Duration::from_millis(400),
        finalizing: Duration::from_millis(150),
        ..MockConfig::default()
    })
    .await;
    let lines = chat_lines("r-", 60);
    let b = m
        .submit(
            &lines,
            CHAT,
            json!({"batch_number": "p-0-0-59", "attempt": "0"}),
        )
        .await;
    assert_eq!(b["status"], "validating");
    assert_eq!(b["object"], "batch");
    assert_eq!(b["completion_window"], "24h");
    assert_eq!(b["metadata"]["batch_number"], "p-0-0-59");
    for field in [
        "output_file_id",
        "error_file_id",
        "in_progress_at",
        "completed_at",
        "errors",
    ] {
        assert!(b[field].is_null(), "{field} should be null at create: {b}");
    }
    let id = b["id"].as_str().unwrap();
    assert!(id.starts_with("batch_"));

    let mut seen = vec![];
    let done = loop {
        let b = m.batch(id).await;
        let s = b["status"].as_str().unwrap().to_string();
        if seen.last() != Some(&s) {
            seen.push(s.clone());
        }
        if s == "completed" {
            break b;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(
        seen,
        ["validating", "in_progress", "finalizing", "completed"]
    );
    assert_eq!(
        done["request_counts"],
        json!({"total": 60, "completed": 60, "failed": 0})
    );
    assert!(done["error_file_id"].is_null());
    assert_eq!(done["model"], MODEL);
    for f in ["in_progress_at", "finalizing_at", "completed_at"] {
        assert!(done[f].as_i64().unwrap() >= done["created_at"].as_i64().unwrap());
    }
    let usage = &done["usage"];
    assert!(usage["input_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["input_tokens"].as_u64().unwrap() + usage["output_tokens"].as_u64().unwrap()
    );

    let out = m.lines(&done["output_file_id"]).await;
    assert_eq!(out.len(), 60);
    let order: Vec<&str> = out
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap())
        .collect();
    let input_order: Vec<String> = (0..60).map(|i| format!("r-{i}")).collect();
    assert_ne!(order, input_order, "output must be shuffled");
    let got = by_id(&out);
    for i in 0..60 {
        let l = &got[&format!("r-{i}")];
        assert!(l["id"].as_str().unwrap().starts_with("batch_req_"));
        assert!(l["error"].is_null());
        assert_eq!(l["response"]["status_code"], 200);
        let body = &l["response"]["body"];
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(body["model"], MODEL);
        let want = fake::chat_reply(MODEL, &format!("review {i}: good but slow"));
        assert_eq!(body["choices"][0]["message"]["content"], want);
    }
    let file = m
        .get_json(&format!(
            "/v1/files/{}",
            done["output_file_id"].as_str().unwrap()
        ))
        .await
        .1;
    assert_eq!(file["purpose"], "batch_output");
}

#[tokio::test]
async fn embeddings_batch_returns_fake_vectors() {
    let m = start(fast()).await;
    let lines: Vec<Value> = (0..5)
        .map(|i| emb_line(&format!("e{i}"), &format!("text {i}")))
        .collect();
    let b = m.submit(&lines, EMB, Value::Null).await;
    let done = m.wait_done(b["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "completed");
    let out = by_id(&m.lines(&done["output_file_id"]).await);
    for i in 0..5 {
        let body = &out[&format!("e{i}")]["response"]["body"];
        assert_eq!(body["object"], "list");
        let v: Vec<f32> = serde_json::from_value(body["data"][0]["embedding"].clone()).unwrap();
        assert_eq!(v, fake::embedding(&format!("text {i}")));
    }
}

#[tokio::test]
async fn instant_mode_completes_at_first_get() {
    let mut cfg = MockConfig::default();
    cfg.make_instant();
    let m = start(cfg).await;
    let b = m.submit(&chat_lines("i-", 10), CHAT, Value::Null).await;
    assert_eq!(b["status"], "validating");
    let b = m.batch(b["id"].as_str().unwrap()).await;
    assert_eq!(b["status"], "completed");
    assert_eq!(m.lines(&b["output_file_id"]).await.len(), 10);
}

#[tokio::test]
async fn cancel_yields_partial_results_and_conflict_when_finished() {
    let m = start(MockConfig {
        in_progress: Duration::from_secs(4),
        cancelling: Duration::from_millis(100),
        ..fast()
    })
    .await;
    let b = m.submit(&chat_lines("k-", 200), CHAT, Value::Null).await;
    let id = b["id"].as_str().unwrap();
    // wait for visible progress so that some requests are done
    loop {
        let b = m.batch(id).await;
        if b["request_counts"]["completed"].as_u64().unwrap() > 0 {
            assert_eq!(b["status"], "in_progress");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = m
        .http
        .post(m.url(&format!("/v1/batches/{id}/cancel")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let c: Value = r.json().await.unwrap();
    assert_eq!(c["status"], "cancelling");
    assert!(c["cancelling_at"].is_i64());
    let done = m.wait_done(id).await;
    assert_eq!(done["status"], "cancelled");
    assert!(done["cancelled_at"].is_i64());
    let out = m.lines(&done["output_file_id"]).await;
    let err = m.lines(&done["error_file_id"]).await;
    assert!(!out.is_empty() && out.len() < 200, "partial: {}", out.len());
    assert_eq!(out.len() + err.len(), 200);
    assert!(err
        .iter()
        .all(|l| l["response"].is_null() && l["error"]["code"] == "batch_cancelled"));
    let ids: HashSet<String> = out
        .iter()
        .chain(&err)
        .map(|l| l["custom_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 200);
    assert_eq!(
        done["request_counts"]["completed"].as_u64().unwrap() as usize,
        out.len()
    );

    // cancelling again is fine; a completed batch cannot be cancelled
    let again = m
        .http
        .post(m.url(&format!("/v1/batches/{id}/cancel")))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    let b2 = m.submit(&chat_lines("z-", 2), CHAT, Value::Null).await;
    let id2 = b2["id"].as_str().unwrap();
    m.wait_for(id2, &["completed"]).await;
    let r = m
        .http
        .post(m.url(&format!("/v1/batches/{id2}/cancel")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        envelope(&v)["message"],
        "Cannot cancel a batch with status 'completed'."
    );
}

#[tokio::test]
async fn list_pages_newest_first() {
    let m = start(fast()).await;
    let file = m.upload(&jsonl(&chat_lines("l-", 1))).await;
    let mut ids = vec![];
    for i in 0..5 {
        ids.push(
            m.create(&file, CHAT, json!({"n": i.to_string()})).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    ids.reverse();
    let (_, p1) = m.get_json("/v1/batches?limit=2").await;
    assert_eq!(p1["object"], "list");
    let got: Vec<&str> = p1["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, [ids[0].as_str(), ids[1].as_str()]);
    assert_eq!(p1["first_id"], ids[0]);
    assert_eq!(p1["last_id"], ids[1]);
    assert_eq!(p1["has_more"], true);
    let (_, p3) = m
        .get_json(&format!("/v1/batches?limit=2&after={}", ids[3]))
        .await;
    assert_eq!(p3["data"].as_array().unwrap().len(), 1);
    assert_eq!(p3["data"][0]["id"], ids[4]);
    assert_eq!(p3["has_more"], false);
    let (_, all) = m.get_json("/v1/batches").await;
    assert_eq!(all["data"].as_array().unwrap().len(), 5);
    for bad in ["0", "101", "x"] {
        let (s, v) = m.get_json(&format!("/v1/batches?limit={bad}")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(envelope(&v)["param"], "limit");
    }
}

#[tokio::test]
async fn files_crud_and_upload_errors() {
    let m = start(MockConfig {
        max_file_bytes: 1000,
        ..fast()
    })
    .await;
    let body = jsonl(&chat_lines("f-", 2));
    let r = m.upload_named(&body, "in.jsonl", "batch").await;
    let f: Value = r.json().await.unwrap();
    for k in [
        "id",
        "object",
        "bytes",
        "created_at",
        "filename",
        "purpose",
        "status",
        "expires_at",
        "status_details",
    ] {
        assert!(
            f.as_object().unwrap().contains_key(k),
            "file object lacks {k}"
        );
    }
    assert_eq!(f["bytes"], body.len());
    assert_eq!(f["status"], "processed");
    let id = f["id"].as_str().unwrap();
    assert!(id.starts_with("file-"));
    assert_eq!(m.content(id).await, body);
    let (_, list) = m.get_json("/v1/files?purpose=batch").await;
    assert_eq!(list["data"][0]["id"], id);

    let big = "x".repeat(1001);
    let r = m.upload_named(&big, "big.jsonl", "batch").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        envelope(&r.json::<Value>().await.unwrap())["message"],
        "File is too large."
    );
    let r = m.upload_named(&body, "in.csv", "batch").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("Must be .jsonl"));
    let r = m.upload_named(&body, "in.jsonl", "nonsense").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let r = m
        .http
        .delete(m.url(&format!("/v1/files/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"id": id, "object": "file", "deleted": true})
    );
    let (s, v) = m.get_json(&format!("/v1/files/{id}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(envelope(&v)["type"], "invalid_request_error");
    assert_eq!(m.stats().await.files_uploaded, 1);
}

#[tokio::test]
async fn unknown_ids_are_404_with_the_envelope() {
    let m = start(fast()).await;
    for path in [
        "/v1/batches/batch_nope",
        "/v1/files/file-nope",
        "/v1/files/file-nope/content",
        "/v1/nothing",
    ] {
        let (s, v) = m.get_json(path).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
        envelope(&v);
    }
    let r = m
        .http
        .post(m.url("/v1/batches/batch_nope/cancel"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = m
        .http
        .delete(m.url("/v1/files/file-nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn api_key_is_enforced_when_set() {
    let m = start(MockConfig {
        api_key: Some("sk-right-key-123".into()),
        ..fast()
    })
    .await;
    let r = m.http.get(m.url("/v1/batches")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let v: Value = r.json().await.unwrap();
    assert_eq!(envelope(&v)["code"], "invalid_api_key");
    let r = m
        .http
        .get(m.url("/v1/batches"))
        .bearer_auth("sk-wrong-key-999")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        !r.text().await.unwrap().contains("sk-wrong-key-999"),
        "the key must be masked"
    );
    let r = m
        .http
        .get(m.url("/v1/batches"))
        .bearer_auth("sk-right-key-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // the stats endpoint needs no key
    assert_eq!(
        m.http
            .get(m.url("/mock/stats"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    let open = start(fast()).await;
    let r = open
        .http
        .get(open.url("/v1/batches"))
        .bearer_auth("anything")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}
