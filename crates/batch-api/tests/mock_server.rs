//! End to end against the project's mock server: lines built with
//! `RequestTemplate`, every client call, result lines parsed back; plus the
//! fault modes (429/5xx on every call, lost create answers) with adoption by
//! metadata, checking the mock never saw a batch created twice.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use batch_api::wire::{Task, WireFormat};
use batch_api::{connect, ConnectOptions, ErrorClass, ProviderKind, RemoteStatus};
use common::mock::*;
use mock_server::{MockConfig, MockServer};

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
