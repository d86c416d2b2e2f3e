//! Request lines and sync bodies.

use serde_json::{json, Value};

use super::super::*;

pub(super) fn chat(format: WireFormat) -> RequestTemplate {
    RequestTemplate::new(
        format,
        Task::Chat,
        "/v1/chat/completions",
        "gpt-4o-mini",
        Some("You are \"terse\".\nAnswer: positive|negative \\ ünïcödé"),
        Some(0.2),
        Some(5),
    )
}

pub(super) fn line_json(t: &RequestTemplate, id: &str, input: &[u8]) -> Value {
    let mut out = Vec::new();
    t.write_line(&mut out, id, input);
    assert_eq!(out.last(), Some(&b'\n'));
    assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1, "one line");
    assert_eq!(out.len(), t.line_len(id, input));
    serde_json::from_slice(&out).expect("a built line is JSON")
}

#[test]
fn openai_chat_line_round_trips() {
    let t = chat(WireFormat::OpenAi);
    let input = br#""great \"phone\"\n\u00e9 \\ end""#;
    let v = line_json(&t, "lane0-42", input);
    assert_eq!(v["custom_id"], "lane0-42");
    assert_eq!(v["method"], "POST");
    assert_eq!(v["url"], "/v1/chat/completions");
    let body = &v["body"];
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(body["temperature"], 0.2);
    assert_eq!(body["max_tokens"], 5);
    let msgs = body["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0]["role"], "system");
    assert_eq!(
        msgs[0]["content"],
        "You are \"terse\".\nAnswer: positive|negative \\ ünïcödé"
    );
    assert_eq!(msgs[1]["role"], "user");
    assert_eq!(msgs[1]["content"], "great \"phone\"\n\u{e9} \\ end");
    assert_eq!(v.as_object().unwrap().len(), 4);
}

#[test]
fn input_is_copied_through_byte_for_byte() {
    let t = chat(WireFormat::OpenAi);
    let input = br#""a\u0041\/b""#;
    let mut out = Vec::new();
    t.write_line(&mut out, "x", input);
    assert!(
        out.windows(input.len()).any(|w| w == input),
        "not re-escaped"
    );
}

#[test]
fn chat_line_without_options() {
    let t = RequestTemplate::new(
        WireFormat::OpenAi,
        Task::Chat,
        "/chat/completions",
        "dep",
        None,
        None,
        None,
    );
    let v = line_json(&t, "a_b-1", br#""hi""#);
    assert_eq!(v["url"], "/chat/completions");
    let body = v["body"].as_object().unwrap();
    assert_eq!(body.len(), 2, "{body:?}");
    assert_eq!(
        v["body"]["messages"],
        json!([{"role": "user", "content": "hi"}])
    );
}

#[test]
fn embeddings_line() {
    let t = RequestTemplate::new(
        WireFormat::OpenAi,
        Task::Embeddings,
        "/v1/embeddings",
        "text-embedding-3-small",
        Some("ignored"),
        Some(1.0),
        Some(9),
    );
    let v = line_json(&t, "p-1", br#""embed \"me\"""#);
    assert_eq!(v["url"], "/v1/embeddings");
    assert_eq!(
        v["body"],
        json!({"model": "text-embedding-3-small", "input": "embed \"me\""})
    );
    // An array input passes through as well.
    let v = line_json(&t, "p-2", br#"["a","b"]"#);
    assert_eq!(v["body"]["input"], json!(["a", "b"]));
}

#[test]
fn generic_line_holds_the_same_body() {
    let g = chat(WireFormat::Generic);
    let o = chat(WireFormat::OpenAi);
    let gv = line_json(&g, "l-7", br#""x""#);
    let ov = line_json(&o, "l-7", br#""x""#);
    assert_eq!(gv.as_object().unwrap().len(), 2);
    assert_eq!(gv["custom_id"], "l-7");
    assert_eq!(gv["input"], ov["body"]);
}

#[test]
fn sync_body_is_the_line_body() {
    for format in [WireFormat::OpenAi, WireFormat::Generic] {
        for task in [Task::Chat, Task::Embeddings] {
            let t = RequestTemplate::new(
                format,
                task,
                "/v1/x",
                "m\"odel",
                Some("sys"),
                Some(0.5),
                Some(3),
            );
            let mut body = Vec::new();
            t.write_sync_body(&mut body, br#""in""#);
            assert!(!body.ends_with(b"\n"));
            let body: Value = serde_json::from_slice(&body).unwrap();
            let line = line_json(&t, "c", br#""in""#);
            let key = if format == WireFormat::OpenAi {
                "body"
            } else {
                "input"
            };
            assert_eq!(line[key], body, "{format:?} {task:?}");
            assert_eq!(body["model"], "m\"odel");
        }
    }
}

#[test]
fn write_line_appends_and_reuses_the_buffer() {
    let t = chat(WireFormat::OpenAi);
    let mut out = Vec::with_capacity(4096);
    let cap = out.capacity();
    let ptr = out.as_ptr();
    for i in 0..10 {
        t.write_line(&mut out, &format!("l-{i}"), br#""text""#);
    }
    assert_eq!(out.capacity(), cap, "no reallocation");
    assert_eq!(out.as_ptr(), ptr);
    let lines: Vec<_> = split_lines(&out).collect();
    assert_eq!(lines.len(), 10);
    for (i, l) in lines.iter().enumerate() {
        let v: Value = serde_json::from_slice(l).unwrap();
        assert_eq!(v["custom_id"], format!("l-{i}"));
    }
    out.clear();
    t.write_line(&mut out, "again", br#""x""#);
    assert_eq!(out.as_ptr(), ptr);
}

#[test]
fn custom_id_check() {
    assert!(is_valid_custom_id("lane_0-123"));
    assert!(!is_valid_custom_id(""));
    assert!(!is_valid_custom_id("a b"));
    assert!(!is_valid_custom_id("a\"b"));
    assert!(!is_valid_custom_id(&"a".repeat(65)));
    assert!(is_valid_custom_id(&"a".repeat(64)));
}

#[test]
#[should_panic(expected = "invalid custom_id")]
#[cfg(debug_assertions)]
fn bad_custom_id_is_caught_in_debug() {
    chat(WireFormat::OpenAi).write_line(&mut Vec::new(), "a\"b", b"1");
}

#[test]
fn body_fields_go_into_every_format_s_body_and_the_sync_body() {
    let fields = [
        ("top_p", json!(0.9)),
        ("stop", json!(["END", "\n"])),
        ("seed", json!(7)),
    ];
    for format in [
        WireFormat::OpenAi,
        WireFormat::Generic,
        WireFormat::Anthropic,
    ] {
        let t = chat(format).with_body_fields(&fields);
        let line = line_json(&t, "c", br#""in""#);
        let body = match format {
            WireFormat::OpenAi => &line["body"],
            WireFormat::Generic => &line["input"],
            WireFormat::Anthropic => &line["params"],
        };
        assert_eq!(body["top_p"], 0.9, "{format:?}");
        assert_eq!(body["stop"], json!(["END", "\n"]), "{format:?}");
        assert_eq!(body["seed"], 7, "{format:?}");
        assert_eq!(body["temperature"], 0.2, "{format:?}: the others stay");
        let mut sync = Vec::new();
        t.write_sync_body(&mut sync, br#""in""#);
        assert_eq!(&serde_json::from_slice::<Value>(&sync).unwrap(), body);
    }
    let e = RequestTemplate::new(
        WireFormat::OpenAi,
        Task::Embeddings,
        "/v1/embeddings",
        "e",
        None,
        None,
        None,
    )
    .with_body_fields(&[("dimensions", json!(256))]);
    let line = line_json(&e, "c", br#""in""#);
    assert_eq!(
        line["body"],
        json!({"model": "e", "input": "in", "dimensions": 256})
    );
}
