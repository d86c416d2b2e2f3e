//! Anthropic Message Batches (PROVIDERS.md §6).
//!
//! - No file upload: `upload` returns `Ok(None)`; `create` streams the local
//!   JSONL batch file (lines written by `RequestTemplate` with
//!   `WireFormat::Anthropic`) into `POST /v1/messages/batches` as
//!   `{"requests":[line,line,…]}`, never holding the file in memory.
//! - Headers `x-api-key` and `anthropic-version` on every call.
//! - `processing_status`: `in_progress` → `InProgress`, `canceling` →
//!   `Cancelling`, `ended` → `Completed` (what happened to each request is in
//!   its result line: succeeded, errored, canceled, expired).
//! - `results_url` is the batch's output file; it is used as given, never
//!   built.
//!
//! # Adoption without metadata
//!
//! Anthropic batches carry no metadata, so a batch whose create answer was
//! lost (or whose id a crash kept us from recording) cannot be found by
//! `batch_number` the way OpenAI batches are. Instead every custom_id sent
//! carries a **batch tag**: `create` rewrites each line's `{lane}-{position}`
//! into `{tag}_{lane}-{position}` while streaming, where the tag
//! ([`batch_tag`]) is a stable 64-bit hash of (pipeline, batch_number,
//! attempt). The local file keeps the public ids; the result parser strips
//! `{tag}_` again (`wire::strip_batch_tag`), so outputs show
//! `{lane}-{position}`.
//!
//! `find` lists batches newest first back to `not_before` and decides for
//! each candidate:
//! - created by this process (`create` answered): its tag is known;
//! - polled by this process (`get`): it belongs to another batch of ours
//!   that already has its provider id, so it is not the one looked for;
//! - request count different from the batch file's (when the caller passes
//!   it, [`BatchApi::find_with_count`]): not ours;
//! - ended: the first line of its results shows its tag (one streamed GET,
//!   cut after the first line; remembered);
//! - still in progress and unknown: nothing can tell yet (the API exposes a
//!   batch's requests only through its results). `find` then fails with a
//!   `Transient` `adoption_pending` error and the core asks again later.
//!
//! So a batch is adopted only when its tag proves it ours, and a new one is
//! created only when no batch in the window can still turn out to be ours:
//! never twice, never someone else's. The price is latency in a rare case:
//! after a lost create answer, the batch waits until the unknown in-progress
//! batches of the window end (usually just the lost batch itself, whose
//! results are then ready at once).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::Method;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::http::{self, AuthStyle, DownloadTo, Downloaded, Http, RetryPolicy};
use crate::openai::{check_url, str_field, time_field, u64_field};
use crate::wire::{is_valid_custom_id, BATCH_TAG_SEPARATOR, LINE_HEAD};
use crate::{
    ApiError, BatchApi, BatchMeta, BatchPage, ClientTimeouts, ErrorClass, Limits, RemoteBatch,
    RemoteStatus, RequestCounts,
};

/// ≤ 100,000 requests per batch. The create request may be 256 MB; the
/// batch file is kept a little smaller because each request grows by its
/// tag and a comma on the way.
pub const ANTHROPIC_LIMITS: Limits = Limits {
    max_requests: 100_000,
    max_bytes: 250 * 1000 * 1000,
};

/// Largest create request body the API accepts.
pub const MAX_CREATE_BYTES: u64 = 256 * 1000 * 1000;

/// The `anthropic-version` header when none is configured.
pub const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";

/// Code of the `find` error while unknown in-progress batches may still
/// turn out to be the one looked for.
pub const ADOPTION_PENDING: &str = "adoption_pending";

/// The batch tag of one create attempt: `mp` and 16 hex digits of a stable
/// hash (FNV-1a 64 + splitmix64 finaliser; the same on every build and
/// platform) of pipeline, batch_number and attempt.
pub fn batch_tag(meta: &BatchMeta) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [
        meta.pipeline.as_bytes(),
        meta.batch_number.as_bytes(),
        meta.attempt.to_string().as_bytes(),
    ] {
        for &b in part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut z = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    format!("mp{z:016x}")
}

