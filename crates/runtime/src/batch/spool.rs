//! The request lines of each lane's open batch, written while records
//! arrive (the hot path touches each record once), and for Kafka lanes a
//! copy of the records, so emission needs no re-read from the broker.
//! A cache, not state: a file missing after a crash or a lane move is
//! rebuilt from the ledger by position ([`super::requests`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufWriter, Write};

use batch_core::{Batch, LaneId, Position};

use super::local::LocalDir;
use super::record_file;
use crate::ledger::BatchRecords;

#[derive(Default)]
struct LaneFiles {
    requests: Option<BufWriter<File>>,
    records: Option<BufWriter<File>>,
}

pub struct Spool {
    pub local: LocalDir,
    keep_records: bool,
    lanes: BTreeMap<LaneId, LaneFiles>,
}

impl Spool {
    /// `keep_records`: also keep the records (sources that are expensive
    /// to read again by position, like Kafka).
    pub fn new(local: LocalDir, keep_records: bool) -> Self {
        Self {
            local,
            keep_records,
            lanes: BTreeMap::new(),
        }
    }

    /// Add one record's request line to its lane's open batch.
    pub fn append(
        &mut self,
        lane: LaneId,
        pos: Position,
        key: Option<&[u8]>,
        value: &[u8],
        request_line: &[u8],
    ) -> anyhow::Result<()> {
        let files = self.lanes.entry(lane).or_default();
        let w = match &mut files.requests {
            Some(w) => w,
            None => files
                .requests
                .insert(LocalDir::create(&self.local.open_lane(lane))?),
        };
        w.write_all(request_line)?;
        if self.keep_records {
            let r = match &mut files.records {
                Some(r) => r,
                None => files
                    .records
                    .insert(LocalDir::create(&self.local.open_lane_records(lane))?),
            };
            record_file::write_frame(r, pos, key, value)?;
        }
        Ok(())
    }

    /// The lane's open batch was cut: its files get the batch's name (or
    /// are dropped when the cut made no batch). No directory sync: a file
    /// lost with its rename is rebuilt from the ledger.
    pub fn seal(&mut self, lane: LaneId, batch: Option<&Batch>) -> anyhow::Result<()> {
        let files = std::mem::take(self.lanes.entry(lane).or_default());
        let tmp = self.local.open_lane(lane);
        let tmp_records = self.local.open_lane_records(lane);
        match (batch, files.requests) {
            (Some(b), Some(w)) => {
                self.local.seal_file(w, &tmp, &self.local.requests(b.id))?;
                if let Some(r) = files.records {
                    self.local
                        .seal_file(r, &tmp_records, &self.local.records(b.id))?;
                }
            }
            (Some(b), None) => anyhow::bail!(
                "internal error: batch {} cut with no records written",
                b.number
            ),
            (None, w) => {
                drop((w, files.records));
                let _ = std::fs::remove_file(&tmp);
                let _ = std::fs::remove_file(&tmp_records);
            }
        }
        Ok(())
    }

    /// Start again with these open batches: open lane files are dropped,
    /// and files no open batch refers to are removed.
    pub fn reset(&mut self, open: &BTreeSet<u64>) -> anyhow::Result<()> {
        self.lanes.clear();
        let removed = self.local.remove_orphans(open)?;
        if removed > 0 {
            tracing::info!(removed, "removed local files no batch refers to");
        }
        Ok(())
    }

    /// Copy a retry batch's members out of its parent's local records.
    pub fn keep_for_retry(&self, parent: &Batch, retry: &Batch) -> anyhow::Result<()> {
        if !self.keep_records {
            return Ok(());
        }
        let members: BTreeSet<u64> = retry.members.iter().flatten().copied().collect();
        let tmp = self.local.records(retry.id).with_extension("part");
        let mut w = LocalDir::create(&tmp)?;
        let mut result = Ok(());
        let found = record_file::visit(&self.local.records(parent.id), &mut |pos, key, value| {
            if members.contains(&pos) && result.is_ok() {
                result = record_file::write_frame(&mut w, pos, key, value);
            }
        })?;
        result?;
        if found {
            self.local
                .seal_file(w, &tmp, &self.local.records(retry.id))?;
        } else {
            drop(w);
            let _ = std::fs::remove_file(&tmp);
        }
        Ok(())
    }

    /// A batch's records: the local copy when there is one, else the
    /// ledger's.
    pub fn records<'a>(&'a self, ledger: &'a mut dyn BatchRecords) -> Spooled<'a> {
        Spooled {
            spool: self,
            ledger,
        }
    }
}

pub struct Spooled<'a> {
    spool: &'a Spool,
    ledger: &'a mut dyn BatchRecords,
}

impl BatchRecords for Spooled<'_> {
    fn visit(
        &mut self,
        batch: &Batch,
        f: &mut crate::ledger::VisitRecord<'_>,
    ) -> anyhow::Result<()> {
        if self.spool.keep_records && record_file::visit(&self.spool.local.records(batch.id), f)? {
            return Ok(());
        }
        self.ledger.visit(batch, f)
    }
}
