//! GenericClient (PROVIDERS.md §8) against throwaway axum servers.

mod common;

use std::sync::{Arc, Mutex};

use axum::extract::{Multipart, Path as AxPath, Query};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use batch_api::wire::{parse_result_line, split_lines, Outcome, Task, WireFormat};
use batch_api::{
    connect, BatchApi, BatchMeta, ConnectOptions, ErrorClass, GenericClient, ProviderKind,
    RemoteStatus,
};
use common::*;
use serde_json::{json, Value};

fn meta(n: u32) -> BatchMeta {
    BatchMeta {
        pipeline: "p".into(),
        batch_number: format!("p-0-{n}"),
        attempt: 0,
    }
}

#[derive(Default)]
struct Seen {
    file: Vec<u8>,
    file_name: String,
    metadata: Option<Value>,
    auth: Option<String>,
    status_calls: usize,
}

fn server(seen: Arc<Mutex<Seen>>, with_jobs: bool, array_results: bool) -> Router {
    let s1 = seen.clone();
    let s2 = seen.clone();
    let mut r = Router::new()
        .route(
            "/ml/api/batch_predict",
            post(move |headers: HeaderMap, mut mp: Multipart| async move {
                let mut s = s1.lock().unwrap().clone_empty();
                while let Some(f) = mp.next_field().await.unwrap() {
                    match f.name().unwrap() {
                        "file" => {
                            s.file_name = f.file_name().unwrap().to_owned();
                            s.file = f.bytes().await.unwrap().to_vec();
                        }
                        "metadata" => s.metadata = Some(serde_json::from_str(&f.text().await.unwrap()).unwrap()),
                        other => panic!("unexpected field {other}"),
                    }
                }
                s.auth = headers.get("authorization").map(|v| v.to_str().unwrap().to_owned());
                *s1.lock().unwrap() = s;
                Json(json!({"id": "job_1"}))
            }),
        )
        .route(
            "/ml/api/batch/status/{id}",
            get(move |AxPath(id): AxPath<String>| async move {
                let n = {
                    let mut s = s2.lock().unwrap();
                    s.status_calls += 1;
                    s.status_calls
                };
                match (id.as_str(), n) {
                    ("job_1", 1) => Json(json!({"id": id, "status": "QUEUED"})).into_response(),
                    ("job_1", 2) => Json(json!({"id": id, "status": "Running"})).into_response(),
                    ("job_1", _) => Json(json!({"id": id, "status": "COMPLETED", "results_url": "/ml/api/batch/results/job_1"})).into_response(),
                    ("job_bad", _) => Json(json!({"status": "failed", "error": {"code": "invalid_file", "message": "line 3 is not json"}})).into_response(),
                    _ => (StatusCode::NOT_FOUND, Json(json!({"error": {"code": "not_found", "message": "no job"}}))).into_response(),
                }
            }),
        )
        .route(
            "/ml/api/batch/results/{id}",
            get(move || async move {
                if array_results {
                    "[\n {\"custom_id\": \"l-1\", \"output\": \"Positive, \\\"really\\\"\"},\n {\"custom_id\": \"l-2\", \"error\": {\"code\": \"500\", \"message\": \"crash\"}}\n]".to_owned()
                } else {
                    "{\"custom_id\":\"l-1\",\"output\":\"Positive, \\\"really\\\"\"}\n{\"custom_id\":\"l-2\",\"error\":{\"code\":\"500\",\"message\":\"crash\"}}\n".to_owned()
                }
            }),
        );
    if with_jobs {
        r = r.route(
            "/ml/api/batch/jobs",
            get(|Query(q): Query<std::collections::HashMap<String, String>>| async move {
                let all: Vec<Value> = (1..=4)
                    .rev()
                    .map(|i| json!({"id": format!("job_{i}"), "status": "running", "created_at": i * 100,
                                    "metadata": {"mlpredict_pipeline": "p", "batch_number": format!("p-0-{i}"), "attempt": "0"}}))
                    .collect();
                let start = q.get("after").map(|a| all.iter().position(|j| j["id"] == a.as_str()).unwrap() + 1).unwrap_or(0);
                let page: Vec<Value> = all.iter().skip(start).take(2).cloned().collect();
                Json(json!({"object": "list", "data": page, "last_id": page.last().map(|j| j["id"].clone()), "has_more": start + 2 < all.len()}))
            }),
        );
    }
    r
}

