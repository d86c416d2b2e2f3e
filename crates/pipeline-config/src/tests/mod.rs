//! Unit tests of the configuration, by topic. The helpers here parse a
//! configuration text with `-D` overrides against a fixed environment.

mod defaults;
mod env;
mod handoff;
mod kafka;
mod keys;
mod messages;
mod model;
mod overrides;
mod pricing;
mod sync;
mod syntax;
mod table;
mod values;

use std::collections::HashMap;

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

#[track_caller]
fn ok(text: &str, overrides: &[&str]) -> PipelineConfig {
    parse(text, overrides).unwrap_or_else(|e| panic!("unexpected error: {e}"))
}

#[track_caller]
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

/// The error of `text` with `overrides` reads exactly `message`; the error.
#[track_caller]
fn assert_err(text: &str, overrides: &[&str], message: &str) -> ConfigError {
    let e = err(text, overrides);
    assert_eq!(e.to_string(), message);
    e
}

/// The error of `text` with `overrides` names `key`; the error.
#[track_caller]
fn assert_err_key(text: &str, overrides: &[&str], key: &str) -> ConfigError {
    let e = err(text, overrides);
    assert_eq!(e.key(), Some(key));
    e
}
