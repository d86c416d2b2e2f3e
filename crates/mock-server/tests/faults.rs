//! Each fault kind, determinism, and the stats that catch client bugs.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;
use mock_server::{FaultConfig, MockConfig};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn with_faults(f: FaultConfig) -> MockConfig {
    MockConfig {
        faults: f,
        ..fast()
    }
}

#[tokio::test]
async fn rate_limit_fault_answers_429_with_retry_headers() {
    let m = start(with_faults(FaultConfig {
        rate_limit_fraction: 1.0,
        ..Default::default()
    }))
    .await;
    let r = m.http.get(m.url("/v1/batches")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after-ms"], "200");
    assert_eq!(r.headers()["retry-after"], "1");
    let v: Value = r.json().await.unwrap();
    let e = envelope(&v);
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("requests"), Some("rate_limit_exceeded"))
    );
    // never on the stats endpoint
    let st = m.stats().await;
    assert_eq!(st.faults_injected["rate_limit"], 1);
    assert_eq!(st.calls_by_status["4xx"], 1);
    assert_eq!(st.calls_by_route["GET /v1/batches"], 1);
}

#[tokio::test]
async fn server_error_fault_fails_before_acting() {
    let m = start(with_faults(FaultConfig {
        server_error_fraction: 1.0,
        ..Default::default()
    }))
    .await;
    let mut codes = HashSet::new();
    for _ in 0..30 {
        let r = m
            .create_raw(
                json!({"input_file_id": "file-x", "endpoint": CHAT, "completion_window": "24h"}),
            )
            .await;
        codes.insert(r.status().as_u16());
        let v: Value = r.json().await.unwrap();
        assert_eq!(envelope(&v)["type"], "server_error");
    }
    assert_eq!(codes, HashSet::from([500, 502, 503]));
    let st = m.stats().await;
    assert_eq!(
        st.batches_created, 0,
        "nothing may be created on an injected 5xx"
    );
    assert_eq!(st.faults_injected["server_error"], 30);
}

