//! The FLIP's example protocol (PROVIDERS.md §8):
//!
//! - `POST {submit}` multipart `file=@batch.jsonl` (+ our extension: a
//!   `metadata` text field holding the JSON metadata) → `{"id"}`;
//! - `GET {status}/{id}` → `{"id","status","results_url"?,"error"?}`;
//! - `GET results_url` → JSONL (or a JSON array, normalised to JSONL while
//!   downloading);
//! - our extension `GET {base}/batch/jobs?after=&limit=` lists jobs
//!   newest-first for adoption; a real server may not have it (404), then
//!   `find` returns `Ok(None)` and adoption is unavailable.
//!
//! There is no upload step, no cancel and no file deletion.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use reqwest::Method;
use serde_json::Value;

use crate::http::{self, AuthStyle, DownloadTo, Downloaded, Http, RetryPolicy};
use crate::openai::{
    check_url, meta_from_json, meta_to_json, page_of, parse_errors, str_field, time_field,
    u64_field,
};
use crate::wire::JsonLinesNormalizer;
use crate::{
    ApiError, BatchApi, BatchMeta, BatchPage, ClientTimeouts, ErrorClass, Limits, RemoteBatch,
    RemoteBatchError, RemoteStatus, RequestCounts,
};

/// Nothing is known about a generic server's limits; these are OpenAI's.
pub const GENERIC_LIMITS: Limits = Limits {
    max_requests: 50_000,
    max_bytes: 200 * 1000 * 1000,
};

pub struct GenericClient {
    http: Http,
    submit_url: String,
    status_url: String,
    jobs_url: String,
    /// `scheme://host[:port]` of the submit URL, for relative results URLs.
    origin: String,
    limits: Limits,
    /// The "adoption unavailable" warning was logged.
    warned_no_list: AtomicBool,
}

impl std::fmt::Debug for GenericClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenericClient")
            .field("submit_url", &self.submit_url)
            .field("status_url", &self.status_url)
            .field("jobs_url", &self.jobs_url)
            .field("limits", &self.limits)
            .field("http", &self.http)
            .finish()
    }
}

