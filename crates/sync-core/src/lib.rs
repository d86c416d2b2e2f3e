//! The sans-IO core of synchronous mode (`ml.batch.enabled = false`): a
//! [`Window`] per lane (a file, or one Kafka partition: ORDERED is per
//! lane) and the admission rule shared by every lane, i.e. how many
//! records may be read and how many requests in flight. No IO, no clock:
//! the operator around it (`runtime::sync`) parses records, sends the
//! requests and commits what the windows emit.
//!
//! Admission: a record read goes into its lane's window when fewer than
//! `max_concurrent` requests are in flight and the windows together hold
//! fewer than `window_cap` records; otherwise it waits in a bounded stash
//! (a Kafka consumer is paused while the stash is full, and resumed only
//! once it is half empty: pausing drops librdkafka's prefetched records,
//! so it must not flap with every record). A record a restored `ahead` set
//! lists was emitted before a restart: it is skipped, no request is sent.

pub mod window;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

pub use window::{Kind, Sink, Window};

pub type LaneId = u32;

/// How much may be read and in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Requests in flight at most (`ml.predict.max-concurrent-operations`).
    pub max_concurrent: usize,
    /// Records read but not yet behind their lane's watermark, over all
    /// lanes. Bounds the `ahead` sets when one record is stuck in retries.
    pub window_cap: usize,
    /// Records read ahead of the windows at most; 0: read only what can
    /// be admitted at once (a file is read on demand).
    pub stash_cap: usize,
}

/// ALLOW_UNORDERED windows are this many times max-concurrent-operations.
pub const UNORDERED_WINDOW_FACTOR: usize = 16;

/// Records read ahead of the windows (a Kafka source), at least.
pub const STASH_RECORDS: usize = 2048;

impl Limits {
    /// The limits of a mode: ORDERED holds no more records than requests
    /// can be in flight; `stash`: the source is a consumer that fetches
    /// ahead (Kafka).
    pub fn new(max_concurrent: usize, ordered: bool, stash: bool) -> Self {
        let max_concurrent = max_concurrent.max(1);
        let window_cap = if ordered {
            max_concurrent
        } else {
            max_concurrent * UNORDERED_WINDOW_FACTOR
        };
        Self {
            max_concurrent,
            window_cap,
            stash_cap: if stash {
                STASH_RECORDS.max(2 * window_cap)
            } else {
                0
            },
        }
    }
}

/// What became of an admitted record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admitted {
    /// Its lane is not held (read just before the lane moved): ignored.
    NoLane,
    /// Emitted before a restart: nothing to do.
    Skipped,
    /// A dead letter, in its window.
    Dead,
    /// Send its request, tagged with this sequence number.
    Request(u64),
}

struct Lane<T> {
    window: Window<T>,
    /// Emitted beyond the watermark by an earlier run: skipped when read.
    restored: BTreeSet<u64>,
}

/// A lane's progress: what a commit makes durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub lane: LaneId,
    pub watermark: u64,
    /// Emitted beyond the watermark: by this run, or by an earlier one
    /// and not read again yet (a commit must not forget those).
    pub ahead: BTreeSet<u64>,
}

/// Every lane's window, the stash of records `R` not yet admitted, and the
/// count of requests in flight.
pub struct SyncCore<T, R> {
    ordered: bool,
    limits: Limits,
    lanes: BTreeMap<LaneId, Lane<T>>,
    stash: VecDeque<R>,
    /// Records in the windows, over all lanes.
    held: usize,
    inflight: usize,
    /// The stash filled up; records are wanted again once it is half
    /// empty.
    paused: bool,
}

