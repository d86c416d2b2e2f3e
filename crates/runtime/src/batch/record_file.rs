//! Local copies of a Kafka batch's input records: frames of
//! `offset u64 | key length i32 (-1: no key) | value length u32 | key | value`,
//! little-endian. Hand-rolled: three fields, read back only by this module.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

pub fn write_frame(
    w: &mut BufWriter<File>,
    offset: u64,
    key: Option<&[u8]>,
    value: &[u8],
) -> io::Result<()> {
    w.write_all(&offset.to_le_bytes())?;
    w.write_all(&key.map_or(-1i32, |k| k.len() as i32).to_le_bytes())?;
    w.write_all(&(value.len() as u32).to_le_bytes())?;
    if let Some(k) = key {
        w.write_all(k)?;
    }
    w.write_all(value)
}

/// Visit every frame of a records file; `Ok(false)` if it does not exist.
pub fn visit(path: &Path, f: &mut crate::ledger::VisitRecord<'_>) -> anyhow::Result<bool> {
    let buf = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    let mut at = 0usize;
    let take = |at: &mut usize, n: usize| -> anyhow::Result<&[u8]> {
        let s = buf
            .get(*at..*at + n)
            .ok_or_else(|| anyhow::anyhow!("{} is truncated", path.display()))?;
        *at += n;
        Ok(s)
    };
    while at < buf.len() {
        let offset = u64::from_le_bytes(take(&mut at, 8)?.try_into()?);
        let key_len = i32::from_le_bytes(take(&mut at, 4)?.try_into()?);
        let value_len = u32::from_le_bytes(take(&mut at, 4)?.try_into()?) as usize;
        let key = if key_len >= 0 {
            Some(take(&mut at, key_len as usize)?)
        } else {
            None
        };
        let value = take(&mut at, value_len)?;
        f(offset, key, value);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r");
        let mut w = BufWriter::new(File::create(&p).unwrap());
        write_frame(&mut w, 7, Some(b"k"), b"{\"a\":1}").unwrap();
        write_frame(&mut w, 9, None, b"").unwrap();
        drop(w);
        let mut got = Vec::new();
        assert!(visit(&p, &mut |o, k, v| got.push((
            o,
            k.map(<[u8]>::to_vec),
            v.to_vec()
        )))
        .unwrap());
        assert_eq!(
            got,
            vec![
                (7, Some(b"k".to_vec()), b"{\"a\":1}".to_vec()),
                (9, None, vec![])
            ]
        );
        assert!(!visit(&dir.path().join("missing"), &mut |_, _, _| {}).unwrap());
        std::fs::write(&p, [1, 2, 3]).unwrap();
        assert!(visit(&p, &mut |_, _, _| {}).is_err());
    }
}
