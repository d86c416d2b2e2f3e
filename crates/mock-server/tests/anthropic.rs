//! Anthropic Message Batches: shapes, life cycle, errors, faults, stats.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mock_server::{FaultConfig, MockConfig};
use reqwest::StatusCode;
use serde_json::{json, Value};

const BATCHES: &str = "/v1/messages/batches";
const CLAUDE: &str = "claude-haiku-4-5";

fn req(id: &str, text: &str) -> Value {
    json!({"custom_id": id, "params": {"model": CLAUDE, "max_tokens": 64, "system": "rate it",
           "messages": [{"role": "user", "content": text}]}})
}

fn reqs(tag: &str, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| req(&format!("{tag}_0-{i}"), &format!("review {i}: great phone")))
        .collect()
}

impl Mock {
    async fn a_post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .header("x-api-key", "sk-ant-test")
            .header("anthropic-version", "2023-06-01")
            .json(body)
            .send()
            .await
            .unwrap()
    }

    async fn a_get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .header("x-api-key", "sk-ant-test")
            .header("anthropic-version", "2023-06-01")
            .send()
            .await
            .unwrap()
    }

    async fn a_create(&self, requests: Vec<Value>) -> Value {
        let r = self.a_post(BATCHES, &json!({ "requests": requests })).await;
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }

    async fn a_wait_ended(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let b: Value = self
                .a_get(&format!("{BATCHES}/{id}"))
                .await
                .json()
                .await
                .unwrap();
            if b["processing_status"] == "ended" {
                return b;
            }
            assert!(Instant::now() < deadline, "never ended: {b}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn a_results(&self, url: &str) -> Vec<Value> {
        let r = self
            .http
            .get(url)
            .header("x-api-key", "k")
            .header("anthropic-version", "2023-06-01")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.text()
            .await
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn anthropic_error(v: &Value) -> (&str, &str) {
    assert_eq!(v["type"], "error", "{v}");
    (
        v["error"]["type"].as_str().unwrap(),
        v["error"]["message"].as_str().unwrap(),
    )
}

#[tokio::test]
async fn message_batch_lifecycle_and_results() {
    let m = start(fast()).await;
    let b = m.a_create(reqs("mptag1", 20)).await;
    assert_eq!(b["type"], "message_batch");
    assert!(b["id"].as_str().unwrap().starts_with("msgbatch_"));
    assert_eq!(b["processing_status"], "in_progress");
    assert_eq!(
        b["request_counts"],
        json!({"processing": 20, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0})
    );
    assert!(b["results_url"].is_null());
    assert!(b["created_at"].as_str().unwrap().ends_with('Z'));
    let id = b["id"].as_str().unwrap().to_owned();
    // results before the end: refused
    let r = m.a_get(&format!("{BATCHES}/{id}/results")).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let done = m.a_wait_ended(&id).await;
    assert_eq!(done["request_counts"]["succeeded"], 20);
    assert_eq!(done["request_counts"]["processing"], 0);
    assert!(done["ended_at"].is_string());
    let url = done["results_url"].as_str().unwrap();
    assert_eq!(url, m.url(&format!("{BATCHES}/{id}/results")));
    let lines = m.a_results(url).await;
    assert_eq!(lines.len(), 20);
    for l in &lines {
        let cid = l["custom_id"].as_str().unwrap();
        assert!(cid.starts_with("mptag1_0-"));
        let i: usize = cid["mptag1_0-".len()..].parse().unwrap();
        assert_eq!(l["result"]["type"], "succeeded");
        let msg = &l["result"]["message"];
        assert_eq!(msg["type"], "message");
        assert_eq!(msg["role"], "assistant");
        assert_eq!(msg["model"], CLAUDE);
        assert_eq!(msg["content"][0]["type"], "text");
        assert_eq!(
            msg["content"][0]["text"],
            mock_server::fake::chat_reply(CLAUDE, &format!("review {i}: great phone"))
        );
        assert!(msg["usage"]["input_tokens"].as_u64().unwrap() > 0);
    }
    let st = m.stats().await;
    assert_eq!(st.message_batches_created, 1);
    assert_eq!(st.creates_by_batch_number["anthropic:mptag1"], 1);
    assert_eq!(st.requests_answered, 20);
    // listing, newest first, with after_id / before_id paging
    let b2 = m.a_create(reqs("mptag2", 3)).await;
    let b3 = m.a_create(reqs("mptag3", 3)).await;
    let page: Value = m
        .a_get(&format!("{BATCHES}?limit=2"))
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [b3["id"].as_str().unwrap(), b2["id"].as_str().unwrap()]
    );
    assert_eq!(page["has_more"], true);
    assert_eq!(page["last_id"], b2["id"]);
    let next: Value = m
        .a_get(&format!(
            "{BATCHES}?limit=2&after_id={}",
            page["last_id"].as_str().unwrap()
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(next["data"][0]["id"], id.as_str());
    assert_eq!(next["has_more"], false);
    let back: Value = m
        .a_get(&format!("{BATCHES}?before_id={id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(back["data"].as_array().unwrap().len(), 2);
    let r = m.a_get(&format!("{BATCHES}?limit=1001")).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // delete: only once ended
    let r = m
        .http
        .delete(m.url(&format!("{BATCHES}/{}", b3["id"].as_str().unwrap())))
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(anthropic_error(&v).0, "invalid_request_error");
    let r = m
        .http
        .delete(m.url(&format!("{BATCHES}/{id}")))
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"id": id, "type": "message_batch_deleted"})
    );
    let r = m.a_get(&format!("{BATCHES}/{id}")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let v: Value = r.json().await.unwrap();
    assert_eq!(anthropic_error(&v).0, "not_found_error");
}

#[tokio::test]
async fn create_checks_the_shape_and_params_fail_per_request() {
    let m = start(fast()).await;
    for (body, what) in [
        (json!({}), "requests: Field required"),
        (json!({"requests": []}), "at least 1 item"),
        (
            json!({"requests": [{"custom_id": "a b", "params": {}}]}),
            "custom_id",
        ),
        (
            json!({"requests": [{"custom_id": "x".repeat(65), "params": {}}]}),
            "custom_id",
        ),
        (json!({"requests": [{"custom_id": "a"}]}), "params"),
        (
            json!({"requests": [req("a", "x"), req("a", "y")]}),
            "Duplicate custom_id",
        ),
    ] {
        let r = m.a_post(BATCHES, &body).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
        let v: Value = r.json().await.unwrap();
        let (kind, msg) = anthropic_error(&v);
        assert_eq!(kind, "invalid_request_error");
        assert!(msg.contains(what), "{msg} should mention {what}");
    }
    let r = m
        .http
        .post(m.url(BATCHES))
        .header("anthropic-version", "2023-06-01")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // missing anthropic-version
    let r = m
        .http
        .post(m.url(BATCHES))
        .json(&json!({"requests": [req("a", "x")]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(anthropic_error(&r.json::<Value>().await.unwrap())
        .1
        .contains("anthropic-version"));
    // bad params are errored results, not a failed batch
    let b = m
        .a_create(vec![
            req("ok", "fine"),
            json!({"custom_id": "nomax", "params": {"model": CLAUDE, "messages": [{"role": "user", "content": "x"}]}}),
            json!({"custom_id": "nomsg", "params": {"model": CLAUDE, "max_tokens": 5}}),
            json!({"custom_id": "role", "params": {"model": CLAUDE, "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}}),
        ])
        .await;
    let done = m.a_wait_ended(b["id"].as_str().unwrap()).await;
    assert_eq!(done["request_counts"]["succeeded"], 1);
    assert_eq!(done["request_counts"]["errored"], 3);
    let lines = m.a_results(done["results_url"].as_str().unwrap()).await;
    for l in lines {
        if l["custom_id"] == "ok" {
            continue;
        }
        let e = &l["result"]["error"];
        assert_eq!(l["result"]["type"], "errored");
        assert_eq!(e["type"], "error");
        assert_eq!(e["error"]["type"], "invalid_request_error", "{l}");
    }
}

#[tokio::test]
async fn cancel_ends_with_canceled_requests() {
    let mut cfg = fast();
    cfg.in_progress = Duration::from_secs(5);
    let m = start(cfg).await;
    let b = m.a_create(reqs("mpc", 10)).await;
    let id = b["id"].as_str().unwrap();
    tokio::time::sleep(Duration::from_millis(40)).await;
    let c: Value = m
        .a_post(&format!("{BATCHES}/{id}/cancel"), &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(c["processing_status"], "canceling");
    assert!(c["cancel_initiated_at"].is_string());
    let done = m.a_wait_ended(id).await;
    assert_eq!(done["request_counts"]["canceled"], 10);
    let lines = m.a_results(done["results_url"].as_str().unwrap()).await;
    assert!(lines
        .iter()
        .all(|l| l["result"] == json!({"type": "canceled"})));
    // cancelling an ended batch is refused
    let r = m
        .a_post(&format!("{BATCHES}/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn faults_in_the_anthropic_shapes() {
    let m = start(MockConfig {
        faults: FaultConfig {
            expire_fraction: 1.0,
            request_5xx_fraction: 0.3,
            request_4xx_fraction: 0.2,
            ..Default::default()
        },
        ..fast()
    })
    .await;
    let b = m.a_create(reqs("mpf", 40)).await;
    let done = m.a_wait_ended(b["id"].as_str().unwrap()).await;
    let c = &done["request_counts"];
    assert_eq!(c["expired"], 20, "{done}");
    let lines = m.a_results(done["results_url"].as_str().unwrap()).await;
    let kinds: Vec<&str> = lines
        .iter()
        .map(|l| match l["result"]["type"].as_str().unwrap() {
            "errored" => l["result"]["error"]["error"]["type"].as_str().unwrap(),
            t => t,
        })
        .collect();
    assert_eq!(kinds.iter().filter(|k| **k == "expired").count(), 20);
    assert!(
        kinds.contains(&"api_error") && kinds.contains(&"invalid_request_error"),
        "{kinds:?}"
    );
    // stats count answers by the public id
    let st = m.stats().await;
    assert_eq!(
        st.requests_answered,
        kinds.iter().filter(|k| **k == "succeeded").count() as u64
    );

    let m = start(MockConfig {
        faults: FaultConfig {
            rate_limit_fraction: 1.0,
            ..Default::default()
        },
        ..fast()
    })
    .await;
    let r = m.a_get(BATCHES).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(
        anthropic_error(&r.json::<Value>().await.unwrap()).0,
        "rate_limit_error"
    );

    let m = start(MockConfig {
        faults: FaultConfig {
            server_error_fraction: 1.0,
            ..Default::default()
        },
        ..fast()
    })
    .await;
    for _ in 0..10 {
        let r = m.a_get(BATCHES).await;
        let status = r.status().as_u16();
        let kind = anthropic_error(&r.json::<Value>().await.unwrap())
            .0
            .to_owned();
        assert!(matches!(
            (status, kind.as_str()),
            (500 | 503, "api_error") | (529, "overloaded_error")
        ));
    }

    // token limit: a queue-limit 429 at create, nothing created
    let m = start(MockConfig {
        faults: FaultConfig {
            token_limit_fraction: 1.0,
            ..Default::default()
        },
        ..fast()
    })
    .await;
    let r = m
        .a_post(BATCHES, &json!({"requests": reqs("mpt", 2)}))
        .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(m.stats().await.message_batches_created, 0);
}

#[tokio::test]
async fn duplicates_are_caught_by_tag_and_public_id() {
    let mut cfg = fast();
    cfg.make_instant();
    let m = start(cfg).await;
    // the same batch (tag) created twice: paid twice
    for _ in 0..2 {
        let b = m.a_create(reqs("mpsame", 2)).await;
        m.a_wait_ended(b["id"].as_str().unwrap()).await;
    }
    // the same record answered again under another batch tag
    let b = m.a_create(vec![req("mpother_0-1", "again")]).await;
    m.a_wait_ended(b["id"].as_str().unwrap()).await;
    let st = m.stats().await;
    assert_eq!(st.duplicate_creates, vec!["anthropic:mpsame".to_string()]);
    assert_eq!(st.duplicate_answers, 3, "{:?}", st.duplicate_answer_keys);
    assert!(st.duplicate_answer_keys.contains(&"/0-1".to_string()));
}

#[tokio::test]
async fn wrong_key_is_401_authentication_error() {
    let m = start(MockConfig {
        api_key: Some("sk-ant-right".into()),
        ..fast()
    })
    .await;
    let r = m.a_get(BATCHES).await; // sends sk-ant-test
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        anthropic_error(&r.json::<Value>().await.unwrap()),
        ("authentication_error", "invalid x-api-key")
    );
    let r = m
        .http
        .get(m.url(BATCHES))
        .header("x-api-key", "sk-ant-right")
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // the key as a bearer token (what anthropic-sdk-python 2.x sends) works too
    let r = m
        .http
        .get(m.url(BATCHES))
        .bearer_auth("sk-ant-right")
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = m
        .http
        .get(m.url(BATCHES))
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        anthropic_error(&r.json::<Value>().await.unwrap()).1,
        "x-api-key header is required"
    );
}

#[tokio::test]
async fn sync_messages_endpoint() {
    let m = start(fast()).await;
    let r = m
        .a_post(
            "/v1/messages",
            &json!({"model": CLAUDE, "max_tokens": 10, "messages": [{"role": "user", "content": "great phone"}]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(
        v["content"][0]["text"],
        mock_server::fake::chat_reply(CLAUDE, "great phone")
    );
    let r = m
        .a_post("/v1/messages", &json!({"model": CLAUDE, "messages": []}))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        anthropic_error(&v),
        ("invalid_request_error", "max_tokens: Field required")
    );
    assert_eq!(m.stats().await.sync_answered, 1);
}
