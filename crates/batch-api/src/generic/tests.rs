use super::*;
use serde_json::json;

fn t() -> ClientTimeouts {
    ClientTimeouts {
        connect: std::time::Duration::from_secs(1),
        request: std::time::Duration::from_secs(2),
    }
}

#[test]
fn statuses_map_case_insensitively() {
    use RemoteStatus::*;
    for (word, want) in [
        ("queued", Validating),
        ("QUEUED", Validating),
        ("running", InProgress),
        ("Running", InProgress),
        ("completed", Completed),
        ("COMPLETED", Completed),
        ("failed", Failed),
        ("FAILED", Failed),
        ("cancelled", Cancelled),
        ("expired", Expired),
    ] {
        assert_eq!(map_status(word), Some(want), "{word}");
    }
    assert_eq!(map_status("weird"), None);
}

#[test]
fn urls() {
    let c = GenericClient::new(
        "http://127.0.0.1:8080/ml/api/batch_predict",
        None,
        None,
        t(),
    )
    .unwrap();
    assert_eq!(c.status_url(), "http://127.0.0.1:8080/ml/api/batch/status");
    assert_eq!(c.jobs_url, "http://127.0.0.1:8080/ml/api/batch/jobs");
    assert_eq!(
        c.resolve_results_url("/ml/api/batch/results/j1"),
        "http://127.0.0.1:8080/ml/api/batch/results/j1"
    );
    assert_eq!(
        c.resolve_results_url("files/j1.jsonl"),
        "http://127.0.0.1:8080/files/j1.jsonl"
    );
    assert_eq!(
        c.resolve_results_url("https://cdn.example.com/r.jsonl"),
        "https://cdn.example.com/r.jsonl"
    );
    assert_eq!(c.resolve_results_url("HTTP://X/r"), "HTTP://X/r");
    let c = GenericClient::new(
        "https://ml.example.com/predict/",
        Some("https://ml.example.com/jobs/".into()),
        None,
        t(),
    )
    .unwrap();
    assert_eq!(c.status_url(), "https://ml.example.com/jobs");
    assert_eq!(c.resolve_results_url("/r/1"), "https://ml.example.com/r/1");
    assert!(GenericClient::new("nope", None, None, t()).is_err());
}

#[test]
fn jobs_parse() {
    let b = parse_job(&json!({"id": "j1", "status": "COMPLETED", "results_url": "/r/j1"})).unwrap();
    assert_eq!(b.status, RemoteStatus::Completed);
    assert_eq!(b.output_file.as_deref(), Some("/r/j1"));
    assert_eq!(b.error_file, None);
    let b =
        parse_job(&json!({"id": "j2", "status": "failed", "error": "model not loaded"})).unwrap();
    assert_eq!(b.status, RemoteStatus::Failed);
    assert_eq!(
        b.errors,
        vec![RemoteBatchError {
            code: "job_failed".into(),
            message: "model not loaded".into(),
            line: None
        }]
    );
    let b = parse_job(&json!({"id": 17, "status": "failed", "error": {"code": "oom", "message": "out of memory"}, "results_url": ""})).unwrap();
    assert_eq!(b.id, "17");
    assert_eq!(b.errors[0].code, "oom");
    assert_eq!(b.output_file, None);
    let b = parse_job(
        &json!({"id": "j3", "status": "queued", "created_at": "2025-01-02T03:04:05Z",
        "metadata": {"mlpredict_pipeline": "p", "batch_number": "p-0-1-2", "attempt": "0"}}),
    )
    .unwrap();
    assert_eq!(b.status, RemoteStatus::Validating);
    assert_eq!(b.created_at, Some(1735787045));
    assert_eq!(
        b.meta,
        Some(BatchMeta {
            pipeline: "p".into(),
            batch_number: "p-0-1-2".into(),
            attempt: 0
        })
    );
    assert!(parse_job(&json!({"status": "queued"})).is_err());
}

#[test]
fn jobs_pages() {
    let p = parse_jobs_page(
        &json!([{"id": "a", "status": "running"}, {"id": "b", "status": "completed"}]),
    )
    .unwrap();
    assert_eq!(p.batches.len(), 2);
    assert_eq!(p.next_after, None);
    let p = parse_jobs_page(&json!({"data": [{"id": "a", "status": "running"}], "has_more": true}))
        .unwrap();
    assert_eq!(p.next_after.as_deref(), Some("a"));
    let p =
        parse_jobs_page(&json!({"data": [{"id": "a"}], "has_more": true, "last_id": "z"})).unwrap();
    assert_eq!(p.next_after.as_deref(), Some("z"));
    assert!(parse_jobs_page(&json!({"x": 1})).is_err());
}
