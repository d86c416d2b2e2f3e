//! Anthropic Message Batches (PROVIDERS.md §6) under `/v1/messages/batches`:
//! create, retrieve, list, results, cancel, delete. Errors use Anthropic's
//! envelope `{"type":"error","error":{"type","message"}}`.
//!
//! - Create checks the shape at once (400): `requests` a non-empty array of
//!   at most 100,000 `{custom_id, params}` with unique custom_ids matching
//!   `^[a-zA-Z0-9_-]{1,64}$`; a body over 256 MB is 413. `params` are checked
//!   while processing: bad ones become `errored` results, like the real API.
//! - The token-limit fault becomes a 429 `rate_limit_error` at create (the
//!   queue limit; nothing is created), since a message batch never fails as
//!   a whole.
//! - A batch is `in_progress`, then `ended` (expire fault: half the requests
//!   `expired`); cancel → `canceling` → `ended` with unprocessed requests
//!   `canceled`. Request counts stay `processing` until the end.

use std::collections::HashSet;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::engine::batch::{Batch, Fate};
use crate::engine::body::read_anthropic_params;
use crate::engine::faults::Kind;
use crate::engine::input::{Flavor, MAX_TASKS_ANTHROPIC};
use crate::engine::model::{run, Outcome, Req};
use crate::engine::store::Shared;
use crate::http::common::{base_from, parse_limit, with_request_id, SYNC_SEQ};
use crate::http::error::{ApiError, ApiResult, Style};
use crate::http::layers::{check_rpm, maybe_lose_styled, rate_limited, ConnKill};
use crate::util::{base_url_of, h64, tag_of};

mod render;
use render::{anthropic_status, message_batch_json, message_json};

/// Largest create body the real API accepts.
pub(crate) const MAX_BODY_BYTES: usize = 256 * 1000 * 1000;

/// Anthropic: every call names the API version.
pub(crate) async fn anthropic_version(req: Request, next: Next) -> Response {
    let ok = req
        .headers()
        .get("anthropic-version")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.trim().is_empty());
    if !ok {
        return ApiError::invalid("anthropic-version: header is required")
            .anthropic()
            .into_response();
    }
    next.run(req).await
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::invalid(message).anthropic()
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("Message Batch '{id}' not found.")).anthropic()
}

#[derive(Deserialize)]
struct CreateBody<'a> {
    #[serde(borrow)]
    requests: Option<Vec<&'a RawValue>>,
}

#[derive(Deserialize)]
struct RequestShape<'a> {
    #[serde(borrow, default)]
    custom_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
}

fn valid_custom_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

