//! The generic protocol (PROVIDERS.md §8) and the synchronous endpoints.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mock_server::{fake, FaultConfig, MockConfig};
use reqwest::multipart::{Form, Part};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn submit_job(m: &Mock, body: &str, metadata: Option<Value>) -> reqwest::Response {
    let mut form = Form::new().part(
        "file",
        Part::bytes(body.as_bytes().to_vec()).file_name("batch.jsonl"),
    );
    if let Some(meta) = metadata {
        form = form.text("metadata", meta.to_string());
    }
    m.http
        .post(m.url("/ml/api/batch_predict"))
        .multipart(form)
        .send()
        .await
        .unwrap()
}

async fn wait_job(m: &Mock, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, v) = m.get_json(&format!("/ml/api/batch/status/{id}")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        if v["status"] == "completed" || v["status"] == "failed" {
            return v;
        }
        assert!(
            ["queued", "running"].contains(&v["status"].as_str().unwrap()),
            "{v}"
        );
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
}

#[tokio::test]
async fn generic_protocol_round_trip() {
    let m = start(fast()).await;
    let lines = [
        json!({"custom_id": "c1", "input": {"model": "m1", "messages": [{"role": "user", "content": "great stuff"}]}}),
        json!({"custom_id": "e1", "input": {"model": "emb", "input": "hello"}}),
        json!({"custom_id": "bad", "input": {"nothing": true}}),
    ];
    let r = submit_job(
        &m,
        &jsonl(&lines),
        Some(json!({"batch_number": "g-0-0-2", "attempt": "0"})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, first) = m.get_json(&format!("/ml/api/batch/status/{id}")).await;
    assert_eq!(first["status"], "queued");
    assert!(first.get("results_url").is_none());
    let done = wait_job(&m, &id).await;
    assert_eq!(done["status"], "completed");
    let url = done["results_url"].as_str().unwrap();
    assert!(url.starts_with(&m.base), "absolute url at the mock: {url}");
    let text = m.http.get(url).send().await.unwrap().text().await.unwrap();
    let out = by_id(
        &text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect::<Vec<Value>>(),
    );
    assert_eq!(out["c1"]["output"], fake::chat_reply("m1", "great stuff"));
    let v: Vec<f32> = serde_json::from_value(out["e1"]["output"].clone()).unwrap();
    assert_eq!(v, fake::embedding("hello"));
    assert_eq!(out["bad"]["error"]["code"], "invalid_request");
    assert!(out["bad"].get("output").is_none());
    let st = m.stats().await;
    assert_eq!((st.jobs_created, st.requests_answered), (1, 2));
    assert_eq!(st.creates_by_batch_number["g-0-0-2#0"], 1);
}

#[tokio::test]
async fn generic_jobs_list_metadata_newest_first_and_failures() {
    let m = start(fast()).await;
    let good = jsonl(&[
        json!({"custom_id": "a", "input": {"messages": [{"role": "user", "content": "x"}]}}),
    ]);
    for i in 0..3 {
        let r = submit_job(&m, &good, Some(json!({"batch_number": format!("b{i}")}))).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    let (_, list) = m.get_json("/ml/api/batch/jobs?limit=2").await;
    let data = list["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[0]["metadata"]["batch_number"], "b2");
    assert_eq!(data[1]["metadata"]["batch_number"], "b1");
    assert_eq!(list["has_more"], true);

    let r = submit_job(&m, "{broken\n", None).await;
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let done = wait_job(&m, &id).await;
    assert_eq!(done["status"], "failed");
    assert_eq!(done["error"]["code"], "invalid_json_line");
    let r = m
        .http
        .get(m.url(&format!("/ml/api/batch/results/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let (s, _) = m.get_json("/ml/api/batch/status/job_nope").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let r = submit_job(&m, &good, Some(json!(["not", "an", "object"]))).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn generic_lost_response_still_creates_the_job() {
    let m = start(MockConfig {
        faults: FaultConfig {
            lost_response_fraction: 1.0,
            ..Default::default()
        },
        ..fast()
    })
    .await;
    let good = jsonl(&[
        json!({"custom_id": "a", "input": {"messages": [{"role": "user", "content": "x"}]}}),
    ]);
    let mut form = Form::new().part("file", Part::bytes(good.into_bytes()).file_name("b.jsonl"));
    form = form.text("metadata", json!({"batch_number": "lost-1"}).to_string());
    let res = m
        .http
        .post(m.url("/ml/api/batch_predict"))
        .multipart(form)
        .send()
        .await;
    assert!(res
        .map(|r| r.status() == StatusCode::INTERNAL_SERVER_ERROR)
        .unwrap_or(true));
    let (_, list) = m.get_json("/ml/api/batch/jobs").await;
    assert_eq!(list["data"][0]["metadata"]["batch_number"], "lost-1");
}

#[tokio::test]
async fn sync_endpoints_answer_like_the_batch_model() {
    let m = start(fast()).await;
    let r = m
        .http
        .post(m.url("/v1/chat/completions"))
        .header("x-client-request-id", "row-1")
        .json(&json!({"model": MODEL, "messages": [{"role": "user", "content": "awful"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().contains_key("x-request-id"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        fake::chat_reply(MODEL, "awful")
    );
    assert!(v["usage"]["total_tokens"].as_u64().unwrap() > 0);

    let v: Value = m
        .http
        .post(m.url("/v1/embeddings"))
        .json(&json!({"model": "emb", "input": ["a", "b"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let e: Vec<f32> = serde_json::from_value(v["data"][1]["embedding"].clone()).unwrap();
    assert_eq!(e, fake::embedding("b"));
    let v: Value = m
        .http
        .post(m.url("/v1/embeddings"))
        .json(&json!({"model": "emb", "input": "a", "encoding_format": "base64"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let b64 = v["data"][0]["embedding"].as_str().unwrap();
    assert_eq!(b64.len(), 44, "8 f32 = 32 bytes = 44 base64 chars");

    let r = m
        .http
        .post(m.url("/v1/chat/completions"))
        .json(&json!({"model": MODEL}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        envelope(&r.json::<Value>().await.unwrap())["param"],
        "messages"
    );

    // answering row-1 again is a duplicate
    m.http
        .post(m.url("/v1/chat/completions"))
        .header("x-client-request-id", "row-1")
        .json(&json!({"model": MODEL, "messages": [{"role": "user", "content": "awful"}]}))
        .send()
        .await
        .unwrap();
    let st = m.stats().await;
    assert_eq!(
        (st.sync_answered, st.requests_answered, st.duplicate_answers),
        (4, 4, 1)
    );
}

#[tokio::test]
async fn sync_rpm_limit_answers_429_and_latency_applies() {
    let m = start(MockConfig {
        rpm: Some(3),
        sync_latency: Duration::from_millis(50),
        ..fast()
    })
    .await;
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]});
    let t = Instant::now();
    for _ in 0..3 {
        let r = m
            .http
            .post(m.url("/v1/chat/completions"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    assert!(
        t.elapsed() >= Duration::from_millis(150),
        "latency applied per request"
    );
    let r = m
        .http
        .post(m.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let secs: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let ms: u64 = r.headers()["retry-after-ms"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=60).contains(&secs) && ms > 50_000 && ms <= 60_000,
        "{secs}s {ms}ms"
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(envelope(&v)["code"], "rate_limit_exceeded");
    assert!(v["error"]["message"].as_str().unwrap().contains("Limit 3"));
    let st = m.stats().await;
    assert_eq!(st.faults_injected["rpm_limit"], 1);
    assert_eq!(st.sync_answered, 3);
}
