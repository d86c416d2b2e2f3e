//! The shared HTTP layer: one `reqwest::Client` per provider client, auth
//! headers marked sensitive, error classification (PROVIDERS.md §4),
//! `retry-after-ms` / `retry-after` / `x-should-retry`, API key redaction,
//! retries of idempotent calls with exponential backoff and full jitter, and
//! streaming downloads to disk.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};
use reqwest::{Method, RequestBuilder, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{ApiError, ClientTimeouts, ErrorClass};

/// An API key. Its `Debug` never shows it; it is sent in a header marked
/// sensitive, and every error message is scrubbed of it.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Replace every occurrence of the key (any case) in `text`, then
    /// lowercase it.
    pub fn scrub(&self, text: &str) -> String {
        scrub(Some(self), text)
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey([redacted])")
    }
}

const REDACTED: &str = "[redacted]";

/// Lowercase `text` and remove the key from it.
fn scrub(key: Option<&ApiKey>, text: &str) -> String {
    let lower = text.to_lowercase();
    match key {
        // Keys shorter than 4 characters would redact ordinary words.
        Some(k) if k.0.len() >= 4 => lower.replace(&k.0.to_lowercase(), REDACTED),
        _ => lower,
    }
}

/// Retries of idempotent calls inside a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first one included (1 = no retry).
    pub max_attempts: u32,
    /// The first backoff's upper bound; doubles per attempt (full jitter:
    /// the delay is uniform in `[0, min(cap, base·2ⁿ)]`).
    pub base: Duration,
    pub cap: Duration,
    /// A `retry-after` longer than this is not waited for inside the
    /// client: the error is returned with `retry_after` set, for the caller
    /// to schedule.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }
}

/// Exponential backoff with full jitter, as a `backon` backoff.
#[derive(Debug, Clone)]
pub(crate) struct FullJitter {
    policy: RetryPolicy,
    attempt: u32,
}

impl FullJitter {
    pub(crate) fn new(policy: RetryPolicy) -> Self {
        Self { policy, attempt: 0 }
    }

    /// Upper bound of the `n`-th delay (0-based).
    fn bound(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX);
        self.policy.base.saturating_mul(factor).min(self.policy.cap)
    }
}

impl Iterator for FullJitter {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self.attempt + 1 >= self.policy.max_attempts {
            return None;
        }
        let bound = self.bound(self.attempt);
        self.attempt += 1;
        let nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
        Some(Duration::from_nanos(rand::random_range(0..=nanos)))
    }
}

