use crate::Millis;

/// Exponential backoff with deterministic "jitter": the jitter is derived
/// from a seed (batch id and attempt) instead of a random source, so the core
/// stays deterministic and replayable, while batches still spread out.
pub fn backoff_ms(base: Millis, cap: Millis, attempt: u32, seed: u64) -> Millis {
    let exp = base.saturating_mul(1u64 << attempt.min(20)).min(cap).max(1);
    // splitmix64 of the seed picks a point in [exp/2, exp].
    let mut z = seed
        .wrapping_add(0x9E37_79B9_7F4A_7C15)
        .wrapping_mul(u64::from(attempt) + 1);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    exp / 2 + z % (exp / 2 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_caps() {
        let a0 = backoff_ms(100, 10_000, 0, 7);
        let a3 = backoff_ms(100, 10_000, 3, 7);
        let a30 = backoff_ms(100, 10_000, 30, 7);
        assert!((50..=100).contains(&a0), "{a0}");
        assert!((400..=800).contains(&a3), "{a3}");
        assert!((5_000..=10_000).contains(&a30), "{a30}");
    }

    #[test]
    fn jitter_differs_between_seeds() {
        let values: std::collections::BTreeSet<_> =
            (0..20).map(|s| backoff_ms(1000, 60_000, 4, s)).collect();
        assert!(values.len() > 10);
    }
}
