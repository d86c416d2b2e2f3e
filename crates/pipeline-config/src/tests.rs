use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::keys::{self, Kind, Req, KEYS};
use crate::*;

/// The acceptance-test configuration, verbatim.
const ACCEPTANCE: &str = r#"
[pipeline]
name = "reviews"
[source]
type = "file"
path = "input.jsonl"
[sink]
type = "file"
path = "output.jsonl"
dlq.path = "dlq.jsonl"
[model]
provider = "openai"
endpoint = "http://127.0.0.1:8080/v1/chat/completions"
api-key = "sk-..."
model = "gpt-4o-mini"
system-prompt = "Rate the review."
input = "text"
output = "prediction"
[ml.batch]
enabled = true
size = 50
api.endpoint = "http://127.0.0.1:8080/v1"
poll.interval = "200ms"
local.dir = "work/local"
max.wait = "500ms"
"#;

/// The smallest valid file pipeline: exactly the mandatory keys.
const MIN: &str = r#"
[source]
type = "file"
path = "in.jsonl"
[sink]
type = "file"
path = "out.jsonl"
[model]
endpoint = "http://127.0.0.1:8080/v1/chat/completions"
model = "m"
input = "text"
"#;

const KAFKA: &str = r#"
[pipeline]
name = "k1"
[source]
type = "kafka"
topic = "in"
bootstrap.servers = "broker:9092"
security.protocol = "SASL_SSL"
sasl.password = "hunter2-kafka"
fetch.min.bytes = 1
enable.partition.eof = false
[sink]
type = "kafka"
topic = "out"
dlq.topic = "out-dlq"
compression.type = "zstd"
[model]
endpoint = "http://127.0.0.1:8080/v1/embeddings"
model = "text-embedding-3-small"
input = "text"
"#;

fn env() -> HashMap<&'static str, &'static str> {
    HashMap::from([
        ("TEST_API_KEY", "sk-from-env-123"),
        ("TEST_SIZE", "500"),
        ("TEST_BAD_SIZE", "not-a-number-secretish"),
        ("TEST_HOST", "127.0.0.1"),
        ("TEST_EMPTY", ""),
    ])
}

fn parse(text: &str, overrides: &[&str]) -> Result<PipelineConfig, ConfigError> {
    let env = env();
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    parse_str_with_env(text, &overrides, &|name| {
        env.get(name).map(|v| v.to_string())
    })
}

fn ok(text: &str, overrides: &[&str]) -> PipelineConfig {
    parse(text, overrides).unwrap_or_else(|e| panic!("unexpected error: {e}"))
}

fn err(text: &str, overrides: &[&str]) -> ConfigError {
    match parse(text, overrides) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e,
    }
}

/// `MIN` with `extra` TOML appended (top-level keys must come first, so use
/// overrides for those).
fn min_with(extra: &str) -> String {
    format!("{MIN}\n{extra}\n")
}

/// `MIN` with the line defining `key = ` (within its table) removed.
fn min_without(line_start: &str) -> String {
    MIN.lines()
        .filter(|l| !l.starts_with(line_start))
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------- acceptance

#[test]
fn acceptance_config_parses_exactly() {
    let c = ok(ACCEPTANCE, &[]);
    assert_eq!(c.name, "reviews");
    assert_eq!(
        c.source,
        SourceConfig::File {
            path: PathBuf::from("input.jsonl")
        }
    );
    assert_eq!(
        c.sink,
        SinkConfig::File {
            path: PathBuf::from("output.jsonl"),
            dlq_path: PathBuf::from("dlq.jsonl")
        }
    );
    let m = &c.model;
    assert_eq!(m.provider, Provider::OpenAi);
    assert_eq!(m.endpoint, "http://127.0.0.1:8080/v1/chat/completions");
    assert_eq!(m.task, Task::Chat);
    assert_eq!(m.request_path, "/v1/chat/completions");
    assert_eq!(m.api_key.as_ref().unwrap().expose(), "sk-...");
    assert_eq!(m.model, "gpt-4o-mini");
    assert_eq!(m.system_prompt.as_deref(), Some("Rate the review."));
    assert_eq!(m.temperature, None);
    assert_eq!(m.max_tokens, None);
    assert_eq!(m.input, "text");
    assert_eq!(m.output, "prediction");
    assert_eq!(m.api_version, None);
    assert_eq!(m.anthropic_version, "2023-06-01");
    let b = &c.batch;
    assert!(b.enabled);
    assert_eq!(b.size, 50);
    assert_eq!(b.api_endpoint.as_deref(), Some("http://127.0.0.1:8080/v1"));
    assert_eq!(b.poll_interval, Duration::from_millis(200));
    assert_eq!(b.poll_max_interval, Duration::from_secs(300));
    assert_eq!(b.local_dir, PathBuf::from("work/local"));
    assert_eq!(b.max_wait, Duration::from_millis(500));
    assert_eq!(b.max_bytes, 100_000_000);
    assert_eq!(b.max_inflight, 8);
    assert_eq!(b.job_timeout, Duration::from_secs(24 * 3600));
    assert_eq!(b.max_retries, 3);
    assert!(b.cleanup_remote);
    assert_eq!(b.batch_number, None);
    assert_eq!(c.batch_number_prefix(), "reviews");
}

#[test]
fn acceptance_config_loads_from_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pipeline.toml");
    std::fs::write(&path, ACCEPTANCE).unwrap();
    let c = load(&path, &["ml.batch.size=7".to_string()]).unwrap();
    assert_eq!(c.batch.size, 7);
    assert_eq!(c.name, "reviews");
}

// ---------------------------------------------------------------- defaults

