//! The acceptance-test configuration and the defaults of a minimal one.

use std::path::PathBuf;
use std::time::Duration;

use super::*;

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
    assert_eq!(b.retry_deadline, Duration::from_secs(72 * 3600));
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
            mode: BatchMode::Inline,
            handoff: None,
            size: 10,
            api_endpoint: None,
            poll_interval: Duration::from_secs(10),
            poll_max_interval: Duration::from_secs(300),
            local_dir: "/tmp/flink_batches".into(),
            max_wait: Duration::from_secs(600),
            max_bytes: 100_000_000,
            max_inflight: 8,
            max_enqueued_tokens: None,
            max_usd: None,
            job_timeout: Duration::from_secs(86_400),
            max_retries: 3,
            retry_deadline: Duration::from_secs(259_200),
            cleanup_remote: true,
            batch_number: None,
        }
    );
    assert_eq!(
        c.sync,
        SyncConfig {
            max_concurrent_operations: 10,
            output_mode: OutputMode::Ordered,
            timeout: Duration::from_secs(180),
            request_timeout: Duration::from_secs(30),
            max_retries: 100,
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