pub(crate) async fn create(
    State(st): State<Shared>,
    kill: Option<Extension<ConnKill>>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request_too_large",
                "Request exceeds the maximum allowed number of bytes.",
            )
            .anthropic()
        } else {
            invalid(format!("Invalid request body: {e}"))
        }
    })?;
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            "Request exceeds the maximum allowed number of bytes.",
        )
        .anthropic());
    }
    let parsed: CreateBody = serde_json::from_slice(&body).map_err(|e| {
        invalid(format!(
            "There was an error parsing the body of your request: {e}"
        ))
    })?;
    let requests = parsed
        .requests
        .ok_or_else(|| invalid("requests: Field required"))?;
    if requests.is_empty() {
        return Err(invalid(
            "requests: List should have at least 1 item after validation, not 0",
        ));
    }
    if requests.len() > MAX_TASKS_ANTHROPIC {
        return Err(invalid(format!(
            "requests: List should have at most {MAX_TASKS_ANTHROPIC} items after validation, not {}",
            requests.len()
        )));
    }
    let mut ids: HashSet<&str> = HashSet::with_capacity(requests.len());
    let mut tags: Option<Option<&str>> = None;
    let mut lines = Vec::with_capacity(body.len());
    for (i, raw) in requests.iter().enumerate() {
        let shape: RequestShape = serde_json::from_str(raw.get())
            .map_err(|_| invalid(format!("requests.{i}: Input should be a valid dictionary")))?;
        let id: &str = shape
            .custom_id
            .and_then(|r| serde_json::from_str::<&str>(r.get()).ok())
            .ok_or_else(|| invalid(format!("requests.{i}.custom_id: Field required")))?;
        if !valid_custom_id(id) {
            return Err(invalid(format!(
                "requests.{i}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'"
            )));
        }
        if !ids.insert(id) {
            return Err(invalid(format!(
                "requests.{i}.custom_id: Duplicate custom_id '{id}'. Each request in a batch must have a unique custom_id."
            )));
        }
        if !shape.params.is_some_and(|p| p.get().starts_with('{')) {
            return Err(invalid(format!("requests.{i}.params: Field required")));
        }
        // One batch tag for the whole batch, or none.
        let tag = tag_of(id);
        tags = Some(match tags {
            None => tag,
            Some(t) if t == tag => t,
            Some(_) => None,
        });
        lines.extend_from_slice(raw.get().as_bytes());
        lines.push(b'\n');
    }
    if st.faults.roll(Kind::TokenLimit) {
        st.stats.fault("token_limit");
        let mut e = rate_limited(st.cfg.retry_after, "message batches").anthropic();
        e.message =
            "Number of request tokens in the batch queue exceeds your organization's limit. \
                     Please try again once some in-progress batches have ended."
                .into();
        return Err(e);
    }
    let fate = Fate {
        token_limit: false,
        expire: st.faults.roll(Kind::Expire),
    };
    let tag = tags.flatten().map(str::to_owned);
    let n = requests.len() as u64;
    let base_url = base_url_of(st.addr);
    let obj = {
        let mut store = st.lock();
        store.seq += 1;
        let seq = store.seq;
        let id = st.ids.base62("msgbatch_", seq);
        let mut batch = Batch::new(
            id.clone(),
            seq,
            Flavor::Anthropic,
            render::results,
            String::new(),
            Some(Bytes::from(lines)),
            None,
            fate,
        );
        batch.total = n;
        st.stats.created_message_batch(tag.as_deref());
        let obj = message_batch_json(&batch, &base_url);
        store.batches.insert(id.clone(), batch);
        store.message_batch_order.push(id);
        obj
    };
    tracing::debug!(id = %obj["id"], requests = n, "message batch created");
    Ok(maybe_lose_styled(
        &st,
        kill.map(|Extension(k)| k),
        Json(obj).into_response(),
        Style::Anthropic,
    )
    .await)
}

fn is_message_batch(b: &Batch) -> bool {
    b.flavor == Flavor::Anthropic
}

pub(crate) async fn retrieve(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let base = base_from(&headers, &st);
    st.with_batch(&id, |b, _| {
        is_message_batch(b).then(|| message_batch_json(b, &base))
    })
    .flatten()
    .map(Json)
    .ok_or_else(|| not_found(&id))
}

pub(crate) async fn results(
    State(st): State<Shared>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let res = st.with_batch(&id, |b, _| {
        is_message_batch(b).then(|| (b.results.clone(), anthropic_status(b)))
    });
    match res.flatten() {
        None => Err(not_found(&id)),
        Some((Some(bytes), _)) => {
            Ok(([(CONTENT_TYPE, "application/binary")], bytes).into_response())
        }
        Some((None, status)) => Err(invalid(format!(
            "Message Batch '{id}' has not ended processing yet (processing_status: {status}); results are available once it has ended."
        ))),
    }
}

pub(crate) async fn cancel(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let base = base_from(&headers, &st);
    let now = Instant::now();
    let res = st.with_batch(&id, |b, env| {
        if !is_message_batch(b) {
            return None;
        }
        if anthropic_status(b) == "ended" {
            return Some(Err(invalid(format!(
                "Message Batch '{id}' has already ended and cannot be canceled."
            ))));
        }
        Some(
            b.cancel(now, env.cfg)
                .map(|()| message_batch_json(b, &base))
                .map_err(|s| ApiError::cannot_cancel(s.as_str()).anthropic()),
        )
    });
    match res.flatten() {
        None => Err(not_found(&id)),
        Some(r) => r.map(Json),
    }
}

