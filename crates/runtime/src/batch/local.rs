//! The pipeline's local directory: `{ml.batch.local.dir}/{pipeline}/` holds
//! `state.db` and one `batch-{id}.requests.jsonl` per batch not yet emitted
//! (result files are joined in memory; `batch-{id}.{output,errors}.jsonl`
//! are only removed, as earlier versions downloaded them here). The
//! directory is 0700 and every file 0600: batch files hold user data.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub struct LocalDir {
    dir: PathBuf,
}

impl LocalDir {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub fn requests(&self, id: u64) -> PathBuf {
        self.dir.join(format!("batch-{id}.requests.jsonl"))
    }

    /// Kafka lanes: the batch's input records, so emission needs no re-read
    /// from the broker (it falls back to one when the file is gone).
    pub fn records(&self, id: u64) -> PathBuf {
        self.dir.join(format!("batch-{id}.records"))
    }

    pub fn open_lane_records(&self, lane: u32) -> PathBuf {
        self.dir.join(format!("lane-{lane}.records.open.tmp"))
    }

    pub fn results(&self, id: u64, which: &str) -> PathBuf {
        self.dir.join(format!("batch-{id}.{which}.jsonl"))
    }

    /// Where a lane's open batch is written before it is cut.
    pub fn open_lane(&self, lane: u32) -> PathBuf {
        self.dir.join(format!("lane-{lane}.open.tmp"))
    }

    pub fn create(path: &Path) -> io::Result<BufWriter<File>> {
        let f = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        Ok(BufWriter::with_capacity(1 << 16, f))
    }

    /// Make a finished file durable under its final name.
    pub fn seal(&self, w: BufWriter<File>, tmp: &Path, dest: &Path) -> io::Result<()> {
        self.seal_file(w, tmp, dest)?;
        self.sync_dir()
    }

    /// [`seal`](Self::seal) but for the directory sync, which the caller
    /// makes once for several files.
    pub fn seal_file(&self, mut w: BufWriter<File>, tmp: &Path, dest: &Path) -> io::Result<()> {
        w.flush()?;
        w.get_ref().sync_data()?;
        drop(w);
        std::fs::rename(tmp, dest)
    }

    pub fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }

    /// Delete the local files of one batch.
    pub fn remove_batch(&self, id: u64) {
        for p in [
            self.requests(id),
            self.records(id),
            self.results(id, "output"),
            self.results(id, "errors"),
        ] {
            let _ = std::fs::remove_file(p);
        }
    }

    /// Remove files no open batch refers to (left by crashes or by a
    /// batch emitted just before one). Returns how many were removed.
    pub fn remove_orphans(&self, open: &BTreeSet<u64>) -> io::Result<usize> {
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            let Some(name) = name.to_str() else { continue };
            let orphan = if name.ends_with(".open.tmp") || name.ends_with(".part") {
                true
            } else if let Some(rest) = name.strip_prefix("batch-") {
                let id = rest.split('.').next().and_then(|s| s.parse::<u64>().ok());
                id.is_some_and(|id| !open.contains(&id))
            } else {
                false
            };
            if orphan {
                std::fs::remove_file(self.dir.join(name))?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orphans_go_and_open_batches_stay() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalDir::new(dir.path().to_owned());
        for name in [
            "batch-1.requests.jsonl",
            "batch-2.requests.jsonl",
            "batch-2.output.jsonl",
            "lane-0.open.tmp",
            "state.db",
        ] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let removed = local.remove_orphans(&BTreeSet::from([1])).unwrap();
        assert_eq!(removed, 3);
        assert!(local.requests(1).exists());
        assert!(dir.path().join("state.db").exists());
    }

    #[test]
    fn files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let local = LocalDir::new(dir.path().to_owned());
        let tmp = local.open_lane(0);
        let mut w = LocalDir::create(&tmp).unwrap();
        w.write_all(b"line\n").unwrap();
        local.seal(w, &tmp, &local.requests(9)).unwrap();
        let mode = std::fs::metadata(local.requests(9))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
