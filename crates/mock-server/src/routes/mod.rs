//! The router and the layers every API call goes through:
//! call tracking → auth → fault injection → handler.

mod anthropic;
mod batches;
mod files;
mod generic;
mod sync;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::Uri;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use crate::error::{ApiError, ApiResult, Style};
use crate::faults::Kind;
use crate::store::Shared;

/// Lets a handler close its connection without answering (lost response).
#[derive(Clone)]
pub(crate) struct ConnKill(pub(crate) Arc<Notify>);

pub(crate) fn router(st: Shared) -> Router {
    let body_limit = usize::try_from(st.cfg.max_file_bytes)
        .unwrap_or(usize::MAX)
        .max(anthropic::MAX_BODY_BYTES)
        .saturating_add(1 << 20);
    // Azure OpenAI: the OpenAI objects under `/openai/...` (dated
    // `api-version` required) and `/openai/v1/...` (none needed).
    let mut azure = Router::new();
    for prefix in ["/openai", "/openai/v1"] {
        azure = azure
            .route(
                &format!("{prefix}/files"),
                post(files::upload).get(files::list),
            )
            .route(
                &format!("{prefix}/files/{{id}}"),
                get(files::retrieve).delete(files::delete),
            )
            .route(
                &format!("{prefix}/files/{{id}}/content"),
                get(files::content),
            )
            .route(
                &format!("{prefix}/batches"),
                post(batches::create).get(batches::list),
            )
            .route(&format!("{prefix}/batches/{{id}}"), get(batches::retrieve))
            .route(
                &format!("{prefix}/batches/{{id}}/cancel"),
                post(batches::cancel),
            );
    }
    // Synchronous calls: per deployment (classic) or with `model` (v1).
    let azure = azure
        .route(
            "/openai/deployments/{deployment}/chat/completions",
            post(sync::chat),
        )
        .route(
            "/openai/deployments/{deployment}/embeddings",
            post(sync::embeddings),
        )
        .route("/openai/v1/chat/completions", post(sync::chat))
        .route("/openai/v1/embeddings", post(sync::embeddings))
        .layer(from_fn(azure_api_version));
    let messages = Router::new()
        .route(
            "/v1/messages/batches",
            post(anthropic::create).get(anthropic::list),
        )
        .route(
            "/v1/messages/batches/{id}",
            get(anthropic::retrieve).delete(anthropic::delete),
        )
        .route("/v1/messages/batches/{id}/results", get(anthropic::results))
        .route("/v1/messages/batches/{id}/cancel", post(anthropic::cancel))
        .route("/v1/messages", post(anthropic::message))
        .layer(from_fn(anthropic_version));
    let api = Router::new()
        .merge(azure)
        .merge(messages)
        .route("/v1/files", post(files::upload).get(files::list))
        .route("/v1/files/{id}", get(files::retrieve).delete(files::delete))
        .route("/v1/files/{id}/content", get(files::content))
        .route("/v1/batches", post(batches::create).get(batches::list))
        .route("/v1/batches/{id}", get(batches::retrieve))
        .route("/v1/batches/{id}/cancel", post(batches::cancel))
        .route("/v1/chat/completions", post(sync::chat))
        .route("/v1/embeddings", post(sync::embeddings))
        .route("/ml/api/batch_predict", post(generic::submit))
        .route("/ml/api/batch/status/{id}", get(generic::status))
        .route("/ml/api/batch/results/{id}", get(generic::results))
        .route("/ml/api/batch/jobs", get(generic::jobs))
        .layer(from_fn_with_state(st.clone(), inject_faults))
        .layer(from_fn_with_state(st.clone(), auth))
        .layer(from_fn_with_state(st.clone(), track))
        .layer(DefaultBodyLimit::max(body_limit));
    api.route("/mock/stats", get(stats))
        .fallback(not_found)
        .with_state(st)
}

async fn stats(State(st): State<Shared>) -> Response {
    Json(st.stats.snapshot()).into_response()
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!(
        "Invalid URL ({} {})",
        req.method(),
        req.uri().path()
    ))
    .style(Style::of_path(req.uri().path()))
}

/// Azure: `api-version` is required on `/openai/...`, optional on
/// `/openai/v1/...`.
async fn azure_api_version(uri: Uri, req: Request, next: Next) -> Response {
    let v1 = uri.path().starts_with("/openai/v1/");
    let given = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .any(|(k, v)| k == "api-version" && !v.is_empty());
    if !v1 && !given {
        return ApiError::invalid(
            "The api-version query parameter (?api-version=) is required for all requests.",
        )
        .code("MissingApiVersionParameter")
        .into_response();
    }
    next.run(req).await
}

