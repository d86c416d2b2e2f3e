//! One conformance suite for every [`Ledger`] (the way Quickwit runs one
//! metastore suite against each backend): each backend's tests call
//! [`run`] with a [`Harness`] that opens its ledger over a fixed input and
//! reads back what it committed. A "crash" is dropping the ledger and
//! opening it again over the same durable store.

use std::time::Duration;

use batch_core::{Batch, LaneId, Phase, Position};

use super::{Intake, Ledger};
use crate::{LaneMark, Turn};

/// A backend under test.
pub trait Harness {
    type L: Ledger;
    /// The ledger over the durable store (a new process after a crash).
    fn open(&mut self) -> Self::L;
    /// Committed output lines, without their newlines.
    fn outputs(&mut self) -> Vec<Vec<u8>>;
    fn dead_letters(&mut self) -> Vec<Vec<u8>>;
    /// How long the first read may wait for records (a broker fetch).
    fn read_wait(&self) -> Duration {
        Duration::ZERO
    }
}

/// The records every harness is opened over: lane 0 holds these values.
pub const RECORDS: [&str; 5] = [
    r#"{"id":1,"text":"one"}"#,
    r#"{"id":2,"text":"two"}"#,
    r#"{"id":3,"text":"three"}"#,
    r#"{"id":4,"text":"four"}"#,
    r#"{"id":5,"text":"five"}"#,
];

const LANE: LaneId = 0;

/// Wait for the first lanes as the driver does: lane changes between
/// reads, as a group consumer learns them only while it is polled (a
/// record read before its lane is restored is read again after it).
fn first_lanes<L: Ledger>(l: &mut L) -> Vec<LaneId> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        if let Some(lanes) = l.lane_changes().expect("lane changes") {
            if !lanes.is_empty() {
                return lanes;
            }
        }
        l.read(0, Duration::from_millis(50), &mut |_| Ok(false))
            .expect("read while waiting for lanes");
    }
    panic!("no lanes assigned in 60 s");
}

/// Read lane 0 until `n` records came, as `(pos, next, value)`.
fn read_n<L: Ledger>(l: &mut L, n: usize, wait: Duration) -> Vec<(Position, Position, Vec<u8>)> {
    let mut got = Vec::new();
    for _ in 0..200 {
        if got.len() >= n {
            break;
        }
        l.read(
            n - got.len(),
            wait.max(Duration::from_millis(1)),
            &mut |i| {
                if let Intake::Record(r) = i {
                    assert_eq!(r.lane, LANE);
                    got.push((r.pos, r.next, r.value.unwrap_or_default().to_vec()));
                }
                Ok(true)
            },
        )
        .expect("read");
    }
    assert_eq!(got.len(), n, "records read");
    got
}

fn batch(id: u64, first: Position, end: Position, records: u32) -> Batch {
    Batch {
        id,
        lane: LANE,
        number: format!("conf-{LANE}-{first}-{end}"),
        first,
        end,
        members: None,
        generation: 0,
        attempt: 0,
        records,
        phase: Phase::Planned,
        planned_at: 1,
        submitted_at: None,
        file_id: None,
        remote_id: None,
        remote_state: None,
        output_file: None,
        error_file: None,
        failure: None,
        // Not the defaults: a ledger must keep them.
        first_submitted_at: Some(5),
        fault_retries: 1,
        submissions: 2,
        tokens: 0,
        estimated_cost: 0,
    }
}

fn open_lane<H: Harness>(h: &mut H) -> (H::L, super::LaneState) {
    let mut l = h.open();
    let lanes = first_lanes(&mut l);
    assert!(lanes.contains(&LANE), "lane 0 held: {lanes:?}");
    let state = l.restore(LANE).expect("restore");
    (l, state)
}

