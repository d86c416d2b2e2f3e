//! Wire shapes: output/error file lines, the Batch object, generic job status.

use std::time::Instant;

use serde::Serialize;
use serde_json::{json, Value};

use crate::config::MockConfig;
use crate::fake::EmbeddingList;
use crate::lifecycle::{Batch, Status};
use crate::tasks::{Flavor, Outcome, Task};
use crate::util::{h64, rfc3339, H64};

/// Rendered end-of-batch results.
pub(crate) struct Rendered {
    pub output: Vec<u8>,
    pub errors: Vec<u8>,
    /// Indexes of tasks answered successfully.
    pub answered: Vec<usize>,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

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

#[derive(Serialize)]
struct GenericLine<'a, O: Serialize> {
    custom_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<O>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<GenericError<'a>>,
}

#[derive(Serialize)]
struct GenericError<'a> {
    code: &'a str,
    message: &'a str,
    /// The HTTP status the request would have had (ours: helps retry decisions).
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
}

fn hex_id(prefix: &str, batch_id: &str, i: usize, salt: &[u8]) -> String {
    let mut id = Vec::with_capacity(prefix.len() + 32);
    id.extend_from_slice(prefix.as_bytes());
    push_hex_id(&mut id, H64::new().part(batch_id.as_bytes()), i, salt);
    String::from_utf8(id).expect("ascii")
}

/// The 32 hex digits of [`hex_id`] after its prefix; `batch` has hashed
/// the batch id.
fn push_hex_id(out: &mut Vec<u8>, batch: H64, i: usize, salt: &[u8]) {
    let a = batch.part(&(i as u64).to_le_bytes()).part(salt).finish();
    let b = h64(&[&a.to_le_bytes(), salt]);
    for v in [a, b] {
        // `{:016x}`: lowercase, most significant digit first.
        out.extend(
            (0..16)
                .rev()
                .map(|k| b"0123456789abcdef"[(v >> (k * 4)) as usize & 15]),
        );
    }
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

fn push_line(buf: &mut Vec<u8>, value: &impl Serialize) {
    serde_json::to_writer(&mut *buf, value).expect("serializing to memory cannot fail");
    buf.push(b'\n');
}

/// Renders the first `done` tasks as executed and the rest as `unexecuted`.
pub(crate) fn results(
    batch: &Batch,
    tasks: &[Task],
    done: usize,
    unexecuted: Option<(&str, &str)>,
    created: i64,
) -> Rendered {
    let mut r = Rendered {
        output: Vec::new(),
        errors: Vec::new(),
        answered: Vec::new(),
        input_tokens: 0,
        output_tokens: 0,
    };
    let generic = batch.flavor == Flavor::Generic;
    let anthropic = batch.flavor == Flavor::Anthropic;
    // Every line's ids hash the batch id first: once per batch.
    let seed = H64::new().part(batch.id.as_bytes());
    for (i, task) in tasks.iter().enumerate() {
        let cid = task.custom_id.as_str();
        if anthropic {
            if i >= done {
                let kind = match unexecuted {
                    Some(("batch_expired", _)) => "expired",
                    _ => "canceled",
                };
                push_line(
                    &mut r.output,
                    &json!({"custom_id": cid, "result": {"type": kind}}),
                );
            } else {
                if task.ok() {
                    r.answered.push(i);
                }
                render_anthropic(&mut r, batch, task, i);
            }
            continue;
        }
        if i >= done {
            let (code, message) =
                unexecuted.unwrap_or(("batch_cancelled", "This request was not executed."));
            if generic {
                let line: GenericLine<()> = GenericLine {
                    custom_id: cid,
                    output: None,
                    error: Some(GenericError {
                        code,
                        message,
                        status: None,
                    }),
                };
                push_line(&mut r.output, &line);
            } else {
                let line: OutLine<()> = OutLine {
                    id: hex_id("batch_req_", &batch.id, i, b"req"),
                    custom_id: cid,
                    response: None,
                    error: Some(LineError { code, message }),
                };
                push_line(&mut r.errors, &line);
            }
            continue;
        }
        if task.ok() {
            r.answered.push(i);
        }
        if generic {
            render_generic(&mut r, task);
        } else {
            render_openai(&mut r, batch, seed, task, i, created);
        }
    }
    r
}

/// A Message Batches result line: `succeeded` with a Message, or `errored`
/// with an error response (400 → `invalid_request_error`, 5xx →
/// `api_error`).
fn render_anthropic(r: &mut Rendered, batch: &Batch, task: &Task, i: usize) {
    let cid = task.custom_id.as_str();
    let line = match &task.outcome {
        Outcome::Chat {
            reply,
            prompt,
            completion,
        } => {
            r.input_tokens += u64::from(*prompt);
            r.output_tokens += u64::from(*completion);
            json!({"custom_id": cid, "result": {"type": "succeeded", "message": {
                "id": hex_id("msg_", &batch.id, i, b"msg"),
                "type": "message",
                "role": "assistant",
                "model": &*task.model,
                "content": [{"type": "text", "text": reply, "citations": null}],
                "stop_reason": "end_turn",
                "stop_sequence": null,
                "usage": {
                    "input_tokens": prompt,
                    "output_tokens": completion,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                    "service_tier": "batch",
                },
            }}})
        }
        Outcome::Error {
            status, message, ..
        } => {
            let kind = match status {
                500.. => "api_error",
                429 => "rate_limit_error",
                _ => "invalid_request_error",
            };
            json!({"custom_id": cid, "result": {"type": "errored", "error": {
                "type": "error",
                "error": {"type": kind, "message": message},
                "request_id": hex_id("req_", &batch.id, i, b"request"),
            }}})
        }
        // The Messages API has no embeddings; the parser never makes these.
        Outcome::Embedding { .. } => {
            json!({"custom_id": cid, "result": {"type": "errored", "error": {
                "type": "error",
                "error": {"type": "invalid_request_error", "message": "embeddings are not supported"},
                "request_id": null,
            }}})
        }
    };
    push_line(&mut r.output, &line);
}

fn render_generic(r: &mut Rendered, task: &Task) {
    let cid = task.custom_id.as_str();
    match &task.outcome {
        Outcome::Chat { reply, .. } => push_line(
            &mut r.output,
            &GenericLine {
                custom_id: cid,
                output: Some(reply),
                error: None,
            },
        ),
        Outcome::Embedding {
            vectors,
            single: true,
            ..
        } => push_line(
            &mut r.output,
            &GenericLine {
                custom_id: cid,
                output: vectors.first(),
                error: None,
            },
        ),
        Outcome::Embedding { vectors, .. } => push_line(
            &mut r.output,
            &GenericLine {
                custom_id: cid,
                output: Some(vectors),
                error: None,
            },
        ),
        Outcome::Error {
            status,
            code,
            message,
            ..
        } => {
            let code = code.unwrap_or(if *status >= 500 {
                "server_error"
            } else {
                "invalid_request"
            });
            let error = GenericError {
                code,
                message,
                status: Some(*status),
            };
            push_line(
                &mut r.output,
                &GenericLine::<()> {
                    custom_id: cid,
                    output: None,
                    error: Some(error),
                },
            );
        }
    }
}

fn render_openai(r: &mut Rendered, batch: &Batch, seed: H64, task: &Task, i: usize, created: i64) {
    let id = || hex_id("batch_req_", &batch.id, i, b"req");
    let request_id = || hex_id("req_", &batch.id, i, b"request");
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

/// Generic protocol status: queued | running | completed | failed.
pub(crate) fn generic_status(b: &Batch) -> &'static str {
    match b.status {
        Status::Validating => "queued",
        Status::InProgress | Status::Finalizing | Status::Cancelling => "running",
        // an expired job still delivers results: the unfinished ones as errors
        Status::Completed | Status::Expired => "completed",
        Status::Failed | Status::Cancelled => "failed",
    }
}

/// `GET /ml/api/batch/status/{id}` body.
pub(crate) fn job_json(b: &Batch, base: &str) -> Value {
    let status = generic_status(b);
    let mut v = json!({"id": b.id, "status": status, "created_at": b.created_at});
    if status == "completed" {
        v["results_url"] = json!(format!("{base}/ml/api/batch/results/{}", b.id));
        v["request_counts"] =
            json!({"total": b.total, "completed": b.completed, "failed": b.failed});
    }
    if status == "failed" {
        let error = match b.errors.as_ref().and_then(|e| e.first()) {
            Some(e) => {
                let message = match e.line {
                    Some(line) => format!("line {line}: {}", e.message),
                    None => e.message.clone(),
                };
                json!({"code": e.code, "message": message})
            }
            None => json!({"code": "cancelled", "message": "the job was cancelled"}),
        };
        v["error"] = error;
    }
    v
}

/// Anthropic `processing_status`: in_progress | canceling | ended.
pub(crate) fn anthropic_status(b: &Batch) -> &'static str {
    match b.status {
        Status::Validating | Status::InProgress | Status::Finalizing => "in_progress",
        Status::Cancelling => "canceling",
        Status::Completed | Status::Expired | Status::Cancelled | Status::Failed => "ended",
    }
}

