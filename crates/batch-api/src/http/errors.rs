//! Failed calls as [`ApiError`]s: transport failures and non-2xx answers
//! classified (PROVIDERS.md §4), the provider's error envelope read, and
//! the API key scrubbed from what the provider said.

use std::time::SystemTime;

use reqwest::header::HeaderMap;
use reqwest::Response;

use super::{parse_retry_after, Http};
use crate::{ApiError, ErrorClass};

/// The most of an error answer's body that is read.
const MAX_ERROR_BODY: usize = 64 * 1024;

impl Http {
    /// Classify a failure without an HTTP answer.
    pub(crate) fn transport_error(&self, what: &str, e: &reqwest::Error) -> ApiError {
        let (class, kind) = if e.is_builder() {
            (ErrorClass::Permanent, "invalid request")
        } else if e.is_connect() {
            // Nothing was sent: refused, unreachable, DNS, connect timeout.
            (ErrorClass::Transient, "cannot connect")
        } else if e.is_timeout() {
            (ErrorClass::Ambiguous, "timed out")
        } else if e.is_redirect() {
            (ErrorClass::Permanent, "too many redirects")
        } else {
            // Sent, then reset or closed, or the body broke off.
            (ErrorClass::Ambiguous, "connection failed")
        };
        let mut chain = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(err) = source {
            let s = err.to_string();
            if !chain.contains(&s) {
                chain.push_str(": ");
                chain.push_str(&s);
            }
            source = err.source();
        }
        let mut err = ApiError::new(class, self.scrub(&format!("{what}: {kind}: {chain}")));
        err.status = e.status().map(|s| s.as_u16());
        err
    }

    /// Classify a non-2xx answer, reading (a bounded part of) its body.
    pub(crate) async fn status_error(&self, what: &str, mut resp: Response) -> ApiError {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let mut body = Vec::new();
        while body.len() < MAX_ERROR_BODY {
            match resp.chunk().await {
                Ok(Some(c)) => body.extend_from_slice(&c),
                _ => break,
            }
        }
        body.truncate(MAX_ERROR_BODY);
        self.error_from_parts(what, status, &headers, &body, SystemTime::now())
    }

    /// Build the error for an HTTP answer (separate for testing).
    pub(crate) fn error_from_parts(
        &self,
        what: &str,
        status: u16,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> ApiError {
        let should_retry = headers
            .get("x-should-retry")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| match v.trim().to_ascii_lowercase().as_str() {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            });
        let (code, detail) = parse_error_body(body);
        // Only the provider's words are scrubbed: ours hold no key, and a
        // key that looks like a word would mangle them.
        let message = match detail {
            Some(d) => format!("{}: http {status}: {}", what.to_lowercase(), self.scrub(&d)),
            None => format!("{}: http {status}", what.to_lowercase()),
        };
        ApiError {
            class: classify_status(status, should_retry),
            status: Some(status),
            code: code.map(|c| self.scrub(&c)),
            message,
            retry_after: parse_retry_after(headers, now),
        }
    }
}

/// The class of an HTTP error status (PROVIDERS.md §4), adjusted by
/// `x-should-retry`.
pub fn classify_status(status: u16, should_retry: Option<bool>) -> ErrorClass {
    let class = match status {
        429 | 408 | 409 => ErrorClass::Transient,
        404 | 410 => ErrorClass::NotFound,
        500.. => ErrorClass::Ambiguous,
        _ => ErrorClass::Permanent,
    };
    match (should_retry, class) {
        (Some(false), _) => ErrorClass::Permanent,
        (Some(true), ErrorClass::Permanent | ErrorClass::NotFound) => ErrorClass::Transient,
        _ => class,
    }
}

/// `{"error":{"message","type","param","code"}}` → (code or type, message);
/// also `{"error":"…"}`, `{"message"|"detail":"…"}`, or a short text body.
pub(crate) fn parse_error_body(body: &[u8]) -> (Option<String>, Option<String>) {
    fn text(v: &serde_json::Value) -> Option<String> {
        match v {
            serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        let err = v.get("error").unwrap_or(&serde_json::Value::Null);
        if err.is_object() {
            let code = err
                .get("code")
                .and_then(text)
                .or_else(|| err.get("type").and_then(text));
            let message = err.get("message").and_then(text);
            return (code, message);
        }
        if let Some(m) = text(err) {
            return (v.get("code").and_then(text), Some(m));
        }
        let message = v
            .get("message")
            .and_then(text)
            .or_else(|| v.get("detail").and_then(text));
        return (v.get("code").and_then(text), message);
    }
    let t = String::from_utf8_lossy(body);
    let t = t.trim();
    if t.is_empty() {
        (None, None)
    } else {
        let short: String = t.chars().take(300).collect();
        (None, Some(short))
    }
}
