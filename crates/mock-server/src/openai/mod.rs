//! OpenAI's Files + Batches (also under Azure OpenAI's URLs): handlers, the
//! Azure `api-version` guard, and their wire shapes.

pub(crate) mod batches;
pub(crate) mod files;
mod render;
pub(crate) mod wire;

use axum::extract::Request;
use axum::http::Uri;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::http::error::ApiError;

/// Whether a request came through the Azure OpenAI routes (`/openai/...`).
pub(crate) fn is_azure(uri: &Uri) -> bool {
    uri.path().starts_with("/openai/")
}

/// Azure: `api-version` is required on `/openai/...`, optional on
/// `/openai/v1/...`.
pub(crate) async fn azure_api_version(uri: Uri, req: Request, next: Next) -> Response {
    let v1 = uri.path().starts_with("/openai/v1/");
    let given = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .any(|(k, v)| k == "api-version" && !v.is_empty());
    if !v1 && !given {
        return ApiError::invalid(
            "The api-version query parameter (?api-version=) is required for all requests.",
        )
        .code("MissingApiVersionParameter")
        .into_response();
    }
    next.run(req).await
}
