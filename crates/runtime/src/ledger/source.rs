//! The file source: one input file is one lane; a record's position is the
//! byte offset of its line, so a batch's records can be read again by range
//! (or by member offsets) after a crash, without keeping them in memory.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

use xxhash_rust::xxh3::Xxh3;

pub struct FileSource {
    reader: BufReader<File>,
    pos: u64,
    line_no: u64,
    buf: Vec<u8>,
    /// Running hash of every byte before `pos`.
    hasher: Xxh3,
    checkpoints: Checkpoints,
}

/// Hashes of the source prefix at the three places a cut can end: the start
/// of the current line, its end, and the end of the last record (blank lines
/// may follow it). A resumed pipeline compares the hash of the prefix it
/// already consumed, so an input edited, truncated or replaced before that
/// point is refused; appending is fine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checkpoints {
    line_start: (u64, u64),
    after_line: (u64, u64),
    last_record: (u64, u64),
}

impl Checkpoints {
    /// Identifies the source bytes `[0, end)`: their length and hash.
    pub fn fingerprint(&self, end: u64) -> Option<String> {
        [self.after_line, self.line_start, self.last_record]
            .into_iter()
            .find(|(pos, _)| *pos == end)
            .map(|(pos, h)| format!("{pos}:{h:016x}"))
    }

    /// Where the line these checkpoints were taken after ends.
    pub fn end(&self) -> u64 {
        self.after_line.0
    }

    /// The current line was a record (not a blank line).
    pub fn record_done(&mut self) {
        self.last_record = self.after_line;
    }
}

/// One line of the source; `line` has its line ending removed.
pub struct Line<'a> {
    pub pos: u64,
    pub next: u64,
    /// 1-based line number, for dead letters and humans.
    pub line_no: u64,
    pub line: &'a [u8],
    pub checkpoints: Checkpoints,
}

impl FileSource {
    /// Open at byte offset `start` (a lane watermark: always a line start).
    pub fn open(path: &Path, start: u64) -> io::Result<Self> {
        let mut file = File::open(path)?;
        // Line numbers are not stored, and the consumed prefix is verified
        // by its hash: one sequential pass over the prefix at start.
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
        file.seek(SeekFrom::Start(counted))?;
        let here = (counted, hasher.digest());
        Ok(Self {
            reader: BufReader::with_capacity(1 << 16, file),
            pos: counted,
            line_no,
            buf: Vec::new(),
            hasher,
            checkpoints: Checkpoints {
                line_start: here,
                after_line: here,
                last_record: here,
            },
        })
    }

    pub fn checkpoints(&self) -> Checkpoints {
        self.checkpoints
    }

    /// Where the next line starts.
    pub fn pos(&self) -> u64 {
        self.pos
    }

    /// Forget what was read ahead: bytes past a committed length may be
    /// rewritten (a handoff file cut back by its writer's restart).
    pub fn discard_buffer(&mut self) -> io::Result<()> {
        self.reader.seek(SeekFrom::Start(self.pos)).map(drop)
    }

    /// The line just read was a record (not a blank line).
    pub fn mark_record(&mut self) {
        self.checkpoints.record_done();
    }

    /// The next line, or `None` at the current end of the file.
    pub fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        self.buf.clear();
        let n = self.reader.read_until(b'\n', &mut self.buf)? as u64;
        if n == 0 {
            return Ok(None);
        }
        let pos = self.pos;
        self.checkpoints.line_start = self.checkpoints.after_line;
        self.hasher.update(&self.buf);
        self.pos += n;
        self.checkpoints.after_line = (self.pos, self.hasher.digest());
        self.line_no += 1;
        Ok(Some(Line {
            pos,
            next: self.pos,
            line_no: self.line_no,
            line: trim_eol(&self.buf),
            checkpoints: self.checkpoints,
        }))
    }
}

pub fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A batch's records, read again from the input file.
pub struct FileRecords(pub File);

impl crate::ledger::BatchRecords for FileRecords {
    fn visit(
        &mut self,
        batch: &batch_core::Batch,
        f: &mut crate::ledger::VisitRecord<'_>,
    ) -> anyhow::Result<()> {
        match &batch.members {
            None => {
                let range = read_range(&self.0, batch.first, batch.end)?;
                for (pos, line) in lines(&range, batch.first) {
                    if !line.trim_ascii().is_empty() {
                        f(pos, None, line);
                    }
                }
            }
            Some(members) => {
                let mut line = Vec::new();
                for &pos in members {
                    read_line_at(&self.0, pos, &mut line)?;
                    f(pos, None, &line);
                }
            }
        }
        Ok(())
    }
}

