//! Provider Batch API clients behind one trait, in our terms (upload a batch
//! file, create a batch, poll, fetch results, cancel, find by batch_number),
//! plus each provider's wire format: request lines and result lines.
//!
//! Clients retry idempotent calls (GET, upload, delete) themselves, honouring
//! `retry-after-ms` / `retry-after`; they never retry `create`, because a
//! create whose answer was lost may have been acted on: the core decides
//! (look the batch up by batch_number first, then create again).

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;

pub mod anthropic;
pub mod error;
pub mod generic;
pub mod http;
mod listing;
pub mod openai;
pub mod sync;
pub mod wire;

pub use anthropic::AnthropicClient;
pub use error::{ApiError, ErrorClass};
pub use generic::GenericClient;
pub use http::{ApiKey, DownloadTo, Downloaded, RetryPolicy};
pub use listing::find_by_listing;
pub use openai::OpenAiClient;

/// What we put into a provider batch so that it can be found again after a
/// crash (write-ahead rule 2 and adoption, DESIGN.md §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchMeta {
    pub pipeline: String,
    pub batch_number: String,
    pub attempt: u32,
}

/// Status of a provider batch, mapped from each provider's own words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RemoteStatus {
    Validating,
    InProgress,
    Finalizing,
    Completed,
    Failed,
    Expired,
    Cancelling,
    Cancelled,
}

impl RemoteStatus {
    /// A terminal status: the batch will not change any more.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Failed | Self::Expired | Self::Cancelled
        )
    }
}

/// A batch-level error reported by the provider (`errors.data[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteBatchError {
    pub code: String,
    pub message: String,
    pub line: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounts {
    pub total: u64,
    pub completed: u64,
    pub failed: u64,
}

/// A provider batch as we need to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteBatch {
    pub id: String,
    pub status: RemoteStatus,
    /// File id (OpenAI, Azure) or results URL (Anthropic, generic) of the
    /// successes; `None` also when the provider sent `""`.
    pub output_file: Option<String>,
    /// File id of the failures, where the provider keeps them apart.
    pub error_file: Option<String>,
    pub errors: Vec<RemoteBatchError>,
    pub counts: Option<RequestCounts>,
    /// Unix seconds.
    pub created_at: Option<i64>,
    /// Our metadata, when the provider echoes it back.
    pub meta: Option<BatchMeta>,
    /// Total tokens used, when reported.
    pub total_tokens: Option<u64>,
}

/// One page of a newest-first listing.
#[derive(Debug, Clone)]
pub struct BatchPage {
    pub batches: Vec<RemoteBatch>,
    /// Pass as `after` to get the next (older) page; `None` when no more.
    pub next_after: Option<String>,
}

/// Provider limits that bound a batch file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_requests: u64,
    pub max_bytes: u64,
}

#[async_trait]
pub trait BatchApi: Send + Sync {
    /// Short provider name for logs and metrics ("openai", "generic", ...).
    fn name(&self) -> &'static str;

    fn limits(&self) -> Limits;

    /// Whether a listing (`list`) shows each batch's current status, so that
    /// one listing can poll many batches at once. A provider whose listing
    /// may be sparse or missing answers `false`: poll each batch with `get`.
    fn listing_reports_status(&self) -> bool {
        true
    }

    /// Upload a batch file; returns its file id, or `None` for providers
    /// whose create call carries the requests itself (Anthropic, generic).
    async fn upload(&self, path: &Path, file_name: &str) -> Result<Option<String>, ApiError>;

    /// Create the batch. `file_id` is what `upload` returned; `path` is the
    /// same local file, for providers that send it with the create call.
    /// Never retried inside the client.
    async fn create(
        &self,
        file_id: Option<&str>,
        path: &Path,
        meta: &BatchMeta,
    ) -> Result<RemoteBatch, ApiError>;

    async fn get(&self, batch_id: &str) -> Result<RemoteBatch, ApiError>;

    /// Newest-first listing, for adoption and list-based polling.
    async fn list(&self, after: Option<&str>, limit: u32) -> Result<BatchPage, ApiError>;

    /// Download a result file (`output_file` / `error_file` of a batch)
    /// into a local file or memory (see [`download`](Self::download) and
    /// [`fetch`](Self::fetch)).
    async fn download_to(&self, file: &str, to: DownloadTo<'_>) -> Result<Downloaded, ApiError>;

    /// Stream a result file to `dest`; returns the bytes written. The file
    /// is fsynced.
    async fn download(&self, file: &str, dest: &Path) -> Result<u64, ApiError> {
        match self.download_to(file, DownloadTo::File(dest)).await? {
            Downloaded::File(n) => Ok(n),
            Downloaded::Memory(b) => Ok(b.len() as u64),
        }
    }

    /// A result file's bytes, in memory: for a join that reads them once
    /// (the provider keeps them, so nothing needs to be on disk).
    async fn fetch(&self, file: &str) -> Result<Vec<u8>, ApiError> {
        match self.download_to(file, DownloadTo::Memory).await? {
            Downloaded::Memory(b) => Ok(b),
            Downloaded::File(_) => unreachable!("a download to memory returns bytes"),
        }
    }

    async fn cancel(&self, batch_id: &str) -> Result<RemoteBatch, ApiError>;

    /// Delete a provider file (cleanup.remote); a 404 counts as done.
    async fn delete_file(&self, file_id: &str) -> Result<(), ApiError>;

    /// Find a batch created with this exact batch_number and attempt, looking
    /// newest-first back to `not_before` (Unix seconds). Default: page
    /// through `list`.
    async fn find(
        &self,
        meta: &BatchMeta,
        not_before: i64,
    ) -> Result<Option<RemoteBatch>, ApiError> {
        find_by_listing(self, meta, not_before).await
    }

    /// [`find`](Self::find), told how many requests the batch file holds.
    /// Providers whose batches carry no metadata (Anthropic) use the count
    /// to rule out other batches; the default ignores it.
    async fn find_with_count(
        &self,
        meta: &BatchMeta,
        not_before: i64,
        requests: u64,
    ) -> Result<Option<RemoteBatch>, ApiError> {
        let _ = requests;
        self.find(meta, not_before).await
    }
}

/// Timeouts shared by every client.
#[derive(Debug, Clone, Copy)]
pub struct ClientTimeouts {
    pub connect: Duration,
    pub request: Duration,
}

/// Which wire protocol a pipeline talks (`ml.batch.api.provider`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// OpenAI and compatible servers (Groq, vLLM-style servers, the mock).
    OpenAi,
    /// Azure OpenAI: OpenAI objects, its own URLs, `api-key` header and
    /// `api-version` query (PROVIDERS.md §5).
    AzureOpenAi,
    /// Anthropic Message Batches (PROVIDERS.md §6).
    Anthropic,
    /// The FLIP's example protocol (PROVIDERS.md §8).
    Generic,
}

