//! The driver's own rules, with a minimal operator over a MemLedger: what
//! an operator puts in a turn is committed before its calls are released,
//! `records_in_total` counts every record whatever the ledger, a stop
//! request commits what is staged, answers of an older epoch are dropped.

use std::collections::BTreeMap;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::Duration;

use batch_core::{LaneId, Millis};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use runtime::ledger::mem::{MemBroker, MemLedger};
use runtime::ledger::{BatchRecords, LaneState, Record};
use runtime::{Driver, Env, Operator, Options, Summary, Turn};

/// Echoes every record as an output line, one call per record whose
/// answer marks it done; records are held until the call is answered.
#[derive(Default)]
struct Echo {
    epoch: u64,
    calls: Vec<(u64, u64)>,
    released: Vec<(u64, u64)>,
    answered: u64,
    /// Commits seen by `committed`, for the release-after-commit check.
    commits: u64,
    broker: Option<MemBroker>,
}

impl Operator for Echo {
    type Answer = u64;
    fn open(&mut self, _lanes: Vec<LaneState>, epoch: u64, _now: Millis) -> anyhow::Result<()> {
        self.epoch = epoch;
        self.calls.clear();
        self.commits = self.broker.as_ref().map_or(0, |b| b.lock().commits);
        Ok(())
    }
    fn wants_records(&self) -> bool {
        true
    }
    fn on_record(&mut self, r: Record<'_>, turn: &mut Turn, _now: Millis) -> anyhow::Result<()> {
        let mut line = r.value.unwrap_or_default().to_vec();
        line.push(b'\n');
        turn.outputs.push(r.key, &line);
        let mark = runtime::LaneMark {
            watermark: r.next,
            next_seq: 1,
        };
        turn.lanes.insert(r.lane, mark);
        // A call that depends on this turn: released after its commit.
        self.calls.push((self.epoch, r.pos));
        Ok(())
    }
    fn on_end(&mut self, _lane: LaneId, _turn: &mut Turn, _now: Millis) -> anyhow::Result<()> {
        Ok(())
    }
    fn on_answer(
        &mut self,
        _a: u64,
        _t: &mut Turn,
        _r: &mut dyn BatchRecords,
        _n: Millis,
    ) -> anyhow::Result<()> {
        self.answered += 1;
        Ok(())
    }
    fn tick(&mut self, _t: &mut Turn, _r: &mut dyn BatchRecords, _n: Millis) -> anyhow::Result<()> {
        Ok(())
    }
    fn committed(
        &mut self,
        _t: &mut Turn,
        _r: &mut dyn BatchRecords,
        _n: Millis,
    ) -> anyhow::Result<()> {
        self.commits += 1;
        // Called once per commit the ledger made, and only after it.
        let made = self.broker.as_ref().map_or(0, |b| b.lock().commits);
        assert_eq!(made, self.commits, "committed() without a commit");
        assert!(self.calls.len() <= 16, "a release holds one turn's calls");
        self.released.append(&mut self.calls);
        Ok(())
    }
    fn next_wake(&self) -> Option<Millis> {
        None
    }
    fn is_idle(&self) -> bool {
        self.calls.is_empty()
    }
    fn load(&self) -> (usize, usize) {
        (self.calls.len(), 0)
    }
    fn summarize(&self, s: &mut Summary) {
        s.ok += self.answered;
    }
    fn finish(&mut self, _cancel: bool) {}
}

struct TestEnv {
    rx: Receiver<(u64, u64)>,
    now: Millis,
    stop_after: Option<u32>,
    steps: u32,
}

impl Env<u64> for TestEnv {
    fn now(&self) -> Millis {
        self.now
    }
    fn try_answer(&mut self) -> Option<(u64, u64)> {
        self.rx.try_recv().ok()
    }
    fn wait_answer(&mut self, t: Duration) -> Option<(u64, u64)> {
        self.now += t.as_millis() as u64;
        self.steps += 1;
        self.rx.try_recv().ok()
    }
    fn stop_requested(&self) -> bool {
        self.stop_after.is_some_and(|n| self.steps >= n)
    }
}

