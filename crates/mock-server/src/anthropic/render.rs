//! Anthropic's wire shapes of a message batch: result lines and the
//! MessageBatch object.

use serde_json::{json, Value};

use crate::engine::batch::{Batch, Status};
use crate::engine::model::{Outcome, Task};
use crate::engine::results::{hex_id, push_line, render_each, Rendered};
use crate::util::rfc3339;

/// The results JSONL of a message batch that ended in `end`.
pub(crate) fn results(
    batch_id: &str,
    tasks: &[Task],
    done: usize,
    end: Status,
    _created: i64,
) -> Rendered {
    render_each(
        tasks,
        done,
        |r, i, task| render_line(r, batch_id, task, i),
        |r, _, task| {
            let kind = if end == Status::Expired {
                "expired"
            } else {
                "canceled"
            };
            push_line(
                &mut r.output,
                &json!({"custom_id": task.custom_id, "result": {"type": kind}}),
            );
        },
    )
}

/// A Message Batches result line: `succeeded` with a Message, or `errored`
/// with an error response (400 → `invalid_request_error`, 5xx →
/// `api_error`).
fn render_line(r: &mut Rendered, batch_id: &str, task: &Task, i: usize) {
    let cid = task.custom_id.as_str();
    let line = match &task.outcome {
        Outcome::Chat {
            reply,
            prompt,
            completion,
        } => {
            r.input_tokens += u64::from(*prompt);
            r.output_tokens += u64::from(*completion);
            let id = hex_id("msg_", batch_id, i, b"msg");
            let message = message_json(id, &task.model, reply, *prompt, *completion, "batch");
            json!({"custom_id": cid, "result": {"type": "succeeded", "message": message}})
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
                "request_id": hex_id("req_", batch_id, i, b"request"),
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

/// A Message object: the fake model's `reply` on the `tier` it ran on.
pub(crate) fn message_json(
    id: String,
    model: &str,
    reply: &str,
    prompt: u32,
    completion: u32,
    tier: &str,
) -> Value {
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": reply, "citations": null}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": {
            "input_tokens": prompt,
            "output_tokens": completion,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "service_tier": tier,
        },
    })
}
