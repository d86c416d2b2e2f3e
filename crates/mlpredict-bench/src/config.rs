//! Pipeline configurations, built as a TOML table from the dotted keys
//! mlpredict documents (`ml.batch.size`, as `-D` takes them) and written by
//! the `toml` crate.

use std::path::Path;

use toml::{Table, Value};

/// A scenario's own keys, e.g. `("ml.batch.size", int(500))`.
pub(crate) type Keys = [(&'static str, Value)];

/// Batch mode against `mock-server --instant` at full speed: batches of
/// `bs`, polled every millisecond, 32 in flight.
pub(crate) fn throughput_keys(bs: u64) -> Vec<(&'static str, Value)> {
    vec![
        ("ml.batch.size", int(bs)),
        ("ml.batch.poll.interval", "1ms".into()),
        ("ml.batch.max.inflight", int(32)),
        ("ml.batch.max.wait", "1s".into()),
    ]
}

/// A count as a TOML integer.
pub(crate) fn int(n: u64) -> Value {
    Value::Integer(i64::try_from(n).expect("a count fits in an i64"))
}

fn path(p: &Path) -> Value {
    Value::String(p.display().to_string())
}

#[derive(Default)]
struct Config(Table);

impl Config {
    /// Sets a dotted key, creating the tables on its way.
    fn set(&mut self, key: &str, value: impl Into<Value>) {
        let (tables, last) = key.rsplit_once('.').unwrap_or(("", key));
        let mut t = &mut self.0;
        for part in tables.split('.').filter(|p| !p.is_empty()) {
            t = t
                .entry(part)
                .or_insert_with(|| Value::Table(Table::new()))
                .as_table_mut()
                .unwrap_or_else(|| panic!("{key}: {part} is not a table"));
        }
        t.insert(last.to_owned(), value.into());
    }

    /// The model against the mock at `base`, batch mode on or off, local
    /// files under `dir`, then the scenario's own `keys`.
    fn model_and_keys(mut self, base: &str, dir: &Path, batch: bool, keys: &Keys) -> String {
        self.set("model.endpoint", format!("{base}/v1/chat/completions"));
        self.set("model.api-key", "sk-bench");
        self.set("model.model", "gpt-4o-mini");
        self.set(
            "model.system-prompt",
            "Rate the product review from 1 to 5 stars.",
        );
        self.set("model.input", "text");
        self.set("ml.batch.enabled", batch);
        self.set("ml.batch.local.dir", path(&dir.join("local")));
        if batch {
            self.set("ml.batch.api.endpoint", format!("{base}/v1"));
        }
        for (k, v) in keys {
            self.set(k, v.clone());
        }
        toml::to_string(&self.0).expect("a table of strings, numbers and booleans serializes")
    }
}

/// A file pipeline's configuration.
pub(crate) fn file_pipeline(
    name: &str,
    input: &Path,
    dir: &Path,
    base: &str,
    batch: bool,
    keys: &Keys,
) -> String {
    let mut c = Config::default();
    c.set("pipeline.name", name);
    c.set("source.type", "file");
    c.set("source.path", path(input));
    c.set("sink.type", "file");
    c.set("sink.path", path(&dir.join("output.jsonl")));
    c.set("sink.dlq.path", path(&dir.join("dlq.jsonl")));
    c.model_and_keys(base, dir, batch, keys)
}

/// A Kafka pipeline's configuration (batch mode; group and pipeline `name`).
pub(crate) fn kafka_pipeline(
    name: &str,
    bootstrap: &str,
    topics: (&str, &str),
    dir: &Path,
    base: &str,
    keys: &Keys,
) -> String {
    let (input, output) = topics;
    let mut c = Config::default();
    c.set("pipeline.name", name);
    c.set("source.type", "kafka");
    c.set("source.bootstrap.servers", bootstrap);
    c.set("source.topic", input);
    c.set("source.group.id", name);
    c.set("sink.type", "kafka");
    c.set("sink.topic", output);
    c.set("sink.dlq.topic", format!("{output}-dlq"));
    c.model_and_keys(base, dir, true, keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_keys_become_nested_tables_with_typed_values() {
        let text = file_pipeline(
            "bench",
            Path::new("/in \"q\".jsonl"),
            Path::new("/w"),
            "http://127.0.0.1:1",
            true,
            &[
                ("ml.batch.size", int(500)),
                ("ml.batch.max.wait", "1s".into()),
            ],
        );
        let t: Table = text.parse().unwrap();
        assert_eq!(t["source"]["path"].as_str(), Some("/in \"q\".jsonl"));
        assert_eq!(t["sink"]["dlq"]["path"].as_str(), Some("/w/dlq.jsonl"));
        assert_eq!(t["ml"]["batch"]["size"].as_integer(), Some(500));
        assert_eq!(t["ml"]["batch"]["enabled"].as_bool(), Some(true));
        assert_eq!(t["ml"]["batch"]["max"]["wait"].as_str(), Some("1s"));
        assert_eq!(
            t["ml"]["batch"]["api"]["endpoint"].as_str(),
            Some("http://127.0.0.1:1/v1")
        );
    }
}
