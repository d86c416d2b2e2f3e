//! The one table of known keys. It drives type checking, defaults, the
//! "only applies when" rules, unknown-key suggestions and (through a unit
//! test) the reference in `docs/CONFIG.md`.

/// What a key's value must look like.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// A non-empty string.
    String,
    /// A string that may be empty (empty has a documented meaning).
    Text,
    /// A name used in ids and file names: `^[A-Za-z0-9_-]{1,40}$`.
    Name,
    /// A non-empty file system path; relative paths stay relative.
    Path,
    /// An `http://` or `https://` URL.
    Url,
    /// A non-empty string that is never printed.
    Secret,
    /// `true` or `false`.
    Bool,
    /// An integer in `min..=max`.
    Int { min: i64, max: i64 },
    /// A number in `min..=max`.
    Float { min: f64, max: f64 },
    /// A humantime duration (`"200ms"`, `"10s"`, `"24h"`), greater than 0.
    Duration,
    /// A size in bytes: an integer, or a string with a unit (`"100MB"`, `"512KiB"`).
    Bytes,
    /// One of the listed words, case-insensitive.
    Enum(&'static [&'static str]),
    /// An IPv4 or IPv6 address.
    IpAddr,
}

impl Kind {
    /// Short type name, as used in the reference tables of `docs/CONFIG.md`.
    pub fn type_name(&self) -> String {
        match self {
            Kind::String | Kind::Text => "string".into(),
            Kind::Name => "name".into(),
            Kind::Path => "path".into(),
            Kind::Url => "URL".into(),
            Kind::Secret => "secret string".into(),
            Kind::Bool => "bool".into(),
            Kind::Int { .. } => "integer".into(),
            Kind::Float { .. } => "float".into(),
            Kind::Duration => "duration".into(),
            Kind::Bytes => "byte size".into(),
            Kind::Enum(options) => options
                .iter()
                .map(|o| format!("`{o}`"))
                .collect::<Vec<_>>()
                .join(" \\| "),
            Kind::IpAddr => "IP address".into(),
        }
    }
}

/// Whether a key must be given, and its default.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Req {
    /// Must be given (within its scope).
    Required,
    /// May be omitted; then the setting is absent.
    Optional,
    /// May be omitted; then this literal is used. It is parsed by the same
    /// rules as a user-given value.
    Default(&'static str),
    /// May be omitted; then a value derived from other keys is used
    /// (described by the text).
    Derived(&'static str),
}

/// When a key may be given at all. Giving it outside its scope is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Always,
    SourceFile,
    SourceKafka,
    SinkFile,
    SinkKafka,
    AzureOpenAi,
    Anthropic,
}

impl Scope {
    /// The condition under which the key applies, for error messages.
    pub fn condition(&self) -> &'static str {
        match self {
            Scope::Always => "always",
            Scope::SourceFile => "source.type = \"file\"",
            Scope::SourceKafka => "source.type = \"kafka\"",
            Scope::SinkFile => "sink.type = \"file\"",
            Scope::SinkKafka => "sink.type = \"kafka\"",
            Scope::AzureOpenAi => "model.provider = \"azure-openai\"",
            Scope::Anthropic => "model.provider = \"anthropic\"",
        }
    }
}

/// One known configuration key.
#[derive(Debug, Clone, Copy)]
pub struct KeyInfo {
    /// Full dotted key, e.g. `ml.batch.size`.
    pub key: &'static str,
    pub kind: Kind,
    pub req: Req,
    pub scope: Scope,
    /// One-line meaning.
    pub doc: &'static str,
}

const U32_MAX: i64 = u32::MAX as i64;

const fn k(key: &'static str, kind: Kind, req: Req, scope: Scope, doc: &'static str) -> KeyInfo {
    KeyInfo {
        key,
        kind,
        req,
        scope,
        doc,
    }
}

use Kind as K;
use Req::*;
use Scope::*;

