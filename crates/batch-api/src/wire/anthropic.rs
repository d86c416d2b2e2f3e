//! Anthropic Message Batches result lines (PROVIDERS.md §6):
//! `{"custom_id","result":{"type":"succeeded","message":{…}}
//! | {"type":"errored","error":{"type":"error","error":{"type","message"}}}
//! | {"type":"canceled"} | {"type":"expired"}}`.
//!
//! Custom ids on the wire carry a batch tag: the Anthropic client sends
//! `{tag}_{lane}-{position}` (see `crate::anthropic`, adoption without
//! metadata) and this parser strips `{tag}_` again, so the rest of the
//! program only ever sees the public `{lane}-{position}`.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::de::{Count, ErrorInfo, Obj, Text};
use super::{is_retriable_error_code, Outcome, ResultLine, WireError, UNEXPECTED_RESPONSE};

/// Between the batch tag and the public custom_id on the wire.
pub const BATCH_TAG_SEPARATOR: char = '_';

/// The public custom_id of a wire custom_id `{tag}_{id}`: everything after
/// the first `_` when what precedes it is a non-empty ASCII alphanumeric
/// tag; otherwise the id unchanged. Public ids (`{lane}-{position}`) never
/// contain `_`, so an untagged id passes through as it is.
pub fn strip_batch_tag(id: &str) -> &str {
    match id.split_once(BATCH_TAG_SEPARATOR) {
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

fn strip_cow(id: Cow<'_, str>) -> Cow<'_, str> {
    match id {
        Cow::Borrowed(s) => Cow::Borrowed(strip_batch_tag(s)),
        Cow::Owned(s) => {
            let stripped = strip_batch_tag(&s);
            if stripped.len() == s.len() {
                Cow::Owned(s)
            } else {
                Cow::Owned(stripped.to_owned())
            }
        }
    }
}

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    custom_id: Cow<'a, str>,
    #[serde(borrow, default)]
    result: Obj<Res<'a>>,
}

#[derive(Deserialize)]
struct Res<'a> {
    #[serde(borrow, default, rename = "type")]
    kind: Text<'a>,
    #[serde(borrow, default)]
    message: Obj<Message<'a>>,
    #[serde(borrow, default)]
    error: Obj<Envelope<'a>>,
}

/// `{"type":"error","error":{"type","message"}}`; a bare error object
/// (`{"type":"api_error","message":…}`) is read too.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    error: Option<ErrorInfo<'a>>,
    #[serde(borrow, default, rename = "type")]
    kind: Text<'a>,
    #[serde(borrow, default)]
    message: Text<'a>,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    content: FirstText<'a>,
    #[serde(default)]
    usage: Obj<Usage>,
    #[serde(borrow, default)]
    stop_reason: Text<'a>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    input_tokens: Count,
    #[serde(default)]
    output_tokens: Count,
    #[serde(default)]
    cache_creation_input_tokens: Count,
    #[serde(default)]
    cache_read_input_tokens: Count,
}

#[derive(Deserialize)]
struct Block<'a> {
    #[serde(borrow, default, rename = "type")]
    kind: Text<'a>,
    #[serde(borrow, default)]
    text: Option<&'a RawValue>,
}

/// The `text` of the first `{"type":"text"}` block of `content` (other
/// blocks, e.g. thinking, are skipped); the rest skipped without
/// allocating.
#[derive(Default)]
struct FirstText<'a>(Option<&'a RawValue>);

