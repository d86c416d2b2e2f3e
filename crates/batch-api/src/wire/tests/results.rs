//! Result lines of the OpenAI and generic formats, and the normalizer.

use super::super::*;

// ---- result lines -------------------------------------------------------

fn parse_chat(line: &str) -> ResultLine<'_> {
    both(WireFormat::OpenAi, Task::Chat, line)
}

/// Parse from bytes and from text; both must agree.
pub(super) fn both(format: WireFormat, task: Task, line: &str) -> ResultLine<'_> {
    let r = parse_result_line(format, task, line.as_bytes()).unwrap();
    assert_eq!(parse_result_str(format, task, line).unwrap(), r, "{line}");
    r
}

fn failed(o: &Outcome<'_>) -> (String, String, bool) {
    match o {
        Outcome::Failed {
            code,
            message,
            retriable,
        } => (code.to_string(), message.to_string(), *retriable),
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn ok(o: &Outcome<'_>) -> (String, Option<u64>) {
    match o {
        Outcome::Ok {
            prediction,
            total_tokens,
        } => (prediction.get().to_owned(), *total_tokens),
        other => panic!("expected ok, got {other:?}"),
    }
}

const CHAT_OK: &str = r#"{"id": "batch_req_123", "custom_id": "lane0-1", "response": {"status_code": 200, "request_id": "req_1", "body": {"id": "chatcmpl-1", "object": "chat.completion", "created": 1711652795, "model": "gpt-4o-mini", "choices": [{"index": 0, "message": {"role": "assistant", "content": "Positive \"yes\"\n", "refusal": null}, "logprobs": null, "finish_reason": "stop"}, {"index": 1, "message": {"role": "assistant", "content": "second"}}], "usage": {"prompt_tokens": 22, "completion_tokens": 2, "total_tokens": 24, "prompt_tokens_details": {"cached_tokens": 0}}, "system_fingerprint": "fp_3"}}, "error": null}"#;

#[test]
fn openai_chat_success() {
    let r = parse_chat(CHAT_OK);
    assert_eq!(r.custom_id, "lane0-1");
    assert!(matches!(r.custom_id, Cow::Borrowed(_)), "borrowed");
    let (pred, tokens) = ok(&r.outcome);
    assert_eq!(
        pred, r#""Positive \"yes\"\n""#,
        "raw JSON string, still escaped"
    );
    assert_eq!(tokens, Some(24));
}

#[test]
fn openai_embeddings_success() {
    let line = r#"{"id":"batch_req_1","custom_id":"e-1","response":{"status_code":200,"request_id":"r","body":{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.0023064255,-0.009327292,1e-5]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}},"error":null}"#;
    let r = parse_result_line(WireFormat::OpenAi, Task::Embeddings, line.as_bytes()).unwrap();
    let (pred, tokens) = ok(&r.outcome);
    assert_eq!(pred, "[0.0023064255,-0.009327292,1e-5]");
    assert_eq!(tokens, Some(8));
    // The same line read as chat lacks choices.
    let r = parse_chat(line);
    assert_eq!(failed(&r.outcome).0, UNEXPECTED_RESPONSE);
}

#[test]
fn openai_http_4xx_line_is_not_retriable() {
    let line = r#"{"id":"batch_req_2","custom_id":"lane0-2","response":{"status_code":400,"request_id":"r","body":{"error":{"message":"This model's maximum context length is 128000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}},"error":null}"#;
    let r = parse_chat(line);
    assert_eq!(
        failed(&r.outcome),
        (
            "context_length_exceeded".into(),
            "This model's maximum context length is 128000 tokens.".into(),
            false
        )
    );
    // code null → type.
    let line = r#"{"custom_id":"x","response":{"status_code":401,"body":{"error":{"message":"bad key","type":"invalid_request_error","param":null,"code":null}}},"error":null}"#;
    assert_eq!(
        failed(&parse_chat(line).outcome),
        ("invalid_request_error".into(), "bad key".into(), false)
    );
    // No error body at all.
    let line = r#"{"custom_id":"x","response":{"status_code":422,"body":null},"error":null}"#;
    assert_eq!(
        failed(&parse_chat(line).outcome),
        ("http_422".into(), "http status 422".into(), false)
    );
}

#[test]
fn openai_http_retriable_statuses() {
    for status in [500, 502, 503, 408, 429] {
        let line = format!(
            r#"{{"custom_id":"x","response":{{"status_code":{status},"body":{{"error":{{"message":"try again","type":"server_error","code":null}}}}}},"error":null}}"#
        );
        let r = parse_chat(&line);
        let (code, msg, retriable) = failed(&r.outcome);
        assert!(retriable, "{status}");
        assert_eq!(code, "server_error");
        assert_eq!(msg, "try again");
    }
    // A string body (a gateway page) is tolerated.
    let line = r#"{"custom_id":"x","response":{"status_code":502,"body":"<html>bad gateway</html>"},"error":null}"#;
    assert_eq!(
        failed(&parse_chat(line).outcome),
        ("http_502".into(), "http status 502".into(), true)
    );
}

#[test]
fn openai_batch_expired_and_cancelled_are_retriable() {
    let line = r#"{"id":"batch_req_3","custom_id":"lane0-3","response":null,"error":{"code":"batch_expired","message":"This request could not be executed before the completion window expired."}}"#;
    let r = parse_chat(line);
    let (code, msg, retriable) = failed(&r.outcome);
    assert_eq!(code, "batch_expired");
    assert!(msg.starts_with("This request could not be executed"));
    assert!(retriable);
    for code in ["batch_cancelled", "cancelled", "canceled", "batch_canceled"] {
        let line = format!(
            r#"{{"custom_id":"c","response":null,"error":{{"code":"{code}","message":"m"}}}}"#
        );
        assert!(failed(&parse_chat(&line).outcome).2, "{code}");
    }
    let line =
        r#"{"custom_id":"c","response":null,"error":{"code":"invalid_prompt","message":"nope"}}"#;
    assert_eq!(
        failed(&parse_chat(line).outcome),
        ("invalid_prompt".into(), "nope".into(), false)
    );
}

#[test]
fn openai_odd_shapes() {
    // Neither response nor error.
    let r = parse_chat(r#"{"custom_id":"n","response":null,"error":null}"#);
    assert_eq!(failed(&r.outcome).0, UNEXPECTED_RESPONSE);
    let r = parse_chat(r#"{"custom_id":"n"}"#);
    assert_eq!(failed(&r.outcome).0, UNEXPECTED_RESPONSE);
    // 200 without content.
    let r = parse_chat(
        r#"{"custom_id":"n","response":{"status_code":200,"body":{"choices":[]}},"error":null}"#,
    );
    assert_eq!(
        failed(&r.outcome),
        (
            UNEXPECTED_RESPONSE.into(),
            "response has no choices[0].message".into(),
            false
        )
    );
    let r = parse_chat(
        r#"{"custom_id":"n","response":{"status_code":200,"body":{"choices":[{"message":{"content":null,"tool_calls":[{"id":"t"}]}}]}}}"#,
    );
    assert_eq!(failed(&r.outcome).0, UNEXPECTED_RESPONSE);
    // A refusal says why.
    let r = parse_chat(
        r#"{"custom_id":"n","response":{"status_code":200,"body":{"choices":[{"message":{"content":null,"refusal":"I can't help with that."}}]}}}"#,
    );
    assert_eq!(
        failed(&r.outcome),
        ("refusal".into(), "I can't help with that.".into(), false)
    );
    // Odd types elsewhere do not spoil the line.
    let r = parse_chat(
        r#"{"custom_id":"n","response":{"status_code":200,"body":{"choices":[{"message":{"content":"ok"}}],"usage":{"total_tokens":"12"},"extra":{"a":[1,2,{"b":null}]}}},"error":null,"new_field":true}"#,
    );
    assert_eq!(ok(&r.outcome), (r#""ok""#.into(), Some(12)));
    // A numeric error code.
    let r = parse_chat(
        r#"{"custom_id":"n","response":null,"error":{"code":503,"message":"unavailable"}}"#,
    );
    assert_eq!(
        failed(&r.outcome),
        ("503".into(), "unavailable".into(), true)
    );
    // Escaped custom_id and message become owned, still correct.
    let r = parse_chat(
        r#"{"custom_id":"a\u002db","response":null,"error":{"code":"x","message":"l\u00e9"}}"#,
    );
    assert_eq!(r.custom_id, "a-b");
    assert_eq!(failed(&r.outcome).1, "lé");
    // Trailing newline and CR are fine.
    assert!(parse_result_line(
        WireFormat::OpenAi,
        Task::Chat,
        format!("{CHAT_OK}\r\n").as_bytes()
    )
    .is_ok());
}

#[test]
fn malformed_lines_are_wire_errors() {
    for line in [
        "",
        "   ",
        "not json",
        r#"{"custom_id":"x","response":{"status_code":200"#,
        r#"{"response":null,"error":{"code":"batch_expired"}}"#,
        r#"{"custom_id":42,"response":null}"#,
        r#"[1,2]"#,
        r#"{"custom_id":"a"} trailing"#,
    ] {
        for format in [WireFormat::OpenAi, WireFormat::Generic] {
            let e = parse_result_line(format, Task::Chat, line.as_bytes());
            assert!(e.is_err(), "{format:?} {line:?} parsed as {e:?}");
            let e = parse_result_str(format, Task::Chat, line);
            assert!(e.is_err(), "{format:?} {line:?} parsed from text as {e:?}");
        }
    }
    let e = parse_result_line(WireFormat::OpenAi, Task::Chat, b"nope").unwrap_err();
    assert!(e.to_string().starts_with("malformed result line: "), "{e}");
}

#[test]
fn generic_results() {
    let p = |l: &'static str| both(WireFormat::Generic, Task::Chat, l);
    let r = p(r#"{"custom_id":"g-1","output":"Positive"}"#);
    assert_eq!(r.custom_id, "g-1");
    assert_eq!(ok(&r.outcome), (r#""Positive""#.into(), None));
    let r = p(r#"{"custom_id":"g-2","output":[0.1,0.2],"usage":{"total_tokens":3}}"#);
    assert_eq!(ok(&r.outcome), ("[0.1,0.2]".into(), Some(3)));
    let r = p(r#"{"custom_id":"g-3","output":{"label":"x"},"total_tokens":7,"error":null}"#);
    assert_eq!(ok(&r.outcome), (r#"{"label":"x"}"#.into(), Some(7)));
    let r = p(r#"{"custom_id":"g-4","error":{"code":"invalid_input","message":"empty text"}}"#);
    assert_eq!(
        failed(&r.outcome),
        ("invalid_input".into(), "empty text".into(), false)
    );
    for code in [
        "500",
        "503",
        "internal_error",
        "server_error",
        "expired",
        "cancelled",
        "timeout",
        "TIMEOUT",
        "request_timed_out",
        "http_502",
        "429",
    ] {
        let l = format!(r#"{{"custom_id":"g","error":{{"code":"{code}","message":"m"}}}}"#);
        let r = parse_result_line(WireFormat::Generic, Task::Chat, l.as_bytes()).unwrap();
        assert!(failed(&r.outcome).2, "{code} should be retriable");
    }
    for code in [
        "400",
        "invalid_input",
        "content_filter",
        "404",
        "context_length_exceeded",
    ] {
        let l = format!(r#"{{"custom_id":"g","error":{{"code":"{code}","message":"m"}}}}"#);
        let r = parse_result_line(WireFormat::Generic, Task::Chat, l.as_bytes()).unwrap();
        assert!(!failed(&r.outcome).2, "{code} should not be retriable");
    }
    // A bare string error, and a numeric code.
    let r = p(r#"{"custom_id":"g-5","error":"model crashed"}"#);
    assert_eq!(
        failed(&r.outcome),
        ("unknown_error".into(), "model crashed".into(), false)
    );
    let r = p(r#"{"custom_id":"g-6","error":{"code":504}}"#);
    assert_eq!(
        failed(&r.outcome),
        ("504".into(), "request failed: 504".into(), true)
    );
    // An HTTP status inside the error decides too (the mock sends one).
    let r = p(
        r#"{"custom_id":"g-9","error":{"code":"invalid_request","message":"timeout","status":408}}"#,
    );
    assert_eq!(
        failed(&r.outcome),
        ("invalid_request".into(), "timeout".into(), true)
    );
    let r =
        p(r#"{"custom_id":"g-9","error":{"code":"invalid_request","message":"bad","status":400}}"#);
    assert!(!failed(&r.outcome).2);
    let r = p(r#"{"custom_id":"g-9","error":{"message":"down","status_code":503}}"#);
    assert_eq!(failed(&r.outcome), ("http_503".into(), "down".into(), true));
    // Nothing useful.
    let r = p(r#"{"custom_id":"g-7","output":null}"#);
    assert_eq!(failed(&r.outcome).0, UNEXPECTED_RESPONSE);
    let r = p(r#"{"custom_id":"g-8"}"#);
    assert_eq!(failed(&r.outcome).0, UNEXPECTED_RESPONSE);
}

#[test]
fn retriable_helpers() {
    for s in [408, 429, 500, 503, 599] {
        assert!(is_retriable_http_status(s));
    }
    for s in [400, 401, 403, 404, 409, 422] {
        assert!(!is_retriable_http_status(s));
    }
}

#[test]
fn split_lines_skips_blanks() {
    let buf = b"a\r\n\n  \nb\n\r\nc";
    let lines: Vec<_> = split_lines(buf).collect();
    assert_eq!(lines, vec![&b"a"[..], &b"b"[..], &b"c"[..]]);
    assert_eq!(split_lines(b"").count(), 0);
    let text: Vec<_> = split_str_lines("a\r\n\n  \nb\n\r\nc").collect();
    assert_eq!(text, vec!["a", "b", "c"]);
    assert_eq!(split_str_lines("").count(), 0);
    assert_eq!(split_str_lines("é\nü").collect::<Vec<_>>(), vec!["é", "ü"]);
}

fn normalize(chunks: &[&[u8]]) -> String {
    let mut n = JsonLinesNormalizer::new();
    let mut out = Vec::new();
    for c in chunks {
        n.push(c, &mut out);
    }
    n.finish(&mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn normalizer_passes_jsonl_through() {
    let jsonl = b"{\"custom_id\":\"a\",\"output\":1}\n{\"custom_id\":\"b\",\"output\":2}\n";
    assert_eq!(
        normalize(&[jsonl]),
        String::from_utf8(jsonl.to_vec()).unwrap()
    );
    assert_eq!(normalize(&[b"  ", b"\n{\"a\":1}"]), "{\"a\":1}");
}

#[test]
fn normalizer_splits_a_json_array_at_any_chunk_boundary() {
    let array = "[\n  {\"custom_id\": \"a\", \"output\": \"x, [y] {z}\\\" ,\"},\n  {\"custom_id\":\"b\",\"output\":[1, 2]}, {\"custom_id\":\"c\",\"error\":{\"code\":\"500\"}}\n]\n";
    let want = "{\"custom_id\":\"a\",\"output\":\"x, [y] {z}\\\" ,\"}\n{\"custom_id\":\"b\",\"output\":[1,2]}\n{\"custom_id\":\"c\",\"error\":{\"code\":\"500\"}}\n";
    let bytes = array.as_bytes();
    assert_eq!(normalize(&[bytes]), want);
    for split in 0..bytes.len() {
        assert_eq!(
            normalize(&[&bytes[..split], &bytes[split..]]),
            want,
            "split at {split}"
        );
    }
    let one_by_one: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(normalize(&one_by_one), want);
    // Every line parses.
    for l in split_lines(want.as_bytes()) {
        parse_result_line(WireFormat::Generic, Task::Chat, l).unwrap();
    }
    assert_eq!(normalize(&[b"[]"]), "");
    assert_eq!(normalize(&[b"\xEF\xBB\xBF[{\"a\":1}]"]), "{\"a\":1}\n");
}
