//! One lane's records between the committed watermark and the reading
//! position, and what may be emitted when.
//!
//! - ORDERED: a record's output waits until every record before it is
//!   emitted; the watermark is the end of the last emitted record.
//! - ALLOW_UNORDERED: output is emitted as answers arrive. The watermark is
//!   still contiguous; the records emitted beyond it (`ahead`) are part of
//!   the durable state, committed with the watermark, so that a restart
//!   skips them instead of sending them again.
//!
//! Dead letters are records too: in ORDERED mode they are written in input
//! order, in ALLOW_UNORDERED mode at once.
//!
//! Records need not be adjacent (`[pos, next)` may be followed by a gap:
//! blank lines are never handed over); the watermark is the `next` of the
//! last record of the contiguous emitted prefix, in read order.

use std::collections::{BTreeSet, VecDeque};

/// Where the window puts what may be emitted now.
pub trait Sink<T> {
    fn output(&mut self, item: T);
    fn dead_letter(&mut self, item: T);
}

/// What became of a record when it was read.
pub enum Kind<T> {
    /// Emitted before a restart (it was in the committed `ahead` set).
    Skip,
    /// Unusable: this dead letter goes to the DLQ.
    Dead(T),
    /// A request is sent; its output comes with [`Window::complete`].
    Request,
}

enum Slot<T> {
    Pending,
    /// Output waiting for its turn (ORDERED).
    Ready(T),
    /// Dead letter waiting for its turn (ORDERED).
    Dead(T),
    /// Emitted, or nothing to emit.
    Done,
}

struct Entry<T> {
    pos: u64,
    next: u64,
    slot: Slot<T>,
}

pub struct Window<T> {
    ordered: bool,
    entries: VecDeque<Entry<T>>,
    /// Sequence number of `entries[0]`.
    base: u64,
    watermark: u64,
    /// Positions of records emitted beyond the watermark.
    ahead: BTreeSet<u64>,
}

impl<T> Window<T> {
    pub fn new(ordered: bool, watermark: u64) -> Self {
        Self {
            ordered,
            entries: VecDeque::new(),
            base: 0,
            watermark,
            ahead: BTreeSet::new(),
        }
    }

    pub fn watermark(&self) -> u64 {
        self.watermark
    }

    /// Records in the window (read, not yet behind the watermark).
    pub fn records(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Positions of the records emitted beyond the watermark.
    pub fn ahead(&self) -> &BTreeSet<u64> {
        &self.ahead
    }

    /// The sequence number the next record pushed gets.
    pub fn next_seq(&self) -> u64 {
        self.base + self.entries.len() as u64
    }

    /// Add the record `[pos, next)`; returns its sequence number.
    pub fn push(&mut self, pos: u64, next: u64, kind: Kind<T>, em: &mut impl Sink<T>) -> u64 {
        debug_assert!(pos >= self.watermark);
        let seq = self.next_seq();
        let slot = match kind {
            Kind::Skip => {
                self.ahead.insert(pos);
                Slot::Done
            }
            Kind::Dead(item) if self.ordered => Slot::Dead(item),
            Kind::Dead(item) => {
                em.dead_letter(item);
                self.ahead.insert(pos);
                Slot::Done
            }
            Kind::Request => Slot::Pending,
        };
        self.entries.push_back(Entry { pos, next, slot });
        self.retire(em);
        seq
    }

    /// The answer for `seq`; emitted now or in its turn.
    pub fn complete(&mut self, seq: u64, item: T, em: &mut impl Sink<T>) {
        let Some(e) = seq
            .checked_sub(self.base)
            .and_then(|i| self.entries.get_mut(i as usize))
        else {
            debug_assert!(false, "answer for a record not in the window");
            return;
        };
        debug_assert!(matches!(e.slot, Slot::Pending));
        if self.ordered {
            e.slot = Slot::Ready(item);
        } else {
            em.output(item);
            self.ahead.insert(e.pos);
            e.slot = Slot::Done;
        }
        self.retire(em);
    }

    /// Move the watermark over the finished records at the head.
    fn retire(&mut self, em: &mut impl Sink<T>) {
        while let Some(head) = self.entries.front() {
            if matches!(head.slot, Slot::Pending) {
                break;
            }
            let head = self.entries.pop_front().expect("front exists");
            match head.slot {
                Slot::Ready(item) => em.output(item),
                Slot::Dead(item) => em.dead_letter(item),
                Slot::Done | Slot::Pending => {}
            }
            self.ahead.remove(&head.pos);
            self.watermark = head.next;
            self.base += 1;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Bytes emitted, for the output and the DLQ.
    #[derive(Default)]
    pub struct Emitted {
        pub out: Vec<u8>,
        pub dlq: Vec<u8>,
    }

    impl Emitted {
        pub fn take(&mut self) -> (String, String) {
            let out = String::from_utf8(std::mem::take(&mut self.out)).unwrap();
            let dlq = String::from_utf8(std::mem::take(&mut self.dlq)).unwrap();
            (out, dlq)
        }
    }

    impl Sink<&'static str> for Emitted {
        fn output(&mut self, line: &'static str) {
            self.out.extend_from_slice(line.as_bytes());
        }

        fn dead_letter(&mut self, line: &'static str) {
            self.dlq.extend_from_slice(line.as_bytes());
        }
    }

    #[test]
    fn ordered_emits_in_input_order() {
        let mut w = Window::new(true, 0);
        let mut em = Emitted::default();
        let a = w.push(0, 10, Kind::Request, &mut em);
        // A gap (a blank line, never handed over) before the next record.
        let b = w.push(11, 20, Kind::Request, &mut em);
        w.push(20, 30, Kind::Dead("D\n"), &mut em);
        assert_eq!(w.records(), 3);
        w.complete(b, "B\n", &mut em);
        assert!(em.out.is_empty() && em.dlq.is_empty());
        assert_eq!(w.watermark(), 0);
        w.complete(a, "A\n", &mut em);
        assert_eq!(em.take(), ("A\nB\n".into(), "D\n".into()));
        assert_eq!(w.watermark(), 30);
        assert!(w.is_empty() && w.ahead().is_empty() && w.records() == 0);
    }

    #[test]
    fn the_watermark_is_the_end_of_the_last_emitted_record() {
        let mut w = Window::new(true, 0);
        let mut em = Emitted::default();
        let a = w.push(0, 10, Kind::Request, &mut em);
        w.push(15, 20, Kind::Request, &mut em);
        w.complete(a, "A\n", &mut em);
        // Not 15: the gap after a record is consumed with the next one.
        assert_eq!(w.watermark(), 10);
    }

    #[test]
    fn unordered_emits_at_once_and_tracks_what_is_ahead() {
        let mut w = Window::new(false, 100);
        let mut em = Emitted::default();
        let a = w.push(100, 110, Kind::Request, &mut em);
        let b = w.push(110, 120, Kind::Request, &mut em);
        w.push(120, 130, Kind::Dead("D\n"), &mut em);
        w.push(130, 140, Kind::Skip, &mut em);
        let c = w.push(140, 150, Kind::Request, &mut em);
        w.complete(c, "C\n", &mut em);
        w.complete(b, "B\n", &mut em);
        assert_eq!(em.take(), ("C\nB\n".into(), "D\n".into()));
        assert_eq!(w.watermark(), 100);
        assert_eq!(w.ahead(), &BTreeSet::from([110, 120, 130, 140]));
        w.complete(a, "A\n", &mut em);
        assert_eq!(em.take(), ("A\n".into(), String::new()));
        assert_eq!(w.watermark(), 150);
        assert!(w.ahead().is_empty());
    }
}
