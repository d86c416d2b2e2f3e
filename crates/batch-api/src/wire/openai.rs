//! OpenAI batch output/error file lines (PROVIDERS.md §3):
//! `{"id","custom_id","response":{"status_code","request_id","body"}|null,"error":null|{code,message}}`.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::de::{Count, ErrorInfo, First, Obj, Usage};
use super::{
    is_retriable_error_code, is_retriable_http_status, Outcome, ResultLine, Task, WireError,
    UNEXPECTED_RESPONSE,
};

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    custom_id: Cow<'a, str>,
    #[serde(borrow, default)]
    response: Obj<Response<'a>>,
    #[serde(borrow, default)]
    error: Option<ErrorInfo<'a>>,
}

#[derive(Deserialize)]
struct Response<'a> {
    #[serde(default)]
    status_code: Count,
    #[serde(borrow, default)]
    body: Obj<Body<'a>>,
}

/// Every field any endpoint's body may carry that we read; one pass.
#[derive(Deserialize)]
struct Body<'a> {
    /// Chat.
    #[serde(borrow, default)]
    choices: First<Choice<'a>>,
    /// Embeddings.
    #[serde(borrow, default)]
    data: First<Embedding<'a>>,
    #[serde(default)]
    usage: Obj<Usage>,
    /// HTTP-level failures.
    #[serde(borrow, default)]
    error: Option<ErrorInfo<'a>>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(borrow, default)]
    message: Obj<Message<'a>>,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
    #[serde(borrow, default)]
    refusal: super::de::Text<'a>,
}

#[derive(Deserialize)]
struct Embedding<'a> {
    #[serde(borrow, default)]
    embedding: Option<&'a RawValue>,
}

pub(super) fn parse(task: Task, line: &[u8]) -> Result<ResultLine<'_>, WireError> {
    read(task, serde_json::from_slice(line))
}

pub(super) fn parse_str(task: Task, line: &str) -> Result<ResultLine<'_>, WireError> {
    read(task, serde_json::from_str(line))
}

fn read(task: Task, line: serde_json::Result<Line<'_>>) -> Result<ResultLine<'_>, WireError> {
    let line = line.map_err(|e| WireError(e.to_string()))?;
    let outcome = match (line.response.0, line.error) {
        (Some(resp), err) => response_outcome(task, resp, err),
        (None, Some(err)) if !err.is_empty() => line_error(err),
        (None, _) => Outcome::Failed {
            code: Cow::Borrowed(UNEXPECTED_RESPONSE),
            message: Cow::Borrowed("result line has neither a response nor an error"),
            retriable: false,
        },
    };
    Ok(ResultLine {
        custom_id: line.custom_id,
        outcome,
    })
}

/// `response: null` with `error {code, message}`: expired, cancelled, ...
fn line_error(err: ErrorInfo<'_>) -> Outcome<'_> {
    let code = err
        .code
        .or(err.kind)
        .unwrap_or(Cow::Borrowed("unknown_error"));
    let retriable = is_retriable_error_code(&code);
    let message = err
        .message
        .unwrap_or_else(|| Cow::Owned(format!("request failed: {code}")));
    Outcome::Failed {
        code,
        message,
        retriable,
    }
}

fn response_outcome<'a>(
    task: Task,
    resp: Response<'a>,
    line_err: Option<ErrorInfo<'a>>,
) -> Outcome<'a> {
    let body = resp.body.0;
    let status = match resp.status_code.0 {
        Some(s) => s,
        // No status: trust a line-level error, else judge by the body.
        None => match line_err {
            Some(e) if !e.is_empty() => return line_error(e),
            _ => 200,
        },
    };
    if !(200..300).contains(&status) {
        let status = u16::try_from(status).unwrap_or(u16::MAX);
        let err = body.and_then(|b| b.error).unwrap_or_default();
        let code = err
            .code
            .or(err.kind)
            .unwrap_or_else(|| Cow::Owned(format!("http_{status}")));
        let message = err
            .message
            .unwrap_or_else(|| Cow::Owned(format!("http status {status}")));
        return Outcome::Failed {
            code,
            message,
            retriable: is_retriable_http_status(status),
        };
    }
    let Some(body) = body else {
        return unexpected("response has no body");
    };
    let total_tokens = body.usage.0.and_then(|u| u.total_tokens.0);
    match task {
        Task::Chat => {
            let Some(message) = body.choices.0.and_then(|c| c.message.0) else {
                return unexpected("response has no choices[0].message");
            };
            match message.content {
                Some(prediction) => Outcome::Ok {
                    prediction,
                    total_tokens,
                },
                None => match message.refusal.non_empty() {
                    Some(refusal) => Outcome::Failed {
                        code: Cow::Borrowed("refusal"),
                        message: refusal,
                        retriable: false,
                    },
                    None => unexpected("response has no choices[0].message.content"),
                },
            }
        }
        Task::Embeddings => match body.data.0.and_then(|d| d.embedding) {
            Some(prediction) => Outcome::Ok {
                prediction,
                total_tokens,
            },
            None => unexpected("response has no data[0].embedding"),
        },
    }
}

fn unexpected(why: &'static str) -> Outcome<'static> {
    Outcome::Failed {
        code: Cow::Borrowed(UNEXPECTED_RESPONSE),
        message: Cow::Borrowed(why),
        retriable: false,
    }
}
