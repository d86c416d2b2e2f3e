//! The key table itself: defaults, uniqueness, every key exercised, messages, docs/CONFIG.md.

use super::*;
use crate::keys::{self, Kind, Req, KEYS};

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
fn every_key_is_readable() {
    // Sets every key once (two configs, because of scopes), so that each
    // key's getter agrees with its kind in the table.
    let file_azure = r#"
batch = true
batch_number = "b1"
[pipeline]
name = "all"
on-error = "failover"
[source]
type = "file"
path = "in.jsonl"
[sink]
type = "file"
path = "out.jsonl"
dlq.path = "bad.jsonl"
columns = "id BIGINT, out STRING, ml_predict STRING"
[model]
provider = "azure-openai"
endpoint = "https://r.openai.azure.com/openai/deployments/d/chat/completions"
task = "chat"
api-key = "k"
model = "d"
system-prompt = "s"
temperature = 0.2
max-tokens = 100
top-p = 0.9
stop = "END,###"
seed = 42
input = "text"
output = "out"
api-version = "2024-10-21"
[ml.batch]
enabled = true
size = 100
api.endpoint = "https://r.openai.azure.com/openai"
mode = "decoupled"
handoff.path = "handoff.jsonl"
poll.interval = "1s"
poll.max-interval = "1m"
local.dir = "batches"
max.wait = "5s"
max.bytes = "1MiB"
max.inflight = 2
max.enqueued-tokens = 2000000
job.timeout = "1h"
max.retries = 1
retry.deadline = "6h"
cleanup.remote = false
[ml.budget]
max-usd = 25.5
[ml.predict]
max-concurrent-operations = 4
output-mode = "ALLOW_UNORDERED"
timeout = "10s"
request-timeout = "2s"
max-retries = 2
[metrics]
port = 9000
bind = "0.0.0.0"
[ui]
port = 9001
bind = "::1"
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
[ml.batch]
enabled = true
api.endpoint = "https://api.anthropic.com/v1"
mode = "decoupled"
handoff.topic = "handed"
"#;
    let embeddings = r#"
[source]
type = "file"
path = "in.jsonl"
[sink]
type = "file"
path = "out.jsonl"
[model]
endpoint = "https://api.openai.com/v1/embeddings"
model = "text-embedding-3-small"
input = "text"
dimension = 256
"#;
    let mut covered = std::collections::BTreeSet::new();
    for text in [file_azure, kafka_anthropic, embeddings] {
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