#[test]
fn defaults_of_a_minimal_file_pipeline() {
    let c = ok(MIN, &[]);
    assert_eq!(c.name, "default");
    assert_eq!(
        c.sink,
        SinkConfig::File {
            path: "out.jsonl".into(),
            dlq_path: "out.dlq.jsonl".into()
        }
    );
    assert_eq!(c.model.provider, Provider::OpenAi);
    assert_eq!(c.model.output, "prediction");
    assert_eq!(c.model.api_key, None);
    assert_eq!(c.model.system_prompt, None);
    assert_eq!(
        c.batch,
        BatchConfig {
            enabled: false,
            size: 10,
            api_endpoint: None,
            poll_interval: Duration::from_secs(10),
            poll_max_interval: Duration::from_secs(300),
            local_dir: "/tmp/flink_batches".into(),
            max_wait: Duration::from_secs(600),
            max_bytes: 100_000_000,
            max_inflight: 8,
            job_timeout: Duration::from_secs(86_400),
            max_retries: 3,
            cleanup_remote: true,
            batch_number: None,
        }
    );
    assert_eq!(
        c.sync,
        SyncConfig {
            max_concurrent_operations: 10,
            output_mode: OutputMode::Ordered,
            timeout: Duration::from_secs(30),
            max_retries: 3,
        }
    );
    assert_eq!(
        c.metrics,
        MetricsConfig {
            port: None,
            bind: "127.0.0.1".parse().unwrap()
        }
    );
    assert_eq!(c.batch_number_prefix(), "default");
}

#[test]
fn every_literal_default_parses_with_its_own_kind() {
    for info in KEYS {
        if let Req::Default(lit) = info.req {
            let r = crate::flat::Resolved {
                value: crate::flat::Scalar::Str(lit.into()),
                raw: None,
                template: None,
            };
            crate::value::typed(info, &r)
                .unwrap_or_else(|e| panic!("default of {} does not parse: {e}", info.key));
        }
    }
}

#[test]
fn key_table_has_unique_keys() {
    let mut seen = std::collections::HashSet::new();
    for info in KEYS {
        assert!(seen.insert(info.key), "duplicate key {}", info.key);
    }
}

#[test]
fn default_dlq_path_replaces_or_appends() {
    let c = ok(MIN, &["sink.path=dir/x.json"]);
    assert!(
        matches!(c.sink, SinkConfig::File { dlq_path, .. } if dlq_path == std::path::Path::new("dir/x.json.dlq.jsonl"))
    );
    let c = ok(MIN, &["sink.path=dir/res.jsonl"]);
    assert!(
        matches!(c.sink, SinkConfig::File { dlq_path, .. } if dlq_path == std::path::Path::new("dir/res.dlq.jsonl"))
    );
}

#[test]
fn relative_paths_stay_relative() {
    let c = ok(MIN, &["ml.batch.local.dir=./work/../batches"]);
    assert_eq!(c.batch.local_dir, PathBuf::from("./work/../batches"));
    assert!(matches!(c.source, SourceConfig::File { path } if path.is_relative()));
}

// ---------------------------------------------------------------- required keys

#[test]
fn each_mandatory_key_of_a_file_pipeline_is_named_when_missing() {
    for (line, key) in [
        ("path = \"in.jsonl\"", "source.path"),
        ("path = \"out.jsonl\"", "sink.path"),
        ("endpoint =", "model.endpoint"),
        ("model =", "model.model"),
        ("input =", "model.input"),
    ] {
        let e = err(&min_without(line), &[]);
        assert_eq!(
            e.to_string(),
            format!("missing required key `{key}`"),
            "{line}"
        );
        assert_eq!(e.key(), Some(key));
    }
    // source.type / sink.type: both tables have a `type = "file"` line
    let text = MIN.replacen("type = \"file\"\n", "", 1);
    assert_eq!(
        err(&text, &[]).to_string(),
        "missing required key `source.type`"
    );
    let text = MIN.replacen("type = \"file\"\npath = \"out", "path = \"out", 1);
    assert_eq!(
        err(&text, &[]).to_string(),
        "missing required key `sink.type`"
    );
}

#[test]
fn model_input_missing_message_is_exact() {
    assert_eq!(
        err(&min_without("input ="), &[]).to_string(),
        "missing required key `model.input`"
    );
}

#[test]
fn empty_document_asks_for_source_type_first() {
    assert_eq!(
        err("", &[]).to_string(),
        "missing required key `source.type`"
    );
}

// ---------------------------------------------------------------- unknown keys

#[test]
fn unknown_key_suggests_by_edit_distance() {
    let e = err(&min_with("[ml.batch]\nsise = 5"), &[]);
    assert_eq!(
        e.to_string(),
        "unknown key `ml.batch.sise` (did you mean `ml.batch.size`?)"
    );
    assert_eq!(e.key(), Some("ml.batch.sise"));
    for (typo, meant) in [
        ("model.api_key", "model.api-key"),
        ("model.system_prompt", "model.system-prompt"),
        ("ml.batch.poll_interval", "ml.batch.poll.interval"),
        ("ml.batch.api_endpoint", "ml.batch.api.endpoint"),
        ("ml.batch.max.inflights", "ml.batch.max.inflight"),
        ("sink.dlq_path", "sink.dlq.path"),
        (
            "ml.predict.max-concurrent-operation",
            "ml.predict.max-concurrent-operations",
        ),
        ("metrics.prot", "metrics.port"),
    ] {
        assert_eq!(keys::suggest(typo), Some(meant), "{typo}");
    }
}

#[test]
fn unknown_key_suggests_by_dotted_suffix() {
    // `[batch]` instead of `[ml.batch]`
    assert_eq!(keys::suggest("batch.size"), Some("ml.batch.size"));
    assert_eq!(keys::suggest("max.inflight"), Some("ml.batch.max.inflight"));
    // top-level `name`
    assert_eq!(keys::suggest("name"), Some("pipeline.name"));
    // ambiguous: model.endpoint or ml.batch.api.endpoint
    assert_eq!(keys::suggest("endpoint"), None);
    assert_eq!(keys::suggest("completely.different"), None);
}

#[test]
fn top_level_key_written_inside_a_table_gets_a_hint() {
    let e = err(&min_with("[ml.batch]\nbatch_number = \"x\""), &[]);
    assert_eq!(
        e.to_string(),
        "unknown key `ml.batch.batch_number` (did you mean `batch_number`? top-level keys go before the first [table])"
    );
}

#[test]
fn unknown_key_without_suggestion() {
    let e = err(&min_with("[frobnicate]\nwidgets = 3"), &[]);
    assert_eq!(e.to_string(), "unknown key `frobnicate.widgets`");
}

#[test]
fn unknown_key_from_override() {
    let e = err(MIN, &["ml.batch.sise=5"]);
    assert_eq!(
        e.to_string(),
        "unknown key `ml.batch.sise` (did you mean `ml.batch.size`?)"
    );
}

#[test]
fn unknown_source_key_of_a_file_source_is_not_passed_through() {
    let e = err(MIN, &["source.security.protocol=SSL"]);
    assert!(
        matches!(e, ConfigError::UnknownKey { ref key, .. } if key == "source.security.protocol")
    );
}

