//! The file source as synchronous mode reads it: lines with their byte
//! positions, plus the hash of the source prefix up to the watermark.
//!
//! Batch mode's `FileSource` can only fingerprint the position it is reading
//! at; here the watermark lags the reading position by up to the window of
//! requests in flight, so the prefix hash is kept separately and advanced
//! (by positioned reads, from the page cache) when the watermark moves. The
//! fingerprint has the same format as batch mode's (`{len}:{xxh3:016x}`), so
//! a pipeline may switch between the modes.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

use xxhash_rust::xxh3::Xxh3;

pub struct Input {
    reader: BufReader<File>,
    pos: u64,
    line_no: u64,
    buf: Vec<u8>,
}

/// One line; `line` has its line ending removed.
pub struct Line<'a> {
    pub pos: u64,
    pub next: u64,
    /// 1-based, for dead letters.
    pub line_no: u64,
    pub line: &'a [u8],
}

/// Running hash of the source bytes `[0, upto)`.
pub struct PrefixHash {
    file: File,
    hasher: Xxh3,
    upto: u64,
    chunk: Vec<u8>,
}

/// Open `path` for reading at `start` (a watermark: a line start), hashing
/// and counting the lines of the prefix on the way.
pub fn open(path: &Path, start: u64) -> io::Result<(Input, PrefixHash)> {
    let mut file = File::open(path)?;
    let mut hasher = Xxh3::new();
    let mut line_no = 0;
    let mut counted = 0u64;
    let mut chunk = vec![0u8; 1 << 16];
    while counted < start {
        let want = chunk.len().min((start - counted) as usize);
        let n = file.read(&mut chunk[..want])?;
        if n == 0 {
            break;
        }
        line_no += memchr::memchr_iter(b'\n', &chunk[..n]).count() as u64;
        hasher.update(&chunk[..n]);
        counted += n as u64;
    }
    if counted < start {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the file holds {counted} bytes, fewer than the {start} already consumed"),
        ));
    }
    file.seek(SeekFrom::Start(start))?;
    let prefix = PrefixHash {
        file: File::open(path)?,
        hasher,
        upto: start,
        chunk,
    };
    let input = Input {
        reader: BufReader::with_capacity(1 << 16, file),
        pos: start,
        line_no,
        buf: Vec::with_capacity(4096),
    };
    Ok((input, prefix))
}

impl Input {
    /// The next line, or `None` at the end of the file.
    pub fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        self.buf.clear();
        let n = self.reader.read_until(b'\n', &mut self.buf)? as u64;
        if n == 0 {
            return Ok(None);
        }
        let pos = self.pos;
        self.pos += n;
        self.line_no += 1;
        let line = trim_eol(&self.buf);
        Ok(Some(Line {
            pos,
            next: self.pos,
            line_no: self.line_no,
            // The output copies the line's bytes: a file's byte order mark
            // must not start the first output line.
            line: if pos == 0 {
                crate::record::skip_bom(line)
            } else {
                line
            },
        }))
    }
}

impl PrefixHash {
    /// Advance to `to` (never backwards) and return the fingerprint of
    /// `[0, to)`.
    pub fn advance_to(&mut self, to: u64) -> io::Result<String> {
        debug_assert!(to >= self.upto, "watermark went back");
        while self.upto < to {
            let want = self.chunk.len().min((to - self.upto) as usize);
            let n = self.file.read_at(&mut self.chunk[..want], self.upto)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "source.path shrank while the pipeline was reading it",
                ));
            }
            self.hasher.update(&self.chunk[..n]);
            self.upto += n as u64;
        }
        Ok(self.fingerprint())
    }

    pub fn fingerprint(&self) -> String {
        format!("{}:{:016x}", self.upto, self.hasher.digest())
    }
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::FileSource;

    #[test]
    fn fingerprints_match_batch_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("in.jsonl");
        std::fs::write(&p, b"{\"a\":1}\r\n\n{\"a\":2}\n{\"a\":3}\n").unwrap();
        let (mut input, mut prefix) = open(&p, 0).unwrap();
        let mut ends = Vec::new();
        while let Some(l) = input.next_line().unwrap() {
            ends.push((l.pos, l.next, l.line_no, l.line.to_vec()));
        }
        assert_eq!(ends[0], (0, 9, 1, b"{\"a\":1}".to_vec()));
        assert_eq!(ends[1], (9, 10, 2, Vec::new()));
        for &(_, next, _, _) in &ends {
            let ours = prefix.advance_to(next).unwrap();
            let batch = FileSource::open(&p, next)
                .unwrap()
                .checkpoints()
                .fingerprint(next)
                .unwrap();
            assert_eq!(ours, batch);
            let (_, reopened) = open(&p, next).unwrap();
            assert_eq!(reopened.fingerprint(), ours);
        }
        let (mut input, _) = open(&p, 10).unwrap();
        let l = input.next_line().unwrap().unwrap();
        assert_eq!((l.pos, l.line_no), (10, 3));
        assert!(open(&p, 1000).is_err());
    }
}