/// How a client authenticates.
#[derive(Debug, Clone, Copy)]
pub(crate) enum AuthStyle {
    /// `Authorization: Bearer <key>` (OpenAI, generic).
    Bearer,
    /// `<name>: <key>` (Azure `api-key`, Anthropic `x-api-key`).
    Header(&'static str),
}

fn auth_header(key: &ApiKey, style: AuthStyle) -> Result<(HeaderName, HeaderValue), ApiError> {
    let (name, value) = match style {
        AuthStyle::Bearer => (AUTHORIZATION, format!("Bearer {}", key.expose())),
        AuthStyle::Header(name) => (
            HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                .map_err(|_| ApiError::permanent(format!("invalid auth header name {name:?}")))?,
            key.expose().to_owned(),
        ),
    };
    let mut value = HeaderValue::from_str(&value).map_err(|_| {
        ApiError::permanent("the api key contains characters not allowed in an http header")
    })?;
    value.set_sensitive(true);
    Ok((name, value))
}

/// The HTTP layer one provider client owns.
pub(crate) struct Http {
    client: reqwest::Client,
    auth: Option<(HeaderName, HeaderValue)>,
    key: Option<ApiKey>,
    /// Sent with every request (e.g. `anthropic-version`).
    extra: Vec<(HeaderName, HeaderValue)>,
    pub(crate) retry: RetryPolicy,
    pub(crate) timeouts: ClientTimeouts,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http")
            .field(
                "auth",
                &self.auth.as_ref().map(|(name, _)| (name, REDACTED)),
            )
            .field("key", &self.key)
            .field("retry", &self.retry)
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

impl Http {
    pub(crate) fn new(
        api_key: Option<String>,
        style: AuthStyle,
        timeouts: ClientTimeouts,
    ) -> Result<Self, ApiError> {
        let key = api_key.filter(|k| !k.is_empty()).map(ApiKey::new);
        let auth = key.as_ref().map(|k| auth_header(k, style)).transpose()?;
        let client = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            // An idle read longer than the request timeout fails the call;
            // small calls also get a total timeout per request (`req`),
            // downloads do not (they may be hundreds of MB).
            .read_timeout(timeouts.request)
            .user_agent(concat!("mlpredict/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ApiError::permanent(format!("cannot build the http client: {e}")))?;
        Ok(Self {
            client,
            auth,
            key,
            extra: Vec::new(),
            retry: RetryPolicy::default(),
            timeouts,
        })
    }

    /// Authenticate differently (e.g. Azure's `api-key` header).
    pub(crate) fn set_auth_style(&mut self, style: AuthStyle) -> Result<(), ApiError> {
        self.auth = self
            .key
            .as_ref()
            .map(|k| auth_header(k, style))
            .transpose()?;
        Ok(())
    }

    /// A header sent with every request (e.g. `anthropic-version`).
    pub(crate) fn with_header(mut self, name: &'static str, value: &str) -> Result<Self, ApiError> {
        let value = HeaderValue::from_str(value).map_err(|_| {
            ApiError::permanent(format!("invalid value for the {name} header: {value:?}"))
        })?;
        self.extra.push((HeaderName::from_static(name), value));
        Ok(self)
    }

    /// A request with auth and the total request timeout.
    pub(crate) fn req(&self, method: Method, url: &str) -> RequestBuilder {
        self.req_untimed(method, url).timeout(self.timeouts.request)
    }

    /// A request with auth and only the idle (read) timeout.
    pub(crate) fn req_untimed(&self, method: Method, url: &str) -> RequestBuilder {
        let mut rb = self.client.request(method, url);
        if let Some((name, value)) = &self.auth {
            rb = rb.header(name.clone(), value.clone());
        }
        for (name, value) in &self.extra {
            rb = rb.header(name.clone(), value.clone());
        }
        rb
    }

    /// A request without the API key (to a URL on another host), with the
    /// extra headers and only the idle (read) timeout.
    pub(crate) fn req_anonymous(&self, method: Method, url: &str) -> RequestBuilder {
        let mut rb = self.client.request(method, url);
        for (name, value) in &self.extra {
            rb = rb.header(name.clone(), value.clone());
        }
        rb
    }

    /// Send once; a non-2xx answer becomes a classified error.
    pub(crate) async fn send(&self, what: &str, rb: RequestBuilder) -> Result<Response, ApiError> {
        let resp = rb
            .send()
            .await
            .map_err(|e| self.transport_error(what, &e))?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(self.status_error(what, resp).await)
        }
    }

    /// Send once and parse a JSON answer. An unreadable 2xx answer is
    /// `Ambiguous`: the provider may have acted.
    pub(crate) async fn json(
        &self,
        what: &str,
        rb: RequestBuilder,
    ) -> Result<serde_json::Value, ApiError> {
        let resp = self.send(what, rb).await?;
        let status = resp.status().as_u16();
        let body = resp
            .bytes()
            .await
            .map_err(|e| self.transport_error(what, &e))?;
        serde_json::from_slice(&body).map_err(|e| {
            let mut err = ApiError::new(
                ErrorClass::Ambiguous,
                self.scrub(&format!(
                    "{what}: invalid json in the answer (http {status}): {e}"
                )),
            );
            err.status = Some(status);
            err
        })
    }

    /// Run an idempotent call, retrying `Transient` and `Ambiguous` failures
    /// (backoff with full jitter, or the server's `retry-after` when it is
    /// not longer than `max_retry_after`).
    pub(crate) async fn retry<T, F, Fut>(&self, what: &str, call: F) -> Result<T, ApiError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        retry_with(self.retry, what, call).await
    }

    /// GET `url` and stream the body into `to`: a file (created or
    /// truncated, fsynced at the end) or memory, passing each chunk through
    /// `normalize` when given. One attempt; wrap in [`retry`](Self::retry).
    pub(crate) async fn download_once(
        &self,
        what: &str,
        url: &str,
        to: DownloadTo<'_>,
        normalize: Option<crate::wire::JsonLinesNormalizer>,
    ) -> Result<Downloaded, ApiError> {
        self.download_request(what, self.req_untimed(Method::GET, url), to, normalize)
            .await
    }

