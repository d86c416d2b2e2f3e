//! OpenAI-style Files + Batches (OpenAI, Groq, compatible servers) and, with
//! [`OpenAiClient::azure`], Azure OpenAI (PROVIDERS.md §5): `api-key`
//! header, `?api-version=` on every call, `/chat/completions` as the batch
//! endpoint and line `url`, 100,000 requests per file.

use std::path::Path;

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{json, Value};

use crate::http::{self, AuthStyle, DownloadTo, Downloaded, Http, RetryPolicy};
use crate::{
    ApiError, BatchApi, BatchMeta, BatchPage, ClientTimeouts, ErrorClass, Limits, RemoteBatch,
    RemoteBatchError, RemoteStatus, RequestCounts,
};

/// OpenAI: ≤ 50,000 requests and ≤ 200 MB per batch file.
pub const OPENAI_LIMITS: Limits = Limits {
    max_requests: 50_000,
    max_bytes: 200 * 1000 * 1000,
};

/// Azure OpenAI Global Batch: ≤ 100,000 requests and ≤ 200 MB per file.
pub const AZURE_LIMITS: Limits = Limits {
    max_requests: 100_000,
    max_bytes: 200 * 1000 * 1000,
};

/// The `api-version` Azure needs on `…/openai/…` URLs when none is
/// configured (`model.api-version`'s default).
pub const AZURE_DEFAULT_API_VERSION: &str = "2024-10-21";

/// Metadata keys we set on every batch (and read back for adoption).
pub const META_PIPELINE: &str = "mlpredict_pipeline";
pub const META_BATCH_NUMBER: &str = "batch_number";
pub const META_ATTEMPT: &str = "attempt";

/// A client of an OpenAI-style Batch API.
pub struct OpenAiClient {
    http: Http,
    /// e.g. `http://127.0.0.1:8080/v1`, without a trailing slash.
    base: String,
    /// The batch `endpoint`, e.g. `/v1/chat/completions`.
    endpoint_path: String,
    limits: Limits,
    name: &'static str,
    /// Azure: `?api-version=` on every call.
    api_version: Option<String>,
}

impl std::fmt::Debug for OpenAiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiClient")
            .field("name", &self.name)
            .field("base", &self.base)
            .field("endpoint_path", &self.endpoint_path)
            .field("limits", &self.limits)
            .field("api_version", &self.api_version)
            .field("http", &self.http)
            .finish()
    }
}

/// The batch endpoint of an Azure deployment URL path: Azure lines and
/// batches name the operation without `/v1` or the deployment
/// (`/openai/deployments/d/chat/completions` → `/chat/completions`).
pub fn azure_request_path(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or(path);
    for op in [
        "/chat/completions",
        "/embeddings",
        "/responses",
        "/completions",
    ] {
        if path.ends_with(op) {
            return op.to_owned();
        }
    }
    path.to_owned()
}

/// A base URL of Azure's v1 API (`https://r.openai.azure.com/openai/v1`),
/// which takes no dated `api-version`.
pub fn is_azure_v1_base(base: &str) -> bool {
    reqwest::Url::parse(base)
        .map(|u| is_azure_v1_path(u.path()))
        .unwrap_or(false)
}

/// A path of Azure's v1 API: the base (`…/openai/v1`) or an operation
/// under it (`…/openai/v1/chat/completions`).
fn is_azure_v1_path(path: &str) -> bool {
    let path = path.trim_end_matches('/');
    path.ends_with("/v1") || path.contains("/openai/v1/")
}

/// The `api-version` to send to an Azure URL (batch base or synchronous
/// endpoint): the configured one, unless the URL carries one already, or
/// the version is dated (such as the default `2024-10-21`) and the URL is
/// Azure's v1 API, which takes none (`preview`/`latest` are sent there).
pub fn azure_api_version(url: &reqwest::Url, configured: Option<&str>) -> Option<String> {
    let version = configured.map(str::trim).filter(|v| !v.is_empty())?;
    if url.query_pairs().any(|(k, _)| k == "api-version") {
        return None;
    }
    let dated = version.starts_with(|c: char| c.is_ascii_digit());
    if dated && is_azure_v1_path(url.path()) {
        tracing::info!(api_version = %version, "azure v1 api: the dated api-version is not sent");
        return None;
    }
    Some(version.to_owned())
}

