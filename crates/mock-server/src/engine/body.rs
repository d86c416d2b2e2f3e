//! One request body (`body` of a batch line, `input` of a generic line, or
//! a synchronous request): what the fake model needs from it, borrowed.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::fake;
use super::model::{run, Outcome, Req};
use crate::util::BStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Chat,
    Embeddings,
}

impl Endpoint {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "/v1/chat/completions" => Some(Endpoint::Chat),
            "/v1/embeddings" => Some(Endpoint::Embeddings),
            _ => None,
        }
    }

    pub(crate) fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/v1/chat/completions",
            Endpoint::Embeddings => "/v1/embeddings",
        }
    }

    /// Azure's spelling, without `/v1`.
    pub(crate) fn bare_path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/chat/completions",
            Endpoint::Embeddings => "/embeddings",
        }
    }

    /// Azure accepts `/chat/completions` (its documented form) and the
    /// `/v1/` one.
    pub(crate) fn parse_azure(s: &str) -> Option<(Self, UrlStyle)> {
        match s {
            "/chat/completions" => Some((Endpoint::Chat, UrlStyle::Bare)),
            "/embeddings" => Some((Endpoint::Embeddings, UrlStyle::Bare)),
            other => Self::parse(other).map(|e| (e, UrlStyle::V1)),
        }
    }
}

/// How line `url`s and the batch `endpoint` name the operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UrlStyle {
    /// `/v1/chat/completions` (OpenAI; also accepted by Azure).
    V1,
    /// `/chat/completions` (Azure OpenAI).
    Bare,
}

/// One entry of a batch's `errors.data`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub(crate) struct BatchError {
    pub code: String,
    pub message: String,
    pub param: Option<String>,
    pub line: Option<u64>,
}

impl BatchError {
    pub(crate) fn new(
        code: &str,
        message: impl Into<String>,
        param: Option<&str>,
        line: Option<u64>,
    ) -> Self {
        BatchError {
            code: code.into(),
            message: message.into(),
            param: param.map(Into::into),
            line,
        }
    }
}

#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow, default)]
    model: Option<BStr<'a>>,
    #[serde(borrow, default)]
    messages: Option<Vec<Msg<'a>>>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
    #[serde(default)]
    stream: Option<bool>,
}

#[derive(Deserialize)]
struct Msg<'a> {
    #[serde(borrow, default)]
    role: Option<BStr<'a>>,
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Part<'a> {
    #[serde(borrow, default)]
    text: Option<BStr<'a>>,
}

/// A JSON string value (or None when absent/null/not a string).
pub(crate) fn string<'a>(raw: Option<&'a RawValue>) -> Option<Cow<'a, str>> {
    raw.and_then(|r| serde_json::from_str::<BStr<'a>>(r.get()).ok())
        .map(|s| s.0)
}

/// Text of a message `content`: a string or an array of `{type, text}` parts.
fn content_text<'a>(raw: Option<&'a RawValue>) -> Cow<'a, str> {
    let Some(raw) = raw else {
        return Cow::Borrowed("");
    };
    if let Ok(s) = serde_json::from_str::<BStr<'a>>(raw.get()) {
        return s.0;
    }
    match serde_json::from_str::<Vec<Part<'a>>>(raw.get()) {
        Ok(parts) => {
            let texts: Vec<Cow<str>> = parts
                .into_iter()
                .filter_map(|p| p.text.map(|t| t.0))
                .collect();
            if texts.len() == 1 {
                texts.into_iter().next().expect("one")
            } else {
                Cow::Owned(texts.join("\n"))
            }
        }
        Err(_) => Cow::Borrowed(""),
    }
}