/// Every check, in order, on one harness.
pub fn run<H: Harness>(h: &mut H) {
    let wait = h.read_wait();

    // A fresh lane starts at its beginning with nothing open.
    let (mut l, st) = open_lane(h);
    assert_eq!((st.lane, st.batches.len()), (LANE, 0));
    let recs = read_n(&mut l, 3, wait);
    assert_eq!(recs[0].2, RECORDS[0].as_bytes());
    assert_eq!(recs[2].2, RECORDS[2].as_bytes());
    assert!(
        recs.windows(2).all(|w| w[0].1 <= w[1].0),
        "positions in order"
    );
    let start = st.watermark;
    assert_eq!(recs[0].0, start);

    // A committed turn: a batch of the first two records, a dead letter,
    // the watermark after them.
    let b = batch(1, recs[0].0, recs[1].1, 2);
    let mut turn = Turn::default();
    turn.batches.push(b.clone());
    turn.dead_letters.push(Some(b"k"), b"{\"dead\":true}\n");
    turn.lanes.insert(
        LANE,
        LaneMark {
            watermark: recs[1].1,
            next_seq: 2,
        },
    );
    l.commit(&turn).expect("commit");

    // Read again by position, range and members.
    let mut seen = Vec::new();
    l.records()
        .visit(&b, &mut |p, _, v| seen.push((p, v.to_vec())))
        .expect("visit");
    assert_eq!(
        seen,
        vec![
            (recs[0].0, recs[0].2.clone()),
            (recs[1].0, recs[1].2.clone())
        ]
    );
    let mut retry = b.clone();
    retry.members = Some(vec![recs[1].0]);
    let mut seen = Vec::new();
    l.records()
        .visit(&retry, &mut |p, _, v| seen.push((p, v.to_vec())))
        .expect("visit members");
    assert_eq!(seen, vec![(recs[1].0, recs[1].2.clone())]);

    // A crash: what was read after the commit is read again.
    drop(l);

    let (mut l, st) = open_lane(h);
    assert_eq!(st.watermark, recs[1].1, "the committed watermark survives");
    assert_eq!(st.batches, vec![b.clone()], "the committed batch survives");
    assert!(h.outputs().is_empty(), "nothing was emitted");
    assert_eq!(h.dead_letters(), vec![b"{\"dead\":true}".to_vec()]);
    // Reading resumes at the watermark.
    let again = read_n(&mut l, 1, wait);
    assert_eq!(again[0].0, recs[2].0);
    assert_eq!(again[0].2, RECORDS[2].as_bytes());

    // An emission: outputs, the batch emitted with a retry batch, meta.
    let mut done = b.clone();
    done.phase = Phase::Emitted;
    let mut retry = b
        .retry_of(&[recs[1].0], false, 2, "conf-r1".into(), 2)
        .expect("retry");
    retry.phase = Phase::Planned;
    let mut turn = Turn::default();
    turn.outputs.push(Some(b"k1"), b"{\"out\":1}\n");
    turn.outputs.push(None, b"{\"out\":2}\n");
    turn.emitted.push((done, Some(retry.clone())));
    turn.lanes.insert(
        LANE,
        LaneMark {
            watermark: recs[1].1,
            next_seq: 3,
        },
    );
    turn.meta
        .insert((LANE, crate::batch::SYNC_AHEAD), format!("{}:", recs[1].1));
    l.commit(&turn).expect("commit emission");
    drop(l);

    let (_l, st) = open_lane(h);
    assert_eq!(
        h.outputs(),
        vec![b"{\"out\":1}".to_vec(), b"{\"out\":2}".to_vec()],
        "outputs exactly once, in order"
    );
    assert_eq!(
        st.batches,
        vec![retry],
        "emitted batches are closed, the retry is open"
    );
    assert!(st.next_seq >= 3, "next sequence {}", st.next_seq);
    assert_eq!(
        st.meta.get(crate::batch::SYNC_AHEAD),
        Some(&format!("{}:", recs[1].1))
    );
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::ledger::mem::{MemBroker, MemLedger};

    struct Mem(MemBroker);

    impl Harness for Mem {
        type L = MemLedger;
        fn open(&mut self) -> MemLedger {
            MemLedger::new(self.0.clone(), 0, false)
        }
        fn outputs(&mut self) -> Vec<Vec<u8>> {
            self.0
                .lock()
                .outputs
                .iter()
                .map(|(_, l)| l.clone())
                .collect()
        }
        fn dead_letters(&mut self) -> Vec<Vec<u8>> {
            self.0
                .lock()
                .dead_letters
                .iter()
                .map(|(_, l)| l.clone())
                .collect()
        }
    }

    #[test]
    fn mem_ledger_conforms() {
        let records = RECORDS.iter().map(|r| r.as_bytes().to_vec()).collect();
        let broker = MemBroker::new(BTreeMap::from([(0, records)]));
        broker.assign(&[0]);
        run(&mut Mem(broker));
    }

    struct File {
        dir: tempfile::TempDir,
    }

    impl File {
        fn path(&self, name: &str) -> std::path::PathBuf {
            self.dir.path().join(name)
        }
        fn lines(&self, name: &str) -> Vec<Vec<u8>> {
            std::fs::read(self.path(name))
                .unwrap_or_default()
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(<[u8]>::to_vec)
                .collect()
        }
    }

    impl Harness for File {
        type L = crate::ledger::file::FileLedger;
        fn open(&mut self) -> Self::L {
            crate::ledger::file::FileLedger::open(
                &self.path("in.jsonl"),
                &self.path("out.jsonl"),
                &self.path("dlq.jsonl"),
                &self.path("state"),
            )
            .expect("open the file ledger")
        }
        fn outputs(&mut self) -> Vec<Vec<u8>> {
            self.lines("out.jsonl")
        }
        fn dead_letters(&mut self) -> Vec<Vec<u8>> {
            self.lines("dlq.jsonl")
        }
    }

    #[test]
    fn file_ledger_conforms() {
        let dir = tempfile::tempdir().unwrap();
        // A blank line between records: positions are byte offsets.
        let mut input = String::new();
        for (i, r) in RECORDS.iter().enumerate() {
            input.push_str(r);
            input.push('\n');
            if i == 1 {
                input.push('\n');
            }
        }
        std::fs::write(dir.path().join("in.jsonl"), input).unwrap();
        run(&mut File { dir });
    }
}
