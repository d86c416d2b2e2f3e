use super::*;
use crate::wire::{RequestTemplate, Task, WireFormat};
use serde_json::{json, Value};

use crate::wire::LINE_HEAD;
use crate::{RemoteStatus, RequestCounts};

fn meta(n: &str, attempt: u32) -> BatchMeta {
    BatchMeta {
        pipeline: "reviews".into(),
        batch_number: n.into(),
        attempt,
    }
}

#[test]
fn batch_tag_is_stable_short_and_distinct() {
    let a = batch_tag(&meta("reviews-0-0-1", 0));
    assert_eq!(a, batch_tag(&meta("reviews-0-0-1", 0)));
    assert_eq!(a.len(), 18);
    assert!(a.starts_with("mp") && a[2..].bytes().all(|b| b.is_ascii_hexdigit()));
    // A fixed value: the tag must never change between builds, or a
    // restarted newer binary could not adopt what an older one created.
    assert_eq!(a, "mp9467461b8e13d49a", "tag scheme changed");
    let others = [
        batch_tag(&meta("reviews-0-0-1", 1)),
        batch_tag(&meta("reviews-0-0-2", 0)),
        batch_tag(&BatchMeta {
            pipeline: "other".into(),
            ..meta("reviews-0-0-1", 0)
        }),
        // ("ab","c") and ("a","bc") differ
        batch_tag(&BatchMeta {
            pipeline: "reviewsr".into(),
            batch_number: "eviews-0-0-1".into(),
            attempt: 0,
        }),
    ];
    for o in &others {
        assert_ne!(&a, o);
    }
}

#[test]
fn custom_id_tags_round_trip() {
    let tag = batch_tag(&meta("b", 0));
    let wire = format!("{tag}_0-42");
    assert_eq!(tag_of_custom_id(&wire), Some(tag.as_str()));
    assert_eq!(crate::wire::strip_batch_tag(&wire), "0-42");
    assert_eq!(tag_of_custom_id("0-42"), None);
    assert_eq!(crate::wire::strip_batch_tag("0-42"), "0-42");
    assert_eq!(crate::wire::strip_batch_tag("_0-42"), "_0-42");
    assert_eq!(crate::wire::strip_batch_tag("a-b_0-42"), "a-b_0-42");
    // the longest public id still fits once tagged
    let longest = format!("{}-{}", u32::MAX, u64::MAX);
    assert!(tag.len() + 1 + longest.len() <= 64);
}

fn template() -> RequestTemplate {
    RequestTemplate::new(
        WireFormat::Anthropic,
        Task::Chat,
        "/v1/messages",
        "claude-haiku-4-5",
        Some("Rate \"it\"."),
        Some(0.5),
        Some(16),
    )
}

