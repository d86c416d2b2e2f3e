//! What the tests against the project's mock server share: connecting,
//! writing a batch file, creating once (adoption by metadata), waiting and
//! reading results back.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use batch_api::wire::{parse_result_line, split_lines, Outcome, RequestTemplate, Task, WireFormat};
use batch_api::{BatchApi, BatchMeta, ConnectOptions, ErrorClass, RemoteBatch};

use super::*;

pub fn opts(endpoint: String, key: Option<&str>, path: &str) -> ConnectOptions {
    ConnectOptions {
        endpoint,
        status_endpoint: None,
        api_key: key.map(str::to_owned),
        request_path: path.to_owned(),
        timeouts: timeouts(),
        retry: batch_api::RetryPolicy {
            max_attempts: 12,
            base: Duration::from_millis(2),
            cap: Duration::from_millis(20),
            max_retry_after: Duration::from_secs(2),
        },
        limits: None,
        api_version: None,
        anthropic_version: None,
    }
}

pub fn write_batch(
    dir: &Path,
    format: WireFormat,
    task: Task,
    path: &str,
    n: usize,
) -> std::path::PathBuf {
    let t = RequestTemplate::new(
        format,
        task,
        path,
        "gpt-4o-mini",
        Some("Classify: \"pos\"|\"neg\""),
        Some(0.0),
        Some(4),
    );
    let mut out = Vec::new();
    for i in 0..n {
        let input = serde_json::to_string(&format!("review {i}: great \"phone\"\n")).unwrap();
        t.write_line(&mut out, &format!("l0-{i}"), input.as_bytes());
    }
    let p = dir.join("batch.requests.jsonl");
    std::fs::write(&p, out).unwrap();
    p
}

/// Create the way the core will: on Ambiguous look the batch up by its
/// metadata before creating again; on Transient wait and repeat.
pub async fn create_once(
    api: &dyn BatchApi,
    file_id: Option<&str>,
    path: &Path,
    meta: &BatchMeta,
) -> RemoteBatch {
    for _ in 0..50 {
        match api.create(file_id, path, meta).await {
            Ok(b) => return b,
            Err(e) if e.class == ErrorClass::Ambiguous => {
                if let Some(b) = api.find(meta, 0).await.unwrap() {
                    return b;
                }
            }
            Err(e) if e.class == ErrorClass::Transient => {
                tokio::time::sleep(e.retry_after.unwrap_or(Duration::from_millis(5))).await;
            }
            Err(e) => panic!("create failed: {e:?}"),
        }
    }
    panic!("create never succeeded");
}

pub async fn wait_done(api: &dyn BatchApi, id: &str) -> RemoteBatch {
    for _ in 0..1000 {
        let b = api.get(id).await.unwrap();
        if b.status.is_terminal() {
            return b;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("batch {id} never finished");
}

/// Download and parse every result file of a finished batch: custom_id →
/// (ok, retriable).
pub async fn results(
    api: &dyn BatchApi,
    b: &RemoteBatch,
    dir: &Path,
    format: WireFormat,
    task: Task,
) -> BTreeMap<String, (bool, bool)> {
    let mut seen = BTreeMap::new();
    for (i, file) in [&b.output_file, &b.error_file]
        .into_iter()
        .flatten()
        .enumerate()
    {
        let dest = dir.join(format!("results-{i}.jsonl"));
        let n = api.download(file, &dest).await.unwrap();
        let bytes = std::fs::read(&dest).unwrap();
        assert_eq!(n, bytes.len() as u64);
        assert_eq!(api.fetch(file).await.unwrap(), bytes, "fetch = download");
        for line in split_lines(&bytes) {
            let r = parse_result_line(format, task, line).unwrap();
            let v = match &r.outcome {
                Outcome::Ok { prediction, .. } => {
                    match task {
                        Task::Chat => {
                            assert!(prediction.get().starts_with('"'), "{}", prediction.get())
                        }
                        Task::Embeddings => {
                            assert!(prediction.get().starts_with('['), "{}", prediction.get())
                        }
                    }
                    (true, false)
                }
                Outcome::Failed { retriable, .. } => (false, *retriable),
            };
            assert!(
                seen.insert(r.custom_id.into_owned(), v).is_none(),
                "custom_id twice"
            );
        }
    }
    seen
}

pub fn meta(n: u32) -> BatchMeta {
    BatchMeta {
        pipeline: "it".into(),
        batch_number: format!("it-0-{n}"),
        attempt: 0,
    }
}
