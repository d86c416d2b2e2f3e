//! Azure OpenAI routes: `/openai/...` with `api-version`, `/openai/v1/...`
//! without, `api-key` auth, `/chat/completions` lines and endpoint.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mock_server::MockConfig;
use reqwest::multipart::{Form, Part};
use reqwest::StatusCode;
use serde_json::{json, Value};

const V: &str = "api-version=2024-10-21";
const DEPLOYMENT: &str = "gpt-4o-mini-batch";

fn azure_line(id: &str, url: &str, text: &str) -> Value {
    json!({"custom_id": id, "method": "POST", "url": url,
           "body": {"model": DEPLOYMENT, "messages": [{"role": "user", "content": text}]}})
}

impl Mock {
    /// `path` under `prefix` (`/openai` or `/openai/v1`), with the query.
    fn az(&self, prefix: &str, path: &str, query: &str) -> String {
        let sep = if query.is_empty() { "" } else { "?" };
        self.url(&format!("{prefix}{path}{sep}{query}"))
    }

    async fn az_upload(&self, prefix: &str, query: &str, body: String) -> reqwest::Response {
        let form = Form::new()
            .text("purpose", "batch")
            .part("file", Part::bytes(body.into_bytes()).file_name("in.jsonl"));
        self.http
            .post(self.az(prefix, "/files", query))
            .header("api-key", "az-key")
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    async fn az_json(
        &self,
        method: reqwest::Method,
        url: String,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut rb = self.http.request(method, url).header("api-key", "az-key");
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.unwrap();
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }
}

async fn round(m: &Mock, prefix: &str, query: &str, endpoint: &str, n: usize) -> Value {
    let lines: Vec<Value> = (0..n)
        .map(|i| azure_line(&format!("0-{i}"), endpoint, &format!("review {i}")))
        .collect();
    let r = m.az_upload(prefix, query, jsonl(&lines)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let file: Value = r.json().await.unwrap();
    let (s, b) = m
        .az_json(
            reqwest::Method::POST,
            m.az(prefix, "/batches", query),
            Some(json!({"input_file_id": file["id"], "endpoint": endpoint, "completion_window": "24h",
                        "metadata": {"batch_number": "az-1", "attempt": "0"}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["endpoint"], endpoint);
    let id = b["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, b) = m
            .az_json(
                reqwest::Method::GET,
                m.az(prefix, &format!("/batches/{id}"), query),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        if ["completed", "failed"].contains(&b["status"].as_str().unwrap()) {
            return b;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn azure_batches_with_and_without_api_version() {
    let m = start(MockConfig {
        api_key: Some("az-key".into()),
        ..fast()
    })
    .await;
    let b = round(&m, "/openai", V, "/chat/completions", 30).await;
    assert_eq!(b["status"], "completed", "{b}");
    assert_eq!(b["request_counts"]["completed"], 30);
    assert_eq!(b["model"], DEPLOYMENT);
    let r = m
        .http
        .get(m.az(
            "/openai",
            &format!("/files/{}/content", b["output_file_id"].as_str().unwrap()),
            V,
        ))
        .header("api-key", "az-key")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap().lines().count(), 30);
    // the v1 API needs no api-version; /v1/ lines are accepted too
    let b = round(&m, "/openai/v1", "", "/chat/completions", 5).await;
    assert_eq!(b["status"], "completed", "{b}");
    let b = round(&m, "/openai", V, "/v1/chat/completions", 5).await;
    assert_eq!(b["status"], "completed", "{b}");
    // a line url that differs from the batch endpoint fails the batch
    let lines = jsonl(&[azure_line("0-1", "/v1/chat/completions", "x")]);
    let file: Value = m.az_upload("/openai", V, lines).await.json().await.unwrap();
    let (_, b) = m
        .az_json(
            reqwest::Method::POST,
            m.az("/openai", "/batches", V),
            Some(json!({"input_file_id": file["id"], "endpoint": "/chat/completions", "completion_window": "24h"})),
        )
        .await;
    let id = b["id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let failed = loop {
        let (_, b) = m
            .az_json(
                reqwest::Method::GET,
                m.az("/openai", &format!("/batches/{id}"), V),
                None,
            )
            .await;
        if b["status"] == "failed" {
            break b;
        }
        assert!(Instant::now() < deadline, "{b}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(failed["errors"]["data"][0]["code"], "invalid_url");
    let st = m.stats().await;
    assert_eq!(st.batches_created, 4);
    assert_eq!(st.creates_by_batch_number["az-1#0"], 3);
}

#[tokio::test]
async fn azure_requires_api_version_and_its_key() {
    let m = start(MockConfig {
        api_key: Some("az-key".into()),
        ..fast()
    })
    .await;
    let (s, v) = m
        .az_json(reqwest::Method::GET, m.az("/openai", "/batches", ""), None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(envelope(&v)["code"], "MissingApiVersionParameter");
    let (s, _) = m
        .az_json(
            reqwest::Method::GET,
            m.az("/openai/v1", "/batches", ""),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = m
        .az_json(reqwest::Method::GET, m.az("/openai", "/batches", V), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let r = m
        .http
        .get(m.az("/openai", "/batches", V))
        .header("api-key", "wrong-key-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // OpenAI's own endpoint names are refused on the OpenAI routes
    let r = m
        .create_raw(json!({"input_file_id": "file-x", "endpoint": "/chat/completions", "completion_window": "24h"}))
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED); // no key sent
    let r = m
        .http
        .post(m.url("/v1/batches"))
        .header("api-key", "az-key")
        .json(&json!({"input_file_id": "file-x", "endpoint": "/chat/completions", "completion_window": "24h"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn azure_allows_100k_lines_per_file() {
    let mut cfg = fast();
    cfg.make_instant();
    let m = start(cfg).await;
    let n = 50_001;
    let line = |i: usize| {
        format!(
            "{{\"custom_id\":\"0-{i}\",\"method\":\"POST\",\"url\":\"/chat/completions\",\"body\":{{\"model\":\"d\",\"messages\":[{{\"role\":\"user\",\"content\":\"r\"}}]}}}}\n"
        )
    };
    let body: String = (0..n).map(line).collect();
    let file: Value = m
        .az_upload("/openai", V, body.clone())
        .await
        .json()
        .await
        .unwrap();
    let (_, b) = m
        .az_json(
            reqwest::Method::POST,
            m.az("/openai", "/batches", V),
            Some(json!({"input_file_id": file["id"], "endpoint": "/chat/completions", "completion_window": "24h"})),
        )
        .await;
    let (_, b) = m
        .az_json(
            reqwest::Method::GET,
            m.az(
                "/openai",
                &format!("/batches/{}", b["id"].as_str().unwrap()),
                V,
            ),
            None,
        )
        .await;
    assert_eq!(b["status"], "completed", "{}", b["errors"]);
    // the same file through the OpenAI routes is too big
    let file = m
        .upload(&body.replace("\"/chat/completions\"", "\"/v1/chat/completions\""))
        .await;
    let b = m.create(&file, CHAT, json!({})).await;
    let b = m.wait_done(b["id"].as_str().unwrap()).await;
    assert_eq!(b["errors"]["data"][0]["code"], "too_many_tasks");
}

#[tokio::test]
async fn azure_sync_deployment_routes() {
    let m = start(fast()).await;
    let body = json!({"model": DEPLOYMENT, "messages": [{"role": "user", "content": "great"}]});
    let (s, v) = m
        .az_json(
            reqwest::Method::POST,
            m.az(
                "/openai",
                &format!("/deployments/{DEPLOYMENT}/chat/completions"),
                V,
            ),
            Some(body.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        mock_server::fake::chat_reply(DEPLOYMENT, "great")
    );
    let (s, _) = m
        .az_json(
            reqwest::Method::POST,
            m.az(
                "/openai",
                &format!("/deployments/{DEPLOYMENT}/chat/completions"),
                "",
            ),
            Some(body.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "api-version required");
    let (s, _) = m
        .az_json(
            reqwest::Method::POST,
            m.az("/openai/v1", "/chat/completions", ""),
            Some(body),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
}
