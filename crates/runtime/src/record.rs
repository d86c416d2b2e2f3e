//! Reading just enough of a record: the input field's raw JSON (copied into
//! the request untouched) and whether the output field or `ml_predict` is
//! already taken. Everything else is skipped by the parser without being
//! materialized. Output lines copy the record's bytes, so a record is usable
//! only if those bytes are valid UTF-8 JSON: a line that is not goes to the
//! dead letters (its bytes are kept there, lossily decoded), never repaired.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

/// Why a line cannot become a request; goes to the dead-letter output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unusable(pub String);

/// The input field of a usable record, as a JSON string literal with quotes.
pub struct Usable<'a> {
    pub input: &'a RawValue,
}

pub struct Fields<'k> {
    pub input: &'k str,
    pub output: &'k str,
}

/// The field mlpredict adds to every output line.
pub const META_FIELD: &str = "ml_predict";

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// A line without its UTF-8 byte order mark (editors put one at the start
/// of a file; it is not part of the JSON).
pub fn skip_bom(line: &[u8]) -> &[u8] {
    line.strip_prefix(BOM).unwrap_or(line)
}

impl<'k> Fields<'k> {
    /// [`parse`](Self::parse) a record's value (a Kafka record may have
    /// none).
    pub fn parse_value<'a>(&self, value: Option<&'a [u8]>) -> Result<Usable<'a>, Unusable> {
        match value {
            None => Err(Unusable("record has no value".into())),
            Some(v) => self.parse(v),
        }
    }

    pub fn parse<'a>(&self, line: &'a [u8]) -> Result<Usable<'a>, Unusable> {
        let line = skip_bom(line);
        // Checked once for the whole line: the parser below skips the other
        // fields without looking at their bytes, and they are copied out.
        let text = std::str::from_utf8(line).map_err(|e| not_utf8(line, e.valid_up_to()))?;
        check_surrogates(line)?;
        let mut de = serde_json::Deserializer::from_str(text);
        let found = self
            .deserialize(&mut de)
            .map_err(|e| Unusable(describe(&e)))?;
        de.end()
            .map_err(|e| Unusable(format!("trailing characters after the json object ({e})")))?;
        if found.has_output {
            return Err(Unusable(format!(
                "record already has the output field `{}`",
                self.output
            )));
        }
        if found.has_meta {
            return Err(Unusable(format!(
                "record already has the field `{META_FIELD}`, which mlpredict writes"
            )));
        }
        match found.input {
            None => Err(Unusable(format!("missing input field `{}`", self.input))),
            Some(raw) if raw.get().starts_with('"') => Ok(Usable { input: raw }),
            Some(_) => Err(Unusable(format!(
                "input field `{}` is not a string",
                self.input
            ))),
        }
    }
}

/// The dead-letter reason of a line that is not valid UTF-8: where, and in
/// which top-level field (found on this slow path only).
fn not_utf8(line: &[u8], at: usize) -> Unusable {
    let field = field_at(line, at)
        .map(|f| format!(" in field `{f}`"))
        .unwrap_or_default();
    Unusable(format!(
        "not valid utf-8 at byte {at}{field} (output lines must be valid json)"
    ))
}

/// The top-level key whose value holds byte `at` of `line`: the line is
/// parsed with every invalid byte replaced by `?` (same offsets).
fn field_at(line: &[u8], at: usize) -> Option<String> {
    let mut fixed = Vec::with_capacity(line.len());
    for chunk in line.utf8_chunks() {
        fixed.extend_from_slice(chunk.valid().as_bytes());
        fixed.extend(std::iter::repeat_n(b'?', chunk.invalid().len()));
    }
    let text = std::str::from_utf8(&fixed).ok()?;
    let fields: TopLevel = serde_json::from_str(text).ok()?;
    let base = text.as_ptr() as usize;
    fields.0.into_iter().find_map(|(key, value)| {
        let start = value.get().as_ptr() as usize - base;
        (start..start + value.get().len())
            .contains(&at)
            .then_some(key)
    })
}

