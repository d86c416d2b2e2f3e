//! `pipeline.toml` parsing and validation, plus Flink-style `-D key=value`
//! overrides.
//!
//! The TOML is read into a flat map of dotted keys (`[ml.batch]` +
//! `api.endpoint = "…"` → `ml.batch.api.endpoint`), overrides are applied on
//! top, `${ENV_VAR}` references in string values are substituted, and the
//! typed [`PipelineConfig`] is built from it. One table of known keys
//! ([`known_keys`]) drives type checks, defaults, unknown-key suggestions and
//! the reference in `docs/CONFIG.md`. Errors name the key.

mod build;
mod columns;
mod error;
mod flat;
mod handoff;
mod keys;
pub mod sql;
mod value;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use columns::{ColumnType, OnError, OutputConfig, SinkColumn, METADATA};
pub use error::ConfigError;
pub use keys::{KeyInfo, Kind, Req, Scope};
pub use sql::SqlError;

/// Read and validate a configuration file, with `key=value` overrides
/// (the arguments of `-D`, later ones win). `${VAR}` references are
/// resolved from the process environment. Relative paths in the file stay
/// relative (to the working directory, not to the file).
pub fn load(path: &Path, overrides: &[String]) -> Result<PipelineConfig, ConfigError> {
    load_with(path, overrides, Secrets::Resolve)
}

/// Like [`load`], but secret keys (`model.api-key`) are left out, so their
/// `${VAR}` need not be set: for commands that only read state
/// (`mlpredict status`). `model.api_key` is `None`.
pub fn load_without_secrets(
    path: &Path,
    overrides: &[String],
) -> Result<PipelineConfig, ConfigError> {
    load_with(path, overrides, Secrets::Skip)
}

/// Whether secret keys are read (and their `${VAR}` resolved).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Secrets {
    Resolve,
    Skip,
}

fn load_with(
    path: &Path,
    overrides: &[String],
    secrets: Secrets,
) -> Result<PipelineConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    build::build_with(
        &text,
        Some(path),
        overrides,
        &|name| std::env::var(name).ok(),
        secrets,
    )
}

/// Like [`load`], from TOML text.
pub fn parse_str(toml_text: &str, overrides: &[String]) -> Result<PipelineConfig, ConfigError> {
    build::build(toml_text, None, overrides, &|name| std::env::var(name).ok())
}

/// Like [`parse_str`], with `${VAR}` references resolved by `env` instead of
/// the process environment (for tests).
pub fn parse_str_with_env(
    toml_text: &str,
    overrides: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<PipelineConfig, ConfigError> {
    build::build(toml_text, None, overrides, env)
}

/// The table of every known key, in documentation order.
pub fn known_keys() -> &'static [KeyInfo] {
    keys::KEYS
}

/// A string that is never printed: `Debug` and `Display` show `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// `pipeline.name`, default `"default"`; `^[A-Za-z0-9_-]{1,40}$`.
    pub name: String,
    pub source: SourceConfig,
    pub sink: SinkConfig,
    pub model: ModelConfig,
    pub batch: BatchConfig,
    pub sync: SyncConfig,
    pub metrics: MetricsConfig,
    /// `[pricing]` on top of the built-in prices.
    pub pricing: pricing::Pricing,
    pub ui: UiConfig,
    /// `sink.columns` and `pipeline.on-error`.
    pub output: OutputConfig,
}

impl PipelineConfig {
    /// Prefix of batch numbers: `batch_number` if given, else the pipeline
    /// name.
    pub fn batch_number_prefix(&self) -> &str {
        self.batch.batch_number.as_deref().unwrap_or(&self.name)
    }

    /// Batch mode, decoupled: `mlpredict run` submits, `mlpredict poller`
    /// emits.
    pub fn decoupled(&self) -> bool {
        self.batch.enabled && self.batch.mode == BatchMode::Decoupled
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum SourceConfig {
    File { path: PathBuf },
    Kafka(KafkaSource),
}

#[derive(Clone, PartialEq)]
pub struct KafkaSource {
    pub topic: String,
    pub bootstrap_servers: String,
    pub group_id: String,
    /// The other `source.*` keys, without the `source.` prefix
    /// (e.g. `security.protocol`): librdkafka properties.
    pub properties: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SinkConfig {
    File {
        path: PathBuf,
        /// `sink.dlq.path`, default: `path` with `.jsonl` replaced by
        /// `.dlq.jsonl` (or `.dlq.jsonl` appended).
        dlq_path: PathBuf,
    },
    Kafka(KafkaSink),
}

#[derive(Clone, PartialEq)]
pub struct KafkaSink {
    pub topic: String,
    /// Default: the source's.
    pub bootstrap_servers: String,
    /// `sink.dlq.topic`
    pub dlq_topic: Option<String>,
    /// The other `sink.*` keys, without the `sink.` prefix.
    pub properties: BTreeMap<String, String>,
}

/// Whether a librdkafka property probably holds a credential; such values
/// are shown as `***` by the `Debug` impls.
pub fn is_sensitive_property(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.contains("password")
        || n.contains("secret")
        || n.contains("jaas")
        || n == "ssl.key.pem"
        || n == "sasl.oauthbearer.config"
}

static REDACTED: Secret = Secret(String::new());

struct RedactedProperties<'a>(&'a BTreeMap<String, String>);

impl fmt::Debug for RedactedProperties<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| {
                let v: &dyn fmt::Debug = if is_sensitive_property(k) {
                    &REDACTED
                } else {
                    v
                };
                (k, v)
            }))
            .finish()
    }
}

