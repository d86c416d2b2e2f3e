//! Request and response pieces the protocols share: JSON bodies, list
//! paging, absolute URLs, batch metadata, multipart files, request ids.

use std::sync::atomic::AtomicU64;

use axum::extract::multipart::Field;
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::error::{ApiError, ApiResult};
use crate::engine::store::Shared;
use crate::util::{base_url_of, h64};

/// Numbers the synchronous answers (their ids and `x-request-id`).
pub(crate) static SYNC_SEQ: AtomicU64 = AtomicU64::new(0);

pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(body).map_err(|_| ApiError::bad_json())
}

/// `http://host:port` as the client addressed us (for absolute URLs).
pub(crate) fn base_from(headers: &HeaderMap, st: &Shared) -> String {
    match headers.get("host").and_then(|h| h.to_str().ok()) {
        Some(host) => format!("http://{host}"),
        None => base_url_of(st.addr),
    }
}

/// Parses `limit` like the real API: an integer in `lo..=hi`.
pub(crate) fn parse_limit(raw: Option<&str>, default: usize, hi: usize) -> ApiResult<usize> {
    let Some(raw) = raw else { return Ok(default) };
    let n: i64 = raw.parse().map_err(|_| {
        ApiError::invalid(format!(
            "Invalid 'limit': expected an integer, but got '{raw}' instead."
        ))
        .param("limit")
        .code("invalid_type")
    })?;
    if n < 1 {
        return Err(ApiError::invalid(format!(
            "Invalid 'limit': integer below minimum value. Expected a value >= 1, but got {n} instead."
        ))
        .param("limit")
        .code("integer_below_min_value"));
    }
    if n as usize > hi {
        return Err(ApiError::invalid(format!(
            "Invalid 'limit': integer above maximum value. Expected a value <= {hi}, but got {n} instead."
        ))
        .param("limit")
        .code("integer_above_max_value"));
    }
    Ok(n as usize)
}

/// One page of `ids` (newest first) after the cursor `after`.
pub(crate) fn page<'a>(
    ids_newest_first: impl Iterator<Item = &'a String>,
    after: Option<&str>,
    limit: usize,
) -> (Vec<String>, bool) {
    let mut it = ids_newest_first.peekable();
    if let Some(after) = after {
        // skip up to and including the cursor; an unknown cursor yields nothing
        let mut found = false;
        for id in it.by_ref() {
            if id == after {
                found = true;
                break;
            }
        }
        if !found {
            return (Vec::new(), false);
        }
    }
    let page: Vec<String> = it.by_ref().take(limit).cloned().collect();
    let has_more = it.peek().is_some();
    (page, has_more)
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Metadata rules of the real API: ≤ 16 string pairs, keys ≤ 64, values ≤ 512.
pub(crate) fn check_metadata(meta: Option<Value>) -> ApiResult<Option<Map<String, Value>>> {
    let map = match meta {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "Invalid type for 'metadata': expected an object, but got {} instead.",
                json_type(&other)
            ))
            .param("metadata")
            .code("invalid_type"))
        }
    };
    if map.len() > 16 {
        return Err(ApiError::invalid(format!(
            "Invalid 'metadata': too many properties. Expected an object with at most 16 properties, but got an \
             object with {} properties instead.",
            map.len()
        ))
        .param("metadata")
        .code("object_above_max_properties"));
    }
    for (k, v) in &map {
        if k.chars().count() > 64 {
            return Err(ApiError::invalid(format!(
                "Invalid 'metadata': key too long. Expected a key with maximum length 64, but got a key with \
                 length {} instead.",
                k.chars().count()
            ))
            .param("metadata")
            .code("string_above_max_length"));
        }
        let Value::String(s) = v else {
            return Err(ApiError::invalid(format!(
                "Invalid type for 'metadata.{k}': expected a string, but got {} instead.",
                json_type(v)
            ))
            .param(format!("metadata.{k}"))
            .code("invalid_type"));
        };
        if s.chars().count() > 512 {
            return Err(ApiError::invalid(format!(
                "Invalid 'metadata.{k}': string too long. Expected a string with maximum length 512, but got a \
                 string with length {} instead.",
                s.chars().count()
            ))
            .param(format!("metadata.{k}"))
            .code("string_above_max_length"));
        }
    }
    Ok(Some(map))
}

pub(crate) fn multipart_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::invalid(format!("Invalid multipart body: {e}"))
}

/// Reads a file field, refusing more than `max` bytes without buffering them.
pub(crate) async fn read_capped(mut field: Field<'_>, max: u64) -> ApiResult<Bytes> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = field.chunk().await.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::invalid("File is too large.").param("file")
        } else {
            multipart_error(e)
        }
    })? {
        if (buf.len() + chunk.len()) as u64 > max {
            return Err(ApiError::invalid("File is too large.").param("file"));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Sets `x-request-id` of a synchronous answer.
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
