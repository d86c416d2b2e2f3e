//! What one turn of the loop makes durable, as one unit.

use std::collections::BTreeMap;

use batch_core::{Batch, LaneId, Position};

/// Lines with an optional key each (Kafka keeps the input record's key),
/// in one buffer: a file ledger writes `bytes` as they are, a Kafka ledger
/// sends each line without its newline.
#[derive(Debug, Default, Clone)]
pub struct Lines {
    bytes: Vec<u8>,
    keys: Vec<u8>,
    /// Per line: end in `bytes` (after its newline), end in `keys`, and
    /// whether it has a key (an empty key is still a key).
    index: Vec<(usize, usize, bool)>,
}

impl Lines {
    /// Add one line; `line` ends with a newline.
    pub fn push(&mut self, key: Option<&[u8]>, line: &[u8]) {
        debug_assert!(line.ends_with(b"\n"));
        self.bytes.extend_from_slice(line);
        if let Some(k) = key {
            self.keys.extend_from_slice(k);
        }
        self.index
            .push((self.bytes.len(), self.keys.len(), key.is_some()));
    }

    /// Move every line of `other` to the end of these.
    pub fn append(&mut self, other: &mut Lines) {
        let (b, k) = (self.bytes.len(), self.keys.len());
        self.bytes.append(&mut other.bytes);
        self.keys.append(&mut other.keys);
        self.index.extend(
            other
                .index
                .drain(..)
                .map(|(e, ke, has)| (e + b, ke + k, has)),
        );
    }

    /// Every line, newlines included.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// `(key, line without its newline)` of every line.
    pub fn iter(&self) -> impl Iterator<Item = (Option<&[u8]>, &[u8])> {
        let mut at = (0, 0);
        self.index.iter().map(move |&(end, key_end, has_key)| {
            let line = &self.bytes[at.0..end - 1];
            let key = has_key.then(|| &self.keys[at.1..key_end]);
            at = (end, key_end);
            (key, line)
        })
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
        self.keys.clear();
        self.index.clear();
    }
}

/// A lane's new committed progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LaneMark {
    /// Every record before it is part of a durable batch or emitted.
    pub watermark: Position,
    /// Sequence number of the lane's next batch (see `batch_core::batch_id`).
    pub next_seq: u64,
}

/// Everything one turn produced that must become durable together.
#[derive(Debug, Default, Clone)]
pub struct Turn {
    pub outputs: Lines,
    pub dead_letters: Lines,
    /// Batch rows, in the order they were written (a later row of the same
    /// batch wins).
    pub batches: Vec<Batch>,
    /// Batches whose results are in `outputs`, each with the retry batch
    /// its emission inserts.
    pub emitted: Vec<(Batch, Option<Batch>)>,
    pub lanes: BTreeMap<LaneId, LaneMark>,
    /// Small per-lane values (e.g. sync mode's records emitted beyond the
    /// watermark), by name.
    pub meta: BTreeMap<(LaneId, &'static str), String>,
}

impl Turn {
    pub fn is_empty(&self) -> bool {
        self.outputs.is_empty()
            && self.dead_letters.is_empty()
            && self.batches.is_empty()
            && self.emitted.is_empty()
            && self.lanes.is_empty()
            && self.meta.is_empty()
    }

    pub fn clear(&mut self) {
        self.outputs.clear();
        self.dead_letters.clear();
        self.batches.clear();
        self.emitted.clear();
        self.lanes.clear();
        self.meta.clear();
    }

    /// Bytes of output and dead letters waiting.
    pub fn bytes(&self) -> usize {
        self.outputs.bytes().len() + self.dead_letters.bytes().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keep_their_keys() {
        let mut l = Lines::default();
        l.push(Some(b"k1"), b"{\"a\":1}\n");
        l.push(None, b"{\"b\":2}\n");
        l.push(Some(b""), b"{}\n");
        let all: Vec<_> = l.iter().collect();
        assert_eq!(
            all,
            vec![
                (Some(&b"k1"[..]), &b"{\"a\":1}"[..]),
                (None, &b"{\"b\":2}"[..]),
                (Some(&b""[..]), &b"{}"[..]),
            ]
        );
        assert_eq!(l.bytes(), b"{\"a\":1}\n{\"b\":2}\n{}\n");
        let mut more = Lines::default();
        more.push(Some(b"k4"), b"4\n");
        l.append(&mut more);
        assert!(more.is_empty());
        assert_eq!(l.iter().last(), Some((Some(&b"k4"[..]), &b"4"[..])));
        l.clear();
        assert!(l.is_empty() && l.bytes().is_empty());
    }
}
