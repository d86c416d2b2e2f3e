//! `/v1/batches`: create, retrieve, cancel, list.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

use super::is_azure;
use super::render::{self, batch_json};
use crate::engine::batch::{Batch, Fate};
use crate::engine::body::{Endpoint, UrlStyle};
use crate::engine::faults::Kind;
use crate::engine::input::Flavor;
use crate::engine::store::Shared;
use crate::http::common::{check_metadata, page, parse_json, parse_limit};
use crate::http::error::{ApiError, ApiResult};
use crate::http::layers::{maybe_lose, ConnKill};

#[derive(Deserialize)]
struct CreateBatch {
    input_file_id: Option<String>,
    endpoint: Option<String>,
    completion_window: Option<String>,
    #[serde(default)]
    metadata: Option<Value>,
}

pub(crate) async fn create(
    State(st): State<Shared>,
    kill: Option<Extension<ConnKill>>,
    uri: Uri,
    body: Bytes,
) -> ApiResult<Response> {
    let azure = is_azure(&uri);
    let req: CreateBatch = parse_json(&body)?;
    let input_file_id = req
        .input_file_id
        .ok_or_else(|| ApiError::missing("input_file_id"))?;
    let endpoint = req.endpoint.ok_or_else(|| ApiError::missing("endpoint"))?;
    let parsed = if azure {
        Endpoint::parse_azure(&endpoint)
    } else {
        Endpoint::parse(&endpoint).map(|e| (e, UrlStyle::V1))
    };
    let (endpoint, style) = parsed.ok_or_else(|| {
        let supported = if azure {
            "'/chat/completions' and '/embeddings'"
        } else {
            "'/v1/chat/completions' and '/v1/embeddings'"
        };
        ApiError::invalid(format!(
            "Invalid value: '{endpoint}'. Supported values are: {supported}."
        ))
        .param("endpoint")
        .code("invalid_value")
    })?;
    let window = req
        .completion_window
        .ok_or_else(|| ApiError::missing("completion_window"))?;
    if window != "24h" {
        return Err(ApiError::invalid(format!(
            "Invalid value: '{window}'. Supported values are: '24h'."
        ))
        .param("completion_window")
        .code("invalid_value"));
    }
    let metadata = check_metadata(req.metadata)?;
    // the real API accepts an unknown file here and fails the batch later
    let fate = Fate {
        token_limit: st.faults.roll(Kind::TokenLimit),
        expire: st.faults.roll(Kind::Expire),
    };
    let now = Instant::now();
    let obj = {
        let mut store = st.lock();
        let input = store.files.map.get(&input_file_id).map(|f| f.bytes.clone());
        store.seq += 1;
        let seq = store.seq;
        let id = st.ids.hex("batch_", seq);
        let batch = Batch::new(
            id.clone(),
            seq,
            Flavor::OpenAi(endpoint, style, azure),
            render::results,
            input_file_id,
            input,
            metadata,
            fate,
        );
        st.stats.created(false, batch.metadata.as_ref());
        let obj = batch_json(&batch, now, &st.cfg);
        store.batches.insert(id.clone(), batch);
        store.batch_order.push(id);
        obj
    };
    tracing::debug!(id = %obj["id"], "batch created");
    Ok(maybe_lose(&st, kill.map(|Extension(k)| k), Json(obj).into_response()).await)
}

fn no_batch(id: &str) -> ApiError {
    ApiError::not_found(format!("No batch found with id '{id}'."))
}

fn is_openai(b: &Batch) -> bool {
    b.flavor.is_openai()
}

pub(crate) async fn retrieve(
    State(st): State<Shared>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let now = Instant::now();
    st.with_batch(&id, |b, env| {
        is_openai(b).then(|| batch_json(b, now, env.cfg))
    })
    .flatten()
    .map(Json)
    .ok_or_else(|| no_batch(&id))
}

pub(crate) async fn cancel(
    State(st): State<Shared>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let now = Instant::now();
    let res = st.with_batch(&id, |b, env| {
        if !is_openai(b) {
            return None;
        }
        Some(
            b.cancel(now, env.cfg)
                .map(|()| batch_json(b, now, env.cfg))
                .map_err(|s| ApiError::cannot_cancel(s.as_str())),
        )
    });
    match res.flatten() {
        None => Err(no_batch(&id)),
        Some(r) => r.map(Json),
    }
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    after: Option<String>,
    limit: Option<String>,
}

pub(crate) async fn list(
    State(st): State<Shared>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let limit = parse_limit(q.limit.as_deref(), 20, 100)?;
    let now = Instant::now();
    let mut guard = st.lock();
    let store = &mut *guard;
    let (ids, has_more) = page(store.batch_order.iter().rev(), q.after.as_deref(), limit);
    let data = st.advance_each(store, &ids, now, |b, cfg| batch_json(b, now, cfg));
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "first_id": ids.first(),
        "last_id": ids.last(),
        "has_more": has_more,
    })))
}