/// Every key mlpredict understands, in documentation order.
#[rustfmt::skip]
pub static KEYS: &[KeyInfo] = &[
    // ---- pipeline
    k("pipeline.name", K::Name, Default("default"), Always,
      "Name of the pipeline; used in batch numbers, state and file names."),
    k("batch", K::Bool, Derived("ml.batch.enabled"), Always,
      "FLIP alias of `ml.batch.enabled` (top-level key). Giving both with different values is an error."),
    k("batch_number", K::Name, Derived("pipeline.name"), Always,
      "FLIP `batch_number` parameter: prefix of the batch numbers of this pipeline (top-level key)."),
    k("pipeline.on-error", K::Enum(&["emit", "failover"]), Default("emit"), Always,
      "A record whose request failed for good: `emit` writes it with a null output and `ml_predict.status = \"error\"`; `failover` stops the run there without committing that turn (Flink's FAILOVER), so a rerun resumes and retries it."),
    // ---- source
    k("source.type", K::Enum(&["file", "kafka"]), Required, Always,
      "Where records come from."),
    k("source.path", K::Path, Required, SourceFile,
      "Input file: one JSON object per line."),
    k("source.topic", K::String, Required, SourceKafka,
      "Input topic."),
    k("source.bootstrap.servers", K::String, Required, SourceKafka,
      "Kafka brokers, `host:port[,host:port...]`."),
    k("source.group.id", K::String, Derived("mlpredict-<pipeline.name>"), SourceKafka,
      "Consumer group."),
    // ---- sink
    k("sink.type", K::Enum(&["file", "kafka"]), Required, Always,
      "Where predictions go."),
    k("sink.path", K::Path, Required, SinkFile,
      "Output file (JSON lines)."),
    k("sink.dlq.path", K::Path, Derived("sink.path with `.jsonl` replaced by `.dlq.jsonl` (or `.dlq.jsonl` appended)"), SinkFile,
      "Dead-letter file for input that cannot become a request. Must differ from `sink.path`."),
    k("sink.topic", K::String, Required, SinkKafka,
      "Output topic."),
    k("sink.bootstrap.servers", K::String, Derived("source.bootstrap.servers"), SinkKafka,
      "Kafka brokers of the sink; required when the source is not Kafka."),
    k("sink.dlq.topic", K::String, Optional, SinkKafka,
      "Dead-letter topic for input that cannot become a request."),
    k("sink.columns", K::String, Optional, Always,
      "The sink's rows, `name TYPE [FROM field], ...` in Flink SQL types: each row holds exactly these columns (a field the record lacks is null), each value checked against its type (a misfit goes to the dead letters). Unset: the output record as it is."),
    // ---- model
    k("model.provider", K::Enum(&["openai", "azure-openai", "anthropic", "generic"]), Default("openai"), Always,
      "Wire protocol of the provider."),
    k("model.endpoint", K::Url, Required, Always,
      "Per-request URL (Flink CREATE MODEL `endpoint`), e.g. `https://api.openai.com/v1/chat/completions`. Its path is the `url` of batch lines."),
    k("model.task", K::Enum(&["chat", "embeddings"]), Derived("from the path of model.endpoint"), Always,
      "What the model does. Derived when the endpoint path ends in `/chat/completions`, `/embeddings`, or `/messages` (anthropic)."),
    k("model.api-key", K::Secret, Optional, Always,
      "API key. Never printed. Use `\"${OPENAI_API_KEY}\"` to read it from the environment."),
    k("model.model", K::String, Required, Always,
      "Model name (Azure: the deployment name)."),
    k("model.system-prompt", K::Text, Optional, Always,
      "System prompt for chat; empty means none."),
    k("model.temperature", K::Float { min: 0.0, max: 2.0 }, Optional, Always,
      "Sampling temperature, 0 to 2."),
    k("model.max-tokens", K::Int { min: 1, max: U32_MAX }, Derived("1024 for anthropic, else unset"), Always,
      "Maximum output tokens per request."),
    k("model.top-p", K::Float { min: 0.0, max: 1.0 }, Optional, Always,
      "Chat: nucleus sampling `top_p`, 0 to 1."),
    k("model.stop", K::String, Optional, Always,
      "Chat: stop sequences, comma-separated (Flink's CSV list); openai and azure-openai take at most 4."),
    k("model.seed", K::Int { min: i64::MIN, max: i64::MAX }, Optional, Always,
      "Chat: sampling seed (not the anthropic provider, which has none)."),
    k("model.dimension", K::Int { min: 1, max: U32_MAX }, Optional, Always,
      "Embeddings: dimensions of the vector (`dimensions` in the request)."),
    k("model.input", K::String, Required, Always,
      "Field of the input record fed to the model (must be a string)."),
    k("model.output", K::String, Default("prediction"), Always,
      "Field added to the output record; must differ from `model.input` and `ml_predict`."),
    k("model.api-version", K::Text, Default("2024-10-21"), AzureOpenAi,
      "Azure `api-version` query parameter; empty sends none (for `/openai/v1/` endpoints)."),
    k("model.anthropic-version", K::String, Default("2023-06-01"), Anthropic,
      "`anthropic-version` header."),
    // ---- batch mode (FLIP keys)
    k("ml.batch.enabled", K::Bool, Default("false"), Always,
      "Batch mode: send records through the provider Batch API instead of one call per record."),
    k("ml.batch.mode", K::Enum(&["inline", "decoupled"]), Default("inline"), Always,
      "`inline`: `mlpredict run` submits, polls and emits (the FLIP's Option 1). `decoupled`: `mlpredict run` only submits and hands each batch off; `mlpredict poller` polls and emits (Option 2)."),
    k("ml.batch.handoff.topic", K::String, Derived("{pipeline.name}-batches"), SourceKafka,
      "Decoupled mode, Kafka pipelines: the topic the submitter hands its batches to and the pollers consume; created if absent."),
    k("ml.batch.handoff.path", K::Path, Derived("sink.path with `.jsonl` replaced by `.handoff.jsonl` (or `.handoff.jsonl` appended)"), SourceFile,
      "Decoupled mode, file pipelines: the append-only JSONL file the submitter hands its batches to and the poller reads."),
    k("ml.batch.size", K::Int { min: 1, max: 100_000 }, Default("10"), Always,
      "Records per batch (1 to 100000)."),
    k("ml.batch.api.endpoint", K::Url, Optional, Always,
      "Base URL of the Batch API (files and batches live below it), e.g. `https://api.openai.com/v1`. Required when batch mode is on. Trailing `/` removed."),
    k("ml.batch.poll.interval", K::Duration, Default("10s"), Always,
      "First interval between status polls of a batch."),
    k("ml.batch.poll.max-interval", K::Duration, Default("5m"), Always,
      "Cap of the adaptive poll backoff for long batches; at least `ml.batch.poll.interval` (raised to it when unset)."),
    k("ml.batch.local.dir", K::Path, Default("/tmp/flink_batches"), Always,
      "Directory for local batch files."),
    k("ml.batch.max.wait", K::Duration, Default("10m"), Always,
      "Longest time a partial batch waits for more records before it is submitted."),
    k("ml.batch.max.bytes", K::Bytes, Default("100MB"), Always,
      "Largest batch file; a batch is cut earlier when the next request would exceed it."),
    k("ml.batch.max.inflight", K::Int { min: 1, max: U32_MAX }, Default("8"), Always,
      "Most batches submitted but not yet emitted, per pipeline; more back-pressures the source."),
    k("ml.batch.max.enqueued-tokens", K::Int { min: 1, max: i64::MAX }, Optional, Always,
      "The organisation's enqueued-token limit for `model.model` (per model and usage tier; see docs/PROVIDERS.md): the estimated tokens of batches submitted and not finished stay under it, batches are cut to fit, and a request larger than it goes to the dead letters. Unset: no pacing."),
    k("ml.budget.max-usd", K::Float { min: 0.0, max: 1e12 }, Optional, Always,
      "Budget in USD: no new batch is submitted once the estimated cost of everything submitted (emitted batches at their cost, batches in flight at their estimate) would pass it; the run then waits, reading nothing. Needs a price for `model.model`. Unset: no budget."),
    k("ml.batch.job.timeout", K::Duration, Default("24h"), Always,
      "A batch not finished after this long is cancelled; its unfinished records are retried."),
    k("ml.batch.max.retries", K::Int { min: 0, max: U32_MAX }, Default("3"), Always,
      "How often a request that failed by its own fault (5xx line, missing result, batch rejected) is retried before it is emitted as an error; capacity failures do not count."),
    k("ml.batch.retry.deadline", K::Duration, Default("72h"), Always,
      "How long a record is retried after capacity or availability failures (429, expired, quota, unreachable), counted from its first submission; then it is emitted as an error."),
    k("ml.batch.cleanup.remote", K::Bool, Default("true"), Always,
      "Delete the provider's input, output and error files once a batch is emitted."),
    // ---- per-record mode (Flink ML_PREDICT async options)
    k("ml.predict.max-concurrent-operations", K::Int { min: 1, max: U32_MAX }, Default("10"), Always,
      "Batch mode off: most requests in flight at once."),
    k("ml.predict.output-mode", K::Enum(&["ORDERED", "ALLOW_UNORDERED"]), Default("ORDERED"), Always,
      "Batch mode off: emit in input order, or as requests finish."),
    k("ml.predict.timeout", K::Duration, Default("3m"), Always,
      "Batch mode off: budget of one record, from its first call to its final answer, retries included (Flink's `timeout`)."),
    k("ml.predict.request-timeout", K::Duration, Default("30s"), Always,
      "Batch mode off: timeout of one call (at most `ml.predict.timeout`)."),
    k("ml.predict.max-retries", K::Int { min: 0, max: U32_MAX }, Default("100"), Always,
      "Batch mode off: most retries of a record within `ml.predict.timeout` (408, 5xx, timeouts, connection errors; a 429 is waited out and not counted); Flink's `retry-num`."),
    // ---- metrics
    k("metrics.port", K::Int { min: 0, max: 65_535 }, Optional, Always,
      "Serve Prometheus metrics on this port (0: any free port). Unset: no metrics endpoint."),
    k("metrics.bind", K::IpAddr, Default("127.0.0.1"), Always,
      "Address the metrics endpoint listens on."),
    // ---- status page
    k("ui.port", K::Int { min: 0, max: 65_535 }, Optional, Always,
      "`run`: serve the status page (HTML at /, JSON at /status.json) on this port (0: any free port). Unset: no status page."),
    k("ui.bind", K::IpAddr, Default("127.0.0.1"), Always,
      "Address the status page listens on."),
];