#[test]
fn tag_line_splices_template_lines_and_rewrites_others() {
    let t = template();
    let mut line = Vec::new();
    t.write_line(&mut line, "0-7", br#""great \"phone\"""#);
    let line = line.strip_suffix(b"\n").unwrap();
    let mut out = Vec::new();
    tag_line(line, "mpabc", &mut out).unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["custom_id"], "mpabc_0-7");
    assert_eq!(v["params"]["messages"][0]["content"], "great \"phone\"");
    // everything but the id is byte for byte the same
    assert_eq!(&out[LINE_HEAD.len() + 6..], &line[LINE_HEAD.len()..]);

    let mut out = Vec::new();
    tag_line(
        br#"{"params":{"x":1},"custom_id":"9-1"}"#,
        "mpabc",
        &mut out,
    )
    .unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v, json!({"custom_id": "mpabc_9-1", "params": {"x": 1}}));

    let long = format!("{{\"custom_id\":\"{}\",\"params\":{{}}}}", "x".repeat(60));
    assert!(tag_line(long.as_bytes(), "mpabc", &mut Vec::new()).is_err());
    assert!(tag_line(b"not json", "mpabc", &mut Vec::new()).is_err());
    assert!(tag_line(br#"{"params":{}}"#, "mpabc", &mut Vec::new()).is_err());
}

#[tokio::test]
async fn create_body_is_one_json_object_streamed_in_chunks() {
    let t = template();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.jsonl");
    let mut file = Vec::new();
    let n = 3000;
    for i in 0..n {
        t.write_line(
            &mut file,
            &format!("0-{i}"),
            format!("\"review {i}\"").as_bytes(),
        );
        if i == 5 {
            file.extend_from_slice(b"\r\n   \n");
        }
    }
    std::fs::write(&path, &file).unwrap();
    let mut w = BodyWriter::open(&path, "mptag".into()).await.unwrap();
    let mut body = Vec::new();
    let mut chunks = 0;
    while let Some(c) = w.next_chunk().await.unwrap() {
        chunks += 1;
        body.extend_from_slice(&c);
    }
    assert!(chunks > 2, "streamed in several chunks");
    assert_eq!(w.requests, n);
    let v: Value = serde_json::from_slice(&body).unwrap();
    let reqs = v["requests"].as_array().unwrap();
    assert_eq!(reqs.len(), n as usize);
    assert_eq!(reqs[0]["custom_id"], "mptag_0-0");
    assert_eq!(
        reqs[2999]["params"]["messages"][0]["content"],
        "review 2999"
    );
    assert_eq!(reqs[1]["params"]["model"], "claude-haiku-4-5");
    assert_eq!(reqs[1]["params"]["max_tokens"], 16);
    assert_eq!(reqs[1]["params"]["system"], "Rate \"it\".");
    assert_eq!(reqs[1]["params"]["temperature"], 0.5);
}

#[test]
fn message_batch_objects_map_to_our_terms() {
    let b = parse_batch(&json!({
        "id": "msgbatch_01", "type": "message_batch", "processing_status": "in_progress",
        "request_counts": {"processing": 40, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0},
        "created_at": "2024-08-20T18:37:24.100435Z", "expires_at": "2024-08-21T18:37:24.100435Z",
        "ended_at": null, "cancel_initiated_at": null, "archived_at": null, "results_url": null
    }))
    .unwrap();
    assert_eq!(b.status, RemoteStatus::InProgress);
    assert_eq!(
        b.counts,
        Some(RequestCounts {
            total: 40,
            completed: 0,
            failed: 0
        })
    );
    assert_eq!(b.created_at, Some(1_724_179_044));
    assert_eq!(b.output_file, None);
    assert_eq!(b.error_file, None);

    let b = parse_batch(&json!({
        "id": "msgbatch_02", "processing_status": "ended",
        "request_counts": {"processing": 0, "succeeded": 30, "errored": 5, "canceled": 3, "expired": 2},
        "created_at": "2024-08-20T18:37:24Z",
        "results_url": "https://api.anthropic.com/v1/messages/batches/msgbatch_02/results"
    }))
    .unwrap();
    assert_eq!(b.status, RemoteStatus::Completed);
    assert_eq!(
        b.counts,
        Some(RequestCounts {
            total: 40,
            completed: 30,
            failed: 10
        })
    );
    assert_eq!(
        b.output_file.as_deref(),
        Some("https://api.anthropic.com/v1/messages/batches/msgbatch_02/results")
    );

    assert_eq!(map_status("canceling"), Some(RemoteStatus::Cancelling));
    assert_eq!(map_status("ENDED"), Some(RemoteStatus::Completed));
    assert_eq!(map_status("validating"), None);
    let b = parse_batch(&json!({"id": "x", "processing_status": "weird"})).unwrap();
    assert_eq!(b.status, RemoteStatus::InProgress);
    assert!(parse_batch(&json!({"processing_status": "ended"})).is_err());

    let page = parse_page(&json!({
        "data": [{"id": "b2", "processing_status": "ended"}, {"id": "b1", "processing_status": "in_progress"}],
        "has_more": true, "first_id": "b2", "last_id": "b1"
    }))
    .unwrap();
    assert_eq!(page.batches.len(), 2);
    assert_eq!(page.next_after.as_deref(), Some("b1"));
    let page = parse_page(&json!({"data": [], "has_more": false})).unwrap();
    assert!(page.next_after.is_none());
}

#[test]
fn base_url_forms_and_headers() {
    let t = ClientTimeouts {
        connect: std::time::Duration::from_secs(1),
        request: std::time::Duration::from_secs(1),
    };
    for base in [
        "https://api.anthropic.com/v1",
        "https://api.anthropic.com/v1/",
        "https://api.anthropic.com/v1/messages",
        "https://api.anthropic.com/v1/messages/batches",
    ] {
        let c = AnthropicClient::new(base, Some("sk-ant-secret".into()), None, t).unwrap();
        assert_eq!(
            c.batches_url,
            "https://api.anthropic.com/v1/messages/batches"
        );
        assert!(!format!("{c:?}").contains("sk-ant-secret"));
    }
    let c = AnthropicClient::new("http://127.0.0.1:9/v1", None, Some("2024-01-01"), t).unwrap();
    assert_eq!(
        c.resolve("/v1/messages/batches/b/results"),
        "http://127.0.0.1:9/v1/messages/batches/b/results"
    );
    assert!(AnthropicClient::new("ftp://x", None, None, t).is_err());
    assert!(AnthropicClient::new("http://x/v1", None, Some("bad\nversion"), t).is_err());
}