#[tokio::test]
async fn lost_response_creates_the_batch_but_loses_the_answer() {
    let m = start(with_faults(FaultConfig {
        lost_response_fraction: 1.0,
        ..Default::default()
    }))
    .await;
    let file = m.upload(&jsonl(&chat_lines("x-", 3))).await;
    let (mut got_500, mut dropped) = (0, 0);
    for attempt in 0..12 {
        let meta = json!({"batch_number": "p-0-0-2", "attempt": attempt.to_string()});
        let res = m.http.post(m.url("/v1/batches"))
            .json(&json!({"input_file_id": file, "endpoint": CHAT, "completion_window": "24h", "metadata": meta}))
            .send()
            .await;
        match res {
            Ok(r) => {
                assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
                got_500 += 1;
            }
            Err(e) => {
                assert!(!e.is_timeout(), "{e}");
                dropped += 1;
            }
        }
    }
    assert!(
        got_500 > 0 && dropped > 0,
        "both kinds expected: 500={got_500} dropped={dropped}"
    );
    // every create acted: the client can find them by metadata
    let (_, list) = m.get_json("/v1/batches?limit=100").await;
    let attempts: HashSet<String> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["metadata"]["attempt"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(attempts.len(), 12);
    let st = m.stats().await;
    assert_eq!(st.batches_created, 12);
    assert_eq!(
        st.faults_injected["lost_response_500"] + st.faults_injected["lost_response_drop"],
        12
    );
    assert_eq!(st.calls_by_status["dropped"], dropped);
}

#[tokio::test]
async fn token_limit_fault_fails_the_batch_in_validation() {
    let m = start(with_faults(FaultConfig {
        token_limit_fraction: 1.0,
        ..Default::default()
    }))
    .await;
    let b = m.submit(&chat_lines("t-", 3), CHAT, Value::Null).await;
    let done = m.wait_done(b["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "failed");
    assert!(done["in_progress_at"].is_null());
    let e = &done["errors"]["data"][0];
    assert_eq!(e["code"], "token_limit_exceeded");
    assert_eq!(
        e["message"],
        "Enqueued token limit reached for gpt-4o-mini in organization org-mock. Limit: 90,000 enqueued tokens. \
         Please try again once some in_progress batches have been completed."
    );
    assert!(e["param"].is_null() && e["line"].is_null());
    assert_eq!(m.stats().await.requests_answered, 0);
}

#[tokio::test]
async fn expire_fault_keeps_the_finished_half() {
    let m = start(with_faults(FaultConfig {
        expire_fraction: 1.0,
        ..Default::default()
    }))
    .await;
    let b = m.submit(&chat_lines("e-", 40), CHAT, Value::Null).await;
    let done = m.wait_done(b["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "expired");
    assert!(done["expired_at"].is_i64() && done["completed_at"].is_null());
    let out = m.lines(&done["output_file_id"]).await;
    let err = m.lines(&done["error_file_id"]).await;
    assert_eq!((out.len(), err.len()), (20, 20));
    for l in &err {
        assert!(l["response"].is_null());
        assert_eq!(l["error"]["code"], "batch_expired");
    }
    assert_eq!(done["request_counts"]["completed"], 20);
    assert_eq!(m.stats().await.faults_injected["expire"], 1);
}

#[tokio::test]
async fn request_4xx_everywhere_completes_without_output_file() {
    let m = start(with_faults(FaultConfig {
        request_4xx_fraction: 1.0,
        ..Default::default()
    }))
    .await;
    let b = m.submit(&chat_lines("q-", 5), CHAT, Value::Null).await;
    let done = m.wait_done(b["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "completed");
    assert!(
        done["output_file_id"].is_null(),
        "all failed: no output file"
    );
    assert_eq!(
        done["request_counts"],
        json!({"total": 5, "completed": 0, "failed": 5})
    );
    let err = m.lines(&done["error_file_id"]).await;
    assert_eq!(err.len(), 5);
    for l in &err {
        assert!(l["error"].is_null());
        assert_eq!(l["response"]["status_code"], 400);
        envelope(&l["response"]["body"]);
    }
}

#[tokio::test]
async fn request_5xx_is_per_attempt_so_retries_succeed_and_is_seeded() {
    async fn run(seed: u64) -> (Vec<String>, usize) {
        let mut cfg = with_faults(FaultConfig {
            request_5xx_fraction: 0.5,
            ..Default::default()
        });
        cfg.seed = seed;
        let m = start(cfg).await;
        let meta = json!({"mlpredict_pipeline": "p"});
        let mut pending: Vec<Value> = chat_lines("s-", 40);
        let mut first_failures = Vec::new();
        for round in 0..30 {
            let b = m.submit(&pending, CHAT, meta.clone()).await;
            let done = m.wait_done(b["id"].as_str().unwrap()).await;
            let err = m.lines(&done["error_file_id"]).await;
            for l in &err {
                assert_eq!(l["response"]["status_code"], 500);
            }
            let failed: HashSet<String> = err
                .iter()
                .map(|l| l["custom_id"].as_str().unwrap().to_string())
                .collect();
            if round == 0 {
                first_failures = failed.iter().cloned().collect();
                first_failures.sort();
            }
            pending.retain(|l| failed.contains(l["custom_id"].as_str().unwrap()));
            if pending.is_empty() {
                let st = m.stats().await;
                assert_eq!(st.requests_answered, 40);
                assert_eq!(st.duplicate_answers, 0);
                return (first_failures, round);
            }
        }
        panic!("retries never drained the failures");
    }
    let (a, rounds) = run(7).await;
    assert!(
        !a.is_empty() && a.len() < 40,
        "about half fail first: {}",
        a.len()
    );
    assert!(rounds >= 1);
    assert_eq!(run(7).await.0, a, "same seed, same failures");
    assert_ne!(run(8).await.0, a, "another seed, other failures");
}

#[tokio::test]
async fn slow_finalizing_and_empty_error_file_id_quirks() {
    let m = start(with_faults(FaultConfig {
        slow_finalizing: Duration::from_millis(600),
        empty_error_file_id: true,
        ..Default::default()
    }))
    .await;
    let b = m.submit(&chat_lines("w-", 3), CHAT, Value::Null).await;
    let id = b["id"].as_str().unwrap();
    let started = Instant::now();
    let fin = m.wait_for(id, &["finalizing"]).await;
    assert_eq!(
        fin["request_counts"]["completed"], 3,
        "100% done while finalizing"
    );
    let done = m.wait_for(id, &["completed"]).await;
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_eq!(done["error_file_id"], "");
}

#[tokio::test]
async fn fault_decisions_repeat_for_the_same_seed() {
    async fn pattern(seed: u64) -> Vec<u16> {
        let mut cfg = with_faults(FaultConfig {
            rate_limit_fraction: 0.3,
            server_error_fraction: 0.2,
            ..Default::default()
        });
        cfg.seed = seed;
        let m = start(cfg).await;
        let mut out = vec![];
        for _ in 0..40 {
            out.push(
                m.http
                    .get(m.url("/v1/batches"))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16(),
            );
        }
        out
    }
    let a = pattern(1).await;
    assert!(a.contains(&429) && a.contains(&200));
    assert_eq!(a, pattern(1).await);
    assert_ne!(a, pattern(2).await);
}

#[tokio::test]
async fn stats_report_duplicate_answers_and_creates() {
    let m = start(fast()).await;
    let lines = chat_lines("d-", 4);
    let meta = |attempt: &str| json!({"mlpredict_pipeline": "pipe", "batch_number": "pipe-0-0-3", "attempt": attempt});
    for attempt in ["0", "0", "1"] {
        let b = m.submit(&lines, CHAT, meta(attempt)).await;
        m.wait_done(b["id"].as_str().unwrap()).await;
    }
    // the same custom_ids in another pipeline are not duplicates
    let b = m
        .submit(&lines, CHAT, json!({"mlpredict_pipeline": "other"}))
        .await;
    m.wait_done(b["id"].as_str().unwrap()).await;
    let st = m.stats().await;
    assert_eq!(st.requests_answered, 16);
    assert_eq!(st.duplicate_answers, 8);
    assert!(st.duplicate_answer_keys.contains(&"pipe/d-0".to_string()));
    assert!(st
        .duplicate_answer_keys
        .iter()
        .all(|k| k.starts_with("pipe/")));
    assert_eq!(st.duplicate_creates, vec!["pipe-0-0-3#0".to_string()]);
    assert_eq!(st.creates_by_batch_number["pipe-0-0-3#1"], 1);
    assert_eq!(
        m.server.stats(),
        st,
        "MockServer::stats equals GET /mock/stats"
    );
}

#[test]
fn faults_file_is_read_by_from_args() {
    let dir = std::env::temp_dir().join(format!("mock-faults-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("faults.toml");
    std::fs::write(&path, "seed = 5\nlost-response-fraction = 0.1\nslow_finalizing = \"1s\"\nempty-error-file-id = true\n").unwrap();
    let cfg = MockConfig::from_args(&mock_server::MockArgs {
        faults: Some(path),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(cfg.seed, 5);
    assert_eq!(cfg.faults.lost_response_fraction, 0.1);
    assert_eq!(cfg.faults.slow_finalizing, Duration::from_secs(1));
    assert!(cfg.faults.empty_error_file_id);
}
