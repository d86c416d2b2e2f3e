//! Reading just enough of a record: the input field's raw JSON (copied into
//! the request untouched) and whether the output field is already taken.
//! Everything else is skipped by the parser without being materialized.

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

impl<'k> Fields<'k> {
    pub fn parse<'a>(&self, line: &'a [u8]) -> Result<Usable<'a>, Unusable> {
        let mut de = serde_json::Deserializer::from_slice(line);
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
        };
        while let Some(KeyName(key)) = map.next_key()? {
            if key == self.input && found.input.is_none() {
                found.input = Some(map.next_value()?);
            } else {
                found.has_output |= key == self.output;
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

/// Shared with the synchronous client, which writes the same output lines.
pub use batch_api::sync::write_record_open;

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
    fn record_open_strips_the_closing_brace() {
        let mut out = Vec::new();
        assert!(write_record_open(&mut out, b" {\"a\":1} \r"));
        assert_eq!(out, b"{\"a\":1");
    }
}
