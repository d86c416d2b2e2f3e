//! The generic protocol's wire shapes: result lines and the job object.

use serde::Serialize;
use serde_json::{json, Value};

use crate::engine::batch::{Batch, Status};
use crate::engine::model::{Outcome, Task};
use crate::engine::results::{not_run, push_line, render_each, Rendered};

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

/// The results JSONL of a job that ended in `end`.
pub(crate) fn results(
    _batch_id: &str,
    tasks: &[Task],
    done: usize,
    end: Status,
    _created: i64,
) -> Rendered {
    render_each(tasks, done, render_line, |r, _, task| {
        let (code, message) = not_run(end);
        let line: GenericLine<()> = GenericLine {
            custom_id: &task.custom_id,
            output: None,
            error: Some(GenericError {
                code,
                message,
                status: None,
            }),
        };
        push_line(&mut r.output, &line);
    })
}

fn render_line(r: &mut Rendered, _i: usize, task: &Task) {
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
