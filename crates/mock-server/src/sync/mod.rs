//! Synchronous `POST /v1/chat/completions` and `POST /v1/embeddings`
//! answered by the same fake model, with `--sync-latency` and `--rpm`.

use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::engine::body::{sync_request, Endpoint};
use crate::engine::model::Outcome;
use crate::engine::store::Shared;
use crate::http::common::{with_request_id, SYNC_SEQ};
use crate::http::error::{ApiError, ApiResult};
use crate::http::layers::check_rpm;
use crate::openai::wire::{ChatCompletion, EmbeddingList};
use crate::util::{base64, h64, unix_now};

#[derive(Deserialize, Default)]
struct Extras {
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
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
