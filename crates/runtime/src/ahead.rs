//! Synchronous mode's records emitted beyond a lane's watermark, as the
//! one meta value `{watermark}:{pos},{pos},...` committed with the lane:
//! a set that applies only at the watermark it was written at.

use std::collections::BTreeSet;

/// The stored form of an `ahead` set at its watermark.
pub fn encode(watermark: u64, ahead: &BTreeSet<u64>) -> String {
    use std::fmt::Write;
    let mut s = format!("{watermark}:");
    for (i, p) in ahead.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{p}");
    }
    s
}

/// Read a stored `ahead` set. It is only valid with the watermark it was
/// committed with: `Ok(None)` when the watermark moved since (another mode
/// ran the pipeline) and the set no longer applies.
pub fn decode(meta: &str, watermark: u64) -> Result<Option<BTreeSet<u64>>, String> {
    let bad = || format!("malformed sync.ahead value {meta:?} in the state database");
    let (w, list) = meta.split_once(':').ok_or_else(bad)?;
    let w: u64 = w.parse().map_err(|_| bad())?;
    if w != watermark {
        return Ok(None);
    }
    if list.is_empty() {
        return Ok(Some(BTreeSet::new()));
    }
    let set = list
        .split(',')
        .map(|p| p.parse::<u64>())
        .collect::<Result<BTreeSet<_>, _>>()
        .map_err(|_| bad())?;
    if set.iter().any(|&p| p < watermark) {
        return Err(bad());
    }
    Ok(Some(set))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_only_at_its_watermark() {
        let set = BTreeSet::from([7, 9]);
        let m = encode(5, &set);
        assert_eq!(decode(&m, 5), Ok(Some(set)));
        assert_eq!(decode(&m, 6), Ok(None));
        assert_eq!(decode("5:", 5), Ok(Some(BTreeSet::new())));
        assert!(decode("nope", 5).is_err());
        assert!(decode("5:3", 5).is_err(), "below the watermark");
    }
}