    /// [`download_once`](Self::download_once) with a prepared request.
    pub(crate) async fn download_request(
        &self,
        what: &str,
        rb: RequestBuilder,
        to: DownloadTo<'_>,
        normalize: Option<crate::wire::JsonLinesNormalizer>,
    ) -> Result<Downloaded, ApiError> {
        let resp = self.send(what, rb).await?;
        let body = Body::new(resp, normalize);
        match to {
            DownloadTo::Memory => self.stream_to_memory(what, body).await,
            DownloadTo::File(dest) => {
                let res = self.stream_to_file(what, body, dest).await;
                if res.is_err() {
                    // Leave no partial file that could pass for a result file.
                    let _ = tokio::fs::remove_file(dest).await;
                }
                res
            }
        }
    }

    async fn stream_to_memory(&self, what: &str, mut body: Body) -> Result<Downloaded, ApiError> {
        // The length is only a hint: cap what is reserved before it arrives.
        let hint = body.expected.unwrap_or(0).min(64 << 20) as usize;
        let mut out = Vec::with_capacity(hint);
        while let Some(chunk) = body.next(self, what).await? {
            out.extend_from_slice(chunk);
        }
        Ok(Downloaded::Memory(out))
    }

    async fn stream_to_file(
        &self,
        what: &str,
        mut body: Body,
        dest: &Path,
    ) -> Result<Downloaded, ApiError> {
        let mut file = tokio::fs::File::create(dest)
            .await
            .map_err(|e| ApiError::local_io(what, dest, &e))?;
        let mut written: u64 = 0;
        while let Some(chunk) = body.next(self, what).await? {
            file.write_all(chunk)
                .await
                .map_err(|e| ApiError::local_io(what, dest, &e))?;
            written += chunk.len() as u64;
        }
        file.flush()
            .await
            .map_err(|e| ApiError::local_io(what, dest, &e))?;
        file.sync_all()
            .await
            .map_err(|e| ApiError::local_io(what, dest, &e))?;
        Ok(Downloaded::File(written))
    }

    pub(crate) fn scrub(&self, text: &str) -> String {
        scrub(self.key.as_ref(), text)
    }

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
        let message = match &detail {
            Some(d) => format!("{what}: http {status}: {d}"),
            None => format!("{what}: http {status}"),
        };
        ApiError {
            class: classify_status(status, should_retry),
            status: Some(status),
            code: code.map(|c| self.scrub(&c)),
            message: self.scrub(&message),
            retry_after: parse_retry_after(headers, now),
        }
    }
}

/// Where a download goes.
#[derive(Debug, Clone, Copy)]
pub enum DownloadTo<'a> {
    /// Created or truncated, fsynced at the end.
    File(&'a Path),
    /// Kept in memory and returned.
    Memory,
}

/// What a download produced.
#[derive(Debug)]
pub enum Downloaded {
    /// The bytes written to the file.
    File(u64),
    Memory(Vec<u8>),
}

/// A response body read chunk by chunk, normalised when asked, with its
/// length checked against `content-length` at the end.
struct Body {
    stream: std::pin::Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    normalize: Option<crate::wire::JsonLinesNormalizer>,
    expected: Option<u64>,
    received: u64,
    chunk: Bytes,
    buf: Vec<u8>,
    done: bool,
}

impl Body {
    fn new(resp: Response, normalize: Option<crate::wire::JsonLinesNormalizer>) -> Self {
        Self {
            expected: resp.content_length(),
            stream: Box::pin(resp.bytes_stream()),
            normalize,
            received: 0,
            chunk: Bytes::new(),
            buf: Vec::new(),
            done: false,
        }
    }