pub(crate) async fn delete(
    State(st): State<Shared>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let status = st
        .with_batch(&id, |b, _| is_message_batch(b).then(|| anthropic_status(b)))
        .flatten()
        .ok_or_else(|| not_found(&id))?;
    if status != "ended" {
        return Err(invalid(format!(
            "Message Batch '{id}' cannot be deleted while it is processing; cancel it first."
        )));
    }
    let mut store = st.lock();
    store.batches.remove(&id);
    store.message_batch_order.retain(|x| x != &id);
    Ok(Json(json!({"id": id, "type": "message_batch_deleted"})))
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    after_id: Option<String>,
    before_id: Option<String>,
    limit: Option<String>,
}

/// Newest first; `after_id` pages to older batches, `before_id` to newer.
pub(crate) async fn list(
    State(st): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let limit = parse_limit(q.limit.as_deref(), 20, 1000).map_err(ApiError::anthropic)?;
    let base = base_from(&headers, &st);
    let now = Instant::now();
    let mut guard = st.lock();
    let store = &mut *guard;
    let newest_first: Vec<&String> = store.message_batch_order.iter().rev().collect();
    let (ids, has_more): (Vec<String>, bool) = match (&q.after_id, &q.before_id) {
        (Some(_), Some(_)) => {
            return Err(invalid("Only one of after_id and before_id may be given."))
        }
        (None, Some(before)) => {
            let Some(at) = newest_first.iter().position(|x| *x == before) else {
                return Ok(Json(empty_page()));
            };
            let start = at.saturating_sub(limit);
            let ids = newest_first[start..at]
                .iter()
                .map(|s| (*s).clone())
                .collect();
            (ids, start > 0)
        }
        (after, None) => {
            let start = match after {
                None => 0,
                Some(a) => match newest_first.iter().position(|x| *x == a) {
                    Some(i) => i + 1,
                    None => return Ok(Json(empty_page())),
                },
            };
            let end = (start + limit).min(newest_first.len());
            let ids = newest_first[start..end]
                .iter()
                .map(|s| (*s).clone())
                .collect();
            (ids, end < newest_first.len())
        }
    };
    let data = st.advance_each(store, &ids, now, |b, _| message_batch_json(b, &base));
    Ok(Json(json!({
        "data": data,
        "has_more": has_more,
        "first_id": ids.first(),
        "last_id": ids.last(),
    })))
}

fn empty_page() -> Value {
    json!({"data": [], "has_more": false, "first_id": null, "last_id": null})
}

/// Synchronous `POST /v1/messages`: one Messages request answered by the
/// fake model (`--sync-latency`, `--rpm` apply), as a Message object.
pub(crate) async fn message(
    State(st): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let raw: &RawValue = serde_json::from_slice(&body).map_err(|e| {
        invalid(format!(
            "There was an error parsing the body of your request: {e}"
        ))
    })?;
    let (model, req) = read_anthropic_params(Some(raw));
    if let Req::Invalid { message, .. } = &req {
        return Err(invalid(message.replace("params: ", "")));
    }
    let model = model.into_owned();
    check_rpm(&st, &model).map_err(ApiError::anthropic)?;
    if !st.cfg.sync_latency.is_zero() {
        tokio::time::sleep(st.cfg.sync_latency).await;
    }
    let Outcome::Chat {
        reply,
        prompt,
        completion,
    } = run(&model, &req)
    else {
        unreachable!("a valid messages request yields a chat outcome")
    };
    let custom_id = headers
        .get("x-client-request-id")
        .and_then(|v| v.to_str().ok());
    st.stats.sync_answered("", custom_id);
    let seq = SYNC_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let id = format!("msg_{:016x}", h64(&[b"msg", &seq.to_le_bytes()]));
    let msg = message_json(id, &model, &reply, prompt, completion, "standard");
    Ok(with_request_id(Json(msg).into_response(), seq))
}