/// The tag of a wire custom_id `{tag}_{id}`, if it has one.
pub fn tag_of_custom_id(id: &str) -> Option<&str> {
    let (tag, rest) = id.split_once(BATCH_TAG_SEPARATOR)?;
    (!tag.is_empty() && !rest.is_empty() && tag.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then_some(tag)
}

/// What this process knows about a provider batch id.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Known {
    /// Its tag ("" when its results carry none).
    Tag(String),
    /// Polled by this process: another batch of ours, with its id recorded.
    Claimed,
}

pub struct AnthropicClient {
    http: Http,
    /// `{base}/messages/batches`.
    batches_url: String,
    /// `scheme://host[:port]` of the API, for relative results URLs and to
    /// send the key only there.
    origin: String,
    limits: Limits,
    known: Mutex<HashMap<String, Known>>,
}

impl std::fmt::Debug for AnthropicClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnthropicClient")
            .field("batches_url", &self.batches_url)
            .field("limits", &self.limits)
            .field("http", &self.http)
            .finish_non_exhaustive()
    }
}

impl AnthropicClient {
    /// `base_url` is `ml.batch.api.endpoint`, e.g. `https://api.anthropic.com/v1`
    /// (a trailing `/messages/batches` or `/messages` is tolerated);
    /// `anthropic_version` the `anthropic-version` header (default
    /// [`DEFAULT_ANTHROPIC_VERSION`]).
    pub fn new(
        base_url: &str,
        api_key: Option<String>,
        anthropic_version: Option<&str>,
        timeouts: ClientTimeouts,
    ) -> Result<Self, ApiError> {
        let base = check_url(base_url)?;
        let base = base
            .strip_suffix("/messages/batches")
            .or_else(|| base.strip_suffix("/messages"))
            .unwrap_or(&base)
            .to_owned();
        let version = anthropic_version
            .filter(|v| !v.trim().is_empty())
            .unwrap_or(DEFAULT_ANTHROPIC_VERSION);
        let http = Http::new(api_key, AuthStyle::Header("x-api-key"), timeouts)?
            .with_header("anthropic-version", version)?;
        let origin = reqwest::Url::parse(&base)
            .map_err(|e| ApiError::permanent(format!("invalid api endpoint: {e}")))?
            .origin()
            .ascii_serialization();
        Ok(Self {
            http,
            batches_url: format!("{base}/messages/batches"),
            origin,
            limits: ANTHROPIC_LIMITS,
            known: Mutex::new(HashMap::new()),
        })
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.http.retry = retry;
        self
    }

    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<String, Known>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A results URL as given (absolute), or relative to the API's origin.
    fn resolve(&self, url: &str) -> String {
        let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            url.to_owned()
        } else if url.starts_with('/') {
            format!("{}{url}", self.origin)
        } else {
            format!("{}/{url}", self.origin)
        }
    }

    /// GET a results URL; the key goes only to the API's own origin.
    fn results_request(&self, url: &str) -> reqwest::RequestBuilder {
        let same_origin = reqwest::Url::parse(url)
            .map(|u| u.origin().ascii_serialization() == self.origin)
            .unwrap_or(false);
        if same_origin {
            self.http.req_untimed(Method::GET, url)
        } else {
            tracing::debug!(url, "results url on another host: sent without the api key");
            self.http.req_anonymous(Method::GET, url)
        }
    }

    async fn batch_call(
        &self,
        what: &str,
        rb: reqwest::RequestBuilder,
    ) -> Result<RemoteBatch, ApiError> {
        let v = self.http.json(what, rb).await?;
        parse_batch(&v).map_err(|m| ApiError::new(ErrorClass::Ambiguous, format!("{what}: {m}")))
    }

    /// The tag of a finished batch, from the first line of its results
    /// (streamed; the rest is not read). `Ok(None)`: no results or no tag.
    async fn results_tag(&self, url: &str) -> Result<Option<String>, ApiError> {
        const WHAT: &str = "read the first result of a batch";
        const MAX_LINE: usize = 8 << 20;
        let url = self.resolve(url);
        let url = url.as_str();
        self.http
            .retry(WHAT, || async move {
                let mut resp = self.http.send(WHAT, self.results_request(url)).await?;
                let mut buf = Vec::new();
                loop {
                    let chunk = resp
                        .chunk()
                        .await
                        .map_err(|e| self.http.transport_error(WHAT, &e))?;
                    let Some(chunk) = chunk else { break };
                    buf.extend_from_slice(&chunk);
                    let first = buf.iter().position(|b| !b.is_ascii_whitespace());
                    let newline =
                        first.and_then(|f| memchr::memchr(b'\n', &buf[f..]).map(|i| f + i));
                    if newline.is_some() || buf.len() > MAX_LINE {
                        break;
                    }
                }
                // Dropping `resp` closes the connection: the rest is not read.
                drop(resp);
                let text = buf.trim_ascii_start();
                let line = match memchr::memchr(b'\n', text) {
                    Some(i) => &text[..i],
                    None => text,
                };
                if line.trim_ascii().is_empty() {
                    return Ok(None);
                }
                #[derive(serde::Deserialize)]
                struct First {
                    custom_id: String,
                }
                match serde_json::from_slice::<First>(line) {
                    Ok(f) => Ok(tag_of_custom_id(&f.custom_id).map(str::to_owned)),
                    Err(e) => Err(ApiError::new(
                        ErrorClass::Ambiguous,
                        format!("{WHAT}: unreadable result line: {e}"),
                    )),
                }
            })
            .await
    }

    async fn find_impl(
        &self,
        meta: &BatchMeta,
        not_before: i64,
        count: Option<u64>,
    ) -> Result<Option<RemoteBatch>, ApiError> {
        let want = batch_tag(meta);
        let mut pending: Vec<String> = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.list(after.as_deref(), 100).await?;
            let mut older = false;
            for b in page.batches {
                if b.created_at.is_some_and(|t| t < not_before) {
                    older = true;
                    continue;
                }
                let known = self.known().get(&b.id).cloned();
                match known {
                    Some(Known::Tag(t)) if t == want => return Ok(Some(adopted(b, meta))),
                    Some(_) => continue,
                    None => {}
                }
                if let (Some(n), Some(c)) = (count, b.counts) {
                    if c.total != n {
                        continue;
                    }
                }
                let Some(url) = b.output_file.clone() else {
                    if b.status.is_terminal() {
                        // Ended without results: nothing to adopt there.
                        self.known().insert(b.id.clone(), Known::Tag(String::new()));
                    } else {
                        pending.push(b.id);
                    }
                    continue;
                };
                match self.results_tag(&url).await {
                    Ok(tag) => {
                        let tag = tag.unwrap_or_default();
                        let ours = tag == want;
                        self.known().insert(b.id.clone(), Known::Tag(tag));
                        if ours {
                            return Ok(Some(adopted(b, meta)));
                        }
                    }
                    // Results gone (archived): whatever it was, it cannot be
                    // adopted any more.
                    Err(e) if e.is_not_found() => {
                        self.known().insert(b.id.clone(), Known::Tag(String::new()));
                    }
                    Err(e) => return Err(e),
                }
            }
            match page.next_after {
                Some(next) if !older => after = Some(next),
                _ => break,
            }
        }
        if pending.is_empty() {
            return Ok(None);
        }
        tracing::info!(
            batch = %meta.batch_number,
            attempt = meta.attempt,
            candidates = pending.len(),
            first = %pending[0],
            "looking for a batch whose create answer was lost: waiting for in-progress batches to end, \
             since only their results tell whether one of them is it (anthropic batches carry no metadata)"
        );
        let mut e = ApiError::new(
            ErrorClass::Transient,
            format!(
                "find batch {} attempt {}: {} in-progress batch(es) ({}{}) may be it; their results will tell once they end",
                meta.batch_number,
                meta.attempt,
                pending.len(),
                pending[0],
                if pending.len() > 1 { ", …" } else { "" }
            ),
        );
        e.code = Some(ADOPTION_PENDING.to_owned());
        Err(e)
    }
}