impl OpenAiClient {
    /// `base_url` is `ml.batch.api.endpoint` (e.g. `http://127.0.0.1:8080/v1`
    /// or `https://api.openai.com/v1`); `endpoint_path` the batch endpoint
    /// (`/v1/chat/completions`).
    pub fn new(
        base_url: &str,
        api_key: Option<String>,
        endpoint_path: &str,
        timeouts: ClientTimeouts,
    ) -> Result<Self, ApiError> {
        let base = check_url(base_url)?;
        Ok(Self {
            http: Http::new(api_key, AuthStyle::Bearer, timeouts)?,
            base,
            endpoint_path: endpoint_path.to_owned(),
            limits: OPENAI_LIMITS,
            name: "openai",
            api_version: None,
        })
    }

    /// Make this an Azure OpenAI client: `api-key` header, Azure's limits
    /// and operation path, and `api_version` as `?api-version=` on every
    /// call. The v1 API (a base ending in `/openai/v1`) takes no dated
    /// version: a dated one (such as the default `2024-10-21`) is not sent
    /// there, while `preview`/`latest` are.
    pub fn azure(mut self, api_version: Option<String>) -> Result<Self, ApiError> {
        self = self.with_key_header("api-key")?.with_name("azure-openai");
        self.limits = AZURE_LIMITS;
        self.endpoint_path = azure_request_path(&self.endpoint_path);
        let base = reqwest::Url::parse(&self.base)
            .map_err(|e| ApiError::permanent(format!("invalid api endpoint: {e}")))?;
        self.api_version = azure_api_version(&base, api_version.as_deref());
        Ok(self)
    }

    /// The `api-version` sent with every call, if any.
    pub fn api_version(&self) -> Option<&str> {
        self.api_version.as_deref()
    }

    /// The batch endpoint put into `create` (and expected in line `url`s).
    pub fn endpoint_path(&self) -> &str {
        &self.endpoint_path
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.http.retry = retry;
        self
    }

    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Send the key as `<header>: <key>` instead of `Authorization: Bearer`
    /// (Azure OpenAI: `api-key`).
    pub fn with_key_header(mut self, header: &'static str) -> Result<Self, ApiError> {
        self.http.set_auth_style(AuthStyle::Header(header))?;
        Ok(self)
    }