impl GenericClient {
    /// `submit_url` is `ml.batch.api.endpoint`, e.g.
    /// `http://127.0.0.1:8080/ml/api/batch_predict`; `status_url` defaults
    /// to it with a trailing `/batch_predict` replaced by `/batch/status`.
    pub fn new(
        submit_url: &str,
        status_url: Option<String>,
        api_key: Option<String>,
        timeouts: ClientTimeouts,
    ) -> Result<Self, ApiError> {
        let submit_url = check_url(submit_url)?;
        let base = submit_url
            .strip_suffix("/batch_predict")
            .unwrap_or(&submit_url)
            .to_owned();
        let status_url = match status_url {
            Some(s) => check_url(&s)?,
            None => format!("{base}/batch/status"),
        };
        let parsed = reqwest::Url::parse(&submit_url)
            .map_err(|e| ApiError::permanent(format!("invalid api endpoint: {e}")))?;
        Ok(Self {
            http: Http::new(api_key, AuthStyle::Bearer, timeouts)?,
            jobs_url: format!("{base}/batch/jobs"),
            origin: parsed.origin().ascii_serialization(),
            submit_url,
            status_url,
            limits: GENERIC_LIMITS,
            warned_no_list: AtomicBool::new(false),
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

    pub fn status_url(&self) -> &str {
        &self.status_url
    }

    /// A results URL: absolute, or relative to the submit URL's origin.
    pub fn resolve_results_url(&self, url: &str) -> String {
        let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            url.to_owned()
        } else if url.starts_with('/') {
            format!("{}{url}", self.origin)
        } else {
            format!("{}/{url}", self.origin)
        }
    }
}

/// Generic status words, case-insensitive; the four of the protocol and a
/// few obvious synonyms. `None` for a word we do not know.
pub fn map_status(s: &str) -> Option<RemoteStatus> {
    Some(match s.trim().to_ascii_lowercase().as_str() {
        "queued" | "pending" | "submitted" | "validating" => RemoteStatus::Validating,
        "running" | "in_progress" | "processing" | "started" => RemoteStatus::InProgress,
        "finalizing" => RemoteStatus::Finalizing,
        "completed" | "succeeded" | "success" | "done" => RemoteStatus::Completed,
        "failed" | "error" => RemoteStatus::Failed,
        "expired" | "timeout_exceeded" => RemoteStatus::Expired,
        "cancelling" | "canceling" | "cancellation_requested" => RemoteStatus::Cancelling,
        "cancelled" | "canceled" => RemoteStatus::Cancelled,
        _ => return None,
    })
}

/// A job object `{"id","status","results_url"?,"error"?, …}`.
pub fn parse_job(v: &Value) -> Result<RemoteBatch, String> {
    let id = str_field(v, "id")
        .or_else(|| str_field(v, "job_id"))
        .ok_or("the answer has no job id")?;
    let word = v.get("status").and_then(Value::as_str).unwrap_or("");
    let status = map_status(word).unwrap_or_else(|| {
        if !word.is_empty() {
            tracing::warn!(job_id = %id, status = word, "unknown job status, treated as running");
        }
        // A job just created may come without a status.
        RemoteStatus::InProgress
    });
    let mut errors = parse_errors(v.get("errors"));
    match v.get("error") {
        Some(Value::String(m)) if !m.trim().is_empty() => errors.push(RemoteBatchError {
            code: "job_failed".to_owned(),
            message: m.clone(),
            line: None,
        }),
        Some(e @ Value::Object(_)) => errors.push(RemoteBatchError {
            code: str_field(e, "code").unwrap_or_else(|| "job_failed".to_owned()),
            message: str_field(e, "message").unwrap_or_default(),
            line: u64_field(e, "line"),
        }),
        _ => {}
    }
    let counts = v
        .get("request_counts")
        .filter(|c| c.is_object())
        .map(|c| RequestCounts {
            total: u64_field(c, "total").unwrap_or(0),
            completed: u64_field(c, "completed").unwrap_or(0),
            failed: u64_field(c, "failed").unwrap_or(0),
        });
    Ok(RemoteBatch {
        status,
        output_file: str_field(v, "results_url"),
        error_file: None,
        errors,
        counts,
        created_at: time_field(v, "created_at"),
        meta: v.get("metadata").and_then(meta_from_json),
        total_tokens: v
            .get("usage")
            .and_then(|u| u64_field(u, "total_tokens"))
            .or_else(|| u64_field(v, "total_tokens")),
        id,
    })
}

/// A listing: `{"data":[…],"has_more","last_id"}` or a bare array.
pub fn parse_jobs_page(v: &Value) -> Result<BatchPage, String> {
    let (data, has_more) = match v {
        Value::Array(a) => (a.as_slice(), false),
        _ => (
            v.get("data")
                .or_else(|| v.get("jobs"))
                .and_then(Value::as_array)
                .ok_or("the answer has no data array")?
                .as_slice(),
            v.get("has_more").and_then(Value::as_bool).unwrap_or(false),
        ),
    };
    Ok(page_of(v, data, has_more, parse_job))
}

#[async_trait]
impl BatchApi for GenericClient {
    fn name(&self) -> &'static str {
        "generic"
    }

    fn limits(&self) -> Limits {
        self.limits
    }

    /// The job listing is our extension: a server may lack it or leave out
    /// the status.
    fn listing_reports_status(&self) -> bool {
        false
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
        const WHAT: &str = "submit batch";
        let file_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("batch.jsonl")
            .to_owned();
        let (part, len) = http::file_part(WHAT, path, &file_name).await?;
        let form = reqwest::multipart::Form::new()
            .part("file", part)
            .text("metadata", meta_to_json(meta).to_string());
        let rb = self
            .http
            .req(Method::POST, &self.submit_url)
            .timeout(http::upload_timeout(self.http.timeouts.request, len))
            .multipart(form);
        // Never retried here: a lost answer may hide a submitted job.
        let v = self.http.json(WHAT, rb).await?;
        let mut job = parse_job(&v)
            .map_err(|m| ApiError::new(ErrorClass::Ambiguous, format!("{WHAT}: {m}")))?;
        if v.get("status")
            .and_then(Value::as_str)
            .and_then(map_status)
            .is_none()
        {
            job.status = RemoteStatus::Validating;
        }
        job.meta.get_or_insert_with(|| meta.clone());
        Ok(job)
    }

    async fn get(&self, batch_id: &str) -> Result<RemoteBatch, ApiError> {
        const WHAT: &str = "get job status";
        let url = http::join_segment(&self.status_url, batch_id);
        let url = url.as_str();
        let mut v = self
            .http
            .retry(WHAT, || async move {
                self.http.json(WHAT, self.http.req(Method::GET, url)).await
            })
            .await?;
        if let Some(o) = v.as_object_mut() {
            o.entry("id")
                .or_insert_with(|| Value::String(batch_id.to_owned()));
        }
        parse_job(&v).map_err(|m| ApiError::new(ErrorClass::Ambiguous, format!("{WHAT}: {m}")))
    }

    async fn list(&self, after: Option<&str>, limit: u32) -> Result<BatchPage, ApiError> {
        const WHAT: &str = "list jobs";
        let url = self.jobs_url.as_str();
        let limit = limit.clamp(1, 100).to_string();
        let limit = limit.as_str();
        let v = self
            .http
            .retry(WHAT, || async move {
                let mut query: Vec<(&str, &str)> = vec![("limit", limit)];
                if let Some(a) = after {
                    query.push(("after", a));
                }
                self.http
                    .json(WHAT, self.http.req(Method::GET, url).query(&query))
                    .await
            })
            .await?;
        parse_jobs_page(&v)
            .map_err(|m| ApiError::new(ErrorClass::Ambiguous, format!("{WHAT}: {m}")))
    }

    async fn find(
        &self,
        meta: &BatchMeta,
        not_before: i64,
    ) -> Result<Option<RemoteBatch>, ApiError> {
        match crate::find_by_listing(self, meta, not_before).await {
            // A listing entry may be sparse (no `results_url` or `error`):
            // adopt the job as its status endpoint describes it, or a
            // finished job would be emitted without its results.
            Ok(Some(job)) => {
                let mut full = self.get(&job.id).await?;
                full.meta.get_or_insert_with(|| meta.clone());
                if full.created_at.is_none() {
                    full.created_at = job.created_at;
                }
                Ok(Some(full))
            }
            Err(e) if e.is_not_found() || matches!(e.status, Some(405 | 501)) => {
                if !self.warned_no_list.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        url = %self.jobs_url,
                        "the generic server cannot list jobs: adoption by batch_number is unavailable, \
                         a batch whose create answer was lost may be submitted twice"
                    );
                }
                Ok(None)
            }
            other => other,
        }
    }

    async fn download_to(&self, file: &str, to: DownloadTo<'_>) -> Result<Downloaded, ApiError> {
        const WHAT: &str = "download results";
        let url = self.resolve_results_url(file);
        let url = url.as_str();
        self.http
            .retry(WHAT, || async move {
                self.http
                    .download_once(WHAT, url, to, Some(JsonLinesNormalizer::new()))
                    .await
            })
            .await
    }

    async fn cancel(&self, _batch_id: &str) -> Result<RemoteBatch, ApiError> {
        Err(ApiError::permanent(
            "cancel is not part of the generic protocol",
        ))
    }

    async fn delete_file(&self, _file_id: &str) -> Result<(), ApiError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
