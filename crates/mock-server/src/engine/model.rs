//! The fake model's side of a request: what it is asked (`Req`, read from
//! any protocol's body) and what it answers (`Outcome`).

use std::borrow::Cow;
use std::sync::Arc;

use super::fake;

/// One request as the fake model sees it.
pub(crate) enum Req<'a> {
    Chat {
        user: Cow<'a, str>,
        prompt: u32,
    },
    Embed {
        inputs: Vec<Cow<'a, str>>,
        single: bool,
    },
    Invalid {
        message: String,
        param: &'static str,
    },
}

/// What executing one request produced.
#[derive(Debug)]
pub(crate) enum Outcome {
    Chat {
        reply: String,
        prompt: u32,
        completion: u32,
    },
    Embedding {
        vectors: Vec<Vec<f32>>,
        tokens: u32,
        single: bool,
    },
    /// An HTTP-level failure: `response.status_code` 4xx/5xx with an error body.
    Error {
        status: u16,
        kind: &'static str,
        code: Option<&'static str>,
        param: Option<&'static str>,
        message: String,
    },
}

#[derive(Debug)]
pub(crate) struct Task {
    pub custom_id: String,
    pub model: Arc<str>,
    pub outcome: Outcome,
}

impl Task {
    pub(crate) fn ok(&self) -> bool {
        !matches!(self.outcome, Outcome::Error { .. })
    }

    /// What the request counts against the enqueued-token limit.
    pub(crate) fn prompt_tokens(&self) -> u64 {
        match &self.outcome {
            Outcome::Chat { prompt, .. } => u64::from(*prompt),
            Outcome::Embedding { tokens, .. } => u64::from(*tokens),
            Outcome::Error { .. } => 0,
        }
    }
}

/// The fake model's answer to one request.
pub(crate) fn run(model: &str, req: &Req<'_>) -> Outcome {
    match req {
        Req::Chat { user, prompt } => {
            let reply = fake::chat_reply(model, user);
            let completion = fake::tokens(&reply);
            Outcome::Chat {
                reply,
                prompt: *prompt,
                completion,
            }
        }
        Req::Embed { inputs, single } => Outcome::Embedding {
            vectors: inputs.iter().map(|s| fake::embedding(s)).collect(),
            tokens: inputs.iter().map(|s| fake::tokens(s)).sum(),
            single: *single,
        },
        Req::Invalid { message, param } => Outcome::Error {
            status: 400,
            kind: "invalid_request_error",
            code: None,
            param: Some(param),
            message: message.clone(),
        },
    }
}
