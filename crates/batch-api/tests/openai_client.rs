//! OpenAiClient against throwaway axum servers: the happy path of every
//! call, and the failure classes and retry rules.

mod common;

use std::sync::{Arc, Mutex};

use axum::extract::{Multipart, Path as AxPath, Query};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use batch_api::wire::{parse_result_line, split_lines, Outcome, Task, WireFormat};
use batch_api::{BatchApi, ErrorClass, RemoteStatus, RequestCounts};
use common::openai::*;
use common::*;
use serde_json::{json, Value};

#[derive(Default)]
struct Seen {
    upload: Option<(String, String, Vec<u8>, String)>, // purpose, filename, bytes, auth
    create: Option<Value>,
    list_queries: Vec<(Option<String>, Option<String>)>,
    deleted: Vec<String>,
}

const OUTPUT: &str = concat!(
    r#"{"id":"batch_req_1","custom_id":"l-1","response":{"status_code":200,"request_id":"r1","body":{"choices":[{"index":0,"message":{"role":"assistant","content":"Positive"}}],"usage":{"total_tokens":9}}},"error":null}"#,
    "\n",
    r#"{"id":"batch_req_2","custom_id":"l-2","response":{"status_code":500,"request_id":"r2","body":{"error":{"message":"oops","type":"server_error","param":null,"code":null}}},"error":null}"#,
    "\n"
);

fn fake_openai(seen: Arc<Mutex<Seen>>) -> Router {
    let s1 = seen.clone();
    let s2 = seen.clone();
    let s3 = seen.clone();
    let s4 = seen.clone();
    Router::new()
        .route(
            "/v1/files",
            post(move |headers: HeaderMap, mut mp: Multipart| async move {
                let (mut purpose, mut name, mut bytes) = (String::new(), String::new(), Vec::new());
                while let Some(f) = mp.next_field().await.unwrap() {
                    match f.name().unwrap() {
                        "purpose" => purpose = f.text().await.unwrap(),
                        "file" => {
                            name = f.file_name().unwrap().to_owned();
                            bytes = f.bytes().await.unwrap().to_vec();
                        }
                        other => panic!("unexpected field {other}"),
                    }
                }
                let auth = headers["authorization"].to_str().unwrap().to_owned();
                let len = bytes.len();
                s1.lock().unwrap().upload = Some((purpose, name.clone(), bytes, auth));
                Json(json!({"id": "file-in", "object": "file", "bytes": len, "created_at": 1, "filename": name, "purpose": "batch", "status": "processed"}))
            }),
        )
        .route(
            "/v1/batches",
            post(move |Json(body): Json<Value>| async move {
                let m = body["metadata"].clone();
                s2.lock().unwrap().create = Some(body);
                let mut b = batch_json("batch_new", "validating", 1_700_000_000, None);
                b["metadata"] = m;
                Json(b)
            })
            .get(move |Query(q): Query<std::collections::HashMap<String, String>>| async move {
                let after = q.get("after").cloned();
                s3.lock().unwrap().list_queries.push((after.clone(), q.get("limit").cloned()));
                // Newest first: batch_5 (t=500) … batch_1 (t=100); two per page.
                let all: Vec<Value> = (1..=5)
                    .rev()
                    .map(|i| batch_json(&format!("batch_{i}"), "in_progress", i * 100, Some(&meta(i as u32))))
                    .collect();
                let start = match &after {
                    None => 0,
                    Some(a) => all.iter().position(|b| b["id"] == a.as_str()).unwrap() + 1,
                };
                let page: Vec<Value> = all.iter().skip(start).take(2).cloned().collect();
                let has_more = start + 2 < all.len();
                Json(json!({"object": "list", "data": page, "first_id": page.first().map(|b| b["id"].clone()),
                            "last_id": page.last().map(|b| b["id"].clone()), "has_more": has_more}))
            }),
        )
        .route(
            "/v1/batches/{id}",
            get(|AxPath(id): AxPath<String>| async move {
                if id == "batch_gone" {
                    return (StatusCode::NOT_FOUND, Json(json!({"error": {"message": "No batch found with id 'batch_gone'.", "type": "invalid_request_error", "param": null, "code": null}}))).into_response();
                }
                Json(batch_json(&id, "completed", 1_700_000_000, Some(&meta(7)))).into_response()
            }),
        )
        .route(
            "/v1/batches/{id}/cancel",
            post(|AxPath(id): AxPath<String>| async move { Json(batch_json(&id, "cancelling", 1, None)) }),
        )
        .route("/v1/files/{id}/content", get(|| async { OUTPUT }))
        .route(
            "/v1/files/{id}",
            axum::routing::delete(move |AxPath(id): AxPath<String>| async move {
                s4.lock().unwrap().deleted.push(id.clone());
                if id == "file-in" {
                    Json(json!({"id": id, "object": "file", "deleted": true})).into_response()
                } else {
                    (StatusCode::NOT_FOUND, Json(json!({"error": {"message": "No such File object", "type": "invalid_request_error", "code": null}}))).into_response()
                }
            }),
        )
}