impl fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaSource")
            .field("topic", &self.topic)
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("group_id", &self.group_id)
            .field("properties", &RedactedProperties(&self.properties))
            .finish()
    }
}

impl fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaSink")
            .field("topic", &self.topic)
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("dlq_topic", &self.dlq_topic)
            .field("properties", &RedactedProperties(&self.properties))
            .finish()
    }
}

/// `model.provider`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    /// `"openai"` (default)
    OpenAi,
    /// `"azure-openai"`
    AzureOpenAi,
    /// `"anthropic"`
    Anthropic,
    /// `"generic"`: the FLIP's example protocol.
    Generic,
}

impl Provider {
    /// The configuration spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::AzureOpenAi => "azure-openai",
            Provider::Anthropic => "anthropic",
            Provider::Generic => "generic",
        }
    }
}

/// `model.task`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Task {
    Chat,
    Embeddings,
}

impl Task {
    pub fn as_str(&self) -> &'static str {
        match self {
            Task::Chat => "chat",
            Task::Embeddings => "embeddings",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub provider: Provider,
    /// `model.endpoint`: the per-request URL.
    pub endpoint: String,
    pub task: Task,
    /// URL path of `endpoint` (`/v1/chat/completions`): the `url` of batch
    /// lines.
    pub request_path: String,
    pub api_key: Option<Secret>,
    pub model: String,
    pub system_prompt: Option<String>,
    pub temperature: Option<f64>,
    /// Anthropic: 1024 when unset.
    pub max_tokens: Option<u32>,
    /// Chat: `top_p`.
    pub top_p: Option<f64>,
    /// Chat: stop sequences (`model.stop`, comma-separated).
    pub stop: Vec<String>,
    /// Chat: `seed` (not the anthropic provider).
    pub seed: Option<i64>,
    /// Embeddings: the vector's dimensions.
    pub dimension: Option<u32>,
    pub input: String,
    pub output: String,
    /// Azure OpenAI only (default `2024-10-21`); `None` for other providers
    /// or when configured empty.
    pub api_version: Option<String>,
    pub anthropic_version: String,
}

/// `ml.batch.mode`: who polls and emits the batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BatchMode {
    /// `"inline"` (default): `mlpredict run` submits, polls and emits
    /// (the FLIP's Option 1).
    #[default]
    Inline,
    /// `"decoupled"`: `mlpredict run` only submits and hands each batch
    /// off; `mlpredict poller` polls and emits (Option 2).
    Decoupled,
}

impl BatchMode {
    pub fn as_str(&self) -> &'static str {
        match self {
            BatchMode::Inline => "inline",
            BatchMode::Decoupled => "decoupled",
        }
    }
}

/// Where a decoupled submitter hands its batches to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handoff {
    /// `ml.batch.handoff.topic` (Kafka pipelines), on the source's cluster.
    Topic(String),
    /// `ml.batch.handoff.path` (file pipelines): an append-only JSONL file.
    File(PathBuf),
}

#[derive(Debug, Clone, PartialEq)]
pub struct BatchConfig {
    pub enabled: bool,
    pub mode: BatchMode,
    /// Set in decoupled mode only.
    pub handoff: Option<Handoff>,
    pub size: u32,
    /// Trailing `/` removed.
    pub api_endpoint: Option<String>,
    pub poll_interval: Duration,
    pub poll_max_interval: Duration,
    pub local_dir: PathBuf,
    pub max_wait: Duration,
    pub max_bytes: u64,
    pub max_inflight: u32,
    /// `ml.batch.max.enqueued-tokens`
    pub max_enqueued_tokens: Option<u64>,
    /// `ml.budget.max-usd`
    pub max_usd: Option<f64>,
    pub job_timeout: Duration,
    /// Retries of a request's own failures (5xx lines, missing results,
    /// rejected batches).
    pub max_retries: u32,
    /// How long capacity and availability failures are retried, from a
    /// record's first submission.
    pub retry_deadline: Duration,
    pub cleanup_remote: bool,
    /// Prefix of batch numbers; `None` means the pipeline name (see
    /// [`PipelineConfig::batch_number_prefix`]).
    pub batch_number: Option<String>,
}

/// `ml.predict.output-mode`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputMode {
    /// `"ORDERED"` (default)
    Ordered,
    /// `"ALLOW_UNORDERED"`
    AllowUnordered,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SyncConfig {
    pub max_concurrent_operations: u32,
    pub output_mode: OutputMode,
    /// Budget of one record, from its first call to its final answer,
    /// retries included (Flink's `timeout`).
    pub timeout: Duration,
    /// Timeout of one call.
    pub request_timeout: Duration,
    /// Most retries within `timeout` (Flink's `retry-num`).
    pub max_retries: u32,
}

/// An HTTP endpoint of the process: `{prefix}.port` (unset: off) on
/// `{prefix}.bind`.
#[derive(Debug, Clone, PartialEq)]
pub struct Listener {
    pub port: Option<u16>,
    pub bind: IpAddr,
}

/// `metrics.*`: the Prometheus endpoint.
pub type MetricsConfig = Listener;
/// `ui.*`: the status page.
pub type UiConfig = Listener;
