//! Joining a finished batch's results with its records and writing output
//! lines. Results arrive in any order: they are joined by custom_id, never by
//! position. Output lines are built by copying the record's bytes and
//! appending two fields, never by re-serializing the record.

use std::collections::HashMap;

use std::io::Write as _;

use batch_api::wire::{
    parse_result_line, parse_result_str, split_lines, split_str_lines, Outcome, ResultLine, Task,
    WireError, WireFormat,
};
use batch_core::{parse_custom_id, Batch, Budget, Disposition, Position, ResultClass};

use crate::ledger::BatchRecords;
use crate::record::write_record_open;

#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub ok: u64,
    pub errors: u64,
    pub tokens: u64,
    pub malformed_results: u64,
}

pub struct Joined {
    pub counts: Counts,
    pub retry: Vec<Position>,
    /// Some of `retry` failed by their own fault: the retry counts against
    /// `ml.batch.max.retries`.
    pub charged: bool,
    /// Records emitted as errors because their retry deadline passed.
    pub out_of_time: u64,
}

/// Per-pipeline constant parts of output lines.
pub struct OutputShape {
    /// `,"prediction":`
    prediction_key: Vec<u8>,
}

impl OutputShape {
    pub fn new(output_field: &str) -> Self {
        let mut prediction_key = b",".to_vec();
        serde_json::to_writer(&mut prediction_key, output_field).expect("string to vec");
        prediction_key.push(b':');
        Self { prediction_key }
    }
}

pub struct JoinInput<'a> {
    pub batch: &'a Batch,
    pub budget: &'a Budget,
    pub results: &'a [Vec<u8>],
    pub requests: &'a super::requests::Requests<'a>,
    pub format: WireFormat,
    pub task: Task,
    pub shape: &'a OutputShape,
    /// Scrubbed from the provider's error texts (they may echo it).
    pub api_key: Option<&'a batch_api::ApiKey>,
}

enum Fate<'r> {
    Ok(&'r [u8]),
    Error { code: &'r str, message: &'r str },
}

/// Called with `(key, output line)` of each emitted record.
pub type EmitLine<'a> = dyn FnMut(Option<&[u8]>, &[u8]) + 'a;