#[tokio::test]
async fn happy_path() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let base = serve(fake_openai(seen.clone())).await;
    let c = client(&base);
    assert_eq!(c.name(), "openai");
    let dir = tempfile::tempdir().unwrap();

    // Upload streams the file.
    let path = dir.path().join("batch-1.requests.jsonl");
    let content: Vec<u8> = (0..3000)
        .flat_map(|i| format!("{{\"custom_id\":\"l-{i}\"}}\n").into_bytes())
        .collect();
    std::fs::write(&path, &content).unwrap();
    let file_id = c.upload(&path, "batch-1.jsonl").await.unwrap();
    assert_eq!(file_id.as_deref(), Some("file-in"));
    {
        let s = seen.lock().unwrap();
        let (purpose, name, bytes, auth) = s.upload.as_ref().unwrap();
        assert_eq!(purpose, "batch");
        assert_eq!(name, "batch-1.jsonl");
        assert_eq!(bytes, &content);
        assert_eq!(auth, &format!("Bearer {KEY}"));
    }

    // Create sends our metadata and reads it back.
    let b = c.create(file_id.as_deref(), &path, &meta(3)).await.unwrap();
    assert_eq!(b.id, "batch_new");
    assert_eq!(b.status, RemoteStatus::Validating);
    assert_eq!(b.meta, Some(meta(3)));
    assert_eq!(b.error_file, None);
    let body = seen.lock().unwrap().create.clone().unwrap();
    assert_eq!(
        body,
        json!({"input_file_id": "file-in", "endpoint": "/v1/chat/completions", "completion_window": "24h",
               "metadata": {"mlpredict_pipeline": "reviews", "batch_number": "reviews-0-3", "attempt": "1"}})
    );

    // Get.
    let b = c.get("batch_9").await.unwrap();
    assert_eq!(b.status, RemoteStatus::Completed);
    assert_eq!(b.output_file.as_deref(), Some("file-out"));
    assert_eq!(b.error_file, None, "\"\" error_file_id");
    assert_eq!(
        b.counts,
        Some(RequestCounts {
            total: 2,
            completed: 1,
            failed: 1
        })
    );

    // Download, then parse the lines.
    let dest = dir.path().join("out.jsonl");
    std::fs::write(&dest, b"stale content that must go away entirely").unwrap();
    let n = c.download("file-out", &dest).await.unwrap();
    assert_eq!(n, OUTPUT.len() as u64);
    let got = std::fs::read(&dest).unwrap();
    assert_eq!(got, OUTPUT.as_bytes());
    let lines: Vec<_> = split_lines(&got)
        .map(|l| parse_result_line(WireFormat::OpenAi, Task::Chat, l).unwrap())
        .collect();
    assert!(matches!(
        lines[0].outcome,
        Outcome::Ok {
            total_tokens: Some(9),
            ..
        }
    ));
    assert!(matches!(
        lines[1].outcome,
        Outcome::Failed {
            retriable: true,
            ..
        }
    ));

    // List pages and find.
    let p = c.list(None, 2).await.unwrap();
    assert_eq!(
        p.batches.iter().map(|b| b.id.as_str()).collect::<Vec<_>>(),
        ["batch_5", "batch_4"]
    );
    assert_eq!(p.next_after.as_deref(), Some("batch_4"));
    let p = c.list(Some("batch_4"), 2).await.unwrap();
    assert_eq!(p.batches[0].id, "batch_3");
    assert_eq!(
        seen.lock().unwrap().list_queries[1],
        (Some("batch_4".into()), Some("2".into()))
    );
    let found = c.find(&meta(2), 0).await.unwrap().unwrap();
    assert_eq!(found.id, "batch_2");
    // Not found, and listing stops once batches are older than not_before.
    seen.lock().unwrap().list_queries.clear();
    assert_eq!(c.find(&meta(99), 450).await.unwrap(), None);
    assert_eq!(
        seen.lock().unwrap().list_queries.len(),
        1,
        "stopped after the first page"
    );
    assert_eq!(c.find(&meta(99), 0).await.unwrap(), None);

    // Cancel, delete (404 is fine), missing batch.
    assert_eq!(
        c.cancel("batch_9").await.unwrap().status,
        RemoteStatus::Cancelling
    );
    c.delete_file("file-in").await.unwrap();
    c.delete_file("file-gone").await.unwrap();
    assert_eq!(
        seen.lock().unwrap().deleted,
        ["file-in", "file-gone"],
        "404 is not retried"
    );
    let e = c.get("batch_gone").await.unwrap_err();
    assert_eq!(e.class, ErrorClass::NotFound);
    assert_eq!(e.status, Some(404));
}