fn adopted(mut b: RemoteBatch, meta: &BatchMeta) -> RemoteBatch {
    b.meta = Some(meta.clone());
    b
}

/// Processing status words. `None` for a word we do not know.
pub fn map_status(s: &str) -> Option<RemoteStatus> {
    Some(match s.trim().to_ascii_lowercase().as_str() {
        "in_progress" => RemoteStatus::InProgress,
        "canceling" | "cancelling" => RemoteStatus::Cancelling,
        "ended" => RemoteStatus::Completed,
        _ => return None,
    })
}

/// A MessageBatch object. `request_counts.total` is the sum of the five
/// counts (only `processing` is non-zero until the batch ends); `completed`
/// = succeeded, `failed` = errored + canceled + expired.
pub fn parse_batch(v: &Value) -> Result<RemoteBatch, String> {
    let id = str_field(v, "id").ok_or("the answer has no batch id")?;
    let word = v
        .get("processing_status")
        .and_then(Value::as_str)
        .unwrap_or("");
    let status = map_status(word).unwrap_or_else(|| {
        tracing::warn!(batch_id = %id, status = word, "unknown processing_status, treated as in_progress");
        RemoteStatus::InProgress
    });
    let counts = v.get("request_counts").filter(|c| c.is_object()).map(|c| {
        let n = |k| u64_field(c, k).unwrap_or(0);
        let (processing, succeeded) = (n("processing"), n("succeeded"));
        let failed = n("errored") + n("canceled") + n("expired");
        RequestCounts {
            total: processing + succeeded + failed,
            completed: succeeded,
            failed,
        }
    });
    Ok(RemoteBatch {
        status,
        output_file: str_field(v, "results_url"),
        error_file: None,
        errors: Vec::new(),
        counts,
        created_at: time_field(v, "created_at"),
        meta: None,
        total_tokens: None,
        id,
    })
}