/// Join and hand each output line (with the record's key, if any) to `emit`.
pub fn join<'a>(
    input: &JoinInput<'a>,
    records: &mut dyn BatchRecords,
    emit: &mut EmitLine<'_>,
) -> anyhow::Result<Joined> {
    let batch = input.batch;
    let mut counts = Counts::default();
    let mut by_position: HashMap<Position, Outcome<'a>> =
        HashMap::with_capacity(batch.records as usize);
    let mut take = |r: Result<ResultLine<'a>, WireError>| match r {
        Ok(r) => match parse_custom_id(&r.custom_id) {
            Some((lane, pos)) if lane == batch.lane => {
                if let Outcome::Ok {
                    total_tokens: Some(t),
                    ..
                } = &r.outcome
                {
                    counts.tokens += t;
                }
                // A success wins over a failure line for the same id.
                let keep = by_position.get(&pos).is_some_and(|o| o.is_ok());
                if !keep {
                    by_position.insert(pos, r.outcome);
                }
            }
            _ => counts.malformed_results += 1,
        },
        Err(e) => {
            counts.malformed_results += 1;
            tracing::warn!(batch = %batch.number, error = %e, "skipping a result line");
        }
    };
    for buf in input.results {
        // Validate once: parsing from `&str` then skips the per-string UTF-8
        // checks. A buffer that is not UTF-8 is parsed line by line from
        // bytes, so one bad line cannot hide the others.
        match std::str::from_utf8(buf) {
            Ok(text) => {
                for line in split_str_lines(text) {
                    take(parse_result_str(input.format, input.task, line));
                }
            }
            Err(_) => {
                for line in split_lines(buf) {
                    take(parse_result_line(input.format, input.task, line));
                }
            }
        }
    }
    let mut head = Vec::with_capacity(128);
    head.extend_from_slice(br#","ml_predict":{"batch_number":"#);
    serde_json::to_writer(&mut head, &batch.number)?;
    head.extend_from_slice(br#","batch_id":"#);
    serde_json::to_writer(&mut head, &batch.remote_id)?;
    head.extend_from_slice(format!(r#","retries":{},"custom_id":""#, batch.generation).as_bytes());

    let mut retry = Vec::new();
    let (mut charged, mut out_of_time) = (false, 0);
    let mut message_buf = String::new();
    let mut out = Vec::with_capacity(1024);
    let mut one = |pos: Position, result: Option<&Outcome<'_>>, key: Option<&[u8]>, line: &[u8]| {
        out.clear();
        let (class, fate) = match (&batch.failure, result) {
            // The core decided (and said why in the message).
            (Some(f), _) => (
                ResultClass::Permanent,
                Fate::Error {
                    code: &f.code,
                    message: &f.message,
                },
            ),
            (None, Some(Outcome::Ok { prediction, .. })) => {
                (ResultClass::Ok, Fate::Ok(prediction.get().as_bytes()))
            }
            (
                None,
                Some(Outcome::Failed {
                    code,
                    message,
                    retriable,
                }),
            ) => (
                ResultClass::of_failure(code, *retriable),
                Fate::Error { code, message },
            ),
            (None, None) => (
                ResultClass::Missing,
                Fate::Error {
                    code: "missing_result",
                    message: "the provider returned no result for this request",
                },
            ),
        };
        let disposition = input.budget.disposition(class);
        let fate = match (disposition, fate) {
            (Disposition::EmitOutOfTime, Fate::Error { code, message }) => {
                out_of_time += 1;
                message_buf.clear();
                message_buf.push_str(message);
                message_buf.push_str("; ");
                message_buf.push_str(input.budget.out_of_time.as_deref().unwrap_or_default());
                Fate::Error {
                    code,
                    message: &message_buf,
                }
            }
            (_, fate) => fate,
        };
        match disposition {
            Disposition::Retry { charged: c } => {
                charged |= c;
                retry.push(pos)
            }
            Disposition::EmitOk | Disposition::EmitError | Disposition::EmitOutOfTime => {
                if !write_record_open(&mut out, line) {
                    return;
                }
                out.extend_from_slice(&input.shape.prediction_key);
                match fate {
                    Fate::Ok(p) => {
                        counts.ok += 1;
                        out.extend_from_slice(p);
                    }
                    Fate::Error { .. } => {
                        counts.errors += 1;
                        out.extend_from_slice(b"null");
                    }
                }
                out.extend_from_slice(&head);
                let _ = write!(out, "{}-{pos}\"", batch.lane);
                match fate {
                    Fate::Ok(_) => out.extend_from_slice(br#","status":"ok","error":null}}"#),
                    Fate::Error { code, message } => {
                        out.extend_from_slice(br#","status":"error","error":{"code":"#);
                        let _ = serde_json::to_writer(&mut out, code);
                        out.extend_from_slice(br#","message":"#);
                        let message = match input.api_key {
                            Some(k) => k.redact(message),
                            None => std::borrow::Cow::Borrowed(message),
                        };
                        let _ = serde_json::to_writer(&mut out, &message);
                        out.extend_from_slice(b"}}}");
                    }
                }
                out.push(b'\n');
                emit(key, &out);
            }
        }
    };
    let usable_only = batch.members.is_none();
    let (mut scratch_id, mut scratch) = (String::new(), Vec::new());
    records.visit(batch, &mut |pos, key, line| {
        let result = by_position.get(&pos);
        // Dead letters of a range went out when the batch was cut. Only
        // usable records were sent, so a line with a result is usable: the
        // record is parsed again only when it has none (or the batch failed).
        let usable = !usable_only
            || (result.is_some() && batch.failure.is_none())
            || input
                .requests
                .line(batch.lane, pos, Some(line), &mut scratch_id, &mut scratch)
                .is_ok();
        if usable {
            one(pos, result, key, line);
        }
    })?;
    Ok(Joined {
        counts,
        retry,
        charged,
        out_of_time,
    })
}

#[cfg(test)]
mod tests {
    use batch_core::{Batch, Phase};

    use super::*;
    use crate::ledger::VisitRecord;

    struct Records(Vec<(Position, &'static str)>);

    impl BatchRecords for Records {
        fn visit(&mut self, _b: &Batch, f: &mut VisitRecord<'_>) -> anyhow::Result<()> {
            for (p, line) in &self.0 {
                f(*p, Some(b"k"), line.as_bytes());
            }
            Ok(())
        }
    }

    fn batch() -> Batch {
        Batch {
            id: 1,
            lane: 0,
            number: "p-0-0-40".into(),
            first: 0,
            end: 40,
            members: None,
            generation: 0,
            attempt: 0,
            records: 3,
            phase: Phase::Finished,
            planned_at: 0,
            submitted_at: None,
            file_id: None,
            remote_id: Some("batch_1".into()),
            remote_state: None,
            output_file: None,
            error_file: None,
            failure: None,
            first_submitted_at: None,
            fault_retries: 0,
            submissions: 0,
            tokens: 0,
            estimated_cost: 0,
        }
    }

    #[test]
    fn joins_by_custom_id_retries_what_failed_retriably_and_scrubs_the_key() {
        let results = vec![concat!(
            r#"{"custom_id":"0-20","response":{"status_code":400,"body":{"error":{"code":"invalid_request","message":"bad key sk-secret-123456 in request"}}}}"#,
            "\n",
            r#"{"custom_id":"0-0","response":{"status_code":200,"body":{"choices":[{"message":{"content":"yes"}}],"usage":{"total_tokens":7}}}}"#,
            "\n",
            r#"{"custom_id":"0-30","response":null,"error":{"code":"batch_expired","message":"expired"}}"#,
            "\n",
        )
        .as_bytes()
        .to_vec()];
        let template = batch_api::wire::RequestTemplate::new(
            WireFormat::OpenAi,
            Task::Chat,
            "/v1/chat/completions",
            "m",
            None,
            None,
            None,
        );
        let requests = super::super::requests::Requests {
            fields: crate::record::Fields {
                input: "text",
                output: "prediction",
            },
            template: &template,
            max_bytes: 1 << 20,
            tokens: None,
        };
        let key = batch_api::ApiKey::new("sk-secret-123456");
        let b = batch();
        let input = JoinInput {
            batch: &b,
            budget: &Budget {
                retries_spent: false,
                out_of_time: None,
                completed: false,
            },
            results: &results,
            requests: &requests,
            format: WireFormat::OpenAi,
            task: Task::Chat,
            shape: &OutputShape::new("prediction"),
            api_key: Some(&key),
        };
        let mut records = Records(vec![
            (0, r#"{"id":1,"text":"a"}"#),
            (20, r#"{"id":2,"text":"b"}"#),
            (30, r#"{"id":3,"text":"c"}"#),
        ]);
        let mut lines = Vec::new();
        let joined = join(&input, &mut records, &mut |k, l| {
            assert_eq!(k, Some(&b"k"[..]));
            lines.push(String::from_utf8(l.to_vec()).unwrap());
        })
        .unwrap();
        assert_eq!(joined.retry, vec![30], "the expired request is retried");
        assert!(!joined.charged, "an expiry is not the request's fault");
        assert_eq!(
            (joined.counts.ok, joined.counts.errors, joined.counts.tokens),
            (1, 1, 7)
        );
        let parsed: Vec<serde_json::Value> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(parsed[0]["prediction"], "yes");
        assert_eq!(parsed[0]["ml_predict"]["custom_id"], "0-0");
        assert_eq!(parsed[1]["ml_predict"]["status"], "error");
        let message = parsed[1]["ml_predict"]["error"]["message"]
            .as_str()
            .unwrap();
        assert!(
            !message.contains("secret") && !message.contains("123456"),
            "{message}"
        );
    }
}
