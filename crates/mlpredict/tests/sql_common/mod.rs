//! Shared parts of the `mlpredict sql` end-to-end tests: a Flink job over
//! files whose sink selects, renames and reorders ML_PREDICT's output, and
//! the check of its rows (by the output contract's own checker).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::common::{check_records, Shape, MODEL};

/// A Flink job over files in `dir` (`input.jsonl` → directory `rated`):
/// `model` goes into CREATE MODEL's options, `map` is ML_PREDICT's MAP
/// (empty: per record).
pub fn file_job(dir: &Path, base: &str, model: &str, map: &str) -> String {
    let d = dir.display();
    let map = if map.is_empty() {
        String::new()
    } else {
        format!(", MAP[{map}]")
    };
    format!(
        "-- reviews, rated; the sink renames and reorders ML_PREDICT's output
SET 'ml.batch.local.dir' = '{d}/local';
CREATE TABLE reviews (id BIGINT, `text` STRING, meta ROW<n BIGINT>)
  WITH ('connector' = 'filesystem', 'path' = '{d}/input.jsonl', 'format' = 'json');
CREATE TABLE rated (review_id BIGINT, rating STRING, review STRING, ml_predict STRING)
  WITH ('connector' = 'filesystem', 'path' = '{d}/rated', 'format' = 'json');
CREATE TEMPORARY MODEL rater INPUT (`text` STRING) OUTPUT (prediction STRING) WITH (
  'provider' = 'openai', 'endpoint' = '{base}/v1/chat/completions',
  'api-key' = 'sk-test', 'model' = '{MODEL}', 'system-prompt' = 'Rate the review.'{model});
INSERT INTO rated SELECT id, prediction AS rating, `text` FROM ML_PREDICT(TABLE reviews, MODEL rater, DESCRIPTOR(`text`){map});
"
    )
}

/// The MAP of a batch-mode [`file_job`].
pub fn batch_map(base: &str, size: usize) -> String {
    format!(
        "'batch', 'true', 'batch_number', 'reviews', 'ml.batch.api.endpoint', '{base}/v1', 'ml.batch.size', '{size}', 'ml.batch.poll.interval', '50ms', 'ml.batch.max.wait', '300ms'"
    )
}

/// Rows whose columns `[id, prediction, text]` (plus `ml_predict`) hold the
/// record's id, the model's output and its text: exactly those columns,
/// each input record once, as the output contract says. Returns (ok, error).
pub fn check_rows(
    rows: &[Value],
    texts: &BTreeMap<u64, String>,
    shape: &Shape,
    [id, prediction, text]: [&str; 3],
) -> (usize, usize) {
    let mut want = vec![id, prediction, text, "ml_predict"];
    want.sort();
    let records: Vec<Value> = rows
        .iter()
        .map(|r| {
            let keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(keys, want, "a row holds exactly the sink's columns: {r}");
            let n = r[id].as_u64().expect("the id column");
            serde_json::json!({
                "id": n, "text": r[text], "meta": {"n": n},
                "prediction": r[prediction], "ml_predict": r["ml_predict"],
            })
        })
        .collect();
    let (ok, err, _) = check_records(&records, texts, shape);
    (ok, err)
}

/// [`check_rows`] of a [`file_job`].
pub fn check_file_job(
    rows: &[Value],
    texts: &BTreeMap<u64, String>,
    shape: &Shape,
) -> (usize, usize) {
    check_rows(rows, texts, shape, ["review_id", "rating", "review"])
}

/// The rows by their first column, without `ml_predict`.
pub fn without_metadata(rows: &[Value], id: &str) -> BTreeMap<u64, Value> {
    rows.iter()
        .map(|r| {
            let mut r = r.clone();
            r.as_object_mut().unwrap().remove("ml_predict");
            (r[id].as_u64().unwrap(), r)
        })
        .collect()
}
