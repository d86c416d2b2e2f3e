//! The shared HTTP layer: one `reqwest::Client` per provider client, auth
//! headers marked sensitive (`auth`), error classification (PROVIDERS.md
//! §4, `errors`), `retry-after-ms` / `retry-after` / `x-should-retry`,
//! API key redaction, retries of idempotent calls with exponential backoff
//! and full jitter (`retry`), and streaming downloads to disk
//! (`download`).

use std::borrow::Cow;
use std::future::Future;

use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{Method, RequestBuilder, Response};

use crate::{ApiError, ClientTimeouts, ErrorClass};

mod auth;
mod download;
mod errors;
mod retry;
mod upload;

pub use auth::ApiKey;
pub(crate) use auth::{auth_header, AuthStyle};
use auth::{redact, scrub, REDACTED};
pub use download::{DownloadTo, Downloaded};
pub use errors::classify_status;
#[cfg(test)]
use errors::parse_error_body;
use retry::retry_with;
#[cfg(test)]
use retry::FullJitter;
pub use retry::{parse_http_date, parse_retry_after, RetryPolicy};
pub(crate) use upload::{file_part, join_segment, upload_timeout};

/// The HTTP layer one provider client owns.
pub(crate) struct Http {
    client: reqwest::Client,
    auth: Option<(HeaderName, HeaderValue)>,
    key: Option<ApiKey>,
    /// Sent with every request (e.g. `anthropic-version`).
    extra: Vec<(HeaderName, HeaderValue)>,
    pub(crate) retry: RetryPolicy,
    pub(crate) timeouts: ClientTimeouts,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http")
            .field(
                "auth",
                &self.auth.as_ref().map(|(name, _)| (name, REDACTED)),
            )
            .field("key", &self.key)
            .field("retry", &self.retry)
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

impl Http {
    pub(crate) fn new(
        api_key: Option<String>,
        style: AuthStyle,
        timeouts: ClientTimeouts,
    ) -> Result<Self, ApiError> {
        Self::with_client(api_key, style, timeouts, |b| b)
    }

    /// [`new`](Self::new), with more settings of the `reqwest` client
    /// (the synchronous client's connection pool).
    pub(crate) fn with_client(
        api_key: Option<String>,
        style: AuthStyle,
        timeouts: ClientTimeouts,
        configure: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
    ) -> Result<Self, ApiError> {
        let key = api_key.filter(|k| !k.is_empty()).map(ApiKey::new);
        let auth = key.as_ref().map(|k| auth_header(k, style)).transpose()?;
        let client = configure(reqwest::Client::builder())
            .connect_timeout(timeouts.connect)
            // An idle read longer than the request timeout fails the call;
            // small calls also get a total timeout per request (`req`),
            // downloads do not (they may be hundreds of MB).
            .read_timeout(timeouts.request)
            .user_agent(concat!("mlpredict/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ApiError::permanent(format!("cannot build the http client: {e}")))?;
        Ok(Self {
            client,
            auth,
            key,
            extra: Vec::new(),
            retry: RetryPolicy::default(),
            timeouts,
        })
    }

    /// Authenticate differently (e.g. Azure's `api-key` header).
    pub(crate) fn set_auth_style(&mut self, style: AuthStyle) -> Result<(), ApiError> {
        self.auth = self
            .key
            .as_ref()
            .map(|k| auth_header(k, style))
            .transpose()?;
        Ok(())
    }

    /// A header sent with every request (e.g. `anthropic-version`).
    pub(crate) fn with_header(mut self, name: &'static str, value: &str) -> Result<Self, ApiError> {
        let value = HeaderValue::from_str(value).map_err(|_| {
            ApiError::permanent(format!("invalid value for the {name} header: {value:?}"))
        })?;
        self.extra.push((HeaderName::from_static(name), value));
        Ok(self)
    }

    /// A request with auth and the total request timeout.
    pub(crate) fn req(&self, method: Method, url: &str) -> RequestBuilder {
        self.req_untimed(method, url).timeout(self.timeouts.request)
    }

    /// A request with auth and only the idle (read) timeout.
    pub(crate) fn req_untimed(&self, method: Method, url: &str) -> RequestBuilder {
        let mut rb = self.client.request(method, url);
        if let Some((name, value)) = &self.auth {
            rb = rb.header(name.clone(), value.clone());
        }
        for (name, value) in &self.extra {
            rb = rb.header(name.clone(), value.clone());
        }
        rb
    }

    /// A request without the API key (to a URL on another host), with the
    /// extra headers and only the idle (read) timeout.
    pub(crate) fn req_anonymous(&self, method: Method, url: &str) -> RequestBuilder {
        let mut rb = self.client.request(method, url);
        for (name, value) in &self.extra {
            rb = rb.header(name.clone(), value.clone());
        }
        rb
    }

    /// Send once; a non-2xx answer becomes a classified error.
    pub(crate) async fn send(&self, what: &str, rb: RequestBuilder) -> Result<Response, ApiError> {
        let resp = rb
            .send()
            .await
            .map_err(|e| self.transport_error(what, &e))?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(self.status_error(what, resp).await)
        }
    }

    /// Send once and parse a JSON answer. An unreadable 2xx answer is
    /// `Ambiguous`: the provider may have acted.
    pub(crate) async fn json(
        &self,
        what: &str,
        rb: RequestBuilder,
    ) -> Result<serde_json::Value, ApiError> {
        let resp = self.send(what, rb).await?;
        let status = resp.status().as_u16();
        let body = resp
            .bytes()
            .await
            .map_err(|e| self.transport_error(what, &e))?;
        serde_json::from_slice(&body).map_err(|e| {
            let mut err = ApiError::new(
                ErrorClass::Ambiguous,
                self.scrub(&format!(
                    "{what}: invalid json in the answer (http {status}): {e}"
                )),
            );
            err.status = Some(status);
            err
        })
    }

    /// Run an idempotent call, retrying `Transient` and `Ambiguous` failures
    /// (backoff with full jitter, or the server's `retry-after` when it is
    /// not longer than `max_retry_after`).
    pub(crate) async fn retry<T, F, Fut>(&self, what: &str, call: F) -> Result<T, ApiError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        retry_with(self.retry, what, call).await
    }

    pub(crate) fn scrub(&self, text: &str) -> String {
        scrub(self.key.as_ref(), text)
    }

    /// [`scrub`](Self::scrub) keeping the case, for text shown as the
    /// provider wrote it (an output line's error message).
    pub(crate) fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        redact(self.key.as_ref(), text)
    }
}

#[cfg(test)]
mod tests;
