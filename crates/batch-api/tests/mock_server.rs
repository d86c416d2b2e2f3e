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
        api_version: None,
        anthropic_version: None,
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

// ---------------------------------------------------------------- anthropic

fn anthropic_file(dir: &Path, n: usize, salt: &str) -> std::path::PathBuf {
    let t = RequestTemplate::new(
        WireFormat::Anthropic,
        Task::Chat,
        "/v1/messages",
        "claude-haiku-4-5",
        Some("Classify."),
        None,
        Some(16),
    );
    let mut out = Vec::new();
    for i in 0..n {
        let input = serde_json::to_string(&format!("{salt} review {i}: great")).unwrap();
        t.write_line(&mut out, &format!("0-{i}"), input.as_bytes());
    }
    let p = dir.join(format!("{salt}.requests.jsonl"));
    std::fs::write(&p, out).unwrap();
    p
}

fn anthropic_api(server: &MockServer, key: Option<&str>) -> Box<dyn BatchApi> {
    connect(
        ProviderKind::Anthropic,
        opts(format!("{}/v1", server.base_url()), key, "/v1/messages"),
    )
    .unwrap()
}

/// Create the way the core does with Anthropic: on Ambiguous, `find` until
/// it answers (it fails Transient while an unknown batch is in progress).
async fn create_anthropic(
    api: &dyn BatchApi,
    path: &Path,
    meta: &BatchMeta,
) -> (RemoteBatch, bool) {
    for _ in 0..200 {
        match api.create(None, path, meta).await {
            Ok(b) => return (b, false),
            Err(e) if e.class == ErrorClass::Ambiguous => loop {
                match api.find(meta, 0).await {
                    Ok(Some(b)) => return (b, true),
                    Ok(None) => break,
                    Err(e) if e.is_retriable() => {
                        tokio::time::sleep(Duration::from_millis(5)).await
                    }
                    Err(e) => panic!("find failed: {e:?}"),
                }
            },
            Err(e) if e.class == ErrorClass::Transient => {
                tokio::time::sleep(
                    e.retry_after
                        .unwrap_or(Duration::from_millis(5))
                        .min(Duration::from_millis(20)),
                )
                .await;
            }
            Err(e) => panic!("create failed: {e:?}"),
        }
    }
    panic!("create never succeeded");
}

