//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mock_server::{MockConfig, MockServer};
use reqwest::multipart::{Form, Part};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

pub const CHAT: &str = "/v1/chat/completions";
pub const EMB: &str = "/v1/embeddings";
pub const MODEL: &str = "gpt-4o-mini";

pub struct Mock {
    pub server: MockServer,
    pub http: Client,
    pub base: String,
}

pub async fn start(cfg: MockConfig) -> Mock {
    let server = MockServer::start(cfg).await.expect("server starts");
    let base = server.base_url();
    Mock {
        server,
        http: Client::new(),
        base,
    }
}

/// Fast timings for tests that only need the flow.
pub fn fast() -> MockConfig {
    MockConfig {
        validating: Duration::from_millis(20),
        in_progress: Duration::from_millis(60),
        finalizing: Duration::from_millis(20),
        cancelling: Duration::from_millis(20),
        ..MockConfig::default()
    }
}

pub fn chat_line(id: &str, text: &str) -> Value {
    json!({"custom_id": id, "method": "POST", "url": CHAT,
           "body": {"model": MODEL, "messages": [{"role": "system", "content": "rate it"}, {"role": "user", "content": text}]}})
}

pub fn emb_line(id: &str, text: &str) -> Value {
    json!({"custom_id": id, "method": "POST", "url": EMB, "body": {"model": "text-embedding-3-small", "input": text}})
}

pub fn jsonl(lines: &[Value]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// `n` chat lines `r-0 .. r-{n-1}` with distinct texts.
pub fn chat_lines(prefix: &str, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            chat_line(
                &format!("{prefix}{i}"),
                &format!("review {i}: good but slow"),
            )
        })
        .collect()
}

impl Mock {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn upload_named(&self, body: &str, name: &str, purpose: &str) -> reqwest::Response {
        let form = Form::new().text("purpose", purpose.to_string()).part(
            "file",
            Part::bytes(body.as_bytes().to_vec()).file_name(name.to_string()),
        );
        self.http
            .post(self.url("/v1/files"))
            .multipart(form)
            .send()
            .await
            .expect("upload sent")
    }

    pub async fn upload(&self, body: &str) -> String {
        let r = self.upload_named(body, "input.jsonl", "batch").await;
        assert_eq!(r.status(), StatusCode::OK);
        r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn create_raw(&self, body: Value) -> reqwest::Response {
        self.http
            .post(self.url("/v1/batches"))
            .json(&body)
            .send()
            .await
            .expect("create sent")
    }

    pub async fn create(&self, file_id: &str, endpoint: &str, metadata: Value) -> Value {
        let r = self
            .create_raw(json!({"input_file_id": file_id, "endpoint": endpoint, "completion_window": "24h", "metadata": metadata}))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }

    /// Uploads `lines` and creates a batch on `endpoint`.
    pub async fn submit(&self, lines: &[Value], endpoint: &str, metadata: Value) -> Value {
        let file = self.upload(&jsonl(lines)).await;
        self.create(&file, endpoint, metadata).await
    }

    pub async fn get_json(&self, path: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(self.url(path))
            .send()
            .await
            .expect("get sent");
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn batch(&self, id: &str) -> Value {
        let (s, v) = self.get_json(&format!("/v1/batches/{id}")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v
    }

    /// Polls until the batch reaches one of `statuses`.
    pub async fn wait_for(&self, id: &str, statuses: &[&str]) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let b = self.batch(id).await;
            if statuses.contains(&b["status"].as_str().unwrap()) {
                return b;
            }
            assert!(
                Instant::now() < deadline,
                "batch never reached {statuses:?}: {b}"
            );
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    }

    pub async fn wait_done(&self, id: &str) -> Value {
        self.wait_for(id, &["completed", "failed", "expired", "cancelled"])
            .await
    }

    pub async fn content(&self, file_id: &str) -> String {
        let r = self
            .http
            .get(self.url(&format!("/v1/files/{file_id}/content")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.text().await.unwrap()
    }

    /// Lines of a file (empty when `id` is null).
    pub async fn lines(&self, id: &Value) -> Vec<Value> {
        match id.as_str() {
            None | Some("") => Vec::new(),
            Some(id) => self
                .content(id)
                .await
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect(),
        }
    }

    pub async fn stats(&self) -> mock_server::Stats {
        let (s, v) = self.get_json("/mock/stats").await;
        assert_eq!(s, StatusCode::OK);
        serde_json::from_value(v).unwrap()
    }
}

/// custom_id → line.
pub fn by_id(lines: &[Value]) -> HashMap<String, Value> {
    lines
        .iter()
        .map(|l| (l["custom_id"].as_str().unwrap().to_string(), l.clone()))
        .collect()
}

/// Asserts the real error envelope and returns its `error` object.
pub fn envelope(v: &Value) -> &Value {
    let e = &v["error"];
    assert!(e["message"].is_string(), "no error.message in {v}");
    assert!(e["type"].is_string(), "no error.type in {v}");
    let obj = e.as_object().unwrap();
    assert!(
        obj.contains_key("param") && obj.contains_key("code"),
        "envelope lacks param/code: {v}"
    );
    e
}
