use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{HeaderMap, HeaderValue};

use super::*;

fn timeouts() -> ClientTimeouts {
    ClientTimeouts {
        connect: Duration::from_secs(1),
        request: Duration::from_secs(5),
    }
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

const KEY: &str = "sk-Test-SECRET-1234567890";

fn http() -> Http {
    Http::new(Some(KEY.to_owned()), AuthStyle::Bearer, timeouts()).unwrap()
}

#[test]
fn status_classes() {
    use ErrorClass::*;
    assert_eq!(classify_status(429, None), Transient);
    assert_eq!(classify_status(408, None), Transient);
    assert_eq!(classify_status(409, None), Transient);
    assert_eq!(classify_status(500, None), Ambiguous);
    assert_eq!(classify_status(503, None), Ambiguous);
    assert_eq!(classify_status(404, None), NotFound);
    assert_eq!(classify_status(400, None), Permanent);
    assert_eq!(classify_status(401, None), Permanent);
    assert_eq!(classify_status(403, None), Permanent);
    assert_eq!(classify_status(422, None), Permanent);
    // x-should-retry overrides.
    assert_eq!(classify_status(400, Some(true)), Transient);
    assert_eq!(classify_status(503, Some(true)), Ambiguous);
    assert_eq!(classify_status(503, Some(false)), Permanent);
    assert_eq!(classify_status(429, Some(false)), Permanent);
}

#[test]
fn retry_after_headers() {
    let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
    assert_eq!(
        parse_retry_after(&headers(&[("retry-after-ms", "1500")]), now),
        Some(Duration::from_millis(1500))
    );
    // retry-after-ms wins over retry-after.
    assert_eq!(
        parse_retry_after(
            &headers(&[("retry-after-ms", "250"), ("retry-after", "20")]),
            now
        ),
        Some(Duration::from_millis(250))
    );
    assert_eq!(
        parse_retry_after(&headers(&[("retry-after", "20")]), now),
        Some(Duration::from_secs(20))
    );
    assert_eq!(
        parse_retry_after(&headers(&[("retry-after", "0.5")]), now),
        Some(Duration::from_millis(500))
    );
    assert_eq!(
        parse_retry_after(
            &headers(&[("retry-after", "Sun, 06 Nov 1994 08:50:07 GMT")]),
            now
        ),
        Some(Duration::from_secs(30))
    );
    // A date in the past: retry now.
    assert_eq!(
        parse_retry_after(
            &headers(&[("retry-after", "Sun, 06 Nov 1994 08:00:00 GMT")]),
            now
        ),
        Some(Duration::ZERO)
    );
    // A bad retry-after-ms falls back to retry-after.
    assert_eq!(
        parse_retry_after(
            &headers(&[("retry-after-ms", "soon"), ("retry-after", "3")]),
            now
        ),
        Some(Duration::from_secs(3))
    );
    assert_eq!(
        parse_retry_after(&headers(&[("retry-after", "whenever")]), now),
        None
    );
    assert_eq!(
        parse_retry_after(&headers(&[("retry-after", "-3")]), now),
        None
    );
    assert_eq!(parse_retry_after(&HeaderMap::new(), now), None);
}

#[test]
fn http_dates() {
    let t = |s| parse_http_date(s).map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_secs());
    assert_eq!(t("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
    assert_eq!(t("Sunday, 06-Nov-94 08:49:37 GMT"), Some(784_111_777));
    assert_eq!(t("Wed, 21 Oct 2015 07:28:00 GMT"), Some(1_445_412_480));
    assert_eq!(t("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
    assert_eq!(t("Tue, 29 Feb 2028 23:59:59 GMT"), Some(1_835_481_599));
    assert_eq!(t("Sun, 06 Nov 1994 08:49:37 PST"), None);
    assert_eq!(t("yesterday"), None);
    assert_eq!(t(""), None);
}

#[test]
fn error_envelope_is_parsed() {
    let h = http();
    let body = br#"{"error":{"message":"Enqueued token limit reached for gpt-4o in organization org-X. Please try again once some in_progress batches have been completed.","type":"invalid_request_error","param":null,"code":"token_limit_exceeded"}}"#;
    let e = h.error_from_parts(
        "create batch",
        400,
        &HeaderMap::new(),
        body,
        SystemTime::now(),
    );
    assert_eq!(e.class, ErrorClass::Permanent);
    assert_eq!(e.status, Some(400));
    assert_eq!(e.code.as_deref(), Some("token_limit_exceeded"));
    assert!(
        e.message
            .starts_with("create batch: http 400: enqueued token limit reached for gpt-4o"),
        "{}",
        e.message
    );
    assert_eq!(e.message, e.message.to_lowercase());
    assert_eq!(e.to_string(), e.message);

    // code null → type.
    let body = br#"{"error":{"message":"Rate limit reached","type":"rate_limit_error","param":null,"code":null}}"#;
    let e = h.error_from_parts(
        "get batch",
        429,
        &headers(&[("retry-after", "7")]),
        body,
        SystemTime::now(),
    );
    assert_eq!(e.class, ErrorClass::Transient);
    assert_eq!(e.code.as_deref(), Some("rate_limit_error"));
    assert_eq!(e.retry_after, Some(Duration::from_secs(7)));

    // Other shapes.
    assert_eq!(
        parse_error_body(br#"{"error":"boom","code":"x"}"#),
        (Some("x".into()), Some("boom".into()))
    );
    assert_eq!(
        parse_error_body(br#"{"detail":"Not Found"}"#),
        (None, Some("Not Found".into()))
    );
    assert_eq!(
        parse_error_body(b"upstream connect error"),
        (None, Some("upstream connect error".into()))
    );
    assert_eq!(parse_error_body(b""), (None, None));
    let e = h.error_from_parts("get batch", 502, &HeaderMap::new(), b"", SystemTime::now());
    assert_eq!(e.message, "get batch: http 502");
    assert_eq!(e.class, ErrorClass::Ambiguous);
    let e = h.error_from_parts(
        "get batch",
        404,
        &HeaderMap::new(),
        b"{}",
        SystemTime::now(),
    );
    assert_eq!(e.class, ErrorClass::NotFound);
}

#[test]
fn api_key_never_shows() {
    let h = http();
    // A server that echoes the key, in any case.
    let body = format!(
        r#"{{"error":{{"message":"Incorrect API key provided: {KEY}. Also {}","type":"invalid_request_error","code":"invalid_api_key"}}}}"#,
        KEY.to_uppercase()
    );
    let e = h.error_from_parts(
        "upload batch file",
        401,
        &HeaderMap::new(),
        body.as_bytes(),
        SystemTime::now(),
    );
    assert_eq!(e.class, ErrorClass::Permanent);
    for text in [
        e.message.clone(),
        e.to_string(),
        format!("{e:?}"),
        format!("{h:?}"),
    ] {
        assert!(!text.to_lowercase().contains(&KEY.to_lowercase()), "{text}");
        assert!(!text.contains("SECRET"), "{text}");
    }
    assert!(e.message.contains("[redacted]"), "{}", e.message);
    assert_eq!(format!("{:?}", ApiKey::new(KEY)), "ApiKey([redacted])");
    assert_eq!(
        ApiKey::new(KEY).scrub(&format!("Bearer {KEY}")),
        "bearer [redacted]"
    );
    // The auth header value is marked sensitive.
    let (_, v) = h.auth.as_ref().unwrap();
    assert!(v.is_sensitive());
    assert!(!format!("{v:?}").contains("SECRET"));
}

#[test]
fn bad_key_error_does_not_leak_it() {
    let e = Http::new(Some("sk-abc\ndef".into()), AuthStyle::Bearer, timeouts()).unwrap_err();
    assert_eq!(e.class, ErrorClass::Permanent);
    assert!(!e.message.contains("sk-abc"));
}

#[test]
fn full_jitter_bounds() {
    let policy = RetryPolicy {
        max_attempts: 6,
        base: Duration::from_millis(200),
        cap: Duration::from_secs(1),
        max_retry_after: Duration::from_secs(60),
    };
    for _ in 0..200 {
        let delays: Vec<_> = FullJitter::new(policy).collect();
        assert_eq!(delays.len(), 5, "max_attempts - 1 retries");
        let bounds = [200, 400, 800, 1000, 1000];
        for (d, b) in delays.iter().zip(bounds) {
            assert!(*d <= Duration::from_millis(b), "{d:?} > {b}ms");
        }
    }
    assert_eq!(FullJitter::new(RetryPolicy::none()).count(), 0);
    // Huge attempt numbers saturate at the cap.
    let j = FullJitter::new(RetryPolicy {
        max_attempts: 100,
        ..policy
    });
    assert_eq!(j.bound(60), Duration::from_secs(1));
}

#[test]
fn segments_are_encoded() {
    assert_eq!(
        join_segment("http://h/v1/batches/", "batch_abc-1"),
        "http://h/v1/batches/batch_abc-1"
    );
    assert_eq!(
        join_segment("http://h/x", "a/b c?"),
        "http://h/x/a%2Fb%20c%3F"
    );
}

#[tokio::test]
async fn retry_loop_retries_transient_then_succeeds() {
    let policy = RetryPolicy {
        base: Duration::from_millis(1),
        cap: Duration::from_millis(2),
        ..RetryPolicy::default()
    };
    let calls = std::sync::atomic::AtomicU32::new(0);
    let r: Result<u32, ApiError> = retry_with(policy, "t", || async {
        let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if n < 3 {
            Err(ApiError::new(
                if n != 1 {
                    ErrorClass::Transient
                } else {
                    ErrorClass::Ambiguous
                },
                "x",
            ))
        } else {
            Ok(n)
        }
    })
    .await;
    assert_eq!(r.unwrap(), 3);

    // Permanent and NotFound are not retried.
    for class in [ErrorClass::Permanent, ErrorClass::NotFound] {
        let calls = std::sync::atomic::AtomicU32::new(0);
        let r: Result<(), ApiError> = retry_with(policy, "t", || async {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Err(ApiError::new(class, "x"))
        })
        .await;
        assert_eq!(r.unwrap_err().class, class);
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    // Gives up after max_attempts.
    let calls = std::sync::atomic::AtomicU32::new(0);
    let r: Result<(), ApiError> = retry_with(policy, "t", || async {
        calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Err(ApiError::new(ErrorClass::Transient, "x"))
    })
    .await;
    assert!(r.is_err());
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        policy.max_attempts
    );
}

#[tokio::test]
async fn retry_loop_honours_retry_after() {
    let policy = RetryPolicy {
        base: Duration::from_millis(1),
        cap: Duration::from_millis(1),
        max_retry_after: Duration::from_secs(1),
        ..RetryPolicy::default()
    };
    let calls = std::sync::atomic::AtomicU32::new(0);
    let start = std::time::Instant::now();
    let r: Result<(), ApiError> = retry_with(policy, "t", || async {
        if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            let mut e = ApiError::new(ErrorClass::Transient, "slow down");
            e.retry_after = Some(Duration::from_millis(150));
            Err(e)
        } else {
            Ok(())
        }
    })
    .await;
    r.unwrap();
    assert!(start.elapsed() >= Duration::from_millis(150));

    // Longer than max_retry_after: returned at once, for the caller.
    let calls = std::sync::atomic::AtomicU32::new(0);
    let r: Result<(), ApiError> = retry_with(policy, "t", || async {
        calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut e = ApiError::new(ErrorClass::Transient, "slow down");
        e.retry_after = Some(Duration::from_secs(3600));
        Err(e)
    })
    .await;
    assert_eq!(r.unwrap_err().retry_after, Some(Duration::from_secs(3600)));
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[test]
fn key_fragments_and_masked_keys_are_redacted() {
    let key = ApiKey::new("wrong-key-456");
    // OpenAI's 401 shows the key's ends around `***`.
    let text = "Incorrect API key provided: wro***-456. You can find your API key at https://x.";
    let r = key.redact(text);
    assert_eq!(
        r,
        "Incorrect API key provided: [redacted]. You can find your API key at https://x."
    );
    // Prefixes and suffixes of at least 4 characters, in any case.
    assert_eq!(
        key.redact("got WRONG-k and y-456"),
        "got [redacted] and [redacted]"
    );
    assert_eq!(key.redact("key wrong-key-456!"), "key [redacted]!");
    // Shorter fragments and unrelated stars are left alone.
    assert_eq!(key.redact("wro is -45, *** ok"), "wro is -45, *** ok");
    // A masked key is redacted even without a known key.
    assert_eq!(
        redact(None, "provided: sk-ab***wxyz."),
        "provided: [redacted]."
    );
    assert!(matches!(key.redact("nothing here"), Cow::Borrowed(_)));
    // Multi-byte text around a fragment.
    assert_eq!(key.redact("é-456é"), "é[redacted]é");
}

#[test]
fn provider_error_text_loses_its_key_fragment() {
    let h = Http::new(Some("wrong-key-456".into()), AuthStyle::Bearer, timeouts()).unwrap();
    let body = br#"{"error":{"message":"Incorrect API key provided: wro***-456. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","code":"invalid_api_key"}}"#;
    let e = h.error_from_parts(
        "list batches",
        401,
        &HeaderMap::new(),
        body,
        SystemTime::now(),
    );
    for text in [e.message.clone(), e.to_string(), format!("{e:?}")] {
        for fragment in ["wro", "-456", "456", "wrong"] {
            assert!(!text.contains(fragment), "{fragment:?} in {text}");
        }
    }
    assert_eq!(
        e.message,
        "list batches: http 401: incorrect api key provided: [redacted]. you can find your api key at https://platform.openai.com/account/api-keys."
    );
}
