//! What the OpenAI client tests share: the key, a client with fast
//! retries, batch metadata, a batch object as the API returns it, and a
//! server that answers a script.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use batch_api::{BatchMeta, OpenAiClient};
use serde_json::{json, Value};

use super::{fast_retry, timeouts};

pub const KEY: &str = "sk-proj-TOPSECRET-abcdef123456";

pub fn meta(n: u32) -> BatchMeta {
    BatchMeta {
        pipeline: "reviews".into(),
        batch_number: format!("reviews-0-{n}"),
        attempt: 1,
    }
}

pub fn client(base: &str) -> OpenAiClient {
    OpenAiClient::new(
        &format!("{base}/v1"),
        Some(KEY.into()),
        "/v1/chat/completions",
        timeouts(),
    )
    .unwrap()
    .with_retry(fast_retry())
}

pub fn batch_json(id: &str, status: &str, created_at: i64, meta: Option<&BatchMeta>) -> Value {
    json!({
        "id": id, "object": "batch", "endpoint": "/v1/chat/completions", "errors": null,
        "input_file_id": "file-in", "completion_window": "24h", "status": status,
        "output_file_id": if status == "completed" { json!("file-out") } else { Value::Null },
        "error_file_id": "",
        "created_at": created_at, "request_counts": {"total": 2, "completed": 1, "failed": 1},
        "metadata": meta.map(|m| json!({"mlpredict_pipeline": m.pipeline, "batch_number": m.batch_number, "attempt": m.attempt.to_string()})),
    })
}

/// A server answering `script[i]` to the i-th call of any route (the last
/// entry repeats), counting calls.
/// (status, headers, body) per call.
pub type Script = Vec<(u16, Vec<(&'static str, String)>, Value)>;

pub fn scripted(script: Script) -> (Router, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let script = Arc::new(script);
    let handler = move |headers: HeaderMap| {
        let c = c.clone();
        let script = script.clone();
        async move {
            let i = c.fetch_add(1, Ordering::SeqCst);
            let (status, hdrs, body) = script[i.min(script.len() - 1)].clone();
            let mut body = body;
            // Echo the auth header into error messages, like a careless server.
            if let Some(e) = body.get_mut("error").and_then(|e| e.get_mut("message")) {
                let auth = headers
                    .get("authorization")
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default();
                *e = json!(format!("{} (auth: {auth})", e.as_str().unwrap()));
            }
            let mut resp: Response =
                (StatusCode::from_u16(status).unwrap(), Json(body)).into_response();
            for (k, v) in hdrs {
                resp.headers_mut().insert(k, v.parse().unwrap());
            }
            resp
        }
    };
    let router = Router::new()
        .route("/v1/batches", post(handler.clone()).get(handler.clone()))
        .route("/v1/batches/{id}", get(handler.clone()))
        .route("/v1/batches/{id}/cancel", post(handler.clone()))
        .route("/v1/files/{id}/content", get(handler.clone()))
        .route("/v1/files/{id}", axum::routing::delete(handler.clone()))
        .route("/v1/files", post(handler));
    (router, count)
}

pub fn err_body(code: &str, msg: &str) -> Value {
    json!({"error": {"message": msg, "type": "invalid_request_error", "param": null, "code": code}})
}