fn broker(lanes: u32, n: usize) -> MemBroker {
    let lanes = (0..lanes)
        .map(|l| {
            (
                l,
                (0..n)
                    .map(|p| format!(r#"{{"l":{l},"p":{p}}}"#).into_bytes())
                    .collect(),
            )
        })
        .collect::<BTreeMap<_, _>>();
    let b = MemBroker::new(lanes);
    b.assign(&[0]);
    b
}

fn driver(b: &MemBroker, burst: usize) -> (Driver<MemLedger, Echo, TestEnv>, Sender<(u64, u64)>) {
    let (tx, rx) = channel();
    let env = TestEnv {
        rx,
        now: 0,
        stop_after: None,
        steps: 0,
    };
    let opts = Options {
        read_burst: burst,
        idle_wait: Duration::from_millis(10),
        read_wait: Duration::ZERO,
        cancel_inflight: false,
        progress: false,
    };
    let op = Echo {
        broker: Some(b.clone()),
        ..Echo::default()
    };
    (
        Driver::new(MemLedger::new(b.clone(), 0, true), op, env, opts),
        tx,
    )
}

#[test]
fn calls_are_released_only_after_their_turn_commits_and_every_record_is_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let b = broker(3, 50);
    let (summary, released) = metrics::with_local_recorder(&recorder, || {
        let (mut d, _tx) = driver(&b, 16);
        let s = d.run().unwrap();
        (s, d.operator.released.len())
    });
    assert_eq!(released, 150, "every call released");
    assert_eq!(summary.records_read, 150);
    let counted: u64 = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(k, ..)| k.key().name() == "records_in_total")
        .map(|(.., v)| match v {
            DebugValue::Counter(c) => c,
            other => panic!("records_in_total is a counter: {other:?}"),
        })
        .sum();
    assert_eq!(counted, 150, "records_in_total");
    let d = b.lock();
    assert_eq!(d.outputs.len(), 150, "every record committed once");
    let lanes: Vec<_> = d.lanes.values().map(|l| l.mark.watermark).collect();
    assert_eq!(lanes, vec![50, 50, 50]);
}

#[test]
fn a_stop_commits_what_is_staged_and_a_restart_resumes_after_it() {
    let b = broker(1, 30);
    let (mut d, _tx) = driver(&b, 7);
    assert!(d.step().unwrap(), "one turn");
    assert_eq!(b.lock().outputs.len(), 7);
    d.env.stop_after = Some(0);
    assert!(!d.step().unwrap(), "a stop ends the run");
    assert!(d.summary().interrupted);
    drop(d);
    let (mut d, _tx) = driver(&b, 7);
    d.run().unwrap();
    let outs = &b.lock().outputs;
    assert_eq!(
        outs.len(),
        30,
        "resumed at the committed watermark: nothing twice"
    );
    assert_eq!(outs.last().unwrap().1, br#"{"l":0,"p":29}"#.to_vec());
}

#[test]
fn answers_of_an_older_epoch_are_dropped() {
    let b = broker(1, 100);
    let (mut d, tx) = driver(&b, 1);
    assert!(d.step().unwrap()); // the first turn opens the lanes: epoch 1
    tx.send((0, 1)).unwrap();
    tx.send((1, 2)).unwrap();
    assert!(d.step().unwrap());
    assert_eq!(d.summary().ok, 1, "the epoch-0 answer is dropped");
    b.assign(&[0]); // the lanes move: the next turn rebuilds, epoch 2
    assert!(d.step().unwrap());
    tx.send((1, 3)).unwrap();
    tx.send((2, 4)).unwrap();
    assert!(d.step().unwrap());
    assert_eq!(
        d.summary().ok,
        2,
        "answers asked before the rebuild are dropped"
    );
}
