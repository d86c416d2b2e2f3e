//! `mlpredict sql`, the real binary against the mock server: a Flink SQL
//! job in batch mode over files, `--explain`, an error's location, and the
//! README's "Flink SQL" example in both modes.

mod common;
mod sql_common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use common::*;
use mock_server::MockServer;
use serde_json::Value;
use sql_common::*;

/// `mlpredict sql --file job.sql ARGS` in `dir` (the script's relative
/// paths are relative to it).
fn sql(dir: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .current_dir(dir)
        .arg("sql")
        .arg("--file")
        .arg("job.sql")
        .args(args)
        .env("OPENAI_API_KEY", "sk-test")
        .env("MLPREDICT_LOG", "info")
        .output()
        .expect("run mlpredict sql")
}

/// A Flink job over files with the FLIP's keys in ML_PREDICT's MAP.
fn batch_job(base: &str, size: &str) -> String {
    format!(
        "-- reviews, rated through the Batch API
CREATE TABLE reviews (id BIGINT, `text` STRING, meta ROW<n BIGINT>)
  WITH ('connector' = 'filesystem', 'path' = 'input.jsonl', 'format' = 'json');
CREATE TABLE rated (id BIGINT, `text` STRING, meta ROW<n BIGINT>, prediction STRING, ml_predict STRING)
  WITH ('connector' = 'filesystem', 'path' = 'rated', 'format' = 'json');
CREATE TEMPORARY MODEL rater INPUT (`text` STRING) OUTPUT (prediction STRING) WITH (
  'provider' = 'openai', 'endpoint' = '{base}/v1/chat/completions',
  'api-key' = '${{OPENAI_API_KEY}}', 'model' = '{MODEL}', 'system-prompt' = 'Rate the review.');
INSERT INTO rated SELECT * FROM ML_PREDICT(TABLE reviews, MODEL rater, DESCRIPTOR(`text`),
  MAP['batch', 'true', 'batch_number', 'reviews', 'ml.batch.api.endpoint', '{base}/v1',
      'ml.batch.size', '{size}', 'ml.batch.poll.interval', '50ms', 'ml.batch.max.wait', '300ms',
      'ml.batch.local.dir', 'work/local']);
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filesystem_job_in_batch_mode_emits_every_record_once() {
    let server = MockServer::start(batch_mock(60)).await.unwrap();
    let (dir, texts, bad) = input_dir(300, 50);
    let d = dir.path().to_path_buf();
    std::fs::write(d.join("job.sql"), batch_job(&server.base_url(), "50")).unwrap();

    // --explain prints the equivalent pipeline.toml and runs nothing.
    let explained = blocking({
        let d = d.clone();
        move || sql(&d, &["--explain"])
    })
    .await;
    assert!(explained.status.success(), "{}", stderr(&explained));
    let toml = String::from_utf8(explained.stdout).unwrap();
    let cfg = pipeline_config::parse_str_with_env(&toml, &[], &|_| Some("sk-test".into())).unwrap();
    assert!(cfg.batch.enabled, "{toml}");
    assert_eq!(cfg.batch.size, 50);
    assert!(!d.join("rated").exists(), "--explain ran the pipeline");
    assert_eq!(server.stats().batches_created, 0);

    let out = blocking({
        let d = d.clone();
        move || sql(&d, &[])
    })
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    // Flink's sink path is a directory: one part file in it, dead letters beside it.
    let (ok, err) = check_output(&lines(&d.join("rated/part-0.jsonl")), &texts);
    assert_eq!((ok, err), (300, 0));
    assert_eq!(lines(&d.join("rated-dlq.jsonl")).len(), bad);
    let stats = server.stats();
    assert_eq!(stats.batches_created, 6, "{stats:?}");
    assert_eq!(stats.requests_answered, 300);
    assert_eq!(stats.duplicate_answers, 0);

    // A rerun of a finished job emits nothing again.
    let again = blocking({
        let d = d.clone();
        move || sql(&d, &[])
    })
    .await;
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(lines(&d.join("rated/part-0.jsonl")).len(), 300);
    assert_eq!(server.stats().batches_created, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_value_names_the_key_and_where_the_sql_set_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    std::fs::write(d.join("job.sql"), batch_job("http://127.0.0.1:9", "lots")).unwrap();
    let out = blocking(move || sql(&d, &[])).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("in job.sql: line 11, column 24 (MAP key 'ml.batch.size' of ML_PREDICT): ml.batch.size: expected a positive integer, got \"lots\""),
        "{err}"
    );
}

/// The README's "Flink SQL" section: its first ```sql block is the job, its
/// second the one line that turns batch mode on.
fn readme_sql() -> (String, String) {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let section = readme
        .split("\n## Flink SQL\n")
        .nth(1)
        .expect("README has a Flink SQL section");
    let blocks: Vec<&str> = section
        .split("```sql\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .collect();
    (blocks[0].to_string(), blocks[1].trim().to_string())
}

/// The README's job in `batch` mode or per record: its rows.
async fn run_readme_job(batch: bool, texts: &BTreeMap<u64, String>, d: &Path) -> Vec<Value> {
    let server = MockServer::start(batch_mock(60)).await.unwrap();
    let (job, batch_line) = readme_sql();
    let mut job = job.replace("http://127.0.0.1:8080", &server.base_url());
    if batch {
        let insert_line = job
            .lines()
            .find(|l| l.starts_with("INSERT INTO"))
            .unwrap()
            .to_string();
        job = job.replace(
            &insert_line,
            &batch_line.replace("http://127.0.0.1:8080", &server.base_url()),
        );
    }
    std::fs::write(d.join("job.sql"), job).unwrap();
    let fast = [
        "-D",
        "ml.batch.poll.interval=50ms",
        "-D",
        "ml.batch.max.wait=300ms",
        "-D",
        "ml.batch.local.dir=work/local",
    ];
    let out = blocking({
        let d = d.to_path_buf();
        move || sql(&d, &fast)
    })
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let shape = if batch { Shape::batch() } else { Shape::sync() };
    let rows = lines(&d.join("scored/part-0.jsonl"));
    let (ok, err) = check_rows(&rows, texts, &shape, ["id", "rating", "review"]);
    assert_eq!((ok, err), (texts.len(), 0));
    assert_eq!(server.stats().batches_created > 0, batch);
    rows
}

/// The README's example as written runs per record; with its batch line it
/// runs in batch mode; the sink's rows are the same but for the metadata.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_example_runs_per_record_and_with_its_batch_line_in_batch_mode() {
    let (sync_dir, texts, _) = input_dir(120, 0);
    let batch_dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        sync_dir.path().join("input.jsonl"),
        batch_dir.path().join("input.jsonl"),
    )
    .unwrap();
    let (per_record, batch) = tokio::join!(
        run_readme_job(false, &texts, sync_dir.path()),
        run_readme_job(true, &texts, batch_dir.path())
    );
    assert_eq!(
        without_metadata(&per_record, "id"),
        without_metadata(&batch, "id")
    );
}

/// A value that does not fit its column's declared type sends the record
/// to the dead letters, naming the column; a column a record lacks is null.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_does_not_fit_a_column_goes_to_the_dead_letters() {
    let server = MockServer::start(batch_mock(60)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let input = [
        r#"{"id": 1, "text": "fine"}"#,
        r#"{"id": "two", "text": "an id that is a string"}"#,
        r#"{"text": "no id at all"}"#,
        r#"{"id": 4.5, "text": "a fraction"}"#,
    ];
    std::fs::write(d.join("input.jsonl"), input.join("\n") + "\n").unwrap();
    std::fs::write(d.join("job.sql"), file_job(&d, &server.base_url(), "", "")).unwrap();
    let out = blocking({
        let d = d.clone();
        move || sql(&d, &[])
    })
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = lines(&d.join("rated/part-0.jsonl"));
    let ids: Vec<&Value> = rows.iter().map(|r| &r["review_id"]).collect();
    assert_eq!(ids, [&Value::from(1), &Value::Null], "{rows:?}");
    let dead = lines(&d.join("rated-dlq.jsonl"));
    assert_eq!(dead.len(), 2, "{dead:?}");
    for (d, got) in dead.iter().zip(["got a string", "got the number 4.5"]) {
        assert_eq!(d["column"], "review_id");
        let error = d["error"].as_str().unwrap();
        assert_eq!(error, format!("column `review_id` is BIGINT: {got}"));
        assert!(d["position"].is_u64() && d["raw"].is_string(), "{d}");
    }
    assert_eq!(
        server.stats().requests_answered,
        4,
        "the check runs after the request"
    );
}

/// FAILOVER stops the pipeline at the first failed request with its state
/// committed up to there; a rerun resumes (here, IGNORE-ing what fails).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_stops_at_a_failed_request_and_a_rerun_resumes() {
    let mut mock = batch_mock(60);
    mock.faults.request_4xx_fraction = 0.05;
    let server = MockServer::start(mock).await.unwrap();
    let (dir, texts, _) = input_dir(300, 0);
    let d = dir.path().to_path_buf();
    let job = file_job(
        &d,
        &server.base_url(),
        ", 'error-handling-strategy' = 'FAILOVER'",
        &batch_map(&server.base_url(), 20),
    );
    std::fs::write(d.join("job.sql"), job).unwrap();
    let out = blocking({
        let d = d.clone();
        move || sql(&d, &[])
    })
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("error: record 0-")
            && err.contains("'error-handling-strategy' is FAILOVER")
            && err.contains("running the same command again resumes"),
        "{err}"
    );
    let before = lines(&d.join("rated/part-0.jsonl"));
    assert!(
        before.iter().all(|r| r["ml_predict"]["status"] == "ok"),
        "no failed row is committed"
    );
    assert!(before.len() < 300);
    let out = blocking({
        let d = d.clone();
        move || sql(&d, &["-D", "pipeline.on-error=emit"])
    })
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = lines(&d.join("rated/part-0.jsonl"));
    let (ok, err) = check_file_job(&rows, &texts, &Shape::batch());
    assert_eq!(ok + err, 300);
    assert!(err > 0, "the 4xx rows are emitted on the rerun");
    assert_eq!(rows[..before.len()], before[..], "the committed rows stay");
    assert_no_double_pay(&server);
}
