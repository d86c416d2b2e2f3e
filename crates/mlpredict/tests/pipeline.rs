//! The real binary against the mock server: happy path, every fault on,
//! other tasks and protocols, configuration errors.

mod common;

use common::*;
use mock_server::{MockConfig, MockServer};

async fn mock(cfg: MockConfig) -> MockServer {
    MockServer::start(cfg).await.expect("mock server")
}

fn fast() -> MockConfig {
    batch_mock(60)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_once_with_its_prediction_and_dead_letters() {
    let server = mock(fast()).await;
    let (dir, texts, bad) = input_dir(500, 50);
    let cfg = config(dir.path(), &server.base_url(), "");
    let out = blocking(move || run(&cfg, &[])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let (ok, err) = check_output(&lines(&dir.path().join("output.jsonl")), &texts);
    assert_eq!((ok, err), (500, 0));
    let dlq = lines(&dir.path().join("dlq.jsonl"));
    assert_eq!(dlq.len(), bad);
    for d in &dlq {
        assert!(d["line"].as_u64().is_some() && d["raw"].is_string(), "{d}");
        assert_bad_input_reason(d);
    }
    // Local batch files are gone once emitted; only the state stays.
    let left: Vec<_> = std::fs::read_dir(dir.path().join("work/local/reviews"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.starts_with("state.db"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let stats = server.stats();
    assert_eq!(stats.batches_created, 10, "{stats:?}");
    assert_eq!(stats.requests_answered, 500);
    assert_eq!(stats.duplicate_answers, 0);
    // ml.batch.cleanup.remote (default on): every input and output file of
    // every batch is deleted at the provider, the last ones too.
    let deletes = stats
        .calls_by_route
        .get("DELETE /v1/files/{id}")
        .copied()
        .unwrap_or(0);
    assert_eq!(deletes, 20, "{:?}", stats.calls_by_route);
    // With several batches waiting, one listing polls them all.
    let lists = stats
        .calls_by_route
        .get("GET /v1/batches")
        .copied()
        .unwrap_or(0);
    let gets = stats
        .calls_by_route
        .get("GET /v1/batches/{id}")
        .copied()
        .unwrap_or(0);
    assert!(lists > 0, "no list polling: {:?}", stats.calls_by_route);
    assert!(
        gets < 10 * 8,
        "per-batch polls should be rare: {:?}",
        stats.calls_by_route
    );
    // The API key never reaches logs.
    assert!(!stderr(&out).contains("sk-test-secret-key"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_with_every_fault_on() {
    let mut cfg = fast();
    cfg.seed = 7;
    every_fault(&mut cfg);
    let server = mock(cfg).await;
    let (dir, texts, _) = input_dir(1000, 0);
    let cfg = config(
        dir.path(),
        &server.base_url(),
        "max.inflight = 6\nmax.retries = 6\n",
    );
    let out = blocking(move || run(&cfg, &["ml.batch.size=40"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let output = lines(&dir.path().join("output.jsonl"));
    let (ok, err) = check_output(&output, &texts);
    assert_eq!(ok + err, 1000);
    // 4xx lines are errors at once; with 6 retries nearly every 5xx recovers.
    let codes: Vec<&str> = output
        .iter()
        .filter_map(|r| r["ml_predict"]["error"]["code"].as_str())
        .collect();
    assert!(
        !codes.is_empty() && err < 150,
        "ok {ok} err {err} codes {codes:?}"
    );
    assert!(output.iter().any(
        |r| r["ml_predict"]["retries"].as_u64() > Some(0) && r["ml_predict"]["status"] == "ok"
    ));
    assert_no_double_pay(&server);
    let stats = server.stats();
    for kind in ["rate_limit", "lost_response", "token_limit", "expire"] {
        assert!(
            stats.faults_injected.keys().any(|k| k.contains(kind)),
            "fault {kind} never injected: {:?}",
            stats.faults_injected
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_and_the_generic_protocol() {
    let server = mock(fast()).await;
    let base = server.base_url();
    for (provider, endpoint, api) in [
        ("openai", "/v1/embeddings", "/v1"),
        ("generic", "/v1/chat/completions", "/ml/api/batch_predict"),
    ] {
        let (dir, texts, _) = input_dir(120, 0);
        let cfg = config(dir.path(), &base, "");
        let defines = [
            format!("model.provider={provider}"),
            format!("model.endpoint={base}{endpoint}"),
            format!("ml.batch.api.endpoint={base}{api}"),
        ];
        let out = blocking(move || {
            let d: Vec<&str> = defines.iter().map(String::as_str).collect();
            run(&cfg, &d)
        })
        .await;
        assert!(out.status.success(), "{provider}: {}", stderr(&out));
        let output = lines(&dir.path().join("output.jsonl"));
        assert_eq!(output.len(), 120, "{provider}");
        for rec in &output {
            assert_eq!(rec["ml_predict"]["status"], "ok", "{rec}");
            let text = &texts[&rec["id"].as_u64().unwrap()];
            if endpoint.ends_with("embeddings") {
                let want: Vec<f64> = mock_server::fake::embedding(text)
                    .iter()
                    .map(|&x| f64::from(x))
                    .collect();
                let got: Vec<f64> = rec["prediction"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap())
                    .collect();
                assert_eq!(got.len(), want.len());
                assert!(
                    got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-5),
                    "{rec}"
                );
            } else {
                assert_eq!(
                    rec["prediction"].as_str(),
                    Some(mock_server::fake::chat_reply(MODEL, text).as_str())
                );
            }
        }
    }
}

#[test]
fn bad_configuration_fails_at_start_naming_the_key() {
    let (dir, _, _) = input_dir(3, 0);
    let cfg = config(dir.path(), "http://127.0.0.1:9", "sise = 3\n");
    let out = run(&cfg, &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("ml.batch.sise"), "{}", stderr(&out));
    let cfg = config(dir.path(), "http://127.0.0.1:9", "");
    let out = run(&cfg, &["ml.batch.poll.interval=soon"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("ml.batch.poll.interval"),
        "{}",
        stderr(&out)
    );
    assert!(
        !dir.path().join("output.jsonl").exists(),
        "nothing written on a config error"
    );
}

/// Fuzz-style bad input through batch mode: every output and dead-letter
/// line is valid JSON from its bytes, every good record comes out once, every
/// bad line is a dead letter with its reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bytes_and_forged_fields_never_make_invalid_json() {
    let server = mock(fast()).await;
    let dir = tempfile::tempdir().unwrap();
    let (texts, bad) = write_fuzz_input(&dir.path().join("input.jsonl"), 300, 0x5eed);
    let cfg = config(dir.path(), &server.base_url(), "");
    let out = blocking(move || run(&cfg, &[])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let output = json_lines(&dir.path().join("output.jsonl"));
    assert_eq!(check_output(&output, &texts), (300, 0));
    let dlq = json_lines(&dir.path().join("dlq.jsonl"));
    assert_eq!(dlq.len(), bad);
    assert!(bad > 50, "{bad}");
    for d in &dlq {
        assert!(d["raw"].is_string() && d["error"].is_string(), "{d}");
    }
    let reasons: Vec<&str> = dlq.iter().map(|d| d["error"].as_str().unwrap()).collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("not valid utf-8") && r.contains("field `note`")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("`ml_predict`")),
        "{reasons:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_too_large_for_any_batch_is_dead_lettered_at_intake() {
    let server = mock(fast()).await;
    let dir = tempfile::tempdir().unwrap();
    let huge = "x".repeat(5_000);
    let input = format!(
        "{{\"id\":0,\"text\":\"small\"}}\n{{\"id\":1,\"text\":\"{huge}\"}}\n{{\"id\":2,\"text\":\"small too\"}}\n"
    );
    std::fs::write(dir.path().join("input.jsonl"), input).unwrap();
    let cfg = config(dir.path(), &server.base_url(), "");
    let out = blocking(move || run(&cfg, &["ml.batch.max.bytes=4KiB"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let output = lines(&dir.path().join("output.jsonl"));
    let ids: Vec<_> = output.iter().map(|v| v["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), 2, "{output:?}");
    assert!(output.iter().all(|v| v["ml_predict"]["status"] == "ok"));
    let dlq = lines(&dir.path().join("dlq.jsonl"));
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    let reason = dlq[0]["error"].as_str().unwrap();
    assert!(
        reason.contains("ml.batch.max.bytes") && reason.contains("4096"),
        "{reason}"
    );
    assert_eq!(dlq[0]["line"], 2);
    // It was never uploaded alone to be refused.
    assert_eq!(server.stats().batches_created, 1);
}
