//! OpenAiClient's failure classes and retry rules, against scripted
//! servers: which answers are retried, how often, and which never are.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::post;
use axum::{Json, Router};
use batch_api::{ApiError, BatchApi, ClientTimeouts, ErrorClass, OpenAiClient, RemoteStatus};
use common::openai::*;
use common::*;

#[tokio::test]
async fn get_retries_429_with_retry_after_ms_then_succeeds() {
    let (router, count) = scripted(vec![
        (
            429,
            vec![("retry-after-ms", "30".into())],
            err_body("rate_limit_exceeded", "Rate limit reached"),
        ),
        (
            429,
            vec![("retry-after", "0".into())],
            err_body("rate_limit_exceeded", "Rate limit reached"),
        ),
        (200, vec![], batch_json("batch_1", "in_progress", 1, None)),
    ]);
    let base = serve(router).await;
    let start = std::time::Instant::now();
    let b = client(&base).get("batch_1").await.unwrap();
    assert_eq!(b.status, RemoteStatus::InProgress);
    assert_eq!(count.load(Ordering::SeqCst), 3);
    assert!(
        start.elapsed() >= Duration::from_millis(30),
        "retry-after-ms honoured"
    );
}

#[tokio::test]
async fn get_retries_5xx_and_gives_up_after_max_attempts() {
    let (router, count) = scripted(vec![(
        503,
        vec![],
        err_body("server_error", "The server is overloaded"),
    )]);
    let base = serve(router).await;
    let e = client(&base).get("batch_1").await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Ambiguous);
    assert_eq!(e.status, Some(503));
    assert_eq!(e.code.as_deref(), Some("server_error"));
    assert_eq!(
        count.load(Ordering::SeqCst),
        fast_retry().max_attempts as usize
    );
}

#[tokio::test]
async fn x_should_retry_false_stops_retries() {
    let (router, count) = scripted(vec![(
        503,
        vec![("x-should-retry", "false".into())],
        err_body("server_error", "no"),
    )]);
    let base = serve(router).await;
    let e = client(&base).list(None, 10).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Permanent);
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn long_retry_after_is_left_to_the_caller() {
    let (router, count) = scripted(vec![(
        429,
        vec![("retry-after", "120".into())],
        err_body("rate_limit_exceeded", "slow down"),
    )]);
    let base = serve(router).await;
    let e = client(&base).get("batch_1").await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Transient);
    assert_eq!(e.retry_after, Some(Duration::from_secs(120)));
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn create_and_cancel_are_never_retried() {
    for status in [500, 429, 503] {
        let (router, count) = scripted(vec![
            (
                status,
                vec![("retry-after-ms", "1".into())],
                err_body("server_error", "boom"),
            ),
            (200, vec![], batch_json("batch_1", "validating", 1, None)),
        ]);
        let base = serve(router).await;
        let c = client(&base);
        let e = c
            .create(Some("file-1"), std::path::Path::new("x"), &meta(1))
            .await
            .unwrap_err();
        let want = if status == 429 {
            ErrorClass::Transient
        } else {
            ErrorClass::Ambiguous
        };
        assert_eq!(e.class, want, "{status}");
        assert_eq!(
            count.load(Ordering::SeqCst),
            1,
            "create retried on {status}"
        );
        let e = c.cancel("batch_1").await;
        // The second scripted answer (200) goes to cancel: one call each.
        assert!(e.is_ok());
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }
}

#[tokio::test]
async fn permanent_errors_carry_code_and_never_the_key() {
    let (router, count) = scripted(vec![(
        400,
        vec![],
        err_body(
            "token_limit_exceeded",
            "Enqueued token limit reached for gpt-4o-mini in organization org-abc. Please try again once some in_progress batches have been completed.",
        ),
    )]);
    let base = serve(router).await;
    let c = client(&base);
    let e = c
        .create(Some("file-1"), std::path::Path::new("x"), &meta(1))
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Permanent);
    assert_eq!(e.code.as_deref(), Some("token_limit_exceeded"));
    assert!(
        e.message.contains("enqueued token limit reached"),
        "{}",
        e.message
    );
    assert_eq!(count.load(Ordering::SeqCst), 1);
    let e = c.get("batch_1").await.unwrap_err();
    assert_eq!(count.load(Ordering::SeqCst), 2, "400 is not retried");
    for text in [
        e.message.clone(),
        e.to_string(),
        format!("{e:?}"),
        format!("{c:?}"),
    ] {
        assert!(
            !text.to_lowercase().contains("topsecret"),
            "key leaked: {text}"
        );
    }
    assert!(e.message.contains("bearer [redacted]"), "{}", e.message);
}

#[tokio::test]
async fn connection_refused_is_transient() {
    let port = closed_port().await;
    let c = client(&format!("http://127.0.0.1:{port}"));
    let e = c.get("batch_1").await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Transient, "{}", e.message);
    assert_eq!(e.status, None);
    let e = c
        .create(Some("f"), std::path::Path::new("x"), &meta(1))
        .await
        .unwrap_err();
    assert_eq!(
        e.class,
        ErrorClass::Transient,
        "nothing was sent: {}",
        e.message
    );
    assert!(!e.message.contains("topsecret"));
}

#[tokio::test]
async fn dropped_connection_after_send_is_ambiguous() {
    let (base, count) = black_hole().await;
    let c = client(&base);
    let e = c
        .create(Some("file-1"), std::path::Path::new("x"), &meta(1))
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Ambiguous, "{}", e.message);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(count.load(Ordering::SeqCst), 1, "create not retried");
    let e = c.get("batch_1").await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Ambiguous);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        count.load(Ordering::SeqCst),
        1 + fast_retry().max_attempts as usize,
        "get retried"
    );
}

#[tokio::test]
async fn timeout_is_ambiguous_and_create_is_not_retried() {
    let count = Arc::new(AtomicUsize::new(0));
    let c2 = count.clone();
    let router = Router::new().route(
        "/v1/batches",
        post(move || {
            let c2 = c2.clone();
            async move {
                c2.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(3)).await;
                Json(batch_json("batch_1", "validating", 1, None))
            }
        }),
    );
    let base = serve(router).await;
    let t = ClientTimeouts {
        connect: Duration::from_secs(1),
        request: Duration::from_millis(200),
    };
    let c = OpenAiClient::new(&format!("{base}/v1"), None, "/v1/chat/completions", t)
        .unwrap()
        .with_retry(fast_retry());
    let e: ApiError = c
        .create(Some("f"), std::path::Path::new("x"), &meta(1))
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Ambiguous, "{}", e.message);
    assert!(e.message.contains("timed out"), "{}", e.message);
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn garbage_200_answer_to_create_is_ambiguous() {
    let router = Router::new().route("/v1/batches", post(|| async { "<html>proxy</html>" }));
    let base = serve(router).await;
    let e = client(&base)
        .create(Some("f"), std::path::Path::new("x"), &meta(1))
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Ambiguous);
    assert_eq!(e.status, Some(200));
}
