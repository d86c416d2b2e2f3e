//! Synchronous `POST /v1/chat/completions` and `POST /v1/embeddings`
//! answered by the same fake model, with `--sync-latency` and `--rpm`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::rate_limited;
use crate::error::{ApiError, ApiResult};
use crate::fake::{ChatCompletion, EmbeddingList};
use crate::request::{sync_request, Endpoint};
use crate::store::Shared;
use crate::tasks::Outcome;
use crate::util::{base64, h64, unix_now};

pub(crate) static SYNC_SEQ: AtomicU64 = AtomicU64::new(0);

#[derive(Deserialize, Default)]
struct Extras {
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
}

/// Sliding one-minute window of accepted requests.
pub(crate) fn check_rpm(st: &Shared, model: &str) -> ApiResult<()> {
    let Some(rpm) = st.cfg.rpm else { return Ok(()) };
    let now = Instant::now();
    let mut window = st.rpm_window.lock().expect("rpm lock");
    while window
        .front()
        .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
    {
        window.pop_front();
    }
    if window.len() >= rpm as usize {
        let oldest = *window.front().expect("window is full");
        let wait = Duration::from_secs(60).saturating_sub(now.duration_since(oldest));
        st.stats.fault("rpm_limit");
        let mut err = rate_limited(wait, model);
        err.message = format!(
            "Rate limit reached for {model} in organization org-mock on requests per min (RPM): Limit {rpm}, \
             Used {rpm}, Requested 1. Please try again in {}ms. Visit \
             https://platform.openai.com/account/rate-limits to learn more.",
            wait.as_millis().max(1)
        );
        return Err(err);
    }
    window.push_back(now);
    Ok(())
}

/// Parses, rate-limits, waits, and counts one synchronous request.
async fn answer(
    st: &Shared,
    headers: &HeaderMap,
    endpoint: Endpoint,
    body: &[u8],
) -> ApiResult<(String, Outcome, Extras)> {
    let (model, outcome) = sync_request(endpoint, body).map_err(|e| {
        if e.code == "invalid_json" {
            return ApiError::bad_json();
        }
        let param = e
            .param
            .as_deref()
            .map(|p| p.trim_start_matches("body.").to_owned());
        let mut err = ApiError::invalid(
            e.message
                .replace(" in the Batch API", " by the mock server"),
        );
        err.param = param;
        err
    })?;
    if let Outcome::Error { message, param, .. } = &outcome {
        let mut err = ApiError::invalid(message.clone());
        err.param = param.map(str::to_owned);
        return Err(err);
    }
    let extras: Extras = serde_json::from_slice(body).unwrap_or_default();
    check_rpm(st, &model)?;
    if !st.cfg.sync_latency.is_zero() {
        tokio::time::sleep(st.cfg.sync_latency).await;
    }
    let pipeline = extras
        .metadata
        .as_ref()
        .and_then(|m| m.get("mlpredict_pipeline"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let custom_id = headers
        .get("x-client-request-id")
        .and_then(|v| v.to_str().ok());
    st.stats.sync_answered(pipeline, custom_id);
    Ok((model, outcome, extras))
}

pub(crate) fn with_request_id(mut resp: Response, seq: u64) -> Response {
    let id = format!(
        "req_{:016x}{:016x}",
        h64(&[b"sync", &seq.to_le_bytes()]),
        seq
    );
    if let Ok(v) = id.parse() {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

pub(crate) async fn chat(
    State(st): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let (model, outcome, _) = answer(&st, &headers, Endpoint::Chat, &body).await?;
    let Outcome::Chat {
        reply,
        prompt,
        completion,
    } = outcome
    else {
        unreachable!("chat endpoint yields chat outcomes")
    };
    let seq = SYNC_SEQ.fetch_add(1, Ordering::Relaxed);
    let id = format!("chatcmpl-{:016x}", h64(&[b"chatcmpl", &seq.to_le_bytes()]));
    let body = ChatCompletion::new(id, unix_now(), &model, &reply, prompt, completion);
    Ok(with_request_id(Json(body).into_response(), seq))
}

pub(crate) async fn embeddings(
    State(st): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let (model, outcome, extras) = answer(&st, &headers, Endpoint::Embeddings, &body).await?;
    let Outcome::Embedding {
        vectors, tokens, ..
    } = outcome
    else {
        unreachable!("embeddings endpoint yields embedding outcomes")
    };
    let seq = SYNC_SEQ.fetch_add(1, Ordering::Relaxed);
    let resp = if extras.encoding_format.as_deref() == Some("base64") {
        // what the official SDKs ask for by default: little-endian f32s
        let encoded = vectors.iter().map(|v| {
            let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
            base64(&bytes)
        });
        Json(EmbeddingList::new(&model, encoded, tokens)).into_response()
    } else {
        Json(EmbeddingList::new(&model, vectors, tokens)).into_response()
    };
    Ok(with_request_id(resp, seq))
}
