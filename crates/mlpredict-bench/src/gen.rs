//! Deterministic review-like input records of about a target size.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

const WORDS: &[&str] = &[
    "great",
    "phone",
    "battery",
    "life",
    "screen",
    "camera",
    "love",
    "terrible",
    "refund",
    "slow",
    "fast",
    "excellent",
    "okay",
    "the",
    "and",
    "with",
    "after",
    "two",
    "weeks",
    "sound",
    "quality",
    "price",
    "shipping",
    "box",
    "arrived",
    "damaged",
    "works",
    "perfectly",
    "would",
    "recommend",
    "not",
    "buying",
    "again",
    "charger",
    "bright",
    "display",
    "heavy",
    "light",
    "cheap",
    "solid",
    "build",
    "awful",
    "support",
    "nice",
    "happy",
    "disappointing",
];

/// A JSON line of about `target` bytes (newline included):
/// `{"id":N,"user":"u…","stars":K,"lang":"en","text":"…"}`.
pub fn record(i: u64, target: usize, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(
        format!(
            "{{\"id\":{i},\"user\":\"u{:06}\",\"stars\":{},\"lang\":\"en\",\"text\":\"",
            i % 999_983,
            i % 5 + 1
        )
        .as_bytes(),
    );
    let want = target.saturating_sub(out.len() - start + 3).max(8);
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let text_start = out.len();
    while out.len() - text_start < want {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if out.len() > text_start {
            out.push(b' ');
        }
        out.extend_from_slice(WORDS[(x % WORDS.len() as u64) as usize].as_bytes());
    }
    out.extend_from_slice(b"\"}\n");
}

/// `dir/input-{size}b-{n}.jsonl`, generated once and reused.
pub fn input(dir: &Path, n: u64, size: usize) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("input-{size}b-{n}.jsonl"));
    if path.exists() {
        return Ok(path);
    }
    let tmp = path.with_extension("part");
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
    let mut buf = Vec::with_capacity(size * 2);
    for i in 0..n {
        buf.clear();
        record(i, size, &mut buf);
        w.write_all(&buf)?;
    }
    w.flush()?;
    drop(w);
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_json_of_about_the_size() {
        for size in [200, 2000] {
            let mut total = 0;
            for i in 0..200 {
                let mut b = Vec::new();
                record(i, size, &mut b);
                let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
                assert_eq!(v["id"], i);
                total += b.len();
            }
            let avg = total / 200;
            assert!(avg >= size - 5 && avg <= size + 15, "{size}: {avg}");
        }
    }
}