impl ProviderKind {
    /// The shape of this provider's request and result lines. Azure uses
    /// OpenAI lines. (An `Option` for providers without batch support.)
    pub fn wire_format(self) -> Option<wire::WireFormat> {
        match self {
            Self::OpenAi | Self::AzureOpenAi => Some(wire::WireFormat::OpenAi),
            Self::Generic => Some(wire::WireFormat::Generic),
            Self::Anthropic => Some(wire::WireFormat::Anthropic),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::AzureOpenAi => "azure-openai",
            Self::Anthropic => "anthropic",
            Self::Generic => "generic",
        }
    }
}

impl std::str::FromStr for ProviderKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "openai" | "openai-compatible" | "groq" => Ok(Self::OpenAi),
            "azure" | "azure-openai" | "azure_openai" => Ok(Self::AzureOpenAi),
            "anthropic" => Ok(Self::Anthropic),
            "generic" | "flip" => Ok(Self::Generic),
            other => Err(format!(
                "unknown provider {other:?} (openai, azure-openai, anthropic, generic)"
            )),
        }
    }
}

impl std::fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything [`connect`] needs.
#[derive(Clone)]
pub struct ConnectOptions {
    /// `ml.batch.api.endpoint`: the OpenAI base URL
    /// (`https://api.openai.com/v1`), the Azure one
    /// (`https://{resource}.openai.azure.com/openai` or `…/openai/v1`), the
    /// Anthropic one (`https://api.anthropic.com/v1`) or the generic submit
    /// URL (`…/ml/api/batch_predict`).
    pub endpoint: String,
    /// Generic only: the status URL, when not derived from `endpoint`.
    pub status_endpoint: Option<String>,
    pub api_key: Option<String>,
    /// The batch endpoint path put into lines and `create`
    /// (`/v1/chat/completions`; Azure: `/chat/completions`).
    pub request_path: String,
    /// Azure only: the `api-version` query parameter (`None`: not sent).
    pub api_version: Option<String>,
    /// Anthropic only: the `anthropic-version` header (`None`:
    /// [`anthropic::DEFAULT_ANTHROPIC_VERSION`]).
    pub anthropic_version: Option<String>,
    pub timeouts: ClientTimeouts,
    pub retry: RetryPolicy,
    /// Override the provider's file limits.
    pub limits: Option<Limits>,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("endpoint", &self.endpoint)
            .field("status_endpoint", &self.status_endpoint)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("request_path", &self.request_path)
            .field("api_version", &self.api_version)
            .field("anthropic_version", &self.anthropic_version)
            .field("timeouts", &self.timeouts)
            .field("retry", &self.retry)
            .field("limits", &self.limits)
            .finish()
    }
}

/// Build the client for a provider.
pub fn connect(kind: ProviderKind, opts: ConnectOptions) -> Result<Box<dyn BatchApi>, ApiError> {
    match kind {
        ProviderKind::OpenAi => {
            let mut c = OpenAiClient::new(
                &opts.endpoint,
                opts.api_key,
                &opts.request_path,
                opts.timeouts,
            )?
            .with_retry(opts.retry);
            if let Some(l) = opts.limits {
                c = c.with_limits(l);
            }
            Ok(Box::new(c))
        }
        ProviderKind::Generic => {
            let mut c = GenericClient::new(
                &opts.endpoint,
                opts.status_endpoint,
                opts.api_key,
                opts.timeouts,
            )?
            .with_retry(opts.retry);
            if let Some(l) = opts.limits {
                c = c.with_limits(l);
            }
            Ok(Box::new(c))
        }
        ProviderKind::AzureOpenAi => {
            let mut c = OpenAiClient::new(
                &opts.endpoint,
                opts.api_key,
                &opts.request_path,
                opts.timeouts,
            )?
            .azure(opts.api_version)?
            .with_retry(opts.retry);
            if let Some(l) = opts.limits {
                c = c.with_limits(l);
            }
            Ok(Box::new(c))
        }
        ProviderKind::Anthropic => {
            let mut c = AnthropicClient::new(
                &opts.endpoint,
                opts.api_key,
                opts.anthropic_version.as_deref(),
                opts.timeouts,
            )?
            .with_retry(opts.retry);
            if let Some(l) = opts.limits {
                c = c.with_limits(l);
            }
            Ok(Box::new(c))
        }
    }
}
