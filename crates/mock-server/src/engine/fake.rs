//! The fake model: deterministic, cheap, distinct per input.
//!
//! Chat answers are a sentiment-ish rating plus a digest of the text, so a test
//! can recompute the expected prediction of every record with
//! [`chat_reply`] and [`embedding`].

use std::sync::OnceLock;

use crate::util::{h64, unit};

const POSITIVE: &[&str] = &[
    "good",
    "great",
    "excellent",
    "love",
    "loved",
    "amazing",
    "best",
    "wonderful",
    "happy",
    "nice",
    "fantastic",
    "perfect",
    "awesome",
    "like",
    "liked",
    "enjoy",
    "enjoyed",
    "recommend",
    "brilliant",
];
const NEGATIVE: &[&str] = &[
    "bad",
    "terrible",
    "awful",
    "hate",
    "hated",
    "worst",
    "poor",
    "boring",
    "disappointing",
    "horrible",
    "broken",
    "sad",
    "waste",
    "not",
    "never",
    "refund",
    "slow",
    "ugly",
];

/// The fake chat model's answer to the last user message, e.g.
/// `"rating: 4/5 (digest 1a2b3c4d)"`.
pub fn chat_reply(model: &str, user_message: &str) -> String {
    let (mut pos, mut neg) = (0i32, 0i32);
    let mut count = |word: &[u8]| match sentiment(word) {
        Some(true) => pos += 1,
        Some(false) => neg += 1,
        None => {}
    };
    // This runs for every request: split ASCII text by bytes; other text
    // by Unicode alphanumerics (the same words for ASCII).
    if user_message.is_ascii() {
        user_message
            .as_bytes()
            .split(|b| !b.is_ascii_alphanumeric())
            .for_each(&mut count);
    } else {
        user_message
            .split(|c: char| !c.is_alphanumeric())
            .for_each(|w| count(w.as_bytes()));
    }
    let rating = (3 + pos - neg).clamp(1, 5);
    let digest = h64(&[model.as_bytes(), user_message.as_bytes()]) as u32;
    format!("rating: {rating}/5 (digest {digest:08x})")
}

/// Whether a word (any case) is in [`POSITIVE`] (`true`) or [`NEGATIVE`]
/// (`false`): looked up among the list words of its length, first letter
/// first (the lists are lowercase).
fn sentiment(word: &[u8]) -> Option<bool> {
    /// By length: (word, positive).
    type Table = Vec<Vec<(&'static [u8], bool)>>;
    static BY_LEN: OnceLock<Table> = OnceLock::new();
    let by_len = BY_LEN.get_or_init(|| {
        let mut t = vec![Vec::new(); 16];
        for (list, positive) in [(POSITIVE, true), (NEGATIVE, false)] {
            for w in list {
                t[w.len()].push((w.as_bytes(), positive));
            }
        }
        t
    });
    let first = word.first()?.to_ascii_lowercase();
    by_len
        .get(word.len())?
        .iter()
        .find(|(w, _)| w[0] == first && w.eq_ignore_ascii_case(word))
        .map(|&(_, positive)| positive)
}

/// The fake embedding of `input`: 8 floats, unit length.
pub fn embedding(input: &str) -> Vec<f32> {
    let raw: Vec<f64> = (0u8..8)
        .map(|i| unit(h64(&[input.as_bytes(), &[i]])) * 2.0 - 1.0)
        .collect();
    let norm = raw.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
    raw.iter().map(|v| (v / norm) as f32).collect()
}

/// Roughly 4 tokens per 3 words, at least 1.
pub(crate) fn tokens(text: &str) -> u32 {
    let words = if text.is_ascii() {
        // `char::is_whitespace` on ASCII, which includes \x0b.
        let ws = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r');
        let mut prev_ws = true;
        let mut n = 0u32;
        for &b in text.as_bytes() {
            let w = ws(b);
            n += u32::from(prev_ws && !w);
            prev_ws = w;
        }
        n
    } else {
        text.split_whitespace().count() as u32
    };
    ((words * 4).div_ceil(3)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_reply_is_deterministic_and_distinct() {
        let a = chat_reply("gpt-4o-mini", "I love it, great product");
        assert_eq!(a, chat_reply("gpt-4o-mini", "I love it, great product"));
        assert!(a.starts_with("rating: 5/5 (digest "), "{a}");
        assert!(chat_reply("m", "terrible, broken, a waste").starts_with("rating: 1/5"));
        assert_ne!(chat_reply("m", "x"), chat_reply("m", "y"));
        assert_ne!(chat_reply("m1", "x"), chat_reply("m2", "x"));
    }

    #[test]
    fn embedding_is_unit_length_and_distinct() {
        let e = embedding("hello");
        assert_eq!(e.len(), 8);
        let n: f32 = e.iter().map(|v| v * v).sum();
        assert!((n - 1.0).abs() < 1e-4);
        assert_eq!(e, embedding("hello"));
        assert_ne!(e, embedding("hello!"));
    }

    /// The fast paths count the words the plain definitions do.
    #[test]
    fn fast_paths_match_the_definitions() {
        for w in POSITIVE.iter().chain(NEGATIVE) {
            assert_eq!(
                *w,
                w.to_ascii_lowercase(),
                "sentiment() needs lowercase lists"
            );
            assert!(w.len() < 16);
        }
        let slow_reply = |model: &str, m: &str| {
            let (mut pos, mut neg) = (0i32, 0i32);
            for w in m.split(|c: char| !c.is_alphanumeric()) {
                if POSITIVE.iter().any(|p| p.eq_ignore_ascii_case(w)) {
                    pos += 1;
                } else if NEGATIVE.iter().any(|n| n.eq_ignore_ascii_case(w)) {
                    neg += 1;
                }
            }
            let digest = h64(&[model.as_bytes(), m.as_bytes()]) as u32;
            format!(
                "rating: {}/5 (digest {digest:08x})",
                (3 + pos - neg).clamp(1, 5)
            )
        };
        let words = [
            "GREAT",
            "great",
            "Disappointing",
            "not",
            "bad",
            "x",
            "",
            "émoji✓",
            "Amazing!!",
            "a\x0bb",
            "tab\there",
            "refund.",
            "hate\u{a0}love",
            "never\u{2003}good",
            "ünicode",
        ];
        for i in 0..words.len() {
            for j in 0..words.len() {
                for sep in [" ", "\t", "\x0b", ", ", "\u{3000}", "\n\r"] {
                    let m = format!(
                        "{}{sep}{}{sep}{}",
                        words[i],
                        words[j],
                        words[(i + j) % words.len()]
                    );
                    assert_eq!(chat_reply("m", &m), slow_reply("m", &m), "{m:?}");
                    let slow_tokens =
                        ((m.split_whitespace().count() as u32 * 4).div_ceil(3)).max(1);
                    assert_eq!(tokens(&m), slow_tokens, "{m:?}");
                }
            }
        }
    }

    #[test]
    fn tokens_grow_with_words() {
        assert_eq!(tokens(""), 1);
        assert_eq!(tokens("one two three"), 4);
        assert!(tokens("a b c d e f") > tokens("a b c"));
    }
}