#[test]
fn typo_in_source_type_is_suggested_not_reported_missing() {
    let text = MIN.replacen("type = \"file\"", "tpye = \"file\"", 1);
    assert_eq!(
        err(&text, &[]).to_string(),
        "unknown key `source.tpye` (did you mean `source.type`?)"
    );
}

#[test]
fn kafka_properties_without_source_type_report_the_missing_type() {
    let text = KAFKA.replacen("type = \"kafka\"\ntopic = \"in\"", "topic = \"in\"", 1);
    assert_eq!(
        err(&text, &[]).to_string(),
        "missing required key `source.type`"
    );
}

// ---------------------------------------------------------------- overrides

#[test]
fn override_without_equals_is_rejected() {
    let e = err(MIN, &["foo"]);
    assert_eq!(
        e.to_string(),
        "-D override `foo` is not of the form key=value"
    );
    assert!(matches!(err(MIN, &["=5"]), ConfigError::BadOverride(_)));
    assert!(matches!(err(MIN, &["a b=5"]), ConfigError::BadOverride(_)));
    assert!(matches!(
        err(MIN, &["ml..batch=5"]),
        ConfigError::BadOverride(_)
    ));
}

#[test]
fn overrides_are_typed_like_toml_scalars() {
    let c = ok(
        ACCEPTANCE,
        &[
            "ml.batch.size=500",
            "ml.batch.enabled=false",
            "model.temperature=0.5",
            "ml.batch.poll.interval=1s",
            "pipeline.name=nightly",
        ],
    );
    assert_eq!(c.batch.size, 500);
    assert!(!c.batch.enabled);
    assert_eq!(c.model.temperature, Some(0.5));
    assert_eq!(c.batch.poll_interval, Duration::from_secs(1));
    assert_eq!(c.name, "nightly");
}

#[test]
fn override_numbers_still_work_for_string_keys() {
    let c = ok(
        MIN,
        &["model.model=1234", "model.input=1.50", "pipeline.name=2024"],
    );
    assert_eq!(c.model.model, "1234");
    assert_eq!(c.model.input, "1.50");
    assert_eq!(c.name, "2024");
}

#[test]
fn later_override_wins_and_value_may_contain_equals() {
    let c = ok(
        MIN,
        &[
            "ml.batch.size=5",
            "ml.batch.size=6",
            "model.system-prompt=answer with a=b",
        ],
    );
    assert_eq!(c.batch.size, 6);
    assert_eq!(c.model.system_prompt.as_deref(), Some("answer with a=b"));
}

#[test]
fn override_of_a_bad_value_names_the_key() {
    assert_eq!(
        err(MIN, &["ml.batch.size=abc"]).to_string(),
        "ml.batch.size: expected a positive integer, got \"abc\""
    );
}

#[test]
fn override_can_switch_batch_mode_on() {
    let c = ok(MIN, &["batch=true", "ml.batch.api.endpoint=http://h/v1/"]);
    assert!(c.batch.enabled);
    assert_eq!(c.batch.api_endpoint.as_deref(), Some("http://h/v1"));
}

// ---------------------------------------------------------------- value checks

#[test]
fn batch_size_rules() {
    let e = err(&min_with("[ml.batch]\nsize = \"abc\""), &[]);
    assert_eq!(
        e.to_string(),
        "ml.batch.size: expected a positive integer, got \"abc\""
    );
    assert_eq!(
        err(MIN, &["ml.batch.size=0"]).to_string(),
        "ml.batch.size: expected a positive integer, got 0"
    );
    assert_eq!(
        err(MIN, &["ml.batch.size=100001"]).to_string(),
        "ml.batch.size: must be between 1 and 100000, got 100001"
    );
    assert_eq!(
        err(MIN, &["ml.batch.size=1.5"]).to_string(),
        "ml.batch.size: expected a positive integer, got 1.5"
    );
    assert_eq!(ok(MIN, &["ml.batch.size=100000"]).batch.size, 100_000);
    // Flink style: a quoted number is fine
    assert_eq!(
        ok(&min_with("[ml.batch]\nsize = \"50\""), &[]).batch.size,
        50
    );
}

#[test]
fn wrong_toml_type_names_the_key() {
    let e = err(&min_with("[ml.batch]\nsize = [1, 2]"), &[]);
    assert_eq!(
        e.to_string(),
        "ml.batch.size: expected a positive integer, got an array"
    );
    let e = err(MIN, &["ml.batch.cleanup.remote=yes"]);
    assert_eq!(
        e.to_string(),
        "ml.batch.cleanup.remote: expected true or false, got \"yes\""
    );
    let text = MIN.replace("model = \"m\"", "model = 5");
    assert_eq!(
        err(&text, &[]).to_string(),
        "model.model: expected a string, got 5"
    );
}

#[test]
fn api_endpoint_required_when_batch_enabled() {
    let e = err(MIN, &["ml.batch.enabled=true"]);
    assert_eq!(
        e.to_string(),
        "ml.batch.api.endpoint is required when ml.batch.enabled = true"
    );
    assert_eq!(e.key(), Some("ml.batch.api.endpoint"));
    // present but batch mode off: kept
    let c = ok(MIN, &["ml.batch.api.endpoint=https://api.openai.com/v1"]);
    assert_eq!(
        c.batch.api_endpoint.as_deref(),
        Some("https://api.openai.com/v1")
    );
}

#[test]
fn urls_must_be_http() {
    let e = err(MIN, &["ml.batch.api.endpoint=ftp://x/v1"]);
    assert_eq!(
        e.to_string(),
        "ml.batch.api.endpoint: expected an http:// or https:// URL, got \"ftp://x/v1\""
    );
    let e = err(MIN, &["model.endpoint=127.0.0.1:8080/v1/chat/completions"]);
    assert_eq!(e.key(), Some("model.endpoint"));
    let e = err(MIN, &["model.endpoint=http:///v1/chat/completions"]);
    assert_eq!(e.key(), Some("model.endpoint"));
    assert!(
        ok(
            MIN,
            &["model.endpoint=HTTPS://api.openai.com/v1/chat/completions"]
        )
        .model
        .task
            == Task::Chat
    );
}

