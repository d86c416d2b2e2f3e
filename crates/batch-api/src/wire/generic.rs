//! Result lines of the FLIP's example protocol (PROVIDERS.md §8):
//! `{"custom_id","output":…}` or `{"custom_id","error":{code,message}}`.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::de::{Count, ErrorInfo, Obj, Usage};
use super::{
    is_retriable_error_code, is_retriable_http_status, Outcome, ResultLine, WireError,
    UNEXPECTED_RESPONSE,
};

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    custom_id: Cow<'a, str>,
    #[serde(borrow, default)]
    output: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<ErrorInfo<'a>>,
    #[serde(default)]
    usage: Obj<Usage>,
    #[serde(default)]
    total_tokens: Count,
}

pub(super) fn parse(line: &[u8]) -> Result<ResultLine<'_>, WireError> {
    read(serde_json::from_slice(line))
}

pub(super) fn parse_str(line: &str) -> Result<ResultLine<'_>, WireError> {
    read(serde_json::from_str(line))
}

fn read(line: serde_json::Result<Line<'_>>) -> Result<ResultLine<'_>, WireError> {
    let line = line.map_err(|e| WireError(e.to_string()))?;
    let outcome = match (line.error, line.output) {
        (Some(err), _) if !err.is_empty() => {
            let status = err.status.and_then(|s| u16::try_from(s).ok());
            let code = match (err.code.or(err.kind), status) {
                (Some(c), _) => c,
                (None, Some(s)) => Cow::Owned(format!("http_{s}")),
                (None, None) => Cow::Borrowed("unknown_error"),
            };
            let retriable =
                is_retriable_error_code(&code) || status.is_some_and(is_retriable_http_status);
            let message = err
                .message
                .unwrap_or_else(|| Cow::Owned(format!("request failed: {code}")));
            Outcome::Failed {
                code,
                message,
                retriable,
            }
        }
        (_, Some(prediction)) => Outcome::Ok {
            prediction,
            total_tokens: line
                .usage
                .0
                .and_then(|u| u.total_tokens.0)
                .or(line.total_tokens.0),
        },
        _ => Outcome::Failed {
            code: Cow::Borrowed(UNEXPECTED_RESPONSE),
            message: Cow::Borrowed("result line has neither an output nor an error"),
            retriable: false,
        },
    };
    Ok(ResultLine {
        custom_id: line.custom_id,
        outcome,
    })
}
