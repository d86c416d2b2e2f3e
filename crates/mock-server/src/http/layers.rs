//! The layers every API call goes through (call tracking → auth → fault
//! injection → handler), and the faults a handler applies itself: a lost
//! answer, the synchronous rate limit.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Notify;

use super::error::{ApiError, ApiResult, Style};
use crate::engine::faults::Kind;
use crate::engine::store::Shared;

/// Lets a handler close its connection without answering (lost response).
#[derive(Clone)]
pub(crate) struct ConnKill(pub(crate) Arc<Notify>);

fn status_class(s: StatusCode) -> &'static str {
    match s.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

pub(crate) async fn track(State(st): State<Shared>, req: Request, next: Next) -> Response {
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

pub(crate) async fn auth(State(st): State<Shared>, req: Request, next: Next) -> Response {
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

pub(crate) async fn inject_faults(State(st): State<Shared>, req: Request, next: Next) -> Response {
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

/// Admits a synchronous request under `--rpm`, or answers the real 429.
pub(crate) fn check_rpm(st: &Shared, model: &str) -> ApiResult<()> {
    let Err(wait) = st.admit_sync() else {
        return Ok(());
    };
    let rpm = st.cfg.rpm.unwrap_or_default();
    let mut err = rate_limited(wait, model);
    err.message = format!(
        "Rate limit reached for {model} in organization org-mock on requests per min (RPM): Limit {rpm}, \
         Used {rpm}, Requested 1. Please try again in {}ms. Visit \
         https://platform.openai.com/account/rate-limits to learn more.",
        wait.as_millis().max(1)
    );
    Err(err)
}