impl<'de: 'a, 'a> Deserialize<'de> for FirstText<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = FirstText<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of content blocks")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut found = None;
                while found.is_none() {
                    match seq.next_element::<Obj<Block<'de>>>()? {
                        None => return Ok(FirstText(None)),
                        Some(Obj(Some(b))) => {
                            let is_text = b.kind.0.as_deref().is_none_or(|k| k == "text");
                            if is_text {
                                found = b.text;
                            }
                        }
                        Some(Obj(None)) => {}
                    }
                }
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(FirstText(found))
            }
            // Anything but an array: no text.
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(FirstText(None))
            }
            fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(FirstText(None))
            }
            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(FirstText(None))
            }
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(FirstText(None))
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(FirstText(None))
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(FirstText(None))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(FirstText(None))
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(FirstText(None))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// Anthropic error types worth retrying in a later batch: `api_error`
/// (their 500), `overloaded_error` (529), `rate_limit_error`,
/// `timeout_error`; plus whatever the shared rule calls retriable.
/// `invalid_request_error`, `authentication_error`, `permission_error`,
/// `billing_error`, `not_found_error`, `request_too_large` are final.
pub fn is_retriable_anthropic_error(kind: &str) -> bool {
    let k = kind.trim().to_ascii_lowercase();
    k == "api_error" || is_retriable_error_code(&k)
}

pub(super) fn parse(line: &[u8]) -> Result<ResultLine<'_>, WireError> {
    read(serde_json::from_slice(line))
}

pub(super) fn parse_str(line: &str) -> Result<ResultLine<'_>, WireError> {
    read(serde_json::from_str(line))
}

fn read(line: serde_json::Result<Line<'_>>) -> Result<ResultLine<'_>, WireError> {
    let line = line.map_err(|e| WireError(e.to_string()))?;
    let outcome = match line.result.0 {
        Some(res) => outcome(res),
        None => unexpected("result line has no result object"),
    };
    Ok(ResultLine {
        custom_id: strip_cow(line.custom_id),
        outcome,
    })
}

fn outcome(res: Res<'_>) -> Outcome<'_> {
    let kind = res.kind.0.unwrap_or(Cow::Borrowed(""));
    match kind.as_ref() {
        "succeeded" => {
            let Some(message) = res.message.0 else {
                return unexpected("succeeded result has no message");
            };
            let total_tokens = message.usage.0.map(|u| {
                [
                    u.input_tokens,
                    u.output_tokens,
                    u.cache_creation_input_tokens,
                    u.cache_read_input_tokens,
                ]
                .iter()
                .filter_map(|c| c.0)
                .sum()
            });
            match message.content.0 {
                Some(prediction) => Outcome::Ok {
                    prediction,
                    total_tokens,
                },
                None if message.stop_reason.0.as_deref() == Some("refusal") => Outcome::Failed {
                    code: Cow::Borrowed("refusal"),
                    message: Cow::Borrowed("the model refused to answer"),
                    retriable: false,
                },
                None => unexpected("message has no text content block"),
            }
        }
        "errored" => {
            let env = res.error.0;
            let (code, message) = match env {
                Some(Envelope {
                    error: Some(inner), ..
                }) if !inner.is_empty() => (inner.kind.or(inner.code), inner.message),
                Some(Envelope { kind, message, .. }) => (
                    kind.0.filter(|k| !k.trim().is_empty() && k != "error"),
                    message.non_empty(),
                ),
                None => (None, None),
            };
            let code = code.unwrap_or(Cow::Borrowed("unknown_error"));
            let retriable = is_retriable_anthropic_error(&code);
            let message = message.unwrap_or_else(|| Cow::Owned(format!("request failed: {code}")));
            Outcome::Failed {
                code,
                message,
                retriable,
            }
        }
        "canceled" | "cancelled" => Outcome::Failed {
            code: Cow::Borrowed("canceled"),
            message: Cow::Borrowed("the request was canceled before it was processed"),
            retriable: true,
        },
        "expired" => Outcome::Failed {
            code: Cow::Borrowed("expired"),
            message: Cow::Borrowed("the batch expired before the request was processed"),
            retriable: true,
        },
        _ => unexpected("result has an unknown type"),
    }
}

fn unexpected(why: &'static str) -> Outcome<'static> {
    Outcome::Failed {
        code: Cow::Borrowed(UNEXPECTED_RESPONSE),
        message: Cow::Borrowed(why),
        retriable: false,
    }
}
