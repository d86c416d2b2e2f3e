//! What a protocol hands back when a batch ends: its result bytes. The
//! engine decides who ran and how; each protocol writes its own lines
//! through a [`RenderFn`] given at create. Shared here: the line ids and the
//! reason a request was not run.

use serde::Serialize;

use super::model::Task;
use super::status::Status;
use crate::util::{h64, H64};

/// Rendered end-of-batch results.
pub(crate) struct Rendered {
    pub output: Vec<u8>,
    pub errors: Vec<u8>,
    /// Indexes of tasks answered successfully.
    pub answered: Vec<usize>,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl Rendered {
    fn new() -> Self {
        Rendered {
            output: Vec::new(),
            errors: Vec::new(),
            answered: Vec::new(),
            input_tokens: 0,
            output_tokens: 0,
        }
    }
}

/// Writes a batch's results: `(batch id, tasks in execution order, how many
/// ran, the status it ends in, the Unix time of the end)`; the tasks from
/// `done` on were not run.
pub(crate) type RenderFn = fn(&str, &[Task], usize, Status, i64) -> Rendered;

/// Renders every task: `ran` for the first `done` (those answered
/// successfully are noted first), `skipped` for the rest.
pub(crate) fn render_each(
    tasks: &[Task],
    done: usize,
    mut ran: impl FnMut(&mut Rendered, usize, &Task),
    mut skipped: impl FnMut(&mut Rendered, usize, &Task),
) -> Rendered {
    let mut r = Rendered::new();
    for (i, task) in tasks.iter().enumerate() {
        if i >= done {
            skipped(&mut r, i, task);
            continue;
        }
        if task.ok() {
            r.answered.push(i);
        }
        ran(&mut r, i, task);
    }
    r
}

/// `(code, message)` of a request a batch ending in `status` did not run.
pub(crate) fn not_run(status: Status) -> (&'static str, &'static str) {
    match status {
        Status::Expired => (
            "batch_expired",
            "This request could not be executed before the completion window expired.",
        ),
        Status::Cancelled => (
            "batch_cancelled",
            "This request could not be executed before the batch was cancelled.",
        ),
        _ => ("batch_cancelled", "This request was not executed."),
    }
}

pub(crate) fn hex_id(prefix: &str, batch_id: &str, i: usize, salt: &[u8]) -> String {
    let mut id = Vec::with_capacity(prefix.len() + 32);
    id.extend_from_slice(prefix.as_bytes());
    push_hex_id(&mut id, H64::new().part(batch_id.as_bytes()), i, salt);
    String::from_utf8(id).expect("ascii")
}

/// The 32 hex digits of [`hex_id`] after its prefix; `batch` has hashed
/// the batch id.
pub(crate) fn push_hex_id(out: &mut Vec<u8>, batch: H64, i: usize, salt: &[u8]) {
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

/// One JSONL line as serde_json writes it.
pub(crate) fn push_line(buf: &mut Vec<u8>, value: &impl Serialize) {
    serde_json::to_writer(&mut *buf, value).expect("serializing to memory cannot fail");
    buf.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_ids_are_the_two_hashes_in_hex() {
        for (batch, i, salt) in [("batch_abc", 0, &b"req"[..]), ("b", 99_999, b"cmpl")] {
            let a = h64(&[batch.as_bytes(), &(i as u64).to_le_bytes(), salt]);
            let b = h64(&[&a.to_le_bytes(), salt]);
            assert_eq!(hex_id("p_", batch, i, salt), format!("p_{a:016x}{b:016x}"));
        }
    }
}