#[tokio::test]
async fn create_without_file_id_is_refused() {
    let c = client("http://127.0.0.1:9");
    let e = c
        .create(None, std::path::Path::new("/nonexistent"), &meta(1))
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Permanent);
}

#[tokio::test]
async fn upload_of_a_missing_file_is_permanent() {
    let c = client("http://127.0.0.1:9");
    let e = c
        .upload(std::path::Path::new("/nonexistent/x.jsonl"), "x.jsonl")
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Permanent);
    assert!(e.message.contains("nonexistent"), "{}", e.message);
}

#[tokio::test]
async fn big_download_streams_to_disk() {
    let big: Arc<Vec<u8>> = Arc::new(
        (0..200_000)
            .flat_map(|i| {
                format!("{{\"custom_id\":\"l-{i}\",\"output\":\"xxxxxxxx\"}}\n").into_bytes()
            })
            .collect(),
    );
    let b2 = big.clone();
    let router = Router::new().route(
        "/v1/files/{id}/content",
        get(move || async move { b2.as_ref().clone() }),
    );
    let base = serve(router).await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("big.jsonl");
    let n = client(&base).download("file-big", &dest).await.unwrap();
    assert_eq!(n, big.len() as u64);
    assert_eq!(std::fs::read(&dest).unwrap(), *big);
    assert_eq!(client(&base).fetch("file-big").await.unwrap(), *big);
}

#[tokio::test]
async fn unknown_fields_and_odd_values_are_tolerated() {
    let (router, _) = scripted(vec![(
        200,
        vec![],
        json!({"id": "batch_x", "status": "finalizing", "output_file_id": "", "error_file_id": null,
               "created_at": 1.7e9, "request_counts": {"total": "10", "completed": 9}, "usage": null,
               "errors": {"object": "list", "data": []}, "brand_new": {"x": [1]}, "metadata": {"k": "v"}}),
    )]);
    let base = serve(router).await;
    let b = client(&base).get("batch_x").await.unwrap();
    assert_eq!(b.status, RemoteStatus::Finalizing);
    assert_eq!(b.output_file, None);
    assert_eq!(b.created_at, Some(1_700_000_000));
    assert_eq!(
        b.counts,
        Some(RequestCounts {
            total: 10,
            completed: 9,
            failed: 0
        })
    );
    assert_eq!(b.meta, None);
}

#[tokio::test]
async fn key_in_a_custom_header() {
    let router = Router::new().route(
        "/v1/batches/{id}",
        get(|headers: HeaderMap| async move {
            assert!(headers.get("authorization").is_none());
            assert_eq!(headers["api-key"], KEY);
            Json(batch_json("batch_1", "validating", 1, None))
        }),
    );
    let base = serve(router).await;
    let c = client(&base).with_key_header("Api-Key").unwrap();
    assert_eq!(
        c.get("batch_1").await.unwrap().status,
        RemoteStatus::Validating
    );
    assert!(client(&base).with_key_header("bad header").is_err());
}
