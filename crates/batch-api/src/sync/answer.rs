//! A synchronous answer read the way batch mode reads a result line: the
//! body is wrapped as one (`{"custom_id","response":{"status_code","body"}}`),
//! so a prediction is exactly what batch mode would emit for the same answer
//! (`choices[0].message.content`, `data[0].embedding`, refusals, error
//! envelopes), copied as raw JSON; then the output line in batch mode's
//! shape.

use std::borrow::Cow;

use super::Client;
use crate::wire::{
    is_retriable_http_status, parse_result_line, Outcome, WireFormat, UNEXPECTED_RESPONSE,
};

/// Append `{...record minus its closing brace...}` for an output line: the
/// record's bytes are copied, never re-serialized. Returns false if the line
/// is not an object (callers only pass usable records).
pub fn write_record_open(out: &mut Vec<u8>, line: &[u8]) -> bool {
    let trimmed = line.trim_ascii();
    match trimmed.strip_suffix(b"}") {
        Some(body) => {
            out.extend_from_slice(body.trim_ascii_end());
            true
        }
        None => false,
    }
}

impl Client {
    /// Read a response the way batch mode reads a result line.
    pub(super) fn outcome<'a>(
        &self,
        status: u16,
        body: &[u8],
        scratch: &'a mut Vec<u8>,
    ) -> Outcome<'a> {
        let trimmed = body.trim_ascii();
        scratch.clear();
        let wrapped = match self.format {
            WireFormat::OpenAi if !trimmed.is_empty() => {
                scratch.extend_from_slice(br#"{"custom_id":"s","response":{"status_code":"#);
                scratch.extend_from_slice(status.to_string().as_bytes());
                scratch.extend_from_slice(br#","body":"#);
                scratch.extend_from_slice(trimmed);
                scratch.extend_from_slice(b"}}");
                true
            }
            // A Messages API answer or error envelope, as the result of a
            // Message Batches line.
            WireFormat::Anthropic if !trimmed.is_empty() => {
                let ok = (200..300).contains(&status);
                scratch.extend_from_slice(br#"{"custom_id":"s","result":{"type":"#);
                scratch.extend_from_slice(if ok {
                    br#""succeeded","message":"#
                } else {
                    br#""errored","error":"#
                });
                scratch.extend_from_slice(trimmed);
                scratch.extend_from_slice(b"}}");
                true
            }
            // The FLIP's protocol answers `{"output": ...}` or `{"error": ...}`:
            // a result line without its custom_id.
            WireFormat::Generic if (200..300).contains(&status) && trimmed.starts_with(b"{") => {
                scratch.extend_from_slice(br#"{"custom_id":"s""#);
                let rest = trimmed[1..].trim_ascii_start();
                if !rest.starts_with(b"}") {
                    scratch.push(b',');
                }
                scratch.extend_from_slice(rest);
                true
            }
            _ => false,
        };
        if wrapped {
            let parsed = parse_result_line(self.format, self.task, scratch).ok();
            if let Some(line) = parsed {
                return line.outcome;
            }
        }
        // Not JSON (a proxy's HTML page, a bare text error).
        if (200..300).contains(&status) {
            return Outcome::Failed {
                code: Cow::Borrowed(UNEXPECTED_RESPONSE),
                message: Cow::Borrowed("the response body is not the expected json"),
                retriable: false,
            };
        }
        let text = String::from_utf8_lossy(trimmed);
        let text: String = text.chars().take(300).collect();
        Outcome::Failed {
            code: Cow::Owned(format!("http_{status}")),
            message: Cow::Owned(if text.is_empty() {
                format!("http status {status}")
            } else {
                text
            }),
            retriable: is_retriable_http_status(status),
        }
    }

    /// The output record: the input object unchanged, the prediction and
    /// `ml_predict`, in the same shape as batch mode's.
    pub(super) fn output_line(
        &self,
        record: &[u8],
        lane: u32,
        pos: u64,
        retries: u32,
        outcome: &Outcome<'_>,
    ) -> (Vec<u8>, bool, u64) {
        let pred_len = match outcome {
            Outcome::Ok { prediction, .. } => prediction.get().len(),
            Outcome::Failed { .. } => 4,
        };
        let mut out = Vec::with_capacity(record.len() + pred_len + 200);
        let is_object = write_record_open(&mut out, record);
        debug_assert!(is_object, "usable records are objects");
        out.extend_from_slice(&self.prediction_key);
        let (ok, tokens) = match outcome {
            Outcome::Ok {
                prediction,
                total_tokens,
            } => {
                out.extend_from_slice(prediction.get().as_bytes());
                (true, total_tokens.unwrap_or(0))
            }
            Outcome::Failed { .. } => {
                out.extend_from_slice(b"null");
                (false, 0)
            }
        };
        out.extend_from_slice(br#","ml_predict":{"batch_number":null,"batch_id":null,"retries":"#);
        out.extend_from_slice(format!("{retries},\"custom_id\":\"{lane}-{pos}\"").as_bytes());
        match outcome {
            Outcome::Ok { .. } => out.extend_from_slice(br#","status":"ok","error":null}}"#),
            Outcome::Failed { code, message, .. } => {
                out.extend_from_slice(br#","status":"error","error":{"code":"#);
                let _ = serde_json::to_writer(&mut out, self.http.redact(code).as_ref());
                out.extend_from_slice(br#","message":"#);
                let _ = serde_json::to_writer(&mut out, self.http.redact(message).as_ref());
                out.extend_from_slice(b"}}}");
            }
        }
        out.push(b'\n');
        (out, ok, tokens)
    }
}
