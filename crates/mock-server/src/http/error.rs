//! Error envelopes: OpenAI's (and Azure's) `{"error": {"message", "type",
//! "param", "code"}}`, and Anthropic's `{"type": "error", "error": {"type",
//! "message"}, "request_id"}`.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Which provider's envelope an error is answered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Style {
    #[default]
    OpenAi,
    Anthropic,
}

impl Style {
    /// The style of the API a request path belongs to.
    pub(crate) fn of_path(path: &str) -> Style {
        if path.starts_with("/v1/messages") {
            Style::Anthropic
        } else {
            Style::OpenAi
        }
    }
}

/// An API error answered with the real envelope (and optional headers).
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
    pub(crate) kind: &'static str,
    pub(crate) param: Option<String>,
    pub(crate) code: Option<String>,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) style: Style,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
            headers: Vec::new(),
            style: Style::OpenAi,
        }
    }

    /// Answer in `style`'s envelope.
    pub(crate) fn style(mut self, style: Style) -> Self {
        self.style = style;
        self
    }

    /// Answer in Anthropic's envelope.
    pub(crate) fn anthropic(self) -> Self {
        self.style(Style::Anthropic)
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    pub(crate) fn param(mut self, p: impl Into<String>) -> Self {
        self.param = Some(p.into());
        self
    }

    pub(crate) fn code(mut self, c: impl Into<String>) -> Self {
        self.code = Some(c.into());
        self
    }

    pub(crate) fn header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "invalid_request_error", message)
    }

    pub(crate) fn no_such_file(id: &str) -> Self {
        Self::not_found(format!("No such File object: {id}")).param("id")
    }

    pub(crate) fn bad_json() -> Self {
        Self::invalid(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using \
             your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not \
             valid JSON.)",
        )
    }

    pub(crate) fn missing(param: &str) -> Self {
        Self::invalid(format!("Missing required parameter: '{param}'."))
            .param(param)
            .code("missing_required_parameter")
    }

    /// 409: a batch that has ended cannot be cancelled.
    pub(crate) fn cannot_cancel(status: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "invalid_request_error",
            format!("Cannot cancel a batch with status '{status}'."),
        )
    }

    pub(crate) fn server_error(status: StatusCode) -> Self {
        let message = match status.as_u16() {
            502 => "Bad gateway.",
            503 => "The server is overloaded or not ready yet.",
            _ => "The server had an error while processing your request. Sorry about that!",
        };
        Self::new(status, "server_error", message)
    }

    pub(crate) fn body(&self) -> serde_json::Value {
        match self.style {
            Style::OpenAi => {
                json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
            }
            Style::Anthropic => json!({
                "type": "error",
                "error": {"type": self.anthropic_type(), "message": self.message},
                "request_id": null,
            }),
        }
    }

    /// Anthropic's `error.type` for this error.
    pub(crate) fn anthropic_type(&self) -> &'static str {
        match self.status.as_u16() {
            401 => "authentication_error",
            402 => "billing_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            504 => "timeout_error",
            529 => "overloaded_error",
            500.. => "api_error",
            _ => "invalid_request_error",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(self.body())).into_response();
        for (name, value) in &self.headers {
            if let Ok(v) = HeaderValue::from_str(value) {
                resp.headers_mut().insert(*name, v);
            }
        }
        resp
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;