#[test]
fn durations() {
    let e = err(MIN, &["ml.batch.poll.interval=soon"]);
    assert_eq!(e.key(), Some("ml.batch.poll.interval"));
    assert!(e
        .to_string()
        .starts_with("ml.batch.poll.interval: expected a duration such as \"200ms\""));
    assert!(e.to_string().ends_with("got \"soon\""));
    // a bare number has no unit
    let e = err(MIN, &["ml.batch.max.wait=10"]);
    assert_eq!(e.key(), Some("ml.batch.max.wait"));
    let e = err(MIN, &["ml.predict.timeout=0s"]);
    assert_eq!(
        e.to_string(),
        "ml.predict.timeout: must be greater than 0, got \"0s\""
    );
    let c = ok(
        MIN,
        &[
            "ml.batch.job.timeout=2h 30m",
            "ml.predict.timeout=1500ms",
            "ml.batch.max.wait=1min",
        ],
    );
    assert_eq!(c.batch.job_timeout, Duration::from_secs(9000));
    assert_eq!(c.sync.timeout, Duration::from_millis(1500));
    assert_eq!(c.batch.max_wait, Duration::from_secs(60));
}

#[test]
fn poll_max_interval_rules() {
    let e = err(
        MIN,
        &[
            "ml.batch.poll.interval=1m",
            "ml.batch.poll.max-interval=30s",
        ],
    );
    assert_eq!(
        e.to_string(),
        "ml.batch.poll.max-interval: must be at least ml.batch.poll.interval (1m), got 30s"
    );
    // unset: raised to the poll interval
    let c = ok(MIN, &["ml.batch.poll.interval=10m"]);
    assert_eq!(c.batch.poll_max_interval, Duration::from_secs(600));
    let c = ok(MIN, &["ml.batch.poll.max-interval=1h"]);
    assert_eq!(c.batch.poll_max_interval, Duration::from_secs(3600));
}

#[test]
fn max_bytes_accepts_integers_and_units() {
    for (given, bytes) in [
        ("104857600", 104_857_600u64),
        ("100MB", 100_000_000),
        ("100mb", 100_000_000),
        ("512KiB", 524_288),
        ("512 KiB", 524_288),
        ("1.5GB", 1_500_000_000),
        ("2GiB", 2 << 30),
        ("300B", 300),
    ] {
        let c = ok(MIN, &[&format!("ml.batch.max.bytes={given}")]);
        assert_eq!(c.batch.max_bytes, bytes, "{given}");
    }
    let c = ok(&min_with("[ml.batch]\nmax.bytes = \"10 MiB\""), &[]);
    assert_eq!(c.batch.max_bytes, 10 << 20);
    for bad in ["abc", "10XB", "MB", "-5"] {
        let e = err(MIN, &[&format!("ml.batch.max.bytes={bad}")]);
        assert_eq!(e.key(), Some("ml.batch.max.bytes"), "{bad}");
    }
    assert_eq!(
        err(MIN, &["ml.batch.max.bytes=0"]).to_string(),
        "ml.batch.max.bytes: must be greater than 0, got 0"
    );
}

#[test]
fn other_batch_integers() {
    let c = ok(
        MIN,
        &[
            "ml.batch.max.inflight=1",
            "ml.batch.max.retries=0",
            "ml.batch.cleanup.remote=false",
        ],
    );
    assert_eq!(c.batch.max_inflight, 1);
    assert_eq!(c.batch.max_retries, 0);
    assert!(!c.batch.cleanup_remote);
    assert_eq!(
        err(MIN, &["ml.batch.max.inflight=0"]).to_string(),
        "ml.batch.max.inflight: expected a positive integer, got 0"
    );
    assert_eq!(
        err(MIN, &["ml.batch.max.retries=-1"]).to_string(),
        "ml.batch.max.retries: expected a non-negative integer, got -1"
    );
    assert_eq!(
        err(MIN, &["ml.batch.max.retries=4294967296"]).key(),
        Some("ml.batch.max.retries")
    );
}

#[test]
fn batch_alias() {
    let c = ok(&format!("batch = true\n{ACCEPTANCE}"), &[]);
    assert!(c.batch.enabled);
    let c = ok(
        &format!("batch = true\n{MIN}"),
        &["ml.batch.api.endpoint=http://h"],
    );
    assert!(c.batch.enabled);
    let c = ok(&format!("batch = false\n{MIN}"), &[]);
    assert!(!c.batch.enabled);
    let e = err(&format!("batch = false\n{ACCEPTANCE}"), &[]);
    assert_eq!(
        e.to_string(),
        "batch: is an alias of ml.batch.enabled, but batch = false and ml.batch.enabled = true; give only one"
    );
    assert_eq!(e.key(), Some("batch"));
}

#[test]
fn pipeline_name_charset() {
    let e = err(MIN, &["pipeline.name=my pipeline"]);
    assert_eq!(
        e.to_string(),
        "pipeline.name: expected a name of 1 to 40 letters, digits, `_` or `-`, got \"my pipeline\""
    );
    let long = "a".repeat(41);
    assert_eq!(
        err(MIN, &[&format!("pipeline.name={long}")]).key(),
        Some("pipeline.name")
    );
    assert_eq!(
        ok(MIN, &[&format!("pipeline.name={}", "a".repeat(40))])
            .name
            .len(),
        40
    );
    assert_eq!(ok(MIN, &["pipeline.name=A_b-9"]).name, "A_b-9");
    assert_eq!(
        err(MIN, &["pipeline.name="]).to_string(),
        "pipeline.name: must not be empty"
    );
    assert_eq!(err(MIN, &["pipeline.name=ü"]).key(), Some("pipeline.name"));
}

#[test]
fn batch_number_prefix() {
    let c = ok(&format!("batch_number = \"nightly-7\"\n{MIN}"), &[]);
    assert_eq!(c.batch.batch_number.as_deref(), Some("nightly-7"));
    assert_eq!(c.batch_number_prefix(), "nightly-7");
    let e = err(MIN, &["batch_number=a/b"]);
    assert_eq!(e.key(), Some("batch_number"));
}

#[test]
fn file_paths_must_not_collide() {
    assert_eq!(
        err(MIN, &["sink.path=in.jsonl"]).to_string(),
        "sink.path: must differ from source.path"
    );
    assert_eq!(
        err(MIN, &["sink.dlq.path=out.jsonl"]).to_string(),
        "sink.dlq.path: must differ from sink.path"
    );
    assert_eq!(
        err(MIN, &["sink.dlq.path=in.jsonl"]).to_string(),
        "sink.dlq.path: must differ from source.path"
    );
    assert_eq!(
        err(MIN, &["source.path="]).to_string(),
        "source.path: must not be empty"
    );
}

