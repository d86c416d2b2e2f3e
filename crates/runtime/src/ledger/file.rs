//! A file pipeline's ledger: the input file is the record store (a lane's
//! records are read again by byte range), the output and dead-letter
//! files are append-only sinks, and the state is SQLite. A turn is
//! committed as: dead letters and output appended and fsynced, then one
//! SQLite transaction (batches, watermark with the fingerprint of the
//! consumed prefix, emissions, sink lengths). On start the sinks are cut
//! back to their committed lengths, so a crash between the two steps
//! writes nothing twice.

use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use batch_core::{seq_of, Batch, LaneId, Position};
use state_store::Store;

use super::sink::FileSink;
use super::source::{Checkpoints, FileRecords, FileSource};
use super::{BatchRecords, CommitError, Intake, LaneState, Ledger, Record, RecordKind};
use crate::{failpoint, Turn};

/// A file is one lane.
pub const LANE: LaneId = 0;

/// How much of a handoff file its writer (the submitter) committed.
pub type CommittedLength = Box<dyn FnMut() -> anyhow::Result<u64> + Send>;

/// Decoupled mode's poller reads a handoff file as its source, as far as
/// the submitter committed it and never further (what lies beyond may be
/// cut back by the submitter's restart), and never ends by itself.
struct Tail {
    committed: CommittedLength,
    /// The committed length last seen.
    end: u64,
    /// Everything committed so far was read.
    at_end: bool,
}

/// The committed length of a submitter's handoff file, read from its
/// state in `state_dir` (0 until the submitter created it).
pub fn submitter_committed(state_dir: PathBuf) -> CommittedLength {
    let mut store: Option<Store> = None;
    Box::new(move || {
        let s = match &mut store {
            Some(s) => s,
            None if !state_dir.join("state.db").exists() => return Ok(0),
            None => store.insert(Store::open(&state_dir)?),
        };
        Ok(s.load()?.sinks.get("output").copied().unwrap_or(0))
    })
}

pub struct FileLedger {
    store: Store,
    source: FileSource,
    reader: FileRecords,
    output: FileSink,
    dlq: FileSink,
    paths: (PathBuf, PathBuf),
    announced: bool,
    eof: bool,
    /// The line boundaries from the committed watermark on, where the next
    /// watermark can be: the fingerprint of the consumed prefix is taken
    /// there. Bounded by the records read and not yet behind a watermark.
    recent: VecDeque<Checkpoints>,
    tail: Option<Tail>,
}

impl FileLedger {
    /// Open the pipeline's state in `state_dir`, its sinks (cut back to
    /// their committed lengths) and its input, verifying that the part
    /// already consumed did not change.
    pub fn open(input: &Path, output: &Path, dlq: &Path, state_dir: &Path) -> anyhow::Result<Self> {
        Self::open_with(input, input, output, dlq, state_dir, None)
    }

    /// Decoupled mode's poller: its source is the submitter's `handoff`
    /// file (read up to `committed`, waited for while missing or short),
    /// batches' records are read again from `records` (the submitter's
    /// input), its own state is in `state_dir`.
    pub fn open_poller(
        handoff: &Path,
        committed: CommittedLength,
        records: &Path,
        output: &Path,
        dlq: &Path,
        state_dir: &Path,
    ) -> anyhow::Result<Self> {
        if let Some(parent) = handoff.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        // An empty file the submitter will take as its own (it never wrote it).
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(handoff)
            .with_context(|| format!("cannot open the handoff file {}", handoff.display()))?;
        let tail = Tail {
            committed,
            end: 0,
            at_end: false,
        };
        Self::open_with(handoff, records, output, dlq, state_dir, Some(tail))
    }