/// `{data, has_more, first_id, last_id}`.
pub fn parse_page(v: &Value) -> Result<BatchPage, String> {
    let data = v
        .get("data")
        .and_then(Value::as_array)
        .ok_or("the answer has no data array")?;
    let mut batches = Vec::with_capacity(data.len());
    for b in data {
        match parse_batch(b) {
            Ok(b) => batches.push(b),
            Err(e) => tracing::warn!(error = %e, "skipping an unreadable batch in a listing"),
        }
    }
    let has_more = v.get("has_more").and_then(Value::as_bool).unwrap_or(false);
    let next_after = if has_more {
        str_field(v, "last_id").or_else(|| batches.last().map(|b| b.id.clone()))
    } else {
        None
    };
    Ok(BatchPage {
        batches,
        next_after,
    })
}

/// Append one request of the create body, `line` (a request line of the
/// batch file, without its newline) with its custom_id tagged.
pub fn tag_line(line: &[u8], tag: &str, out: &mut Vec<u8>) -> Result<(), String> {
    if let Some(rest) = line.strip_prefix(LINE_HEAD) {
        // The template's lines: `{"custom_id":"<id>",…` with a plain id.
        let end = memchr::memchr(b'"', rest).ok_or("unterminated custom_id")?;
        let id = std::str::from_utf8(&rest[..end]).map_err(|_| "custom_id is not utf-8")?;
        check_tagged(tag, id)?;
        out.extend_from_slice(LINE_HEAD);
        out.extend_from_slice(tag.as_bytes());
        out.push(BATCH_TAG_SEPARATOR as u8);
        out.extend_from_slice(rest);
        return Ok(());
    }
    // Any other well-formed line (hand-written, other key order).
    let mut v: serde_json::Map<String, Value> =
        serde_json::from_slice(line).map_err(|e| format!("a line is not a json object: {e}"))?;
    let id = match v.get("custom_id") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err("a line has no string custom_id".into()),
    };
    check_tagged(tag, &id)?;
    v.insert(
        "custom_id".into(),
        Value::String(format!("{tag}{BATCH_TAG_SEPARATOR}{id}")),
    );
    serde_json::to_writer(&mut *out, &v).map_err(|e| e.to_string())
}