#[test]
fn duplicate_dotted_and_quoted_key() {
    let text = min_with("[ml.batch]\n\"max.wait\" = \"1s\"\n[ml.batch.max]\nwait = \"2s\"");
    let e = err(&text, &[]);
    assert_eq!(e.key(), Some("ml.batch.max.wait"));
}

// ---------------------------------------------------------------- model

#[test]
fn task_is_derived_from_the_endpoint() {
    let c = ok(MIN, &["model.endpoint=http://h/v1/embeddings"]);
    assert_eq!(c.model.task, Task::Embeddings);
    assert_eq!(c.model.request_path, "/v1/embeddings");
    let c = ok(
        MIN,
        &["model.endpoint=https://r.openai.azure.com/openai/deployments/d/chat/completions?api-version=2024-10-21", "model.provider=azure-openai"],
    );
    assert_eq!(c.model.task, Task::Chat);
    assert_eq!(
        c.model.request_path,
        "/openai/deployments/d/chat/completions"
    );
    let e = err(MIN, &["model.endpoint=http://h/v1/completions"]);
    assert_eq!(
        e.to_string(),
        "model.endpoint: cannot derive the task from the path \"/v1/completions\" (expected it to end in /chat/completions or /embeddings); set model.task"
    );
    let e = err(MIN, &["model.endpoint=http://h"]);
    assert!(e.to_string().contains("\"/\""), "{e}");
}

#[test]
fn explicit_task() {
    let c = ok(
        MIN,
        &[
            "model.provider=generic",
            "model.endpoint=http://h/ml/api/predict",
            "model.task=embeddings",
        ],
    );
    assert_eq!(c.model.provider, Provider::Generic);
    assert_eq!(c.model.task, Task::Embeddings);
    assert_eq!(c.model.request_path, "/ml/api/predict");
    let e = err(MIN, &["model.task=embeddings"]);
    assert_eq!(
        e.to_string(),
        "model.task: \"embeddings\" does not match the path of model.endpoint (/v1/chat/completions)"
    );
    let e = err(MIN, &["model.task=completion"]);
    assert_eq!(
        e.to_string(),
        "model.task: expected one of \"chat\", \"embeddings\", got \"completion\""
    );
    assert_eq!(ok(MIN, &["model.task=CHAT"]).model.task, Task::Chat);
}

#[test]
fn anthropic_defaults() {
    let c = ok(
        MIN,
        &[
            "model.provider=anthropic",
            "model.endpoint=https://api.anthropic.com/v1/messages",
        ],
    );
    assert_eq!(c.model.provider, Provider::Anthropic);
    assert_eq!(c.model.task, Task::Chat);
    assert_eq!(c.model.max_tokens, Some(1024));
    assert_eq!(c.model.anthropic_version, "2023-06-01");
    assert_eq!(c.model.api_version, None);
    let c = ok(
        MIN,
        &[
            "model.provider=anthropic",
            "model.endpoint=https://api.anthropic.com/v1/messages",
            "model.max-tokens=64",
            "model.anthropic-version=2024-01-01",
        ],
    );
    assert_eq!(c.model.max_tokens, Some(64));
    assert_eq!(c.model.anthropic_version, "2024-01-01");
    let e = err(
        MIN,
        &[
            "model.provider=anthropic",
            "model.endpoint=https://api.anthropic.com/v1/messages",
            "model.task=embeddings",
        ],
    );
    assert_eq!(
        e.to_string(),
        "model.task: the anthropic provider supports only \"chat\""
    );
    // /messages means chat only for anthropic
    assert_eq!(
        err(MIN, &["model.endpoint=https://h/v1/messages"]).key(),
        Some("model.endpoint")
    );
}

#[test]
fn azure_api_version() {
    let azure = ["model.provider=Azure-OpenAI"];
    let c = ok(MIN, &azure);
    assert_eq!(c.model.provider, Provider::AzureOpenAi);
    assert_eq!(c.model.api_version.as_deref(), Some("2024-10-21"));
    let c = ok(MIN, &[azure[0], "model.api-version=2025-01-01-preview"]);
    assert_eq!(c.model.api_version.as_deref(), Some("2025-01-01-preview"));
    let c = ok(MIN, &[azure[0], "model.api-version="]);
    assert_eq!(c.model.api_version, None);
}

#[test]
fn provider_specific_keys_only_apply_to_their_provider() {
    let e = err(MIN, &["model.api-version=2024-10-21"]);
    assert_eq!(
        e.to_string(),
        "model.api-version only applies when model.provider = \"azure-openai\""
    );
    let e = err(MIN, &["model.anthropic-version=2023-06-01"]);
    assert_eq!(
        e.to_string(),
        "model.anthropic-version only applies when model.provider = \"anthropic\""
    );
    let e = err(MIN, &["model.provider=mistral"]);
    assert_eq!(
        e.to_string(),
        "model.provider: expected one of \"openai\", \"azure-openai\", \"anthropic\", \"generic\", got \"mistral\""
    );
}

#[test]
fn model_field_rules() {
    assert_eq!(
        err(MIN, &["model.output=text"]).to_string(),
        "model.output: must differ from model.input"
    );
    assert_eq!(
        err(MIN, &["model.output=ml_predict"]).key(),
        Some("model.output")
    );
    assert_eq!(
        err(MIN, &["model.temperature=2.5"]).to_string(),
        "model.temperature: must be between 0 and 2, got 2.5"
    );
    assert_eq!(
        err(MIN, &["model.temperature=hot"]).to_string(),
        "model.temperature: expected a number, got \"hot\""
    );
    assert_eq!(
        ok(MIN, &["model.temperature=2"]).model.temperature,
        Some(2.0)
    );
    assert_eq!(
        ok(MIN, &["model.temperature=0"]).model.temperature,
        Some(0.0)
    );
    assert_eq!(
        err(MIN, &["model.max-tokens=0"]).to_string(),
        "model.max-tokens: expected a positive integer, got 0"
    );
    assert_eq!(
        ok(MIN, &["model.max-tokens=256"]).model.max_tokens,
        Some(256)
    );
    assert_eq!(ok(MIN, &["model.system-prompt="]).model.system_prompt, None);
    assert_eq!(
        err(MIN, &["model.model="]).to_string(),
        "model.model: must not be empty"
    );
}

