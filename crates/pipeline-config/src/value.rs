//! Typing one value according to its key's [`Kind`].

use std::net::IpAddr;
use std::time::Duration;

use crate::flat::{Resolved, Scalar};
use crate::keys::{KeyInfo, Kind};
use crate::ConfigError;

/// A value after typing.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Typed {
    Str(String),
    Bool(bool),
    Int(i64),
    Float(f64),
    Duration(Duration),
    Bytes(u64),
    Ip(IpAddr),
}

fn expected(info: &KeyInfo, what: &str, r: &Resolved) -> ConfigError {
    let got = if info.kind == Kind::Secret {
        // never echo a secret, not even a wrongly typed one
        String::new()
    } else {
        format!(", got {}", r.shown())
    };
    ConfigError::invalid(info.key, format!("expected {what}{got}"))
}

/// Parse a string the way a `-D` value is parsed (bool/int/float), for
/// numeric and boolean keys given as strings (`"500"`, `"${SIZE}"`).
fn loose(s: &str) -> Scalar {
    crate::flat::parse_override_value(s)
}

fn as_int(r: &Resolved) -> Option<i64> {
    match &r.value {
        Scalar::Int(i) => Some(*i),
        Scalar::Str(s) => match loose(s) {
            Scalar::Int(i) => Some(i),
            _ => None,
        },
        _ => None,
    }
}

fn as_float(r: &Resolved) -> Option<f64> {
    match &r.value {
        Scalar::Int(i) => Some(*i as f64),
        Scalar::Float(f) => Some(*f),
        Scalar::Str(s) => match loose(s) {
            Scalar::Int(i) => Some(i as f64),
            Scalar::Float(f) => Some(f),
            _ => None,
        },
        _ => None,
    }
}

fn as_bool(r: &Resolved) -> Option<bool> {
    match &r.value {
        Scalar::Bool(b) => Some(*b),
        Scalar::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// `^[A-Za-z0-9_-]{1,40}$`
pub(crate) fn is_name(s: &str) -> bool {
    (1..=40).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks `http(s)://host[...]` and returns the URL path (`/` when empty),
/// without query and fragment.
pub(crate) fn url_path(url: &str) -> Option<String> {
    let lower = url.to_ascii_lowercase();
    let rest = if lower.starts_with("http://") {
        &url[7..]
    } else if lower.starts_with("https://") {
        &url[8..]
    } else {
        return None;
    };
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..host_end];
    let host = authority.rsplit('@').next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') {
        return None;
    }
    let after = &rest[host_end..];
    let path_end = after.find(['?', '#']).unwrap_or(after.len());
    let path = &after[..path_end];
    Some(if path.is_empty() {
        "/".to_string()
    } else {
        path.to_string()
    })
}

/// `104857600`, `"100MB"`, `"512 KiB"`, `"1.5GB"`: decimal (kB, MB, GB, TB)
/// and binary (KiB, MiB, GiB, TiB) units, case-insensitive.
pub(crate) fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num = num.replace('_', "");
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return None,
    };
    if num.is_empty() {
        return None;
    }
    if num.contains('.') {
        // "1.5" bytes is a mistake, not 2 bytes (or 1)
        if mult == 1 {
            return None;
        }
        let f: f64 = num.parse().ok()?;
        let v = (f * mult as f64).round();
        (v.is_finite() && v >= 0.0 && v <= u64::MAX as f64).then_some(v as u64)
    } else {
        num.parse::<u64>().ok()?.checked_mul(mult)
    }
}

/// Type a value per its key's kind, with the key's range rules.
pub(crate) fn typed(info: &KeyInfo, r: &Resolved) -> Result<Typed, ConfigError> {
    let key = info.key;
    match info.kind {
        Kind::String | Kind::Text | Kind::Name | Kind::Path | Kind::Url | Kind::Secret => {
            let Some(s) = r.text() else {
                return Err(expected(info, "a string", r));
            };
            let s = s.to_string();
            if s.is_empty() && info.kind != Kind::Text {
                return Err(ConfigError::invalid(key, "must not be empty"));
            }
            match info.kind {
                Kind::Name if !is_name(&s) => {
                    return Err(expected(
                        info,
                        "a name of 1 to 40 letters, digits, `_` or `-`",
                        r,
                    ))
                }
                Kind::Url if url_path(&s).is_none() => {
                    return Err(expected(info, "an http:// or https:// URL", r))
                }
                _ => {}
            }
            Ok(Typed::Str(s))
        }
        Kind::Bool => as_bool(r)
            .map(Typed::Bool)
            .ok_or_else(|| expected(info, "true or false", r)),
        Kind::Int { min, max } => {
            let what = match min {
                1 => "a positive integer",
                0 => "a non-negative integer",
                _ => "an integer",
            };
            let Some(i) = as_int(r) else {
                return Err(expected(info, what, r));
            };
            if i < min && min <= 1 {
                return Err(expected(info, what, r));
            }
            if i < min || i > max {
                return Err(ConfigError::invalid(
                    key,
                    format!("must be between {min} and {max}, got {}", r.shown()),
                ));
            }
            Ok(Typed::Int(i))
        }
        Kind::Float { min, max } => {
            let Some(f) = as_float(r) else {
                return Err(expected(info, "a number", r));
            };
            if !(min..=max).contains(&f) {
                return Err(ConfigError::invalid(
                    key,
                    format!("must be between {min} and {max}, got {}", r.shown()),
                ));
            }
            Ok(Typed::Float(f))
        }
        Kind::Duration => {
            let what = "a duration such as \"200ms\", \"10s\", \"5m\" or \"24h\"";
            let Scalar::Str(s) = &r.value else {
                return Err(expected(info, what, r));
            };
            let d = humantime::parse_duration(s.trim()).map_err(|_| expected(info, what, r))?;
            if d.is_zero() {
                return Err(ConfigError::invalid(
                    key,
                    format!("must be greater than 0, got {}", r.shown()),
                ));
            }
            Ok(Typed::Duration(d))
        }
        Kind::Bytes => {
            let what = "a size in whole bytes such as 104857600, \"100MB\" or \"1.5MiB\"";
            let n = match &r.value {
                Scalar::Int(i) => u64::try_from(*i).ok(),
                Scalar::Str(s) => parse_bytes(s),
                _ => None,
            };
            match n {
                None => Err(expected(info, what, r)),
                Some(0) => Err(ConfigError::invalid(
                    key,
                    format!("must be greater than 0, got {}", r.shown()),
                )),
                Some(n) => Ok(Typed::Bytes(n)),
            }
        }
        Kind::Enum(options) => {
            let what = format!(
                "one of {}",
                options
                    .iter()
                    .map(|o| format!("\"{o}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let found = r.text().and_then(|s| {
                options
                    .iter()
                    .find(|o| o.eq_ignore_ascii_case(s.trim()))
                    .copied()
            });
            found
                .map(|o| Typed::Str(o.to_string()))
                .ok_or_else(|| expected(info, &what, r))
        }
        Kind::IpAddr => r
            .text()
            .and_then(|s| s.trim().parse::<IpAddr>().ok())
            .map(Typed::Ip)
            .ok_or_else(|| expected(info, "an IP address such as 127.0.0.1 or ::1", r)),
    }
}
