//! Small helpers: a stable hash, ids, clocks, base64, a borrowing string.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer};

/// Stable 64-bit hash (FNV-1a + splitmix finalizer): the same on every build,
/// so fake outputs and fault decisions never change between Rust versions.
pub(crate) fn h64(parts: &[&[u8]]) -> u64 {
    parts.iter().fold(H64::new(), |h, p| h.part(p)).finish()
}

/// [`h64`] in steps, so that hashes sharing leading parts hash them once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct H64(u64);

impl H64 {
    pub(crate) const fn new() -> Self {
        H64(0xcbf2_9ce4_8422_2325)
    }

    pub(crate) fn part(self, p: &[u8]) -> Self {
        let mut h = self.0;
        for &b in p {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        // separator so ("ab","c") != ("a","bc")
        h ^= 0xff;
        H64(h.wrapping_mul(0x0100_0000_01b3))
    }

    pub(crate) fn finish(self) -> u64 {
        mix(self.0)
    }
}

/// splitmix64 finalizer; a bijection on u64.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The public custom_id of an Anthropic wire id `{tag}_{id}` (mlpredict
/// prefixes each request with a tag of its batch): everything after the
/// first `_` when an alphanumeric tag precedes it; otherwise the id.
pub(crate) fn strip_tag(id: &str) -> &str {
    match id.split_once('_') {
        Some((tag, rest))
            if !tag.is_empty()
                && !rest.is_empty()
                && tag.bytes().all(|b| b.is_ascii_alphanumeric()) =>
        {
            rest
        }
        _ => id,
    }
}

/// The batch tag of an Anthropic wire id `{tag}_{id}`, if any.
pub(crate) fn tag_of(id: &str) -> Option<&str> {
    let stripped = strip_tag(id);
    (stripped.len() != id.len()).then(|| &id[..id.len() - stripped.len() - 1])
}

/// Maps a hash to [0, 1).
pub(crate) fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Unique ids: the high half is a bijection of the sequence number, so two
/// ids of one server never collide; the nonce makes them differ per process.
pub(crate) struct IdGen {
    nonce: u64,
}

impl IdGen {
    pub(crate) fn new(nonce: u64) -> Self {
        IdGen { nonce }
    }

    fn pair(&self, seq: u64, salt: &str) -> (u64, u64) {
        let hi = mix(seq ^ self.nonce);
        let lo = h64(&[
            &self.nonce.to_le_bytes(),
            &seq.to_le_bytes(),
            salt.as_bytes(),
        ]);
        (hi, lo)
    }

    /// `batch_` + 32 hex digits, like the real ones.
    pub(crate) fn hex(&self, prefix: &str, seq: u64) -> String {
        let (hi, lo) = self.pair(seq, prefix);
        format!("{prefix}{hi:016x}{lo:016x}")
    }

    /// `file-` + 22 base62 characters, like the real ones.
    pub(crate) fn base62(&self, prefix: &str, seq: u64) -> String {
        let (hi, lo) = self.pair(seq, prefix);
        let mut n = (u128::from(hi) << 64) | u128::from(lo);
        const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let mut out = [b'0'; 22];
        for slot in out.iter_mut().rev() {
            *slot = DIGITS[(n % 62) as usize];
            n /= 62;
        }
        let mut s = String::with_capacity(prefix.len() + 22);
        s.push_str(prefix);
        s.push_str(std::str::from_utf8(&out).expect("ascii"));
        s
    }
}

/// `http://IP:PORT` of a bound address (loopback for an unspecified one).
pub(crate) fn base_url_of(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// Unix seconds as RFC 3339 (`2024-08-20T18:37:24Z`).
pub(crate) fn rfc3339(unix: i64) -> String {
    let t = UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(unix).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Wall clock as Unix seconds.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A monotonic instant paired with its wall-clock time, to turn later
/// instants into Unix timestamps.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    pub(crate) at: Instant,
    wall: SystemTime,
}

impl Clock {
    pub(crate) fn now() -> Self {
        Clock {
            at: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    pub(crate) fn unix(&self, t: Instant) -> i64 {
        let wall = self.wall + t.saturating_duration_since(self.at);
        wall.duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }
}

/// Standard base64 with padding (for `encoding_format: "base64"` embeddings).
pub(crate) fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// A JSON string that borrows from the input unless it holds escapes.
/// (serde's own `Cow<str>` always allocates.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BStr<'a>(pub(crate) Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for BStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = BStr<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(BStr(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(BStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(BStr(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

impl std::ops::Deref for BStr<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anthropic_tags() {
        assert_eq!(strip_tag("mpab12_0-7"), "0-7");
        assert_eq!(tag_of("mpab12_0-7"), Some("mpab12"));
        assert_eq!(strip_tag("0-7"), "0-7");
        assert_eq!(tag_of("0-7"), None);
        assert_eq!(strip_tag("a-b_c"), "a-b_c");
        assert_eq!(rfc3339(1_724_179_044), "2024-08-20T18:37:24Z");
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn ids_are_unique_and_shaped() {
        let g = IdGen::new(42);
        let a = g.base62("file-", 1);
        assert_eq!(a.len(), 5 + 22);
        assert_ne!(a, g.base62("file-", 2));
        let b = g.hex("batch_", 1);
        assert_eq!(b.len(), 6 + 32);
        assert!(b[6..].chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn bstr_borrows_plain_and_owns_escaped() {
        let s: BStr = serde_json::from_str(r#""plain""#).unwrap();
        assert!(matches!(s.0, Cow::Borrowed("plain")));
        let s: BStr = serde_json::from_str(r#""a\nb""#).unwrap();
        assert_eq!(&*s, "a\nb");
    }
}