impl<T, R> SyncCore<T, R> {
    pub fn new(ordered: bool, limits: Limits) -> Self {
        Self {
            ordered,
            limits,
            lanes: BTreeMap::new(),
            stash: VecDeque::new(),
            held: 0,
            inflight: 0,
            paused: false,
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Start again with no lanes (a rebuild): requests in flight no
    /// longer count, the stash is dropped.
    pub fn reset(&mut self) {
        self.lanes.clear();
        self.stash.clear();
        self.held = 0;
        self.inflight = 0;
        self.paused = false;
    }

    /// Hold a lane from its committed watermark and the records an
    /// earlier run emitted beyond it.
    pub fn open_lane(&mut self, lane: LaneId, watermark: u64, restored: BTreeSet<u64>) {
        let window = Window::new(self.ordered, watermark);
        if let Some(old) = self.lanes.insert(lane, Lane { window, restored }) {
            self.held -= old.window.records();
        }
    }

    /// A record may go into a window (and its request out) now.
    pub fn can_admit(&self) -> bool {
        self.held < self.limits.window_cap && self.inflight < self.limits.max_concurrent
    }

    /// Whether the source should hand over more records.
    pub fn wants_records(&self) -> bool {
        if self.limits.stash_cap == 0 {
            self.stash.is_empty() && self.can_admit()
        } else {
            !self.paused
        }
    }

    /// A record read: `Some` to admit it now, or `None` when it waits in
    /// the stash (taken back with [`next_admissible`](Self::next_admissible)).
    /// The stash takes what it is given even past its cap (a consumer
    /// may deliver a record it fetched before it was paused).
    pub fn offer(&mut self, record: R) -> Option<R> {
        if self.stash.is_empty() && self.can_admit() {
            return Some(record);
        }
        self.stash.push_back(record);
        if self.stash.len() >= self.limits.stash_cap {
            self.paused = true;
        }
        None
    }

    /// The next stashed record that may be admitted now.
    pub fn next_admissible(&mut self) -> Option<R> {
        if !self.can_admit() {
            return None;
        }
        let r = self.stash.pop_front()?;
        if self.stash.len() <= self.limits.stash_cap / 2 {
            self.paused = false;
        }
        Some(r)
    }

    /// Drop the stash (a stop: those records are read again next time).
    pub fn clear_stash(&mut self) {
        self.stash.clear();
        self.paused = false;
    }

    pub fn stashed(&self) -> usize {
        self.stash.len()
    }

    /// Put the record `[pos, next)` of `lane` into its window: skipped if
    /// an earlier run emitted it, else what `kind` says it is.
    pub fn admit(
        &mut self,
        lane: LaneId,
        pos: u64,
        next: u64,
        kind: impl FnOnce() -> Kind<T>,
        em: &mut impl Sink<T>,
    ) -> Admitted {
        let Some(l) = self.lanes.get_mut(&lane) else {
            return Admitted::NoLane;
        };
        let before = l.window.records();
        let kind = if l.restored.remove(&pos) {
            Kind::Skip
        } else {
            kind()
        };
        let admitted = match &kind {
            Kind::Skip => Admitted::Skipped,
            Kind::Dead(_) => Admitted::Dead,
            Kind::Request => Admitted::Request(l.window.next_seq()),
        };
        l.window.push(pos, next, kind, em);
        // A push may retire records too.
        self.held = self.held + l.window.records() - before;
        self.inflight += usize::from(matches!(admitted, Admitted::Request(_)));
        admitted
    }

    /// The answer to request `seq` of `lane`: `Some(item)` to emit (now
    /// or in its turn), `None` when the request was dropped (a stop: the
    /// record stays in its window and is sent again on the next run).
    pub fn answered(&mut self, lane: LaneId, seq: u64, item: Option<T>, em: &mut impl Sink<T>) {
        self.inflight = self.inflight.saturating_sub(1);
        let (Some(item), Some(l)) = (item, self.lanes.get_mut(&lane)) else {
            return;
        };
        let before = l.window.records();
        l.window.complete(seq, item, em);
        self.held = self.held + l.window.records() - before;
    }

    pub fn inflight(&self) -> usize {
        self.inflight
    }

    /// Records in the windows, over all lanes.
    pub fn held(&self) -> usize {
        self.held
    }

    /// No request out, nothing stashed, every window emitted.
    pub fn is_idle(&self) -> bool {
        self.inflight == 0 && self.stash.is_empty() && self.held == 0
    }

    /// Every lane's watermark and records ahead of it.
    pub fn marks(&self) -> impl Iterator<Item = Mark> + '_ {
        self.lanes.iter().map(|(&lane, l)| Mark {
            lane,
            watermark: l.window.watermark(),
            ahead: l.window.ahead().union(&l.restored).copied().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::window::tests::Emitted;
    use super::*;

    fn core(ordered: bool, stash: bool) -> SyncCore<&'static str, u64> {
        SyncCore::new(ordered, Limits::new(2, ordered, stash))
    }

    #[test]
    fn limits_follow_the_mode() {
        assert_eq!(
            Limits::new(4, true, false),
            Limits {
                max_concurrent: 4,
                window_cap: 4,
                stash_cap: 0
            }
        );
        let u = Limits::new(200, false, true);
        assert_eq!((u.window_cap, u.stash_cap), (3200, 6400));
        assert_eq!(Limits::new(0, true, false).max_concurrent, 1);
    }

    #[test]
    fn a_file_is_read_only_while_a_request_can_go_out() {
        let mut c = core(false, false);
        let mut em = Emitted::default();
        c.open_lane(0, 0, BTreeSet::new());
        for pos in 0..2 {
            assert!(c.wants_records());
            assert_eq!(c.offer(pos), Some(pos));
            let a = c.admit(0, pos, pos + 1, || Kind::Request, &mut em);
            assert_eq!(a, Admitted::Request(pos));
        }
        assert!(!c.wants_records(), "two requests in flight");
        c.answered(0, 1, Some("B\n"), &mut em);
        assert!(c.wants_records());
        assert_eq!(c.held(), 2, "B is emitted ahead of A");
        c.answered(0, 0, Some("A\n"), &mut em);
        assert!(c.is_idle());
        assert_eq!(em.take().0, "B\nA\n");
    }

    #[test]
    fn a_consumer_stashes_and_pauses_with_hysteresis() {
        let mut c = core(true, true);
        let cap = c.limits().stash_cap as u64;
        let mut em = Emitted::default();
        c.open_lane(0, 0, BTreeSet::new());
        let mut next = 0;
        while c.wants_records() {
            if let Some(p) = c.offer(next) {
                c.admit(0, p, p + 1, || Kind::Request, &mut em);
            }
            next += 1;
        }
        assert_eq!(next, cap + 2, "two admitted, the stash full");
        assert_eq!(c.stashed() as u64, cap);
        // Answers free room: the stash drains, the source resumes only
        // once it is half empty.
        let mut seq = 0;
        while c.stashed() as u64 > cap / 2 {
            assert!(!c.wants_records());
            c.answered(0, seq, Some("x\n"), &mut em);
            seq += 1;
            while let Some(p) = c.next_admissible() {
                c.admit(0, p, p + 1, || Kind::Request, &mut em);
            }
        }
        assert!(c.wants_records());
    }

    #[test]
    fn restored_records_are_skipped_and_stay_ahead_until_the_watermark_passes() {
        let mut c = core(false, false);
        let mut em = Emitted::default();
        c.open_lane(3, 10, BTreeSet::from([11, 12]));
        let a = c.admit(3, 10, 11, || Kind::Request, &mut em);
        // Not read again yet: still ahead.
        assert_eq!(c.marks().next().unwrap().ahead, BTreeSet::from([11, 12]));
        let skipped = c.admit(3, 11, 12, || unreachable!("not parsed"), &mut em);
        assert_eq!(skipped, Admitted::Skipped);
        let m: Vec<_> = c.marks().collect();
        assert_eq!((m[0].watermark, m[0].ahead.len()), (10, 2));
        let Admitted::Request(a) = a else { panic!() };
        c.answered(3, a, Some("A\n"), &mut em);
        let m: Vec<_> = c.marks().collect();
        assert_eq!(
            (m[0].lane, m[0].watermark, &m[0].ahead),
            (3, 12, &BTreeSet::from([12]))
        );
        assert_eq!(
            c.admit(9, 0, 1, || Kind::Request, &mut em),
            Admitted::NoLane
        );
    }

    #[test]
    fn a_dropped_request_keeps_its_record_in_the_window() {
        let mut c = core(true, false);
        let mut em = Emitted::default();
        c.open_lane(0, 0, BTreeSet::new());
        c.admit(0, 0, 1, || Kind::Request, &mut em);
        c.admit(0, 1, 2, || Kind::Dead("D\n"), &mut em);
        c.answered(0, 0, None, &mut em);
        assert_eq!((c.inflight(), c.held()), (0, 2));
        assert!(!c.is_idle());
        assert_eq!(c.marks().next().unwrap().watermark, 0);
        c.reset();
        assert!(c.is_idle() && c.marks().next().is_none());
    }
}