// ---------------------------------------------------------------- sync, metrics

#[test]
fn sync_options() {
    let c = ok(
        MIN,
        &[
            "ml.predict.output-mode=allow_unordered",
            "ml.predict.max-concurrent-operations=64",
            "ml.predict.timeout=5s",
            "ml.predict.max-retries=0",
        ],
    );
    assert_eq!(c.sync.output_mode, OutputMode::AllowUnordered);
    assert_eq!(c.sync.max_concurrent_operations, 64);
    assert_eq!(c.sync.timeout, Duration::from_secs(5));
    assert_eq!(c.sync.max_retries, 0);
    assert_eq!(
        err(MIN, &["ml.predict.output-mode=RANDOM"]).to_string(),
        "ml.predict.output-mode: expected one of \"ORDERED\", \"ALLOW_UNORDERED\", got \"RANDOM\""
    );
    assert_eq!(
        err(MIN, &["ml.predict.max-concurrent-operations=0"]).key(),
        Some("ml.predict.max-concurrent-operations")
    );
}

#[test]
fn metrics_options() {
    let c = ok(&min_with("[metrics]\nport = 9464\nbind = \"::1\""), &[]);
    assert_eq!(c.metrics.port, Some(9464));
    assert_eq!(c.metrics.bind, "::1".parse::<std::net::IpAddr>().unwrap());
    assert_eq!(ok(MIN, &["metrics.port=0"]).metrics.port, Some(0));
    assert_eq!(
        err(MIN, &["metrics.port=70000"]).to_string(),
        "metrics.port: must be between 0 and 65535, got 70000"
    );
    assert_eq!(
        err(MIN, &["metrics.bind=localhost"]).to_string(),
        "metrics.bind: expected an IP address such as 127.0.0.1 or ::1, got \"localhost\""
    );
}

// ---------------------------------------------------------------- env

#[test]
fn env_substitution() {
    let text = ACCEPTANCE.replace("\"sk-...\"", "\"${TEST_API_KEY}\"");
    let c = ok(&text, &[]);
    assert_eq!(c.model.api_key.unwrap().expose(), "sk-from-env-123");
    // inside a longer string, and typed after substitution
    let c = ok(
        MIN,
        &[
            "model.endpoint=http://${TEST_HOST}:8080/v1/chat/completions",
            "ml.batch.size=${TEST_SIZE}",
        ],
    );
    assert_eq!(
        c.model.endpoint,
        "http://127.0.0.1:8080/v1/chat/completions"
    );
    assert_eq!(c.batch.size, 500);
    let c = ok(&min_with("[ml.batch]\nsize = \"${TEST_SIZE}\""), &[]);
    assert_eq!(c.batch.size, 500);
}

#[test]
fn missing_env_var_names_key_and_variable() {
    let text = ACCEPTANCE.replace("\"sk-...\"", "\"${NO_SUCH_VAR_XYZ}\"");
    let e = err(&text, &[]);
    assert_eq!(
        e.to_string(),
        "model.api-key: environment variable `NO_SUCH_VAR_XYZ` is not set"
    );
    assert_eq!(e.key(), Some("model.api-key"));
}

#[test]
fn env_values_are_never_printed_in_errors() {
    let e = err(MIN, &["ml.batch.size=${TEST_BAD_SIZE}"]);
    let msg = e.to_string();
    assert_eq!(e.key(), Some("ml.batch.size"));
    assert!(!msg.contains("secretish"), "{msg}");
    assert!(msg.contains("${TEST_BAD_SIZE}"), "{msg}");
    // an empty secret from the environment
    let e = err(MIN, &["model.api-key=${TEST_EMPTY}"]);
    assert_eq!(e.to_string(), "model.api-key: must not be empty");
}

#[test]
fn env_escape_and_malformed_references() {
    let c = ok(MIN, &["model.system-prompt=use $${name} and ${TEST_SIZE}$"]);
    assert_eq!(
        c.model.system_prompt.as_deref(),
        Some("use ${name} and 500$")
    );
    let e = err(MIN, &["model.system-prompt=oops ${TEST_SIZE"]);
    assert_eq!(
        e.to_string(),
        "model.system-prompt: unterminated `${` (write `$${` for a literal `${`)"
    );
    let e = err(MIN, &["model.system-prompt=${1BAD}"]);
    assert_eq!(e.key(), Some("model.system-prompt"));
    assert!(e.to_string().contains("`${1BAD}`"));
}

#[test]
fn process_environment_is_used_by_parse_str() {
    // a name no other test uses
    std::env::set_var("PIPELINE_CONFIG_TEST_MODEL_7F3A", "gpt-from-env");
    let c = parse_str(
        &MIN.replace(
            "model = \"m\"",
            "model = \"${PIPELINE_CONFIG_TEST_MODEL_7F3A}\"",
        ),
        &[],
    )
    .unwrap();
    assert_eq!(c.model.model, "gpt-from-env");
}

// ---------------------------------------------------------------- secrets

#[test]
fn secret_is_never_in_debug_or_display() {
    let text = ACCEPTANCE.replace("\"sk-...\"", "\"sk-very-secret-42\"");
    let c = ok(&text, &[]);
    let debug = format!("{c:?}");
    assert!(!debug.contains("sk-very-secret-42"), "{debug}");
    assert!(debug.contains("***"));
    let s = c.model.api_key.unwrap();
    assert_eq!(format!("{s}"), "***");
    assert_eq!(format!("{s:?}"), "***");
    assert_eq!(s.expose(), "sk-very-secret-42");
    // a wrongly typed secret is not echoed either
    let e = err(&text.replace("\"sk-very-secret-42\"", "424242"), &[]);
    assert_eq!(e.to_string(), "model.api-key: expected a string");
}

#[test]
fn kafka_credentials_are_redacted_in_debug() {
    let c = ok(KAFKA, &[]);
    let debug = format!("{c:?}");
    assert!(!debug.contains("hunter2-kafka"), "{debug}");
    assert!(debug.contains("SASL_SSL"), "{debug}");
    assert!(is_sensitive_property("sasl.password"));
    assert!(is_sensitive_property("ssl.key.password"));
    assert!(is_sensitive_property("sasl.oauthbearer.client.secret"));
    assert!(!is_sensitive_property("security.protocol"));
}