#[tokio::test]
async fn anthropic_end_to_end_with_faults_and_adoption() {
    let mut cfg = MockConfig::default();
    cfg.make_instant();
    cfg.seed = 5;
    cfg.retry_after = Duration::from_millis(5);
    cfg.api_key = Some("sk-ant-mock".into());
    cfg.faults.lost_response_fraction = 0.5;
    cfg.faults.rate_limit_fraction = 0.1;
    cfg.faults.server_error_fraction = 0.1;
    cfg.faults.token_limit_fraction = 0.1;
    cfg.faults.request_4xx_fraction = 0.1;
    cfg.faults.request_5xx_fraction = 0.1;
    let server = MockServer::start(cfg).await.unwrap();
    let api = anthropic_api(&server, Some("sk-ant-mock"));
    assert_eq!(
        api.upload(Path::new("/nonexistent"), "x").await.unwrap(),
        None
    );
    let dir = tempfile::tempdir().unwrap();
    let mut adopted = 0;
    for round in 0..6u32 {
        let n = 50 + round as usize;
        let file = anthropic_file(dir.path(), n, &format!("r{round}"));
        let m = meta(round);
        let (b, was_adopted) = create_anthropic(api.as_ref(), &file, &m).await;
        adopted += usize::from(was_adopted);
        assert!(b.id.starts_with("msgbatch_"));
        assert_eq!(b.meta.as_ref(), Some(&m));
        let done = wait_done(api.as_ref(), &b.id).await;
        assert_eq!(done.status, RemoteStatus::Completed, "{done:?}");
        assert_eq!(done.counts.unwrap().total, n as u64);
        assert!(done.error_file.is_none());
        let res = results(
            api.as_ref(),
            &done,
            dir.path(),
            WireFormat::Anthropic,
            Task::Chat,
        )
        .await;
        assert_eq!(res.len(), n, "every request answered once");
        for i in 0..n {
            assert!(res.contains_key(&format!("0-{i}")), "public custom_ids");
        }
        assert!(res.values().any(|(ok, _)| *ok));
    }
    let stats = server.stats();
    assert!(adopted > 0, "no lost answer was adopted: {stats:?}");
    assert!(
        stats.duplicate_creates.is_empty(),
        "paid twice: {:?}",
        stats.duplicate_creates
    );
    assert_eq!(stats.message_batches_created, 6, "{stats:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn anthropic_find_proves_ownership_by_the_batch_tag() {
    let cfg = MockConfig {
        validating: Duration::ZERO,
        in_progress: Duration::from_millis(400),
        finalizing: Duration::ZERO,
        ..MockConfig::default()
    };
    let server = MockServer::start(cfg).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = anthropic_file(dir.path(), 30, "a");
    let creator = anthropic_api(&server, None);
    let m = meta(1);
    let b = creator.create(None, &file, &m).await.unwrap();
    // The creating client knows its batch at once.
    assert_eq!(creator.find(&m, 0).await.unwrap().unwrap().id, b.id);
    assert!(creator.find(&meta(2), 0).await.unwrap().is_none());
    // A fresh process cannot tell while the batch runs...
    let fresh = anthropic_api(&server, None);
    let e = fresh.find(&m, 0).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Transient, "{e:?}");
    assert_eq!(
        e.code.as_deref(),
        Some(batch_api::anthropic::ADOPTION_PENDING)
    );
    // ...unless the request count rules it out, or it polls it (then it is
    // another batch's, already recorded)
    assert!(fresh
        .find_with_count(&meta(2), 0, 31)
        .await
        .unwrap()
        .is_none());
    assert!(fresh.find_with_count(&meta(2), 0, 30).await.is_err());
    let polled = anthropic_api(&server, None);
    polled.get(&b.id).await.unwrap();
    assert!(polled.find(&meta(2), 0).await.unwrap().is_none());
    // Batches older than not_before are not looked at.
    let later = b.created_at.unwrap() + 3600;
    assert!(fresh.find(&m, later).await.unwrap().is_none());
    // Once it ended, its results show the tag.
    wait_done(fresh.as_ref(), &b.id).await;
    let again = anthropic_api(&server, None);
    assert!(again.find(&meta(2), 0).await.unwrap().is_none());
    let found = again.find(&m, 0).await.unwrap().unwrap();
    assert_eq!(found.id, b.id);
    assert_eq!(found.meta.as_ref(), Some(&m));
    assert_eq!(found.status, RemoteStatus::Completed);
    // cancel of an ended batch is refused; cancel of a running one works
    assert!(again.cancel(&b.id).await.is_err());
    let b2 = again.create(None, &file, &meta(3)).await.unwrap();
    let c = again.cancel(&b2.id).await.unwrap();
    assert_eq!(c.status, RemoteStatus::Cancelling);
    let done = wait_done(again.as_ref(), &b2.id).await;
    let res = results(
        again.as_ref(),
        &done,
        dir.path(),
        WireFormat::Anthropic,
        Task::Chat,
    )
    .await;
    assert_eq!(res.len(), 30);
    assert!(
        res.values().all(|(ok, retriable)| !ok && *retriable),
        "canceled requests are retried"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn anthropic_wrong_key_is_permanent_and_not_shown() {
    let mut cfg = MockConfig::default();
    cfg.make_instant();
    cfg.api_key = Some("right-key".into());
    let server = MockServer::start(cfg).await.unwrap();
    let api = anthropic_api(&server, Some("sk-ant-wrong-KEY-987654"));
    let e = api.list(None, 10).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Permanent, "{e:?}");
    assert_eq!(e.status, Some(401));
    assert_eq!(e.code.as_deref(), Some("authentication_error"));
    let all = format!("{e} {e:?}");
    assert!(!all.to_lowercase().contains("wrong-key-987654"), "{all}");
    let e = api.get("msgbatch_nope").await.unwrap_err();
    assert_eq!(e.status, Some(401));
    let ok = anthropic_api(&server, Some("right-key"));
    let e = ok.get("msgbatch_nope").await.unwrap_err();
    assert_eq!(e.class, ErrorClass::NotFound);
    assert_eq!(e.code.as_deref(), Some("not_found_error"));
    server.shutdown().await;
}

// ---------------------------------------------------------------- azure

fn azure_opts(server: &MockServer, base: &str, version: Option<&str>) -> ConnectOptions {
    let mut o = opts(
        format!("{}{base}", server.base_url()),
        Some("az-key"),
        "/openai/deployments/gpt-4o-mini-batch/chat/completions",
    );
    o.api_version = version.map(str::to_owned);
    o
}

#[tokio::test]
async fn azure_end_to_end_with_faults() {
    let mut cfg = MockConfig::default();
    cfg.make_instant();
    cfg.seed = 9;
    cfg.retry_after = Duration::from_millis(5);
    cfg.api_key = Some("az-key".into());
    cfg.faults.lost_response_fraction = 0.4;
    cfg.faults.rate_limit_fraction = 0.1;
    cfg.faults.server_error_fraction = 0.1;
    let server = MockServer::start(cfg).await.unwrap();
    for (round, (base, version)) in [
        ("/openai", Some("2024-10-21")),
        ("/openai/v1", Some("2024-10-21")), // dated: not sent to v1
        ("/openai/v1", None),
        ("/openai", Some("2025-01-01-preview")),
    ]
    .into_iter()
    .enumerate()
    {
        let api = connect(
            ProviderKind::AzureOpenAi,
            azure_opts(&server, base, version),
        )
        .unwrap();
        assert_eq!(api.name(), "azure-openai");
        assert_eq!(api.limits().max_requests, 100_000);
        let dir = tempfile::tempdir().unwrap();
        let n = 40 + round;
        // Azure lines name the operation without /v1 or the deployment.
        let file = write_batch(
            dir.path(),
            WireFormat::OpenAi,
            Task::Chat,
            "/chat/completions",
            n,
        );
        let file_id = api.upload(&file, "batch.jsonl").await.unwrap();
        let m = meta(100 + round as u32);
        let b = create_once(api.as_ref(), file_id.as_deref(), &file, &m).await;
        let done = wait_done(api.as_ref(), &b.id).await;
        assert_eq!(done.status, RemoteStatus::Completed, "{base}: {done:?}");
        let res = results(
            api.as_ref(),
            &done,
            dir.path(),
            WireFormat::OpenAi,
            Task::Chat,
        )
        .await;
        assert_eq!(res.len(), n);
        assert!(res.values().all(|(ok, _)| *ok));
        for f in [&done.output_file, &done.error_file, &file_id]
            .into_iter()
            .flatten()
        {
            api.delete_file(f).await.unwrap();
        }
    }
    let stats = server.stats();
    assert!(
        stats.duplicate_creates.is_empty(),
        "{:?}",
        stats.duplicate_creates
    );
    assert!(stats
        .calls_by_route
        .keys()
        .any(|k| k.starts_with("POST /openai/v1/batches")));
    assert!(stats
        .calls_by_route
        .keys()
        .any(|k| k.starts_with("POST /openai/batches")));
    // Without an api-version the classic routes refuse every call.
    let api = connect(
        ProviderKind::AzureOpenAi,
        azure_opts(&server, "/openai", None),
    )
    .unwrap();
    let e = api.list(None, 5).await.unwrap_err();
    assert_eq!((e.class, e.status), (ErrorClass::Permanent, Some(400)));
    server.shutdown().await;
}