    fn open_with(
        input: &Path,
        records: &Path,
        output: &Path,
        dlq: &Path,
        state_dir: &Path,
        tail: Option<Tail>,
    ) -> anyhow::Result<Self> {
        let store = Store::open(state_dir)?;
        let snapshot = store.load()?;
        let out = FileSink::open(output, snapshot.sinks.get("output").copied())?;
        let dead = FileSink::open(dlq, snapshot.sinks.get("dlq").copied())?;
        let file = File::open(input)
            .with_context(|| format!("cannot open source.path {}", input.display()))?;
        let watermark = watermark_of(&snapshot.lanes);
        let source = FileSource::open(input, watermark)
            .with_context(|| format!("cannot read source.path {}", input.display()))?;
        check_source(&store, &source, &file, input, watermark)?;
        let file = if records == input {
            file
        } else {
            File::open(records)
                .with_context(|| format!("cannot open source.path {}", records.display()))?
        };
        let mut ledger = Self {
            recent: VecDeque::from([source.checkpoints()]),
            tail,
            store,
            source,
            reader: FileRecords(file),
            output: out,
            dlq: dead,
            paths: (output.to_owned(), dlq.to_owned()),
            announced: false,
            eof: false,
        };
        // Record the sinks' lengths so a later start knows this pipeline
        // owns them, even if it writes nothing.
        let sinks = [("output", ledger.output.len()), ("dlq", ledger.dlq.len())];
        ledger.store.set_sinks(&sinks)?;
        Ok(ledger)
    }

    /// The fingerprint of the source bytes before `end`, a line boundary
    /// read since the last commit.
    fn fingerprint(&self, end: Position) -> Option<String> {
        let fp = self.recent.iter().rev().find_map(|c| c.fingerprint(end));
        debug_assert!(fp.is_some(), "watermark {end} is not a line boundary read");
        fp
    }

    fn write(&mut self, turn: &Turn) -> anyhow::Result<()> {
        if !turn.dead_letters.is_empty() {
            self.dlq.append(turn.dead_letters.bytes())?;
            self.dlq.sync()?;
        }
        if !turn.lanes.is_empty() {
            failpoint::hit("after-cut");
        }
        if !turn.outputs.is_empty() || !turn.emitted.is_empty() {
            self.output.append(turn.outputs.bytes())?;
            self.output.sync()?;
            // Batch mode emits batches; synchronous mode lines alone.
            failpoint::hit(if turn.emitted.is_empty() {
                "sync-before-commit"
            } else {
                "before-emit-commit"
            });
        }
        let now = crate::now_ms();
        let marks: Vec<_> = turn
            .lanes
            .iter()
            .map(|(&lane, m)| (lane, m.watermark, self.fingerprint(m.watermark)))
            .collect();
        let tx = self.store.begin()?;
        // A later row of a batch wins: persists, then emissions.
        for b in &turn.batches {
            tx.persist(b)?;
        }
        for (lane, watermark, fp) in &marks {
            tx.set_watermark(*lane, *watermark, fp.as_deref())?;
        }
        for (batch, retry) in &turn.emitted {
            tx.emitted(batch, now, retry.as_ref())?;
        }
        for ((lane, name), value) in &turn.meta {
            debug_assert_eq!(*lane, LANE);
            tx.set_meta(&[(name, value)])?;
        }
        tx.set_sinks(&[("output", self.output.len()), ("dlq", self.dlq.len())])?;
        tx.commit()?;
        if let Some(&(_, watermark, _)) = marks.last() {
            while self.recent.len() > 1 && self.recent[1].end() <= watermark {
                self.recent.pop_front();
            }
        }
        Ok(())
    }
}

impl FileLedger {
    /// Whether the next line is committed by the handoff's writer (always
    /// true when the input is not a handoff file).
    fn within_committed(&mut self) -> anyhow::Result<bool> {
        let Some(t) = &mut self.tail else {
            return Ok(true);
        };
        if self.source.pos() >= t.end {
            // What was read ahead past the committed length may change.
            self.source.discard_buffer()?;
            t.end = (t.committed)()?;
            if self.source.pos() >= t.end {
                t.at_end = true;
                return Ok(false);
            }
        }
        t.at_end = false;
        Ok(true)
    }
}

fn watermark_of(lanes: &[(LaneId, Position)]) -> Position {
    lanes
        .iter()
        .find(|(l, _)| *l == LANE)
        .map_or(0, |(_, w)| *w)
}

