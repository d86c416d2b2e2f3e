//! The file source: one input file is one lane; a record's position is the
//! byte offset of its line, so a batch's records can be read again by range
//! (or by member offsets) after a crash, without keeping them in memory.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

pub struct FileSource {
    reader: BufReader<File>,
    pos: u64,
    line_no: u64,
    buf: Vec<u8>,
}

/// One line of the source; `line` has its line ending removed.
pub struct Line<'a> {
    pub pos: u64,
    pub next: u64,
    /// 1-based line number, for dead letters and humans.
    pub line_no: u64,
    pub line: &'a [u8],
}

impl FileSource {
    /// Open at byte offset `start` (a lane watermark: always a line start).
    pub fn open(path: &Path, start: u64) -> io::Result<Self> {
        let mut file = File::open(path)?;
        // Line numbers are not stored; counting newlines up to the
        // watermark once at start is cheap (memchr) and keeps state small.
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
            counted += n as u64;
        }
        file.seek(SeekFrom::Start(start))?;
        Ok(Self {
            reader: BufReader::with_capacity(1 << 16, file),
            pos: start,
            line_no,
            buf: Vec::new(),
        })
    }

    /// The next line, or `None` at the current end of the file.
    pub fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        self.buf.clear();
        let n = self.reader.read_until(b'\n', &mut self.buf)? as u64;
        if n == 0 {
            return Ok(None);
        }
        let pos = self.pos;
        self.pos += n;
        self.line_no += 1;
        Ok(Some(Line {
            pos,
            next: self.pos,
            line_no: self.line_no,
            line: trim_eol(&self.buf),
        }))
    }
}

pub fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
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

/// Identifies the source bytes just before `end` (and `end` itself), so a
/// resumed pipeline notices an input file that was truncated, replaced or
/// edited before its committed position. FNV-1a is enough here: this guards
/// against accidents, not adversaries, and needs no dependency.
pub fn fingerprint(file: &File, end: u64) -> io::Result<String> {
    let start = end.saturating_sub(4096);
    let window = read_range(file, start, end)?;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in &window {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    Ok(format!("{end}:{h:016x}"))
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
    fn fingerprint_changes_when_the_prefix_changes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("in.jsonl");
        std::fs::write(&p, b"aaaa\nbbbb\n").unwrap();
        let before = fingerprint(&File::open(&p).unwrap(), 5).unwrap();
        std::fs::write(&p, b"aaaa\nbbbb\ncccc\n").unwrap();
        assert_eq!(
            fingerprint(&File::open(&p).unwrap(), 5).unwrap(),
            before,
            "appending is fine"
        );
        std::fs::write(&p, b"aXaa\nbbbb\n").unwrap();
        assert_ne!(fingerprint(&File::open(&p).unwrap(), 5).unwrap(), before);
    }
}
