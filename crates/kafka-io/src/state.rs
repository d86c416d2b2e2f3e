//! The state topic's records: per lane, `lane` → [`LaneRecord`],
//! `batch/{id}` → the batch (a tombstone once emitted), and, for
//! synchronous mode, `sync/ahead` → the records emitted beyond the
//! watermark (`{watermark}:{offset},...`). Compaction keeps the latest value
//! per key, so a lane's state is the fold of its partition.

use batch_core::{Batch, Phase};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaneRecord {
    /// Next input offset to consume: every record before it is in a durable
    /// batch or went to the dead-letter topic.
    pub watermark: i64,
    pub next_seq: u64,
}

/// A state write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateRecord {
    pub partition: i32,
    pub key: String,
    /// `None` deletes the key (tombstone).
    pub value: Option<Vec<u8>>,
}

impl StateRecord {
    pub fn lane(partition: i32, lane: LaneRecord) -> Self {
        Self {
            partition,
            key: "lane".into(),
            value: Some(serde_json::to_vec(&lane).expect("lane record")),
        }
    }

    /// Synchronous mode's records emitted beyond the lane's watermark.
    pub fn sync_ahead(partition: i32, ahead: &str) -> Self {
        Self {
            partition,
            key: SYNC_AHEAD_KEY.into(),
            value: Some(ahead.as_bytes().to_vec()),
        }
    }

    pub fn batch(partition: i32, batch: &Batch) -> Self {
        let key = format!("batch/{}", batch.id);
        let value = (batch.phase != Phase::Emitted)
            .then(|| serde_json::to_vec(batch).expect("batch record"));
        Self {
            partition,
            key,
            value,
        }
    }
}

const SYNC_AHEAD_KEY: &str = "sync/ahead";

/// A lane's state, folded from its state partition.
#[derive(Debug, Clone, Default)]
pub struct LaneState {
    pub lane: Option<LaneRecord>,
    pub batches: std::collections::BTreeMap<u64, Batch>,
    /// Synchronous mode: `{watermark}:{offset},...`, see [`StateRecord::sync_ahead`].
    pub sync_ahead: Option<String>,
}

/// A state record, decoded.
enum Decoded {
    Lane(LaneRecord),
    SyncAhead(Option<String>),
    /// `None`: a tombstone, the batch was emitted.
    Batch(u64, Option<Box<Batch>>),
}

/// `None` for keys and values this version does not know.
fn decode(key: Option<&[u8]>, value: Option<&[u8]>) -> Option<Decoded> {
    let key = std::str::from_utf8(key?).ok()?;
    match key {
        "lane" => serde_json::from_slice(value?).ok().map(Decoded::Lane),
        SYNC_AHEAD_KEY => Some(Decoded::SyncAhead(
            value.map(|v| String::from_utf8_lossy(v).into_owned()),
        )),
        _ => {
            let id = key.strip_prefix("batch/")?.parse().ok()?;
            let batch = value.and_then(|v| serde_json::from_slice(v).ok().map(Box::new));
            Some(Decoded::Batch(id, batch))
        }
    }
}

impl LaneState {
    pub fn apply(&mut self, key: Option<&[u8]>, value: Option<&[u8]>) {
        match decode(key, value) {
            Some(Decoded::Lane(l)) => self.lane = Some(l),
            Some(Decoded::SyncAhead(a)) => self.sync_ahead = a,
            Some(Decoded::Batch(id, Some(b))) => {
                self.batches.insert(id, *b);
            }
            Some(Decoded::Batch(id, None)) => {
                self.batches.remove(&id);
            }
            None => {}
        }
    }
}

/// A lane's state as `mlpredict status` shows it: like [`LaneState`], but an
/// emitted batch (a tombstone) keeps its last record, marked
/// [`Phase::Emitted`], until compaction removes it from the topic.
#[derive(Debug, Clone, Default)]
pub struct LaneHistory {
    pub lane: Option<LaneRecord>,
    pub batches: std::collections::BTreeMap<u64, Batch>,
}

impl LaneHistory {
    pub fn apply(&mut self, key: Option<&[u8]>, value: Option<&[u8]>) {
        match decode(key, value) {
            Some(Decoded::Lane(l)) => self.lane = Some(l),
            Some(Decoded::Batch(id, Some(b))) => {
                self.batches.insert(id, *b);
            }
            Some(Decoded::Batch(id, None)) => {
                if let Some(b) = self.batches.get_mut(&id) {
                    b.phase = Phase::Emitted;
                }
            }
            Some(Decoded::SyncAhead(_)) | None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_records_written_before_the_retry_fields_still_decode() {
        let old = r#"{"id":7,"lane":2,"number":"p-2-0-10","first":0,"end":10,"members":null,"generation":1,"attempt":0,"records":10,"phase":"submitted","planned_at":1,"submitted_at":5,"file_id":null,"remote_id":"b","remote_state":null,"output_file":null,"error_file":null,"failure":null}"#;
        let b: Batch = serde_json::from_str(old).unwrap();
        assert_eq!(
            (b.first_submitted_at, b.fault_retries, b.submissions),
            (None, 0, 0)
        );
        assert_eq!(b.tried_since(), 5);
    }

    #[test]
    fn folding_keeps_the_latest_and_drops_tombstones() {
        let mut batch = Batch {
            id: 7,
            lane: 2,
            number: "p-2-0-10".into(),
            first: 0,
            end: 10,
            members: None,
            generation: 0,
            attempt: 0,
            records: 10,
            phase: Phase::Planned,
            planned_at: 1,
            submitted_at: None,
            file_id: None,
            remote_id: None,
            remote_state: None,
            output_file: None,
            error_file: None,
            failure: None,
            first_submitted_at: Some(1),
            fault_retries: 1,
            submissions: 2,
            tokens: 0,
            estimated_cost: 0,
        };
        let mut st = LaneState::default();
        let rec = |r: StateRecord| (r.key.into_bytes(), r.value);
        let (k, v) = rec(StateRecord::batch(2, &batch));
        st.apply(Some(&k), v.as_deref());
        let (k, v) = rec(StateRecord::lane(
            2,
            LaneRecord {
                watermark: 10,
                next_seq: 8,
            },
        ));
        st.apply(Some(&k), v.as_deref());
        assert_eq!(st.batches.get(&7), Some(&batch));
        batch.phase = Phase::Emitted;
        let (k, v) = rec(StateRecord::batch(2, &batch));
        assert!(v.is_none());
        st.apply(Some(&k), v.as_deref());
        assert!(st.batches.is_empty());
        assert_eq!(
            st.lane,
            Some(LaneRecord {
                watermark: 10,
                next_seq: 8
            })
        );
        let mut history = LaneHistory::default();
        batch.phase = Phase::Planned;
        for r in [
            StateRecord::batch(2, &batch),
            StateRecord::lane(2, LaneRecord::default()),
            StateRecord::batch(
                2,
                &Batch {
                    phase: Phase::Emitted,
                    ..batch.clone()
                },
            ),
        ] {
            let (k, v) = rec(r);
            history.apply(Some(&k), v.as_deref());
        }
        assert_eq!(
            history.batches[&7].phase,
            Phase::Emitted,
            "emitted, not dropped"
        );
        assert_eq!(history.lane, Some(LaneRecord::default()));
        let (k, v) = rec(StateRecord::sync_ahead(2, "10:12,15"));
        st.apply(Some(&k), v.as_deref());
        assert_eq!(st.sync_ahead.as_deref(), Some("10:12,15"));
    }
}