/// Kafka client properties that mlpredict sets itself for exactly-once
/// delivery; giving them as pass-through `source.*` / `sink.*` keys is an
/// error. (`bootstrap.servers`, `group.id` and `topic` are ordinary keys.)
pub static MANAGED_KAFKA_PROPERTIES: &[(&str, &str)] = &[
    (
        "source.enable.auto.commit",
        "offsets are committed in the output transaction",
    ),
    (
        "source.isolation.level",
        "mlpredict reads with read_committed",
    ),
    (
        "sink.transactional.id",
        "mlpredict assigns one per instance",
    ),
];

/// The table entry for `key`, if it is a known key.
pub fn lookup(key: &str) -> Option<&'static KeyInfo> {
    KEYS.iter().find(|k| k.key == key)
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The known key an unknown key was most likely meant to be.
///
/// First by edit distance (at most a third of the key's length, 1 to 4),
/// then by a unique dotted-suffix match (`size` → `ml.batch.size`,
/// `ml.batch.batch_number` → `batch_number`).
pub fn suggest(unknown: &str) -> Option<&'static str> {
    let limit = (unknown.chars().count() / 3).clamp(1, 4);
    let best = KEYS
        .iter()
        .map(|k| (edit_distance(unknown, k.key), k.key))
        .min_by_key(|(d, _)| *d);
    if let Some((d, key)) = best {
        if d <= limit {
            return Some(key);
        }
    }
    let candidates: Vec<&'static str> = KEYS
        .iter()
        .map(|k| k.key)
        .filter(|k| {
            unknown
                .strip_suffix(k)
                .is_some_and(|rest| rest.ends_with('.'))
                || k.strip_suffix(unknown)
                    .is_some_and(|rest| rest.ends_with('.'))
        })
        .collect();
    match candidates.as_slice() {
        [one] => Some(one),
        _ => None,
    }
}
