//! Value checks: numbers, sizes, durations, URLs, names, paths, the `batch` alias.

use std::time::Duration;

use super::*;

#[test]
fn batch_size_rules() {
    assert_err(
        &min_with("[ml.batch]\nsize = \"abc\""),
        &[],
        "ml.batch.size: expected a positive integer, got \"abc\"",
    );
    assert_err(
        MIN,
        &["ml.batch.size=0"],
        "ml.batch.size: expected a positive integer, got 0",
    );
    assert_err(
        MIN,
        &["ml.batch.size=100001"],
        "ml.batch.size: must be between 1 and 100000, got 100001",
    );
    assert_err(
        MIN,
        &["ml.batch.size=1.5"],
        "ml.batch.size: expected a positive integer, got 1.5",
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
    assert_err(
        &min_with("[ml.batch]\nsize = [1, 2]"),
        &[],
        "ml.batch.size: expected a positive integer, got an array",
    );
    assert_err(
        MIN,
        &["ml.batch.cleanup.remote=yes"],
        "ml.batch.cleanup.remote: expected true or false, got \"yes\"",
    );
    let text = MIN.replace("model = \"m\"", "model = 5");
    assert_err(&text, &[], "model.model: expected a string, got 5");
}

#[test]
fn api_endpoint_required_when_batch_enabled() {
    let e = assert_err(
        MIN,
        &["ml.batch.enabled=true"],
        "ml.batch.api.endpoint is required when ml.batch.enabled = true",
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
    assert_err(
        MIN,
        &["ml.batch.api.endpoint=ftp://x/v1"],
        "ml.batch.api.endpoint: expected an http:// or https:// URL, got \"ftp://x/v1\"",
    );
    assert_err_key(
        MIN,
        &["model.endpoint=127.0.0.1:8080/v1/chat/completions"],
        "model.endpoint",
    );
    assert_err_key(
        MIN,
        &["model.endpoint=http:///v1/chat/completions"],
        "model.endpoint",
    );
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
    let e = assert_err_key(
        MIN,
        &["ml.batch.poll.interval=soon"],
        "ml.batch.poll.interval",
    );
    assert!(e
        .to_string()
        .starts_with("ml.batch.poll.interval: expected a duration such as \"200ms\""));
    assert!(e.to_string().ends_with("got \"soon\""));
    // a bare number has no unit
    assert_err_key(MIN, &["ml.batch.max.wait=10"], "ml.batch.max.wait");
    assert_err(
        MIN,
        &["ml.predict.timeout=0s"],
        "ml.predict.timeout: must be greater than 0, got \"0s\"",
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
    assert_err(
        MIN,
        &[
            "ml.batch.poll.interval=1m",
            "ml.batch.poll.max-interval=30s",
        ],
        "ml.batch.poll.max-interval: must be at least ml.batch.poll.interval (1m), got 30s",
    );
    // unset: raised to the poll interval
    let c = ok(MIN, &["ml.batch.poll.interval=10m"]);
    assert_eq!(c.batch.poll_max_interval, Duration::from_secs(600));
    let c = ok(MIN, &["ml.batch.poll.max-interval=1h"]);
    assert_eq!(c.batch.poll_max_interval, Duration::from_secs(3600));
}

#[test]
fn enqueued_token_limit_is_a_positive_integer_and_named_when_wrong() {
    assert_eq!(ok(MIN, &[]).batch.max_enqueued_tokens, None);
    let c = ok(MIN, &["ml.batch.max.enqueued-tokens=15000000000"]);
    assert_eq!(c.batch.max_enqueued_tokens, Some(15_000_000_000));
    for bad in ["0", "-5", "lots", "1.5"] {
        let e = err(MIN, &[&format!("ml.batch.max.enqueued-tokens={bad}")]);
        assert_eq!(e.key(), Some("ml.batch.max.enqueued-tokens"), "{bad}");
    }
}

#[test]
fn budget_is_a_number_of_usd_and_named_when_wrong() {
    assert_eq!(
        ok(MIN, &["ml.budget.max-usd=12.5"]).batch.max_usd,
        Some(12.5)
    );
    assert_eq!(ok(MIN, &["ml.budget.max-usd=3"]).batch.max_usd, Some(3.0));
    for bad in ["-1", "lots"] {
        let e = err(MIN, &[&format!("ml.budget.max-usd={bad}")]);
        assert_eq!(e.key(), Some("ml.budget.max-usd"), "{bad}");
    }
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
    assert_err(
        MIN,
        &["ml.batch.max.bytes=0"],
        "ml.batch.max.bytes: must be greater than 0, got 0",
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
    assert_err(
        MIN,
        &["ml.batch.max.inflight=0"],
        "ml.batch.max.inflight: expected a positive integer, got 0",
    );
    assert_err(
        MIN,
        &["ml.batch.max.retries=-1"],
        "ml.batch.max.retries: expected a non-negative integer, got -1",
    );
    assert_err_key(
        MIN,
        &["ml.batch.max.retries=4294967296"],
        "ml.batch.max.retries",
    );
}

#[test]
fn retry_deadline() {
    let c = ok(MIN, &["ml.batch.retry.deadline=2h 30m"]);
    assert_eq!(c.batch.retry_deadline, Duration::from_secs(9000));
    assert_err_key(
        MIN,
        &["ml.batch.retry.deadline=72"],
        "ml.batch.retry.deadline",
    );
    assert_err_key(
        MIN,
        &["ml.batch.retry.deadline=0s"],
        "ml.batch.retry.deadline",
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
    let e = assert_err(
        &format!("batch = false\n{ACCEPTANCE}"),
        &[],
        "batch: is an alias of ml.batch.enabled, but batch = false and ml.batch.enabled = true; give only one",
    );
    assert_eq!(e.key(), Some("batch"));
}

#[test]
fn pipeline_name_charset() {
    assert_err(
        MIN,
        &["pipeline.name=my pipeline"],
        "pipeline.name: expected a name of 1 to 40 letters, digits, `_` or `-`, got \"my pipeline\"",
    );
    let long = "a".repeat(41);
    assert_err_key(MIN, &[&format!("pipeline.name={long}")], "pipeline.name");
    assert_eq!(
        ok(MIN, &[&format!("pipeline.name={}", "a".repeat(40))])
            .name
            .len(),
        40
    );
    assert_eq!(ok(MIN, &["pipeline.name=A_b-9"]).name, "A_b-9");
    assert_err(MIN, &["pipeline.name="], "pipeline.name: must not be empty");
    assert_err_key(MIN, &["pipeline.name=ü"], "pipeline.name");
}

#[test]
fn batch_number_prefix() {
    let c = ok(&format!("batch_number = \"nightly-7\"\n{MIN}"), &[]);
    assert_eq!(c.batch.batch_number.as_deref(), Some("nightly-7"));
    assert_eq!(c.batch_number_prefix(), "nightly-7");
    assert_err_key(MIN, &["batch_number=a/b"], "batch_number");
}

#[test]
fn file_paths_must_not_collide() {
    assert_err(
        MIN,
        &["sink.path=in.jsonl"],
        "sink.path: must differ from source.path",
    );
    assert_err(
        MIN,
        &["sink.dlq.path=out.jsonl"],
        "sink.dlq.path: must differ from sink.path",
    );
    assert_err(
        MIN,
        &["sink.dlq.path=in.jsonl"],
        "sink.dlq.path: must differ from source.path",
    );
    assert_err(MIN, &["source.path="], "source.path: must not be empty");
}

#[test]
fn duplicate_dotted_and_quoted_key() {
    let text = min_with("[ml.batch]\n\"max.wait\" = \"1s\"\n[ml.batch.max]\nwait = \"2s\"");
    assert_err_key(&text, &[], "ml.batch.max.wait");
}
