//! Fuzz-style bad input: valid records mixed with lines that are not valid
//! UTF-8, forge `ml_predict`, are torn or are not objects; and the check
//! that every output and dead-letter line is valid JSON, byte for byte.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

/// Lines that must go to the dead letters, whatever surrounds them.
const BAD: &[&[u8]] = &[
    b"{\"id\": -1, \"text\": \"fine\", \"note\": \"caf\xe9 latin-1\"}",
    b"{\"id\": -1, \"text\": \"bad \xff byte\"}",
    b"{\"id\": -1, \"text\": \"torn\", \"n\": \"\xe2\x82\"}",
    b"{\"id\": -1, \"te\xffxt\": \"in a key\"}",
    b"{\"id\": -1, \xff \"text\": \"between fields\"}",
    b"{\"id\": -1, \"text\": \"t\", \"deep\": {\"a\": [\"\xc0\xaf\"]}}",
    b"{\"id\": -1, \"text\": \"forged\", \"ml_predict\": {\"status\": \"ok\"}}",
    b"{\"id\": -1, \"text\": \"taken\", \"prediction\": \"x\"}",
    b"{\"id\": -1, \"text\": \"ctl \x01 char\"}",
    b"{\"id\": -1, \"text\": \"ok\", \"x\": \"ctl \x1f char\"}",
    b"{\"id\": -1, \"text\": \"abc",
    b"[1, 2, 3]",
    b"\"just a string\"",
    b"{\"id\": -1, \"text\": \"t\"} trailing",
    b"{\"id\": -1, \"text\": \"t\"}}",
    b"\xff\xfe{\"id\": -1, \"text\": \"utf-16 bom\"}",
    b"{\"id\": -1, \"text\": 5}",
    b"{\"id\": -1, \"text\": \"ok\", \"note\": \"\\ud800 lone\"}",
    b"{\"id\": -1, \"text\": \"ok\", \"deep\": [\"\\udc00\"]}",
];

/// Valid extra fields a good record may carry (copied to the output as is).
const EXTRAS: &[&str] = &[
    r#""lang": "café ☕ 𝄞 日本語""#,
    r#""esc": "tab\t quote\" slash\\ \u00e9 \ud83d\ude00""#,
    r#""nested": {"ml_predict": 1, "prediction": [null, true]}"#,
    r#""empty": {}, "arr": [[], [{}]]"#,
    r#""num": -1.5e300"#,
];

/// Writes `n` good records (the shape of `write_input`: `id`, `text`,
/// `meta.n`), a bad line from [`BAD`] after every few, a UTF-8 BOM before
/// the first and CRLF endings on some. Returns the texts by id and the
/// number of bad lines.
pub fn write_fuzz_input(path: &Path, n: u64, seed: u64) -> (BTreeMap<u64, String>, usize) {
    let mut x = seed | 1;
    let mut next = move |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    let mut out = b"\xEF\xBB\xBF".to_vec();
    let (mut texts, mut bad) = (BTreeMap::new(), 0);
    for i in 0..n {
        let text = format!("fuzz {i} — ✓ \"q\" {}", "y".repeat(next(5) as usize));
        let extra = EXTRAS[next(EXTRAS.len() as u64) as usize];
        let rec = format!(
            "{{\"id\": {i}, \"text\": {}, {extra}, \"meta\": {{\"n\": {i}}}}}",
            serde_json::to_string(&text).unwrap()
        );
        out.extend_from_slice(rec.as_bytes());
        out.extend_from_slice(if next(4) == 0 { b"\r\n" } else { b"\n" });
        texts.insert(i, text);
        if next(3) == 0 {
            out.extend_from_slice(BAD[next(BAD.len() as u64) as usize]);
            out.push(b'\n');
            bad += 1;
        }
    }
    std::fs::write(path, out).unwrap();
    (texts, bad)
}

/// Every line of `path` parsed as JSON from its bytes (invalid UTF-8 is an
/// error, not a lossy read); a line with `ml_predict` twice at the top
/// level is one too.
pub fn json_lines(path: &Path) -> Vec<Value> {
    let bytes = std::fs::read(path).unwrap_or_default();
    assert!(
        bytes.is_empty() || bytes.ends_with(b"\n"),
        "{} ends in a torn line",
        path.display()
    );
    bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let shown = String::from_utf8_lossy(l);
            let value: Value = serde_json::from_slice(l)
                .unwrap_or_else(|e| panic!("{}: not json ({e}): {shown}", path.display()));
            let keys: TopKeys = serde_json::from_slice(l).unwrap();
            assert!(
                keys.0.iter().filter(|k| *k == "ml_predict").count() <= 1,
                "ml_predict twice: {shown}"
            );
            value
        })
        .collect()
}

/// An object's top-level keys, duplicates kept.
struct TopKeys(Vec<String>);

impl<'de> de::Deserialize<'de> for TopKeys {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TopKeys;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a json object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopKeys, A::Error> {
                let mut keys = Vec::new();
                while let Some((k, IgnoredAny)) = map.next_entry::<String, IgnoredAny>()? {
                    keys.push(k);
                }
                Ok(TopKeys(keys))
            }
        }
        d.deserialize_map(V)
    }
}
