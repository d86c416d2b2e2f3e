//! MessageBatch objects and listings in our terms.

use serde_json::Value;

use crate::openai::{data_page, str_field, time_field, u64_field};
use crate::{BatchPage, RemoteBatch, RemoteStatus, RequestCounts};

/// Processing status words. `None` for a word we do not know.
pub fn map_status(s: &str) -> Option<RemoteStatus> {
    Some(match s.trim().to_ascii_lowercase().as_str() {
        "in_progress" => RemoteStatus::InProgress,
        "canceling" | "cancelling" => RemoteStatus::Cancelling,
        "ended" => RemoteStatus::Completed,
        _ => return None,
    })
}

/// A MessageBatch object. `request_counts.total` is the sum of the five
/// counts (only `processing` is non-zero until the batch ends); `completed`
/// = succeeded, `failed` = errored + canceled + expired.
pub fn parse_batch(v: &Value) -> Result<RemoteBatch, String> {
    let id = str_field(v, "id").ok_or("the answer has no batch id")?;
    let word = v
        .get("processing_status")
        .and_then(Value::as_str)
        .unwrap_or("");
    let status = map_status(word).unwrap_or_else(|| {
        tracing::warn!(batch_id = %id, status = word, "unknown processing_status, treated as in_progress");
        RemoteStatus::InProgress
    });
    let counts = v.get("request_counts").filter(|c| c.is_object()).map(|c| {
        let n = |k| u64_field(c, k).unwrap_or(0);
        let (processing, succeeded) = (n("processing"), n("succeeded"));
        let failed = n("errored") + n("canceled") + n("expired");
        RequestCounts {
            total: processing + succeeded + failed,
            completed: succeeded,
            failed,
        }
    });
    Ok(RemoteBatch {
        status,
        output_file: str_field(v, "results_url"),
        error_file: None,
        errors: Vec::new(),
        counts,
        created_at: time_field(v, "created_at"),
        meta: None,
        total_tokens: None,
        id,
    })
}

/// `{data, has_more, first_id, last_id}`.
pub fn parse_page(v: &Value) -> Result<BatchPage, String> {
    data_page(v, parse_batch)
}
