//! The records between the committed watermark and the reading position,
//! and what may be emitted when (no IO here, so it is unit-tested alone).
//! One window per lane: the file, or one Kafka partition.
//!
//! - ORDERED: a record's output waits until every record before it is
//!   emitted; the watermark is the end of the last emitted record.
//! - ALLOW_UNORDERED: output is emitted as answers arrive. The watermark is
//!   still contiguous; the records emitted beyond it (`ahead`) are part of
//!   the durable state, committed with the watermark and the sink lengths in
//!   one transaction, so that a restart skips them instead of sending them
//!   again.
//!
//! Dead letters are records too: in ORDERED mode they are written in input
//! order, in ALLOW_UNORDERED mode at once.
//!
//! What is emitted is an item `T` handed to a [`Sink`]: output bytes for the
//! file sinks, (key, value) records for Kafka.

use std::collections::{BTreeSet, VecDeque};

/// Where the window puts what may be emitted now.
pub trait Sink<T> {
    fn output(&mut self, item: T);
    fn dead_letter(&mut self, item: T);
}

/// What became of a line when it was read.
pub enum Kind<T> {
    /// Blank line: nothing to emit, not a record.
    Blank,
    /// Emitted before a restart (it was in the committed `ahead` set).
    Skip,
    /// Unusable: this dead letter goes to the DLQ.
    Dead(T),
    /// A request was sent; its output comes with [`Window::complete`].
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
    record: bool,
    slot: Slot<T>,
}

/// Bytes emitted since the last commit, for the output and the DLQ files.
#[derive(Default)]
pub struct Emitted {
    pub out: Vec<u8>,
    pub dlq: Vec<u8>,
}

impl Emitted {
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.out.is_empty() && self.dlq.is_empty()
    }

    pub fn len(&self) -> usize {
        self.out.len() + self.dlq.len()
    }
}

impl Sink<Vec<u8>> for Emitted {
    fn output(&mut self, line: Vec<u8>) {
        self.out.extend_from_slice(&line);
    }

    fn dead_letter(&mut self, line: Vec<u8>) {
        self.dlq.extend_from_slice(&line);
    }
}

pub struct Window<T> {
    ordered: bool,
    entries: VecDeque<Entry<T>>,
    /// Sequence number of `entries[0]`.
    base: u64,
    watermark: u64,
    /// Records (not blank lines) in the window.
    records: usize,
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
            records: 0,
            ahead: BTreeSet::new(),
        }
    }

    pub fn watermark(&self) -> u64 {
        self.watermark
    }

    pub fn records(&self) -> usize {
        self.records
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    #[cfg(test)]
    pub fn ahead(&self) -> &BTreeSet<u64> {
        &self.ahead
    }

    /// Add the line `[pos, next)`; returns its sequence number.
    pub fn push(&mut self, pos: u64, next: u64, kind: Kind<T>, em: &mut impl Sink<T>) -> u64 {
        debug_assert!(pos >= self.watermark);
        let seq = self.base + self.entries.len() as u64;
        let (record, slot) = match kind {
            Kind::Blank => (false, Slot::Done),
            Kind::Skip => {
                self.ahead.insert(pos);
                (true, Slot::Done)
            }
            Kind::Dead(item) if self.ordered => (true, Slot::Dead(item)),
            Kind::Dead(item) => {
                em.dead_letter(item);
                self.ahead.insert(pos);
                (true, Slot::Done)
            }
            Kind::Request => (true, Slot::Pending),
        };
        self.records += usize::from(record);
        self.entries.push_back(Entry {
            pos,
            next,
            record,
            slot,
        });
        self.retire(em);
        seq
    }

    /// The answer for `seq`; emitted now or in its turn.
    pub fn complete(&mut self, seq: u64, item: T, em: &mut impl Sink<T>) {
        let idx = seq
            .checked_sub(self.base)
            .expect("answer for a retired record") as usize;
        let e = &mut self.entries[idx];
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
            if head.record {
                self.records -= 1;
                self.ahead.remove(&head.pos);
            }
            self.watermark = head.next;
            self.base += 1;
        }
    }

    /// The `ahead` set as stored: `{watermark}:{pos},{pos},...`.
    pub fn ahead_meta(&self) -> String {
        encode_ahead(self.watermark, &self.ahead)
    }
}

pub use runtime::ahead::{decode as decode_ahead, encode as encode_ahead};

#[cfg(test)]
mod tests {
    use super::*;

    fn s(em: &mut Emitted) -> (String, String) {
        let out = String::from_utf8(std::mem::take(&mut em.out)).unwrap();
        let dlq = String::from_utf8(std::mem::take(&mut em.dlq)).unwrap();
        (out, dlq)
    }

    #[test]
    fn ordered_emits_in_input_order() {
        let mut w: Window<Vec<u8>> = Window::new(true, 0);
        let mut em = Emitted::default();
        let a = w.push(0, 10, Kind::Request, &mut em);
        w.push(10, 11, Kind::Blank, &mut em);
        let b = w.push(11, 20, Kind::Request, &mut em);
        w.push(20, 30, Kind::Dead(b"D\n".to_vec()), &mut em);
        assert_eq!(w.records(), 3);
        w.complete(b, b"B\n".to_vec(), &mut em);
        assert!(em.is_empty());
        assert_eq!(w.watermark(), 0);
        w.complete(a, b"A\n".to_vec(), &mut em);
        assert_eq!(s(&mut em), ("A\nB\n".into(), "D\n".into()));
        assert_eq!(w.watermark(), 30);
        assert!(w.is_empty() && w.ahead().is_empty() && w.records() == 0);
    }

    #[test]
    fn unordered_emits_at_once_and_tracks_what_is_ahead() {
        let mut w: Window<Vec<u8>> = Window::new(false, 100);
        let mut em = Emitted::default();
        let a = w.push(100, 110, Kind::Request, &mut em);
        let b = w.push(110, 120, Kind::Request, &mut em);
        w.push(120, 130, Kind::Dead(b"D\n".to_vec()), &mut em);
        w.push(130, 140, Kind::Skip, &mut em);
        let c = w.push(140, 150, Kind::Request, &mut em);
        w.complete(c, b"C\n".to_vec(), &mut em);
        w.complete(b, b"B\n".to_vec(), &mut em);
        assert_eq!(s(&mut em), ("C\nB\n".into(), "D\n".into()));
        assert_eq!(w.watermark(), 100);
        assert_eq!(w.ahead_meta(), "100:110,120,130,140");
        w.complete(a, b"A\n".to_vec(), &mut em);
        assert_eq!(s(&mut em), ("A\n".into(), String::new()));
        assert_eq!(w.watermark(), 150);
        assert_eq!(w.ahead_meta(), "150:");
    }

    #[test]
    fn ahead_round_trips_and_is_tied_to_its_watermark() {
        let set: BTreeSet<u64> = [7, 9, 12].into();
        let m = encode_ahead(5, &set);
        assert_eq!(decode_ahead(&m, 5), Ok(Some(set)));
        assert_eq!(decode_ahead(&m, 6), Ok(None));
        assert_eq!(decode_ahead("5:", 5), Ok(Some(BTreeSet::new())));
        assert!(decode_ahead("5:3", 5).is_err());
        assert!(decode_ahead("x", 5).is_err());
    }
}
