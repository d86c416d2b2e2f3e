use super::*;

#[test]
fn statuses_map() {
    use RemoteStatus::*;
    for (word, want) in [
        ("validating", Validating),
        ("in_progress", InProgress),
        ("finalizing", Finalizing),
        ("completed", Completed),
        ("failed", Failed),
        ("expired", Expired),
        ("cancelling", Cancelling),
        ("cancelled", Cancelled),
        ("canceled", Cancelled),
        ("COMPLETED", Completed),
    ] {
        assert_eq!(map_status(word), Some(want), "{word}");
    }
    assert_eq!(map_status("paused"), None);
    // Unknown words keep the batch polled rather than failing it.
    let b = parse_batch(&json!({"id": "batch_1", "status": "paused"})).unwrap();
    assert_eq!(b.status, InProgress);
    assert!(!b.status.is_terminal());
}

fn meta() -> BatchMeta {
    BatchMeta {
        pipeline: "reviews".into(),
        batch_number: "reviews-0-0-99".into(),
        attempt: 2,
    }
}

#[test]
fn full_batch_object() {
    let v = json!({
        "id": "batch_abc123", "object": "batch", "endpoint": "/v1/chat/completions", "model": "gpt-4o-mini",
        "errors": null, "input_file_id": "file-abc123", "completion_window": "24h",
        "status": "completed", "output_file_id": "file-cvaTdG", "error_file_id": "file-HOWS94",
        "created_at": 1711471533, "in_progress_at": 1711471538, "expires_at": 1711557933,
        "finalizing_at": 1711493133, "completed_at": 1711493163, "failed_at": null, "expired_at": null,
        "cancelling_at": null, "cancelled_at": null,
        "request_counts": {"total": 100, "completed": 95, "failed": 5},
        "usage": {"input_tokens": 1500, "input_tokens_details": {"cached_tokens": 1024}, "output_tokens": 500,
                  "output_tokens_details": {"reasoning_tokens": 300}, "total_tokens": 2000},
        "metadata": {"mlpredict_pipeline": "reviews", "batch_number": "reviews-0-0-99", "attempt": "2", "other": "x"},
        "some_new_field": {"nested": [1, 2]}
    });
    let b = parse_batch(&v).unwrap();
    assert_eq!(
        b,
        RemoteBatch {
            id: "batch_abc123".into(),
            status: RemoteStatus::Completed,
            output_file: Some("file-cvaTdG".into()),
            error_file: Some("file-HOWS94".into()),
            errors: vec![],
            counts: Some(RequestCounts {
                total: 100,
                completed: 95,
                failed: 5
            }),
            created_at: Some(1711471533),
            meta: Some(meta()),
            total_tokens: Some(2000),
        }
    );
}

#[test]
fn empty_and_missing_fields() {
    let b = parse_batch(&json!({
        "id": "batch_2", "status": "completed", "output_file_id": null, "error_file_id": "",
    }))
    .unwrap();
    assert_eq!(b.output_file, None);
    assert_eq!(b.error_file, None, "\"\" is no file");
    assert_eq!(b.counts, None);
    assert_eq!(b.meta, None);
    assert_eq!(b.created_at, None);
    assert_eq!(b.total_tokens, None);
    let b =
        parse_batch(&json!({"id": "batch_3", "status": "failed", "output_file_id": ""})).unwrap();
    assert_eq!(b.output_file, None);
    assert!(parse_batch(&json!({"status": "failed"})).is_err());
    assert!(parse_batch(&json!({"id": "", "status": "failed"})).is_err());
}

#[test]
fn failed_batch_errors() {
    let b = parse_batch(&json!({
        "id": "batch_4", "status": "failed",
        "errors": {"object": "list", "data": [
            {"code": "token_limit_exceeded", "message": "Enqueued token limit reached for gpt-4o in organization org-1. Limit: 90,000 enqueued tokens. Please try again once some in_progress batches have been completed.", "param": null, "line": null},
            {"code": "invalid_json_line", "message": "This line is not parseable as valid JSON.", "param": null, "line": 3}
        ]},
        "request_counts": {"total": 0, "completed": 0, "failed": 0}
    }))
    .unwrap();
    assert_eq!(b.status, RemoteStatus::Failed);
    assert_eq!(b.errors.len(), 2);
    assert_eq!(b.errors[0].code, "token_limit_exceeded");
    assert_eq!(b.errors[0].line, None);
    assert!(b.errors[0].message.starts_with("Enqueued token limit"));
    assert_eq!(
        b.errors[1],
        RemoteBatchError {
            code: "invalid_json_line".into(),
            message: "This line is not parseable as valid JSON.".into(),
            line: Some(3),
        }
    );
    assert_eq!(b.counts, Some(RequestCounts::default()));
}

#[test]
fn meta_round_trip() {
    let m = meta();
    assert_eq!(meta_from_json(&meta_to_json(&m)), Some(m.clone()));
    assert_eq!(
        meta_to_json(&m)["attempt"],
        "2",
        "metadata values are strings"
    );
    assert_eq!(
        meta_from_json(
            &json!({"mlpredict_pipeline": "reviews", "batch_number": "reviews-0-0-99", "attempt": 2})
        ),
        Some(m.clone())
    );
    assert_eq!(
        meta_from_json(&Value::String(meta_to_json(&m).to_string())),
        Some(m)
    );
    assert_eq!(
        meta_from_json(&json!({"batch_number": "b", "attempt": "1"})),
        None
    );
    assert_eq!(
        meta_from_json(&json!({"mlpredict_pipeline": "p", "batch_number": "b", "attempt": "x"})),
        None
    );
    assert_eq!(meta_from_json(&json!(null)), None);
}

#[test]
fn pages() {
    let v = json!({"object": "list", "data": [{"id": "batch_3", "status": "in_progress"}, {"id": "batch_2", "status": "completed"}, {"nonsense": true}],
                   "first_id": "batch_3", "last_id": "batch_2", "has_more": true});
    let p = parse_page(&v).unwrap();
    assert_eq!(p.batches.len(), 2, "the unreadable entry is skipped");
    assert_eq!(p.next_after.as_deref(), Some("batch_2"));
    let v = json!({"object": "list", "data": [{"id": "batch_1", "status": "completed"}], "first_id": "batch_1", "last_id": "batch_1", "has_more": false});
    assert_eq!(parse_page(&v).unwrap().next_after, None);
    let v = json!({"data": [{"id": "batch_9", "status": "completed"}], "has_more": true});
    assert_eq!(
        parse_page(&v).unwrap().next_after.as_deref(),
        Some("batch_9")
    );
    assert!(parse_page(&json!({"object": "list"})).is_err());
}

#[test]
fn constructor_checks_the_url_and_hides_the_key() {
    let t = ClientTimeouts {
        connect: std::time::Duration::from_secs(1),
        request: std::time::Duration::from_secs(2),
    };
    let c = OpenAiClient::new(
        "http://127.0.0.1:9/v1/",
        Some("sk-very-secret-key".into()),
        "/v1/chat/completions",
        t,
    )
    .unwrap();
    assert_eq!(c.url("/files"), "http://127.0.0.1:9/v1/files");
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("very-secret"), "{dbg}");
    assert!(OpenAiClient::new("not a url", None, "/v1/chat/completions", t).is_err());
    assert_eq!(
        OpenAiClient::new("ftp://x/v1", None, "/v1/x", t)
            .unwrap_err()
            .class,
        ErrorClass::Permanent
    );
}