/// Reads the request body of one line: `Ok(request)` or a line-level
/// validation error (which fails an OpenAI batch).
pub(crate) fn read_body<'a>(
    raw: &'a RawValue,
    want: Option<Endpoint>,
    generic: bool,
) -> Result<(Cow<'a, str>, Req<'a>), BatchError> {
    let body: Body<'a> = match serde_json::from_str(raw.get()) {
        Ok(b) => b,
        Err(_) if generic => {
            let req = Req::Invalid {
                message: "'input' must be a JSON object.".into(),
                param: "input",
            };
            return Ok((Cow::Borrowed("mock-model"), req));
        }
        Err(_) => {
            return Err(BatchError::new(
                "invalid_request",
                "Body must be a JSON object.",
                Some("body"),
                None,
            ))
        }
    };
    let kind = want.or(if body.messages.is_some() {
        Some(Endpoint::Chat)
    } else if body.input.is_some() {
        Some(Endpoint::Embeddings)
    } else {
        None
    });
    let model = match body.model {
        Some(m) => m.0,
        None if generic => Cow::Borrowed("mock-model"),
        None => {
            return Err(BatchError::new(
                "invalid_request",
                "Model parameter is required.",
                Some("body.model"),
                None,
            ))
        }
    };
    let req = match kind {
        None => Req::Invalid {
            message:
                "'input' must be an OpenAI chat (messages) or embeddings (input) request body."
                    .into(),
            param: "input",
        },
        Some(Endpoint::Chat) => {
            if body.stream == Some(true) && !generic {
                return Err(BatchError::new(
                    "streaming_unsupported",
                    "Chat Completions: Streaming is not supported in the Batch API.",
                    Some("body.stream"),
                    None,
                ));
            }
            let Some(messages) = body.messages else {
                if generic {
                    return Ok((
                        model,
                        Req::Invalid {
                            message: "Messages parameter is required.".into(),
                            param: "messages",
                        },
                    ));
                }
                return Err(BatchError::new(
                    "invalid_request",
                    "Messages parameter is required.",
                    Some("body.messages"),
                    None,
                ));
            };
            let mut prompt = 0;
            let mut user = Cow::Borrowed("");
            for m in &messages {
                let text = content_text(m.content);
                prompt += fake::tokens(&text) + 4;
                if m.role.as_deref() == Some("user") {
                    user = text;
                }
            }
            Req::Chat { user, prompt }
        }
        Some(Endpoint::Embeddings) => match body.input {
            None if generic => Req::Invalid {
                message: "Input parameter is required.".into(),
                param: "input",
            },
            None => {
                return Err(BatchError::new(
                    "invalid_request",
                    "Input parameter is required.",
                    Some("body.input"),
                    None,
                ))
            }
            Some(raw) => {
                if let Ok(s) = serde_json::from_str::<BStr<'a>>(raw.get()) {
                    Req::Embed {
                        inputs: vec![s.0],
                        single: true,
                    }
                } else if let Ok(v) = serde_json::from_str::<Vec<BStr<'a>>>(raw.get()) {
                    Req::Embed {
                        inputs: v.into_iter().map(|s| s.0).collect(),
                        single: false,
                    }
                } else {
                    Req::Invalid {
                        message: "'$.input' is invalid. Please check the API reference.".into(),
                        param: "input",
                    }
                }
            }
        },
    };
    Ok((model, req))
}

/// A synchronous request body: `(model, outcome)`, or the 400 to answer.
pub(crate) fn sync_request(
    endpoint: Endpoint,
    body: &[u8],
) -> Result<(String, Outcome), BatchError> {
    let raw: &RawValue = serde_json::from_slice(body)
        .map_err(|_| BatchError::new("invalid_json", "body is not valid json", None, None))?;
    let (model, req) = read_body(raw, Some(endpoint), false)?;
    let outcome = run(&model, &req);
    Ok((model.into_owned(), outcome))
}

#[derive(Deserialize)]
struct AnthropicParams<'a> {
    #[serde(borrow, default)]
    model: Option<&'a RawValue>,
    #[serde(borrow, default)]
    max_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    messages: Option<Vec<Msg<'a>>>,
    #[serde(borrow, default)]
    system: Option<&'a RawValue>,
    #[serde(default)]
    stream: Option<bool>,
}

/// An Anthropic Messages request (`params` of a batch request): the model
/// and the request, or `Req::Invalid` with the real API's wording (these
/// become `errored` results, as the real API validates params while
/// processing).
pub(crate) fn read_anthropic_params(raw: Option<&RawValue>) -> (Cow<'_, str>, Req<'_>) {
    let unknown = Cow::Borrowed("mock-model");
    let invalid = |message: &str, param: &'static str| Req::Invalid {
        message: message.to_owned(),
        param,
    };
    let Some(raw) = raw else {
        return (unknown, invalid("params: Field required", "params"));
    };
    let Ok(p) = serde_json::from_str::<AnthropicParams>(raw.get()) else {
        return (
            unknown,
            invalid("params: Input should be a valid dictionary", "params"),
        );
    };
    let model = match string(p.model) {
        Some(m) if !m.is_empty() => m,
        _ => return (unknown, invalid("model: Field required", "model")),
    };
    match p.max_tokens.map(|r| serde_json::from_str::<i64>(r.get())) {
        None => return (model, invalid("max_tokens: Field required", "max_tokens")),
        Some(Ok(n)) if n >= 1 => {}
        Some(Ok(_)) => {
            return (
                model,
                invalid(
                    "max_tokens: Input should be greater than or equal to 1",
                    "max_tokens",
                ),
            )
        }
        Some(Err(_)) => {
            return (
                model,
                invalid("max_tokens: Input should be a valid integer", "max_tokens"),
            )
        }
    }
    if p.stream == Some(true) {
        return (
            model,
            invalid(
                "stream: streaming is not supported in message batches",
                "stream",
            ),
        );
    }
    let Some(messages) = p.messages else {
        return (model, invalid("messages: Field required", "messages"));
    };
    if messages.is_empty() {
        return (
            model,
            invalid("messages: at least one message is required", "messages"),
        );
    }
    let mut prompt = p.system.map_or(0, |s| fake::tokens(&content_text(Some(s))));
    let mut user = Cow::Borrowed("");
    for m in &messages {
        let role = m.role.as_deref();
        if !matches!(role, Some("user" | "assistant")) {
            return (
                model,
                invalid(
                    "messages: Unexpected role. Allowed roles are \"user\" or \"assistant\"",
                    "messages",
                ),
            );
        }
        let text = content_text(m.content);
        prompt += fake::tokens(&text) + 4;
        if role == Some("user") {
            user = text;
        }
    }
    (model, Req::Chat { user, prompt })
}
