//! End to end against the project's mock server, Anthropic's Message
//! Batches: faults, adoption by the batch tag, a wrong key.

mod common;

use std::path::Path;
use std::time::Duration;

use batch_api::wire::{RequestTemplate, Task, WireFormat};
use batch_api::{
    connect, BatchApi, BatchMeta, ErrorClass, ProviderKind, RemoteBatch, RemoteStatus,
};
use common::mock::*;
use mock_server::{MockConfig, MockServer};

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
