//! End to end against the project's mock server: lines built with
//! `RequestTemplate`, every client call, result lines parsed back; plus the
//! fault modes (429/5xx on every call, lost create answers) with adoption by
//! metadata, checking the mock never saw a batch created twice.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use batch_api::wire::{parse_result_line, split_lines, Outcome, RequestTemplate, Task, WireFormat};
use batch_api::{
    connect, BatchApi, BatchMeta, ConnectOptions, ErrorClass, ProviderKind, RemoteBatch,
    RemoteStatus,
};
use common::*;
use mock_server::{MockConfig, MockServer};

fn opts(endpoint: String, key: Option<&str>, path: &str) -> ConnectOptions {
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
    }
}

fn write_batch(
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
async fn create_once(
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

async fn wait_done(api: &dyn BatchApi, id: &str) -> RemoteBatch {
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
async fn results(
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

fn meta(n: u32) -> BatchMeta {
    BatchMeta {
        pipeline: "it".into(),
        batch_number: format!("it-0-{n}"),
        attempt: 0,
    }
}

async fn openai_round(
    server: &MockServer,
    task: Task,
    n: usize,
    key: Option<&str>,
) -> BTreeMap<String, (bool, bool)> {
    let path = if task == Task::Chat {
        "/v1/chat/completions"
    } else {
        "/v1/embeddings"
    };
    let api = connect(
        ProviderKind::OpenAi,
        opts(format!("{}/v1", server.base_url()), key, path),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = write_batch(dir.path(), WireFormat::OpenAi, task, path, n);
    let file_id = api.upload(&file, "batch.jsonl").await.unwrap();
    assert!(file_id.is_some());
    let m = meta(n as u32);
    let b = create_once(api.as_ref(), file_id.as_deref(), &file, &m).await;
    assert_eq!(b.meta.as_ref(), Some(&m));
    let done = wait_done(api.as_ref(), &b.id).await;
    assert_eq!(done.status, RemoteStatus::Completed, "{done:?}");
    assert_eq!(done.meta.as_ref(), Some(&m));
    let res = results(api.as_ref(), &done, dir.path(), WireFormat::OpenAi, task).await;
    assert_eq!(res.len(), n, "every request answered once");
    for f in [&done.output_file, &done.error_file].into_iter().flatten() {
        api.delete_file(f).await.unwrap();
    }
    api.delete_file(file_id.as_deref().unwrap()).await.unwrap();
    res
}

#[tokio::test]
async fn openai_chat_and_embeddings_end_to_end() {
    let mut cfg = MockConfig::default();
    cfg.make_instant();
    let server = MockServer::start(cfg).await.unwrap();
    let res = openai_round(&server, Task::Chat, 500, Some("sk-mock")).await;
    assert!(res.values().all(|(ok, _)| *ok));
    let res = openai_round(&server, Task::Embeddings, 50, None).await;
    assert!(res.values().all(|(ok, _)| *ok));
    assert!(server.stats().duplicate_creates.is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn openai_with_faults_everywhere() {
    let mut cfg = MockConfig::default();
    cfg.make_instant();
    cfg.seed = 7;
    cfg.retry_after = Duration::from_millis(5);
    cfg.faults.rate_limit_fraction = 0.2;
    cfg.faults.server_error_fraction = 0.2;
    cfg.faults.lost_response_fraction = 0.5;
    cfg.faults.request_4xx_fraction = 0.1;
    cfg.faults.request_5xx_fraction = 0.1;
    cfg.faults.empty_error_file_id = true;
    let server = MockServer::start(cfg).await.unwrap();
    for round in 0..4 {
        let res = openai_round(&server, Task::Chat, 200 + round, None).await;
        let failed_retriable = res.values().filter(|(ok, r)| !ok && *r).count();
        let failed_final = res.values().filter(|(ok, r)| !ok && !*r).count();
        assert!(
            failed_retriable > 0 && failed_final > 0,
            "{failed_retriable} {failed_final}"
        );
    }
    let stats = server.stats();
    assert!(
        stats.duplicate_creates.is_empty(),
        "paid twice: {:?}",
        stats.duplicate_creates
    );
    assert!(stats.faults_injected.values().sum::<u64>() > 0, "{stats:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn generic_end_to_end_with_lost_answers() {
    let mut cfg = MockConfig::default();
    cfg.make_instant();
    cfg.seed = 3;
    cfg.retry_after = Duration::from_millis(5);
    cfg.faults.lost_response_fraction = 0.5;
    cfg.faults.rate_limit_fraction = 0.1;
    cfg.faults.request_5xx_fraction = 0.1;
    let server = MockServer::start(cfg).await.unwrap();
    let api = connect(
        ProviderKind::Generic,
        opts(
            format!("{}/ml/api/batch_predict", server.base_url()),
            Some("k"),
            "/v1/chat/completions",
        ),
    )
    .unwrap();
    for (i, task) in [Task::Chat, Task::Embeddings, Task::Chat]
        .into_iter()
        .enumerate()
    {
        let dir = tempfile::tempdir().unwrap();
        let n = 100 + i;
        let path = if task == Task::Chat {
            "/v1/chat/completions"
        } else {
            "/v1/embeddings"
        };
        let file = write_batch(dir.path(), WireFormat::Generic, task, path, n);
        assert_eq!(api.upload(&file, "x").await.unwrap(), None);
        let m = meta(n as u32);
        let b = create_once(api.as_ref(), None, &file, &m).await;
        let done = wait_done(api.as_ref(), &b.id).await;
        assert_eq!(done.status, RemoteStatus::Completed, "{done:?}");
        let res = results(api.as_ref(), &done, dir.path(), WireFormat::Generic, task).await;
        assert_eq!(res.len(), n);
        assert!(res.values().any(|(ok, _)| *ok));
    }
    let stats = server.stats();
    assert!(
        stats.duplicate_creates.is_empty(),
        "paid twice: {:?}",
        stats.duplicate_creates
    );
    server.shutdown().await;
}

#[tokio::test]
async fn wrong_key_is_permanent_and_not_shown() {
    let mut cfg = MockConfig::default();
    cfg.make_instant();
    cfg.api_key = Some("right-key".into());
    let server = MockServer::start(cfg).await.unwrap();
    let api = connect(
        ProviderKind::OpenAi,
        opts(
            format!("{}/v1", server.base_url()),
            Some("sk-wrong-KEY-987654"),
            "/v1/chat/completions",
        ),
    )
    .unwrap();
    let e = api.list(None, 10).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Permanent, "{e:?}");
    assert_eq!(e.status, Some(401));
    let all = format!("{e} {e:?}");
    assert!(!all.to_lowercase().contains("wrong-key-987654"), "{all}");
    server.shutdown().await;
}
