use std::time::Duration;

/// How the caller should treat a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The provider certainly did not act (429, 4xx before acting, refused
    /// connection): safe to repeat after `retry_after` or a backoff.
    Transient,
    /// The provider may have acted (timeout, connection reset after the
    /// request was sent, 5xx): look before repeating a non-idempotent call.
    Ambiguous,
    /// Repeating will not help (400, 401, 403, 422, ...).
    Permanent,
    /// The object is gone (404).
    NotFound,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub class: ErrorClass,
    /// HTTP status, if an answer came.
    pub status: Option<u16>,
    /// Provider error code (`error.code` / `error.type`), if any.
    pub code: Option<String>,
    /// Lowercase, never contains the API key.
    pub message: String,
    /// From `retry-after-ms` / `retry-after`.
    pub retry_after: Option<Duration>,
}

impl ApiError {
    /// An error without an HTTP answer; `message` is lowercased.
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        Self {
            class,
            status: None,
            code: None,
            message: message.into().to_lowercase(),
            retry_after: None,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Permanent, message)
    }

    /// Worth repeating an idempotent call: `Transient` or `Ambiguous`.
    pub fn is_retriable(&self) -> bool {
        matches!(self.class, ErrorClass::Transient | ErrorClass::Ambiguous)
    }

    pub fn is_not_found(&self) -> bool {
        self.class == ErrorClass::NotFound
    }

    /// A local file error (reading the batch file, writing a download).
    pub(crate) fn local_io(what: &str, path: &std::path::Path, e: &std::io::Error) -> Self {
        Self::permanent(format!("{what}: {}: {e}", path.display()))
    }
}