/// The MessageBatch object. Request counts stay `processing` until the
/// batch ends, like the real API; `results_url` is absolute (from the
/// request's `Host`) and null until then.
pub(crate) fn message_batch_json(b: &Batch, base: &str) -> Value {
    let status = anthropic_status(b);
    let ended = status == "ended";
    let s = &b.stamps;
    let counts = if ended {
        let unexecuted = b.unexecuted;
        let (expired, canceled) = if b.status == Status::Expired {
            (unexecuted, 0)
        } else {
            (0, unexecuted)
        };
        json!({
            "processing": 0,
            "succeeded": b.completed,
            "errored": b.failed - unexecuted,
            "canceled": canceled,
            "expired": expired,
        })
    } else {
        json!({"processing": b.total, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0})
    };
    let ended_at = s
        .completed_at
        .or(s.expired_at)
        .or(s.cancelled_at)
        .or(s.failed_at);
    json!({
        "id": b.id,
        "type": "message_batch",
        "processing_status": status,
        "request_counts": counts,
        "ended_at": ended_at.filter(|_| ended).map(rfc3339),
        "created_at": rfc3339(b.created_at),
        "expires_at": rfc3339(b.created_at + 24 * 3600),
        "archived_at": null,
        "cancel_initiated_at": s.cancelling_at.map(rfc3339),
        "results_url": ended.then(|| format!("{base}/v1/messages/batches/{}/results", b.id)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::ChatCompletion;

    #[test]
    fn hex_ids_are_the_two_hashes_in_hex() {
        for (batch, i, salt) in [("batch_abc", 0, &b"req"[..]), ("b", 99_999, b"cmpl")] {
            let a = h64(&[batch.as_bytes(), &(i as u64).to_le_bytes(), salt]);
            let b = h64(&[&a.to_le_bytes(), salt]);
            assert_eq!(hex_id("p_", batch, i, salt), format!("p_{a:016x}{b:016x}"));
        }
    }

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
