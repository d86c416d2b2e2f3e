//! The API key: its auth header (marked sensitive) and its redaction from
//! every text that could reach a log line, an output line or a dead letter.

use std::borrow::Cow;

use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION};

use crate::ApiError;

pub(crate) const REDACTED: &str = "[redacted]";

/// Fragments of the key shorter than this are left alone: they would
/// redact ordinary words.
const MIN_FRAGMENT: usize = 4;

/// An API key. Its `Debug` never shows it; it is sent in a header marked
/// sensitive, and every error message is scrubbed of it.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Remove the key from `text` (see `redact`), then lowercase it.
    pub fn scrub(&self, text: &str) -> String {
        scrub(Some(self), text)
    }

    /// Remove the key from `text` (see `redact`), keeping its case.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        redact(Some(self), text)
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey([redacted])")
    }
}

/// Lowercase `text` and remove the key from it.
pub(crate) fn scrub(key: Option<&ApiKey>, text: &str) -> String {
    redact(key, text).to_lowercase()
}

/// Replace, in any case, the key and every prefix or suffix of it of at
/// least [`MIN_FRAGMENT`] characters, and every masked key a provider echoes
/// (`sk-ab***wxyz`: OpenAI's 401 shows the key's ends around `***`).
pub(crate) fn redact<'a>(key: Option<&ApiKey>, text: &'a str) -> Cow<'a, str> {
    let mut spans = masked_spans(text);
    if let Some(k) = key {
        spans.extend(fragment_spans(k.expose(), text));
    }
    if spans.is_empty() {
        return Cow::Borrowed(text);
    }
    spans.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end) in spans {
        if end <= at {
            continue;
        }
        if start >= at {
            out.push_str(&text[at..start]);
            out.push_str(REDACTED);
        }
        at = end;
    }
    out.push_str(&text[at..]);
    Cow::Owned(out)
}

/// A character a key may be made of.
fn key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+' | '/' | '=')
}

/// Byte spans of `***`-masked tokens, e.g. `wro***-456`; a trailing `.`
/// (the end of the provider's sentence) is kept.
fn masked_spans(text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut from = 0;
    while let Some(i) = text[from..].find("***") {
        let star = from + i;
        let start = text[..star]
            .char_indices()
            .rev()
            .take_while(|&(_, c)| key_char(c))
            .last()
            .map_or(star, |(j, _)| j);
        let after = star + text[star..].len() - text[star..].trim_start_matches('*').len();
        let tail = text[after..]
            .char_indices()
            .find(|&(_, c)| !key_char(c))
            .map_or(text.len(), |(j, _)| after + j);
        let end = after + text[after..tail].trim_end_matches('.').len();
        // Stars alone show nothing of a key.
        if start < star || end > after {
            spans.push((start, end));
        }
        from = end.max(star + 3);
    }
    spans
}

/// Byte spans of `text` that equal (ignoring ASCII case) the key or a
/// prefix or suffix of it of at least [`MIN_FRAGMENT`] bytes.
fn fragment_spans(key: &str, text: &str) -> Vec<(usize, usize)> {
    let (k, t) = (key.as_bytes(), text.as_bytes());
    let mut spans = Vec::new();
    if k.len() < MIN_FRAGMENT {
        return spans;
    }
    for start in 0..t.len() {
        if !text.is_char_boundary(start) {
            continue;
        }
        let rest = &t[start..];
        // The longest prefix of the key starting here.
        let prefix = rest
            .iter()
            .zip(k)
            .take_while(|(a, b)| a.eq_ignore_ascii_case(b))
            .count();
        // The longest suffix of the key starting here.
        let suffix = (MIN_FRAGMENT..=k.len().min(rest.len()))
            .rev()
            .find(|&n| rest[..n].eq_ignore_ascii_case(&k[k.len() - n..]))
            .unwrap_or(0);
        let n = prefix.max(suffix);
        if n >= MIN_FRAGMENT && text.is_char_boundary(start + n) {
            spans.push((start, start + n));
        }
    }
    spans
}

/// How a client authenticates.
#[derive(Debug, Clone, Copy)]
pub(crate) enum AuthStyle {
    /// `Authorization: Bearer <key>` (OpenAI, generic).
    Bearer,
    /// `<name>: <key>` (Azure `api-key`, Anthropic `x-api-key`).
    Header(&'static str),
}

pub(crate) fn auth_header(
    key: &ApiKey,
    style: AuthStyle,
) -> Result<(HeaderName, HeaderValue), ApiError> {
    let (name, value) = match style {
        AuthStyle::Bearer => (AUTHORIZATION, format!("Bearer {}", key.expose())),
        AuthStyle::Header(name) => (
            HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                .map_err(|_| ApiError::permanent(format!("invalid auth header name {name:?}")))?,
            key.expose().to_owned(),
        ),
    };
    // The error must not show the key.
    let mut value = HeaderValue::from_str(&value).map_err(|_| {
        ApiError::permanent("the api key contains characters not allowed in an http header")
    })?;
    value.set_sensitive(true);
    Ok((name, value))
}