/// Read `[first, end)` of the source.
pub fn read_range(file: &File, first: u64, end: u64) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; (end - first) as usize];
    file.read_exact_at(&mut buf, first)?;
    Ok(buf)
}

/// Lines of a range read by [`read_range`], with their positions.
pub fn lines(buf: &[u8], base: u64) -> impl Iterator<Item = (u64, &[u8])> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        if at >= buf.len() {
            return None;
        }
        let start = at;
        let end = memchr::memchr(b'\n', &buf[start..]).map_or(buf.len(), |i| start + i + 1);
        at = end;
        Some((base + start as u64, trim_eol(&buf[start..end])))
    })
}

/// Read the line that starts at `pos`.
pub fn read_line_at(file: &File, pos: u64, out: &mut Vec<u8>) -> io::Result<()> {
    out.clear();
    let mut chunk = [0u8; 4096];
    let mut at = pos;
    loop {
        let n = file.read_at(&mut chunk, at)?;
        if n == 0 {
            break;
        }
        if let Some(i) = memchr::memchr(b'\n', &chunk[..n]) {
            out.extend_from_slice(&chunk[..i]);
            break;
        }
        out.extend_from_slice(&chunk[..n]);
        at += n as u64;
    }
    if out.last() == Some(&b'\r') {
        out.pop();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_lines_with_positions_and_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("in.jsonl");
        std::fs::write(&p, b"{\"a\":1}\r\n\n{\"a\":2}\n{\"a\":3}").unwrap();
        let mut s = FileSource::open(&p, 0).unwrap();
        let l = s.next_line().unwrap().unwrap();
        assert_eq!(
            (l.pos, l.next, l.line_no, l.line),
            (0, 9, 1, &b"{\"a\":1}"[..])
        );
        let l = s.next_line().unwrap().unwrap();
        assert_eq!((l.pos, l.line), (9, &b""[..]));
        let l = s.next_line().unwrap().unwrap();
        assert_eq!((l.pos, l.line_no), (10, 3));
        let mut s = FileSource::open(&p, 18).unwrap();
        let l = s.next_line().unwrap().unwrap();
        assert_eq!(
            (l.pos, l.next, l.line_no, l.line),
            (18, 25, 4, &b"{\"a\":3}"[..])
        );
        assert!(s.next_line().unwrap().is_none());
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"\n").unwrap();
        let file = File::open(&p).unwrap();
        let all = read_range(&file, 0, 26).unwrap();
        let got: Vec<_> = lines(&all, 0).map(|(p, _)| p).collect();
        assert_eq!(got, vec![0, 9, 10, 18]);
        let mut line = Vec::new();
        read_line_at(&file, 10, &mut line).unwrap();
        assert_eq!(line, b"{\"a\":2}");
    }

    #[test]
    fn fingerprint_covers_the_whole_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("in.jsonl");
        std::fs::write(&p, b"aaaa\n\nbbbb\ncc").unwrap();
        let mut s = FileSource::open(&p, 0).unwrap();
        s.next_line().unwrap();
        s.mark_record();
        s.next_line().unwrap(); // blank
        let after_a = s.checkpoints().fingerprint(5).unwrap();
        assert!(s.checkpoints().fingerprint(6).is_some(), "current position");
        assert!(s.checkpoints().fingerprint(3).is_none());
        // Reopening at a position reproduces the same fingerprint...
        let reopened = |p: &Path| {
            FileSource::open(p, 5)
                .unwrap()
                .checkpoints()
                .fingerprint(5)
                .unwrap()
        };
        assert_eq!(reopened(&p), after_a);
        // ...appending does not change it, an edit anywhere before it does.
        std::fs::write(&p, b"aaaa\n\nbbbb\ncccc\n").unwrap();
        assert_eq!(reopened(&p), after_a);
        std::fs::write(&p, b"Aaaa\n\nbbbb\ncccc\n").unwrap();
        assert_ne!(reopened(&p), after_a);
    }
}
