//! OpenAI's wire shapes of a batch (also Azure's): output and error file
//! lines, and the Batch object.

use std::time::Instant;

use serde::Serialize;
use serde_json::{json, Value};

use super::wire::EmbeddingList;
use crate::config::MockConfig;
use crate::engine::batch::{Batch, Status};
use crate::engine::input::Flavor;
use crate::engine::model::{Outcome, Task};
use crate::engine::results::{hex_id, not_run, push_hex_id, push_line, render_each, Rendered};
use crate::util::H64;

#[derive(Serialize)]
struct OutLine<'a, B: Serialize> {
    id: String,
    custom_id: &'a str,
    response: Option<Response<B>>,
    error: Option<LineError<'a>>,
}

#[derive(Serialize)]
struct Response<B: Serialize> {
    status_code: u16,
    request_id: String,
    body: B,
}

#[derive(Serialize)]
struct LineError<'a> {
    code: &'a str,
    message: &'a str,
}

/// `std::fmt::Write` over a byte buffer, for ids and numbers.
struct Bytes<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Bytes<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// A JSON string exactly as serde_json writes it: copied when nothing
/// needs escaping (the usual case), else escaped by serde_json.
fn push_json_str(buf: &mut Vec<u8>, s: &str) {
    if s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        serde_json::to_writer(&mut *buf, s).expect("serializing to memory cannot fail");
    } else {
        buf.push(b'"');
        buf.extend_from_slice(s.as_bytes());
        buf.push(b'"');
    }
}