// ---------------------------------------------------------------- syntax

#[test]
fn syntax_errors_report_line_and_column() {
    let text = "[pipeline]\nname = \"x\"\nthis is not toml\n";
    match err(text, &[]) {
        ConfigError::Syntax {
            line, column, path, ..
        } => {
            assert_eq!(line, 3);
            assert!(column >= 1);
            assert_eq!(path, None);
        }
        other => panic!("{other:?}"),
    }
    let msg = err(text, &[]).to_string();
    assert!(msg.starts_with("syntax error at line 3, column "), "{msg}");
}

#[test]
fn syntax_error_column_is_exact() {
    // `=` missing its value on line 2
    let text = "[source]\ntype = \n";
    match err(text, &[]) {
        ConfigError::Syntax { line, column, .. } => {
            assert_eq!((line, column), (2, 8));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn duplicate_keys_are_syntax_errors_with_a_line() {
    let text = "[source]\ntype = \"file\"\ntype = \"kafka\"\n";
    match err(text, &[]) {
        ConfigError::Syntax { line, .. } => assert_eq!(line, 3),
        other => panic!("{other:?}"),
    }
}

#[test]
fn syntax_errors_do_not_echo_the_source_line() {
    let text = "[model]\napi-key = \"sk-leaky-secret\nmodel = \"m\"\n";
    let msg = err(text, &[]).to_string();
    assert!(!msg.contains("sk-leaky-secret"), "{msg}");
    assert!(msg.contains("line 2"), "{msg}");
}

#[test]
fn load_keeps_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[source\n").unwrap();
    match load(&path, &[]).unwrap_err() {
        ConfigError::Syntax {
            path: Some(p),
            line: 1,
            ..
        } => assert_eq!(p, path),
        other => panic!("{other:?}"),
    }
    let missing = dir.path().join("nope.toml");
    let e = load(&missing, &[]).unwrap_err();
    assert!(matches!(e, ConfigError::Io { .. }));
    assert!(e.to_string().contains("nope.toml"), "{e}");
}

// ---------------------------------------------------------------- kafka

#[test]
fn kafka_source_and_sink() {
    let c = ok(KAFKA, &[]);
    let SourceConfig::Kafka(s) = &c.source else {
        panic!()
    };
    assert_eq!(s.topic, "in");
    assert_eq!(s.bootstrap_servers, "broker:9092");
    assert_eq!(s.group_id, "mlpredict-k1");
    assert_eq!(
        s.properties
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
        vec![
            ("enable.partition.eof", "false"),
            ("fetch.min.bytes", "1"),
            ("sasl.password", "hunter2-kafka"),
            ("security.protocol", "SASL_SSL"),
        ]
    );
    let SinkConfig::Kafka(k) = &c.sink else {
        panic!()
    };
    assert_eq!(k.topic, "out");
    assert_eq!(k.bootstrap_servers, "broker:9092");
    assert_eq!(k.dlq_topic.as_deref(), Some("out-dlq"));
    assert_eq!(
        k.properties.get("compression.type").map(String::as_str),
        Some("zstd")
    );
    assert_eq!(k.properties.len(), 1);
    assert_eq!(c.model.task, Task::Embeddings);
}

#[test]
fn kafka_pass_through_via_overrides_quoted_keys_and_env() {
    let text = KAFKA.replace(
        "security.protocol = \"SASL_SSL\"",
        "\"security.protocol\" = \"SSL\"\nsasl.username = \"${TEST_HOST}\"",
    );
    let c = ok(
        &text,
        &[
            "source.group.id=g",
            "sink.bootstrap.servers=other:9092",
            "sink.linger.ms=5",
            "source.fetch.min.bytes=1e3",
        ],
    );
    let SourceConfig::Kafka(s) = &c.source else {
        panic!()
    };
    assert_eq!(s.group_id, "g");
    assert_eq!(s.properties["security.protocol"], "SSL");
    assert_eq!(s.properties["sasl.username"], "127.0.0.1");
    // -D values pass through as written
    assert_eq!(s.properties["fetch.min.bytes"], "1e3");
    let SinkConfig::Kafka(k) = &c.sink else {
        panic!()
    };
    assert_eq!(k.bootstrap_servers, "other:9092");
    assert_eq!(k.properties["linger.ms"], "5");
}

#[test]
fn kafka_required_keys() {
    let e = err(&KAFKA.replace("topic = \"in\"\n", ""), &[]);
    assert_eq!(e.to_string(), "missing required key `source.topic`");
    let e = err(
        &KAFKA.replace("bootstrap.servers = \"broker:9092\"\n", ""),
        &[],
    );
    assert_eq!(
        e.to_string(),
        "missing required key `source.bootstrap.servers`"
    );
    let e = err(&KAFKA.replace("topic = \"out\"\n", ""), &[]);
    assert_eq!(e.to_string(), "missing required key `sink.topic`");
}

#[test]
fn kafka_sink_after_file_source_needs_brokers() {
    let e = err(MIN, &["sink.type=kafka", "sink.topic=out"]);
    // sink.path is a file-sink key
    assert_eq!(
        e.to_string(),
        "sink.path only applies when sink.type = \"file\""
    );
    let text = MIN.replace(
        "type = \"file\"\npath = \"out.jsonl\"",
        "type = \"kafka\"\ntopic = \"out\"",
    );
    let e = err(&text, &[]);
    assert_eq!(
        e.to_string(),
        "sink.bootstrap.servers is required when source.type = \"file\""
    );
    let c = ok(&text, &["sink.bootstrap.servers=b:9092"]);
    assert!(
        matches!(c.sink, SinkConfig::Kafka(ref k) if k.dlq_topic.is_none() && k.properties.is_empty())
    );
}

#[test]
fn keys_outside_their_scope_are_rejected() {
    let e = err(MIN, &["source.topic=t"]);
    assert_eq!(
        e.to_string(),
        "source.topic only applies when source.type = \"kafka\""
    );
    assert_eq!(e.key(), Some("source.topic"));
    let e = err(MIN, &["sink.dlq.topic=t"]);
    assert_eq!(
        e.to_string(),
        "sink.dlq.topic only applies when sink.type = \"kafka\""
    );
    let e = err(KAFKA, &["source.path=x.jsonl"]);
    assert_eq!(
        e.to_string(),
        "source.path only applies when source.type = \"file\""
    );
}

#[test]
fn managed_kafka_properties_are_rejected() {
    let e = err(KAFKA, &["source.enable.auto.commit=true"]);
    assert_eq!(e.key(), Some("source.enable.auto.commit"));
    assert!(e.to_string().contains("managed by mlpredict"), "{e}");
    let e = err(KAFKA, &["sink.transactional.id=x"]);
    assert_eq!(e.key(), Some("sink.transactional.id"));
}

#[test]
fn kafka_topics_must_not_loop() {
    let e = err(KAFKA, &["sink.topic=in"]);
    assert_eq!(
        e.to_string(),
        "sink.topic: must differ from source.topic on the same cluster"
    );
    ok(
        KAFKA,
        &["sink.topic=in", "sink.bootstrap.servers=other:9092"],
    );
    assert_eq!(
        err(KAFKA, &["sink.dlq.topic=out"]).to_string(),
        "sink.dlq.topic: must differ from sink.topic"
    );
}

#[test]
fn kafka_property_must_be_a_scalar() {
    let text = KAFKA.replace("fetch.min.bytes = 1", "fetch.min.bytes = [1]");
    assert_eq!(
        err(&text, &[]).to_string(),
        "source.fetch.min.bytes: expected a string, number or boolean (a Kafka client property), got an array"
    );
}

#[test]
fn source_type_value_is_checked_before_unknown_keys() {
    let e = err(
        &KAFKA.replace("\"kafka\"\ntopic = \"in\"", "\"kafk\"\ntopic = \"in\""),
        &[],
    );
    assert_eq!(
        e.to_string(),
        "source.type: expected one of \"file\", \"kafka\", got \"kafk\""
    );
}

// ---------------------------------------------------------------- every key

#[test]
fn every_key_is_readable() {
    // Sets every key once (two configs, because of scopes), so that each
    // key's getter agrees with its kind in the table.
    let file_azure = r#"
batch = true
batch_number = "b1"
[pipeline]
name = "all"
[source]
type = "file"
path = "in.jsonl"
[sink]
type = "file"
path = "out.jsonl"
dlq.path = "bad.jsonl"
[model]
provider = "azure-openai"
endpoint = "https://r.openai.azure.com/openai/deployments/d/chat/completions"
task = "chat"
api-key = "k"
model = "d"
system-prompt = "s"
temperature = 0.2
max-tokens = 100
input = "text"
output = "out"
api-version = "2024-10-21"
[ml.batch]
enabled = true
size = 100
api.endpoint = "https://r.openai.azure.com/openai"
poll.interval = "1s"
poll.max-interval = "1m"
local.dir = "batches"
max.wait = "5s"
max.bytes = "1MiB"
max.inflight = 2
job.timeout = "1h"
max.retries = 1
cleanup.remote = false
[ml.predict]
max-concurrent-operations = 4
output-mode = "ALLOW_UNORDERED"
timeout = "10s"
max-retries = 2
[metrics]
port = 9000
bind = "0.0.0.0"
"#;
    let kafka_anthropic = r#"
[source]
type = "kafka"
topic = "in"
bootstrap.servers = "b:9092"
group.id = "g"
[sink]
type = "kafka"
topic = "out"
bootstrap.servers = "c:9092"
dlq.topic = "dlq"
[model]
provider = "anthropic"
endpoint = "https://api.anthropic.com/v1/messages"
model = "claude"
input = "text"
anthropic-version = "2023-06-01"
"#;
    let mut covered = std::collections::BTreeSet::new();
    for text in [file_azure, kafka_anthropic] {
        ok(text, &[]);
        covered.extend(crate::flat::parse_toml(text, None).unwrap().into_keys());
    }
    for info in KEYS {
        assert!(covered.contains(info.key), "{} not exercised", info.key);
    }
}

#[test]
fn error_messages_start_lowercase() {
    let errors = [
        err(MIN, &["ml.batch.size=abc"]),
        err(MIN, &["foo"]),
        err(MIN, &["nope=1"]),
        err("", &[]),
        err("[x", &[]),
        err(MIN, &["ml.batch.enabled=true"]),
        err(MIN, &["source.topic=t"]),
        err(MIN, &["model.api-key=${NOPE_NOPE}"]),
    ];
    for e in errors {
        let first = e.to_string().chars().next().unwrap();
        assert!(!first.is_uppercase(), "{e}");
    }
}

// ---------------------------------------------------------------- docs

/// Every key of the table is documented in docs/CONFIG.md, in a table row
/// that shows its type and default; every documented key exists.
#[test]
fn docs_config_md_matches_the_key_table() {
    let doc_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/CONFIG.md");
    let doc = std::fs::read_to_string(doc_path).expect("docs/CONFIG.md");
    let rows: Vec<&str> = doc.lines().filter(|l| l.starts_with("| `")).collect();
    for info in KEYS {
        let prefix = format!("| `{}` |", info.key);
        let row = rows
            .iter()
            .find(|r| r.starts_with(&prefix))
            .unwrap_or_else(|| panic!("docs/CONFIG.md has no row for `{}`", info.key));
        let cells: Vec<&str> = row.split(" | ").collect();
        assert!(
            cells.len() >= 4,
            "row of {} needs key | type | default | meaning",
            info.key
        );
        assert_eq!(
            cells[1].trim(),
            info.kind.type_name(),
            "type of {} in docs/CONFIG.md",
            info.key
        );
        let default_cell = cells[2].trim();
        match info.req {
            Req::Required => assert_eq!(default_cell, "required", "{}", info.key),
            Req::Default(lit) => assert_eq!(
                default_cell,
                format!("`{lit}`"),
                "default of {} in docs/CONFIG.md",
                info.key
            ),
            Req::Optional => assert_eq!(default_cell, "unset", "{}", info.key),
            Req::Derived(_) => assert!(
                !["required", "unset"].contains(&default_cell) && !default_cell.is_empty(),
                "default of {} in docs/CONFIG.md",
                info.key
            ),
        }
        if let Kind::Enum(options) = info.kind {
            for o in options {
                assert!(row.contains(o), "{} option {o}", info.key);
            }
        }
    }
    for row in rows {
        let key = row.trim_start_matches("| `").split('`').next().unwrap();
        assert!(
            keys::lookup(key).is_some(),
            "docs/CONFIG.md documents unknown key `{key}`"
        );
    }
}