    /// The next piece of output; `None` at the end.
    async fn next(&mut self, http: &Http, what: &str) -> Result<Option<&[u8]>, ApiError> {
        if self.done {
            return Ok(None);
        }
        match self.stream.next().await {
            Some(chunk) => {
                let chunk = chunk.map_err(|e| http.transport_error(what, &e))?;
                self.received += chunk.len() as u64;
                match self.normalize.as_mut() {
                    Some(n) => {
                        self.buf.clear();
                        n.push(&chunk, &mut self.buf);
                        Ok(Some(&self.buf))
                    }
                    None => {
                        self.chunk = chunk;
                        Ok(Some(&self.chunk))
                    }
                }
            }
            None => {
                self.done = true;
                if let Some(expected) = self.expected {
                    if expected != self.received {
                        return Err(ApiError::new(
                            ErrorClass::Ambiguous,
                            format!(
                                "{what}: truncated download: {} of {expected} bytes",
                                self.received
                            ),
                        ));
                    }
                }
                self.buf.clear();
                if let Some(n) = self.normalize.as_mut() {
                    n.finish(&mut self.buf);
                }
                Ok((!self.buf.is_empty()).then_some(&self.buf[..]))
            }
        }
    }
}

const MAX_ERROR_BODY: usize = 64 * 1024;

/// Retry loop shared by every client (see [`Http::retry`]).
pub(crate) async fn retry_with<T, F, Fut>(
    policy: RetryPolicy,
    what: &str,
    call: F,
) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    use backon::Retryable;
    call.retry(FullJitter::new(policy))
        .sleep(tokio::time::sleep)
        .when(ApiError::is_retriable)
        .adjust(|e: &ApiError, next: Option<Duration>| {
            let next = next?;
            match e.retry_after {
                Some(ra) if ra > policy.max_retry_after => None,
                Some(ra) => Some(ra),
                None => Some(next),
            }
        })
        .notify(|e: &ApiError, delay: Duration| {
            tracing::warn!(call = what, class = ?e.class, status = ?e.status, ?delay, error = %e, "retrying");
        })
        .await
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

/// `retry-after-ms` (milliseconds), else `retry-after` (seconds or an HTTP
/// date, relative to `now`).
pub fn parse_retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if let Some(ms) = headers.get("retry-after-ms").and_then(|v| v.to_str().ok()) {
        if let Ok(ms) = ms.trim().parse::<f64>() {
            if ms.is_finite() && ms >= 0.0 {
                return Some(Duration::from_secs_f64(ms / 1000.0));
            }
        }
    }
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = parse_http_date(v)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), also without the
/// weekday, or an RFC 850 date (`Sunday, 06-Nov-94 08:49:37 GMT`).
pub fn parse_http_date(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let s = match s.find(',') {
        Some(i) => s[i + 1..].trim_start(),
        None => s,
    };
    let mut parts = s.split([' ', '-']).filter(|p| !p.is_empty());
    let day: u32 = parts.next()?.parse().ok()?;
    let month = parts.next()?;
    let month = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ]
    .iter()
    .position(|m| month.len() >= 3 && month[..3].eq_ignore_ascii_case(m))? as u32
        + 1;
    let mut year: i64 = parts.next()?.parse().ok()?;
    if year < 100 {
        year += if year < 70 { 2000 } else { 1900 };
    }
    let mut hms = parts.next()?.split(':');
    let h: u64 = hms.next()?.parse().ok()?;
    let m: u64 = hms.next()?.parse().ok()?;
    let sec: u64 = hms.next()?.parse().ok()?;
    let zone = parts.next().unwrap_or("GMT");
    if !(zone.eq_ignore_ascii_case("gmt") || zone.eq_ignore_ascii_case("utc")) {
        return None;
    }
    if !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days.checked_mul(86_400)? + (h * 3600 + m * 60 + sec) as i64;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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

/// Join a base URL and a path segment, percent-encoding the segment.
pub(crate) fn join_segment(base: &str, segment: &str) -> String {
    let mut out = String::with_capacity(base.len() + 1 + segment.len());
    out.push_str(base.trim_end_matches('/'));
    out.push('/');
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A file on disk as a body stream, in 64 KiB chunks (never all in RAM).
pub(crate) fn file_stream(
    file: tokio::fs::File,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    futures_util::stream::try_unfold(file, |mut file| async move {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let n = file.read_buf(&mut buf).await?;
        Ok((n > 0).then(|| (buf.freeze(), file)))
    })
}

/// A multipart file part streamed from `path`, and the file's length.
pub(crate) async fn file_part(
    what: &str,
    path: &Path,
    file_name: &str,
) -> Result<(reqwest::multipart::Part, u64), ApiError> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| ApiError::local_io(what, path, &e))?;
    let len = file
        .metadata()
        .await
        .map_err(|e| ApiError::local_io(what, path, &e))?
        .len();
    let body = reqwest::Body::wrap_stream(file_stream(file));
    let part = reqwest::multipart::Part::stream_with_length(body, len)
        .file_name(file_name.to_owned())
        .mime_str("application/jsonl")
        .map_err(|e| ApiError::permanent(format!("{what}: {e}")))?;
    Ok((part, len))
}

/// Time to allow for sending `bytes` on top of the request timeout
/// (assumes at least 1 MiB/s).
pub(crate) fn upload_timeout(base: Duration, bytes: u64) -> Duration {
    base + Duration::from_secs(bytes / (1024 * 1024))
}

#[cfg(test)]
mod tests;
