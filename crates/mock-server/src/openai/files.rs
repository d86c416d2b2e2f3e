//! `/v1/files`: upload, list, retrieve, content, delete.

use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use crate::engine::files::FileObject;
use crate::engine::store::Shared;
use crate::http::common::{multipart_error, page, parse_limit, read_capped};
use crate::http::error::{ApiError, ApiResult};

const PURPOSES: &[&str] = &[
    "assistants",
    "batch",
    "fine-tune",
    "vision",
    "user_data",
    "evals",
];

pub(crate) async fn upload(
    State(st): State<Shared>,
    mp: Result<Multipart, MultipartRejection>,
) -> ApiResult<Json<FileObject>> {
    let mut mp = mp.map_err(multipart_error)?;
    let (mut purpose, mut file, mut ttl) = (None, None, None);
    while let Some(field) = mp.next_field().await.map_err(multipart_error)? {
        match field.name().unwrap_or("") {
            "purpose" => purpose = Some(field.text().await.map_err(multipart_error)?),
            "file" => {
                let name = field.file_name().unwrap_or("upload").to_owned();
                file = Some((name, read_capped(field, st.cfg.max_file_bytes).await?));
            }
            "expires_after[anchor]" => {
                let anchor = field.text().await.map_err(multipart_error)?;
                if anchor != "created_at" {
                    return Err(ApiError::invalid(format!(
                        "Invalid value: '{anchor}'. Supported values are: 'created_at'."
                    ))
                    .param("expires_after.anchor")
                    .code("invalid_value"));
                }
            }
            "expires_after[seconds]" => {
                let text = field.text().await.map_err(multipart_error)?;
                let secs: i64 = text.trim().parse().unwrap_or(-1);
                if !(3600..=2_592_000).contains(&secs) {
                    return Err(ApiError::invalid(format!(
                        "Invalid 'expires_after.seconds': expected an integer between 3600 and 2592000, got '{text}'."
                    ))
                    .param("expires_after.seconds"));
                }
                ttl = Some(secs);
            }
            _ => {}
        }
    }
    let purpose = purpose.ok_or_else(|| ApiError::missing("purpose"))?;
    if !PURPOSES.contains(&purpose.as_str()) {
        return Err(ApiError::invalid(format!(
            "'{purpose}' is not one of ['fine-tune', 'assistants', 'batch', 'user_data', 'vision', 'evals'] - 'purpose'"
        ))
        .param("purpose")
        .code("invalid_value"));
    }
    let (filename, bytes) = file.ok_or_else(|| ApiError::missing("file"))?;
    if purpose == "batch" && !filename.ends_with(".jsonl") {
        return Err(ApiError::invalid(
            "Invalid file format for Batch API. Must be .jsonl",
        ));
    }
    let obj = st.lock().files.add(&st.ids, filename, &purpose, bytes, ttl);
    st.stats.file_uploaded();
    tracing::debug!(id = %obj.id, bytes = obj.bytes, "file uploaded");
    Ok(Json(obj))
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    purpose: Option<String>,
    limit: Option<String>,
    after: Option<String>,
    order: Option<String>,
}

pub(crate) async fn list(
    State(st): State<Shared>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    let limit = parse_limit(q.limit.as_deref(), 10_000, 10_000)?;
    let asc = match q.order.as_deref() {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(o) => {
            return Err(ApiError::invalid(format!(
                "Invalid value: '{o}'. Supported values are: 'asc' and 'desc'."
            ))
            .param("order")
            .code("invalid_value"))
        }
    };
    let store = st.lock();
    let files = &store.files;
    let keep = |id: &&String| {
        q.purpose
            .as_deref()
            .is_none_or(|p| files.map[*id].obj.purpose == p)
    };
    let (ids, has_more) = if asc {
        page(files.order.iter().filter(keep), q.after.as_deref(), limit)
    } else {
        page(
            files.order.iter().rev().filter(keep),
            q.after.as_deref(),
            limit,
        )
    };
    let data: Vec<&FileObject> = ids.iter().map(|id| &files.map[id].obj).collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "first_id": ids.first(),
        "last_id": ids.last(),
        "has_more": has_more,
    }))
    .into_response())
}

pub(crate) async fn retrieve(
    State(st): State<Shared>,
    Path(id): Path<String>,
) -> ApiResult<Json<FileObject>> {
    let store = st.lock();
    let entry = store
        .files
        .map
        .get(&id)
        .ok_or_else(|| ApiError::no_such_file(&id))?;
    Ok(Json(entry.obj.clone()))
}

pub(crate) async fn content(
    State(st): State<Shared>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let bytes = {
        let store = st.lock();
        store
            .files
            .map
            .get(&id)
            .ok_or_else(|| ApiError::no_such_file(&id))?
            .bytes
            .clone()
    };
    Ok(([(CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

pub(crate) async fn delete(
    State(st): State<Shared>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    if !st.lock().files.remove(&id) {
        return Err(ApiError::no_such_file(&id));
    }
    Ok(Json(json!({"id": id, "object": "file", "deleted": true})).into_response())
}