    /// The name used in logs and metrics (e.g. "groq" for a compatible
    /// provider).
    pub fn with_name(mut self, name: &'static str) -> Self {
        self.name = name;
        self
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// `url` with `?api-version=` (Azure), else unchanged.
    fn versioned(&self, url: String) -> String {
        let Some(v) = &self.api_version else {
            return url;
        };
        match reqwest::Url::parse(&url) {
            Ok(mut u) => {
                u.query_pairs_mut().append_pair("api-version", v);
                u.into()
            }
            Err(_) => url,
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

/// Check a configured URL and drop a trailing slash.
pub(crate) fn check_url(url: &str) -> Result<String, ApiError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| ApiError::permanent(format!("invalid api endpoint {url:?}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ApiError::permanent(format!(
            "invalid api endpoint {url:?}: not http(s)"
        )));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

#[async_trait]
impl BatchApi for OpenAiClient {
    fn name(&self) -> &'static str {
        self.name
    }

    fn limits(&self) -> Limits {
        self.limits
    }

    async fn upload(&self, path: &Path, file_name: &str) -> Result<Option<String>, ApiError> {
        const WHAT: &str = "upload batch file";
        let url = self.versioned(self.url("/files"));
        let this = self;
        let url = url.as_str();
        let id = self
            .http
            .retry(WHAT, || async move {
                let (part, len) = http::file_part(WHAT, path, file_name).await?;
                let form = reqwest::multipart::Form::new()
                    .text("purpose", "batch")
                    .part("file", part);
                let rb = this
                    .http
                    .req(Method::POST, url)
                    .timeout(http::upload_timeout(this.http.timeouts.request, len))
                    .multipart(form);
                let v = this.http.json(WHAT, rb).await?;
                match v.get("id").and_then(Value::as_str) {
                    Some(id) if !id.is_empty() => Ok(id.to_owned()),
                    _ => Err(ApiError::new(
                        ErrorClass::Ambiguous,
                        "upload batch file: the answer has no file id",
                    )),
                }
            })
            .await?;
        Ok(Some(id))
    }

    async fn create(
        &self,
        file_id: Option<&str>,
        _path: &Path,
        meta: &BatchMeta,
    ) -> Result<RemoteBatch, ApiError> {
        let Some(file_id) = file_id else {
            return Err(ApiError::permanent(
                "create batch: an openai batch needs an uploaded file id",
            ));
        };
        let body = json!({
            "input_file_id": file_id,
            "endpoint": self.endpoint_path,
            "completion_window": "24h",
            "metadata": meta_to_json(meta),
        });
        // Never retried here: a lost answer may hide a created batch.
        self.batch_call(
            "create batch",
            self.http
                .req(Method::POST, &self.versioned(self.url("/batches")))
                .json(&body),
        )
        .await
    }

    async fn get(&self, batch_id: &str) -> Result<RemoteBatch, ApiError> {
        let url = self.versioned(http::join_segment(&self.url("/batches"), batch_id));
        let url = url.as_str();
        self.http
            .retry("get batch", || async move {
                self.batch_call("get batch", self.http.req(Method::GET, url))
                    .await
            })
            .await
    }

    async fn list(&self, after: Option<&str>, limit: u32) -> Result<BatchPage, ApiError> {
        const WHAT: &str = "list batches";
        let url = self.versioned(self.url("/batches"));
        let url = url.as_str();
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
        parse_page(&v).map_err(|m| ApiError::new(ErrorClass::Ambiguous, format!("{WHAT}: {m}")))
    }

    async fn download_to(&self, file: &str, to: DownloadTo<'_>) -> Result<Downloaded, ApiError> {
        const WHAT: &str = "download result file";
        let url = if file.starts_with("http://") || file.starts_with("https://") {
            file.to_owned()
        } else {
            self.versioned(format!(
                "{}/content",
                http::join_segment(&self.url("/files"), file)
            ))
        };
        let url = url.as_str();
        self.http
            .retry(WHAT, || async move {
                self.http.download_once(WHAT, url, to, None).await
            })
            .await
    }

    async fn cancel(&self, batch_id: &str) -> Result<RemoteBatch, ApiError> {
        let url = self.versioned(format!(
            "{}/cancel",
            http::join_segment(&self.url("/batches"), batch_id)
        ));
        // Not retried inside the client (see the trait).
        self.batch_call("cancel batch", self.http.req(Method::POST, &url))
            .await
    }

    async fn delete_file(&self, file_id: &str) -> Result<(), ApiError> {
        const WHAT: &str = "delete file";
        let url = self.versioned(http::join_segment(&self.url("/files"), file_id));
        let url = url.as_str();
        let res = self
            .http
            .retry(WHAT, || async move {
                self.http
                    .send(WHAT, self.http.req(Method::DELETE, url))
                    .await
                    .map(drop)
            })
            .await;
        match res {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }
}

/// Our metadata as the provider stores it (string values).
pub fn meta_to_json(meta: &BatchMeta) -> Value {
    json!({
        META_PIPELINE: meta.pipeline,
        META_BATCH_NUMBER: meta.batch_number,
        META_ATTEMPT: meta.attempt.to_string(),
    })
}

/// Our metadata back from a provider's `metadata` (an object, or a JSON
/// string of one); `None` unless all three keys are there.
pub fn meta_from_json(v: &Value) -> Option<BatchMeta> {
    if let Value::String(s) = v {
        return serde_json::from_str::<Value>(s)
            .ok()
            .as_ref()
            .and_then(meta_from_json);
    }
    let pipeline = v.get(META_PIPELINE)?.as_str()?.to_owned();
    let batch_number = v.get(META_BATCH_NUMBER)?.as_str()?.to_owned();
    let attempt = match v.get(META_ATTEMPT)? {
        Value::String(s) => s.trim().parse().ok()?,
        Value::Number(n) => u32::try_from(n.as_u64()?).ok()?,
        _ => return None,
    };
    Some(BatchMeta {
        pipeline,
        batch_number,
        attempt,
    })
}

/// OpenAI batch status words (case-insensitive; both spellings of
/// cancelled). `None` for a word we do not know.
pub fn map_status(s: &str) -> Option<RemoteStatus> {
    Some(match s.trim().to_ascii_lowercase().as_str() {
        "validating" => RemoteStatus::Validating,
        "in_progress" => RemoteStatus::InProgress,
        "finalizing" => RemoteStatus::Finalizing,
        "completed" => RemoteStatus::Completed,
        "failed" => RemoteStatus::Failed,
        "expired" => RemoteStatus::Expired,
        "cancelling" | "canceling" => RemoteStatus::Cancelling,
        "cancelled" | "canceled" => RemoteStatus::Cancelled,
        _ => return None,
    })
}

/// A non-empty string field.
pub(crate) fn str_field(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

pub(crate) fn u64_field(v: &Value, key: &str) -> Option<u64> {
    match v.get(key)? {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Unix seconds (a number, or an RFC 3339 string).
pub(crate) fn time_field(v: &Value, key: &str) -> Option<i64> {
    match v.get(key)? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => humantime::parse_rfc3339_weak(s.trim())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64),
        _ => None,
    }
}

/// `errors: {data: [{code, message, line}]}` (or a bare array).
pub(crate) fn parse_errors(v: Option<&Value>) -> Vec<RemoteBatchError> {
    let items = match v {
        Some(Value::Array(a)) => a.as_slice(),
        Some(Value::Object(o)) => match o.get("data") {
            Some(Value::Array(a)) => a.as_slice(),
            _ => &[],
        },
        _ => &[],
    };
    items
        .iter()
        .map(|e| RemoteBatchError {
            code: str_field(e, "code").unwrap_or_else(|| "unknown_error".to_owned()),
            message: str_field(e, "message").unwrap_or_default(),
            line: u64_field(e, "line"),
        })
        .collect()
}

/// An OpenAI Batch object.
pub fn parse_batch(v: &Value) -> Result<RemoteBatch, String> {
    let id = str_field(v, "id").ok_or("the answer has no batch id")?;
    let status_word = v.get("status").and_then(Value::as_str).unwrap_or("");
    let status = map_status(status_word).unwrap_or_else(|| {
        tracing::warn!(batch_id = %id, status = status_word, "unknown batch status, treated as in_progress");
        RemoteStatus::InProgress
    });
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
        output_file: str_field(v, "output_file_id"),
        error_file: str_field(v, "error_file_id"),
        errors: parse_errors(v.get("errors")),
        counts,
        created_at: time_field(v, "created_at"),
        meta: v.get("metadata").and_then(meta_from_json),
        total_tokens: v.get("usage").and_then(|u| u64_field(u, "total_tokens")),
        id,
    })
}

/// `{object: "list", data, first_id, last_id, has_more}`.
pub fn parse_page(v: &Value) -> Result<BatchPage, String> {
    data_page(v, parse_batch)
}

/// A listing `{data, has_more, last_id, …}` of objects read by `parse`.
pub(crate) fn data_page(
    v: &Value,
    parse: fn(&Value) -> Result<RemoteBatch, String>,
) -> Result<BatchPage, String> {
    let data = v
        .get("data")
        .and_then(Value::as_array)
        .ok_or("the answer has no data array")?;
    let has_more = v.get("has_more").and_then(Value::as_bool).unwrap_or(false);
    Ok(page_of(v, data, has_more, parse))
}

/// A listing's page: its readable items (an unreadable one is skipped with
/// a warning) and, when `has_more`, the cursor of the next page (`last_id`,
/// else the last item's id).
pub(crate) fn page_of(
    v: &Value,
    data: &[Value],
    has_more: bool,
    parse: fn(&Value) -> Result<RemoteBatch, String>,
) -> BatchPage {
    let mut batches = Vec::with_capacity(data.len());
    for b in data {
        match parse(b) {
            Ok(b) => batches.push(b),
            Err(e) => tracing::warn!(error = %e, "skipping an unreadable batch in a listing"),
        }
    }
    let next_after = if has_more {
        str_field(v, "last_id").or_else(|| batches.last().map(|b| b.id.clone()))
    } else {
        None
    };
    BatchPage {
        batches,
        next_after,
    }
}

#[cfg(test)]
mod tests;
