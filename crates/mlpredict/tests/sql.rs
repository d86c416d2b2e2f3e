//! `mlpredict sql`, the real binary against the mock server: a Flink SQL
//! job in batch mode over files, `--explain`, an error's location, and the
//! README's "Flink SQL" example in both modes.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use mock_server::MockServer;

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

async fn run_readme_job(batch: bool) {
    let server = MockServer::start(batch_mock(60)).await.unwrap();
    let (dir, texts, _) = input_dir(120, 0);
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
        assert_ne!(job.lines().count(), 0);
    }
    let d = dir.path().to_path_buf();
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
        let d = d.clone();
        move || sql(&d, &fast)
    })
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let shape = if batch { Shape::batch() } else { Shape::sync() };
    let (ok, err, _) = check_records(&lines(&d.join("scored/part-0.jsonl")), &texts, &shape);
    assert_eq!((ok, err), (120, 0));
    assert_eq!(server.stats().batches_created > 0, batch);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_example_runs_per_record() {
    run_readme_job(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_example_with_its_batch_line_runs_in_batch_mode() {
    run_readme_job(true).await;
}