/// A successful chat result line, written as bytes: the same bytes as
/// serializing [`OutLine`] with a [`ChatCompletion`] body (tested), at a
/// fraction of the cost. This runs for every request of every batch.
#[allow(clippy::too_many_arguments)]
fn push_chat_line(
    buf: &mut Vec<u8>,
    batch: H64,
    i: usize,
    custom_id: &str,
    created: i64,
    model: &str,
    reply: &str,
    prompt: u32,
    completion: u32,
) {
    use std::fmt::Write as _;
    buf.extend_from_slice(br#"{"id":"batch_req_"#);
    push_hex_id(buf, batch, i, b"req");
    buf.extend_from_slice(br#"","custom_id":"#);
    push_json_str(buf, custom_id);
    buf.extend_from_slice(br#","response":{"status_code":200,"request_id":"req_"#);
    push_hex_id(buf, batch, i, b"request");
    buf.extend_from_slice(br#"","body":{"id":"chatcmpl-"#);
    push_hex_id(buf, batch, i, b"cmpl");
    let _ = write!(
        Bytes(buf),
        r#"","object":"chat.completion","created":{created},"model":"#
    );
    push_json_str(buf, model);
    buf.extend_from_slice(br#","choices":[{"index":0,"message":{"role":"assistant","content":"#);
    push_json_str(buf, reply);
    let _ = write!(
        Bytes(buf),
        concat!(
            r#","refusal":null,"annotations":[]}},"logprobs":null,"#,
            r#""finish_reason":"stop"}}],"usage":{{"prompt_tokens":{},"#,
            r#""completion_tokens":{},"total_tokens":{},"#,
            r#""prompt_tokens_details":{{"cached_tokens":0,"audio_tokens":0}},"#,
            r#""completion_tokens_details":{{"reasoning_tokens":0,"audio_tokens":0,"#,
            r#""accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}},"#,
            r#""service_tier":"default","system_fingerprint":"fp_mock"}}}},"#,
            r#""error":null}}"#,
            "\n"
        ),
        prompt,
        completion,
        prompt + completion
    );
}

/// Output and error file lines of a batch that ended in `end`.
pub(crate) fn results(
    batch_id: &str,
    tasks: &[Task],
    done: usize,
    end: Status,
    created: i64,
) -> Rendered {
    // Every line's ids hash the batch id first: once per batch.
    let seed = H64::new().part(batch_id.as_bytes());
    render_each(
        tasks,
        done,
        |r, i, task| render_line(r, batch_id, seed, task, i, created),
        |r, i, task| {
            let (code, message) = not_run(end);
            let line: OutLine<()> = OutLine {
                id: hex_id("batch_req_", batch_id, i, b"req"),
                custom_id: &task.custom_id,
                response: None,
                error: Some(LineError { code, message }),
            };
            push_line(&mut r.errors, &line);
        },
    )
}

fn render_line(r: &mut Rendered, batch_id: &str, seed: H64, task: &Task, i: usize, created: i64) {
    let id = || hex_id("batch_req_", batch_id, i, b"req");
    let request_id = || hex_id("req_", batch_id, i, b"request");
    let cid = task.custom_id.as_str();
    match &task.outcome {
        Outcome::Chat {
            reply,
            prompt,
            completion,
        } => {
            r.input_tokens += u64::from(*prompt);
            r.output_tokens += u64::from(*completion);
            push_chat_line(
                &mut r.output,
                seed,
                i,
                cid,
                created,
                &task.model,
                reply,
                *prompt,
                *completion,
            );
        }
        Outcome::Embedding {
            vectors, tokens, ..
        } => {
            r.input_tokens += u64::from(*tokens);
            let body = EmbeddingList::new(&task.model, vectors.iter(), *tokens);
            let response = Some(Response {
                status_code: 200,
                request_id: request_id(),
                body,
            });
            push_line(
                &mut r.output,
                &OutLine {
                    id: id(),
                    custom_id: cid,
                    response,
                    error: None,
                },
            );
        }
        Outcome::Error {
            status,
            kind,
            code,
            param,
            message,
        } => {
            let body =
                json!({"error": {"message": message, "type": kind, "param": param, "code": code}});
            let response = Some(Response {
                status_code: *status,
                request_id: request_id(),
                body,
            });
            push_line(
                &mut r.errors,
                &OutLine {
                    id: id(),
                    custom_id: cid,
                    response,
                    error: None,
                },
            );
        }
    }
}

/// The Batch object with every field of the real one.
pub(crate) fn batch_json(b: &Batch, now: Instant, cfg: &MockConfig) -> Value {
    let endpoint = match b.flavor {
        f @ Flavor::OpenAi(..) => f.url().unwrap_or_default(),
        Flavor::Generic => "/ml/api/batch_predict",
        Flavor::Anthropic => "/v1/messages",
    };
    let (completed, failed) = b.counts(now, cfg);
    let total = if b.status == Status::Validating {
        0
    } else {
        b.total
    };
    let s = &b.stamps;
    json!({
        "id": b.id,
        "object": "batch",
        "endpoint": endpoint,
        "model": b.model,
        "errors": b.errors.as_ref().map(|data| json!({"object": "list", "data": data})),
        "input_file_id": b.input_file_id,
        "completion_window": "24h",
        "status": b.status.as_str(),
        "output_file_id": b.output_file_id,
        "error_file_id": b.error_file_id,
        "created_at": b.created_at,
        "in_progress_at": s.in_progress_at,
        "expires_at": b.created_at + 24 * 3600,
        "finalizing_at": s.finalizing_at,
        "completed_at": s.completed_at,
        "failed_at": s.failed_at,
        "expired_at": s.expired_at,
        "cancelling_at": s.cancelling_at,
        "cancelled_at": s.cancelled_at,
        "request_counts": {"total": total, "completed": completed, "failed": failed},
        "usage": {
            "input_tokens": b.input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": b.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": b.input_tokens + b.output_tokens,
        },
        "metadata": b.metadata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::wire::ChatCompletion;

    #[test]
    fn chat_lines_as_bytes_are_what_serde_writes() {
        for (cid, model, reply, created) in [
            (
                "0-1234",
                "gpt-4o-mini",
                "rating: 4/5 (digest 1a2b3c4d)",
                1_700_000_000,
            ),
            (
                "x",
                "m\"odel\\",
                "line\nbreak \u{1} \u{7f} é ✓ \"q\" / ",
                -5,
            ),
            ("", "", "", 0),
        ] {
            for i in [0, 7, 123_456] {
                let mut fast = Vec::new();
                push_chat_line(
                    &mut fast,
                    H64::new().part(b"batch_abc"),
                    i,
                    cid,
                    created,
                    model,
                    reply,
                    12,
                    3,
                );
                let mut slow = Vec::new();
                push_line(
                    &mut slow,
                    &OutLine {
                        id: hex_id("batch_req_", "batch_abc", i, b"req"),
                        custom_id: cid,
                        response: Some(Response {
                            status_code: 200,
                            request_id: hex_id("req_", "batch_abc", i, b"request"),
                            body: ChatCompletion::new(
                                hex_id("chatcmpl-", "batch_abc", i, b"cmpl"),
                                created,
                                model,
                                reply,
                                12,
                                3,
                            ),
                        }),
                        error: None,
                    },
                );
                assert_eq!(
                    String::from_utf8(fast).unwrap(),
                    String::from_utf8(slow).unwrap()
                );
            }
        }
    }
}