fn check_tagged(tag: &str, id: &str) -> Result<(), String> {
    let tagged_len = tag.len() + 1 + id.len();
    if !is_valid_custom_id(id) || tagged_len > 64 {
        return Err(format!(
            "custom_id {id:?} does not fit anthropic's ^[a-zA-Z0-9_-]{{1,64}}$ once tagged"
        ));
    }
    Ok(())
}

const BODY_HEAD: &[u8] = br#"{"requests":["#;
const BODY_TAIL: &[u8] = b"]}";
const CHUNK: usize = 64 * 1024;

/// Reads a batch file and yields the create body in chunks.
struct BodyWriter {
    reader: BufReader<tokio::fs::File>,
    tag: String,
    line: Vec<u8>,
    requests: u64,
    started: bool,
    done: bool,
}

impl BodyWriter {
    async fn open(path: &Path, tag: String) -> Result<Self, ApiError> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| ApiError::local_io("create message batch", path, &e))?;
        Ok(Self {
            reader: BufReader::with_capacity(CHUNK, file),
            tag,
            line: Vec::new(),
            requests: 0,
            started: false,
            done: false,
        })
    }

    /// The next chunk of the body, `None` at the end.
    async fn next_chunk(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        if self.done {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(CHUNK + 1024);
        if !self.started {
            self.started = true;
            out.extend_from_slice(BODY_HEAD);
        }
        while out.len() < CHUNK {
            self.line.clear();
            let n = self.reader.read_until(b'\n', &mut self.line).await?;
            if n == 0 {
                out.extend_from_slice(BODY_TAIL);
                self.done = true;
                break;
            }
            let line = self.line.strip_suffix(b"\n").unwrap_or(&self.line);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.trim_ascii().is_empty() {
                continue;
            }
            if self.requests > 0 {
                out.push(b',');
            }
            self.requests += 1;
            tag_line(line, &self.tag, &mut out).map_err(|m| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("request {}: {m}", self.requests),
                )
            })?;
        }
        Ok(Some(out))
    }
}

