//! The FLIP's generic protocol (PROVIDERS.md §8) plus our adoption extension:
//!
//! - `POST /ml/api/batch_predict` multipart `file` (lines `{"custom_id",
//!   "input": <chat or embeddings body>}`) and optional text field `metadata`
//!   (a JSON object, same rules as OpenAI batch metadata) → `{"id"}`;
//! - `GET /ml/api/batch/status/{id}` → `{"id","status","results_url"?,"error"?}`;
//! - `GET /ml/api/batch/results/{id}` → JSONL `{"custom_id","output"}` or
//!   `{"custom_id","error":{"code","message","status"}}`;
//! - extension: `GET /ml/api/batch/jobs?limit=&after=` lists jobs newest first
//!   with their metadata, so a client that lost a submit answer can adopt it.

use std::time::Instant;

use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::engine::batch::{Batch, Fate};
use crate::engine::faults::Kind;
use crate::engine::input::Flavor;
use crate::engine::store::Shared;
use crate::http::common::{
    base_from, check_metadata, multipart_error, page, parse_limit, read_capped,
};
use crate::http::error::{ApiError, ApiResult};
use crate::http::layers::{maybe_lose, ConnKill};

mod render;
use render::{generic_status, job_json};

pub(crate) async fn submit(
    State(st): State<Shared>,
    kill: Option<Extension<ConnKill>>,
    mp: Result<Multipart, MultipartRejection>,
) -> ApiResult<Response> {
    let mut mp = mp.map_err(multipart_error)?;
    let (mut file, mut metadata) = (None, None);
    while let Some(field) = mp.next_field().await.map_err(multipart_error)? {
        match field.name().unwrap_or("") {
            "file" => file = Some(read_capped(field, st.cfg.max_file_bytes).await?),
            "metadata" => {
                let text = field.text().await.map_err(multipart_error)?;
                let v: Value = serde_json::from_str(&text).map_err(|_| {
                    ApiError::invalid("Invalid 'metadata': expected a JSON object.")
                        .param("metadata")
                })?;
                metadata = Some(v);
            }
            _ => {}
        }
    }
    let file = file.ok_or_else(|| ApiError::missing("file"))?;
    let metadata = check_metadata(metadata)?;
    let fate = Fate {
        token_limit: st.faults.roll(Kind::TokenLimit),
        expire: st.faults.roll(Kind::Expire),
    };
    let id = {
        let mut store = st.lock();
        store.seq += 1;
        let seq = store.seq;
        let id = st.ids.hex("job_", seq);
        let job = Batch::new(
            id.clone(),
            seq,
            Flavor::Generic,
            render::results,
            String::new(),
            Some(file),
            metadata,
            fate,
        );
        st.stats.created(true, job.metadata.as_ref());
        store.batches.insert(id.clone(), job);
        store.job_order.push(id.clone());
        id
    };
    tracing::debug!(%id, "generic job created");
    Ok(maybe_lose(
        &st,
        kill.map(|Extension(k)| k),
        Json(json!({"id": id})).into_response(),
    )
    .await)
}

fn no_job(id: &str) -> ApiError {
    ApiError::not_found(format!("No job found with id '{id}'."))
}

pub(crate) async fn status(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let base = base_from(&headers, &st);
    st.with_batch(&id, |b, _| {
        (b.flavor == Flavor::Generic).then(|| job_json(b, &base))
    })
    .flatten()
    .map(Json)
    .ok_or_else(|| no_job(&id))
}

pub(crate) async fn results(
    State(st): State<Shared>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let res = st.with_batch(&id, |b, _| {
        (b.flavor == Flavor::Generic).then(|| (b.results.clone(), generic_status(b)))
    });
    match res.flatten() {
        None => Err(no_job(&id)),
        Some((Some(bytes), _)) => {
            Ok(([(CONTENT_TYPE, "application/x-ndjson")], bytes).into_response())
        }
        Some((None, status)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "invalid_request_error",
            format!("Results of job '{id}' are not available (status: {status})."),
        )),
    }
}

#[derive(Deserialize)]
pub(crate) struct JobsQuery {
    after: Option<String>,
    limit: Option<String>,
}

pub(crate) async fn jobs(
    State(st): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<JobsQuery>,
) -> ApiResult<Json<Value>> {
    let base = base_from(&headers, &st);
    let limit = parse_limit(q.limit.as_deref(), 20, 100)?;
    let now = Instant::now();
    let mut guard = st.lock();
    let store = &mut *guard;
    let (ids, has_more) = page(store.job_order.iter().rev(), q.after.as_deref(), limit);
    let data = st.advance_each(store, &ids, now, |b, _| {
        // The status endpoint's object plus the metadata.
        let mut job = job_json(b, &base);
        job["metadata"] = json!(b.metadata);
        job
    });
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "first_id": ids.first(),
        "last_id": ids.last(),
        "has_more": has_more,
    })))
}
