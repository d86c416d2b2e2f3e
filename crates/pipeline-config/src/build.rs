//! From the flat map to [`PipelineConfig`].
//!
//! Order of checks, so that the first error is the most useful one:
//! syntax → overrides → source/sink type → unknown keys → keys outside their
//! scope → each section in turn.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::flat::{self, FlatMap, Scalar};
use crate::keys::{self, KeyInfo, Req, Scope};
use crate::value::{self, Typed};
use crate::*;

mod extra;

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

pub(crate) struct Ctx<'a> {
    map: FlatMap,
    env: Env<'a>,
}

fn info(key: &str) -> &'static KeyInfo {
    keys::lookup(key).unwrap_or_else(|| panic!("internal: `{key}` missing from the key table"))
}

impl Ctx<'_> {
    pub(crate) fn is_set(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// The typed value as given, or the table default; `None` when neither.
    fn get(&self, key: &str) -> Result<Option<Typed>, ConfigError> {
        let info = info(key);
        if let Some(r) = flat::resolve(&self.map, key, self.env)? {
            return value::typed(info, &r).map(Some);
        }
        match info.req {
            Req::Default(lit) => {
                let r = flat::Resolved {
                    value: Scalar::Str(lit.to_string()),
                    raw: None,
                    template: None,
                };
                value::typed(info, &r).map(Some)
            }
            Req::Required => Err(ConfigError::MissingKey(key.to_string())),
            Req::Optional | Req::Derived(_) => Ok(None),
        }
    }

    pub(crate) fn str_opt(&self, key: &str) -> Result<Option<String>, ConfigError> {
        Ok(self.get(key)?.map(|t| match t {
            Typed::Str(s) => s,
            other => unreachable!("{key}: {other:?}"),
        }))
    }

    pub(crate) fn str(&self, key: &str) -> Result<String, ConfigError> {
        self.str_opt(key)?
            .ok_or_else(|| ConfigError::MissingKey(key.to_string()))
    }

    fn path(&self, key: &str) -> Result<PathBuf, ConfigError> {
        self.str(key).map(PathBuf::from)
    }

    fn bool_opt(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        Ok(self.get(key)?.map(|t| match t {
            Typed::Bool(b) => b,
            other => unreachable!("{key}: {other:?}"),
        }))
    }

    fn bool(&self, key: &str) -> Result<bool, ConfigError> {
        Ok(self
            .bool_opt(key)?
            .expect("bool keys read this way have defaults"))
    }

    fn int_opt(&self, key: &str) -> Result<Option<i64>, ConfigError> {
        Ok(self.get(key)?.map(|t| match t {
            Typed::Int(i) => i,
            other => unreachable!("{key}: {other:?}"),
        }))
    }

    fn u32_opt(&self, key: &str) -> Result<Option<u32>, ConfigError> {
        // the table's ranges keep u32 keys within u32
        Ok(self.int_opt(key)?.map(|i| u32::try_from(i).expect("range")))
    }

    fn u32(&self, key: &str) -> Result<u32, ConfigError> {
        Ok(self.u32_opt(key)?.expect("u32 keys have defaults"))
    }

    fn duration(&self, key: &str) -> Result<Duration, ConfigError> {
        match self.get(key)? {
            Some(Typed::Duration(d)) => Ok(d),
            other => unreachable!("{key}: {other:?}"),
        }
    }

    fn must_be_set(&self, key: &str) -> Result<(), ConfigError> {
        if self.is_set(key) {
            Ok(())
        } else {
            Err(ConfigError::MissingKey(key.to_string()))
        }
    }

    /// The pass-through `prefix.*` keys that are not in the key table, as
    /// librdkafka properties (prefix stripped, values as strings).
    fn properties(&self, prefix: &str) -> Result<BTreeMap<String, String>, ConfigError> {
        let mut out = BTreeMap::new();
        for key in self.map.keys() {
            let Some(name) = key.strip_prefix(prefix) else {
                continue;
            };
            if keys::lookup(key).is_some() {
                continue;
            }
            let r = flat::resolve(&self.map, key, self.env)?.expect("present");
            let text = match (&r.value, &r.raw) {
                (Scalar::Str(s), _) => s.clone(),
                (_, Some(raw)) => raw.clone(),
                (Scalar::Int(i), None) => i.to_string(),
                (Scalar::Float(f), None) => f.to_string(),
                (Scalar::Bool(b), None) => b.to_string(),
                (Scalar::Other(what), None) => {
                    return Err(ConfigError::invalid(
                        key,
                        format!("expected a string, number or boolean (a Kafka client property), got {what}"),
                    ))
                }
            };
            out.insert(name.to_string(), text);
        }
        Ok(out)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Io {
    File,
    Kafka,
}

fn io_type(ctx: &Ctx<'_>, key: &str) -> Result<Option<Io>, ConfigError> {
    if !ctx.is_set(key) {
        return Ok(None);
    }
    Ok(match ctx.str(key)?.as_str() {
        "kafka" => Some(Io::Kafka),
        _ => Some(Io::File),
    })
}

/// Default DLQ path: `out.jsonl` → `out.dlq.jsonl`, `out.json` →
/// `out.json.dlq.jsonl`.
fn default_dlq_path(path: &Path) -> PathBuf {
    beside(path, "dlq")
}

/// A file beside the output: `out.jsonl` → `out.{tag}.jsonl`, `out.json`
/// → `out.json.{tag}.jsonl`.
pub(crate) fn beside(path: &Path, tag: &str) -> PathBuf {
    let s = path.as_os_str().to_string_lossy();
    match s.strip_suffix(".jsonl") {
        Some(stem) => PathBuf::from(format!("{stem}.{tag}.jsonl")),
        None => PathBuf::from(format!("{s}.{tag}.jsonl")),
    }
}

/// Files are read and written later; a directory there would fail then
/// with an OS error that names neither the key nor the path.
fn not_a_dir(key: &str, path: PathBuf) -> Result<PathBuf, ConfigError> {
    if path.is_dir() {
        return Err(ConfigError::invalid(
            key,
            format!("{} is a directory; give a file's path", path.display()),
        ));
    }
    Ok(path)
}

pub(crate) fn build(
    text: &str,
    path: Option<&Path>,
    overrides: &[String],
    env: Env<'_>,
) -> Result<PipelineConfig, ConfigError> {
    build_with(text, path, overrides, env, Secrets::Resolve)
}

pub(crate) fn build_with(
    text: &str,
    path: Option<&Path>,
    overrides: &[String],
    env: Env<'_>,
    secrets: Secrets,
) -> Result<PipelineConfig, ConfigError> {
    let mut map = flat::parse_toml(text, path)?;
    flat::apply_overrides(&mut map, overrides)?;
    build_map(map, env, secrets)
}

/// Validate a flat map (from TOML or from SQL, `-D` overrides applied):
/// the one validation both front ends share.
pub(crate) fn build_map(
    mut map: FlatMap,
    env: Env<'_>,
    secrets: Secrets,
) -> Result<PipelineConfig, ConfigError> {
    if secrets == Secrets::Skip {
        map.retain(|key, _| keys::lookup(key).is_none_or(|k| k.kind != Kind::Secret));
    }
    let ctx = Ctx { map, env };

    // -- which namespaces pass through
    let source_type = io_type(&ctx, "source.type")?;
    let sink_type = io_type(&ctx, "sink.type")?;
    check_unknown(&ctx, source_type, sink_type)?;
    ctx.must_be_set("source.type")?;
    ctx.must_be_set("sink.type")?;
    let (source_type, sink_type) = (source_type.unwrap(), sink_type.unwrap());
    for (key, why) in keys::MANAGED_KAFKA_PROPERTIES {
        if ctx.is_set(key) {
            return Err(ConfigError::invalid(
                key,
                format!("is managed by mlpredict ({why}); remove it"),
            ));
        }
    }
    let provider = match ctx.str("model.provider")?.as_str() {
        "azure-openai" => Provider::AzureOpenAi,
        "anthropic" => Provider::Anthropic,
        "generic" => Provider::Generic,
        _ => Provider::OpenAi,
    };
    crate::handoff::check_kind(&ctx, source_type == Io::Kafka)?;
    check_scopes(&ctx, source_type, sink_type, provider)?;

    // -- pipeline
    let name = ctx.str("pipeline.name")?;

    // -- source
    let source = match source_type {
        Io::File => SourceConfig::File {
            path: not_a_dir("source.path", ctx.path("source.path")?)?,
        },
        Io::Kafka => SourceConfig::Kafka(KafkaSource {
            topic: ctx.str("source.topic")?,
            bootstrap_servers: ctx.str("source.bootstrap.servers")?,
            group_id: ctx
                .str_opt("source.group.id")?
                .unwrap_or_else(|| format!("mlpredict-{name}")),
            properties: ctx.properties("source.")?,
        }),
    };

    // -- sink
    let sink = match sink_type {
        Io::File => {
            let path = not_a_dir("sink.path", ctx.path("sink.path")?)?;
            if let SourceConfig::File { path: input } = &source {
                if *input == path {
                    return Err(ConfigError::invalid(
                        "sink.path",
                        "must differ from source.path",
                    ));
                }
            }
            let dlq_path = match ctx.str_opt("sink.dlq.path")? {
                Some(p) => not_a_dir("sink.dlq.path", PathBuf::from(p))?,
                None => default_dlq_path(&path),
            };
            if dlq_path == path {
                return Err(ConfigError::invalid(
                    "sink.dlq.path",
                    "must differ from sink.path",
                ));
            }
            if let SourceConfig::File { path: input } = &source {
                if *input == dlq_path {
                    return Err(ConfigError::invalid(
                        "sink.dlq.path",
                        "must differ from source.path",
                    ));
                }
            }
            SinkConfig::File { path, dlq_path }
        }
        Io::Kafka => {
            let topic = ctx.str("sink.topic")?;
            let bootstrap_servers = match (ctx.str_opt("sink.bootstrap.servers")?, &source) {
                (Some(b), _) => b,
                (None, SourceConfig::Kafka(s)) => s.bootstrap_servers.clone(),
                (None, SourceConfig::File { .. }) => {
                    return Err(ConfigError::RequiredWhen {
                        key: "sink.bootstrap.servers".into(),
                        condition: "source.type = \"file\"".into(),
                    })
                }
            };
            let dlq_topic = ctx.str_opt("sink.dlq.topic")?;
            if let SourceConfig::Kafka(s) = &source {
                if s.topic == topic && s.bootstrap_servers == bootstrap_servers {
                    return Err(ConfigError::invalid(
                        "sink.topic",
                        "must differ from source.topic on the same cluster",
                    ));
                }
            }
            if dlq_topic.as_deref() == Some(topic.as_str()) {
                return Err(ConfigError::invalid(
                    "sink.dlq.topic",
                    "must differ from sink.topic",
                ));
            }
            SinkConfig::Kafka(KafkaSink {
                topic,
                bootstrap_servers,
                dlq_topic,
                properties: ctx.properties("sink.")?,
            })
        }
    };

    let model = build_model(&ctx, provider)?;
    let batch = build_batch(&ctx, &name, &source, &sink)?;
    let output = extra::output(&ctx, &model.output)?;

    let sync = SyncConfig {
        max_concurrent_operations: ctx.u32("ml.predict.max-concurrent-operations")?,
        output_mode: match ctx.str("ml.predict.output-mode")?.as_str() {
            "ALLOW_UNORDERED" => OutputMode::AllowUnordered,
            _ => OutputMode::Ordered,
        },
        timeout: ctx.duration("ml.predict.timeout")?,
        request_timeout: ctx.duration("ml.predict.request-timeout")?,
        max_retries: ctx.u32("ml.predict.max-retries")?,
    };

    let metrics = listener(&ctx, "metrics")?;
    let ui = listener(&ctx, "ui")?;

    let pricing = build_pricing(&ctx)?;

    Ok(PipelineConfig {
        name,
        source,
        sink,
        model,
        batch,
        sync,
        metrics,
        pricing,
        ui,
        output,
    })
}

/// `{prefix}.port` and `{prefix}.bind`.
fn listener(ctx: &Ctx<'_>, prefix: &str) -> Result<Listener, ConfigError> {
    let (port, bind) = (format!("{prefix}.port"), format!("{prefix}.bind"));
    Ok(Listener {
        port: ctx
            .int_opt(&port)?
            .map(|p| u16::try_from(p).expect("range")),
        bind: match ctx.get(&bind)? {
            Some(Typed::Ip(ip)) => ip,
            other => unreachable!("{bind}: {other:?}"),
        },
    })
}

/// `[pricing]`: its keys are models, so they are not in the key table;
/// the pricing crate checks them and names the key.
fn build_pricing(ctx: &Ctx<'_>) -> Result<pricing::Pricing, ConfigError> {
    let mut entries = Vec::new();
    for key in ctx.map.keys() {
        let Some(rest) = key.strip_prefix(PRICING) else {
            continue;
        };
        let r = flat::resolve(&ctx.map, key, ctx.env)?.expect("present");
        let number = match (&r.value, r.text()) {
            (Scalar::Int(i), _) => Some(*i as f64),
            (Scalar::Float(f), _) => Some(*f),
            (_, Some(text)) => text.trim().parse::<f64>().ok(),
            _ => None,
        };
        let value = match number {
            Some(n) => pricing::RawValue::Number(n),
            None => pricing::RawValue::Other(r.shown()),
        };
        entries.push((rest, value));
    }
    pricing::Pricing::with_entries(entries).map_err(|e| ConfigError::Invalid {
        key: e.key,
        message: e.message,
    })
}

/// The prefix of `[pricing]` keys.
const PRICING: &str = "pricing.";

/// Every key must be known, or a pass-through `source.*` / `sink.*` key of a
/// Kafka source / sink.
fn check_unknown(ctx: &Ctx<'_>, source: Option<Io>, sink: Option<Io>) -> Result<(), ConfigError> {
    for key in ctx.map.keys() {
        if keys::lookup(key).is_some() || key.starts_with(PRICING) {
            continue;
        }
        let (io, type_key) = if key.starts_with("source.") {
            (Some(source), "source.type")
        } else if key.starts_with("sink.") {
            (Some(sink), "sink.type")
        } else {
            (None, "")
        };
        if io == Some(Some(Io::Kafka)) {
            continue; // librdkafka property
        }
        let suggestion = keys::suggest(key);
        // `[source]` without `type`, plus Kafka properties: the missing type
        // is the real problem, unless the key looks like a typo.
        if io == Some(None) && suggestion.is_none() {
            return Err(ConfigError::MissingKey(type_key.to_string()));
        }
        return Err(ConfigError::UnknownKey {
            key: key.clone(),
            suggestion: suggestion.map(str::to_string),
        });
    }
    Ok(())
}

/// Keys given outside their scope (`source.topic` for a file source, …).
fn check_scopes(
    ctx: &Ctx<'_>,
    source: Io,
    sink: Io,
    provider: Provider,
) -> Result<(), ConfigError> {
    for key in ctx.map.keys() {
        let Some(info) = keys::lookup(key) else {
            continue;
        };
        let applies = match info.scope {
            Scope::Always => true,
            Scope::SourceFile => source == Io::File,
            Scope::SourceKafka => source == Io::Kafka,
            Scope::SinkFile => sink == Io::File,
            Scope::SinkKafka => sink == Io::Kafka,
            Scope::AzureOpenAi => provider == Provider::AzureOpenAi,
            Scope::Anthropic => provider == Provider::Anthropic,
        };
        if !applies {
            return Err(ConfigError::NotApplicable {
                key: key.clone(),
                condition: info.scope.condition().to_string(),
            });
        }
    }
    Ok(())
}

fn build_model(ctx: &Ctx<'_>, provider: Provider) -> Result<ModelConfig, ConfigError> {
    let endpoint = ctx.str("model.endpoint")?;
    let request_path = value::url_path(&endpoint).expect("validated URL");
    let derived = if request_path.ends_with("/chat/completions") {
        Some(Task::Chat)
    } else if request_path.ends_with("/embeddings") {
        Some(Task::Embeddings)
    } else if provider == Provider::Anthropic && request_path.ends_with("/messages") {
        Some(Task::Chat)
    } else {
        None
    };
    let explicit = ctx.str_opt("model.task")?;
    if provider == Provider::Anthropic && explicit.as_deref() == Some("embeddings") {
        return Err(ConfigError::invalid(
            "model.task",
            "the anthropic provider supports only \"chat\"",
        ));
    }
    let task = match (explicit.as_deref(), derived) {
        (Some(t), derived) => {
            let task = if t == "embeddings" {
                Task::Embeddings
            } else {
                Task::Chat
            };
            if derived.is_some_and(|d| d != task) {
                return Err(ConfigError::invalid(
                    "model.task",
                    format!(
                        "\"{}\" does not match the path of model.endpoint ({request_path})",
                        task.as_str()
                    ),
                ));
            }
            task
        }
        (None, Some(d)) => d,
        (None, None) => {
            return Err(ConfigError::invalid(
                "model.endpoint",
                format!(
                    "cannot derive the task from the path {request_path:?} (expected it to end in /chat/completions or /embeddings{}); set model.task",
                    if provider == Provider::Anthropic { " or /messages" } else { "" }
                ),
            ))
        }
    };
    if provider == Provider::Anthropic && task == Task::Embeddings {
        // an /embeddings endpoint with the anthropic provider
        return Err(ConfigError::invalid(
            "model.endpoint",
            "the anthropic provider supports only chat (/v1/messages)",
        ));
    }

    let input = ctx.str("model.input")?;
    let output = ctx.str("model.output")?;
    if output == input {
        return Err(ConfigError::invalid(
            "model.output",
            "must differ from model.input",
        ));
    }
    if output == "ml_predict" {
        return Err(ConfigError::invalid(
            "model.output",
            "\"ml_predict\" is reserved for the status field of output records",
        ));
    }

    let max_tokens = match ctx.u32_opt("model.max-tokens")? {
        None if provider == Provider::Anthropic => Some(1024),
        other => other,
    };
    let api_version = if provider == Provider::AzureOpenAi {
        ctx.str_opt("model.api-version")?.filter(|v| !v.is_empty())
    } else {
        None
    };

    let sampling = extra::sampling(ctx, provider, task)?;
    Ok(ModelConfig {
        provider,
        endpoint,
        task,
        request_path,
        api_key: ctx.str_opt("model.api-key")?.map(Secret),
        model: ctx.str("model.model")?,
        system_prompt: ctx
            .str_opt("model.system-prompt")?
            .filter(|p| !p.is_empty()),
        temperature: match ctx.get("model.temperature")? {
            Some(Typed::Float(f)) => Some(f),
            None => None,
            other => unreachable!("model.temperature: {other:?}"),
        },
        max_tokens,
        top_p: sampling.top_p,
        stop: sampling.stop,
        seed: sampling.seed,
        dimension: sampling.dimension,
        input,
        output,
        api_version,
        anthropic_version: ctx.str("model.anthropic-version")?,
    })
}

fn build_batch(
    ctx: &Ctx<'_>,
    name: &str,
    source: &SourceConfig,
    sink: &SinkConfig,
) -> Result<BatchConfig, ConfigError> {
    let configured = ctx.bool("ml.batch.enabled")?;
    let enabled = match ctx.bool_opt("batch")? {
        Some(alias) if ctx.is_set("ml.batch.enabled") && alias != configured => {
            return Err(ConfigError::invalid(
                "batch",
                format!("is an alias of ml.batch.enabled, but batch = {alias} and ml.batch.enabled = {configured}; give only one"),
            ))
        }
        Some(alias) => alias,
        None => configured,
    };

    let api_endpoint = ctx
        .str_opt("ml.batch.api.endpoint")?
        .map(|e| e.trim_end_matches('/').to_string());
    if enabled && api_endpoint.is_none() {
        return Err(ConfigError::RequiredWhen {
            key: "ml.batch.api.endpoint".into(),
            condition: "ml.batch.enabled = true".into(),
        });
    }

    let poll_interval = ctx.duration("ml.batch.poll.interval")?;
    let poll_max_interval = if ctx.is_set("ml.batch.poll.max-interval") {
        let max = ctx.duration("ml.batch.poll.max-interval")?;
        if max < poll_interval {
            return Err(ConfigError::invalid(
                "ml.batch.poll.max-interval",
                format!(
                    "must be at least ml.batch.poll.interval ({}), got {}",
                    humantime::format_duration(poll_interval),
                    humantime::format_duration(max)
                ),
            ));
        }
        max
    } else {
        ctx.duration("ml.batch.poll.max-interval")?
            .max(poll_interval)
    };

    let (mode, handoff) = crate::handoff::build(ctx, enabled, name, source, sink)?;

    Ok(BatchConfig {
        enabled,
        mode,
        handoff,
        size: ctx.u32("ml.batch.size")?,
        api_endpoint,
        poll_interval,
        poll_max_interval,
        local_dir: ctx.path("ml.batch.local.dir")?,
        max_wait: ctx.duration("ml.batch.max.wait")?,
        max_bytes: match ctx.get("ml.batch.max.bytes")? {
            Some(Typed::Bytes(b)) => b,
            other => unreachable!("ml.batch.max.bytes: {other:?}"),
        },
        max_inflight: ctx.u32("ml.batch.max.inflight")?,
        max_usd: match ctx.get("ml.budget.max-usd")? {
            Some(Typed::Float(f)) => Some(f),
            None => None,
            other => unreachable!("ml.budget.max-usd: {other:?}"),
        },
        // the table's range keeps it positive
        max_enqueued_tokens: ctx
            .int_opt("ml.batch.max.enqueued-tokens")?
            .map(|i| i as u64),
        job_timeout: ctx.duration("ml.batch.job.timeout")?,
        max_retries: ctx.u32("ml.batch.max.retries")?,
        retry_deadline: ctx.duration("ml.batch.retry.deadline")?,
        cleanup_remote: ctx.bool("ml.batch.cleanup.remote")?,
        batch_number: ctx.str_opt("batch_number")?,
    })
}
