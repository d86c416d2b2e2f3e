//! The retry budgets, watched on the real output lines as they are
//! committed: a capacity fault (429, expiry, quota, an unreachable API)
//! never produces an error output before `ml.batch.retry.deadline` has
//! passed since the record's first upload, and never by spending
//! `ml.batch.max.retries`.

use std::collections::BTreeMap;

use batch_core::{LaneId, Millis, Position};

/// Error codes of the simulated provider that are the request's fault
/// (or a missing line, which is the request's when its batch completed).
const REQUEST_FAULTS: &[&str] = &["invalid_request", "invalid_json_line", "missing_result"];

#[derive(Debug, Default)]
pub struct Watch {
    /// Output lines already looked at.
    seen: usize,
    /// Errors emitted because the deadline passed.
    pub out_of_time: u64,
    /// Records emitted ok although first uploaded before an outage ended.
    pub survivors: u64,
}

impl Watch {
    /// Look at the output lines committed since the last call; `now` is
    /// the clock after the step that committed them (at or after the
    /// decision).
    pub fn observe(
        &mut self,
        outputs: &[(Option<Vec<u8>>, Vec<u8>)],
        now: Millis,
        first_upload: &BTreeMap<(LaneId, Position), Millis>,
        deadline: Millis,
        outage_end: Option<Millis>,
    ) {
        for (_, line) in &outputs[self.seen.min(outputs.len())..] {
            let v: serde_json::Value = serde_json::from_slice(line).expect("output is JSON");
            let m = &v["ml_predict"];
            let cid = m["custom_id"].as_str().expect("custom_id");
            let key = batch_core::parse_custom_id(cid).expect("our custom_id");
            let first = first_upload.get(&key).copied();
            if m["status"] == "ok" {
                if first.zip(outage_end).is_some_and(|(f, end)| f < end) {
                    self.survivors += 1;
                }
                continue;
            }
            let code = m["error"]["code"].as_str().unwrap_or_default();
            let message = m["error"]["message"].as_str().unwrap_or_default();
            let gave_up = message.contains("ml.batch.retry.deadline");
            assert!(
                gave_up || REQUEST_FAULTS.contains(&code),
                "{cid}: a capacity fault ({code}: {message}) emitted as an error without its deadline passing"
            );
            if gave_up {
                self.out_of_time += 1;
                let first = first.expect("an error for capacity of a record never uploaded");
                assert!(
                    now >= first + deadline,
                    "{cid}: given up {} ms after its first upload, before the deadline of {deadline} ms ({message})",
                    now - first
                );
            }
        }
        self.seen = outputs.len();
    }
}