/// Refuse an input that no longer starts with what was consumed.
fn check_source(
    store: &Store,
    source: &FileSource,
    file: &File,
    path: &Path,
    watermark: u64,
) -> anyhow::Result<()> {
    if watermark == 0 {
        return Ok(());
    }
    let len = file.metadata()?.len();
    if len < watermark {
        bail!(
            "source.path {} holds {len} bytes but this pipeline already consumed {watermark}: the input was truncated or replaced; \
             restore it, or start a new pipeline (another pipeline.name or ml.batch.local.dir)",
            path.display()
        );
    }
    let stored = store.lane_fingerprint(LANE)?;
    let now = source.checkpoints().fingerprint(watermark);
    if stored.is_some() && stored != now {
        bail!(
            "source.path {} changed before the position this pipeline already consumed ({watermark} bytes): \
             it was edited or replaced; only appending is allowed while a pipeline resumes",
            path.display()
        );
    }
    Ok(())
}

impl Ledger for FileLedger {
    fn lane_changes(&mut self) -> anyhow::Result<Option<Vec<LaneId>>> {
        Ok((!std::mem::replace(&mut self.announced, true)).then(|| vec![LANE]))
    }

    fn lanes(&self) -> Vec<LaneId> {
        vec![LANE]
    }

    fn restore(&mut self, lane: LaneId) -> anyhow::Result<LaneState> {
        debug_assert_eq!(lane, LANE);
        let snapshot = self.store.load()?;
        let mut meta = std::collections::BTreeMap::new();
        use crate::batch::handoff::{END_AT, END_SEEN};
        for key in [
            crate::batch::SYNC_AHEAD,
            crate::batch::SPEND,
            END_AT,
            END_SEEN,
        ] {
            if let Some(value) = self.store.meta(key)? {
                meta.insert(key.to_owned(), value);
            }
        }
        Ok(LaneState {
            lane,
            watermark: watermark_of(&snapshot.lanes),
            next_seq: seq_of(snapshot.next_id),
            batches: snapshot.open_batches,
            meta,
        })
    }

    fn read(
        &mut self,
        max: usize,
        _wait: Duration,
        f: &mut dyn FnMut(Intake<'_>) -> anyhow::Result<bool>,
    ) -> anyhow::Result<usize> {
        let mut read = 0;
        while read < max {
            if !self.within_committed()? {
                break;
            }
            let Some(line) = self.source.next_line()? else {
                if let Some(t) = &self.tail {
                    bail!(
                        "the handoff file ends at {} bytes, before the {} its submitter committed: it was truncated or replaced",
                        self.source.pos(),
                        t.end
                    );
                }
                if !std::mem::replace(&mut self.eof, true) {
                    f(Intake::End(LANE))?;
                }
                break;
            };
            if let Some(t) = &self.tail {
                if line.next > t.end {
                    bail!(
                        "the handoff file's line at {} runs past the {} bytes its submitter committed: it was edited",
                        line.pos,
                        t.end
                    );
                }
            }
            self.recent.push_back(line.checkpoints);
            if line.line.trim_ascii().is_empty() {
                continue;
            }
            read += 1;
            let record = Record {
                lane: LANE,
                pos: line.pos,
                next: line.next,
                kind: RecordKind::Line {
                    line_no: line.line_no,
                },
                key: None,
                value: Some(line.line),
            };
            if !f(Intake::Record(record))? {
                break;
            }
        }
        Ok(read)
    }

    fn records(&mut self) -> &mut dyn BatchRecords {
        self
    }

    fn commit(&mut self, turn: &Turn) -> Result<(), CommitError> {
        self.write(turn).map_err(CommitError::Fatal)
    }

    fn finished(&self) -> bool {
        match &self.tail {
            Some(t) => t.at_end,
            None => self.eof,
        }
    }

    fn targets(&self) -> (String, String) {
        (
            self.paths.0.display().to_string(),
            self.paths.1.display().to_string(),
        )
    }
}

impl BatchRecords for FileLedger {
    fn visit(
        &mut self,
        batch: &Batch,
        f: &mut crate::ledger::VisitRecord<'_>,
    ) -> anyhow::Result<()> {
        self.reader.visit(batch, f)
    }
}
