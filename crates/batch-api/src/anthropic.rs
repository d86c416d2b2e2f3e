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
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::Method;

use crate::http::{self, AuthStyle, DownloadTo, Downloaded, Http, RetryPolicy};
use crate::openai::check_url;
use crate::{
    ApiError, BatchApi, BatchMeta, BatchPage, ClientTimeouts, ErrorClass, Limits, RemoteBatch,
};

mod body;
mod find;
mod parse;
mod tag;

use body::create_body;
#[cfg(test)]
use body::BodyWriter;
use find::Known;
pub use parse::{map_status, parse_batch, parse_page};
pub use tag::{batch_tag, tag_line, tag_of_custom_id};

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
        let (body, len) = create_body(WHAT, path, &tag).await?;
        let rb = self
            .http
            .req(Method::POST, &self.batches_url)
            .timeout(http::upload_timeout(self.http.timeouts.request, len))
            .header(CONTENT_TYPE, "application/json")
            .header(CONTENT_LENGTH, len)
            .body(body);
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