/// Anthropic: every call names the API version.
async fn anthropic_version(req: Request, next: Next) -> Response {
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

fn status_class(s: StatusCode) -> &'static str {
    match s.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

async fn track(State(st): State<Shared>, req: Request, next: Next) -> Response {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    st.stats.call(&format!(
        "{} {}",
        req.method(),
        path.as_deref().unwrap_or("unmatched")
    ));
    let resp = next.run(req).await;
    st.stats.status(status_class(resp.status()));
    resp
}

fn given_key(headers: &HeaderMap, style: Style) -> Option<&str> {
    if style == Style::Anthropic {
        // `x-api-key`, or the key as a bearer token (what anthropic-sdk-python
        // 2.x sends).
        if let Some(k) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
            return Some(k);
        }
    }
    if let Some(v) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        return Some(v.strip_prefix("Bearer ").unwrap_or(v).trim());
    }
    // Azure style
    headers.get("api-key").and_then(|v| v.to_str().ok())
}

async fn auth(State(st): State<Shared>, req: Request, next: Next) -> Response {
    let style = Style::of_path(req.uri().path());
    if let (Some(want), Style::Anthropic) = (&st.cfg.api_key, style) {
        let message = match given_key(req.headers(), style) {
            Some(k) if k == want => None,
            Some(_) => Some("invalid x-api-key"),
            None => Some("x-api-key header is required"),
        };
        if let Some(message) = message {
            return ApiError::new(StatusCode::UNAUTHORIZED, "authentication_error", message)
                .anthropic()
                .into_response();
        }
    } else if let Some(want) = &st.cfg.api_key {
        let err = match given_key(req.headers(), style) {
            Some(k) if k == want => None,
            Some(k) => {
                let shown = if k.len() > 8 { format!("{}***{}", &k[..3], &k[k.len() - 4..]) } else { "***".into() };
                Some(format!(
                    "Incorrect API key provided: {shown}. You can find your API key at \
                     https://platform.openai.com/account/api-keys."
                ))
            }
            None => Some(
                "You didn't provide an API key. You need to provide your API key in an Authorization header \
                 using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
                    .to_string(),
            ),
        };
        if let Some(message) = err {
            return ApiError::new(StatusCode::UNAUTHORIZED, "invalid_request_error", message)
                .code("invalid_api_key")
                .into_response();
        }
    }
    next.run(req).await
}

/// A 429 in the real rate-limit envelope with both retry headers.
pub(crate) fn rate_limited(wait: Duration, what: &str) -> ApiError {
    let ms = wait.as_millis().max(1);
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "requests",
        format!(
            "Rate limit reached for {what} in organization org-mock on requests per min (RPM). Please try again \
             in {ms}ms. Visit https://platform.openai.com/account/rate-limits to learn more."
        ),
    )
    .code("rate_limit_exceeded")
    .header("retry-after", secs.to_string())
    .header("retry-after-ms", ms.to_string())
}

async fn inject_faults(State(st): State<Shared>, req: Request, next: Next) -> Response {
    let style = Style::of_path(req.uri().path());
    if st.faults.roll(Kind::RateLimit) {
        st.stats.fault("rate_limit");
        let mut e = rate_limited(st.cfg.retry_after, "requests").style(style);
        if style == Style::Anthropic {
            e.message = "This request would exceed the rate limit for your organization of 50 \
                         requests per minute. For details, refer to: \
                         https://docs.claude.com/en/api/rate-limits."
                .into();
        }
        return e.into_response();
    }
    if st.faults.roll(Kind::ServerError) {
        st.stats.fault("server_error");
        let choices = match style {
            // Anthropic's overloaded answer is 529.
            Style::Anthropic => [500, 529, 503],
            Style::OpenAi => [500, 502, 503],
        };
        let status = choices[st.faults.pick(Kind::ServerError, 3)];
        let status = StatusCode::from_u16(status).expect("valid status");
        let mut e = ApiError::server_error(status).style(style);
        if status.as_u16() == 529 {
            e.message = "Overloaded".into();
        }
        return e.into_response();
    }
    next.run(req).await
}

/// After a create has acted: maybe lose its answer (500, or close the
/// connection unanswered) so the client must find the batch by metadata.
pub(crate) async fn maybe_lose(st: &Shared, kill: Option<ConnKill>, resp: Response) -> Response {
    maybe_lose_styled(st, kill, resp, Style::OpenAi).await
}

/// [`maybe_lose`] answering in `style`'s envelope.
pub(crate) async fn maybe_lose_styled(
    st: &Shared,
    kill: Option<ConnKill>,
    resp: Response,
    style: Style,
) -> Response {
    if !st.faults.roll(Kind::LostResponse) {
        return resp;
    }
    match kill {
        Some(kill) if st.faults.pick(Kind::LostResponse, 2) == 1 => {
            st.stats.fault("lost_response_drop");
            st.stats.status("dropped");
            kill.0.notify_one();
            // the connection task drops this future together with the connection
            std::future::pending::<()>().await;
            unreachable!("a pending future never completes")
        }
        _ => {
            st.stats.fault("lost_response_500");
            ApiError::server_error(StatusCode::INTERNAL_SERVER_ERROR)
                .style(style)
                .into_response()
        }
    }
}

pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(body).map_err(|_| ApiError::bad_json())
}

/// `http://host:port` as the client addressed us (for absolute URLs).
pub(crate) fn base_from(headers: &HeaderMap, st: &Shared) -> String {
    match headers.get("host").and_then(|h| h.to_str().ok()) {
        Some(host) => format!("http://{host}"),
        None => crate::base_url_of(st.addr),
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
