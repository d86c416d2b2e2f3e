//! Anthropic's request and result lines.

use serde_json::{json, Value};

use super::super::*;
use super::requests::{chat, line_json};
use super::results::both;

// ---------------------------------------------------------------- anthropic

fn anthropic() -> RequestTemplate {
    chat(WireFormat::Anthropic)
}

#[test]
fn anthropic_chat_line_round_trips() {
    let t = anthropic();
    let input = br#""great \"phone\"\n\u00e9 \\ end""#;
    let v = line_json(&t, "0-42", input);
    assert_eq!(v["custom_id"], "0-42");
    assert_eq!(v.as_object().unwrap().len(), 2, "{v}");
    let p = &v["params"];
    assert_eq!(p["model"], "gpt-4o-mini");
    assert_eq!(p["max_tokens"], 5);
    assert_eq!(p["temperature"], 0.2);
    assert_eq!(
        p["system"],
        "You are \"terse\".\nAnswer: positive|negative \\ ünïcödé"
    );
    let msgs = p["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0]["role"], "user");
    assert_eq!(msgs[0]["content"], "great \"phone\"\n\u{e9} \\ end");
    assert_eq!(p.as_object().unwrap().len(), 5);
    // the input literal is copied through unchanged
    let mut out = Vec::new();
    t.write_line(&mut out, "0-1", input);
    assert!(out.windows(input.len()).any(|w| w == input));
    // the sync body is the params object (a Messages API request)
    let mut body = Vec::new();
    t.write_sync_body(&mut body, input);
    let b: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(&b, p);
}

#[test]
fn anthropic_defaults_max_tokens_and_omits_the_unset() {
    let t = RequestTemplate::new(
        WireFormat::Anthropic,
        Task::Embeddings, // ignored: chat only
        "/v1/messages",
        "claude",
        None,
        None,
        None,
    );
    assert_eq!(t.task(), Task::Chat);
    let v = line_json(&t, "1-2", br#""hi""#);
    assert_eq!(
        v["params"],
        json!({"model": "claude", "max_tokens": ANTHROPIC_DEFAULT_MAX_TOKENS, "messages": [{"role": "user", "content": "hi"}]})
    );
}

fn a_parse(line: &str) -> ResultLine<'_> {
    both(WireFormat::Anthropic, Task::Chat, line)
}

#[test]
fn anthropic_succeeded_line() {
    let line = r#"{"custom_id":"mp0123456789abcdef_0-42","result":{"type":"succeeded","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude","content":[{"type":"thinking","thinking":"hm","signature":"s"},{"type":"text","text":"4 \"stars\"\n","citations":null},{"type":"text","text":"second"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":3,"cache_creation_input_tokens":null,"cache_read_input_tokens":2}}}}"#;
    let r = a_parse(line);
    assert_eq!(r.custom_id, "0-42", "the batch tag is stripped");
    assert!(matches!(r.custom_id, Cow::Borrowed(_)));
    match r.outcome {
        Outcome::Ok {
            prediction,
            total_tokens,
        } => {
            assert_eq!(prediction.get(), r#""4 \"stars\"\n""#);
            assert_eq!(total_tokens, Some(15));
        }
        other => panic!("{other:?}"),
    }
    // an untagged id passes through
    let r = a_parse(
        r#"{"custom_id":"3-9","result":{"type":"succeeded","message":{"content":[{"type":"text","text":"x"}]}}}"#,
    );
    assert_eq!(r.custom_id, "3-9");
    assert!(r.outcome.is_ok());
}

fn a_failed(line: &str) -> (String, String, bool) {
    match a_parse(line).outcome {
        Outcome::Failed {
            code,
            message,
            retriable,
        } => (code.into_owned(), message.into_owned(), retriable),
        other => panic!("{other:?}"),
    }
}

#[test]
fn anthropic_failures_and_their_retriability() {
    let (code, message, retriable) = a_failed(
        r#"{"custom_id":"mpx_0-1","result":{"type":"errored","error":{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: Field required"},"request_id":null}}}"#,
    );
    assert_eq!(code, "invalid_request_error");
    assert_eq!(message, "max_tokens: Field required");
    assert!(!retriable);
    for kind in [
        "api_error",
        "overloaded_error",
        "rate_limit_error",
        "timeout_error",
    ] {
        let line = format!(
            r#"{{"custom_id":"mpx_0-1","result":{{"type":"errored","error":{{"type":"error","error":{{"type":"{kind}","message":"m"}}}}}}}}"#
        );
        let (code, _, retriable) = a_failed(&line);
        assert_eq!(code, kind);
        assert!(retriable, "{kind}");
    }
    for kind in [
        "authentication_error",
        "permission_error",
        "billing_error",
        "not_found_error",
        "request_too_large",
    ] {
        let line = format!(
            r#"{{"custom_id":"mpx_0-1","result":{{"type":"errored","error":{{"type":"error","error":{{"type":"{kind}","message":"m"}}}}}}}}"#
        );
        assert!(!a_failed(&line).2, "{kind}");
    }
    // a bare error object
    let (code, _, retriable) = a_failed(
        r#"{"custom_id":"mpx_0-1","result":{"type":"errored","error":{"type":"overloaded_error","message":"Overloaded"}}}"#,
    );
    assert_eq!(code, "overloaded_error");
    assert!(retriable);
    let (code, _, retriable) =
        a_failed(r#"{"custom_id":"mpx_0-1","result":{"type":"errored","error":null}}"#);
    assert_eq!(code, "unknown_error");
    assert!(!retriable);
    let (code, _, retriable) = a_failed(r#"{"custom_id":"mpx_0-1","result":{"type":"canceled"}}"#);
    assert_eq!(code, "canceled");
    assert!(retriable);
    let (code, _, retriable) = a_failed(r#"{"custom_id":"mpx_0-1","result":{"type":"expired"}}"#);
    assert_eq!(code, "expired");
    assert!(retriable);
    let (code, _, retriable) = a_failed(
        r#"{"custom_id":"mpx_0-1","result":{"type":"succeeded","message":{"content":[],"stop_reason":"refusal"}}}"#,
    );
    assert_eq!((code.as_str(), retriable), ("refusal", false));
    for odd in [
        r#"{"custom_id":"mpx_0-1","result":{"type":"succeeded","message":{"content":[{"type":"tool_use","id":"t","name":"n","input":{}}]}}}"#,
        r#"{"custom_id":"mpx_0-1","result":{"type":"succeeded"}}"#,
        r#"{"custom_id":"mpx_0-1","result":{"type":"surprise"}}"#,
        r#"{"custom_id":"mpx_0-1","result":"succeeded"}"#,
        r#"{"custom_id":"mpx_0-1"}"#,
    ] {
        assert_eq!(a_failed(odd).0, UNEXPECTED_RESPONSE, "{odd}");
        assert!(!a_failed(odd).2);
    }
    assert!(parse_result_line(WireFormat::Anthropic, Task::Chat, b"{\"result\":{}}").is_err());
    assert!(parse_result_line(WireFormat::Anthropic, Task::Chat, b"nope").is_err());
}
