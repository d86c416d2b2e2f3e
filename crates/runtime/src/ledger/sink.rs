//! Append-only output files whose committed length lives in the state
//! database: on start the file is cut back to that length, so a crash
//! between "append + fsync" and "commit" re-emits cleanly, never twice.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use anyhow::{bail, Context};

pub struct FileSink {
    file: File,
    len: u64,
}

impl FileSink {
    /// Open at the committed length (`None`: this pipeline never wrote it).
    pub fn open(path: &Path, committed: Option<u64>) -> anyhow::Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let actual = file.metadata()?.len();
        let len = match committed {
            None if actual > 0 => bail!(
                "{} already holds {actual} bytes that this pipeline did not write; move it away or choose another path",
                path.display()
            ),
            None => 0,
            Some(c) if actual < c => bail!(
                "{} is shorter ({actual} bytes) than this pipeline committed ({c} bytes): it was truncated, deleted or replaced; \
                 restore it, or start a new pipeline (another pipeline.name or ml.batch.local.dir) to write every record again",
                path.display()
            ),
            Some(c) => {
                if actual > c {
                    tracing::info!(path = %path.display(), dropped = actual - c, "cutting uncommitted output left by a crash");
                    file.set_len(c)?;
                    file.sync_all()?;
                }
                c
            }
        };
        Ok(Self { file, len })
    }

    /// Bytes written so far (committed or not).
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        // Positioned writes: the file offset never drifts from `len`.
        self.file.write_all_at(bytes, self.len)?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    pub fn sync(&mut self) -> io::Result<()> {
        self.file.flush()?;
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_back_to_the_committed_length() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.jsonl");
        let mut s = FileSink::open(&p, None).unwrap();
        s.append(b"one\n").unwrap();
        s.append(b"two\n").unwrap();
        s.sync().unwrap();
        drop(s);
        let s = FileSink::open(&p, Some(4)).unwrap();
        assert_eq!(s.len(), 4);
        assert_eq!(std::fs::read(&p).unwrap(), b"one\n");
        let err = FileSink::open(&p, Some(10)).err().unwrap();
        assert!(err.to_string().contains("shorter"), "{err}");
        assert!(
            err.to_string()
                .contains("restore it, or start a new pipeline"),
            "a hint: {err}"
        );
        let err = FileSink::open(&p, None).err().unwrap();
        assert!(err.to_string().contains("did not write"), "{err}");
    }
}