impl Seen {
    fn clone_empty(&self) -> Seen {
        Seen {
            status_calls: self.status_calls,
            ..Default::default()
        }
    }
}

#[tokio::test]
async fn submit_poll_download() {
    for array_results in [false, true] {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let base = serve(server(seen.clone(), true, array_results)).await;
        let c = GenericClient::new(
            &format!("{base}/ml/api/batch_predict"),
            None,
            Some("gk-secret-1".into()),
            timeouts(),
        )
        .unwrap()
        .with_retry(fast_retry());
        assert_eq!(c.name(), "generic");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("batch-7.requests.jsonl");
        std::fs::write(
            &path,
            b"{\"custom_id\":\"l-1\",\"input\":{\"model\":\"m\"}}\n",
        )
        .unwrap();

        assert_eq!(c.upload(&path, "x.jsonl").await.unwrap(), None);
        let b = c.create(None, &path, &meta(7)).await.unwrap();
        assert_eq!(b.id, "job_1");
        assert_eq!(b.status, RemoteStatus::Validating);
        assert_eq!(b.meta, Some(meta(7)));
        {
            let s = seen.lock().unwrap();
            assert_eq!(
                s.file,
                b"{\"custom_id\":\"l-1\",\"input\":{\"model\":\"m\"}}\n"
            );
            assert_eq!(s.file_name, "batch-7.requests.jsonl");
            assert_eq!(
                s.metadata,
                Some(json!({"mlpredict_pipeline": "p", "batch_number": "p-0-7", "attempt": "0"}))
            );
            assert_eq!(s.auth.as_deref(), Some("Bearer gk-secret-1"));
        }
        assert_eq!(
            c.get("job_1").await.unwrap().status,
            RemoteStatus::Validating
        );
        assert_eq!(
            c.get("job_1").await.unwrap().status,
            RemoteStatus::InProgress
        );
        let done = c.get("job_1").await.unwrap();
        assert_eq!(done.status, RemoteStatus::Completed);
        let url = done.output_file.unwrap();

        let dest = dir.path().join("results.jsonl");
        c.download(&url, &dest).await.unwrap();
        let bytes = std::fs::read(&dest).unwrap();
        // In memory: the same normalised bytes.
        assert_eq!(c.fetch(&url).await.unwrap(), bytes);
        let lines: Vec<_> = split_lines(&bytes)
            .map(|l| parse_result_line(WireFormat::Generic, Task::Chat, l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{}", String::from_utf8_lossy(&bytes));
        match &lines[0].outcome {
            Outcome::Ok { prediction, .. } => {
                assert_eq!(prediction.get(), r#""Positive, \"really\"""#)
            }
            o => panic!("{o:?}"),
        }
        assert!(matches!(
            lines[1].outcome,
            Outcome::Failed {
                retriable: true,
                ..
            }
        ));

        // Absolute results URLs work as well.
        c.download(&format!("{base}{url}"), &dest).await.unwrap();

        let bad = c.get("job_bad").await.unwrap();
        assert_eq!(bad.id, "job_bad", "id filled in from the request");
        assert_eq!(bad.status, RemoteStatus::Failed);
        assert_eq!(bad.errors[0].code, "invalid_file");
        assert_eq!(
            c.get("job_zzz").await.unwrap_err().class,
            ErrorClass::NotFound
        );

        let e = c.cancel("job_1").await.unwrap_err();
        assert_eq!(e.class, ErrorClass::Permanent);
        assert_eq!(e.message, "cancel is not part of the generic protocol");
        c.delete_file(&url).await.unwrap();

        // Adoption through our listing extension; the job is then read from
        // its status endpoint, since a listing entry may lack results_url.
        let found = c.find(&meta(1), 0).await.unwrap().unwrap();
        assert_eq!(found.id, "job_1");
        assert_eq!(found.status, RemoteStatus::Completed, "{found:?}");
        assert_eq!(
            found.output_file.as_deref(),
            Some("/ml/api/batch/results/job_1")
        );
        assert_eq!(found.meta.as_ref(), Some(&meta(1)));
        assert_eq!(found.created_at, Some(100));
        assert_eq!(
            c.find(&meta(1), 350).await.unwrap(),
            None,
            "stops at not_before"
        );
        assert_eq!(c.find(&meta(9), 0).await.unwrap(), None);
    }
}

#[tokio::test]
async fn find_without_listing_is_none() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let base = serve(server(seen, false, false)).await;
    let c = connect(
        ProviderKind::Generic,
        ConnectOptions {
            endpoint: format!("{base}/ml/api/batch_predict"),
            status_endpoint: None,
            api_key: None,
            request_path: "/v1/chat/completions".into(),
            timeouts: timeouts(),
            retry: fast_retry(),
            limits: None,
            api_version: None,
            anthropic_version: None,
        },
    )
    .unwrap();
    assert_eq!(
        c.list(None, 10).await.unwrap_err().class,
        ErrorClass::NotFound
    );
    assert_eq!(c.find(&meta(1), 0).await.unwrap(), None);
    assert_eq!(c.find(&meta(1), 0).await.unwrap(), None);
}

#[tokio::test]
async fn lost_submit_answer_is_ambiguous_and_not_retried() {
    let (base, count) = black_hole().await;
    let c = GenericClient::new(
        &format!("{base}/ml/api/batch_predict"),
        None,
        None,
        timeouts(),
    )
    .unwrap()
    .with_retry(fast_retry());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.jsonl");
    std::fs::write(&path, b"{}\n").unwrap();
    let e = c.create(None, &path, &meta(1)).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Ambiguous, "{}", e.message);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[test]
fn connect_builds_every_provider_and_parses_names() {
    for kind in [
        ProviderKind::OpenAi,
        ProviderKind::AzureOpenAi,
        ProviderKind::Anthropic,
        ProviderKind::Generic,
    ] {
        let opts = ConnectOptions {
            endpoint: "http://127.0.0.1:1/v1".into(),
            status_endpoint: None,
            api_key: Some("k-secret-value".into()),
            request_path: "/v1/chat/completions".into(),
            timeouts: timeouts(),
            retry: fast_retry(),
            limits: None,
            api_version: Some("2024-10-21".into()),
            anthropic_version: None,
        };
        assert!(!format!("{opts:?}").contains("k-secret-value"));
        let api = connect(kind, opts).unwrap();
        assert_eq!(api.name(), kind.as_str());
        assert!(kind.wire_format().is_some());
    }
    let bad = ConnectOptions {
        endpoint: "not a url".into(),
        status_endpoint: None,
        api_key: None,
        request_path: "/v1/chat/completions".into(),
        timeouts: timeouts(),
        retry: fast_retry(),
        limits: None,
        api_version: None,
        anthropic_version: None,
    };
    for kind in [ProviderKind::AzureOpenAi, ProviderKind::Anthropic] {
        let e = connect(kind, bad.clone()).err().unwrap();
        assert_eq!(e.class, ErrorClass::Permanent);
    }
    assert_eq!(
        "OpenAI".parse::<ProviderKind>().unwrap(),
        ProviderKind::OpenAi
    );
    assert_eq!(
        "azure-openai".parse::<ProviderKind>().unwrap(),
        ProviderKind::AzureOpenAi
    );
    assert_eq!(
        "Anthropic".parse::<ProviderKind>().unwrap(),
        ProviderKind::Anthropic
    );
    assert_eq!(
        "generic".parse::<ProviderKind>().unwrap(),
        ProviderKind::Generic
    );
    assert!("bedrock".parse::<ProviderKind>().is_err());
    assert_eq!(ProviderKind::OpenAi.wire_format(), Some(WireFormat::OpenAi));
    assert_eq!(
        ProviderKind::AzureOpenAi.wire_format(),
        Some(WireFormat::OpenAi)
    );
    assert_eq!(
        ProviderKind::Anthropic.wire_format(),
        Some(WireFormat::Anthropic)
    );
    assert_eq!(
        ProviderKind::Generic.wire_format(),
        Some(WireFormat::Generic)
    );
}
