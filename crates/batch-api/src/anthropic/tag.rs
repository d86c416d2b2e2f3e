//! The batch tag: how an Anthropic batch (which carries no metadata) is
//! recognised as ours, by a prefix on every custom_id sent.

use serde_json::Value;

use crate::wire::{is_valid_custom_id, BATCH_TAG_SEPARATOR, LINE_HEAD};
use crate::BatchMeta;

/// The batch tag of one create attempt: `mp` and 16 hex digits of a stable
/// hash (FNV-1a 64 + splitmix64 finaliser; the same on every build and
/// platform) of pipeline, batch_number and attempt.
pub fn batch_tag(meta: &BatchMeta) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [
        meta.pipeline.as_bytes(),
        meta.batch_number.as_bytes(),
        meta.attempt.to_string().as_bytes(),
    ] {
        for &b in part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut z = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    format!("mp{z:016x}")
}

/// The tag of a wire custom_id `{tag}_{id}`, if it has one.
pub fn tag_of_custom_id(id: &str) -> Option<&str> {
    let (tag, rest) = id.split_once(BATCH_TAG_SEPARATOR)?;
    (!tag.is_empty() && !rest.is_empty() && tag.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then_some(tag)
}

/// Append one request of the create body, `line` (a request line of the
/// batch file, without its newline) with its custom_id tagged.
pub fn tag_line(line: &[u8], tag: &str, out: &mut Vec<u8>) -> Result<(), String> {
    if let Some(rest) = line.strip_prefix(LINE_HEAD) {
        // The template's lines: `{"custom_id":"<id>",…` with a plain id.
        let end = memchr::memchr(b'"', rest).ok_or("unterminated custom_id")?;
        let id = std::str::from_utf8(&rest[..end]).map_err(|_| "custom_id is not utf-8")?;
        check_tagged(tag, id)?;
        out.extend_from_slice(LINE_HEAD);
        out.extend_from_slice(tag.as_bytes());
        out.push(BATCH_TAG_SEPARATOR as u8);
        out.extend_from_slice(rest);
        return Ok(());
    }
    // Any other well-formed line (hand-written, other key order).
    let mut v: serde_json::Map<String, Value> =
        serde_json::from_slice(line).map_err(|e| format!("a line is not a json object: {e}"))?;
    let id = match v.get("custom_id") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err("a line has no string custom_id".into()),
    };
    check_tagged(tag, &id)?;
    v.insert(
        "custom_id".into(),
        Value::String(format!("{tag}{BATCH_TAG_SEPARATOR}{id}")),
    );
    serde_json::to_writer(&mut *out, &v).map_err(|e| e.to_string())
}

fn check_tagged(tag: &str, id: &str) -> Result<(), String> {
    let tagged_len = tag.len() + 1 + id.len();
    if !is_valid_custom_id(id) || tagged_len > 64 {
        return Err(format!(
            "custom_id {id:?} does not fit anthropic's ^[a-zA-Z0-9_-]{{1,64}}$ once tagged"
        ));
    }
    Ok(())
}