/// An object's top-level keys and raw values, in order.
struct TopLevel<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> de::Deserialize<'de> for TopLevel<'a> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = TopLevel<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a json object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((KeyName(k), v)) = map.next_entry::<KeyName, &RawValue>()? {
                    out.push((k.into_owned(), v));
                }
                Ok(TopLevel(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

fn describe(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    if msg.starts_with("invalid type") {
        "not a json object".to_owned()
    } else {
        format!("invalid json: {msg}")
    }
}

pub struct Found<'a> {
    input: Option<&'a RawValue>,
    has_output: bool,
    has_meta: bool,
}

impl<'de, 'k> DeserializeSeed<'de> for &Fields<'k> {
    type Value = Found<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, 'k> Visitor<'de> for &Fields<'k> {
    type Value = Found<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a json object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = Found {
            input: None,
            has_output: false,
            has_meta: false,
        };
        while let Some(KeyName(key)) = map.next_key()? {
            if key == self.input && found.input.is_none() {
                found.input = Some(map.next_value()?);
            } else {
                found.has_output |= key == self.output;
                found.has_meta |= key == META_FIELD;
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// A key, borrowed unless it had escapes.
struct KeyName<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for KeyName<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeyName<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(KeyName(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(KeyName(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// Append `{...record minus its closing brace...}` for an output line
/// (the synchronous client's, shared), without a leading byte order mark.
pub fn write_record_open(out: &mut Vec<u8>, line: &[u8]) -> bool {
    batch_api::sync::write_record_open(out, skip_bom(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> Fields<'static> {
        Fields {
            input: "text",
            output: "prediction",
        }
    }

    #[test]
    fn finds_the_input_field_raw() {
        let line = br#"{"id": 7, "nested": {"text": 1}, "text": "great \"phone\"\n", "x": [1,2]}"#;
        let u = fields().parse(line).unwrap();
        assert_eq!(u.input.get(), r#""great \"phone\"\n""#);
    }

    #[test]
    fn escaped_keys_match() {
        let u = fields().parse(br#"{"te\u0078t": "hi"}"#).unwrap();
        assert_eq!(u.input.get(), r#""hi""#);
    }

    #[test]
    fn unusable_lines_say_why() {
        let f = fields();
        let reason = |l: &[u8]| f.parse(l).err().unwrap().0;
        assert_eq!(reason(b"[1,2]"), "not a json object");
        assert_eq!(reason(b"\"str\""), "not a json object");
        assert!(
            reason(b"{\"text\": ").starts_with("invalid json"),
            "{}",
            reason(b"{\"text\": ")
        );
        assert_eq!(reason(br#"{"other": 1}"#), "missing input field `text`");
        assert_eq!(
            reason(br#"{"text": 5}"#),
            "input field `text` is not a string"
        );
        assert_eq!(
            reason(br#"{"text": "a", "prediction": 1}"#),
            "record already has the output field `prediction`"
        );
        assert!(reason(br#"{"text": "a"} x"#).starts_with("trailing characters"));
    }

    #[test]
    fn bad_bytes_a_bom_and_a_forged_ml_predict() {
        let f = fields();
        let reason = |l: &[u8]| f.parse(l).err().unwrap().0;
        let latin1 = b"{\"id\": \"u2\", \"text\": \"fine\", \"note\": \"caf\xe9 latin-1\"}";
        assert_eq!(
            reason(latin1),
            "not valid utf-8 at byte 41 in field `note` (output lines must be valid json)"
        );
        assert!(reason(b"{\"te\xffxt\": \"a\"}").starts_with("not valid utf-8 at byte 4 ("));
        assert_eq!(
            reason(br#"{"text": "a", "ml_predict": {"status": "ok"}}"#),
            "record already has the field `ml_predict`, which mlpredict writes"
        );
        let u = f.parse(b"\xEF\xBB\xBF{\"text\": \"hi\"}").unwrap();
        assert_eq!(u.input.get(), r#""hi""#);
        let mut out = Vec::new();
        assert!(write_record_open(&mut out, b"\xEF\xBB\xBF{\"a\":1}"));
        assert_eq!(out, b"{\"a\":1");
    }

    #[test]
    fn record_open_strips_the_closing_brace() {
        let mut out = Vec::new();
        assert!(write_record_open(&mut out, b" {\"a\":1} \r"));
        assert_eq!(out, b"{\"a\":1");
    }
}

/// Refuse `\uXXXX` escapes that encode half a surrogate pair: the parser
/// skips the fields it does not need without decoding them, and the line
/// is copied to the output as it is, which strict JSON readers then
/// reject. Hand-rolled because it is the hot path: one memchr pass over
/// the backslashes, nothing decoded.
fn check_surrogates(line: &[u8]) -> Result<(), Unusable> {
    let hex = |at: usize| -> Option<u16> {
        let digits = std::str::from_utf8(line.get(at..at + 4)?).ok()?;
        u16::from_str_radix(digits, 16).ok()
    };
    let mut at = 0;
    // A high surrogate just read wants a low one right after it.
    let mut want_low: Option<usize> = None;
    while let Some(i) = memchr::memchr(b'\\', &line[at..]) {
        let i = at + i;
        let escape = line.get(i + 1).copied();
        let unit = (escape == Some(b'u')).then(|| hex(i + 2)).flatten();
        match unit {
            Some(u) if (0xDC00..0xE000).contains(&u) => {
                if want_low.take() != Some(i) {
                    return Err(lone_at(i));
                }
            }
            other => {
                if let Some(high) = want_low {
                    return Err(lone_at(high - 6));
                }
                if other.is_some_and(|u| (0xD800..0xDC00).contains(&u)) {
                    want_low = Some(i + 6);
                }
            }
        }
        at = i + if unit.is_some() { 6 } else { 2 };
        if at >= line.len() {
            break;
        }
    }
    match want_low {
        Some(next) => Err(lone_at(next - 6)),
        None => Ok(()),
    }
}

fn lone_at(pos: usize) -> Unusable {
    Unusable(format!(
        "a \\u escape at byte {pos} is half a surrogate pair: not valid json text"
    ))
}

#[cfg(test)]
mod surrogate_tests {
    use super::*;

    #[test]
    fn a_lone_surrogate_escape_in_any_field_is_dead_lettered() {
        let f = Fields {
            input: "text",
            output: "prediction",
        };
        for line in [
            r#"{"text":"fine","note":"\ud800"}"#,
            r#"{"text":"fine","deep":{"a":["\udc00x"]}}"#,
            r#"{"text":"\ud800 lone"}"#,
        ] {
            assert!(f.parse(line.as_bytes()).is_err(), "accepted {line}");
        }
        // A proper pair is fine, and so is an escaped backslash before a u.
        assert!(f.parse(br#"{"text":"ok","note":"\ud83d\ude00"}"#).is_ok());
        assert!(f.parse(br#"{"text":"ok","note":"\\ud800 \u00e9"}"#).is_ok());
        let e = f.parse(br#"{"text":"ok","n":"\ud800"}"#).err().unwrap();
        assert!(
            e.0.contains("byte 18") && e.0.contains("surrogate"),
            "{}",
            e.0
        );
    }
}