#[async_trait]
impl BatchApi for AnthropicClient {
    fn name(&self) -> &'static str {
        "anthropic"
    }

    fn limits(&self) -> Limits {
        self.limits
    }

    async fn upload(&self, _path: &Path, _file_name: &str) -> Result<Option<String>, ApiError> {
        Ok(None)
    }

    async fn create(
        &self,
        _file_id: Option<&str>,
        path: &Path,
        meta: &BatchMeta,
    ) -> Result<RemoteBatch, ApiError> {
        const WHAT: &str = "create message batch";
        let tag = batch_tag(meta);
        // First pass: the exact body length (sent as content-length), the
        // request count, and every line checked before anything is sent.
        let mut w = BodyWriter::open(path, tag.clone()).await?;
        let mut len: u64 = 0;
        while let Some(chunk) = w
            .next_chunk()
            .await
            .map_err(|e| ApiError::local_io(WHAT, path, &e))?
        {
            len += chunk.len() as u64;
        }
        let requests = w.requests;
        if requests == 0 {
            return Err(ApiError::permanent(format!(
                "{WHAT}: {} holds no request",
                path.display()
            )));
        }
        if requests > ANTHROPIC_LIMITS.max_requests {
            return Err(ApiError::permanent(format!(
                "{WHAT}: {requests} requests, more than anthropic's {} per batch",
                ANTHROPIC_LIMITS.max_requests
            )));
        }
        if len > MAX_CREATE_BYTES {
            return Err(ApiError::permanent(format!(
                "{WHAT}: the request would be {len} bytes, more than anthropic's {MAX_CREATE_BYTES}"
            )));
        }
        let writer = BodyWriter::open(path, tag.clone()).await?;
        let stream = futures_util::stream::try_unfold(writer, |mut w| async move {
            Ok::<_, std::io::Error>(w.next_chunk().await?.map(|c| (Bytes::from(c), w)))
        });
        let rb = self
            .http
            .req(Method::POST, &self.batches_url)
            .timeout(http::upload_timeout(self.http.timeouts.request, len))
            .header(CONTENT_TYPE, "application/json")
            .header(CONTENT_LENGTH, len)
            .body(reqwest::Body::wrap_stream(stream));
        // Never retried here: a lost answer may hide a created batch.
        let mut b = self.batch_call(WHAT, rb).await?;
        self.known().insert(b.id.clone(), Known::Tag(tag));
        b.meta = Some(meta.clone());
        Ok(b)
    }

    async fn get(&self, batch_id: &str) -> Result<RemoteBatch, ApiError> {
        const WHAT: &str = "get message batch";
        let url = http::join_segment(&self.batches_url, batch_id);
        let url = url.as_str();
        let b = self
            .http
            .retry(WHAT, || async move {
                self.batch_call(WHAT, self.http.req(Method::GET, url)).await
            })
            .await?;
        // Only batches a run already owns are polled: remember that this one
        // is not some other batch's lost create.
        self.known().entry(b.id.clone()).or_insert(Known::Claimed);
        Ok(b)
    }

    async fn list(&self, after: Option<&str>, limit: u32) -> Result<BatchPage, ApiError> {
        const WHAT: &str = "list message batches";
        let url = self.batches_url.as_str();
        let limit = limit.clamp(1, 1000).to_string();
        let limit = limit.as_str();
        let v = self
            .http
            .retry(WHAT, || async move {
                let mut query: Vec<(&str, &str)> = vec![("limit", limit)];
                if let Some(a) = after {
                    query.push(("after_id", a));
                }
                self.http
                    .json(WHAT, self.http.req(Method::GET, url).query(&query))
                    .await
            })
            .await?;
        parse_page(&v).map_err(|m| ApiError::new(ErrorClass::Ambiguous, format!("{WHAT}: {m}")))
    }

    async fn find(
        &self,
        meta: &BatchMeta,
        not_before: i64,
    ) -> Result<Option<RemoteBatch>, ApiError> {
        self.find_impl(meta, not_before, None).await
    }

    async fn find_with_count(
        &self,
        meta: &BatchMeta,
        not_before: i64,
        requests: u64,
    ) -> Result<Option<RemoteBatch>, ApiError> {
        self.find_impl(meta, not_before, Some(requests)).await
    }

    async fn download_to(&self, file: &str, to: DownloadTo<'_>) -> Result<Downloaded, ApiError> {
        const WHAT: &str = "download batch results";
        let url = self.resolve(file);
        let url = url.as_str();
        self.http
            .retry(WHAT, || async move {
                self.http
                    .download_request(WHAT, self.results_request(url), to, None)
                    .await
            })
            .await
    }

    async fn cancel(&self, batch_id: &str) -> Result<RemoteBatch, ApiError> {
        let url = format!("{}/cancel", http::join_segment(&self.batches_url, batch_id));
        // Not retried inside the client (see the trait).
        self.batch_call("cancel message batch", self.http.req(Method::POST, &url))
            .await
    }

    /// Message batches have no files; results expire on their own (29 days).
    async fn delete_file(&self, _file_id: &str) -> Result<(), ApiError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
